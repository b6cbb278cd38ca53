import { mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import * as http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLogLine } from '../../src/node/log-format.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';
import { parsePrometheusText, sampleValue } from '../http/prometheus-text.js';

/**
 * A node's observability over real HTTP: its own metrics registry (two nodes in one process do not
 * share numbers), connections by protocol and follow streams counted, request ids honoured or
 * made and returned, and at the default level (info) JSON log lines with the documented fields
 * for start, stop, topic changes, recovery and slow requests, with no client data in a message.
 */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-observability-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const base = (node: SluiceNode) => `http://${node.address.host}:${node.address.port}`;

async function scrape(node: SluiceNode) {
  const response = await fetch(`${base(node)}/metrics`);
  expect(response.status).toBe(200);
  return parsePrometheusText(await response.text());
}

function produce(node: SluiceNode, topic: string, records: object[], headers: Record<string, string> = {}) {
  return fetch(`${base(node)}/v1/topics/${topic}/records?acks=1`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ records }),
  });
}

function createTopic(node: SluiceNode, name: string) {
  return fetch(`${base(node)}/v1/topics`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, partitions: 1 }),
  });
}

/** Log lines written by a node, parsed; each must be one JSON object. */
function logSink() {
  const lines: Record<string, unknown>[] = [];
  return {
    lines,
    stream: {
      write(text: string) {
        for (const line of text.split('\n')) if (line !== '') lines.push(JSON.parse(line));
      },
    },
    find: (msg: string) => lines.filter((l) => l.msg === msg),
  };
}

describe('a node’s metrics', () => {
  it('are its own: two nodes in one process keep separate registries', async () => {
    const a = await startNode({ dataDir: join(dir, 'a'), port: 0, logLevel: 'silent' });
    const b = await startNode({ dataDir: join(dir, 'b'), port: 0, logLevel: 'silent' });
    try {
      expect(a.metrics).not.toBe(b.metrics);
      expect((await createTopic(a, 't')).status).toBe(201);
      expect((await createTopic(b, 't')).status).toBe(201);
      expect((await produce(a, 't', [{ value: '1' }, { value: '2' }])).status).toBe(200);
      expect((await produce(b, 't', [{ value: '3' }])).status).toBe(200);
      const labels = { topic: 't', partition: '0' };
      expect(sampleValue(await scrape(a), 'sluice_records_in_total', labels)).toBe(2);
      expect(sampleValue(await scrape(b), 'sluice_records_in_total', labels)).toBe(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('count connections by protocol and open follow streams', async () => {
    const node = await startNode({ dataDir: join(dir, 'conn'), port: 0, logLevel: 'silent' });
    const session = http2.connect(base(node));
    try {
      expect((await createTopic(node, 'f')).status).toBe(201);
      // An HTTP/2 request, so that the session is surely established and counted.
      await new Promise<void>((resolve, reject) => {
        const stream = session.request({ ':path': '/livez' });
        stream.on('response', () => stream.resume());
        stream.on('end', resolve);
        stream.on('error', reject);
        stream.end();
      });
      // A record to stream, so that the stream's headers and first line go out at once.
      expect((await produce(node, 'f', [{ value: 'first' }])).status).toBe(200);
      const controller = new AbortController();
      const follow = await fetch(`${base(node)}/v1/topics/f/partitions/0/records?follow=true`, {
        headers: { accept: 'application/x-ndjson' },
        signal: controller.signal,
      });
      expect(follow.status).toBe(200);
      const reader = follow.body!.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain('first');
      const m = await scrape(node);
      expect(sampleValue(m, 'sluice_http_connections', { protocol: 'h2' })).toBe(1);
      // The follow stream's connection and the scrape's.
      expect(sampleValue(m, 'sluice_http_connections', { protocol: 'h1' })).toBeGreaterThanOrEqual(2);
      expect(sampleValue(m, 'sluice_follow_streams')).toBe(1);
      controller.abort();
      for (let i = 0; i < 200; i++) {
        if (sampleValue(await scrape(node), 'sluice_follow_streams') === 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(sampleValue(await scrape(node), 'sluice_follow_streams')).toBe(0);
      // A follow stream is not a request latency.
      expect(
        sampleValue(await scrape(node), 'sluice_fetch_request_duration_seconds_count', {
          route: 'fetch',
          status: '200',
        }),
      ).toBeUndefined();
    } finally {
      session.close();
      await node.close();
    }
  });
});

describe('request ids', () => {
  it('honour a safe x-request-id, replace an unsafe one, and come back in the answer', async () => {
    const node = await startNode({ dataDir: join(dir, 'ids'), port: 0, logLevel: 'silent' });
    try {
      const given = await fetch(`${base(node)}/livez`, { headers: { 'x-request-id': 'trace-42.a:b' } });
      expect(given.headers.get('x-request-id')).toBe('trace-42.a:b');
      for (const unsafe of ['has space', 'x'.repeat(129), 'quote"d', '']) {
        const made = await fetch(`${base(node)}/livez`, { headers: { 'x-request-id': unsafe } });
        expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/);
      }
      const one = (await fetch(`${base(node)}/readyz`)).headers.get('x-request-id');
      const two = (await fetch(`${base(node)}/readyz`)).headers.get('x-request-id');
      expect(one).not.toBe(two);
      // Problems carry it too.
      const missing = await fetch(`${base(node)}/v1/topics/nope`, { headers: { 'x-request-id': 'r-404' } });
      expect(missing.status).toBe(404);
      expect(missing.headers.get('x-request-id')).toBe('r-404');
    } finally {
      await node.close();
    }
  });
});

describe('logs at the default level', () => {
  it('are JSON lines: start, topic changes, slow requests with the request id, stop', async () => {
    const sink = logSink();
    const dataDir = join(dir, 'logs');
    const node = await startNode({ dataDir, port: 0, logStream: sink.stream, slowRequestMs: 0 });
    expect((await createTopic(node, 'logged')).status).toBe(201);
    expect((await produce(node, 'logged', [{ value: 'v' }], { 'x-request-id': 'slow-1' })).status).toBe(200);
    await node.close();

    for (const line of sink.lines) {
      expect(line).toMatchObject({
        level: expect.any(Number),
        time: expect.any(Number),
        msg: expect.any(String),
      });
      // No client data in a message: the topic name is a field, never part of the text.
      expect(line.msg).not.toContain('logged');
    }
    expect(sink.lines.some((l) => /^listening on http:\/\/127\.0\.0\.1:\d+/.test(String(l.msg)))).toBe(true);
    expect(sink.find('node started')[0]).toMatchObject({
      level: 30,
      nodeId: 1,
      port: node.address.port,
      dataDir,
      version: expect.any(String),
    });
    expect(sink.find('topic created')[0]).toMatchObject({ level: 30, topic: 'logged', partitions: 1 });
    expect(sink.find('compression codecs loaded')[0]).toMatchObject({
      level: 30,
      codecs: ['none', 'gzip', 'snappy', 'lz4', 'zstd'],
    });
    expect(sink.find('slow request')).toContainEqual(
      expect.objectContaining({ level: 30, reqId: 'slow-1', route: 'produce', status: 200, acks: '1' }),
    );
    expect(sink.find('node stopping')).toHaveLength(1);
    expect(sink.find('node stopped')).toHaveLength(1);
    // Nothing per request at info: the produce left only its slow-request line.
    expect(sink.lines.filter((l) => l.reqId === 'slow-1')).toHaveLength(1);
  });

  it('report what recovery scanned after an unclean shutdown', async () => {
    const dataDir = join(dir, 'recovery');
    const first = await startNode({ dataDir, port: 0, logLevel: 'silent' });
    expect((await createTopic(first, 'r')).status).toBe(201);
    expect((await produce(first, 'r', [{ value: 'kept' }])).status).toBe(200);
    await first.close();
    // As if the process had died: no clean-shutdown marker.
    const partitionDir = join(dataDir, 'r-0');
    expect(await readdir(partitionDir)).toContain('.clean-shutdown');
    await unlink(join(partitionDir, '.clean-shutdown'));
    const sink = logSink();
    const second = await startNode({ dataDir, port: 0, logStream: sink.stream });
    await second.close();
    expect(sink.find('partition log recovered after an unclean shutdown')).toEqual([
      expect.objectContaining({
        level: 30,
        topic: 'r',
        partition: 0,
        segmentsScanned: 1,
        truncatedBytes: 0,
        logEndOffset: 1,
      }),
    ]);
    expect(sink.find('node started')[0]).toMatchObject({ partitions: 1 });
  });

  it('warn at start when the last run ended with the machine, and write the run state clean at close', async () => {
    const dataDir = join(dir, 'run-state');
    const first = await startNode({ dataDir, port: 0, logLevel: 'silent' });
    expect((await createTopic(first, 'u')).status).toBe(201);
    expect((await produce(first, 'u', [{ value: 'kept' }])).status).toBe(200);
    await first.close();
    const runState = join(dataDir, 'run-state.json');
    expect(JSON.parse(await readFile(runState, 'utf8'))).toMatchObject({ clean: true });
    // As if the machine had gone down: the run never closed, on a boot before this one.
    await writeFile(runState, JSON.stringify({ bootId: 'a-boot-before-this-one', clean: false }));
    const sink = logSink();
    const second = await startNode({ dataDir, port: 0, logStream: sink.stream });
    try {
      // Written as begun before the broker registered.
      expect(JSON.parse(await readFile(runState, 'utf8'))).toMatchObject({ clean: false });
      // The one replica of a single node keeps its partitions: they are served.
      const read = await fetch(`${base(second)}/v1/topics/u/partitions/0/records?offset=0`, {
        headers: { accept: 'application/json' },
      });
      expect(read.status).toBe(200);
    } finally {
      await second.close();
    }
    expect(
      sink.find(
        'the last run ended with the machine: this broker leaves the in-sync sets of asynchronously flushed topics until it has caught up',
      ),
    ).toEqual([expect.objectContaining({ level: 40, lastShutdown: 'unclean' })]);
  });

  it('read as text lines on a terminal', () => {
    const line = JSON.stringify({
      level: 30,
      time: Date.UTC(2026, 0, 2, 3, 4, 5, 6),
      pid: 1,
      hostname: 'h',
      msg: 'topic created',
      topic: 'a b',
      partitions: 3,
      reqId: 'r-1',
    });
    expect(formatLogLine(line)).toBe(
      '2026-01-02T03:04:05.006Z INFO  topic created topic="a b" partitions=3 reqId=r-1\n',
    );
    const error = formatLogLine(
      JSON.stringify({
        level: 50,
        time: 0,
        msg: 'failed',
        err: { message: 'boom', stack: 'Error: boom\n  at x' },
      }),
    );
    expect(error).toBe('1970-01-01T00:00:00.000Z ERROR failed err="boom"\n    Error: boom\n      at x\n');
    expect(formatLogLine('not json')).toBe('not json\n');
  });
});

describe('health during a shutdown', () => {
  it('keeps /livez answering and turns /readyz to 503 SHUTTING_DOWN', async () => {
    const node = await startNode({ dataDir: join(dir, 'health'), port: 0, logLevel: 'silent' });
    try {
      expect((await fetch(`${base(node)}/readyz`)).status).toBe(200);
      node.broker.beginShutdown();
      const live = await fetch(`${base(node)}/livez`);
      expect(live.status).toBe(200);
      expect(await live.json()).toEqual({ status: 'alive', nodeId: 1 });
      const ready = await fetch(`${base(node)}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ code: 'SHUTTING_DOWN', retriable: true });
    } finally {
      await node.close();
    }
  });
});
