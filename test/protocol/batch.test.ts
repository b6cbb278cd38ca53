import fc from 'fast-check';
import { Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../src/common/crc32c.js';
import { isSluiceError } from '../../src/common/errors.js';
import {
  BATCH_HEADER_BYTES,
  checkBatchAt,
  decodeRecords,
  encodeBatch,
  type Header,
  type RecordInput,
  readBatchHeader,
  setBaseOffset,
  setPartitionLeaderEpoch,
  splitBatches,
} from '../../src/protocol/batch.js';
import { AT, resealed } from './batch-helpers.js';

const bytes = (maxLength: number): fc.Arbitrary<Uint8Array> =>
  fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const headerArb: fc.Arbitrary<Header> = fc.tuple(
  fc.string({ maxLength: 40 }),
  fc.option(bytes(20)).map((v): Uint8Array | null => v ?? null),
);
const recordArb: fc.Arbitrary<RecordInput> = fc.record({
  key: fc.option(bytes(300)),
  value: fc.option(bytes(70_000), { freq: 8 }),
  headers: fc.array(headerArb, { maxLength: 3 }),
  timestamp: fc.integer({ min: 0, max: 2 ** 45 }),
});

describe('record batch codec', () => {
  it('golden bytes: the header of a one-record batch sits at its documented positions', () => {
    const batch = encodeBatch([{ key: Buffer.from('k'), value: Buffer.from('v'), timestamp: 1000 }], {
      baseOffset: 7,
      partitionLeaderEpoch: 3,
    });
    // record: 0x95, offsetDelta 0, tsDelta 0, bin8 'k', bin8 'v', fixarray 0
    const record = '9500' + '00' + 'c4016b' + 'c40176' + '90';
    const afterCrc =
      'cd0000' +
      'ce00000000' +
      'd300000000000003e8' +
      'd300000000000003e8' +
      'd3ffffffffffffffff' +
      'd1ffff' +
      'd2ffffffff' +
      'ce00000001' +
      'dd00000001' +
      record;
    const crc = crc32c(Buffer.from(afterCrc, 'hex')).toString(16).padStart(8, '0');
    const expected =
      '9e' +
      'cf0000000000000007' +
      'ce' +
      (batch.length - 15).toString(16).padStart(8, '0') +
      'd200000003' +
      '02' +
      'ce' +
      crc +
      afterCrc;
    expect(batch.toString('hex')).toBe(expected);
    expect(batch.length).toBe(BATCH_HEADER_BYTES + 10);
  });

  it('round-trips any records, and a stock msgpack decoder reads the stored batch', () => {
    const unpackr = new Unpackr({ int64AsType: 'number', mapsAsObjects: true, useRecords: false });
    fc.assert(
      fc.property(
        fc.array(recordArb, { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        (records, baseOffset) => {
          const batch = encodeBatch(records, {
            baseOffset,
            partitionLeaderEpoch: 5,
            producerId: 9,
            producerEpoch: 1,
            baseSequence: 0,
          });
          const check = checkBatchAt(batch);
          expect(check.ok).toBe(true);
          const decoded = decodeRecords(batch);
          expect(decoded.map((r) => r.offset)).toEqual(records.map((_, i) => baseOffset + i));
          decoded.forEach((r, i) => {
            const input = records[i]!;
            expect(r.timestamp).toBe(input.timestamp);
            expect(r.key === null ? null : Buffer.from(r.key)).toEqual(input.key ?? null);
            expect(r.value === null ? null : Buffer.from(r.value)).toEqual(input.value ?? null);
            expect(r.headers.map(([k, v]) => [k, v === null ? null : Buffer.from(v)])).toEqual(input.headers);
          });
          const stock = unpackr.unpack(batch) as unknown[];
          expect(stock).toHaveLength(14);
          expect(stock[0]).toBe(baseOffset);
          expect((stock[13] as unknown[]).length).toBe(records.length);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('rewrites base offset and leader epoch in place without invalidating the CRC', () => {
    const batch = encodeBatch([{ value: Buffer.from('x'), timestamp: 1 }]);
    setBaseOffset(batch, 0, 2 ** 50);
    setPartitionLeaderEpoch(batch, 0, 12);
    const check = checkBatchAt(batch);
    expect(check.ok && check.header.baseOffset).toBe(2 ** 50);
    expect(readBatchHeader(batch).partitionLeaderEpoch).toBe(12);
  });

  it('detects a flipped bit anywhere after the rewritable fields, and a cut at every byte', () => {
    const batch = encodeBatch([
      { key: Buffer.from('key'), value: Buffer.from('value'), timestamp: 5 },
      { value: Buffer.from('second'), headers: [['h', Buffer.from('1')]], timestamp: 6 },
    ]);
    for (let i = 0; i < batch.length; i++) {
      if ((i >= 1 && i <= 9) || (i >= 16 && i <= 19)) continue; // baseOffset and epoch values are not covered
      const damaged = Buffer.from(batch);
      damaged[i]! ^= 0x01;
      const check = checkBatchAt(damaged);
      expect(check.ok, `bit flip at byte ${i}`).toBe(false);
    }
    for (let cut = 0; cut < batch.length; cut++) {
      const check = checkBatchAt(batch.subarray(0, cut));
      expect(check.ok).toBe(false);
      if (!check.ok && cut >= 15) expect(check.reason).toBe('incomplete');
    }
  });

  it('splits back-to-back batches and refuses trailing garbage with CORRUPT_MESSAGE', () => {
    const a = encodeBatch([{ value: Buffer.from('a'), timestamp: 1 }]);
    const b = encodeBatch([
      { value: Buffer.from('b'), timestamp: 2 },
      { value: null, timestamp: 3 },
    ]);
    const parts = splitBatches(Buffer.concat([a, b]));
    expect(parts.map((p) => [p.pos, p.size, p.header.recordCount])).toEqual([
      [0, a.length, 1],
      [a.length, b.length, 2],
    ]);
    try {
      splitBatches(Buffer.concat([a, Buffer.from([1, 2, 3])]));
      expect.unreachable();
    } catch (error) {
      expect(isSluiceError(error, 'CORRUPT_MESSAGE')).toBe(true);
    }
    expect(() => encodeBatch([])).toThrow(/at least one record/);
  });

  it('refuses a recordCount that the batch bytes cannot hold, CRC valid, before anything allocates for it', () => {
    const batch = encodeBatch([{ value: Buffer.alloc(20), timestamp: 1 }]);
    // 26 bytes of records: at most 4 records of the smallest size (6 bytes).
    const claiming = (count: number) =>
      resealed(batch, (b) => {
        b.writeUInt32BE(count, AT.recordCount);
        b.writeUInt32BE(count, AT.recordsArray);
        b.writeUInt32BE(count - 1, AT.lastOffsetDelta);
        return b;
      });
    expect(checkBatchAt(claiming(4)).ok).toBe(true);
    for (const count of [5, 1000, 2 ** 32 - 1]) {
      const check = checkBatchAt(claiming(count));
      expect(check.ok, `${count} records`).toBe(false);
      expect(!check.ok && check.message).toMatch(/cannot fit/);
    }
  });
});
