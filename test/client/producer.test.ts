import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Packr } from 'msgpackr';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/index.js';
import { isSluiceError } from '../../src/common/errors.js';
import { partitionForKey } from '../../src/common/murmur2.js';
import { decodeRecords, splitBatches } from '../../src/protocol/batch.js';

/**
 * The Producer against a scripted HTTP/2 server (no broker): batching, the partitioner, retries
 * of retriable problems, the buffer bound, and reconnecting after GOAWAY. The server serves no
 * metadata (404, as a node of an older release), so the producer reads the partition count from the
 * topic's description and sends everything to it; test/client/metadata.test.ts has producers that
 * send to each partition's leader.
 */
const packr = new Packr({ useRecords: false });
const PARTITIONS = 4;

interface Received {
  partition: number;
  acks: string | null;
  contentType: string;
  values: string[];
  /** Each batch's producer id and base sequence. */
  producer: { producerId: number; baseSequence: number }[];
}

/** What the server does with the next produce requests: an answer per request, in order. */
type Script = { status: number; problem?: Record<string, unknown> } | 'hang' | 'goaway';

let server: http2.Http2Server;
let bootstrap: string;
let received: Received[] = [];
let script: Script[] = [];
let nextOffsets = new Map<number, number>();
let sessions = 0;
let lookups: string[] = [];
let producerIdsAsked = 0;
const hanging: http2.ServerHttp2Stream[] = [];
const open = new Set<http2.ServerHttp2Session>();

beforeAll(async () => {
  server = http2.createServer();
  server.on('session', (session) => {
    sessions++;
    open.add(session);
    session.on('close', () => open.delete(session));
  });
  server.on('stream', (stream, headers) => {
    // Refused and reset streams end in an error on this side too; the client's view is what is tested.
    stream.on('error', () => {});
    const path = String(headers[':path']);
    if (headers[':method'] === 'POST' && path === '/v1/producers') {
      // The producer is idempotent by default: it takes a producer id before its first batch.
      producerIdsAsked++;
      stream.respond({ ':status': 201, 'content-type': 'application/vnd.msgpack' });
      stream.end(packr.pack({ producerId: 9, producerEpoch: 0 }));
      return;
    }
    if (headers[':method'] === 'GET') lookups.push(path);
    if (path.startsWith('/v1/metadata')) {
      stream.respond({ ':status': 404, 'content-type': 'application/problem+json' });
      stream.end(
        JSON.stringify({ code: 'NOT_FOUND', detail: 'no route GET /v1/metadata', retriable: false }),
      );
      return;
    }
    if (headers[':method'] === 'GET' && path === '/v1/topics/t') {
      stream.respond({ ':status': 200, 'content-type': 'application/vnd.msgpack' });
      stream.end(
        packr.pack({
          name: 't',
          partitions: Array.from({ length: PARTITIONS }, (_, p) => ({ partition: p })),
        }),
      );
      return;
    }
    if (headers[':method'] === 'GET') {
      stream.respond({ ':status': 404, 'content-type': 'application/problem+json' });
      stream.end(
        JSON.stringify({ code: 'UNKNOWN_TOPIC_OR_PARTITION', detail: 'no such topic', retriable: false }),
      );
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const url = new URL(path, 'http://x');
      const partition = Number(/partitions\/(\d+)\/records/.exec(url.pathname)?.[1]);
      const body = Buffer.concat(chunks);
      const values: string[] = [];
      const producer: Received['producer'] = [];
      for (const { pos, header } of splitBatches(body)) {
        producer.push({ producerId: header.producerId, baseSequence: header.baseSequence });
        for (const r of decodeRecords(body, pos)) values.push(Buffer.from(r.value!).toString());
      }
      received.push({
        partition,
        acks: url.searchParams.get('acks'),
        contentType: String(headers['content-type']),
        values,
        producer,
      });
      const step = script.shift() ?? { status: 200 };
      if (step === 'hang') {
        hanging.push(stream);
        return;
      }
      if (step === 'goaway') {
        stream.session?.goaway();
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      if (step.status >= 400) {
        stream.respond({ ':status': step.status, 'content-type': 'application/problem+json' });
        stream.end(JSON.stringify(step.problem));
        return;
      }
      const base = nextOffsets.get(partition) ?? 0;
      nextOffsets.set(partition, base + values.length);
      stream.respond({ ':status': 200, 'content-type': 'application/vnd.msgpack' });
      stream.end(
        packr.pack({ partition, baseOffset: base, lastOffset: base + values.length - 1, batchCount: 1 }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  bootstrap = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  producerIdsAsked = 0;
  lookups = [];
  received = [];
  script = [];
  nextOffsets = new Map();
  for (const s of hanging.splice(0)) s.close();
});

afterAll(async () => {
  for (const session of open) session.destroy();
  await new Promise((resolve) => server.close(resolve));
});

describe('Producer', () => {
  it('sends one stored batch per partition with the Kafka partitioner, and offsets in send order', async () => {
    const producer = new Producer({ bootstrap, acks: 1, lingerMs: 20, batchBytes: 1 << 20 });
    const records = Array.from({ length: 40 }, (_, i) => ({ topic: 't', key: `k${i % 5}`, value: `v${i}` }));
    const results = await producer.send(records);
    await producer.close();
    expect(results).toHaveLength(40);
    for (let i = 0; i < 40; i++)
      expect(results[i]!.partition).toBe(partitionForKey(Buffer.from(`k${i % 5}`), PARTITIONS));
    // Everything was sent within one linger: one request per partition used.
    const used = new Set(results.map((r) => r.partition));
    expect(received.map((r) => r.partition).sort()).toEqual([...used].sort());
    for (const r of received) {
      expect(r.contentType).toBe('application/vnd.sluice.batches');
      expect(r.acks).toBe('1');
      const mine = results.filter((x) => x.partition === r.partition);
      expect(mine.map((x) => x.offset)).toEqual(mine.map((_, i) => i));
      expect(r.values).toEqual(
        records.filter((_, i) => results[i]!.partition === r.partition).map((x) => x.value),
      );
    }
  });

  it('falls back to the topic description on a node without metadata, and asks for metadata again only after metadataMaxAgeMs', async () => {
    // An age long enough that the second send comes within it on a loaded machine too.
    const producer = new Producer({ bootstrap, lingerMs: 0, metadataMaxAgeMs: 1000 });
    await producer.send({ topic: 't', value: 'a', key: 'k' });
    await producer.send({ topic: 't', value: 'b', key: 'k' });
    expect(lookups).toEqual(['/v1/metadata?topics=t', '/v1/topics/t']);
    await new Promise((r) => setTimeout(r, 1100));
    await producer.send({ topic: 't', value: 'c', key: 'k' });
    await producer.close();
    expect(lookups).toEqual([
      '/v1/metadata?topics=t',
      '/v1/topics/t',
      '/v1/metadata?topics=t',
      '/v1/topics/t',
    ]);
    expect(received.map((r) => r.partition)).toEqual(
      [0, 0, 0].map(() => partitionForKey(Buffer.from('k'), PARTITIONS)),
    );
  });

  it('sends a batch as soon as it reaches batchBytes, without waiting for the linger', async () => {
    const producer = new Producer({ bootstrap, lingerMs: 60_000, batchBytes: 100 });
    // 10 records of 4+16 bytes each reach 100 bytes at the 5th record: two full batches.
    const sends = Array.from({ length: 10 }, (_, i) =>
      producer.send({ topic: 't', value: `v${i}`.padEnd(4), partition: 1 }),
    );
    const results = await Promise.all(sends);
    expect(received.map((r) => r.values.length)).toEqual([5, 5]);
    expect(results.map((r) => r.offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await producer.close();
  });

  it('sends a lone awaited record without waiting for lingerMs, and the sends of one turn in one batch', async () => {
    const producer = new Producer({ bootstrap, lingerMs: 60_000 });
    // Nothing else is queued or in flight: a send held for its linger would not resolve before
    // the test's timeout, and the test fails.
    const first = await producer.send({ topic: 't', value: 'alone', partition: 2 });
    const second = await producer.send({ topic: 't', value: 'next', partition: 2 });
    // Sends made in one turn of the event loop still share one batch.
    const together = await Promise.all(
      Array.from({ length: 5 }, (_, i) => producer.send({ topic: 't', value: `v${i}`, partition: 2 })),
    );
    expect([first.offset, second.offset, ...together.map((r) => r.offset)]).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(received.map((r) => r.values)).toEqual([['alone'], ['next'], ['v0', 'v1', 'v2', 'v3', 'v4']]);
    await producer.close();
  });

  it('rejects a send of an array with the first failure of its records, and still sends the others', async () => {
    const producer = new Producer({ bootstrap, acks: 1, lingerMs: 0 });
    const sent = producer.send([
      { topic: 't', value: 'kept', partition: 1 },
      { topic: 't', value: 'refused', partition: PARTITIONS + 5 },
      { topic: 't', value: 'kept too', partition: 1 },
    ]);
    await expect(sent).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC_OR_PARTITION' });
    await producer.close();
    expect(received.flatMap((r) => r.values)).toEqual(['kept', 'kept too']);
  });

  it('keeps keyless records on one sticky partition within a batch', async () => {
    const producer = new Producer({ bootstrap, lingerMs: 10 });
    const results = await producer.send(
      Array.from({ length: 20 }, (_, i) => ({ topic: 't', value: `v${i}` })),
    );
    await producer.close();
    expect(new Set(results.map((r) => r.partition)).size).toBe(1);
    expect(received).toHaveLength(1);
  });

  it('retries a retriable problem with backoff, then succeeds with the batch appended once', async () => {
    script = [
      { status: 503, problem: { code: 'LEADER_NOT_AVAILABLE', detail: 'electing', retriable: true } },
      { status: 503, problem: { code: 'NOT_ENOUGH_REPLICAS', detail: 'isr too small', retriable: true } },
    ];
    const producer = new Producer({ bootstrap, retries: 3, retryBackoffMs: 5, lingerMs: 0 });
    const result = await producer.send({ topic: 't', value: 'x', partition: 2 });
    await producer.close();
    expect(received).toHaveLength(3);
    expect(result).toEqual({ topic: 't', partition: 2, offset: 0 });
  });

  it('gives up after `retries` tries and rejects every record of the batch with the server code', async () => {
    const problem = { code: 'LEADER_NOT_AVAILABLE', detail: 'electing', retriable: true };
    script = [1, 2, 3].map(() => ({ status: 503, problem }));
    const producer = new Producer({ bootstrap, retries: 2, retryBackoffMs: 1, lingerMs: 5 });
    const outcomes = await Promise.allSettled([
      producer.send({ topic: 't', value: 'a', partition: 0 }),
      producer.send({ topic: 't', value: 'b', partition: 0 }),
    ]);
    await producer.close();
    expect(received).toHaveLength(3);
    for (const o of outcomes) {
      expect(o.status).toBe('rejected');
      expect(isSluiceError((o as PromiseRejectedResult).reason, 'LEADER_NOT_AVAILABLE')).toBe(true);
    }
  });

  it('does not retry a non-retriable problem and keeps its details', async () => {
    script = [
      { status: 400, problem: { code: 'RECORD_TOO_LARGE', detail: 'too big', retriable: false, limit: 10 } },
    ];
    const producer = new Producer({ bootstrap, retries: 5, retryBackoffMs: 1, lingerMs: 0 });
    const error = await producer.send({ topic: 't', value: 'x', partition: 0 }).catch((e) => e);
    await producer.close();
    expect(received).toHaveLength(1);
    expect(isSluiceError(error, 'RECORD_TOO_LARGE')).toBe(true);
    expect(error.retriable).toBe(false);
    expect(error.details).toEqual({ limit: 10 });
  });

  it('bounds the buffer: send waits for room up to maxBlockMs, then rejects with LIMIT_EXCEEDED', async () => {
    script = ['hang'];
    const producer = new Producer({
      bootstrap,
      lingerMs: 0,
      retries: 0,
      bufferBytesMax: 100,
      // Long enough for a loaded machine to fail the hanging batch while a send waits.
      maxBlockMs: 1000,
      requestTimeoutMs: 60_000,
    });
    const first = producer.send({ topic: 't', value: 'x'.repeat(60), partition: 0 });
    first.catch(() => {});
    await new Promise((r) => setTimeout(r, 20));
    const error = await producer.send({ topic: 't', value: 'y'.repeat(60), partition: 0 }).catch((e) => e);
    expect(isSluiceError(error, 'LIMIT_EXCEEDED')).toBe(true);
    const tooBig = await producer.send({ topic: 't', value: 'z'.repeat(200), partition: 0 }).catch((e) => e);
    expect(isSluiceError(tooBig, 'LIMIT_EXCEEDED')).toBe(true);
    // Once the hanging batch fails, its bytes are released and a waiting send goes through.
    const waiting = producer.send({ topic: 't', value: 'w'.repeat(60), partition: 3 });
    for (const s of hanging.splice(0)) s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    await expect(waiting).resolves.toMatchObject({ partition: 3, offset: 0 });
    await producer.close();
  });

  it('opens a new session after the server sends GOAWAY, and retries the refused batch on it', async () => {
    script = ['goaway'];
    const before = sessions;
    const producer = new Producer({ bootstrap, retries: 2, retryBackoffMs: 1, lingerMs: 0 });
    const first = await producer.send({ topic: 't', value: 'a', partition: 1 });
    const second = await producer.send({ topic: 't', value: 'b', partition: 1 });
    await producer.close();
    expect([first.offset, second.offset]).toEqual([0, 1]);
    expect(sessions - before).toBe(2);
  });

  it('rejects an unknown topic and a partition the topic does not have, without buffering them', async () => {
    const producer = new Producer({ bootstrap, bufferBytesMax: 64, maxBlockMs: 0 });
    const unknown = await producer.send({ topic: 'nope', value: 'x'.repeat(40) }).catch((e) => e);
    expect(isSluiceError(unknown, 'UNKNOWN_TOPIC_OR_PARTITION')).toBe(true);
    const badPartition = await producer
      .send({ topic: 't', value: 'x'.repeat(40), partition: 9 })
      .catch((e) => e);
    expect(isSluiceError(badPartition, 'UNKNOWN_TOPIC_OR_PARTITION')).toBe(true);
    // Had the refused records kept their bytes, this one would not fit.
    await expect(producer.send({ topic: 't', value: 'x'.repeat(40), partition: 0 })).resolves.toMatchObject({
      partition: 0,
    });
    await producer.close();
    expect(received).toHaveLength(1);
  });
});

describe('Producer idempotence', () => {
  it("takes one producer id and numbers each partition's batches from 0 by their record counts", async () => {
    const producer = new Producer({ bootstrap, lingerMs: 1, batchBytes: 1 });
    await producer.send([
      { topic: 't', partition: 0, value: 'a' },
      { topic: 't', partition: 1, value: 'b' },
    ]);
    await producer.send({ topic: 't', partition: 0, value: 'c' });
    await producer.send({ topic: 't', partition: 0, value: 'd' });
    await producer.close();
    expect(producerIdsAsked).toBe(1);
    const sequences = (partition: number) =>
      received
        .filter((r) => r.partition === partition)
        .flatMap((r) => r.producer.map((p, i) => [p.producerId, p.baseSequence, r.values.length, i]));
    expect(sequences(0)).toEqual([
      [9, 0, 1, 0],
      [9, 1, 1, 0],
      [9, 2, 1, 0],
    ]);
    expect(sequences(1)).toEqual([[9, 0, 1, 0]]);
  });

  it('sends a retried batch with the same sequence numbers', async () => {
    script = [{ status: 503, problem: { code: 'REQUEST_TIMED_OUT', detail: 'slow', retriable: true } }];
    const producer = new Producer({ bootstrap, lingerMs: 1, retryBackoffMs: 1 });
    await producer.send({ topic: 't', partition: 0, value: 'x' });
    await producer.send({ topic: 't', partition: 0, value: 'y' });
    await producer.close();
    expect(received.map((r) => [r.values, r.producer[0]!.baseSequence])).toEqual([
      [['x'], 0],
      [['x'], 0],
      [['y'], 1],
    ]);
  });

  it('without idempotence asks for no producer id and sends batches without one', async () => {
    const producer = new Producer({ bootstrap, lingerMs: 1, idempotent: false });
    await producer.send({ topic: 't', partition: 0, value: 'x' });
    await producer.close();
    expect(producerIdsAsked).toBe(0);
    expect(received[0]!.producer).toEqual([{ producerId: -1, baseSequence: -1 }]);
  });
});
