import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeBatchChecked,
  decodeBatchRun,
  decodeRecords,
  encodeBatch,
  type RecordInput,
} from '../../src/protocol/batch.js';
import { AT, resealed, thrown } from './batch-helpers.js';

/**
 * The decoding paths (JSON, NDJSON, SSE) serve what the log holds. A batch damaged on disk after
 * its CRC was checked must be refused by its CRC, named by its base offset, and must not take the
 * good records before it down with it.
 */

const seed = Number(process.env.FUZZ_SEED ?? 20260519);

const batchAt = (baseOffset: number, values: string[]): Buffer =>
  encodeBatch(
    values.map((v, i) => ({ value: Buffer.from(v), timestamp: 100 + i })),
    { baseOffset },
  );

const values = (records: { value: Uint8Array | null }[]) =>
  records.map((r) => (r.value === null ? null : Buffer.from(r.value).toString()));

describe('decodeBatchChecked', () => {
  it('decodes a good batch as decodeRecords does', () => {
    const batch = batchAt(40, ['a', 'b', 'c']);
    expect(decodeBatchChecked(batch)).toEqual(decodeRecords(batch));
  });

  it('refuses a value byte flipped after the write with a non-retriable CORRUPT_MESSAGE naming the base offset', () => {
    const batch = batchAt(40, ['hello']);
    const damaged = Buffer.from(batch);
    damaged[damaged.length - 2]! ^= 0x20; // the value's last byte (before the headers' 0x90): still decodes
    expect(values(decodeRecords(damaged))).toEqual(['hellO']);
    const error = thrown(() => decodeBatchChecked(damaged));
    expect(error?.code).toBe('CORRUPT_MESSAGE');
    expect(error?.retriable).toBe(false);
    expect(error?.message).toMatch(/offset 40\b.*CRC-32C/);
    expect(error?.details).toMatchObject({ baseOffset: 40, position: 0 });
  });

  it('names the base offset of a batch that is not the first, and its byte position', () => {
    const first = batchAt(0, ['a']);
    const damaged = batchAt(1, ['b']);
    damaged[damaged.length - 1]! ^= 0x01;
    const run = Buffer.concat([first, damaged]);
    const error = thrown(() => decodeBatchChecked(run, first.length));
    expect(error?.details).toMatchObject({ baseOffset: 1, position: first.length });
  });

  it('refuses a stored batch that names no codec (5) with UNSUPPORTED_COMPRESSION_TYPE naming its offset', () => {
    const compressed = resealed(batchAt(9, ['z']), (b) => {
      b.writeUInt16BE(5, AT.attributes);
      return b;
    });
    const error = thrown(() => decodeBatchChecked(compressed));
    expect(error?.code).toBe('UNSUPPORTED_COMPRESSION_TYPE');
    expect(error?.message).toMatch(/offset 9\b/);
  });

  it('refuses a torn batch and one whose header is not a batch, naming the byte position', () => {
    const batch = batchAt(3, ['a']);
    expect(thrown(() => decodeBatchChecked(batch.subarray(0, batch.length - 1)))?.message).toMatch(
      /offset 3\b.*needs/,
    );
    const garbage = Buffer.alloc(100, 0x41);
    const error = thrown(() => decodeBatchChecked(garbage));
    expect(error?.code).toBe('CORRUPT_MESSAGE');
    expect(error?.message).toMatch(/byte 0\b/);
    expect(error?.details).toEqual({ position: 0 });
  });
});

describe('decodeBatchRun', () => {
  it('returns every record at or after fromOffset when all batches are good', () => {
    const run = Buffer.concat([batchAt(10, ['a', 'b']), batchAt(12, ['c']), batchAt(13, ['d', 'e'])]);
    const decoded = decodeBatchRun(run, 11);
    expect(decoded.problem).toBeUndefined();
    expect(decoded.records.map((r) => r.offset)).toEqual([11, 12, 13, 14]);
    expect(values(decoded.records)).toEqual(['b', 'c', 'd', 'e']);
    expect(decoded.nextOffset).toBe(15);
    expect(decodeBatchRun(Buffer.alloc(0), 7)).toEqual({ records: [], nextOffset: 7, problem: undefined });
    // Batches wholly before fromOffset give no records, and the reader continues at fromOffset.
    expect(decodeBatchRun(batchAt(0, ['a', 'b']), 5)).toEqual({
      records: [],
      nextOffset: 5,
      problem: undefined,
    });
  });

  it('serves the records before a bad batch and says where it stopped and why', () => {
    const a = batchAt(10, ['a', 'b']);
    const bad = batchAt(12, ['c']);
    bad[bad.length - 1]! ^= 0x01;
    const after = batchAt(13, ['d']);
    const decoded = decodeBatchRun(Buffer.concat([a, bad, after]), 10);
    expect(values(decoded.records)).toEqual(['a', 'b']);
    expect(decoded.nextOffset).toBe(12);
    expect(decoded.problem).toMatchObject({ offset: 12, baseOffset: 12, position: a.length });
    expect(decoded.problem?.error.code).toBe('CORRUPT_MESSAGE');
    expect(decoded.problem?.error.message).toMatch(/offset 12\b/);
  });

  it('reports a first batch that is bad with no records and the requested offset', () => {
    const bad = batchAt(5, ['x']);
    bad[bad.length - 1]! ^= 0x01;
    const decoded = decodeBatchRun(bad, 6);
    expect(decoded.records).toEqual([]);
    expect(decoded.problem).toMatchObject({ offset: 6, baseOffset: 5, position: 0 });
  });

  it('with checkCrc false leaves the CRC to the read that checked it, and still refuses bad framing', () => {
    const a = batchAt(0, ['a']);
    const wrongCrc = batchAt(1, ['b']);
    wrongCrc.writeUInt32BE(wrongCrc.readUInt32BE(AT.crc) ^ 1, AT.crc);
    expect(decodeBatchRun(Buffer.concat([a, wrongCrc])).problem?.error.code).toBe('CORRUPT_MESSAGE');
    const unchecked = decodeBatchRun(Buffer.concat([a, wrongCrc]), 0, Number.MAX_SAFE_INTEGER, false);
    expect(values(unchecked.records)).toEqual(['a', 'b']);
    expect(unchecked.problem).toBeUndefined();
    const torn = decodeBatchRun(
      Buffer.concat([a, wrongCrc.subarray(0, 30)]),
      0,
      Number.MAX_SAFE_INTEGER,
      false,
    );
    expect(torn.problem).toMatchObject({ offset: 1, position: a.length });
  });

  it('reports a run that ends in a torn batch or in bytes that are not a batch', () => {
    const a = batchAt(0, ['a']);
    const b = batchAt(1, ['b']);
    const torn = decodeBatchRun(Buffer.concat([a, b.subarray(0, 30)]));
    expect(values(torn.records)).toEqual(['a']);
    expect(torn.problem).toMatchObject({ offset: 1, baseOffset: 1, position: a.length });
    const junk = decodeBatchRun(Buffer.concat([a, Buffer.from([0x00, 0x01, 0x02])]));
    expect(junk.problem).toMatchObject({ offset: 1, baseOffset: undefined, position: a.length });
    expect(junk.problem?.error.code).toBe('CORRUPT_MESSAGE');
  });

  it('for any run and any damaged byte, returns exactly the records of the batches before the damaged one', () => {
    const recordArb: fc.Arbitrary<RecordInput> = fc.record({
      key: fc.option(fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a))),
      value: fc.option(fc.uint8Array({ maxLength: 30 }).map((a) => Buffer.from(a))),
      timestamp: fc.integer({ min: 0, max: 2 ** 40 }),
    });
    fc.assert(
      fc.property(
        fc.array(fc.array(recordArb, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 6 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (batches, where, flip) => {
          let offset = 0;
          const encoded = batches.map((records) => {
            const batch = encodeBatch(records, { baseOffset: offset });
            offset += records.length;
            return batch;
          });
          const run = Buffer.concat(encoded);
          // Damage a byte the CRC covers: from byte 26 of some batch on.
          const index = where % encoded.length;
          const start = encoded.slice(0, index).reduce((n, b) => n + b.length, 0);
          const at = start + 26 + ((where >>> 3) % (encoded[index]!.length - 26));
          run[at]! ^= flip;
          const decoded = decodeBatchRun(run);
          const before = batches.slice(0, index).reduce((n, r) => n + r.length, 0);
          expect(decoded.records.map((r) => r.offset)).toEqual(Array.from({ length: before }, (_, i) => i));
          expect(decoded.problem?.position).toBe(start);
          expect(decoded.problem?.offset).toBe(before);
          expect(decoded.nextOffset).toBe(before);
        },
      ),
      { seed, numRuns: 300 },
    );
  });
});
