import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Admin,
  type ConsumedRecord,
  isSluiceError,
  PartitionConsumer,
  Producer,
  SluiceError,
} from '../../src/client/index.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';
import { packr } from '../../src/protocol/msgpack.js';

/**
 * The SDK options and helpers users of other clients expect: https:// endpoints and custom
 * headers on every request, `await using` (Symbol.asyncDispose) and async close() everywhere,
 * value helpers on consumed records, and key and value serializers on the producer.
 */
const FIXTURES = join(import.meta.dirname, 'fixtures');
const cert = readFileSync(join(FIXTURES, 'localhost.crt'));
const key = readFileSync(join(FIXTURES, 'localhost.key'));

let dir: string;
let node: SluiceNode;
let bootstrap: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-sdk-options-'));
  node = await startNode({ dataDir: dir, port: 0, logLevel: 'silent' });
  bootstrap = `http://127.0.0.1:${node.address.port}`;
});
afterAll(async () => {
  await node.close();
  await rm(dir, { recursive: true, force: true });
});

describe('https:// endpoints and custom headers', () => {
  /** A TLS HTTP/2 server (as a proxy in front of the cluster would be) that records what it is sent. */
  async function tlsServer(): Promise<{ url: string; seen: http2.IncomingHttpHeaders[]; close: () => void }> {
    const seen: http2.IncomingHttpHeaders[] = [];
    const server = http2.createSecureServer({ key, cert });
    server.on('stream', (stream, headers) => {
      seen.push(headers);
      stream.respond({ ':status': 200, 'content-type': 'application/vnd.msgpack' });
      stream.end(packr.pack({ topics: [{ name: 'behind-tls', partitions: 1, replicationFactor: 1 }] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return { url: `https://localhost:${port}`, seen, close: () => server.close() };
  }

  it('speaks HTTP/2 over TLS to an https:// bootstrap and sends the headers given with every request', async () => {
    const server = await tlsServer();
    try {
      const admin = new Admin({
        bootstrap: server.url,
        tls: { ca: cert },
        headers: { authorization: 'Bearer token-1', 'x-tenant': 'blue', accept: 'text/plain' },
      });
      expect(await admin.listTopics()).toEqual([{ name: 'behind-tls', partitions: 1, replicationFactor: 1 }]);
      await admin.close();
      expect(server.seen).toHaveLength(1);
      expect(server.seen[0]).toMatchObject({
        ':scheme': 'https',
        ':path': '/v1/topics',
        authorization: 'Bearer token-1',
        'x-tenant': 'blue',
        // The SDK's own headers win: it reads msgpack whatever the caller set.
        accept: 'application/vnd.msgpack',
      });
    } finally {
      server.close();
    }
  });

  it('refuses a certificate it does not trust, with the reason, as a SluiceError', async () => {
    const server = await tlsServer();
    try {
      const admin = new Admin({ bootstrap: server.url, requestTimeoutMs: 5000 });
      const error = await admin.listTopics().catch((e: unknown) => e);
      expect(isSluiceError(error)).toBe(true);
      expect((error as SluiceError).message).toMatch(/certificate/);
      expect(server.seen).toHaveLength(0);
      await admin.close();
    } finally {
      server.close();
    }
  });

  it('refuses what is not a node address when the client is made', () => {
    for (const bootstrap of ['notaurl', 'ftp://h:1', 'http://h:1/path', 'http://user:pw@h:1'])
      expect(() => new Admin({ bootstrap }), bootstrap).toThrow(SluiceError);
  });
});

describe('await using and async close()', () => {
  it('closes an Admin, a Producer (after flushing) and a PartitionConsumer at the end of the block', async () => {
    let admin: Admin;
    {
      await using a = new Admin({ bootstrap });
      admin = a;
      await a.createTopic({ name: 'disposed', partitions: 1 });
    }
    await expect(admin.listTopics()).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    let sent: Promise<unknown>;
    {
      await using producer = new Producer({ bootstrap, lingerMs: 60_000 });
      // Not awaited here: the end of the block flushes it.
      sent = producer.send({ topic: 'disposed', value: 'kept' });
    }
    await expect(sent).resolves.toMatchObject({ partition: 0, offset: 0 });
    const values: (string | null)[] = [];
    {
      await using consumer = new PartitionConsumer({
        bootstrap,
        topic: 'disposed',
        partition: 0,
        stopAtEnd: true,
      });
      for await (const record of consumer) values.push(record.text());
    }
    expect(values).toEqual(['kept']);
    expect(new Admin({ bootstrap }).close()).toBeInstanceOf(Promise);
  });
});

describe('record helpers and serializers', () => {
  interface Order {
    id: number;
    items: string[];
  }

  async function consumeAll(topic: string): Promise<ConsumedRecord[]> {
    const records: ConsumedRecord[] = [];
    await using consumer = new PartitionConsumer({ bootstrap, topic, partition: 0, stopAtEnd: true });
    for await (const record of consumer) records.push(record);
    return records;
  }

  it('sends keys and values through the serializers, and reads them back with text(), json() and header()', async () => {
    await using admin = new Admin({ bootstrap });
    await admin.createTopic({ name: 'orders', partitions: 1 });
    const producer = new Producer({
      bootstrap,
      keySerializer: (id: number) => `order-${id}`,
      valueSerializer: (order: Order) => JSON.stringify(order),
    });
    await producer.send({
      topic: 'orders',
      key: 7,
      value: { id: 7, items: ['tea'] },
      headers: { source: 'web' },
    });
    // A null value is a tombstone: the serializer is not called with it.
    await producer.send({ topic: 'orders', key: 7, value: null });
    // @ts-expect-error a value of another type than the serializer takes does not compile
    const wrong = producer.send({ topic: 'orders', value: 'not an order' });
    await wrong;
    await producer.close();

    const [first, tombstone, third] = await consumeAll('orders');
    expect(first!.keyText()).toBe('order-7');
    expect(first!.json<Order>()).toEqual({ id: 7, items: ['tea'] });
    expect(first!.text()).toBe('{"id":7,"items":["tea"]}');
    expect([first!.header('source'), first!.header('none')]).toEqual(['web', undefined]);
    expect([tombstone!.text(), tombstone!.json()]).toEqual([null, null]);
    // The serializer took the string as an order: JSON of a string.
    expect(third!.json()).toBe('not an order');
  });

  it('says which record is not JSON, and refuses a record whose serializer throws without sending it', async () => {
    await using admin = new Admin({ bootstrap });
    await admin.createTopic({ name: 'plain', partitions: 1 });
    const producer = new Producer({
      bootstrap,
      valueSerializer: (v: bigint | string) => {
        if (typeof v === 'bigint') throw new Error('no bigints here');
        return v;
      },
    });
    await producer.send({ topic: 'plain', value: 'not json' });
    const refused = await producer.send({ topic: 'plain', value: 1n }).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: 'INVALID_RECORD',
      message: 'the serializer failed: no bigints here',
    });
    await producer.close();
    const records = await consumeAll('plain');
    expect(records).toHaveLength(1);
    const error = (() => {
      try {
        records[0]!.json();
      } catch (e) {
        return e;
      }
    })();
    expect(error).toMatchObject({
      code: 'INVALID_RECORD',
      details: { topic: 'plain', partition: 0, offset: 0 },
    });
  });
});
