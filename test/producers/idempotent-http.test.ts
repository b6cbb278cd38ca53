import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type SluiceNode, startNode } from '../../src/node/node.js';
import { encodeBatch } from '../../src/protocol/batch.js';

/**
 * Idempotent producers over plain HTTP, as curl or any language sends them: an id from
 * `POST /v1/producers`, then `Sluice-Producer-Id`, `Sluice-Producer-Epoch` and `Sluice-Sequence`
 * on a partition produce. A retry lands once, also after a restart; bad headers are refused and
 * change nothing.
 */

let dir: string;
let node: SluiceNode | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-idem-'));
});
afterEach(async () => {
  await node?.close();
  node = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function start(): Promise<string> {
  node = await startNode({ dataDir: dir, port: 0, logLevel: 'silent' });
  return `http://127.0.0.1:${node.address.port}`;
}

async function call(
  url: string,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string>; raw?: Buffer } = {},
) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(options.raw
        ? { 'content-type': 'application/vnd.sluice.batches' }
        : options.body !== undefined
          ? { 'content-type': 'application/json' }
          : {}),
      ...options.headers,
    },
    ...(options.raw
      ? { body: options.raw }
      : options.body !== undefined
        ? { body: JSON.stringify(options.body) }
        : {}),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

const producerHeaders = (id: number, epoch: number, sequence: number) => ({
  'sluice-producer-id': String(id),
  'sluice-producer-epoch': String(epoch),
  'sluice-sequence': String(sequence),
});

const records = (...values: string[]) => ({ records: values.map((value) => ({ value })) });

async function valuesOf(url: string, topic: string): Promise<string[]> {
  const read = await call(
    url,
    'GET',
    `/v1/topics/${topic}/partitions/0/records?offset=earliest&maxBytes=1000000`,
  );
  return read.body.records.map((r: { value: string }) => r.value);
}

describe('idempotent produce over HTTP', () => {
  it('lands a retried request once and answers it with the first offsets', async () => {
    const url = await start();
    expect((await call(url, 'POST', '/v1/topics', { body: { name: 't', partitions: 2 } })).status).toBe(201);
    const created = await call(url, 'POST', '/v1/producers');
    expect(created.status).toBe(201);
    const { producerId, producerEpoch } = created.body;
    expect(producerEpoch).toBe(0);
    const other = await call(url, 'POST', '/v1/producers');
    expect(other.body.producerId).not.toBe(producerId);

    const path = '/v1/topics/t/partitions/0/records';
    const first = await call(url, 'POST', path, {
      body: records('a', 'b'),
      headers: producerHeaders(producerId, 0, 0),
    });
    expect(first.status).toBe(200);
    expect(first.headers.get('sluice-duplicate')).toBeNull();
    const retry = await call(url, 'POST', path, {
      body: records('a', 'b'),
      headers: producerHeaders(producerId, 0, 0),
    });
    expect(retry.status).toBe(200);
    expect(retry.body.offsets).toEqual(first.body.offsets);
    expect(retry.body.duplicate).toBe(true);
    expect(retry.headers.get('sluice-duplicate')).toBe('true');
    const next = await call(url, 'POST', path, {
      body: records('c'),
      headers: producerHeaders(producerId, 0, 2),
    });
    expect(next.body.offsets).toEqual([{ partition: 0, offset: 2 }]);
    // Sequence numbers are per partition: partition 1 starts at 0 for the same producer.
    const elsewhere = await call(url, 'POST', '/v1/topics/t/partitions/1/records', {
      body: records('x'),
      headers: producerHeaders(producerId, 0, 0),
    });
    expect(elsewhere.status).toBe(200);
    expect(await valuesOf(url, 't')).toEqual(['a', 'b', 'c']);
    // The retry is counted, and the producer id block shows in the cluster's figures.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^sluice_produce_duplicates_total 1$/m);
    expect(metrics).toMatch(/^sluice_cluster_producer_ids_allocated 1000$/m);
    expect(metrics).toMatch(/^sluice_cluster_partitions_reassigning 0$/m);
    // The topic description (and the console's topic view) counts the producers each partition knows.
    const described = await call(url, 'GET', '/v1/topics/t');
    expect(described.body.partitions.map((p: { stats: { producers: number } }) => p.stats.producers)).toEqual(
      [1, 1],
    );
  });

  it('refuses a gap, an older epoch and malformed headers with a problem, appending nothing', async () => {
    const url = await start();
    await call(url, 'POST', '/v1/topics', { body: { name: 't', partitions: 1 } });
    const { producerId } = (await call(url, 'POST', '/v1/producers')).body;
    const path = '/v1/topics/t/partitions/0/records';
    await call(url, 'POST', path, { body: records('a'), headers: producerHeaders(producerId, 1, 0) });
    const cases: [Record<string, string>, number, string][] = [
      [producerHeaders(producerId, 1, 5), 409, 'OUT_OF_ORDER_SEQUENCE_NUMBER'],
      [producerHeaders(producerId, 0, 1), 409, 'PRODUCER_FENCED'],
      [producerHeaders(producerId + 500, 0, 3), 409, 'UNKNOWN_PRODUCER_ID'],
      [{ 'sluice-producer-id': String(producerId), 'sluice-sequence': '1' }, 400, 'INVALID_REQUEST'],
      [
        producerHeaders(producerId, 1, 1) && {
          ...producerHeaders(producerId, 1, 1),
          'sluice-sequence': '-1',
        },
        400,
        'INVALID_REQUEST',
      ],
      [{ ...producerHeaders(producerId, 1, 1), 'sluice-producer-epoch': '40000' }, 400, 'INVALID_REQUEST'],
      [{ ...producerHeaders(producerId, 1, 1), 'sluice-sequence': '1e3' }, 400, 'INVALID_REQUEST'],
    ];
    for (const [headers, status, code] of cases) {
      const refused = await call(url, 'POST', path, { body: records('never'), headers });
      expect(refused.status, JSON.stringify(headers)).toBe(status);
      expect(refused.body.code, JSON.stringify(refused.body)).toBe(code);
      expect(refused.headers.get('content-type')).toMatch(/problem\+json/);
    }
    // The topic route partitions by key: sequence numbers, which are per partition, do not fit it.
    const topicRoute = await call(url, 'POST', '/v1/topics/t/records', {
      body: records('never'),
      headers: producerHeaders(producerId, 1, 1),
    });
    expect(topicRoute.status).toBe(400);
    expect(topicRoute.body.field ?? topicRoute.body.code).toBeDefined();
    expect(await valuesOf(url, 't')).toEqual(['a']);
  });

  it('takes a pre-built batch with its producer fields, and its retry once', async () => {
    const url = await start();
    await call(url, 'POST', '/v1/topics', { body: { name: 't', partitions: 1 } });
    const { producerId } = (await call(url, 'POST', '/v1/producers')).body;
    const batch = encodeBatch([{ key: null, value: Buffer.from('pre'), timestamp: 1 }], {
      producerId,
      producerEpoch: 0,
      baseSequence: 0,
    });
    const path = '/v1/topics/t/partitions/0/records';
    const first = await call(url, 'POST', path, { raw: Buffer.from(batch) });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    const retry = await call(url, 'POST', path, { raw: Buffer.from(batch) });
    expect(retry.body).toMatchObject({ baseOffset: first.body.baseOffset, duplicate: true });
    // Producer headers beside a batch that carries its own fields: refused.
    const both = await call(url, 'POST', path, {
      raw: Buffer.from(batch),
      headers: producerHeaders(producerId, 0, 1),
    });
    expect(both.status).toBe(400);
    expect(await valuesOf(url, 't')).toEqual(['pre']);
  });

  it('keeps the producer state and the id blocks across a restart', async () => {
    let url = await start();
    await call(url, 'POST', '/v1/topics', { body: { name: 't', partitions: 1 } });
    const { producerId } = (await call(url, 'POST', '/v1/producers')).body;
    const path = '/v1/topics/t/partitions/0/records';
    const first = await call(url, 'POST', path, {
      body: records('a'),
      headers: producerHeaders(producerId, 0, 0),
    });
    await node!.close();
    url = await start();
    const retry = await call(url, 'POST', path, {
      body: records('a'),
      headers: producerHeaders(producerId, 0, 0),
    });
    expect(retry.body.offsets).toEqual(first.body.offsets);
    expect(retry.body.duplicate).toBe(true);
    // A restarted node takes a new block: it never hands out an id given before.
    const after = (await call(url, 'POST', '/v1/producers')).body.producerId;
    expect(after).toBeGreaterThan(producerId);
    expect(await valuesOf(url, 't')).toEqual(['a']);
  });

  it('docs/examples/safe_retry.py: each request sent twice lands once', async () => {
    const url = await start();
    await call(url, 'POST', '/v1/topics', { body: { name: 'events', partitions: 1 } });
    const script = join(import.meta.dirname, '..', '..', 'docs', 'examples', 'safe_retry.py');
    const { stdout } = await promisify(execFile)('/usr/bin/python3', [script, url, 'events', '0']);
    expect(stdout.trim().split('\n')).toEqual(['0 0 True', '2 2 True']);
    expect(await valuesOf(url, 'events')).toEqual(['a', 'b', 'c']);
  });
});
