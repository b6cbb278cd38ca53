import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../src/common/errors.js';
import { negotiate } from '../../src/http/content.js';
import { decodeRecords, encodeBatch } from '../../src/protocol/batch.js';
import { encodeFetchResponse, FETCH_FRAME_RESERVE } from '../../src/protocol/fetch-response.js';
import { parseRecord, recordToJson } from '../../src/protocol/json-record.js';
import { unpackr } from '../../src/protocol/msgpack.js';

/** Content negotiation, record conversion to and from JSON, and the zero-copy fetch framing. */
describe('negotiate', () => {
  it.each([
    [undefined, 'json'],
    ['*/*', 'json'],
    ['application/json', 'json'],
    ['application/vnd.msgpack', 'msgpack'],
    ['application/msgpack', 'msgpack'],
    ['application/json;q=0.5, application/vnd.msgpack', 'msgpack'],
    ['application/vnd.msgpack;q=0.1, application/json;q=0.9', 'json'],
    ['text/html, */*;q=0.1', 'json'],
    ['application/vnd.msgpack;q=0, application/json', 'json'],
    ['text/html', undefined],
  ])('Accept %s → %s', (accept, expected) => {
    expect(negotiate(accept)).toBe(expected);
  });

  it('offers the extra types a route can stream', () => {
    expect(negotiate('text/event-stream', ['text/event-stream'])).toBe('text/event-stream');
    expect(negotiate('text/event-stream')).toBeUndefined();
  });
});

describe('records and JSON', () => {
  it('never base64-encodes silently: invalid UTF-8 is marked per field', () => {
    const [record] = decodeRecords(
      encodeBatch([
        {
          key: Buffer.from('key'),
          value: Buffer.from([0xff, 0x00, 0x41]),
          headers: [['h', Buffer.from('v')]],
          timestamp: 5,
        },
      ]),
    );
    const shown = recordToJson(record!, false);
    expect(shown).toEqual({
      offset: 0,
      timestamp: 5,
      key: 'key',
      value: Buffer.from([0xff, 0x00, 0x41]).toString('base64'),
      valueEncoding: 'base64',
      headers: { h: 'v' },
    });
    const asked = recordToJson(record!, true);
    expect(asked.key).toBe(Buffer.from('key').toString('base64'));
    expect(asked.valueEncoding).toBeUndefined();
  });

  it('reads strings, base64, bytes, JSON values and header lists', () => {
    const parsed = parseRecord(
      { key: 'k', value: { a: 1 }, headers: [['x', 'y']], partition: 2, timestamp: 9 },
      0,
      1,
    );
    expect(Buffer.from(parsed.key!).toString()).toBe('k');
    expect(Buffer.from(parsed.value!).toString()).toBe('{"a":1}');
    expect(parsed.headers!.map(([n, v]) => [n, Buffer.from(v!).toString()])).toEqual([['x', 'y']]);
    expect(parsed).toMatchObject({ partition: 2, timestamp: 9 });
    const base64 = parseRecord({ value: 'AAH/' }, 0, 1, 'base64');
    expect([...base64.value!]).toEqual([0, 1, 255]);
    expect(parseRecord({}, 0, 42)).toMatchObject({ key: null, value: null, timestamp: 42 });
  });

  it('takes base64 exactly when it is the canonical encoding of some bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.string({ maxLength: 12 }), (bytes, text) => {
        const canonical = Buffer.from(bytes).toString('base64');
        expect([...parseRecord({ value: canonical }, 0, 1, 'base64').value!]).toEqual([...bytes]);
        const isCanonical = Buffer.from(text, 'base64').toString('base64') === text;
        let code: string | undefined;
        try {
          parseRecord({ value: text }, 0, 1, 'base64');
        } catch (error) {
          code = (error as SluiceError).code;
        }
        expect(code).toBe(
          isCanonical && Buffer.from(text).toString() === text ? undefined : 'INVALID_RECORD',
        );
      }),
      { seed: 5, numRuns: 500 },
    );
  });

  it.each([
    [[], 'INVALID_RECORD'],
    [{ value: 'x', extra: 1 }, 'INVALID_RECORD'],
    [{ partition: -1 }, 'INVALID_RECORD'],
    [{ partition: 1.5 }, 'INVALID_RECORD'],
    [{ headers: 'h' }, 'INVALID_RECORD'],
    [{ headers: [['only-name']] }, 'INVALID_RECORD'],
    [{ timestamp: -1 }, 'INVALID_TIMESTAMP'],
    [{ timestamp: 2 ** 60 }, 'INVALID_TIMESTAMP'],
  ])('refuses %j with %s', (raw, code) => {
    let caught: unknown;
    try {
      parseRecord(raw, 3, 1);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SluiceError);
    expect((caught as SluiceError).code).toBe(code);
  });
});

describe('encodeFetchResponse', () => {
  it('frames stored batches so that a stock decoder reads them as they are stored', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 1, maxLength: 5 }), {
          maxLength: 20,
        }),
        fc.nat(),
        (batches, nextOffset) => {
          const stored = batches.map((values) =>
            encodeBatch(values.map((v) => ({ value: v, timestamp: 1 }))),
          );
          const response = encodeFetchResponse(Buffer.concat(stored), stored.length, {
            nextOffset,
            highWatermark: nextOffset + 1,
            logStartOffset: 0,
          });
          const decoded = unpackr.unpack(response) as { batches: unknown[] };
          expect(Object.keys(decoded)).toEqual(['batches', 'nextOffset', 'highWatermark', 'logStartOffset']);
          expect(decoded).toMatchObject({ nextOffset, highWatermark: nextOffset + 1, logStartOffset: 0 });
          expect(decoded.batches).toEqual(stored.map((b) => unpackr.unpack(b)));
          // Framed in the room a read left around the batches: the same bytes, in the same memory.
          const { before, after } = FETCH_FRAME_RESERVE;
          const joined = Buffer.concat(stored);
          const room = Buffer.alloc(before + joined.length + after, 0xee);
          joined.copy(room, before);
          const data = room.subarray(before, before + joined.length);
          const fields = { nextOffset, highWatermark: nextOffset + 1, logStartOffset: 0 };
          const framed = encodeFetchResponse(data, stored.length, fields, FETCH_FRAME_RESERVE);
          expect(framed.equals(response)).toBe(true);
          expect(framed.buffer).toBe(room.buffer);
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe('broker-level topic config defaults', () => {
  it('parses log.retention.check.interval.ms once, with its default, and refuses a bad value', async () => {
    const { parseTopicConfigDefaults, RETENTION_CHECK_MS_DEFAULT } = await import(
      '../../src/protocol/topic-config.js'
    );
    expect(parseTopicConfigDefaults({}).retentionCheckMs).toBe(RETENTION_CHECK_MS_DEFAULT);
    expect(parseTopicConfigDefaults({ 'log.retention.check.interval.ms': '5000' }).retentionCheckMs).toBe(
      5000,
    );
    expect(() => parseTopicConfigDefaults({ 'log.retention.check.interval.ms': 0 })).toThrow(
      expect.objectContaining({ code: 'INVALID_CONFIG' }),
    );
    // A topic cannot set it: it is the broker's.
    const defaults = parseTopicConfigDefaults({});
    const { parseTopicConfig } = await import('../../src/protocol/topic-config.js');
    expect(() => parseTopicConfig({ 'log.retention.check.interval.ms': 5000 }, defaults)).toThrow(
      expect.objectContaining({ code: 'INVALID_CONFIG' }),
    );
  });
});
