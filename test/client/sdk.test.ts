import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionConsumer, Producer } from '../../src/client/index.js';
import { isSluiceError } from '../../src/common/errors.js';
import { partitionForKey } from '../../src/common/murmur2.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';

/** The SDK end to end against a real node over HTTP/2 with msgpack. */
let node: SluiceNode;
let dataDir: string;
let bootstrap: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'sluice-sdk-'));
  node = await startNode({ dataDir, port: 0 });
  bootstrap = `http://127.0.0.1:${node.address.port}`;
});
afterAll(async () => {
  await node.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe('SDK', () => {
  it('Admin manages topics and reports offsets; errors carry their code', async () => {
    const admin = new Admin({ bootstrap });
    try {
      const created = await admin.createTopic({
        name: 'sdk-admin',
        partitions: 2,
        configs: { 'retention.ms': 1000 },
      });
      expect(created.partitions).toHaveLength(2);
      expect((await admin.listTopics()).map((t) => t.name)).toContain('sdk-admin');
      expect((await admin.alterConfigs('sdk-admin', { 'retention.ms': null })).configs).toEqual({});
      expect((await admin.addPartitions('sdk-admin', 4)).partitions).toHaveLength(4);
      expect(await admin.offsets('sdk-admin', 3)).toEqual({
        partition: 3,
        earliest: 0,
        latest: 0,
        highWatermark: 0,
      });
      expect((await admin.cluster()).nodeId).toBe(1);
      const error = await admin.createTopic({ name: 'sdk-admin' }).catch((e) => e);
      expect(isSluiceError(error, 'TOPIC_ALREADY_EXISTS')).toBe(true);
      expect(error.retriable).toBe(false);
      await admin.deleteTopic('sdk-admin');
      expect(
        isSluiceError(await admin.describeTopic('sdk-admin').catch((e) => e), 'UNKNOWN_TOPIC_OR_PARTITION'),
      ).toBe(true);
    } finally {
      admin.close();
    }
  });

  it('Producer batches per partition with the Kafka partitioner; a consumer reads every record back in order', async () => {
    const admin = new Admin({ bootstrap });
    await admin.createTopic({ name: 'sdk-data', partitions: 3 });
    admin.close();
    const producer = new Producer({ bootstrap, lingerMs: 5, batchBytes: 4096 });
    const sends = [];
    for (let i = 0; i < 300; i++) {
      sends.push(
        producer.send({
          topic: 'sdk-data',
          key: `key-${i % 7}`,
          value: `value-${i}`,
          headers: { n: String(i) },
        }),
      );
    }
    sends.push(producer.send({ topic: 'sdk-data', value: 'pinned', partition: 2 }));
    const results = await Promise.all(sends);
    await producer.close();
    for (let i = 0; i < 300; i++)
      expect(results[i]!.partition).toBe(partitionForKey(Buffer.from(`key-${i % 7}`), 3));
    expect(results[300]!.partition).toBe(2);
    // Offsets within a partition follow send order.
    for (let p = 0; p < 3; p++) {
      const offsets = results.filter((r) => r.partition === p).map((r) => r.offset);
      expect(offsets).toEqual(offsets.map((_, i) => i));
    }
    const consumed: string[] = [];
    for (let p = 0; p < 3; p++) {
      const consumer = new PartitionConsumer({
        bootstrap,
        topic: 'sdk-data',
        partition: p,
        stopAtEnd: true,
        maxWaitMs: 100,
      });
      for await (const record of consumer) {
        consumed.push(Buffer.from(record.value!).toString());
        if (record.headers.length > 0)
          expect(Buffer.from(record.headers[0]![1]!).toString()).toBe(
            Buffer.from(record.value!).toString().slice(6),
          );
      }
      consumer.close();
    }
    expect(consumed.sort()).toEqual(
      [...Array.from({ length: 300 }, (_, i) => `value-${i}`), 'pinned'].sort(),
    );
  });

  it('a consumer at the latest offset waits for new records', async () => {
    const admin = new Admin({ bootstrap });
    await admin.createTopic({ name: 'sdk-tail', partitions: 1 });
    admin.close();
    const consumer = new PartitionConsumer({
      bootstrap,
      topic: 'sdk-tail',
      partition: 0,
      offset: 'latest',
      maxWaitMs: 2000,
    });
    const iterator = consumer[Symbol.asyncIterator]();
    const next = iterator.next();
    await new Promise((r) => setTimeout(r, 100));
    const producer = new Producer({ bootstrap, acks: 1 });
    const sent = await producer.send({ topic: 'sdk-tail', value: 'fresh' });
    await producer.close();
    const { value } = await next;
    expect(value).toMatchObject({ offset: sent.offset, partition: 0 });
    expect(Buffer.from((value as { value: Uint8Array }).value).toString()).toBe('fresh');
    consumer.close();
  });

  it('a producer sees partitions added to a topic once its metadata is refreshed: keyed records reach them', async () => {
    const admin = new Admin({ bootstrap });
    await admin.createTopic({ name: 'sdk-grow', partitions: 2 });
    const keys = Array.from({ length: 40 }, (_, i) => `grow-${i}`);
    const producer = new Producer({ bootstrap, lingerMs: 1, metadataMaxAgeMs: 100 });
    const before = await producer.send(keys.map((key) => ({ topic: 'sdk-grow', key, value: 'before' })));
    expect(before.map((r) => r.partition)).toEqual(keys.map((k) => partitionForKey(Buffer.from(k), 2)));
    await admin.addPartitions('sdk-grow', 8);
    // Until its metadata is 100 ms old the producer keeps the count it has.
    await new Promise((r) => setTimeout(r, 150));
    const after = await producer.send(keys.map((key) => ({ topic: 'sdk-grow', key, value: 'after' })));
    await producer.close();
    expect(after.map((r) => r.partition)).toEqual(keys.map((k) => partitionForKey(Buffer.from(k), 8)));
    expect(Math.max(...after.map((r) => r.partition))).toBeGreaterThanOrEqual(2);
    // The records are where the producer said: each new partition holds the keys that hash to it.
    const description = await admin.describeTopic('sdk-grow');
    admin.close();
    for (const p of description.partitions)
      expect(p.logEndOffset).toBe(
        before.filter((r) => r.partition === p.partition).length +
          after.filter((r) => r.partition === p.partition).length,
      );
  });

  it('Admin.metadata names each partition of the topics asked for with its leader, and the nodes', async () => {
    const admin = new Admin({ bootstrap });
    try {
      await admin.createTopic({ name: 'sdk-meta', partitions: 2 });
      const metadata = await admin.metadata(['sdk-meta', 'sdk-none']);
      expect(metadata.nodes).toEqual([
        { id: 1, host: node.address.host, port: node.address.port, rack: null, fenced: false },
      ]);
      expect(metadata.topics).toMatchObject([
        {
          name: 'sdk-meta',
          partitions: [
            { partition: 0, leader: 1 },
            { partition: 1, leader: 1 },
          ],
        },
      ]);
      expect(metadata.unknownTopics).toEqual(['sdk-none']);
      expect((await admin.metadata()).topics.map((t) => t.name)).toContain('sdk-meta');
    } finally {
      admin.close();
    }
  });

  it('rejects a send to a partition that does not exist and a topic that does not exist', async () => {
    const producer = new Producer({ bootstrap });
    expect(
      isSluiceError(
        await producer.send({ topic: 'sdk-data', value: 'x', partition: 9 }).catch((e) => e),
        'UNKNOWN_TOPIC_OR_PARTITION',
      ),
    ).toBe(true);
    expect(
      isSluiceError(
        await producer.send({ topic: 'no-such-topic', value: 'x' }).catch((e) => e),
        'UNKNOWN_TOPIC_OR_PARTITION',
      ),
    ).toBe(true);
    await producer.close();
  });
});
