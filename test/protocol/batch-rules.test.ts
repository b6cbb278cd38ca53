import { describe, expect, it } from 'vitest';
import { crc32c } from '../../src/common/crc32c.js';
import { LIMITS } from '../../src/common/limits.js';
import {
  assertValidBatch,
  checkBatchAt,
  decodeBatchChecked,
  decodeBatchRun,
  decodeRecords,
  encodeBatch,
  encodeBatchWith,
  type RecordInput,
  readBatchHeader,
  setBaseOffset,
  splitBatches,
  splitProducedBatches,
} from '../../src/protocol/batch.js';
import { AT, pack, resealed, thrown, withRecords } from './batch-helpers.js';

/**
 * Rules of the batch codec that a mutation run found unguarded: the defaults an encoded header
 * carries, the size bound records are written into, the boundaries of the header checks, which
 * check refuses a batch when several would, and what each refusal's message says (the HTTP layer
 * shows a CORRUPT_MESSAGE's or INVALID_RECORD's message to the client, so it must name the
 * offending value).
 */

const one = (): Buffer => encodeBatch([{ value: Buffer.from('v'), timestamp: 1000 }]);
const badCrc = (): Buffer => {
  const b = one();
  b[b.length - 1]! ^= 0xff;
  return b;
};

describe('encoding', () => {
  it('an encoded header carries no leader epoch (-1) and the attributes it was given', () => {
    expect(readBatchHeader(one()).partitionLeaderEpoch).toBe(-1);
    const withAttributes = encodeBatch([{ value: null, timestamp: 1 }], { attributes: 0x08 });
    expect(readBatchHeader(withAttributes).attributes).toBe(0x08);
  });

  it('reads magic and the stored CRC-32C from the header, at any position in a buffer', () => {
    for (const lead of [0, 40]) {
      const b = Buffer.concat([Buffer.alloc(lead, 0x11), one()]);
      const header = readBatchHeader(b, lead);
      expect(header.magic).toBe(2);
      expect(header.crc).toBe(crc32c(b.subarray(lead + 26)));
    }
  });

  it('refuses too many records before looking at any record, naming the limit', () => {
    const records: RecordInput[] = Array.from({ length: LIMITS.batchRecordsMax + 1 }, () => ({
      value: null,
      timestamp: 0,
    }));
    // The last record is also invalid: the count is what the encoder refuses first.
    records[records.length - 1] = { value: null, timestamp: -5 };
    const error = thrown(() => encodeBatch(records));
    expect(error?.code).toBe('TOO_MANY_RECORDS');
    expect(error?.message).toBe(`a batch holds at most ${LIMITS.batchRecordsMax} records`);
    const direct = thrown(() =>
      encodeBatchWith(LIMITS.batchRecordsMax + 1, 0, () => 0, { baseTimestamp: 0, maxTimestamp: 0 }),
    );
    expect(direct?.code).toBe('TOO_MANY_RECORDS');
    expect(direct?.message).toBe(`a batch holds at most ${LIMITS.batchRecordsMax} records`);
  });

  it('names what is wrong with a record it refuses', () => {
    const deltas = thrown(() =>
      encodeBatch([
        { value: null, timestamp: 0, offsetDelta: 3 },
        { value: null, timestamp: 0, offsetDelta: 3 },
      ]),
    );
    expect(deltas?.message).toBe('record offset deltas must increase');
    expect(thrown(() => encodeBatch([{ value: null, timestamp: -5 }]))?.message).toBe(
      'timestamp -5 is not a valid millisecond time',
    );
    const headers = Array.from({ length: LIMITS.headersPerRecordMax + 1 }, () => ['h', null] as const);
    expect(thrown(() => encodeBatch([{ value: null, headers, timestamp: 0 }]))?.message).toBe(
      `a record holds at most ${LIMITS.headersPerRecordMax} headers`,
    );
    const badName = [[7, null]] as unknown as RecordInput['headers'];
    expect(thrown(() => encodeBatch([{ value: null, headers: badName, timestamp: 0 }]))?.message).toBe(
      'a header name must be a string',
    );
  });

  it('a batch of none of its records is a broken caller, not a batch', () => {
    expect(() => encodeBatchWith(0, 0, (_b, pos) => pos, { baseTimestamp: 0, maxTimestamp: 0 })).toThrow(
      /at least one record/,
    );
  });

  it('records may fill their size bound exactly, and a writer that overruns it is caught', () => {
    // [0, 0, nil, bin 'abcd', []]: 11 bytes.
    const record = Buffer.from([0x95, 0x00, 0x00, 0xc0, 0xc4, 0x04, 0x61, 0x62, 0x63, 0x64, 0x90]);
    const exact = encodeBatchWith(1, record.length, (buf, pos) => pos + record.copy(buf, pos), {
      baseTimestamp: 5,
      maxTimestamp: 5,
    });
    expect(checkBatchAt(exact).ok).toBe(true);
    expect(Buffer.from(decodeRecords(exact)[0]!.value!).toString()).toBe('abcd');
    expect(() =>
      encodeBatchWith(1, 4, (_buf, pos) => pos + 20, { baseTimestamp: 0, maxTimestamp: 0 }),
    ).toThrow('records overran their size bound');
  });

  it('the size bound holds for records in their widest forms: 5-byte offset deltas, 9-byte timestamp deltas, bin32 keys and values', () => {
    const big = (fill: number) => Buffer.alloc(65_536, fill);
    const records: RecordInput[] = Array.from({ length: 8 }, (_, i) => ({
      key: big(i),
      value: big(i + 100),
      timestamp: i === 0 ? 0 : 2 ** 32 + i,
      offsetDelta: 70_000 + i,
    }));
    const batch = encodeBatch(records);
    expect(checkBatchAt(batch, 0, batch.length, Number.MAX_SAFE_INTEGER).ok).toBe(true);
    const decoded = decodeRecords(batch);
    expect(decoded.map((r) => [r.offset, r.timestamp])).toEqual(
      records.map((r) => [r.offsetDelta, r.timestamp]),
    );
    expect(decoded.every((r, i) => Buffer.from(r.value!).equals(big(i + 100)))).toBe(true);
  });

  it('the size bound holds for many headers whose names are 3-byte UTF-8 in str16 form', () => {
    const name = '€'.repeat(86); // 258 bytes of UTF-8
    const headers = Array.from({ length: 100 }, () => [name, null] as const);
    const batch = encodeBatch([{ value: null, headers, timestamp: 0 }]);
    expect(checkBatchAt(batch).ok).toBe(true);
    const [record] = decodeRecords(batch);
    expect(record!.headers).toHaveLength(100);
    expect(record!.headers.every(([n, v]) => n === name && v === null)).toBe(true);
  });

  it('setBaseOffset takes any safe non-negative offset, 0 included, and nothing else', () => {
    const b = one();
    setBaseOffset(b, 0, 0);
    expect(readBatchHeader(b).baseOffset).toBe(0);
    setBaseOffset(b, 0, 2 ** 40 + 3);
    expect(readBatchHeader(b).baseOffset).toBe(2 ** 40 + 3);
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN]) {
      expect(() => setBaseOffset(b, 0, bad)).toThrow(`base offset ${bad} out of range`);
    }
    expect(checkBatchAt(b).ok).toBe(true);
  });
});

describe('checkBatchAt boundaries and messages', () => {
  it('15 bytes are enough to judge the markers and length: a wrong marker there is corrupt, not incomplete', () => {
    const b = one().subarray(0, 15);
    b[0] = 0x00;
    const check = checkBatchAt(b);
    expect(check).toEqual({
      ok: false,
      reason: 'corrupt',
      message: 'byte 0 of the batch header is 0x00, not 0x9e',
    });
    expect(checkBatchAt(Buffer.alloc(3))).toEqual({
      ok: false,
      reason: 'incomplete',
      message: '3 bytes is shorter than a batch header',
    });
  });

  it('names the byte and the value found at a wrong marker, before and after the length prefix', () => {
    const early = one();
    early[10] = 0x05;
    expect(checkBatchAt(early)).toMatchObject({ message: 'byte 10 of the batch header is 0x05, not 0xce' });
    const late = resealed(one(), (b) => {
      b[26] = 0x07;
      return b;
    });
    expect(checkBatchAt(late)).toMatchObject({ message: 'byte 26 of the batch header is 0x07, not 0xcd' });
    // At a position inside a larger buffer too.
    const inside = Buffer.concat([Buffer.alloc(30, 0xaa), late]);
    expect(checkBatchAt(inside, 30)).toMatchObject({
      message: 'byte 26 of the batch header is 0x07, not 0xcd',
    });
    const insideEarly = Buffer.concat([Buffer.alloc(30, 0xaa), early]);
    expect(checkBatchAt(insideEarly, 30)).toMatchObject({
      message: 'byte 10 of the batch header is 0x05, not 0xce',
    });
  });

  it('a batch of exactly the header size is long enough to be judged by its record count', () => {
    const empty = resealed(one().subarray(0, 79), (b) => {
      b.writeUInt32BE(0, AT.recordCount);
      b.writeUInt32BE(0, AT.recordsArray);
      return b;
    });
    expect(checkBatchAt(empty)).toEqual({ ok: false, reason: 'corrupt', message: 'batch holds no records' });
  });

  it('the CRC is checked by default everywhere and skipped only when asked', () => {
    const bad = badCrc();
    expect(checkBatchAt(bad)).toMatchObject({ ok: false, reason: 'corrupt', message: /CRC-32C mismatch/ });
    expect(checkBatchAt(bad, 0, bad.length, LIMITS.batchBytesMax, false).ok).toBe(true);
    expect(thrown(() => assertValidBatch(bad))?.code).toBe('CORRUPT_MESSAGE');
    expect(assertValidBatch(bad, 0, bad.length, undefined, false).recordCount).toBe(1);
    expect(thrown(() => splitBatches(bad))?.code).toBe('CORRUPT_MESSAGE');
    expect(splitBatches(bad, undefined, false)).toHaveLength(1);
  });
});

describe('refusals of a client batch name the value refused', () => {
  const refusal = (data: Buffer, options?: Parameters<typeof splitProducedBatches>[1]) =>
    thrown(() => splitProducedBatches(data, options))?.message;

  it('request record limit, producer fields, codecs and attribute bits', () => {
    expect(refusal(Buffer.concat([one(), one()]), { recordsMax: 1 })).toBe(
      `batch at byte ${one().length}: a request holds at most 1 records`,
    );
    const producer = resealed(one(), (b) => {
      b.writeBigInt64BE(7n, AT.producerId);
      return b;
    });
    expect(refusal(producer)).toBe(
      'batch at byte 0: producer id 7, epoch -1, base sequence -1: either all are -1 (no idempotent producer) or none is negative',
    );
    const codec5 = resealed(one(), (b) => {
      b.writeUInt16BE(5, AT.attributes);
      return b;
    });
    expect(refusal(codec5)).toBe('batch at byte 0: attributes name compression codec 5, which is no codec');
    const bit6 = resealed(one(), (b) => {
      b.writeUInt16BE(0x40, AT.attributes);
      return b;
    });
    expect(refusal(bit6)).toBe('batch at byte 0: unknown attribute bits 0x40');
  });

  it('stray bytes and timestamps', () => {
    const record = pack([0, 0, null, null, []]);
    expect(refusal(withRecords([Buffer.concat([record, Buffer.from([0xc0, 0xc0])])], { count: 1 }))).toBe(
      'batch at byte 0: 2 stray bytes after the last record',
    );
    const late = withRecords([pack([0, 5, null, null, []])], { baseTimestamp: 1000, maxTimestamp: 1005 });
    expect(refusal(late)).toBe(
      'batch at byte 0: baseTimestamp 1000 is not the smallest record timestamp 1005',
    );
    const early = withRecords([pack([0, 0, null, null, []])], { baseTimestamp: -3, maxTimestamp: -3 });
    expect(refusal(early)).toBe(
      'batch at byte 0: record timestamps -3 to -3 are not valid millisecond times',
    );
  });
});

describe('decoding stored batches', () => {
  it('refuses a codec number that names no codec with a message naming it', () => {
    const codec6 = resealed(one(), (b) => {
      b.writeUInt16BE(6, AT.attributes);
      return b;
    });
    expect(thrown(() => decodeRecords(codec6))?.message).toBe('compression codec 6 is no codec');
  });

  it('0x80 is no integer: an offset delta written as a map marker is corrupt', () => {
    const b = withRecords([Buffer.from([0x95, 0x80, 0x00, 0xc0, 0xc0, 0x90])]);
    const error = thrown(() => decodeRecords(b));
    expect(error?.code).toBe('CORRUPT_MESSAGE');
    expect(error?.message).toBe('expected an integer, found 0x80');
  });

  it('a batch whose base offset cannot be read is named by its byte position, and its details hold no base offset', () => {
    const garbage = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    const error = thrown(() => decodeBatchChecked(garbage));
    expect(error?.message).toBe('batch at byte 0: byte 0 of the batch header is 0x01, not 0x9e');
    expect(error?.details).toStrictEqual({ position: 0 });
    const bad = badCrc();
    const named = thrown(() => decodeBatchChecked(bad));
    expect(named?.message).toMatch(/^batch at offset 0: CRC-32C mismatch/);
    expect(named?.details).toStrictEqual({ baseOffset: 0, position: 0 });
  });

  it('the base offset a bad batch claims is reported when its first ten bytes are a base offset, and only then', () => {
    const good = one();
    const claim = (tail: Buffer) => decodeBatchRun(Buffer.concat([good, tail])).problem?.baseOffset;
    const offsetBytes = (hi: number, lo: number) => {
      const b = Buffer.alloc(10);
      b[0] = 0x9e;
      b[1] = 0xcf;
      b.writeUInt32BE(hi, 2);
      b.writeUInt32BE(lo, 6);
      return b;
    };
    expect(claim(offsetBytes(0, 7))).toBe(7);
    expect(claim(offsetBytes(1, 7))).toBe(2 ** 32 + 7);
    expect(claim(offsetBytes(0x1fffff, 0))).toBe(0x1fffff * 2 ** 32);
    expect(claim(offsetBytes(0x200000, 0))).toBeUndefined();
    expect(claim(offsetBytes(0, 7).subarray(0, 9))).toBeUndefined();
    expect(claim(Buffer.from([0x9e, 0xcf, 0, 0]))).toBeUndefined();
    const noArray = offsetBytes(0, 7);
    noArray[0] = 0x9f;
    expect(claim(noArray)).toBeUndefined();
    const noUint64 = offsetBytes(0, 7);
    noUint64[1] = 0xce;
    expect(claim(noUint64)).toBeUndefined();
    // Alone, at the start of the run.
    expect(decodeBatchRun(offsetBytes(0, 9)).problem?.baseOffset).toBe(9);
    expect(decodeBatchRun(offsetBytes(0, 9).subarray(0, 9)).problem?.baseOffset).toBeUndefined();
  });
});
