import { Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  BATCH_HEADER_BYTES,
  checkBatchAt,
  decodeRecords,
  encodeBatch,
  splitProducedBatches,
  writeArrayHeader,
  writeBinHeader,
  writeInt,
  writeStrHeader,
} from '../../src/protocol/batch.js';
import { AT, resealed, thrown, withRecords } from './batch-helpers.js';

/**
 * Every msgpack length and integer form batch.ts writes or reads, at each boundary between two
 * forms: fast-check's default sizes never reach a bin16, str16 or array16, so the sizes here are
 * explicit. (batch.ts writes and reads no maps.) Each case is checked three ways: the marker byte
 * the encoder chose, what decodeRecords reads back, and what a stock msgpack decoder reads.
 */

const stock = new Unpackr({ int64AsType: 'number', mapsAsObjects: true, useRecords: false });
const R = BATCH_HEADER_BYTES; // where the first record starts

/** The record of a one-record batch as a stock decoder reads it. */
const stockRecord = (batch: Buffer) => ((stock.unpack(batch) as unknown[])[13] as unknown[][])[0]!;

/** A string of exactly `bytes` UTF-8 bytes, made of `unit` as far as it fits, then 'a's. */
function utf8OfBytes(bytes: number, unit: string): string {
  const unitBytes = Buffer.byteLength(unit);
  const units = Math.floor(bytes / unitBytes);
  const s = unit.repeat(units) + 'a'.repeat(bytes - units * unitBytes);
  expect(Buffer.byteLength(s)).toBe(bytes);
  return s;
}

describe('msgpack forms at their boundaries', () => {
  it('bin8, bin16 and bin32 for keys and values of 0, 255, 256, 65535 and 65536 bytes', () => {
    const cases: [number, number, number][] = [
      [0, 0xc4, 2],
      [1, 0xc4, 2],
      [255, 0xc4, 2],
      [256, 0xc5, 3],
      [65535, 0xc5, 3],
      [65536, 0xc6, 5],
      [300_000, 0xc6, 5],
    ];
    for (const [length, marker, headerBytes] of cases) {
      const key = Buffer.alloc(length, 0x6b);
      const value = Buffer.alloc(length, 0x76);
      const batch = encodeBatch([{ key, value, timestamp: 1 }]);
      // record: 0x95, offsetDelta, timestampDelta, key, value, headers
      expect(batch[R + 3], `key of ${length}`).toBe(marker);
      expect(batch[R + 3 + headerBytes + length], `value of ${length}`).toBe(marker);
      const [record] = decodeRecords(batch);
      expect(Buffer.from(record!.key!).equals(key)).toBe(true);
      expect(Buffer.from(record!.value!).equals(value)).toBe(true);
      expect(batch.length).toBe(R + 3 + 2 * (headerBytes + length) + 1);
      const read = stockRecord(batch);
      expect((read[2] as Uint8Array).length).toBe(length);
      expect(splitProducedBatches(batch).recordCount).toBe(1);
    }
    const out = Buffer.alloc(5);
    expect(writeBinHeader(out, 0, 0xffff)).toBe(3);
    expect(out.subarray(0, 3).toString('hex')).toBe('c5ffff');
    expect(writeBinHeader(out, 0, 0x10000)).toBe(5);
    expect(out.toString('hex')).toBe('c600010000');
  });

  it('fixstr, str8, str16 and str32 for header names at every boundary, in 1- to 4-byte UTF-8', () => {
    const boundaries: [number, number][] = [
      [0, 0xa0],
      [31, 0xbf],
      [32, 0xd9],
      [255, 0xd9],
      [256, 0xda],
      [65535, 0xda],
      [65536, 0xdb],
    ];
    for (const unit of ['a', 'é', '€', '😀']) {
      for (const [bytes, marker] of boundaries) {
        const name = utf8OfBytes(bytes, unit);
        const batch = encodeBatch([{ headers: [[name, null]], timestamp: 1 }]);
        // record: 0x95, 0, 0, nil, nil, fixarray 1, fixarray 2, then the name
        const at = R + 7;
        expect(batch[at], `${bytes} bytes of ${unit}`).toBe(marker);
        const headerBytes = bytes < 32 ? 1 : bytes < 0x100 ? 2 : bytes < 0x10000 ? 3 : 5;
        expect(batch.subarray(at + headerBytes, at + headerBytes + bytes).toString('utf8')).toBe(name);
        expect(batch[at + headerBytes + bytes]).toBe(0xc0);
        expect(batch.length).toBe(at + headerBytes + bytes + 1);
        expect(decodeRecords(batch)[0]!.headers).toEqual([[name, null]]);
        expect((stockRecord(batch)[4] as unknown[][])[0]![0]).toBe(name);
        expect(checkBatchAt(batch).ok).toBe(true);
        expect(splitProducedBatches(batch).recordCount).toBe(1);
      }
    }
    const out = Buffer.alloc(5);
    const headers: [number, string][] = [
      [31, 'bf'],
      [32, 'd920'],
      [255, 'd9ff'],
      [256, 'da0100'],
      [65535, 'daffff'],
      [65536, 'db00010000'],
    ];
    for (const [n, hex] of headers) {
      expect(writeStrHeader(out, 0, n)).toBe(hex.length / 2);
      expect(out.subarray(0, hex.length / 2).toString('hex')).toBe(hex);
    }
  });

  it('fixarray and array16 for 0, 15, 16 and 1000 headers; array16 and array32 read at 65535 and 65536', () => {
    for (const [count, marker] of [
      [0, 0x90],
      [15, 0x9f],
      [16, 0xdc],
      [1000, 0xdc],
    ] as const) {
      const headers = Array.from({ length: count }, (_, i): [string, Buffer] => [
        `h${i}`,
        Buffer.from([i & 0xff]),
      ]);
      const batch = encodeBatch([{ headers, timestamp: 1 }]);
      expect(batch[R + 5], `${count} headers`).toBe(marker);
      expect(decodeRecords(batch)[0]!.headers.map(([n]) => n)).toEqual(headers.map(([n]) => n));
      expect((stockRecord(batch)[4] as unknown[]).length).toBe(count);
    }
    // More headers than a record may hold cannot be encoded; the reader still reads both wide forms.
    for (const [count, hex] of [
      [65535, 'dcffff'],
      [65536, 'dd00010000'],
    ] as const) {
      const head = Buffer.alloc(5);
      const headerBytes = writeArrayHeader(head, 0, count);
      expect(head.subarray(0, headerBytes).toString('hex')).toBe(hex);
      const record = Buffer.concat([
        Buffer.from([0x95, 0, 0, 0xc0, 0xc0]),
        head.subarray(0, headerBytes),
        Buffer.alloc(count * 3, Buffer.from([0x92, 0xa0, 0xc0])),
      ]);
      const batch = withRecords([record]);
      expect(decodeRecords(batch)[0]!.headers).toHaveLength(count);
      expect(thrown(() => splitProducedBatches(batch))?.code).toBe('INVALID_RECORD');
    }
    // A record array in array16 or array32 form is still an array of 5.
    for (const prefix of [
      [0xdc, 0, 5],
      [0xdd, 0, 0, 0, 5],
    ]) {
      const batch = withRecords([Buffer.from([...prefix, 0, 0, 0xc0, 0xc4, 1, 0x78, 0x90])]);
      expect(Buffer.from(decodeRecords(batch)[0]!.value!).toString()).toBe('x');
      expect(splitProducedBatches(batch).recordCount).toBe(1);
    }
  });

  it('writeInt chooses the shortest form at every boundary, and the reader reads every form back', () => {
    const cases: [number, string][] = [
      [0, '00'],
      [127, '7f'],
      [128, 'cc80'],
      [255, 'ccff'],
      [256, 'cd0100'],
      [65535, 'cdffff'],
      [65536, 'ce00010000'],
      [2 ** 32 - 1, 'ceffffffff'],
      [2 ** 32, 'cf0000000100000000'],
      [2 ** 53 - 1, 'cf001fffffffffffff'],
      [-1, 'ff'],
      [-32, 'e0'],
      [-33, 'd0df'],
      [-128, 'd080'],
      [-129, 'd1ff7f'],
      [-32768, 'd18000'],
      [-32769, 'd2ffff7fff'],
      [-(2 ** 31), 'd280000000'],
      [-(2 ** 31) - 1, 'd3ffffffff7fffffff'],
      [-(2 ** 53) + 1, 'd3ffe0000000000001'],
    ];
    const base = 2 ** 40;
    for (const [n, hex] of cases) {
      const out = Buffer.alloc(9);
      const end = writeInt(out, 0, n);
      expect(out.subarray(0, end).toString('hex'), String(n)).toBe(hex);
      // As a timestamp delta, read back by decodeRecords.
      const batch = withRecords(
        [Buffer.concat([Buffer.from([0x95, 0]), out.subarray(0, end), Buffer.from([0xc0, 0xc0, 0x90])])],
        {
          baseTimestamp: base,
        },
      );
      expect(decodeRecords(batch)[0]!.timestamp, String(n)).toBe(base + n);
    }
    // Wider forms than needed are read too, as a stock encoder may write them.
    for (const hex of [
      'cc05',
      'cd0005',
      'ce00000005',
      'cf0000000000000005',
      'd005',
      'd10005',
      'd200000005',
      'd30000000000000005',
    ]) {
      const batch = withRecords([Buffer.from(`95${hex}00c0c090`, 'hex')]);
      expect(decodeRecords(batch)[0]!.offset, hex).toBe(5);
      const asTimestamp = withRecords([Buffer.from(`9500${hex}c0c090`, 'hex')], { baseTimestamp: 0 });
      expect(decodeRecords(asTimestamp)[0]!.timestamp, hex).toBe(5);
    }
    // A 64-bit integer beyond 2^53 is refused, not rounded.
    for (const hex of ['cf0020000000000000', 'd3ffdfffffffffffff']) {
      const batch = withRecords([Buffer.from(`9500${hex}c0c090`, 'hex')]);
      expect(thrown(() => decodeRecords(batch))?.message).toMatch(/2\^53/);
    }
  });

  it('offset deltas at the integer boundaries round-trip through encodeBatch', () => {
    for (const last of [127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1]) {
      const batch = encodeBatch(
        [
          { value: null, timestamp: 1, offsetDelta: 0 },
          { value: null, timestamp: 1, offsetDelta: last },
        ],
        { baseOffset: 10 },
      );
      const check = checkBatchAt(batch);
      expect(check.ok && check.header.lastOffsetDelta).toBe(last);
      expect(decodeRecords(batch).map((r) => r.offset)).toEqual([10, 10 + last]);
    }
  });
});

describe('the record reader stays inside its batch', () => {
  it('refuses a record cut at every byte with CORRUPT_MESSAGE, CRC valid, even with more bytes after the batch', () => {
    // One record with every length form: bin16 key, bin32 value, str8 and str16 names, an int64 delta.
    const full = encodeBatch([
      {
        key: Buffer.alloc(300, 1),
        value: Buffer.alloc(70_000, 2),
        headers: [
          ['n'.repeat(40), null],
          ['m'.repeat(300), Buffer.alloc(3)],
        ],
        timestamp: 2 ** 40,
      },
      { value: null, timestamp: 0 },
    ]);
    const following = encodeBatch([{ value: Buffer.from('next'), timestamp: 1 }]);
    const recordsEnd = full.length;
    // Cut the first record's bytes down to `keep`, keep the second out: recordCount stays 2.
    const stepped = [
      ...Array.from({ length: 40 }, (_, i) => i),
      ...[300, 301, 302, 303, 304, 70_300, 70_310, 70_340, 70_345, 70_350, 70_400, 70_650, 70_660],
    ];
    for (const keep of stepped) {
      const cut = resealed(full, (b) => b.subarray(0, AT.records + keep));
      if (cut.length >= recordsEnd) continue;
      const error = thrown(() => decodeRecords(Buffer.concat([cut, following])));
      expect(error?.code, `cut after ${keep} record bytes`).toBe('CORRUPT_MESSAGE');
      expect(error?.message).toMatch(/past the end|expected/);
    }
  });

  it('refuses, at every cut, a record whose length fields point past the batch, with valid CRC', () => {
    const full = encodeBatch([
      {
        key: Buffer.from('kk'),
        value: Buffer.alloc(260, 7),
        headers: [['hh', Buffer.from('v')]],
        timestamp: 1,
      },
    ]);
    const following = encodeBatch([{ value: Buffer.alloc(400, 9), timestamp: 1 }]);
    for (let keep = 0; keep < full.length - AT.records; keep++) {
      const cut = resealed(full, (b) => b.subarray(0, AT.records + keep));
      const error = thrown(() => decodeRecords(Buffer.concat([cut, following])));
      expect(error?.code, `cut after ${keep} record bytes`).toBe('CORRUPT_MESSAGE');
      const produced = thrown(() => splitProducedBatches(cut));
      expect(produced?.code, `produced, cut after ${keep}`).toBe('CORRUPT_MESSAGE');
    }
  });
});
