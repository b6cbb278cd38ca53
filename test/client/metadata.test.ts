import * as http2 from 'node:http2';
import * as net from 'node:net';
import { Packr } from 'msgpackr';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PartitionConsumer, Producer } from '../../src/client/index.js';
import { isSluiceError } from '../../src/common/errors.js';
import type { MetadataResponse } from '../../src/protocol/api.js';
import { encodeBatch, recordCountOf, setBaseOffset } from '../../src/protocol/batch.js';

/**
 * The Producer and the PartitionConsumer against a scripted cluster of two HTTP/2 servers (no
 * broker) that serve `GET /v1/metadata` from one shared view: each batch and each fetch goes to
 * its partition's leader over one session per node; an answer that says the leader moved, an
 * unreachable leader and a partition a new leader has not opened yet look the topic up again
 * before the retry; the first lookup is retried while the bootstrap node is not ready.
 */
const packr = new Packr({ useRecords: false });
const TOPIC = 't';

interface Seen {
  node: number;
  method: string;
  path: string;
}

/** What the scripted nodes say: who leads each partition, and answers to give instead. */
const view = {
  partitions: 2,
  /** The leader of each partition in the metadata; called with the number of the lookup (1, 2, …). */
  leaders: (_lookup: number): number[] => [1, 2],
  /** Partitions a node answers for as their leader; by default the ones the metadata gives it. */
  leads: undefined as ((node: number, partition: number) => boolean) | undefined,
  /** Metadata lookups answered 503 LEADER_NOT_AVAILABLE before one is answered. */
  metadataFailures: 0,
  /** Nodes that answer metadata lookups 503 SHUTTING_DOWN. */
  shuttingDown: new Set<number>(),
  /** Produce requests answered with this problem instead, in order. */
  produceProblems: [] as { status: number; code: string }[],
  topicExists: true,
};
let lookups = 0;
let seen: Seen[] = [];
const sessions = new Map<number, number>();
const offsets = new Map<number, number>();
const nodes = new Map<number, { server: http2.Http2Server; port: number }>();
const open = new Set<http2.ServerHttp2Session>();
/** A node in the metadata that nothing listens at. */
let deadPort: number;

function metadata(): MetadataResponse {
  const leaders = view.leaders(lookups);
  return {
    clusterId: 'scripted',
    controllerId: 1,
    nodes: [
      ...[...nodes].map(([id, { port }]) => ({ id, host: '127.0.0.1', port, rack: null, fenced: false })),
      { id: 3, host: '127.0.0.1', port: deadPort, rack: null, fenced: false },
    ],
    topics: view.topicExists
      ? [
          {
            name: TOPIC,
            topicId: 'scripted-topic',
            partitions: Array.from({ length: view.partitions }, (_, partition) => ({
              partition,
              leader: leaders[partition] ?? -1,
              leaderEpoch: 0,
              replicas: [leaders[partition] ?? 1],
              isr: [leaders[partition] ?? 1],
            })),
          },
        ]
      : [],
    unknownTopics: view.topicExists ? [] : [TOPIC],
  };
}

function problem(stream: http2.ServerHttp2Stream, status: number, code: string): void {
  stream.respond({ ':status': status, 'content-type': 'application/problem+json' });
  stream.end(JSON.stringify({ code, detail: code, retriable: status >= 421 && status !== 404 }));
}

/** One fetch answer: whole batch at `offset` of a log of 3 records per partition, then the end. */
function fetchAnswer(partition: number, offset: number): Buffer {
  const batches: Buffer[] = [];
  if (offset < 3) {
    const batch = encodeBatch(
      [0, 1, 2].map((i) => ({ value: Buffer.from(`p${partition}-${i}`), timestamp: 1_700_000_000_000 + i })),
    );
    setBaseOffset(batch, 0, 0);
    batches.push(batch);
  }
  const rest = Buffer.concat(
    ['nextOffset', batches.length > 0 ? 3 : offset, 'highWatermark', 3, 'logStartOffset', 0].map((v) =>
      packr.pack(v),
    ),
  );
  return Buffer.concat([
    Buffer.from([0x84]),
    Buffer.from('\xa7batches', 'latin1'),
    Buffer.from([0x90 | batches.length]),
    ...batches,
    rest,
  ]);
}

function serve(node: number, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  stream.on('error', () => {});
  const url = new URL(String(headers[':path']), 'http://x');
  const method = String(headers[':method']);
  if (method === 'POST' && url.pathname === '/v1/producers') {
    // The producer is idempotent by default: it takes a producer id before its first batch.
    stream.respond({ ':status': 201, 'content-type': 'application/vnd.msgpack' });
    stream.end(packr.pack({ producerId: 5, producerEpoch: 0 }));
    return;
  }
  seen.push({ node, method, path: url.pathname });
  if (url.pathname === '/v1/metadata') {
    if (view.shuttingDown.has(node)) {
      problem(stream, 503, 'SHUTTING_DOWN');
      return;
    }
    if (view.metadataFailures > 0) {
      view.metadataFailures--;
      problem(stream, 503, 'LEADER_NOT_AVAILABLE');
      return;
    }
    lookups++;
    stream.respond({ ':status': 200, 'content-type': 'application/vnd.msgpack' });
    stream.end(packr.pack(metadata()));
    return;
  }
  const partition = Number(/partitions\/(\d+)\//.exec(url.pathname)?.[1]);
  const leads = view.leads ?? ((n, p) => view.leaders(lookups)[p] === n);
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => {
    if (!view.topicExists) return problem(stream, 404, 'UNKNOWN_TOPIC_OR_PARTITION');
    if (!leads(node, partition)) return problem(stream, 503, 'NOT_LEADER_OR_FOLLOWER');
    if (method === 'GET') {
      stream.respond({ ':status': 200, 'content-type': 'application/vnd.msgpack' });
      stream.end(fetchAnswer(partition, Number(url.searchParams.get('offset'))));
      return;
    }
    const scripted = view.produceProblems.shift();
    if (scripted) return problem(stream, scripted.status, scripted.code);
    const body = Buffer.concat(chunks);
    const count = recordCountOf(body);
    const base = offsets.get(partition) ?? 0;
    offsets.set(partition, base + count);
    stream.respond({ ':status': 200, 'content-type': 'application/vnd.msgpack' });
    stream.end(packr.pack({ partition, baseOffset: base, lastOffset: base + count - 1, batchCount: 1 }));
  });
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

beforeAll(async () => {
  for (const id of [1, 2]) {
    const server = http2.createServer();
    server.on('session', (session) => {
      sessions.set(id, (sessions.get(id) ?? 0) + 1);
      open.add(session);
      session.on('close', () => open.delete(session));
    });
    server.on('stream', (stream, headers) => serve(id, stream, headers));
    nodes.set(id, { server, port: await listen(server) });
  }
  const closed = net.createServer();
  deadPort = await listen(closed);
  await new Promise((resolve) => closed.close(resolve));
});

afterEach(() => {
  seen = [];
  lookups = 0;
  sessions.clear();
  offsets.clear();
  Object.assign(view, {
    partitions: 2,
    leaders: () => [1, 2],
    leads: undefined,
    metadataFailures: 0,
    shuttingDown: new Set(),
    produceProblems: [],
    topicExists: true,
  });
});

afterAll(async () => {
  for (const session of open) session.destroy();
  for (const { server } of nodes.values()) await new Promise((resolve) => server.close(resolve));
});

const bootstrap = () => `http://127.0.0.1:${nodes.get(1)!.port}`;
const produced = (node: number) =>
  seen.filter((s) => s.node === node && s.method === 'POST').map((s) => Number(s.path.split('/')[5]));
const lookupsSeen = () => seen.filter((s) => s.path === '/v1/metadata').length;

describe('Producer with metadata', () => {
  it("sends each partition's batches to its leader, over one session per node", async () => {
    const producer = new Producer({ bootstrap: bootstrap(), lingerMs: 5 });
    const results = await producer.send([
      { topic: TOPIC, value: 'a', partition: 0 },
      { topic: TOPIC, value: 'b', partition: 1 },
      { topic: TOPIC, value: 'c', partition: 1 },
    ]);
    await producer.close();
    expect(results.map((r) => [r.partition, r.offset])).toEqual([
      [0, 0],
      [1, 0],
      [1, 1],
    ]);
    expect(produced(1)).toEqual([0]);
    expect(produced(2)).toEqual([1]);
    expect(lookupsSeen()).toBe(1);
    expect(Object.fromEntries(sessions)).toEqual({ 1: 1, 2: 1 });
  });

  it('looks the topic up again when the leader answers NOT_LEADER_OR_FOLLOWER, and retries at the new leader', async () => {
    const producer = new Producer({ bootstrap: bootstrap(), lingerMs: 0, retryBackoffMs: 1 });
    expect(await producer.send({ topic: TOPIC, value: 'a', partition: 0 })).toMatchObject({ offset: 0 });
    // Leadership of partition 0 moves to node 2; the producer still thinks node 1 leads it.
    view.leaders = () => [2, 2];
    expect(await producer.send({ topic: TOPIC, value: 'b', partition: 0 })).toMatchObject({ offset: 1 });
    await producer.close();
    expect(produced(1)).toEqual([0, 0]);
    expect(produced(2)).toEqual([0]);
    expect(lookupsSeen()).toBe(2);
  });

  it('looks the topic up again when the leader cannot be reached, and sends to the leader the lookup names', async () => {
    // The first lookup names node 3, which is down; the next names node 2.
    view.leaders = (lookup) => (lookup <= 1 ? [1, 3] : [1, 2]);
    const producer = new Producer({ bootstrap: bootstrap(), lingerMs: 0, retryBackoffMs: 1 });
    expect(await producer.send({ topic: TOPIC, value: 'a', partition: 1 })).toMatchObject({
      partition: 1,
      offset: 0,
    });
    await producer.close();
    expect(produced(2)).toEqual([1]);
    expect(lookupsSeen()).toBe(2);
  });

  it('retries UNKNOWN_TOPIC_OR_PARTITION from a leader that has not opened the partition yet, not from one whose topic is gone', async () => {
    view.produceProblems = [{ status: 404, code: 'UNKNOWN_TOPIC_OR_PARTITION' }];
    const producer = new Producer({ bootstrap: bootstrap(), lingerMs: 0, retryBackoffMs: 1 });
    expect(await producer.send({ topic: TOPIC, value: 'a', partition: 1 })).toMatchObject({ offset: 0 });
    expect(produced(2)).toEqual([1, 1]);
    seen = [];
    view.topicExists = false;
    const error = await producer.send({ topic: TOPIC, value: 'b', partition: 1 }).catch((e) => e);
    expect(isSluiceError(error, 'UNKNOWN_TOPIC_OR_PARTITION')).toBe(true);
    // One try: the lookup after it says the topic is gone.
    expect(produced(2)).toEqual([1]);
    await producer.close();
  });

  it('asks another node for metadata when the bootstrap node cannot answer', async () => {
    const producer = new Producer({ bootstrap: bootstrap(), lingerMs: 0, retryBackoffMs: 1 });
    expect(await producer.send({ topic: TOPIC, value: 'a', partition: 1 })).toMatchObject({ offset: 0 });
    // Partition 1 moves to node 1, which is shutting down and answers no lookups.
    view.leaders = () => [1, 1];
    view.shuttingDown.add(1);
    expect(await producer.send({ topic: TOPIC, value: 'b', partition: 1 })).toMatchObject({ offset: 1 });
    await producer.close();
    expect(seen.filter((s) => s.path === '/v1/metadata').map((s) => s.node)).toEqual([1, 1, 2]);
    expect(produced(2)).toEqual([1, 1]);
    expect(produced(1)).toEqual([1]);
  });

  it('retries the first lookup with backoff while the bootstrap node cannot answer it', async () => {
    view.metadataFailures = 2;
    const producer = new Producer({ bootstrap: bootstrap(), lingerMs: 0, retries: 3, retryBackoffMs: 1 });
    expect(await producer.send({ topic: TOPIC, value: 'a', partition: 0 })).toMatchObject({ offset: 0 });
    await producer.close();
    expect(lookupsSeen()).toBe(3);
    view.metadataFailures = 5;
    const impatient = new Producer({ bootstrap: bootstrap(), lingerMs: 0, retries: 1, retryBackoffMs: 1 });
    const error = await impatient.send({ topic: TOPIC, value: 'b', partition: 0 }).catch((e) => e);
    expect(isSluiceError(error, 'LEADER_NOT_AVAILABLE')).toBe(true);
    await impatient.close();
  });

  it('looks the topic up again once metadataMaxAgeMs has passed, and sends a partition added since', async () => {
    const producer = new Producer({ bootstrap: bootstrap(), lingerMs: 0, metadataMaxAgeMs: 50 });
    await producer.send({ topic: TOPIC, value: 'a', partition: 0 });
    view.partitions = 3;
    view.leaders = () => [1, 2, 2];
    await new Promise((r) => setTimeout(r, 80));
    expect(await producer.send({ topic: TOPIC, value: 'b', partition: 2 })).toMatchObject({ partition: 2 });
    await producer.close();
    expect(lookupsSeen()).toBe(2);
    expect(produced(2)).toEqual([2]);
  });
});

describe('PartitionConsumer with metadata', () => {
  it('fetches from the leader, and follows it when a fetch says it moved', async () => {
    const consumer = new PartitionConsumer({
      bootstrap: bootstrap(),
      topic: TOPIC,
      partition: 1,
      offset: 0,
      retryBackoffMs: 1,
    });
    try {
      expect((await consumer.poll()).records.map((r) => r.offset)).toEqual([0, 1, 2]);
      expect(seen.filter((s) => s.method === 'GET' && s.path !== '/v1/metadata').map((s) => s.node)).toEqual([
        2,
      ]);
      // Partition 1 moves to node 1; node 2 says so, and the next poll looks it up again.
      view.leaders = () => [1, 1];
      const error = await consumer.poll().catch((e) => e);
      expect(isSluiceError(error, 'NOT_LEADER_OR_FOLLOWER')).toBe(true);
      expect((await consumer.poll()).records).toEqual([]);
      const fetches = seen.filter((s) => s.method === 'GET' && s.path !== '/v1/metadata');
      expect(fetches.map((s) => s.node)).toEqual([2, 2, 1]);
      expect(lookupsSeen()).toBe(2);
    } finally {
      consumer.close();
    }
  });

  it('iterates across a leader move without the caller seeing it', async () => {
    // The first lookup names node 2, which no longer leads partition 1 (node 1 does); the next
    // lookup says so.
    view.leaders = (lookup) => (lookup <= 1 ? [1, 2] : [1, 1]);
    view.leads = (node) => node === 1;
    const consumer = new PartitionConsumer({
      bootstrap: bootstrap(),
      topic: TOPIC,
      partition: 1,
      offset: 0,
      stopAtEnd: true,
      retryBackoffMs: 1,
    });
    const values: string[] = [];
    for await (const record of consumer) values.push(Buffer.from(record.value!).toString());
    consumer.close();
    expect(values).toEqual(['p1-0', 'p1-1', 'p1-2']);
    const fetches = seen.filter((s) => s.method === 'GET' && s.path !== '/v1/metadata');
    expect(fetches.map((s) => s.node)).toEqual([2, 1]);
  });
});
