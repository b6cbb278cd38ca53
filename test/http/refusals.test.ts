import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/common/errors.js';
import { LIMITS } from '../../src/common/limits.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { type Harness, makeHarness } from './harness.js';

/**
 * A refused request changes nothing: the Accept and Content-Type checks, the topic-name limit and
 * the number rules of paths and queries answer with problem+json before any side effect, and the
 * logs, topics and configs are exactly as they were.
 */
let h: Harness;
beforeAll(async () => {
  h = await makeHarness();
  await h.broker.admin.createTopic({ name: 'kept', partitions: 2, configs: { 'retention.ms': 1000 } });
  await h.broker.produce.records('kept', [{ value: Buffer.from('seed'), partition: 0, timestamp: 1 }], 1);
});
afterAll(() => h.close());

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

interface Refusal {
  name: string;
  method: Method;
  url: string;
  headers?: Record<string, string | string[]>;
  payload?: string | Buffer;
  status: number;
  code: keyof typeof ERROR_CODES;
  field?: string;
}

/** Everything a refused request must leave alone. */
function state() {
  return {
    topics: h.broker.admin.listTopics(),
    kept: h.broker.admin.describeTopic('kept'),
  };
}

async function expectRefused(c: Refusal): Promise<void> {
  const before = state();
  const response = await h.app.inject({
    method: c.method,
    url: c.url,
    headers: c.headers ?? {},
    ...(c.payload === undefined ? {} : { payload: c.payload }),
  });
  expect(response.statusCode, response.body).toBe(c.status);
  expect(response.headers['content-type']).toContain('application/problem+json');
  const problem = JSON.parse(response.body);
  expect(problem).toMatchObject({ code: c.code, status: c.status, retriable: ERROR_CODES[c.code].retriable });
  if (c.field !== undefined) expect(problem.field).toBe(c.field);
  expect(state()).toEqual(before);
}

const json = 'application/json';
const record = '{"records":[{"value":"x"}]}';

describe('Accept is checked before anything happens', () => {
  const unacceptable = ['image/png', 'text/event-stream', 'application/x-ndjson', 'application/xml'];
  const cases: Refusal[] = unacceptable.flatMap((accept): Refusal[] => [
    {
      name: `produce with Accept ${accept}`,
      method: 'POST',
      url: '/v1/topics/kept/records',
      headers: { 'content-type': json, accept },
      payload: record,
      status: 406,
      code: 'NOT_ACCEPTABLE',
    },
    {
      name: `partition produce with Accept ${accept}`,
      method: 'POST',
      url: '/v1/topics/kept/partitions/1/records?acks=0',
      headers: { 'content-type': json, accept },
      payload: record,
      status: 406,
      code: 'NOT_ACCEPTABLE',
    },
    {
      name: `delete with Accept ${accept}`,
      method: 'DELETE',
      url: '/v1/topics/kept',
      headers: { accept },
      status: 406,
      code: 'NOT_ACCEPTABLE',
    },
    {
      name: `create with Accept ${accept}`,
      method: 'POST',
      url: '/v1/topics',
      headers: { 'content-type': json, accept },
      payload: '{"name":"born"}',
      status: 406,
      code: 'NOT_ACCEPTABLE',
    },
    {
      name: `config change with Accept ${accept}`,
      method: 'PATCH',
      url: '/v1/topics/kept/configs',
      headers: { 'content-type': json, accept },
      payload: '{"retention.ms":5000}',
      status: 406,
      code: 'NOT_ACCEPTABLE',
    },
    {
      name: `partition growth with Accept ${accept}`,
      method: 'POST',
      url: '/v1/topics/kept/partitions',
      headers: { 'content-type': json, accept },
      payload: '{"partitions":3}',
      status: 406,
      code: 'NOT_ACCEPTABLE',
    },
  ]);
  it.each(cases)('$name → 406, nothing changed', expectRefused);

  it('refuses a body it would not even parse: the check runs before the body', async () => {
    await expectRefused({
      name: 'malformed body, unacceptable Accept',
      method: 'POST',
      url: '/v1/topics/kept/records',
      headers: { 'content-type': json, accept: 'image/png' },
      payload: '{"records": [',
      status: 406,
      code: 'NOT_ACCEPTABLE',
    });
  });

  it('still lets fetch answer in NDJSON and server-sent events, and refuses other types', async () => {
    const ndjson = await h.app.inject({
      method: 'GET',
      url: '/v1/topics/kept/partitions/0/records?offset=0',
      headers: { accept: 'application/x-ndjson' },
    });
    expect(ndjson.statusCode).toBe(200);
    expect(ndjson.headers['content-type']).toContain('application/x-ndjson');
    expect(JSON.parse(ndjson.body.trim())).toMatchObject({ offset: 0, value: 'seed' });
    await expectRefused({
      name: 'fetch as png',
      method: 'GET',
      url: '/v1/topics/kept/partitions/0/records',
      headers: { accept: 'image/png' },
      status: 406,
      code: 'NOT_ACCEPTABLE',
    });
    await expectRefused({
      name: 'offsets as NDJSON',
      method: 'GET',
      url: '/v1/topics/kept/partitions/0/offsets',
      headers: { accept: 'application/x-ndjson' },
      status: 406,
      code: 'NOT_ACCEPTABLE',
    });
  });

  it('takes the usual Accept forms: msgpack (both names), wildcards, q-values', async () => {
    for (const accept of [
      'application/vnd.msgpack',
      'application/msgpack',
      '*/*',
      'application/*',
      'image/png;q=0.9, application/json;q=0.5',
    ]) {
      const response = await h.app.inject({ method: 'GET', url: '/v1/topics', headers: { accept } });
      expect(response.statusCode, accept).toBe(200);
    }
  });
});

describe('Content-Type and Content-Encoding are checked before anything happens', () => {
  const batch = encodeBatch([{ value: Buffer.from('b'), timestamp: 1 }]);
  const cases: Refusal[] = [
    {
      name: 'text/plain on produce',
      method: 'POST',
      url: '/v1/topics/kept/records',
      headers: { 'content-type': 'text/plain' },
      payload: record,
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'text/plain on partition produce',
      method: 'POST',
      url: '/v1/topics/kept/partitions/0/records',
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      payload: record,
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'octet-stream on topic create',
      method: 'POST',
      url: '/v1/topics',
      headers: { 'content-type': 'application/octet-stream' },
      payload: '{"name":"born"}',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'NDJSON on topic create',
      method: 'POST',
      url: '/v1/topics',
      headers: { 'content-type': 'application/x-ndjson' },
      payload: '{"name":"born"}\n',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'NDJSON on config change',
      method: 'PATCH',
      url: '/v1/topics/kept/configs',
      headers: { 'content-type': 'application/x-ndjson' },
      payload: '{"retention.ms":5000}\n',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'octet-stream on partition growth',
      method: 'POST',
      url: '/v1/topics/kept/partitions',
      headers: { 'content-type': 'application/octet-stream' },
      payload: '{"partitions":3}',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: "an idempotent producer's pre-built batch on the topic-level produce route",
      method: 'POST',
      url: '/v1/topics/kept/records',
      headers: { 'content-type': 'application/vnd.sluice.batches' },
      payload: encodeBatch([{ value: Buffer.from('b'), timestamp: 1 }], {
        producerId: 1,
        producerEpoch: 0,
        baseSequence: 0,
      }),
      status: 400,
      code: 'INVALID_REQUEST',
    },
    {
      name: 'a media type that only starts like JSON',
      method: 'POST',
      url: '/v1/topics/kept/records',
      headers: { 'content-type': 'application/json-seq' },
      payload: record,
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'a body without a Content-Type',
      method: 'POST',
      url: '/v1/topics/kept/records',
      headers: { 'content-type': undefined as unknown as string },
      payload: record,
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'two Content-Type headers',
      method: 'POST',
      url: '/v1/topics/kept/records',
      headers: { 'content-type': [json, 'application/vnd.msgpack'] },
      payload: record,
      status: 400,
      code: 'INVALID_REQUEST',
    },
    {
      name: 'two Content-Type headers on topic create',
      method: 'POST',
      url: '/v1/topics',
      headers: { 'content-type': [json, json] },
      payload: '{"name":"born"}',
      status: 400,
      code: 'INVALID_REQUEST',
    },
    {
      name: 'a compress Content-Encoding on produce (gzip, br and zstd are read)',
      method: 'POST',
      url: '/v1/topics/kept/records',
      headers: { 'content-type': json, 'content-encoding': 'compress' },
      payload: record,
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'a deflate Content-Encoding on topic create',
      method: 'POST',
      url: '/v1/topics',
      headers: { 'content-type': json, 'content-encoding': 'deflate' },
      payload: '{"name":"born"}',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'a body on delete, which takes none',
      method: 'DELETE',
      url: '/v1/topics/kept',
      headers: { 'content-type': json },
      payload: '{"really":true}',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'a body on a GET',
      method: 'GET',
      url: '/v1/topics',
      headers: { 'content-type': json },
      payload: '{}',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
  ];
  it.each(cases)('$name → $status $code, nothing changed', expectRefused);

  it('takes the media types the table lists, with parameters and identity encoding', async () => {
    const takes = [
      { type: 'application/json; charset=utf-8', payload: record },
      { type: 'Application/JSON', payload: record },
      { type: 'application/x-ndjson', payload: '{"value":"n"}\n' },
      { type: 'application/octet-stream', payload: 'raw' },
    ];
    for (const { type, payload } of takes) {
      const response = await h.app.inject({
        method: 'POST',
        url: '/v1/topics/kept/partitions/1/records',
        headers: { 'content-type': type, 'content-encoding': 'identity' },
        payload,
      });
      expect(response.statusCode, `${type}: ${response.body}`).toBe(200);
    }
    const batches = await h.app.inject({
      method: 'POST',
      url: '/v1/topics/kept/partitions/1/records',
      headers: { 'content-type': 'application/vnd.sluice.batches' },
      payload: batch,
    });
    expect(batches.statusCode, batches.body).toBe(200);
    // A route without a body still takes a request that announces an empty one.
    const empty = await h.app.inject({
      method: 'GET',
      url: '/v1/topics',
      headers: { 'content-type': json, 'content-length': '0' },
    });
    expect(empty.statusCode).toBe(200);
  });
});

describe('topic names: one limit of 249 characters for create and for every route', () => {
  const longest = 'n'.repeat(LIMITS.topicNameLengthMax);

  it('serves a topic with the longest name on every route, and deletes it', async () => {
    const created = await h.app.inject({
      method: 'POST',
      url: '/v1/topics',
      headers: { 'content-type': json },
      payload: JSON.stringify({ name: longest }),
    });
    expect(created.statusCode, created.body).toBe(201);
    const urls = [
      `/v1/topics/${longest}`,
      `/v1/topics/${longest}/partitions/0/records?offset=0`,
      `/v1/topics/${longest}/partitions/0/offsets`,
      // Every character percent-encoded is still the same name.
      `/v1/topics/${'%6E'.repeat(LIMITS.topicNameLengthMax)}`,
    ];
    for (const url of urls) {
      const response = await h.app.inject({ method: 'GET', url });
      expect(response.statusCode, `${url.slice(0, 60)}: ${response.body.slice(0, 200)}`).toBe(200);
    }
    const produced = await h.app.inject({
      method: 'POST',
      url: `/v1/topics/${longest}/records`,
      headers: { 'content-type': json },
      payload: record,
    });
    expect(produced.statusCode, produced.body).toBe(200);
    const deleted = await h.app.inject({ method: 'DELETE', url: `/v1/topics/${longest}` });
    expect(deleted.statusCode, deleted.body).toBe(200);
    expect(h.broker.admin.listTopics().map((t) => t.name)).not.toContain(longest);
  });

  const tooLong = 'n'.repeat(LIMITS.topicNameLengthMax + 1);
  const cases: Refusal[] = [
    {
      name: 'create with 250 characters',
      method: 'POST',
      url: '/v1/topics',
      headers: { 'content-type': json },
      payload: JSON.stringify({ name: tooLong }),
      status: 400,
      code: 'INVALID_TOPIC_EXCEPTION',
    },
    {
      name: 'create with 5000 characters',
      method: 'POST',
      url: '/v1/topics',
      headers: { 'content-type': json },
      payload: JSON.stringify({ name: 'n'.repeat(5000) }),
      status: 400,
      code: 'INVALID_TOPIC_EXCEPTION',
    },
    {
      name: 'describe with 250 characters',
      method: 'GET',
      url: `/v1/topics/${tooLong}`,
      status: 400,
      code: 'INVALID_TOPIC_EXCEPTION',
      field: 'params/topic',
    },
    {
      name: 'produce with 250 characters',
      method: 'POST',
      url: `/v1/topics/${tooLong}/records`,
      headers: { 'content-type': json },
      payload: record,
      status: 400,
      code: 'INVALID_TOPIC_EXCEPTION',
      field: 'params/topic',
    },
    {
      name: 'a bad character in a path name',
      method: 'GET',
      url: '/v1/topics/bad%20name',
      status: 400,
      code: 'INVALID_TOPIC_EXCEPTION',
      field: 'params/topic',
    },
    {
      name: 'delete with 2000 characters (longer than the router takes)',
      method: 'DELETE',
      url: `/v1/topics/${'n'.repeat(2000)}`,
      status: 400,
      code: 'INVALID_TOPIC_EXCEPTION',
      field: 'params/topic',
    },
    {
      name: 'fetch with 2000 characters',
      method: 'GET',
      url: `/v1/topics/${'n'.repeat(2000)}/partitions/0/records`,
      status: 400,
      code: 'INVALID_TOPIC_EXCEPTION',
      field: 'params/topic',
    },
    {
      name: 'a partition of 2000 digits',
      method: 'GET',
      url: `/v1/topics/kept/partitions/${'1'.repeat(2000)}/records`,
      status: 400,
      code: 'INVALID_REQUEST',
    },
  ];
  it.each(cases)('$name → $status $code', expectRefused);
});

describe('numbers in paths and queries are decimal integers in range', () => {
  const bad = (name: string, url: string, field: string, method: Method = 'GET'): Refusal => ({
    name,
    method,
    url,
    ...(method === 'POST' ? { headers: { 'content-type': json }, payload: record } : {}),
    status: 400,
    code: 'INVALID_REQUEST',
    field,
  });
  const fetchUrl = '/v1/topics/kept/partitions/0/records';
  const cases: Refusal[] = [
    bad('partition 0x1', '/v1/topics/kept/partitions/0x1/records', 'params/partition'),
    bad('partition %200', '/v1/topics/kept/partitions/%200/records', 'params/partition'),
    bad('partition 1e2', '/v1/topics/kept/partitions/1e2/records', 'params/partition'),
    bad('partition 1.0', '/v1/topics/kept/partitions/1.0/offsets', 'params/partition'),
    bad('partition +1', '/v1/topics/kept/partitions/+1/offsets', 'params/partition'),
    bad('partition -0', '/v1/topics/kept/partitions/-0/offsets', 'params/partition'),
    bad('partition 0x1 on produce', '/v1/topics/kept/partitions/0x1/records', 'params/partition', 'POST'),
    bad('timestamp 1e30', '/v1/topics/kept/partitions/0/offsets?timestamp=1e30', 'querystring/timestamp'),
    bad('timestamp 0x10', '/v1/topics/kept/partitions/0/offsets?timestamp=0x10', 'querystring/timestamp'),
    bad('timestamp -3', '/v1/topics/kept/partitions/0/offsets?timestamp=-3', 'querystring/timestamp'),
    bad('timestamp empty', '/v1/topics/kept/partitions/0/offsets?timestamp=', 'querystring/timestamp'),
    bad(
      'timestamp past 2^53',
      '/v1/topics/kept/partitions/0/offsets?timestamp=99999999999999999999',
      'querystring/timestamp',
    ),
    bad('maxWaitMs 1e3', `${fetchUrl}?maxWaitMs=1e3`, 'querystring/maxWaitMs'),
    bad('maxWaitMs 1.5', `${fetchUrl}?maxWaitMs=1.5`, 'querystring/maxWaitMs'),
    bad('maxWaitMs -1', `${fetchUrl}?maxWaitMs=-1`, 'querystring/maxWaitMs'),
    bad('maxBytes 0x100', `${fetchUrl}?maxBytes=0x100`, 'querystring/maxBytes'),
    bad('minBytes " 1"', `${fetchUrl}?minBytes=%201`, 'querystring/minBytes'),
    bad('timeoutMs 1e3 on produce', '/v1/topics/kept/records?timeoutMs=1e3', 'querystring/timeoutMs', 'POST'),
  ];
  it.each(cases)('$name → 400 $field', expectRefused);

  it('takes plain decimals, leading zeros and the negative timestamps of the schema', async () => {
    for (const url of [
      '/v1/topics/kept/partitions/00/offsets?timestamp=0',
      '/v1/topics/kept/partitions/1/offsets?timestamp=-1',
      '/v1/topics/kept/partitions/1/offsets?timestamp=-2',
      `${fetchUrl}?maxWaitMs=0&maxBytes=1024&minBytes=0&offset=0`,
    ]) {
      const response = await h.app.inject({ method: 'GET', url });
      expect(response.statusCode, `${url}: ${response.body}`).toBe(200);
    }
  });
});
