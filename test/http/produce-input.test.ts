import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, type ErrorCode } from '../../src/common/errors.js';
import { type Harness, makeHarness, packr } from './harness.js';

/**
 * Produce input that is malformed, ambiguous or would be stored as something other than what was
 * sent is refused with a 4xx problem that names the field, never a 500 and never a silent change,
 * and a refused request appends nothing.
 */
let h: Harness;
beforeAll(async () => {
  h = await makeHarness();
  await h.broker.admin.createTopic({ name: 'input', partitions: 1 });
});
afterAll(() => h.close());

const JSON_TYPE = 'application/json';
const NDJSON = 'application/x-ndjson';
const MSGPACK = 'application/vnd.msgpack';
const RAW = 'application/octet-stream';
const URL = '/v1/topics/input/partitions/0/records';

const nestedArrays = (levels: number) => `${'['.repeat(levels)}${']'.repeat(levels)}`;
const nestedObjects = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
/** msgpack `{records: [{value: <levels nested fixarrays around 1>}]}`. */
const msgpackNested = (levels: number) =>
  Buffer.concat([
    Buffer.from([0x81, 0xa7, ...Buffer.from('records'), 0x91, 0x81, 0xa5, ...Buffer.from('value')]),
    Buffer.alloc(levels, 0x91),
    Buffer.from([0x01]),
  ]);

interface Case {
  name: string;
  type: string;
  payload: string | Buffer;
  headers?: Record<string, string>;
  status?: number;
  code: ErrorCode;
  field?: string;
  /** Text the problem's detail holds. */
  detail?: string | RegExp;
}

const refused: Case[] = [
  {
    name: 'a JSON value nested 5,000 levels',
    type: JSON_TYPE,
    payload: `{"records": [{"value": ${nestedArrays(5000)}}]}`,
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'a JSON value of objects nested 5,000 levels',
    type: JSON_TYPE,
    payload: `{"records": [{"value": "ok"}, {"value": ${nestedObjects(5000)}}]}`,
    code: 'INVALID_RECORD',
    field: 'records[1].value',
  },
  {
    name: 'a JSON header value nested 5,000 levels',
    type: JSON_TYPE,
    payload: `{"records": [{"value": "v", "headers": {"h": ${nestedArrays(5000)}}}]}`,
    code: 'INVALID_RECORD',
    field: 'records[0].headers.h',
  },
  {
    name: 'a JSON value nested 65 levels, one past the limit',
    type: JSON_TYPE,
    payload: `{"records": [{"value": ${nestedArrays(65)}}]}`,
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'a JSON value nested 100,000 levels',
    type: JSON_TYPE,
    payload: `{"records": [{"value": ${nestedArrays(100_000)}}]}`,
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'a JSON body nested 100,000 levels outside the records',
    type: JSON_TYPE,
    payload: nestedArrays(100_000),
    code: 'INVALID_REQUEST',
  },
  {
    name: 'an NDJSON value nested 100,000 levels',
    type: NDJSON,
    payload: `{"value": "fine"}\n{"value": ${nestedObjects(100_000)}}\n`,
    code: 'INVALID_RECORD',
    field: 'records[1].value',
  },
  {
    name: 'a msgpack value nested 65 levels',
    type: MSGPACK,
    payload: msgpackNested(65),
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'a msgpack value nested 100,000 levels',
    type: MSGPACK,
    payload: msgpackNested(100_000),
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'a JSON body with a byte that is not UTF-8',
    type: JSON_TYPE,
    payload: Buffer.concat([
      Buffer.from('{"records": [{"value": "ab'),
      Buffer.from([0xff]),
      Buffer.from('"}]}'),
    ]),
    code: 'INVALID_REQUEST',
    detail: /byte 26/,
  },
  {
    name: 'a JSON body with a surrogate encoded in UTF-8 (CESU-8)',
    type: JSON_TYPE,
    payload: Buffer.concat([
      Buffer.from('{"records": [{"value": "'),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from('"}]}'),
    ]),
    code: 'INVALID_REQUEST',
    detail: /byte 24/,
  },
  {
    name: 'a JSON body cut inside a UTF-8 sequence',
    type: JSON_TYPE,
    payload: Buffer.concat([Buffer.from('{"records": [{"value": "'), Buffer.from([0xe2, 0x82])]),
    code: 'INVALID_REQUEST',
    detail: /byte 24/,
  },
  {
    name: 'an NDJSON body with a byte that is not UTF-8 on line 2',
    type: NDJSON,
    payload: Buffer.concat([
      Buffer.from('{"value": "a"}\n{"value": "'),
      Buffer.from([0xc0, 0x80]),
      Buffer.from('"}\n'),
    ]),
    code: 'INVALID_REQUEST',
    detail: /byte 26 \(line 2\)/,
  },
  {
    name: 'a lone surrogate in a JSON value',
    type: JSON_TYPE,
    payload: '{"records": [{"value": "a\\ud800b"}]}',
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'a lone low surrogate in a JSON key',
    type: JSON_TYPE,
    payload: '{"records": [{"key": "\\udc00", "value": "v"}]}',
    code: 'INVALID_RECORD',
    field: 'records[0].key',
  },
  {
    name: 'a lone surrogate in a header value of the fourth record',
    type: JSON_TYPE,
    payload: `{"records": [{}, {}, {}, {"value": "v", "headers": {"h": "\\ud83d"}}]}`,
    code: 'INVALID_RECORD',
    field: 'records[3].headers.h',
  },
  {
    name: 'a lone surrogate in a header name',
    type: JSON_TYPE,
    payload: '{"records": [{"value": "v", "headers": [["h\\ud800", "x"]]}]}',
    code: 'INVALID_RECORD',
    field: 'records[0].headers',
  },
  {
    name: 'a lone surrogate in an NDJSON value',
    type: NDJSON,
    payload: '{"value": "ok"}\n{"value": "\\udfff"}\n',
    code: 'INVALID_RECORD',
    field: 'records[1].value',
  },
  {
    name: 'a msgpack str value that is not UTF-8',
    type: MSGPACK,
    payload: Buffer.from([
      0x81,
      0xa7,
      ...Buffer.from('records'),
      0x91,
      0x81,
      0xa5,
      ...Buffer.from('value'),
      0xa2,
      0x61,
      0xff,
    ]),
    code: 'INVALID_REQUEST',
    detail: /byte 19/,
  },
  {
    name: 'a msgpack str header name that is not UTF-8',
    type: MSGPACK,
    payload: Buffer.from([
      ...[0x81, 0xa7, ...Buffer.from('records'), 0x91, 0x81, 0xa7, ...Buffer.from('headers')],
      ...[0x81, 0xa1, 0x80, 0xa1, 0x61],
    ]),
    code: 'INVALID_REQUEST',
    detail: /byte 21/,
  },
  {
    name: 'a msgpack str holding a surrogate (as some encoders write a lone one)',
    type: MSGPACK,
    payload: Buffer.from([
      0x81,
      0xa7,
      ...Buffer.from('records'),
      0x91,
      0x81,
      0xa3,
      ...Buffer.from('key'),
      0xa3,
      0xed,
      0xa0,
      0x80,
    ]),
    code: 'INVALID_REQUEST',
  },
  {
    name: 'a JSON body with a __proto__ key',
    type: JSON_TYPE,
    payload: '{"records": [{"value": "v"}], "__proto__": {"polluted": true}}',
    code: 'INVALID_REQUEST',
  },
  {
    name: 'a JSON value with a __proto__ key spelled with escapes',
    type: JSON_TYPE,
    payload: '{"records": [{"value": {"\\u005f_proto__": {"polluted": true}}}]}',
    code: 'INVALID_REQUEST',
  },
  {
    name: 'a JSON value with constructor.prototype',
    type: JSON_TYPE,
    payload: '{"records": [{"value": {"constructor": {"prototype": {"polluted": true}}}}]}',
    code: 'INVALID_REQUEST',
  },
  {
    name: 'an NDJSON line with a __proto__ key',
    type: NDJSON,
    payload: '{"value": {"__proto__": {"polluted": true}}}\n',
    code: 'INVALID_REQUEST',
    detail: /line 1/,
  },
  { name: 'an empty JSON body', type: JSON_TYPE, payload: '', code: 'INVALID_REQUEST' },
  ...(['{"a": 1}', '[1]', 'true', '7'] as const).flatMap((json): Case[] => [
    {
      name: `a key of ${json}`,
      type: JSON_TYPE,
      payload: `{"records": [{"key": ${json}, "value": "v"}]}`,
      code: 'INVALID_RECORD',
      field: 'records[0].key',
    },
    {
      name: `a header value of ${json}`,
      type: JSON_TYPE,
      payload: `{"records": [{"value": "v"}, {"value": "v", "headers": {"h": ${json}}}]}`,
      code: 'INVALID_RECORD',
      field: 'records[1].headers.h',
    },
  ]),
  {
    name: 'a header value of an object in a pair',
    type: JSON_TYPE,
    payload: '{"records": [{"value": "v", "headers": [["h", "ok"], ["g", {}]]}]}',
    code: 'INVALID_RECORD',
    field: 'records[0].headers.g',
  },
  {
    name: 'an empty header name',
    type: JSON_TYPE,
    payload: '{"records": [{"value": "v", "headers": {"": "x"}}]}',
    code: 'INVALID_RECORD',
    field: 'records[0].headers',
  },
  {
    name: 'a header name over the limit',
    type: MSGPACK,
    payload: Buffer.from(packr.pack({ records: [{ value: 'v', headers: { ['n'.repeat(257)]: 'x' } }] })),
    code: 'INVALID_RECORD',
    field: 'records[0].headers',
  },
  {
    name: 'an unknown top-level field',
    type: JSON_TYPE,
    payload: '{"records": [{"value": "v"}], "acks": "all"}',
    code: 'INVALID_REQUEST',
    field: 'acks',
  },
  {
    name: 'an unknown top-level field in msgpack',
    type: MSGPACK,
    payload: Buffer.from(packr.pack({ records: [{ value: 'v' }], compression: 'none' })),
    code: 'INVALID_REQUEST',
    field: 'compression',
  },
  {
    name: 'a msgpack value holding bytes inside a map',
    type: MSGPACK,
    payload: Buffer.from(packr.pack({ records: [{ value: { data: Buffer.from('x') } }] })),
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'a msgpack value that is NaN',
    type: MSGPACK,
    payload: Buffer.from(packr.pack({ records: [{ value: Number.NaN }] })),
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'a msgpack value that is a timestamp extension',
    type: MSGPACK,
    payload: Buffer.from(packr.pack({ records: [{ value: new Date(0) }] })),
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  ...['0x10', '1e3', ' 5', '5 ', '-1', '5.0', '', '+5', '99999999999999999'].map(
    (timestamp): Case => ({
      name: `a raw body with sluice-timestamp ${JSON.stringify(timestamp)}`,
      type: RAW,
      payload: 'raw',
      headers: { 'sluice-timestamp': timestamp },
      code: 'INVALID_TIMESTAMP',
    }),
  ),
  {
    name: 'a raw body with a sluice-key that is not ASCII',
    type: RAW,
    payload: 'raw',
    headers: { 'sluice-key': 'caf\u00e9' },
    code: 'INVALID_RECORD',
    field: 'key',
  },
  ...[
    ['!!!*', 'not of the base64 alphabet'],
    ['QUJD QUJD', 'with a space'],
    ['QUJD\n', 'with a newline'],
    ['QUJ', 'of a length not a multiple of 4'],
    ['QQ', 'without its padding'],
    ['QR==', 'with bits set past the last byte'],
    ['Q===', 'with too much padding'],
    ['QQ==QQ==', 'with padding inside'],
    ['-_-_', 'in the URL-safe alphabet'],
  ].map(
    ([text, what]): Case => ({
      name: `a base64 value ${what}`,
      type: JSON_TYPE,
      payload: JSON.stringify({ valueEncoding: 'base64', records: [{ value: 'QUJD' }, { value: text }] }),
      code: 'INVALID_RECORD',
      field: 'records[1].value',
    }),
  ),
  {
    name: 'a base64 key that is not base64',
    type: JSON_TYPE,
    payload: '{"valueEncoding": "base64", "records": [{"key": "a", "value": "QUJD"}]}',
    code: 'INVALID_RECORD',
    field: 'records[0].key',
  },
  {
    name: 'a base64 header value that is not base64',
    type: JSON_TYPE,
    payload: '{"valueEncoding": "base64", "records": [{"value": "QUJD", "headers": {"h": "%"}}]}',
    code: 'INVALID_RECORD',
    field: 'records[0].headers.h',
  },
  {
    name: 'a number under base64',
    type: JSON_TYPE,
    payload: '{"valueEncoding": "base64", "records": [{"value": 5}]}',
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'an object under base64',
    type: JSON_TYPE,
    payload: '{"valueEncoding": "base64", "records": [{"value": {"a": 1}}]}',
    code: 'INVALID_RECORD',
    field: 'records[0].value',
  },
  {
    name: 'an unknown valueEncoding',
    type: JSON_TYPE,
    payload: '{"valueEncoding": "hex", "records": [{"value": "00"}]}',
    code: 'INVALID_REQUEST',
    field: 'valueEncoding',
  },
  {
    name: 'a valueEncoding that is not a string',
    type: JSON_TYPE,
    payload: '{"valueEncoding": true, "records": [{"value": "00"}]}',
    code: 'INVALID_REQUEST',
    field: 'valueEncoding',
  },
  {
    name: 'an unknown valueEncoding in msgpack',
    type: MSGPACK,
    payload: Buffer.from(packr.pack({ valueEncoding: 'BASE64', records: [{ value: 'QUJD' }] })),
    code: 'INVALID_REQUEST',
    field: 'valueEncoding',
  },
  { name: 'malformed JSON', type: JSON_TYPE, payload: '{"records": [}', code: 'INVALID_REQUEST' },
];

const accepted: {
  name: string;
  type: string;
  payload: string | Buffer;
  headers?: Record<string, string>;
  value: string;
}[] = [
  {
    name: 'a JSON value nested 64 levels, at the limit',
    type: JSON_TYPE,
    payload: `{"records": [{"value": ${nestedArrays(64)}}]}`,
    value: nestedArrays(64),
  },
  {
    name: 'a msgpack value nested 64 levels, at the limit',
    type: MSGPACK,
    payload: msgpackNested(64),
    value: `${'['.repeat(64)}1${']'.repeat(64)}`,
  },
  ...(
    [
      ['7', '7'],
      ['true', 'true'],
      ['{"a": [1, null]}', '{"a":[1,null]}'],
      ['[]', '[]'],
    ] as const
  ).map(([json, text]) => ({
    name: `a value of ${json}, kept as its JSON text`,
    type: JSON_TYPE,
    payload: `{"records": [{"value": ${json}}]}`,
    value: text,
  })),
  {
    name: 'a raw body with a decimal sluice-timestamp',
    type: RAW,
    payload: 'raw',
    headers: { 'sluice-timestamp': '1700000000000' },
    value: 'raw',
  },
  {
    name: 'a base64 value',
    type: JSON_TYPE,
    payload: '{"valueEncoding": "base64", "records": [{"value": "QUJD", "headers": {"h": "QQ=="}}]}',
    value: 'ABC',
  },
  {
    name: 'an empty base64 value',
    type: JSON_TYPE,
    payload: '{"valueEncoding": "base64", "records": [{"value": ""}]}',
    value: '',
  },
  {
    name: 'valueEncoding utf8, said out loud',
    type: JSON_TYPE,
    payload: '{"valueEncoding": "utf8", "records": [{"value": "QUJD"}]}',
    value: 'QUJD',
  },
  {
    name: 'msgpack bytes beside valueEncoding base64 (bytes need no encoding)',
    type: MSGPACK,
    payload: Buffer.from(packr.pack({ valueEncoding: 'base64', records: [{ value: Buffer.from('raw') }] })),
    value: 'raw',
  },
  {
    name: 'a JSON body that starts with a byte order mark',
    type: JSON_TYPE,
    payload: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"records": [{"value": "bom"}]}')]),
    value: 'bom',
  },
  {
    name: 'a JSON value with a surrogate pair, escaped and as UTF-8',
    type: JSON_TYPE,
    payload: '{"records": [{"value": "\\ud83d\\ude00 😀"}]}',
    value: '😀 😀',
  },
  {
    name: 'a JSON value holding a "constructor" key that is not poisoning',
    type: JSON_TYPE,
    payload: '{"records": [{"value": {"constructor": "x"}}]}',
    value: '{"constructor":"x"}',
  },
];

const endOffset = async () => (await h.broker.admin.describeTopic('input')).partitions[0]!.logEndOffset;

describe('refused produce input', () => {
  it.each(refused)('$name → $code', async (c) => {
    const before = await endOffset();
    const response = await h.app.inject({
      method: 'POST',
      url: URL,
      headers: { 'content-type': c.type, ...c.headers },
      payload: c.payload,
    });
    const problem = JSON.parse(response.body);
    expect({ status: response.statusCode, code: problem.code }).toEqual({
      status: c.status ?? ERROR_CODES[c.code].status,
      code: c.code,
    });
    expect(response.headers['content-type']).toContain('application/problem+json');
    if (c.field !== undefined) expect(problem.field).toBe(c.field);
    if (c.detail !== undefined) expect(problem.detail).toMatch(c.detail);
    expect(await endOffset()).toBe(before);
  });
});

describe('accepted produce input', () => {
  it.each(accepted)('$name is stored as sent', async (c) => {
    const before = await endOffset();
    const response = await h.app.inject({
      method: 'POST',
      url: URL,
      headers: { 'content-type': c.type, ...c.headers },
      payload: c.payload,
    });
    expect(response.statusCode, response.body).toBe(200);
    const fetched = await h.app.inject({ method: 'GET', url: `${URL}?offset=${before}` });
    expect(JSON.parse(fetched.body).records[0].value).toBe(c.value);
  });
});
