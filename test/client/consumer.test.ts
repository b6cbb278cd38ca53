import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Packr } from 'msgpackr';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PartitionConsumer, parseFetchResponse } from '../../src/client/index.js';
import { isSluiceError } from '../../src/common/errors.js';
import { CONSUMER_FETCH_WAIT_MS, ENDPOINTS, endpointPath, queryDefault } from '../../src/protocol/api.js';
import { encodeBatch, setBaseOffset } from '../../src/protocol/batch.js';

/**
 * The PartitionConsumer against a scripted HTTP/2 server (no broker) that answers fetches the way
 * the broker does in msgpack: the stored batches as stored, then nextOffset, highWatermark and
 * logStartOffset. It serves no metadata (404, as a node of an older release), so every fetch goes
 * to it; test/client/metadata.test.ts has consumers that follow the leader.
 */
const packr = new Packr({ useRecords: false });

function batchAt(baseOffset: number, count: number): Buffer {
  const batch = encodeBatch(
    Array.from({ length: count }, (_, i) => ({
      key: Buffer.from(`k${baseOffset + i}`),
      value: Buffer.from(`v${baseOffset + i}`),
      headers: [['h', Buffer.from(String(baseOffset + i))]] as [string, Uint8Array][],
      timestamp: 1_700_000_000_000 + baseOffset + i,
    })),
  );
  setBaseOffset(batch, 0, baseOffset);
  return batch;
}

/** The map header is a map16 here, where the broker writes a fixmap: both must be read. */
function fetchBody(batches: Buffer[], nextOffset: number, highWatermark: number): Buffer {
  const rest = Buffer.concat(
    [
      ['nextOffset', nextOffset],
      ['highWatermark', highWatermark],
      ['logStartOffset', 0],
    ]
      .flat()
      .map((v) => packr.pack(v)),
  );
  return Buffer.concat([
    Buffer.from([0xde, 0x00, 0x04]),
    Buffer.from('\xa7batches', 'latin1'),
    Buffer.from([0x90 | batches.length]),
    ...batches,
    rest,
  ]);
}

// The partition: offsets 0-4 in one batch, 5-9 in the next.
const LOG = [batchAt(0, 5), batchAt(5, 5)];
let failures: { status: number; problem: Record<string, unknown> }[] = [];
let corrupt = false;
let fetches: string[] = [];
let requests: { method: string; path: string; query: Record<string, string> }[] = [];
let server: http2.Http2Server;
let bootstrap: string;
const open = new Set<http2.ServerHttp2Session>();

beforeAll(async () => {
  server = http2.createServer();
  server.on('session', (session) => {
    open.add(session);
    session.on('close', () => open.delete(session));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const url = new URL(String(headers[':path']), 'http://x');
    if (url.pathname === '/v1/metadata') {
      // A node of a release before metadata: the consumer fetches from it directly.
      stream.respond({ ':status': 404, 'content-type': 'application/problem+json' });
      stream.end(JSON.stringify({ code: 'NOT_FOUND', detail: 'no route', retriable: false }));
      return;
    }
    fetches.push(url.searchParams.get('offset') ?? '');
    requests.push({
      method: String(headers[':method']),
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
    });
    const failure = failures.shift();
    if (failure) {
      stream.respond({ ':status': failure.status, 'content-type': 'application/problem+json' });
      stream.end(JSON.stringify(failure.problem));
      return;
    }
    const offset = Number(url.searchParams.get('offset'));
    // Like the broker: whole batches from the one holding the offset; one batch per answer.
    const index = offset < 5 ? 0 : offset < 10 ? 1 : -1;
    const batches = index < 0 ? [] : [Buffer.from(LOG[index]!)];
    if (corrupt && batches[0]) batches[0][batches[0].length - 1]! ^= 0xff;
    stream.respond({ ':status': 200, 'content-type': 'application/vnd.msgpack' });
    stream.end(fetchBody(batches, index < 0 ? offset : (index + 1) * 5, 10));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  bootstrap = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  failures = [];
  corrupt = false;
  fetches = [];
  requests = [];
});

afterAll(async () => {
  for (const session of open) session.destroy();
  await new Promise((resolve) => server.close(resolve));
});

async function readAll(consumer: PartitionConsumer): Promise<number[]> {
  const offsets: number[] = [];
  try {
    for await (const r of consumer) offsets.push(r.offset);
  } finally {
    consumer.close();
  }
  return offsets;
}

describe('PartitionConsumer', () => {
  it('hands out consecutive records to next() calls made before the first one settles, one fetch per page', async () => {
    const consumer = new PartitionConsumer({
      bootstrap,
      topic: 't',
      partition: 0,
      offset: 0,
      stopAtEnd: true,
    });
    const iterator = consumer[Symbol.asyncIterator]();
    try {
      const results = await Promise.all(Array.from({ length: 12 }, () => iterator.next()));
      const handedOut = results.map((r) => (r.done ? 'done' : r.value.offset));
      expect(handedOut).toEqual([...Array.from({ length: 10 }, (_, i) => i), 'done', 'done']);
    } finally {
      consumer.close();
    }
    expect(fetches).toEqual(['0', '5']);
  });

  it("fetches with the endpoint table's method, path and maxBytes default, long-polling CONSUMER_FETCH_WAIT_MS", async () => {
    const consumer = new PartitionConsumer({ bootstrap, topic: 'a b', partition: 1, offset: 3 });
    try {
      await consumer.poll();
    } finally {
      consumer.close();
    }
    expect(requests).toEqual([
      {
        method: ENDPOINTS.fetch.method,
        path: endpointPath(ENDPOINTS.fetch, { topic: 'a b', partition: 1 }),
        query: {
          offset: '3',
          maxWaitMs: String(CONSUMER_FETCH_WAIT_MS),
          maxBytes: String(queryDefault(ENDPOINTS.fetch, 'maxBytes')),
        },
      },
    ]);
    expect(queryDefault(ENDPOINTS.fetch, 'maxBytes')).toBe(1024 * 1024);
  });

  it('skips the records of the first batch before the requested offset and keeps keys, headers, timestamps', async () => {
    const consumer = new PartitionConsumer({
      bootstrap,
      topic: 't',
      partition: 0,
      offset: 3,
      stopAtEnd: true,
    });
    const records = [];
    for await (const r of consumer) records.push(r);
    consumer.close();
    expect(records.map((r) => r.offset)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(fetches).toEqual(['3', '5']);
    const r7 = records.find((r) => r.offset === 7)!;
    expect(Buffer.from(r7.key!).toString()).toBe('k7');
    expect(Buffer.from(r7.value!).toString()).toBe('v7');
    expect(r7.headers.map(([k, v]) => [k, Buffer.from(v!).toString()])).toEqual([['h', '7']]);
    expect(r7.timestamp).toBe(1_700_000_000_007);
  });

  it('retries retriable errors with backoff and goes on from where it was', async () => {
    const problem = { code: 'LEADER_NOT_AVAILABLE', detail: 'electing', retriable: true };
    failures = [
      { status: 503, problem },
      { status: 503, problem },
    ];
    const consumer = new PartitionConsumer({
      bootstrap,
      topic: 't',
      partition: 0,
      offset: 8,
      stopAtEnd: true,
      retries: 3,
      retryBackoffMs: 1,
    });
    expect(await readAll(consumer)).toEqual([8, 9]);
    expect(fetches).toEqual(['8', '8', '8']);
  });

  it('throws a non-retriable error at once, and a retriable one after `retries` tries', async () => {
    failures = [
      { status: 416, problem: { code: 'OFFSET_OUT_OF_RANGE', detail: 'outside', retriable: false } },
    ];
    const outOfRange = await readAll(
      new PartitionConsumer({
        bootstrap,
        topic: 't',
        partition: 0,
        offset: 99,
        retries: 5,
        retryBackoffMs: 1,
      }),
    ).catch((e) => e);
    expect(isSluiceError(outOfRange, 'OFFSET_OUT_OF_RANGE')).toBe(true);
    expect(fetches).toEqual(['99']);
    fetches = [];
    const problem = { code: 'LEADER_NOT_AVAILABLE', detail: 'electing', retriable: true };
    failures = [1, 2, 3].map(() => ({ status: 503, problem }));
    const gaveUp = await readAll(
      new PartitionConsumer({
        bootstrap,
        topic: 't',
        partition: 0,
        offset: 0,
        retries: 2,
        retryBackoffMs: 1,
      }),
    ).catch((e) => e);
    expect(isSluiceError(gaveUp, 'LEADER_NOT_AVAILABLE')).toBe(true);
    expect(fetches).toHaveLength(3);
  });

  it('refuses a batch whose CRC does not match', async () => {
    corrupt = true;
    const error = await readAll(
      new PartitionConsumer({ bootstrap, topic: 't', partition: 0, offset: 0 }),
    ).catch((e) => e);
    expect(isSluiceError(error, 'CORRUPT_MESSAGE')).toBe(true);
  });

  it('parseFetchResponse refuses an answer that is not a fetch page', () => {
    expect(() => parseFetchResponse(packr.pack({ records: [] }), 0)).toThrow(/unexpected fetch response/);
  });
});
