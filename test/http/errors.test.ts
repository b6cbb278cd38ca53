import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerApi } from '../../src/broker/api.js';
import { ERROR_CODES, SluiceError } from '../../src/common/errors.js';
import { LIMITS } from '../../src/common/limits.js';
import { buildApp } from '../../src/http/app.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { type Harness, makeHarness } from './harness.js';

/**
 * Bad input of every kind gets its documented status and stable code, as problem+json, and the log
 * is exactly as it was before the request.
 */
let h: Harness;
beforeAll(async () => {
  h = await makeHarness({ 'max.message.bytes': 64 * 1024 });
  await h.broker.admin.createTopic({ name: 'guarded', partitions: 2 });
  await h.broker.admin.createTopic({ name: 'strict', partitions: 1, configs: { 'min.insync.replicas': 2 } });
  await h.broker.produce.records('guarded', [{ value: Buffer.from('seed'), partition: 0, timestamp: 1 }], 1);
});
afterAll(() => h.close());

const json = { 'content-type': 'application/json' };
const msgpack = { 'content-type': 'application/vnd.msgpack' };
const goodBatch = () => encodeBatch([{ value: Buffer.from('ok'), timestamp: 1 }]);
const flipped = () => {
  const b = goodBatch();
  b[b.length - 2]! ^= 0x40;
  return b;
};

const cases: {
  name: string;
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT';
  url: string;
  headers?: Record<string, string>;
  payload?: string | Buffer;
  status: number;
  code: keyof typeof ERROR_CODES;
  /** The bad field a schema violation names. */
  field?: string;
}[] = [
  {
    name: 'malformed JSON',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: '{"records": [',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'malformed msgpack',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: { 'content-type': 'application/vnd.msgpack' },
    payload: Buffer.from([0x81, 0xa7, 0x72, 0x65]),
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'a record naming another partition than the route (JSON)',
    method: 'POST',
    url: '/v1/topics/guarded/partitions/0/records',
    headers: json,
    payload: '{"records": [{"value": "a"}, {"value": "b", "partition": 1}]}',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'a record naming another partition than the route (msgpack, read in place)',
    method: 'POST',
    url: '/v1/topics/guarded/partitions/0/records',
    headers: msgpack,
    payload: Buffer.from(pack({ records: [{ value: 'a' }, { value: 'b', partition: 1 }] })),
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'a record naming a partition the topic lacks (msgpack, read in place)',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: msgpack,
    payload: Buffer.from(pack({ records: [{ value: 'a', partition: 7 }] })),
    status: 404,
    code: 'UNKNOWN_TOPIC_OR_PARTITION',
  },
  {
    name: 'a msgpack record with an unknown field (decoded the general way)',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: msgpack,
    payload: Buffer.from(pack({ records: [{ value: 'a', colour: 'red' }] })),
    status: 400,
    code: 'INVALID_RECORD',
  },
  {
    name: 'records not a list',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: '{"records": 5}',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'empty records',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: '{"records": []}',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'record not an object',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: '{"records": [7]}',
    status: 400,
    code: 'INVALID_RECORD',
  },
  {
    name: 'unknown record field',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: '{"records": [{"valu": "x"}]}',
    status: 400,
    code: 'INVALID_RECORD',
  },
  {
    name: 'bad timestamp',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: '{"records": [{"value": "x", "timestamp": "now"}]}',
    status: 400,
    code: 'INVALID_TIMESTAMP',
  },
  {
    name: 'partition out of range',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: '{"records": [{"value": "x", "partition": 9}]}',
    status: 404,
    code: 'UNKNOWN_TOPIC_OR_PARTITION',
  },
  {
    name: 'unknown topic on produce',
    method: 'POST',
    url: '/v1/topics/ghost/records',
    headers: json,
    payload: '{"records": [{"value": "x"}]}',
    status: 404,
    code: 'UNKNOWN_TOPIC_OR_PARTITION',
  },
  {
    name: 'unknown partition on fetch',
    method: 'GET',
    url: '/v1/topics/guarded/partitions/7/records',
    status: 404,
    code: 'UNKNOWN_TOPIC_OR_PARTITION',
  },
  {
    name: 'offset past the end',
    method: 'GET',
    url: '/v1/topics/guarded/partitions/0/records?offset=99',
    status: 416,
    code: 'OFFSET_OUT_OF_RANGE',
  },
  {
    name: 'offset not a number',
    method: 'GET',
    url: '/v1/topics/guarded/partitions/0/records?offset=abc',
    status: 400,
    code: 'INVALID_OFFSET',
    field: 'querystring/offset',
  },
  {
    name: 'negative offset',
    method: 'GET',
    url: '/v1/topics/guarded/partitions/0/records?offset=-1',
    status: 400,
    code: 'INVALID_OFFSET',
  },
  {
    name: 'maxWaitMs over the limit',
    method: 'GET',
    url: '/v1/topics/guarded/partitions/0/records?maxWaitMs=999999',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'bad acks',
    method: 'POST',
    url: '/v1/topics/guarded/records?acks=2',
    headers: json,
    payload: '{"records": [{"value": "x"}]}',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'record too large',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: JSON.stringify({ records: [{ value: 'x'.repeat(70 * 1024) }] }),
    status: 413,
    code: 'RECORD_TOO_LARGE',
  },
  {
    name: 'batch too large',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: JSON.stringify({
      records: Array.from({ length: 40 }, () => ({ value: 'y'.repeat(2000), partition: 0 })),
    }),
    status: 413,
    code: 'MESSAGE_TOO_LARGE',
  },
  {
    name: 'too many records',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: JSON.stringify({ records: Array.from({ length: LIMITS.requestRecordsMax + 1 }, () => ({})) }),
    status: 413,
    code: 'TOO_MANY_RECORDS',
  },
  {
    name: 'body over the limit',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: `{"records":[{"value":"${'z'.repeat(LIMITS.requestBodyBytesMax)}"}]}`,
    status: 413,
    code: 'REQUEST_TOO_LARGE',
  },
  {
    name: 'unsupported media type',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: { 'content-type': 'text/csv' },
    payload: 'a,b',
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    name: 'unacceptable Accept',
    method: 'GET',
    url: '/v1/topics',
    headers: { accept: 'text/html' },
    status: 406,
    code: 'NOT_ACCEPTABLE',
  },
  {
    name: 'corrupt pre-built batch',
    method: 'POST',
    url: '/v1/topics/guarded/partitions/0/records',
    headers: { 'content-type': 'application/vnd.sluice.batches' },
    payload: flipped(),
    status: 400,
    code: 'CORRUPT_MESSAGE',
  },
  {
    // With acks=0 the answer does not wait for the append: the batch is checked before it.
    name: 'corrupt pre-built batch with acks=0',
    method: 'POST',
    url: '/v1/topics/guarded/partitions/0/records?acks=0',
    headers: { 'content-type': 'application/vnd.sluice.batches' },
    payload: flipped(),
    status: 400,
    code: 'CORRUPT_MESSAGE',
  },
  {
    name: 'garbage after a pre-built batch',
    method: 'POST',
    url: '/v1/topics/guarded/partitions/0/records',
    headers: { 'content-type': 'application/vnd.sluice.batches' },
    payload: Buffer.concat([goodBatch(), Buffer.from('tail')]),
    status: 400,
    code: 'CORRUPT_MESSAGE',
  },
  {
    name: 'acks=all under min.insync.replicas',
    method: 'POST',
    url: '/v1/topics/strict/records?acks=all',
    headers: json,
    payload: '{"records": [{"value": "x"}]}',
    status: 503,
    code: 'NOT_ENOUGH_REPLICAS',
  },
  {
    name: 'bad topic name',
    method: 'POST',
    url: '/v1/topics',
    headers: json,
    payload: '{"name": "no spaces"}',
    status: 400,
    code: 'INVALID_TOPIC_EXCEPTION',
  },
  {
    name: 'reserved topic name',
    method: 'POST',
    url: '/v1/topics',
    headers: json,
    payload: '{"name": "__internal"}',
    status: 400,
    code: 'INVALID_TOPIC_EXCEPTION',
  },
  {
    name: 'topic exists',
    method: 'POST',
    url: '/v1/topics',
    headers: json,
    payload: '{"name": "guarded"}',
    status: 409,
    code: 'TOPIC_ALREADY_EXISTS',
  },
  {
    name: 'zero partitions',
    method: 'POST',
    url: '/v1/topics',
    headers: json,
    payload: '{"name": "zero", "partitions": 0}',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'replication beyond the nodes',
    method: 'POST',
    url: '/v1/topics',
    headers: json,
    payload: '{"name": "rf3", "replicationFactor": 3}',
    status: 400,
    code: 'INVALID_REPLICATION_FACTOR',
  },
  {
    name: 'unknown config',
    method: 'POST',
    url: '/v1/topics',
    headers: json,
    payload: '{"name": "cfg", "configs": {"retention.forever": 1}}',
    status: 400,
    code: 'INVALID_CONFIG',
  },
  {
    name: 'bad config value',
    method: 'PATCH',
    url: '/v1/topics/guarded/configs',
    headers: json,
    payload: '{"retention.ms": "soon"}',
    status: 400,
    code: 'INVALID_CONFIG',
  },
  {
    name: 'shrinking partitions',
    method: 'POST',
    url: '/v1/topics/guarded/partitions',
    headers: json,
    payload: '{"partitions": 1}',
    status: 400,
    code: 'INVALID_PARTITIONS',
  },
  {
    name: 'partitions as a string (no coercion of bodies)',
    method: 'POST',
    url: '/v1/topics',
    headers: json,
    payload: '{"name": "typed", "partitions": "3"}',
    status: 400,
    code: 'INVALID_REQUEST',
    field: 'body/partitions',
  },
  {
    name: 'unknown field in a topic',
    method: 'POST',
    url: '/v1/topics',
    headers: json,
    payload: '{"name": "typed", "partition": 3}',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'config value of the wrong type',
    method: 'PATCH',
    url: '/v1/topics/guarded/configs',
    headers: json,
    payload: '{"retention.ms": [1]}',
    status: 400,
    code: 'INVALID_REQUEST',
    field: 'body/retention.ms',
  },
  {
    name: 'bad topic name in the path',
    method: 'GET',
    url: '/v1/topics/bad%20name',
    status: 400,
    code: 'INVALID_TOPIC_EXCEPTION',
    field: 'params/topic',
  },
  {
    name: 'partition not a number in the path',
    method: 'GET',
    url: '/v1/topics/guarded/partitions/one/records',
    status: 400,
    code: 'INVALID_REQUEST',
    field: 'params/partition',
  },
  {
    name: 'timestamp not a number',
    method: 'GET',
    url: '/v1/topics/guarded/partitions/0/offsets?timestamp=yesterday',
    status: 400,
    code: 'INVALID_REQUEST',
    field: 'querystring/timestamp',
  },
  {
    name: 'negative record timestamp',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: '{"records": [{"value": "x", "timestamp": -5}]}',
    status: 400,
    code: 'INVALID_TIMESTAMP',
  },
  {
    name: 'headers of the wrong type',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: json,
    payload: '{"records": [{"value": "x", "headers": 5}]}',
    status: 400,
    code: 'INVALID_RECORD',
  },
  {
    name: 'record naming another partition than the path',
    method: 'POST',
    url: '/v1/topics/guarded/partitions/0/records',
    headers: json,
    payload: '{"records": [{"value": "x", "partition": 1}]}',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'malformed NDJSON line',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: { 'content-type': 'application/x-ndjson' },
    payload: '{"value": "ok"}\n{"value": \n',
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'msgpack body that is not a map',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: { 'content-type': 'application/vnd.msgpack' },
    payload: Buffer.from([0x05]),
    status: 400,
    code: 'INVALID_REQUEST',
  },
  {
    name: 'a truncated pre-built batch on the topic route',
    method: 'POST',
    url: '/v1/topics/guarded/records',
    headers: { 'content-type': 'application/vnd.sluice.batches' },
    payload: goodBatch().subarray(0, 40),
    status: 400,
    code: 'CORRUPT_MESSAGE',
  },
  {
    name: 'truncated pre-built batch',
    method: 'POST',
    url: '/v1/topics/guarded/partitions/0/records',
    headers: { 'content-type': 'application/vnd.sluice.batches' },
    payload: goodBatch().subarray(0, 20),
    status: 400,
    code: 'CORRUPT_MESSAGE',
  },
  { name: 'unknown route', method: 'GET', url: '/v1/nothing', status: 404, code: 'NOT_FOUND' },
  { name: 'wrong method', method: 'PUT', url: '/v1/topics/guarded', status: 405, code: 'METHOD_NOT_ALLOWED' },
  {
    name: 'wrong method on openapi',
    method: 'POST',
    url: '/openapi.json',
    status: 405,
    code: 'METHOD_NOT_ALLOWED',
  },
];

describe('bad input', () => {
  it.each(cases)('$name → $status $code, log unchanged', async (c) => {
    const before = (await h.broker.admin.describeTopic('guarded')).partitions.map((p) => p.logEndOffset);
    const topicsBefore = h.broker.admin.listTopics();
    const response = await h.app.inject({
      method: c.method,
      url: c.url,
      headers: c.headers ?? {},
      ...(c.payload === undefined ? {} : { payload: c.payload }),
    });
    expect(response.statusCode).toBe(c.status);
    expect(response.headers['content-type']).toContain('application/problem+json');
    const problem = JSON.parse(response.body);
    expect(problem).toMatchObject({
      code: c.code,
      status: c.status,
      retriable: ERROR_CODES[c.code].retriable,
    });
    expect(typeof problem.detail).toBe('string');
    if (c.field !== undefined) expect(problem.field).toBe(c.field);
    expect((await h.broker.admin.describeTopic('guarded')).partitions.map((p) => p.logEndOffset)).toEqual(
      before,
    );
    expect(h.broker.admin.listTopics()).toEqual(topicsBefore);
    expect((await h.broker.admin.describeTopic('strict')).partitions[0]!.logEndOffset).toBe(0);
  });
});

describe('docs/errors.md', () => {
  it('lists exactly the codes of ERROR_CODES with their status and retriable flag', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'errors.md'), 'utf8');
    const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \| (yes|no) \|/gm)].map((m) => [
      m[1],
      Number(m[2]),
      m[3] === 'yes',
    ]);
    const expected = Object.entries(ERROR_CODES).map(([code, e]) => [code, e.status, e.retriable]);
    expect(rows).toEqual(expected);
  });
});

describe('server-side failures', () => {
  it('answers an unexpected error with 500 UNKNOWN_SERVER_ERROR without leaking its message', async () => {
    const failing = {
      node: { nodeId: 1, version: 'test', shuttingDown: false, ready: true },
      admin: {
        listTopics() {
          throw new Error('ENOENT: /secret/path/topics.json');
        },
        describeTopic() {
          throw new SluiceError('KAFKA_STORAGE_ERROR', 'the log in /secret/data/t-0 is closed');
        },
      },
      fetch: {
        read() {
          throw new SluiceError('LIMIT_EXCEEDED', 'too many waiting fetches (limit 1)');
        },
      },
    } as unknown as BrokerApi;
    const app = buildApp({}, { broker: failing });
    try {
      const crashed = await app.inject({ method: 'GET', url: '/v1/topics' });
      expect(crashed.statusCode).toBe(500);
      expect(crashed.body).not.toContain('secret');
      expect(JSON.parse(crashed.body)).toMatchObject({ code: 'UNKNOWN_SERVER_ERROR', retriable: false });
      const storage = await app.inject({ method: 'GET', url: '/v1/topics/t' });
      expect(storage.statusCode).toBe(500);
      expect(storage.body).not.toContain('secret');
      expect(JSON.parse(storage.body)).toMatchObject({ code: 'KAFKA_STORAGE_ERROR', retriable: true });
      const busy = await app.inject({ method: 'GET', url: '/v1/topics/t/partitions/0/records' });
      expect(busy.statusCode).toBe(429);
      expect(JSON.parse(busy.body)).toMatchObject({ code: 'LIMIT_EXCEEDED', retriable: true });
    } finally {
      await app.close();
    }
  });
});
