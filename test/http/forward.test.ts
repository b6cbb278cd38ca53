import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type {
  AdminApi,
  AppendedBatches,
  BrokerApi,
  FetchApi,
  FetchOptions,
  FetchResult,
  ProduceApi,
  ProducedOffsets,
  RoutingApi,
} from '../../src/broker/api.js';
import { SluiceError } from '../../src/common/errors.js';
import { buildApp } from '../../src/http/app.js';
import { FORWARDED_BY_HEADER } from '../../src/http/forward.js';
import { dualProtocolServerFactory } from '../../src/http/server.js';
import { PromMetricsRegistry } from '../../src/node/metrics.js';
import type { OffsetsResponse } from '../../src/protocol/api.js';
import { recordCountOf, setBaseOffset } from '../../src/protocol/batch.js';
import { CLUSTER_SECRET_HEADER } from '../../src/protocol/internal-api.js';
import type { ProduceRecordSource } from '../../src/protocol/produce-body.js';
import { unpackr } from './harness.js';
import { parsePrometheusText, sampleValue } from './prometheus-text.js';

/**
 * Forwarding between real in-process nodes on real sockets, each a fastify app over a fake broker:
 * node 1's routing says node 2 leads partition 0, so produce, fetch (one answer, long-poll, follow
 * stream) and offsets of partition 0 sent to node 1 are answered by node 2, over HTTP/1.1 and
 * HTTP/2; node 1 answers partition 1 itself. Also: an unreachable leader, the forwarded marker
 * with a wrong, missing and right secret (no loop even when routings point at each other), and
 * bodies of several MiB streamed through byte for byte.
 */

const SECRET = 'the-cluster-secret';
const TOPIC = 't';

/** One partition of a fake broker: stored batches with their offsets, and waiting reads. */
class FakePartition {
  readonly batches: { base: number; count: number; data: Buffer }[] = [];
  end = 0;
  readonly #waiters = new Set<() => void>();

  append(batch: Buffer): number {
    const base = this.end;
    const count = recordCountOf(batch);
    setBaseOffset(batch, 0, base);
    this.batches.push({ base, count, data: batch });
    this.end += count;
    for (const wake of this.#waiters) wake();
    return base;
  }

  /** Whole batches from the one holding `offset`; waits up to maxWaitMs at the end of the log. */
  async read(offset: number, options: FetchOptions, seen: { aborted: number }): Promise<FetchResult> {
    if (offset >= this.end && options.maxWaitMs > 0 && !options.probe) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          options.signal?.removeEventListener('abort', aborted);
          resolve();
        };
        const aborted = () => {
          seen.aborted++;
          done();
        };
        const timer = setTimeout(done, options.maxWaitMs);
        this.#waiters.add(done);
        options.signal?.addEventListener('abort', aborted, { once: true });
      });
    }
    const from = this.batches.filter((b) => b.base + b.count > offset);
    const data = Buffer.concat(from.map((b) => b.data));
    return {
      data,
      batchCount: from.length,
      offset,
      nextOffset: from.length === 0 ? offset : this.end,
      highWatermark: this.end,
      logStartOffset: 0,
    };
  }
}

interface FakeNode {
  id: number;
  url: string;
  app: FastifyInstance;
  registry: PromMetricsRegistry;
  partitions: Map<number, FakePartition>;
  /** Where routing sends each partition, by partition; absent: answered here. */
  forwards: Map<number, { nodeId: number; url: string }>;
  /** Partitions this node's metadata has not applied yet: they join `forwards` when it catches up. */
  pending: Map<number, { nodeId: number; url: string }>;
  catchUps: { count: number };
  /** Reads of this node's broker ended by their signal (the client or the forwarder went away). */
  seen: { aborted: number };
  /** The pre-built batch bodies this node's broker was given, as length and SHA-256. */
  bodies: { bytes: number; sha256: string }[];
}

function notLeader(id: number, partition: number): SluiceError {
  return new SluiceError('NOT_LEADER_OR_FOLLOWER', `node ${id} does not lead partition ${partition}`, {
    details: { topic: TOPIC, partition },
  });
}

/** A broker that leads the partitions it holds and says NOT_LEADER_OR_FOLLOWER for the others. */
function fakeBroker(node: Omit<FakeNode, 'url' | 'app' | 'registry'>): BrokerApi {
  const partitionOf = (topic: string, partition: number): FakePartition => {
    if (topic !== TOPIC) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `no topic ${topic}`);
    const p = node.partitions.get(partition);
    if (!p) throw notLeader(node.id, partition);
    return p;
  };
  const produce: ProduceApi = {
    records: () => Promise.reject(new Error('not used')),
    initProducer: () => Promise.reject(new Error('not used')),
    topicBatches: () => Promise.reject(new Error('not used')),
    async from(topic: string, source: ProduceRecordSource): Promise<ProducedOffsets> {
      const indexes = Array.from({ length: source.count }, (_, i) => i);
      const partition = source.partitionAt(0);
      const base = partitionOf(topic, partition).append(source.encodeBatch(indexes, Date.now()));
      return {
        count: source.count,
        partitions: Int32Array.from(indexes, () => partition),
        offsets: Float64Array.from(indexes, (i) => base + i),
      };
    },
    async batches(topic: string, partition: number, data: Buffer): Promise<AppendedBatches> {
      partitionOf(topic, partition);
      node.bodies.push({ bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') });
      return { partition, baseOffset: 0, lastOffset: 0, batchCount: 1 };
    },
  };
  const fetch: FetchApi = {
    read: (topic, partition, options) => {
      const p = partitionOf(topic, partition);
      const offset = options.offset === 'earliest' ? 0 : options.offset === 'latest' ? p.end : options.offset;
      return p.read(offset, options, node.seen);
    },
    async offsets(topic, partition): Promise<OffsetsResponse> {
      const p = partitionOf(topic, partition);
      return { partition, earliest: 0, latest: p.end, highWatermark: p.end };
    },
    waiting: 0,
    waitingMax: 100,
  };
  const routing: RoutingApi = {
    forwardTarget: (topic, partition) => (topic === TOPIC ? node.forwards.get(partition) : undefined),
    knows: (topic, partition) =>
      topic === TOPIC && (node.partitions.has(partition) || node.forwards.has(partition)),
    catchUp: async () => {
      node.catchUps.count++;
      for (const [p, target] of node.pending) node.forwards.set(p, target);
      node.pending.clear();
    },
    clusterSecret: SECRET,
  };
  return {
    node: { nodeId: node.id, version: 'test', shuttingDown: false, ready: true },
    admin: {} as AdminApi,
    produce,
    fetch,
    routing,
  };
}

async function startNode(id: number, leads: number[]): Promise<FakeNode> {
  const parts = {
    id,
    partitions: new Map(leads.map((p) => [p, new FakePartition()])),
    forwards: new Map<number, { nodeId: number; url: string }>(),
    pending: new Map<number, { nodeId: number; url: string }>(),
    catchUps: { count: 0 },
    seen: { aborted: 0 },
    bodies: [],
  };
  const registry = new PromMetricsRegistry();
  const app = buildApp(
    {
      serverFactory: dualProtocolServerFactory({ shutdownGraceMs: 200 }),
      forwardConnectTimeoutMs: 2_000,
    },
    { broker: fakeBroker(parts), metrics: registry },
  );
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as net.AddressInfo).port;
  return { ...parts, app, registry, url: `http://127.0.0.1:${port}` };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTP/1.1 request; a body given as chunks goes chunked (no Content-Length). */
function h1(
  base: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: Buffer | string; chunks?: Buffer[] } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.request(`${base}${path}`, { method, headers: options.headers ?? {}, agent: false });
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (c: Buffer) => chunks.push(c));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }),
      );
    });
    request.on('error', reject);
    if (options.chunks) {
      for (const chunk of options.chunks) request.write(chunk);
      request.end();
    } else request.end(options.body);
  });
}

function h2(
  session: http2.ClientHttp2Session,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': method, ':path': path, ...options.headers });
    const chunks: Buffer[] = [];
    let status = 0;
    let headers: Record<string, string | string[] | undefined> = {};
    stream.on('response', (h) => {
      status = Number(h[':status']);
      headers = h;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status, headers, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    stream.end(options.body);
  });
}

const json = (answer: Answer) => JSON.parse(answer.body.toString('utf8'));
const produceJson = (values: string[]) => JSON.stringify({ records: values.map((value) => ({ value })) });
const JSON_BODY = { 'content-type': 'application/json' };

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A port nothing listens on: a server's, closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

let a: FakeNode;
let b: FakeNode;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  a = await startNode(1, [1]);
  b = await startNode(2, [0]);
  a.forwards.set(0, { nodeId: 2, url: b.url });
  session = http2.connect(a.url);
});
afterAll(async () => {
  session.close();
  await a.app.close();
  await b.app.close();
});
afterEach(() => {
  a.bodies.length = 0;
  b.bodies.length = 0;
});

type Client = 'HTTP/1.1' | 'HTTP/2';
const send = (client: Client, method: string, path: string, options: Parameters<typeof h1>[3] = {}) =>
  client === 'HTTP/1.1' ? h1(a.url, method, path, options) : h2(session, method, path, options);

describe.each<Client>(['HTTP/1.1', 'HTTP/2'])('forwarding, the client speaking %s to node 1', (client) => {
  it("produce, fetch and offsets of node 2's partition are answered by node 2", async () => {
    const before = b.partitions.get(0)!.end;
    const produced = await send(client, 'POST', `/v1/topics/${TOPIC}/partitions/0/records`, {
      headers: { ...JSON_BODY, 'x-request-id': `forwarded-${client}` },
      body: produceJson(['x', 'y']),
    });
    expect(produced.status).toBe(200);
    expect(produced.headers['sluice-node-id']).toBe('2');
    // The leader logged and answered it under the id the client gave.
    expect(produced.headers['x-request-id']).toBe(`forwarded-${client}`);
    expect(json(produced).offsets).toEqual([
      { partition: 0, offset: before },
      { partition: 0, offset: before + 1 },
    ]);
    expect(b.partitions.get(0)!.end).toBe(before + 2);

    const fetched = await send(client, 'GET', `/v1/topics/${TOPIC}/partitions/0/records?offset=${before}`);
    expect(fetched.headers['sluice-node-id']).toBe('2');
    expect(json(fetched).records.map((r: { value: string }) => r.value)).toEqual(['x', 'y']);
    const packed = await send(client, 'GET', `/v1/topics/${TOPIC}/partitions/0/records?offset=${before}`, {
      headers: { accept: 'application/vnd.msgpack' },
    });
    expect(packed.headers['content-type']).toContain('application/vnd.msgpack');
    expect(unpackr.unpack(packed.body)).toMatchObject({ nextOffset: before + 2, highWatermark: before + 2 });

    const offsets = await send(client, 'GET', `/v1/topics/${TOPIC}/partitions/0/offsets`);
    expect(offsets.headers['sluice-node-id']).toBe('2');
    expect(json(offsets)).toEqual({
      partition: 0,
      earliest: 0,
      latest: before + 2,
      highWatermark: before + 2,
    });
  });

  it("counts a forwarded produce in node 1's latency histogram, in-flight gauge and forwarded counter", async () => {
    const count = async () => {
      const scraped = parsePrometheusText(await a.registry.render());
      return {
        latency:
          sampleValue(scraped, 'sluice_produce_request_duration_seconds_count', {
            route: 'producePartition',
            acks: '1',
            status: '200',
          }) ?? 0,
        forwarded:
          sampleValue(scraped, 'sluice_forwarded_requests_total', {
            route: 'producePartition',
            outcome: 'answered',
          }) ?? 0,
        inFlight: sampleValue(scraped, 'sluice_http_requests_in_flight') ?? 0,
      };
    };
    const before = await count();
    const produced = await send(client, 'POST', `/v1/topics/${TOPIC}/partitions/0/records?acks=1`, {
      headers: JSON_BODY,
      body: produceJson(['counted']),
    });
    expect(produced.status).toBe(200);
    expect(produced.headers['sluice-node-id']).toBe('2');
    // The stream's close (where the fast path observes) follows the answer's last byte.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const after = await count();
    expect(after.latency).toBe(before.latency + 1);
    expect(after.forwarded).toBe(before.forwarded + 1);
    // The scrape itself is the one request in flight.
    expect(after.inFlight).toBe(before.inFlight);
  });

  it('catches up before answering for a partition it has not heard of, and forwards it then', async () => {
    b.partitions.set(8, new FakePartition());
    a.pending.set(8, { nodeId: 2, url: b.url });
    const before = a.catchUps.count;
    const fetched = await send(client, 'GET', `/v1/topics/${TOPIC}/partitions/8/offsets`);
    expect(fetched.headers['sluice-node-id']).toBe('2');
    expect(a.catchUps.count).toBe(before + 1);
    // A partition it knows and leads, or knows to be another's, costs no catch-up.
    await send(client, 'GET', `/v1/topics/${TOPIC}/partitions/1/offsets`);
    await send(client, 'GET', `/v1/topics/${TOPIC}/partitions/8/offsets`);
    expect(a.catchUps.count).toBe(before + 1);
    a.forwards.delete(8);
    b.partitions.delete(8);
  });

  it('answers its own partition, and every other route, itself', async () => {
    const produced = await send(client, 'POST', `/v1/topics/${TOPIC}/partitions/1/records`, {
      headers: JSON_BODY,
      body: produceJson(['own']),
    });
    expect(produced.status).toBe(200);
    expect(produced.headers['sluice-node-id']).toBe('1');
    for (const path of ['/healthz', '/nowhere', `/v1/topics/${TOPIC}/partitions/1/offsets`])
      expect((await send(client, 'GET', path)).headers['sluice-node-id']).toBe('1');
  });

  it('forwards a long-poll, which the leader answers when a record arrives', async () => {
    const p = b.partitions.get(0)!;
    const waiting = send(
      client,
      'GET',
      `/v1/topics/${TOPIC}/partitions/0/records?offset=${p.end}&maxWaitMs=5000`,
    );
    await new Promise((r) => setTimeout(r, 100));
    await h1(b.url, 'POST', `/v1/topics/${TOPIC}/partitions/0/records`, {
      headers: JSON_BODY,
      body: produceJson(['late']),
    });
    const answer = await waiting;
    expect(answer.headers['sluice-node-id']).toBe('2');
    expect(json(answer).records.map((r: { value: string }) => r.value)).toEqual(['late']);
  });

  it('cancels the forwarded long-poll at the leader when the client goes away', async () => {
    const p = b.partitions.get(0)!;
    const aborted = b.seen.aborted;
    const path = `/v1/topics/${TOPIC}/partitions/0/records?offset=${p.end}&maxWaitMs=30000`;
    if (client === 'HTTP/1.1') {
      const request = http.get(`${a.url}${path}`, { agent: false });
      request.on('error', () => {});
      await new Promise((r) => setTimeout(r, 100));
      request.destroy();
    } else {
      const stream = session.request({ ':path': path });
      stream.on('error', () => {});
      await new Promise((r) => setTimeout(r, 100));
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    await waitFor(() => b.seen.aborted > aborted);
  });

  it('forwards a follow stream record by record, and ends it at the leader when the client goes away', async () => {
    const p = b.partitions.get(0)!;
    const start = p.end;
    const aborted = b.seen.aborted;
    const path = `/v1/topics/${TOPIC}/partitions/0/records?offset=${start}&follow=true`;
    const lines: string[] = [];
    let nodeId: unknown;
    let close: () => void;
    const onData = (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    if (client === 'HTTP/1.1') {
      const request = http.get(`${a.url}${path}`, { agent: false }, (response) => {
        nodeId = response.headers['sluice-node-id'];
        response.on('data', onData);
      });
      request.on('error', () => {});
      close = () => request.destroy();
    } else {
      const stream = session.request({ ':path': path });
      stream.on('response', (headers) => {
        nodeId = headers['sluice-node-id'];
      });
      stream.on('data', onData);
      stream.on('error', () => {});
      close = () => stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    for (const value of ['f1', 'f2']) {
      await h1(b.url, 'POST', `/v1/topics/${TOPIC}/partitions/0/records`, {
        headers: JSON_BODY,
        body: produceJson([value]),
      });
      await waitFor(() => lines.some((l) => JSON.parse(l).value === value));
    }
    expect(nodeId).toBe('2');
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      expect.objectContaining({ offset: start, value: 'f1' }),
      expect.objectContaining({ offset: start + 1, value: 'f2' }),
    ]);
    close();
    await waitFor(() => b.seen.aborted > aborted);
  });

  it('streams request bodies of several MiB through byte for byte', async () => {
    const body = randomBytes(6 * 1024 * 1024 + 13);
    const sha256 = createHash('sha256').update(body).digest('hex');
    const path = `/v1/topics/${TOPIC}/partitions/0/records`;
    const headers = { 'content-type': 'application/vnd.sluice.batches' };
    const answer = await send(client, 'POST', path, { headers, body });
    expect(answer.status).toBe(200);
    expect(answer.headers['sluice-node-id']).toBe('2');
    if (client === 'HTTP/1.1') {
      // Chunked: no Content-Length on the way in, none on the way to the leader either.
      const chunks = Array.from({ length: 6 }, (_, i) => body.subarray(i << 20, (i + 1) << 20));
      chunks.push(body.subarray(6 << 20));
      expect((await h1(a.url, 'POST', path, { headers, chunks })).status).toBe(200);
    }
    expect(b.bodies.length).toBeGreaterThan(0);
    for (const seen of b.bodies) expect(seen).toEqual({ bytes: body.length, sha256 });
    expect(a.bodies).toEqual([]);
  });

  it("passes the leader's refusal of an over-long body back", async () => {
    const answer = await send(client, 'POST', `/v1/topics/${TOPIC}/partitions/0/records`, {
      headers: { 'content-type': 'application/vnd.sluice.batches' },
      body: Buffer.alloc(9 * 1024 * 1024),
    });
    expect(answer.status).toBe(413);
    expect(answer.headers['sluice-node-id']).toBe('2');
    expect(json(answer).code).toBe('REQUEST_TOO_LARGE');
  });
});

describe('forwarding over HTTP/1.1 keep-alive', () => {
  it('keeps the client connection for the next request after a forwarded answer', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    const get = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const request = http.get(`${a.url}${path}`, { agent }, (response) => {
          sockets.add(response.socket);
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
        });
        request.on('error', reject);
      });
    try {
      expect(await get(`/v1/topics/${TOPIC}/partitions/0/offsets`)).toBe(200);
      expect(await get(`/v1/topics/${TOPIC}/partitions/0/records`)).toBe(200);
      expect(await get(`/v1/topics/${TOPIC}/partitions/1/offsets`)).toBe(200);
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });
});

describe('forwarding refusals', () => {
  it('answers 503 LEADER_NOT_AVAILABLE when the leader cannot be reached, for a produce and a fetch', async () => {
    a.forwards.set(5, { nodeId: 3, url: `http://127.0.0.1:${await closedPort()}` });
    try {
      for (const client of ['HTTP/1.1', 'HTTP/2'] as const) {
        const produced = await send(client, 'POST', `/v1/topics/${TOPIC}/partitions/5/records`, {
          headers: JSON_BODY,
          body: produceJson(['lost']),
        });
        const fetched = await send(client, 'GET', `/v1/topics/${TOPIC}/partitions/5/records`);
        for (const answer of [produced, fetched]) {
          expect(answer.status).toBe(503);
          expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
          expect(answer.headers['sluice-node-id']).toBe('1');
          expect(json(answer)).toMatchObject({
            code: 'LEADER_NOT_AVAILABLE',
            retriable: true,
            leader: 3,
            partition: 5,
          });
        }
      }
    } finally {
      a.forwards.delete(5);
    }
    const scraped = parsePrometheusText(await a.registry.render());
    const count = (route: string, outcome: string) =>
      sampleValue(scraped, 'sluice_forwarded_requests_total', { route, outcome });
    expect(count('producePartition', 'unreachable')).toBe(2);
    expect(count('fetch', 'unreachable')).toBe(2);
    expect(count('fetch', 'answered')).toBeGreaterThan(0);
  });

  it('answers 503 when the leader breaks the exchange before its answer: a fetch is tried once more, a produce never', async () => {
    // A "leader" that resets every stream it is sent, after taking what it is sent.
    const broken = http2.createServer();
    const brokenSessions = new Set<http2.ServerHttp2Session>();
    broken.on('session', (session) => brokenSessions.add(session));
    const streams: string[] = [];
    broken.on('stream', (stream, headers) => {
      streams.push(String(headers[':method']));
      stream.on('error', () => {});
      stream.resume();
      setTimeout(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20);
    });
    await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve));
    a.forwards.set(6, { nodeId: 4, url: `http://127.0.0.1:${(broken.address() as net.AddressInfo).port}` });
    try {
      const fetched = await h1(a.url, 'GET', `/v1/topics/${TOPIC}/partitions/6/offsets`);
      expect(fetched.status).toBe(503);
      expect(json(fetched)).toMatchObject({ code: 'LEADER_NOT_AVAILABLE', leader: 4 });
      expect(streams).toEqual(['GET', 'GET']);
      streams.length = 0;
      const produced = await h1(a.url, 'POST', `/v1/topics/${TOPIC}/partitions/6/records`, {
        headers: JSON_BODY,
        body: produceJson(['maybe appended']),
      });
      expect(produced.status).toBe(503);
      expect(json(produced).code).toBe('LEADER_NOT_AVAILABLE');
      expect(streams).toEqual(['POST']);
    } finally {
      a.forwards.delete(6);
      for (const session of brokenSessions) session.destroy();
      await new Promise((resolve) => broken.close(resolve));
    }
  });

  it('refuses the forwarded marker without the right cluster secret with 401', async () => {
    for (const secret of [undefined, 'wrong', `${SECRET}x`]) {
      const answer = await h1(b.url, 'GET', `/v1/topics/${TOPIC}/partitions/0/offsets`, {
        headers: {
          [FORWARDED_BY_HEADER]: '1',
          ...(secret === undefined ? {} : { [CLUSTER_SECRET_HEADER]: secret }),
        },
      });
      expect(answer.status).toBe(401);
      expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(json(answer).code).toBe('CLUSTER_AUTHORIZATION_FAILED');
    }
  });

  it('answers a forwarded request itself, never forwarding it again, even when the routings point at each other', async () => {
    // Node 1's routing says node 2 leads partition 0; with the marker node 1 answers anyway, and
    // its broker, which does not lead it, says so.
    const marked = await h1(a.url, 'GET', `/v1/topics/${TOPIC}/partitions/0/offsets`, {
      headers: { [FORWARDED_BY_HEADER]: '2', [CLUSTER_SECRET_HEADER]: SECRET },
    });
    expect(marked.status).toBe(503);
    expect(marked.headers['sluice-node-id']).toBe('1');
    expect(json(marked).code).toBe('NOT_LEADER_OR_FOLLOWER');
    // Two stale views: node 1 sends partition 7 to node 2, node 2 would send it back to node 1.
    a.forwards.set(7, { nodeId: 2, url: b.url });
    b.forwards.set(7, { nodeId: 1, url: a.url });
    try {
      const answer = await h1(a.url, 'GET', `/v1/topics/${TOPIC}/partitions/7/records`);
      expect(answer.status).toBe(503);
      expect(answer.headers['sluice-node-id']).toBe('2');
      expect(json(answer).code).toBe('NOT_LEADER_OR_FOLLOWER');
    } finally {
      a.forwards.delete(7);
      b.forwards.delete(7);
    }
  });

  it('refuses a request that Accept or Content-Type rules out before forwarding it', async () => {
    const answer = await h1(a.url, 'POST', `/v1/topics/${TOPIC}/partitions/0/records`, {
      headers: { 'content-type': 'text/plain' },
      body: 'x',
    });
    expect(answer.status).toBe(415);
    expect(answer.headers['sluice-node-id']).toBe('1');
  });
});
