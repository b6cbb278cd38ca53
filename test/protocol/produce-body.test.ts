import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { checkBatchAt, decodeRecords } from '../../src/protocol/batch.js';
import { parseRecord } from '../../src/protocol/json-record.js';
import { unpackr } from '../../src/protocol/msgpack.js';
import {
  checkMsgpackBody,
  decodeMsgpackProduceBody,
  invalidUtf8Offset,
  recordArraySource,
  scanMsgpackProduceBody,
} from '../../src/protocol/produce-body.js';

const packr = new Packr({ useRecords: false, variableMapSize: true });
const NOW = 1_700_000_000_000;

/** The general path: decode the whole body, check every record, encode from objects. */
function generalSource(body: Buffer) {
  const decoded = unpackr.unpack(body) as { records: unknown[] };
  return recordArraySource(decoded.records.map((raw, i) => parseRecord(raw, i, NOW)));
}

const bytesField = fc.oneof(
  fc.constant(null),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.string({ maxLength: 80, unit: 'grapheme' }),
);
// Header names that the general decoder's JavaScript objects keep as they are: no integer-like
// names (objects put those first) and no __proto__ (the decoder drops it), unique per record. The
// in-place reader keeps every name in its order.
const headerName = fc
  .string({ minLength: 1, maxLength: 12 })
  .filter((s) => !/^\d+$/.test(s) && s !== '__proto__');
const headers = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.uniqueArray(fc.tuple(headerName, bytesField), { selector: ([name]) => name, maxLength: 5 }),
  fc
    .uniqueArray(fc.tuple(headerName, bytesField), { selector: ([name]) => name, maxLength: 5 })
    .map((pairs) => Object.fromEntries(pairs)),
);
const record = fc
  .record(
    {
      key: bytesField,
      value: bytesField,
      headers,
      partition: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 7 })),
      timestamp: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 2 ** 53 - 1 })),
    },
    { requiredKeys: [] },
  )
  .chain((r) =>
    fc.shuffledSubarray(Object.keys(r), { minLength: Object.keys(r).length }).map((order) => {
      // Field order in the map is the client's choice.
      const out: Record<string, unknown> = {};
      for (const name of order)
        if ((r as Record<string, unknown>)[name] !== undefined)
          out[name] = (r as Record<string, unknown>)[name];
      return out;
    }),
  );

describe('scanMsgpackProduceBody', () => {
  it('gives byte for byte the batches of the general decoder, for any records and any split into partitions', () => {
    fc.assert(
      fc.property(
        fc.array(record, { minLength: 1, maxLength: 40 }),
        fc.array(fc.boolean(), { maxLength: 40 }),
        (records, picks) => {
          const body = Buffer.from(packr.pack({ records }));
          const scanned = scanMsgpackProduceBody(body);
          expect(scanned).toBeDefined();
          const general = generalSource(body);
          expect(scanned!.count).toBe(general.count);
          const all = records.map((_, i) => i);
          const some = all.filter((i) => picks[i] ?? true);
          for (const indexes of [all, some]) {
            if (indexes.length === 0) continue;
            const batch = scanned!.encodeBatch(indexes, NOW);
            expect(checkBatchAt(batch).ok).toBe(true);
            expect(batch.equals(general.encodeBatch(indexes, NOW))).toBe(true);
          }
          for (const i of all) {
            expect(scanned!.partitionAt(i)).toBe(general.partitionAt(i));
            expect(scanned!.payloadBytesAt(i)).toBe(general.payloadBytesAt(i));
            const key = scanned!.keyAt(i);
            const expected = general.keyAt(i);
            expect(key === null ? null : Buffer.from(key)).toEqual(
              expected === null ? null : Buffer.from(expected),
            );
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('takes wider encodings than needed, as other msgpack libraries write them', () => {
    const str = (s: string) => [0xa0 | s.length, ...Buffer.from(s)];
    const body = Buffer.from([
      0xde,
      0x00,
      0x01,
      ...str('records'),
      0xdd,
      0x00,
      0x00,
      0x00,
      0x01,
      0xdf,
      0x00,
      0x00,
      0x00,
      0x04,
      ...str('key'),
      0xda,
      0x00,
      0x02,
      ...Buffer.from('k1'),
      ...str('value'),
      0xc6,
      0x00,
      0x00,
      0x00,
      0x03,
      ...Buffer.from('abc'),
      ...str('timestamp'),
      0xd3,
      0x00,
      0x00,
      0x01,
      0x8b,
      0xcf,
      0xe5,
      0x68,
      0x00,
      ...str('headers'),
      0xdc,
      0x00,
      0x01,
      0x92,
      0xd9,
      0x01,
      ...Buffer.from('h'),
      0xd9,
      0x02,
      ...Buffer.from('hv'),
    ]);
    const scanned = scanMsgpackProduceBody(body);
    expect(scanned).toBeDefined();
    expect(scanned!.encodeBatch([0], NOW).equals(generalSource(body).encodeBatch([0], NOW))).toBe(true);
  });

  it('keeps every header name in the order sent, __proto__ and integer-like names too', () => {
    const str = (s: string) => [0xa0 | s.length, ...Buffer.from(s)];
    const body = Buffer.from([
      0x81,
      ...str('records'),
      0x91,
      0x82,
      ...str('value'),
      ...str('v'),
      ...str('headers'),
      0x83,
      ...str('2'),
      ...str('a'),
      ...str('1'),
      ...str('b'),
      ...str('__proto__'),
      ...str('c'),
    ]);
    const batch = scanMsgpackProduceBody(body)!.encodeBatch([0], NOW);
    const [record] = decodeRecords(batch);
    expect(record!.headers.map(([name, value]) => [name, Buffer.from(value!).toString()])).toEqual([
      ['2', 'a'],
      ['1', 'b'],
      ['__proto__', 'c'],
    ]);
  });

  it('leaves to the general decoder every body it does not cover', () => {
    const uncovered = [
      { records: [{ value: 12 }] },
      { records: [{ value: { nested: true } }] },
      { records: [{ value: 'x', extra: 1 }] },
      { records: [{ value: 'x' }], valueEncoding: 'base64' },
      { records: [{ value: 'x', timestamp: -5 }] },
      { records: [{ value: 'x', timestamp: 1.5 }] },
      { records: [{ value: 'x', partition: 'one' }] },
      { records: [{ value: 'x', headers: 'h' }] },
      { records: [{ value: 'x', headers: [['a']] }] },
      { records: [] },
      { records: 'none' },
      [1, 2, 3],
    ];
    for (const body of uncovered)
      expect(scanMsgpackProduceBody(Buffer.from(packr.pack(body)))).toBeUndefined();
    // Bytes that are not valid UTF-8 in a str go the general way too.
    const body = Buffer.from(packr.pack({ records: [{ value: 'ab' }] }));
    body[body.length - 1] = 0xff;
    expect(scanMsgpackProduceBody(body)).toBeUndefined();
  });

  it('never throws on arbitrary or truncated bytes', () => {
    const good = Buffer.from(
      packr.pack({ records: [{ key: 'k', value: Buffer.alloc(40, 1), headers: { a: 'b' } }] }),
    );
    for (let cut = 0; cut < good.length; cut++)
      expect(scanMsgpackProduceBody(good.subarray(0, cut))).toBeUndefined();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const scanned = scanMsgpackProduceBody(Buffer.from(bytes));
        if (scanned) scanned.encodeBatch([0], NOW);
      }),
    );
  });
});

/** What a path answers for a body: the batches of all records, or the code it refuses with. */
function verdict(
  read: () => ReturnType<typeof decodeMsgpackProduceBody>,
): { batch: string } | { code: string } {
  try {
    const source = read();
    const all = Array.from({ length: source.count }, (_, i) => i);
    return { batch: source.encodeBatch(all, NOW).toString('hex') };
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === undefined) throw error;
    return { code };
  }
}

// Fields of every type, valid or not: strings with lone surrogates (which the encoder writes as
// bytes that are not UTF-8), JSON values where only bytes are allowed, names too long or empty.
const anyField = fc.oneof(
  bytesField,
  fc.string({ unit: 'binary', maxLength: 6 }),
  fc.constant('\ud800'),
  fc.integer({ min: -3, max: 2 ** 40 }),
  fc.double(),
  fc.boolean(),
  fc.constant(undefined),
  fc.array(fc.oneof(fc.integer(), fc.string({ maxLength: 3 })), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.oneof(fc.integer(), fc.uint8Array({ maxLength: 3 })), {
    maxKeys: 2,
  }),
);
const anyHeaderName = fc.oneof(
  headerName,
  fc.constant(''),
  fc.constant('n'.repeat(257)),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }),
);
// A valid record with one thing changed, so that each rule is met alone and not hidden by another.
const anyRecord = fc.oneof(
  { weight: 3, arbitrary: record },
  fc
    .tuple(
      record,
      fc.constantFrom('key', 'value', 'headers', 'partition', 'timestamp', 'extra', 'headerName', 'record'),
      anyField,
      anyHeaderName,
      fc.boolean(),
    )
    .map(([r, which, field, name, asMap]) => {
      if (which === 'record') return field;
      if (which !== 'headerName') return { ...r, [which]: field };
      return { ...r, headers: asMap ? { [name]: 'v' } : [[name, 'v']] };
    }),
);
const anyBody = fc.oneof(
  { weight: 5, arbitrary: fc.record({ records: fc.array(anyRecord, { minLength: 1, maxLength: 6 }) }) },
  fc.record(
    {
      records: fc.oneof(fc.array(anyRecord, { maxLength: 4 }), anyField),
      valueEncoding: fc.oneof(fc.constant('base64'), fc.constant('utf8'), anyField),
      other: anyField,
    },
    { requiredKeys: [] },
  ),
);

describe('the in-place and the decoded msgpack path', () => {
  it('give the same verdict for any body, valid or not: the same batch, or the same refusal', () => {
    fc.assert(
      fc.property(anyBody, (value) => {
        const body = Buffer.from(packr.pack(value));
        const inPlace = verdict(() => scanMsgpackProduceBody(body) ?? decodeMsgpackProduceBody(body, NOW));
        const decoded = verdict(() => decodeMsgpackProduceBody(body, NOW));
        expect(inPlace).toEqual(decoded);
      }),
      { seed: 42, numRuns: 1500 },
    );
  });
});

describe('checkMsgpackBody', () => {
  it('passes every body no deeper than a valid produce body, whatever it holds', () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 8, withNullPrototype: false }), (value) => {
        const body = Buffer.from(packr.pack({ records: [{ value }] }));
        expect(() => checkMsgpackBody(body)).not.toThrow();
      }),
      { seed: 7, numRuns: 300 },
    );
  });

  it('names the record field that nests too deep, and refuses other deep bodies as requests', () => {
    let value: unknown = 1;
    for (let i = 0; i < 65; i++) value = [value];
    const deepValue = Buffer.from(packr.pack({ records: [{ key: 'k' }, { key: 'k', value }] }));
    expect(() => checkMsgpackBody(deepValue)).toThrow(
      expect.objectContaining({ code: 'INVALID_RECORD', details: { index: 1, field: 'records[1].value' } }),
    );
    const deepHeader = Buffer.from(packr.pack({ records: [{ headers: { h: value } }] }));
    expect(() => checkMsgpackBody(deepHeader)).toThrow(
      expect.objectContaining({
        code: 'INVALID_RECORD',
        details: { index: 0, field: 'records[0].headers.h' },
      }),
    );
    let deeper = value;
    for (let i = 0; i < 10; i++) deeper = [deeper];
    const deepElsewhere = Buffer.from(packr.pack({ other: deeper }));
    expect(() => checkMsgpackBody(deepElsewhere)).toThrow(
      expect.objectContaining({ code: 'INVALID_REQUEST' }),
    );
    // At the limit: a value of 64 levels inside a record passes.
    expect(() =>
      checkMsgpackBody(Buffer.from(packr.pack({ records: [{ value: (value as unknown[])[0] }] }))),
    ).not.toThrow();
  });

  it('never throws anything but a refusal on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          checkMsgpackBody(Buffer.from(bytes));
        } catch (error) {
          expect((error as { code?: string }).code).toMatch(/^INVALID_(REQUEST|RECORD)$/);
        }
      }),
      { seed: 11, numRuns: 500 },
    );
  });
});

describe('invalidUtf8Offset', () => {
  it('finds a bad sequence exactly when isUtf8 refuses, and everything before it is valid', () => {
    // Mostly text with stray high bytes, so that sequences are near-valid as often as not.
    const bytes = fc.array(
      fc.oneof(
        fc.string({ unit: 'grapheme', maxLength: 4 }).map((s) => [...Buffer.from(s)]),
        fc.integer({ min: 0x80, max: 0xff }).map((b) => [b]),
      ),
      { maxLength: 30 },
    );
    fc.assert(
      fc.property(bytes, (parts) => {
        const buf = Buffer.from(parts.flat());
        const offset = invalidUtf8Offset(buf);
        expect(offset === -1).toBe(isUtf8(buf));
        if (offset >= 0) {
          expect(isUtf8(buf.subarray(0, offset))).toBe(true);
          expect(isUtf8(buf.subarray(0, offset + 4))).toBe(false);
        }
      }),
      { seed: 3, numRuns: 2000 },
    );
  });
});
