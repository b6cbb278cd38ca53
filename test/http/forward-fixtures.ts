import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type * as http2 from 'node:http2';
import * as net from 'node:net';
import type { FastifyInstance } from 'fastify';
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
import { dualProtocolServerFactory } from '../../src/http/server.js';
import { PromMetricsRegistry } from '../../src/node/metrics.js';
import type { OffsetsResponse } from '../../src/protocol/api.js';
import { recordCountOf, setBaseOffset } from '../../src/protocol/batch.js';
import type { ProduceRecordSource } from '../../src/protocol/produce-body.js';

/**
 * Two or more in-process nodes on real sockets, each a fastify app over a fake broker, for the
 * forwarding tests: a FakeNode leads the partitions it holds and forwards the others as its
 * `forwards` map says.
 */

export const SECRET = 'the-cluster-secret';
export const TOPIC = 't';

/** One partition of a fake broker: stored batches with their offsets, and waiting reads. */
export class FakePartition {
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

export interface FakeNode {
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
  /** How long a produce to each partition takes before it appends, in ms (none when absent). */
  produceDelays: Map<number, number>;
}

export function notLeader(id: number, partition: number): SluiceError {
  return new SluiceError('NOT_LEADER_OR_FOLLOWER', `node ${id} does not lead partition ${partition}`, {
    details: { topic: TOPIC, partition },
  });
}

/** A broker that leads the partitions it holds and says NOT_LEADER_OR_FOLLOWER for the others. */
export function fakeBroker(node: Omit<FakeNode, 'url' | 'app' | 'registry'>, secret = SECRET): BrokerApi {
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
      const delay = node.produceDelays.get(partition);
      if (delay !== undefined) await new Promise((resolve) => setTimeout(resolve, delay));
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
    clusterSecret: secret,
  };
  return {
    node: { nodeId: node.id, version: 'test', shuttingDown: false, ready: true },
    admin: {} as AdminApi,
    produce,
    fetch,
    routing,
  };
}

/**
 * A node leading `leads`; `coalesce: false` forwards each produce on a stream of its own, and
 * `secret` gives it a cluster secret other than its peers'.
 */
export async function startNode(
  id: number,
  leads: number[],
  options: { coalesce?: boolean; secret?: string } = {},
): Promise<FakeNode> {
  const parts = {
    id,
    partitions: new Map(leads.map((p) => [p, new FakePartition()])),
    forwards: new Map<number, { nodeId: number; url: string }>(),
    pending: new Map<number, { nodeId: number; url: string }>(),
    catchUps: { count: 0 },
    seen: { aborted: 0 },
    bodies: [],
    produceDelays: new Map<number, number>(),
  };
  const registry = new PromMetricsRegistry();
  const app = buildApp(
    {
      serverFactory: dualProtocolServerFactory({ shutdownGraceMs: 200 }),
      forwardConnectTimeoutMs: 2_000,
      ...(options.coalesce === undefined ? {} : { forwardCoalescing: options.coalesce }),
    },
    { broker: fakeBroker(parts, options.secret ?? SECRET), metrics: registry },
  );
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as net.AddressInfo).port;
  return { ...parts, app, registry, url: `http://127.0.0.1:${port}` };
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTP/1.1 request; a body given as chunks goes chunked (no Content-Length). */
export function h1(
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

export function h2(
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

export const json = (answer: Answer) => JSON.parse(answer.body.toString('utf8'));
export const produceJson = (values: string[]) =>
  JSON.stringify({ records: values.map((value) => ({ value })) });
export const JSON_BODY = { 'content-type': 'application/json' };

export async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A port nothing listens on: a server's, closed. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
