import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../src/common/errors.js';
import { LIMITS } from '../../src/common/limits.js';
import {
  checkBatchAt,
  encodeBatch,
  nextOffsetOf,
  type RecordInput,
  splitProducedBatches,
} from '../../src/protocol/batch.js';
import { AT, pack, resealed, thrown, withRecords } from './batch-helpers.js';

/**
 * A client's pre-built batches (`application/vnd.sluice.batches`) reach the log with offsets
 * assigned in place and no record decoded, so every header field must agree with the records
 * before the append. Each damaged batch here carries a valid CRC-32C and passes the stored-batch
 * check (`checkBatchAt`), so what refuses it is the check on that one field.
 */

const seed = Number(process.env.FUZZ_SEED ?? 20260518);

const two = (): Buffer =>
  encodeBatch([
    { key: Buffer.from('k'), value: Buffer.from('a'), timestamp: 1000 },
    { value: Buffer.from('b'), headers: [['h', Buffer.from('1')]], timestamp: 1005 },
  ]);

/** Expects `splitProducedBatches` to refuse `data` with `code`, and the stored-batch check to pass it. */
function expectRefused(data: Buffer, code: ErrorCode, message?: RegExp): void {
  const check = checkBatchAt(data);
  expect(check.ok, check.ok ? '' : check.message).toBe(true);
  const error = thrown(() => splitProducedBatches(data));
  expect(error?.code, 'refused').toBe(code);
  if (message) expect(error?.message).toMatch(message);
  expect(error?.retriable).toBe(false);
}

const setAttributes = (attributes: number) => (b: Buffer) => {
  b.writeUInt16BE(attributes, AT.attributes);
  return b;
};

describe('pre-built batches from clients', () => {
  it('accepts what encodeBatch builds, and counts the records of every batch', () => {
    const recordArb: fc.Arbitrary<RecordInput> = fc.record({
      key: fc.option(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a))),
      value: fc.option(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a))),
      headers: fc.array(
        fc.tuple(fc.string({ maxLength: 40, unit: 'grapheme' }), fc.constant(Buffer.from('v'))),
        { maxLength: 3 },
      ),
      timestamp: fc.integer({ min: -1, max: 2 ** 45 }),
    });
    fc.assert(
      fc.property(
        fc.array(fc.array(recordArb, { minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 4 }),
        (batches) => {
          const data = Buffer.concat(batches.map((records) => encodeBatch(records)));
          const split = splitProducedBatches(data);
          expect(split.batches.map((b) => b.header.recordCount)).toEqual(batches.map((r) => r.length));
          expect(split.recordCount).toBe(batches.reduce((n, r) => n + r.length, 0));
        },
      ),
      { seed, numRuns: 200 },
    );
  });

  it('refuses a batch that names a codec (1-4) but holds uncompressed records as CORRUPT_MESSAGE', () => {
    for (const codec of [1, 2, 3, 4]) {
      const data = resealed(two(), setAttributes(codec));
      const check = checkBatchAt(data);
      expect(check.ok).toBe(false);
      expect(check.ok ? '' : check.message).toMatch(/compressed batch header is 0xdd, not 0xc6/);
      expect(thrown(() => splitProducedBatches(data))?.code).toBe('CORRUPT_MESSAGE');
    }
  });

  it('refuses codec values 5-7, which name no codec, with INVALID_RECORD', () => {
    for (const codec of [5, 6, 7]) expectRefused(resealed(two(), setAttributes(codec)), 'INVALID_RECORD');
  });

  it('refuses the log-append-time, transactional and control bits from a client with INVALID_RECORD', () => {
    expectRefused(resealed(two(), setAttributes(0x08)), 'INVALID_RECORD', /timestamp type/);
    expectRefused(resealed(two(), setAttributes(0x10)), 'INVALID_RECORD', /transactional/);
    expectRefused(resealed(two(), setAttributes(0x20)), 'INVALID_RECORD', /control/);
    expectRefused(resealed(two(), setAttributes(0x30)), 'INVALID_RECORD');
  });

  it('refuses each unknown attribute bit (6-15) with INVALID_RECORD', () => {
    for (let bit = 6; bit < 16; bit++) {
      expectRefused(resealed(two(), setAttributes(1 << bit)), 'INVALID_RECORD', /attribute/);
    }
  });

  it('refuses a lastOffsetDelta other than recordCount - 1', () => {
    for (const delta of [2, 3, 1000, 2 ** 31 - 1, 2 ** 32 - 1]) {
      expectRefused(
        resealed(two(), (b) => {
          b.writeUInt32BE(delta, AT.lastOffsetDelta);
          return b;
        }),
        'INVALID_RECORD',
        /lastOffsetDelta/,
      );
    }
    // Below recordCount - 1 the stored-batch check already refuses it.
    const low = resealed(two(), (b) => {
      b.writeUInt32BE(0, AT.lastOffsetDelta);
      return b;
    });
    expect(thrown(() => splitProducedBatches(low))?.code).toBe('CORRUPT_MESSAGE');
  });

  it('refuses the two batches with lastOffsetDelta 2^31-1 that used to move the log end to 2^32', () => {
    const one = resealed(encodeBatch([{ value: Buffer.from('x'), timestamp: 1 }]), (b) => {
      b.writeUInt32BE(2 ** 31 - 1, AT.lastOffsetDelta);
      return b;
    });
    const check = checkBatchAt(one);
    expect(check.ok && nextOffsetOf(check.header)).toBe(2 ** 31);
    expect(thrown(() => splitProducedBatches(Buffer.concat([one, one])))?.code).toBe('INVALID_RECORD');
  });

  it('refuses a record count that differs from the records present', () => {
    // Values of ten bytes: the stored-batch check refuses a count that even 6-byte records cannot fill.
    const r0 = pack([0, 0, null, Buffer.alloc(10, 'a'), []]);
    const r1 = pack([1, 0, null, Buffer.alloc(10, 'b'), []]);
    const r2 = pack([2, 0, null, Buffer.alloc(10, 'c'), []]);
    // Three claimed, two present: the walk runs off the end of the batch.
    expectRefused(withRecords([r0, r1], { count: 3 }), 'CORRUPT_MESSAGE', /past the end/);
    // Two claimed, three present: the third is stray bytes.
    expectRefused(withRecords([r0, r1, r2], { count: 2 }), 'CORRUPT_MESSAGE', /stray bytes/);
    expect(splitProducedBatches(withRecords([r0, r1, r2])).recordCount).toBe(3);
  });

  it('refuses stray bytes after the last record', () => {
    for (const extra of [[0x00], [0xc0], [0x90, 0x90, 0x90]]) {
      expectRefused(
        resealed(two(), (b) => Buffer.concat([b, Buffer.from(extra)])),
        'CORRUPT_MESSAGE',
        /stray bytes/,
      );
    }
  });

  it('refuses offset deltas that are not 0, 1, ..., count - 1 in order', () => {
    const record = (offsetDelta: number) => pack([offsetDelta, 0, null, Buffer.from('v'), []]);
    for (const deltas of [
      [0, 2],
      [1, 0],
      [0, 0],
      [1, 1],
      [-1, 1],
      [0, 300],
    ]) {
      expectRefused(withRecords(deltas.map(record)), 'INVALID_RECORD', /offset delta/);
    }
    // What compaction leaves behind (kept offsets, gaps) is a stored batch, not a client's.
    const compacted = encodeBatch(
      [
        { value: Buffer.from('a'), timestamp: 1, offsetDelta: 0 },
        { value: Buffer.from('c'), timestamp: 1, offsetDelta: 2 },
      ],
      { lastOffsetDelta: 2 },
    );
    expectRefused(compacted, 'INVALID_RECORD');
  });

  it('refuses a maxTimestamp that is not the largest record timestamp', () => {
    const records = [pack([0, 0, null, null, []]), pack([1, 7, null, null, []])];
    expect(
      splitProducedBatches(withRecords(records, { baseTimestamp: 1000, maxTimestamp: 1007 })).recordCount,
    ).toBe(2);
    for (const maxTimestamp of [1006, 1008, 1000, 2 ** 40]) {
      expectRefused(
        withRecords(records, { baseTimestamp: 1000, maxTimestamp }),
        'INVALID_RECORD',
        /maxTimestamp/,
      );
    }
  });

  it('refuses a baseTimestamp that is not the smallest record timestamp', () => {
    // Every delta above 0: baseTimestamp is below every record.
    expectRefused(
      withRecords([pack([0, 3, null, null, []]), pack([1, 5, null, null, []])], { maxTimestamp: 1005 }),
      'INVALID_RECORD',
      /baseTimestamp/,
    );
    // A negative delta: a record before baseTimestamp.
    expectRefused(
      withRecords([pack([0, 0, null, null, []]), pack([1, -2, null, null, []])], { maxTimestamp: 1000 }),
      'INVALID_RECORD',
      /baseTimestamp/,
    );
  });

  it('refuses a record timestamp below -1 with INVALID_TIMESTAMP', () => {
    expectRefused(
      withRecords([pack([0, 0, null, null, []])], { baseTimestamp: -2, maxTimestamp: -2 }),
      'INVALID_TIMESTAMP',
    );
    expect(
      splitProducedBatches(
        withRecords([pack([0, 0, null, null, []])], { baseTimestamp: -1, maxTimestamp: -1 }),
      ).recordCount,
    ).toBe(1);
  });

  it('takes producer fields all -1 or none negative, and refuses a mix', () => {
    const write = {
      producerId: (b: Buffer, v: number) => b.writeBigInt64BE(BigInt(v), AT.producerId),
      producerEpoch: (b: Buffer, v: number) => b.writeInt16BE(v, AT.producerEpoch),
      baseSequence: (b: Buffer, v: number) => b.writeInt32BE(v, AT.baseSequence),
    };
    const withFields = (fields: { producerId: number; producerEpoch: number; baseSequence: number }) =>
      resealed(two(), (b) => {
        write.producerId(b, fields.producerId);
        write.producerEpoch(b, fields.producerEpoch);
        write.baseSequence(b, fields.baseSequence);
        return b;
      });
    // One field set while the others stay -1, or a negative one beside set ones: refused.
    for (const field of ['producerId', 'producerEpoch', 'baseSequence'] as const) {
      for (const value of [0, 1]) {
        expectRefused(
          withFields({ producerId: -1, producerEpoch: -1, baseSequence: -1, [field]: value }),
          'INVALID_RECORD',
          /producer|sequence/,
        );
      }
      expectRefused(
        withFields({ producerId: 3, producerEpoch: 0, baseSequence: 0, [field]: -2 }),
        'INVALID_RECORD',
        /producer|sequence/,
      );
    }
    expect(
      splitProducedBatches(withFields({ producerId: 9, producerEpoch: 2, baseSequence: 40 })).recordCount,
    ).toBe(2);
    expect(
      splitProducedBatches(
        encodeBatch([{ value: null, timestamp: 1 }], { producerId: 9, producerEpoch: 0, baseSequence: 0 }),
      ).recordCount,
    ).toBe(1);
  });

  it('refuses records that are not [offsetDelta, timestampDelta, key, value, headers]', () => {
    const cases: [unknown[], RegExp][] = [
      [[0, 0, Buffer.from('key'), null], /5-element/],
      [[0, 0, null, null, [], 1], /5-element/],
      [[0, 0, 'key', null, []], /bin or nil/],
      [[0, 0, null, 7, []], /bin or nil/],
      [[0, 0.5, null, null, []], /integer/],
      [[0, 0, null, null, {}], /array/],
      [[0, 0, null, null, [['h']]], /pair/],
      [[0, 0, null, null, [[Buffer.from('h'), null]]], /string/],
      [[0, 0, null, null, [['h', 'str']]], /bin or nil/],
    ];
    for (const [record, message] of cases) {
      expectRefused(withRecords([pack(record)]), 'CORRUPT_MESSAGE', message);
    }
  });

  it('refuses a header name that is not UTF-8, and more headers than the limit, with INVALID_RECORD', () => {
    // fixarray 5, 0, 0, nil, nil, fixarray 1, fixarray 2, fixstr 2 "\xff\xfe", nil
    const badName = Buffer.from([0x95, 0, 0, 0xc0, 0xc0, 0x91, 0x92, 0xa2, 0xff, 0xfe, 0xc0]);
    expectRefused(withRecords([badName]), 'INVALID_RECORD', /UTF-8/);
    const headers = Array.from({ length: LIMITS.headersPerRecordMax + 1 }, () => ['h', null]);
    expectRefused(withRecords([pack([0, 0, null, null, headers])]), 'INVALID_RECORD', /headers/);
    const most = Array.from({ length: LIMITS.headersPerRecordMax }, () => ['h', null]);
    expect(splitProducedBatches(withRecords([pack([0, 0, null, null, most])])).recordCount).toBe(1);
  });

  it('refuses more than requestRecordsMax records over all the batches of a request with TOO_MANY_RECORDS', () => {
    const batchOf = (n: number) =>
      encodeBatch(Array.from({ length: n }, (_, i) => ({ value: null, timestamp: i })));
    const half = LIMITS.requestRecordsMax / 2;
    const full = Buffer.concat([batchOf(half), batchOf(half)]);
    expect(splitProducedBatches(full).recordCount).toBe(LIMITS.requestRecordsMax);
    const over = Buffer.concat([batchOf(half), batchOf(half), batchOf(1)]);
    const error = thrown(() => splitProducedBatches(over));
    expect(error?.code).toBe('TOO_MANY_RECORDS');
    expect(error?.status).toBe(413);
    expect(thrown(() => splitProducedBatches(batchOf(3), { recordsMax: 2 }))?.code).toBe('TOO_MANY_RECORDS');
    expect(splitProducedBatches(batchOf(3), { recordsMax: 3 }).recordCount).toBe(3);
  });

  it('refuses a batch over batchBytesMax with MESSAGE_TOO_LARGE, and an empty or torn body with CORRUPT_MESSAGE', () => {
    const batch = two();
    expect(thrown(() => splitProducedBatches(batch, { batchBytesMax: batch.length - 1 }))?.code).toBe(
      'MESSAGE_TOO_LARGE',
    );
    expect(splitProducedBatches(batch, { batchBytesMax: batch.length }).recordCount).toBe(2);
    expect(splitProducedBatches(Buffer.alloc(0)).batches).toEqual([]);
    for (let cut = 1; cut < batch.length; cut++) {
      expect(thrown(() => splitProducedBatches(batch.subarray(0, cut)))?.code, `cut at ${cut}`).toBe(
        'CORRUPT_MESSAGE',
      );
    }
  });

  it('names the position of the refused batch in the body', () => {
    const good = two();
    const bad = resealed(two(), setAttributes(0x10));
    const error = thrown(() => splitProducedBatches(Buffer.concat([good, bad])));
    expect(error?.message).toMatch(new RegExp(`byte ${good.length}\\b`));
    expect(error?.details).toMatchObject({ position: good.length });
  });
});
