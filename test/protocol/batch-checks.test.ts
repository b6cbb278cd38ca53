import { describe, expect, it } from 'vitest';
import { LIMITS } from '../../src/common/limits.js';
import {
  assertValidBatch,
  BATCH_CRC_START,
  checkBatchAt,
  decodeRecords,
  encodeBatch,
  encodeBatchWith,
  type RecordInput,
  splitBatches,
} from '../../src/protocol/batch.js';
import { AT, resealed, thrown } from './batch-helpers.js';

/**
 * The checks of a stored batch that run after its CRC (issue #18: any of them could be deleted
 * unnoticed, because the tests only ever damaged bytes the CRC covers without fixing the CRC).
 * Every damaged batch here is resealed: length and CRC-32C are right again.
 */

const two = (): Buffer =>
  encodeBatch([
    { key: Buffer.from('k'), value: Buffer.from('a'), timestamp: 1000 },
    { value: Buffer.from('b'), timestamp: 1005 },
  ]);

function expectCorrupt(batch: Buffer, message: RegExp): void {
  const check = checkBatchAt(batch);
  expect(check.ok).toBe(false);
  if (!check.ok) {
    expect(check.reason).toBe('corrupt');
    expect(check.message).toMatch(message);
  }
  expect(thrown(() => assertValidBatch(batch))?.code).toBe('CORRUPT_MESSAGE');
}

describe('stored-batch checks after the CRC, with the CRC valid', () => {
  it('accepts the resealed batch unchanged, so the helpers themselves break nothing', () => {
    expect(resealed(two()).equals(two())).toBe(true);
    expect(checkBatchAt(resealed(two())).ok).toBe(true);
  });

  it('refuses each marker byte the CRC covers when it is wrong', () => {
    const markers = [
      AT.attributes - 1,
      AT.lastOffsetDelta - 1,
      AT.baseTimestamp - 1,
      AT.maxTimestamp - 1,
      AT.producerId - 1,
      AT.producerEpoch - 1,
      AT.baseSequence - 1,
      AT.recordCount - 1,
      AT.recordsArray - 1,
    ];
    for (const at of markers) {
      expect(at).toBeGreaterThanOrEqual(BATCH_CRC_START);
      const damaged = resealed(two(), (b) => {
        b[at] = 0xc1; // never used in msgpack
        return b;
      });
      expectCorrupt(damaged, new RegExp(`byte ${at} of the batch header`));
    }
  });

  it('refuses a recordCount that differs from the records array header', () => {
    for (const [count, array] of [
      [2, 1],
      [1, 2],
      [2, 3],
    ]) {
      const damaged = resealed(two(), (b) => {
        b.writeUInt32BE(count!, AT.recordCount);
        b.writeUInt32BE(array!, AT.recordsArray);
        return b;
      });
      expectCorrupt(damaged, /records array length differs/);
    }
  });

  it('refuses a batch of no records', () => {
    const damaged = resealed(two(), (b) => {
      b.writeUInt32BE(0, AT.recordCount);
      b.writeUInt32BE(0, AT.recordsArray);
      return b;
    });
    expectCorrupt(damaged, /no records/);
  });

  it('refuses a lastOffsetDelta below recordCount - 1, and accepts a larger one (compaction gaps)', () => {
    const low = resealed(two(), (b) => {
      b.writeUInt32BE(0, AT.lastOffsetDelta);
      return b;
    });
    expectCorrupt(low, /lastOffsetDelta 0 does not match 2 records/);
    const gap = resealed(two(), (b) => {
      b.writeUInt32BE(5, AT.lastOffsetDelta);
      return b;
    });
    const check = checkBatchAt(gap);
    expect(check.ok && check.header.lastOffsetDelta).toBe(5);
  });

  it('refuses a maxTimestamp before baseTimestamp, and accepts it equal', () => {
    const before = resealed(two(), (b) => {
      b.writeBigInt64BE(999n, AT.maxTimestamp);
      return b;
    });
    expectCorrupt(before, /maxTimestamp is before baseTimestamp/);
    const equal = resealed(two(), (b) => {
      b.writeBigInt64BE(1000n, AT.maxTimestamp);
      return b;
    });
    expect(checkBatchAt(equal).ok).toBe(true);
  });

  it('refuses 64-bit header values beyond 2^53 as corrupt rather than rounding them', () => {
    const damaged = resealed(two(), (b) => {
      b.writeBigInt64BE(2n ** 53n, AT.baseTimestamp);
      return b;
    });
    expectCorrupt(damaged, /2\^53/);
    const offset = Buffer.from(two());
    offset.writeBigUInt64BE(2n ** 53n, 2); // before the CRC: no reseal needed
    expectCorrupt(offset, /2\^53/);
  });

  it('refuses a batch length shorter than the header', () => {
    const short = Buffer.from(two());
    short.writeUInt32BE(10, AT.batchLength);
    expectCorrupt(short, /shorter than the header/);
  });

  it('refuses stray bytes after the last record when decoding, CRC valid', () => {
    for (const extra of [[0x00], [0x95, 0, 0, 0xc0, 0xc0, 0x90]]) {
      const damaged = resealed(two(), (b) => Buffer.concat([b, Buffer.from(extra)]));
      expect(checkBatchAt(damaged).ok).toBe(true);
      const error = thrown(() => decodeRecords(damaged));
      expect(error?.code).toBe('CORRUPT_MESSAGE');
      expect(error?.message).toMatch(new RegExp(`${extra.length} stray bytes`));
    }
  });

  it('refuses a record that is not a 5-array or a header that is not a pair when decoding, CRC valid', () => {
    const notFive = resealed(two(), (b) => {
      b[AT.records] = 0x94;
      return b;
    });
    expect(thrown(() => decodeRecords(notFive))?.message).toMatch(/record 0 is not a 5-element array/);
    const withHeader = encodeBatch([{ value: null, headers: [['h', null]], timestamp: 1 }]);
    const notPair = resealed(withHeader, (b) => {
      b[AT.records + 6] = 0x93;
      return b;
    });
    expect(thrown(() => decodeRecords(notPair))?.message).toMatch(/not a \[name, value\] pair/);
  });
});

describe('limits and record errors, each with its code', () => {
  it('MESSAGE_TOO_LARGE: a batch over batchBytesMax, through assertValidBatch and splitBatches', () => {
    const batch = two();
    expect(thrown(() => assertValidBatch(batch, 0, batch.length, batch.length - 1))?.code).toBe(
      'MESSAGE_TOO_LARGE',
    );
    expect(thrown(() => splitBatches(batch, batch.length - 1))?.code).toBe('MESSAGE_TOO_LARGE');
    expect(assertValidBatch(batch, 0, batch.length, batch.length).recordCount).toBe(2);
    // The default limit is LIMITS.batchBytesMax.
    const big = encodeBatch([{ value: Buffer.alloc(LIMITS.batchBytesMax), timestamp: 1 }]);
    expect(thrown(() => splitBatches(big))?.code).toBe('MESSAGE_TOO_LARGE');
  });

  it('TOO_MANY_RECORDS: more than batchRecordsMax records in one batch', () => {
    const records: RecordInput[] = Array.from({ length: LIMITS.batchRecordsMax + 1 }, () => ({
      value: null,
      timestamp: 1,
    }));
    expect(thrown(() => encodeBatch(records))?.code).toBe('TOO_MANY_RECORDS');
    expect(encodeBatch(records.slice(1)).length).toBeGreaterThan(0);
    const write = (_buf: Buffer, pos: number) => pos;
    const header = { baseTimestamp: 1, maxTimestamp: 1 };
    expect(thrown(() => encodeBatchWith(LIMITS.batchRecordsMax + 1, 0, write, header))?.code).toBe(
      'TOO_MANY_RECORDS',
    );
  });

  it('INVALID_RECORD: no records, offset deltas that do not increase, too many headers, a non-string name', () => {
    expect(thrown(() => encodeBatch([]))?.code).toBe('INVALID_RECORD');
    for (const deltas of [
      [0, 0],
      [1, 0],
      [0, 1.5],
      [-1, 0],
    ]) {
      const records = deltas.map((offsetDelta) => ({ value: null, timestamp: 1, offsetDelta }));
      expect(thrown(() => encodeBatch(records))?.code, deltas.join()).toBe('INVALID_RECORD');
    }
    const headers = Array.from({ length: LIMITS.headersPerRecordMax + 1 }, (): [string, null] => ['h', null]);
    expect(thrown(() => encodeBatch([{ headers, timestamp: 1 }]))?.code).toBe('INVALID_RECORD');
    expect(encodeBatch([{ headers: headers.slice(1), timestamp: 1 }]).length).toBeGreaterThan(0);
    const badName = [[7, null]] as unknown as [string, null][];
    expect(thrown(() => encodeBatch([{ headers: badName, timestamp: 1 }]))?.code).toBe('INVALID_RECORD');
  });

  it('INVALID_TIMESTAMP: below -1, fractional, NaN or beyond 2^53; -1 and 0 are accepted', () => {
    for (const timestamp of [-2, 1.5, Number.NaN, 2 ** 53, Number.POSITIVE_INFINITY]) {
      expect(thrown(() => encodeBatch([{ value: null, timestamp }]))?.code, String(timestamp)).toBe(
        'INVALID_TIMESTAMP',
      );
    }
    for (const timestamp of [-1, 0]) {
      expect(decodeRecords(encodeBatch([{ value: null, timestamp }]))[0]!.timestamp).toBe(timestamp);
    }
  });
});

describe('the incomplete verdict of checkBatchAt', () => {
  it('calls a torn batch after the first one incomplete at every cut, whatever follows the cut in the buffer', () => {
    const a = two();
    const b = encodeBatch([
      {
        key: Buffer.from('key'),
        value: Buffer.alloc(300, 5),
        headers: [['h', Buffer.from('v')]],
        timestamp: 7,
      },
    ]);
    const c = two();
    // Recovery reads a file in chunks: the bytes past `end` may be anything, even a whole batch.
    const buf = Buffer.concat([a, b, c]);
    for (let cut = 0; cut < b.length; cut++) {
      const check = checkBatchAt(buf, a.length, a.length + cut);
      expect(check.ok, `cut at ${cut}`).toBe(false);
      expect(!check.ok && check.reason, `cut at ${cut}`).toBe('incomplete');
      // And with nothing after the cut.
      const alone = checkBatchAt(buf.subarray(0, a.length + cut), a.length);
      expect(!alone.ok && alone.reason, `cut at ${cut}, buffer ends there`).toBe('incomplete');
    }
    const whole = checkBatchAt(buf, a.length, a.length + b.length);
    expect(whole.ok && [whole.size, whole.header.baseTimestamp]).toEqual([b.length, 7]);
  });

  it('calls a batch that does not fit the limit corrupt, not incomplete, even when cut', () => {
    const a = two();
    const b = two();
    const buf = Buffer.concat([a, b]);
    const check = checkBatchAt(buf, a.length, a.length + 20, b.length - 1);
    expect(!check.ok && check.reason).toBe('corrupt');
  });
});
