import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { FileTopicRegistry } from '../../src/broker/topic-registry.js';
import { ManualClock } from '../../src/common/clock.js';
import { SluiceError } from '../../src/common/errors.js';
import { decodeRecords, encodeBatch, splitBatches } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';
import { AT, resealed } from '../protocol/batch-helpers.js';

/**
 * The broker on an in-memory file system and a manual clock: partitioning, acks,
 * long-poll waiters, topic admin and the registry, all deterministic.
 */
const DATA_DIR = '/data';

interface Node {
  broker: Broker;
  logs: LogManager;
  registry: FileTopicRegistry;
  close(): Promise<void>;
}

const open: Node[] = [];
afterEach(async () => {
  for (const node of open.splice(0)) await node.close();
});

async function startBroker(
  fs: SimulatedFileSystem,
  clock: ManualClock,
  options: { defaultConfigs?: Record<string, string | number | boolean>; fetchWaitersMax?: number } = {},
): Promise<Node> {
  const logs = await LogManager.open({ dataDir: DATA_DIR }, { fs, clock });
  const registry = await FileTopicRegistry.open(DATA_DIR, fs);
  const broker = new Broker(
    { nodeId: 7, address: () => ({ host: '127.0.0.1', port: 1 }), version: 'test', ...options },
    { registry, logs, clock },
  );
  await broker.start();
  let closed = false;
  const node = {
    broker,
    logs,
    registry,
    async close() {
      if (closed) return;
      closed = true;
      await logs.close();
    },
  };
  open.push(node);
  return node;
}

const bytes = (s: string) => Buffer.from(s);

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof SluiceError) return error.code;
    throw error;
  }
  return 'no error';
}

function values(data: Buffer): string[] {
  const out: string[] = [];
  for (const batch of splitBatches(data)) {
    for (const r of decodeRecords(data, batch.pos))
      out.push(Buffer.from(r.value ?? new Uint8Array()).toString());
  }
  return out;
}

describe('partitioning', () => {
  it('puts a keyed record where Kafka’s default partitioner would', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    await broker.admin.createTopic({ name: 'keyed', partitions: 7 });
    // Kafka's murmur2("foobar") is -790332482 (Kafka's own UtilsTest); partition = toPositive(h) % n.
    const expected = (-790332482 & 0x7fffffff) % 7;
    const offsets = await broker.produce.records(
      'keyed',
      [
        { key: bytes('foobar'), value: bytes('a') },
        { key: bytes('foobar'), value: bytes('b') },
      ],
      1,
    );
    expect(offsets).toEqual([
      { partition: expected, offset: 0 },
      { partition: expected, offset: 1 },
    ]);
    const description = await broker.admin.describeTopic('keyed');
    expect(description.partitions.map((p) => p.logEndOffset)).toEqual(
      Array.from({ length: 7 }, (_, p) => (p === expected ? 2 : 0)),
    );
  });

  it('keeps the keyless records of one request together and moves on with the next request', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    await broker.admin.createTopic({ name: 'sticky', partitions: 3 });
    const seen: number[] = [];
    for (let request = 0; request < 6; request++) {
      const offsets = await broker.produce.records(
        'sticky',
        [{ value: bytes('x') }, { value: bytes('y') }, { value: bytes('z') }],
        1,
      );
      const partitions = new Set(offsets.map((o) => o.partition));
      expect(partitions.size).toBe(1);
      seen.push(offsets[0]!.partition);
    }
    // Round-robin: every partition gets two requests' worth.
    expect((await broker.admin.describeTopic('sticky')).partitions.map((p) => p.logEndOffset)).toEqual([
      6, 6, 6,
    ]);
    expect(new Set(seen).size).toBe(3);
  });

  it('honours an explicit partition and refuses one that does not exist, appending nothing', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    await broker.admin.createTopic({ name: 'explicit', partitions: 2 });
    const offsets = await broker.produce.records('explicit', [{ value: bytes('a'), partition: 1 }], 1);
    expect(offsets).toEqual([{ partition: 1, offset: 0 }]);
    const code = await codeOf(
      broker.produce.records(
        'explicit',
        [
          { value: bytes('ok'), partition: 0 },
          { value: bytes('bad'), partition: 2 },
        ],
        1,
      ),
    );
    expect(code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    expect((await broker.admin.describeTopic('explicit')).partitions.map((p) => p.logEndOffset)).toEqual([
      0, 1,
    ]);
  });
});

describe('acks and validation', () => {
  it('refuses acks=all when min.insync.replicas exceeds the single replica, and appends nothing', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    await broker.admin.createTopic({ name: 'strict', partitions: 1, configs: { 'min.insync.replicas': 2 } });
    expect(await codeOf(broker.produce.records('strict', [{ value: bytes('x') }], -1))).toBe(
      'NOT_ENOUGH_REPLICAS',
    );
    expect(
      await codeOf(
        broker.produce.batches('strict', 0, encodeBatch([{ value: bytes('x'), timestamp: 1 }]), -1),
      ),
    ).toBe('NOT_ENOUGH_REPLICAS');
    expect((await broker.admin.describeTopic('strict')).partitions[0]!.logEndOffset).toBe(0);
    // acks=1 does not wait for replicas and is accepted.
    expect(await broker.produce.records('strict', [{ value: bytes('x') }], 1)).toEqual([
      { partition: 0, offset: 0 },
    ]);
  });

  it('refuses pre-built batches whose header disagrees with their records, and appends nothing', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    await broker.admin.createTopic({ name: 'prebuilt', partitions: 1 });
    const one = encodeBatch([{ value: bytes('x'), timestamp: 1 }]);
    // lastOffsetDelta 2^31-1 on a one-record batch: twice would have moved the log end to 2^32.
    const farDelta = resealed(one, (b) => {
      b.writeInt32BE(2 ** 31 - 1, AT.lastOffsetDelta);
      return b;
    });
    // Names gzip in its attributes but holds its records uncompressed.
    const gzip = resealed(one, (b) => {
      b.writeUInt16BE(1, AT.attributes);
      return b;
    });
    const unknownBit = resealed(one, (b) => {
      b.writeUInt16BE(1 << 9, AT.attributes);
      return b;
    });
    for (const acks of [0, 1, -1] as const) {
      expect(
        await codeOf(broker.produce.batches('prebuilt', 0, Buffer.concat([farDelta, farDelta]), acks)),
      ).toBe('INVALID_RECORD');
      expect(await codeOf(broker.produce.batches('prebuilt', 0, gzip, acks))).toBe('CORRUPT_MESSAGE');
      expect(await codeOf(broker.produce.batches('prebuilt', 0, unknownBit, acks))).toBe('INVALID_RECORD');
    }
    // The records-per-request limit holds for pre-built batches as for records: 10,001 in two batches.
    const many = (n: number) => encodeBatch(Array.from({ length: n }, () => ({ value: null, timestamp: 1 })));
    expect(
      await codeOf(broker.produce.batches('prebuilt', 0, Buffer.concat([many(5000), many(5001)]), 1)),
    ).toBe('TOO_MANY_RECORDS');
    expect((await broker.admin.describeTopic('prebuilt')).partitions[0]!.logEndOffset).toBe(0);
    // A good batch still lands at offset 0, and one that fills the limit exactly is accepted.
    expect(await broker.produce.batches('prebuilt', 0, one, 1)).toMatchObject({
      baseOffset: 0,
      lastOffset: 0,
    });
    expect(
      await broker.produce.batches('prebuilt', 0, Buffer.concat([many(5000), many(5000)]), 1),
    ).toMatchObject({
      baseOffset: 1,
      lastOffset: 10_000,
    });
  });

  it('refuses a replication factor above one, unknown configs and bad names', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    expect(await codeOf(broker.admin.createTopic({ name: 'rf', replicationFactor: 3 }))).toBe(
      'INVALID_REPLICATION_FACTOR',
    );
    expect(await codeOf(broker.admin.createTopic({ name: 'cfg', configs: { 'no.such': 1 } }))).toBe(
      'INVALID_CONFIG',
    );
    expect(await codeOf(broker.admin.createTopic({ name: '__internal' }))).toBe('INVALID_TOPIC_EXCEPTION');
    expect(await codeOf(broker.admin.createTopic({ name: 'a/b' }))).toBe('INVALID_TOPIC_EXCEPTION');
    expect(await codeOf(broker.admin.createTopic({ name: '..' }))).toBe('INVALID_TOPIC_EXCEPTION');
    expect(broker.admin.listTopics()).toEqual([]);
  });

  it('checks every pre-built batch and appends none when one is corrupt', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    await broker.admin.createTopic({ name: 'batches', partitions: 1 });
    const good = encodeBatch([
      { value: bytes('g1'), timestamp: 1 },
      { value: bytes('g2'), timestamp: 1 },
    ]);
    const bad = encodeBatch([{ value: bytes('b1'), timestamp: 1 }]);
    bad[bad.length - 2]! ^= 0x01;
    expect(await codeOf(broker.produce.batches('batches', 0, Buffer.concat([good, bad]), 1))).toBe(
      'CORRUPT_MESSAGE',
    );
    expect((await broker.admin.describeTopic('batches')).partitions[0]!.logEndOffset).toBe(0);
    const result = await broker.produce.batches('batches', 0, Buffer.concat([good, good]), 1);
    expect(result).toEqual({ partition: 0, baseOffset: 0, lastOffset: 3, batchCount: 2 });
  });

  it('refuses a record larger than max.message.bytes', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock(), {
      defaultConfigs: { 'max.message.bytes': 2048 },
    });
    await broker.admin.createTopic({ name: 'small', partitions: 1 });
    expect(await codeOf(broker.produce.records('small', [{ value: Buffer.alloc(4096) }], 1))).toBe(
      'RECORD_TOO_LARGE',
    );
    const many = Array.from({ length: 40 }, () => ({ value: Buffer.alloc(100) }));
    expect(await codeOf(broker.produce.records('small', many, 1))).toBe('MESSAGE_TOO_LARGE');
    expect((await broker.admin.describeTopic('small')).partitions[0]!.logEndOffset).toBe(0);
  });
});

describe('fetch and long-poll', () => {
  it('waits for an append, then answers with it', async () => {
    const clock = new ManualClock();
    const { broker } = await startBroker(new SimulatedFileSystem(), clock);
    await broker.admin.createTopic({ name: 'poll', partitions: 1 });
    let answered = false;
    const fetching = broker.fetch
      .read('poll', 0, { offset: 0, maxBytes: 1 << 20, maxWaitMs: 5_000, minBytes: 1 })
      .then((r) => {
        answered = true;
        return r;
      });
    await new Promise((r) => setImmediate(r));
    expect(answered).toBe(false);
    await broker.produce.records('poll', [{ value: bytes('hello') }], 1);
    const result = await fetching;
    expect(result.batchCount).toBe(1);
    expect(values(result.data)).toEqual(['hello']);
    expect(result.nextOffset).toBe(1);
    expect(result.highWatermark).toBe(1);
  });

  it('answers empty when the wait times out on the clock, and when the request is aborted', async () => {
    const clock = new ManualClock();
    const { broker } = await startBroker(new SimulatedFileSystem(), clock);
    await broker.admin.createTopic({ name: 'idle', partitions: 1 });
    const timing = broker.fetch.read('idle', 0, {
      offset: 'latest',
      maxBytes: 1024,
      maxWaitMs: 1_000,
      minBytes: 1,
    });
    await new Promise((r) => setImmediate(r));
    clock.advance(1_000);
    const timedOut = await timing;
    expect(timedOut.batchCount).toBe(0);
    expect(timedOut.nextOffset).toBe(0);

    const controller = new AbortController();
    const aborting = broker.fetch.read('idle', 0, {
      offset: 0,
      maxBytes: 1024,
      maxWaitMs: 30_000,
      minBytes: 1,
      signal: controller.signal,
    });
    await new Promise((r) => setImmediate(r));
    controller.abort();
    expect((await aborting).batchCount).toBe(0);
    // Both waiters are gone: a bounded broker with room for one accepts a new one.
  });

  it('bounds the number of waiting fetches', async () => {
    const clock = new ManualClock();
    const { broker } = await startBroker(new SimulatedFileSystem(), clock, { fetchWaitersMax: 1 });
    await broker.admin.createTopic({ name: 'bounded', partitions: 1 });
    const first = broker.fetch.read('bounded', 0, {
      offset: 0,
      maxBytes: 1024,
      maxWaitMs: 1_000,
      minBytes: 1,
    });
    await new Promise((r) => setImmediate(r));
    expect(
      await codeOf(
        broker.fetch.read('bounded', 0, { offset: 0, maxBytes: 1024, maxWaitMs: 1_000, minBytes: 1 }),
      ),
    ).toBe('LIMIT_EXCEEDED');
    clock.advance(1_000);
    await first;
    // The slot is free again once the first waiter has finished.
    const again = broker.fetch.read('bounded', 0, {
      offset: 0,
      maxBytes: 1024,
      maxWaitMs: 1_000,
      minBytes: 1,
    });
    await new Promise((r) => setImmediate(r));
    clock.advance(1_000);
    expect((await again).batchCount).toBe(0);
  });

  it('refuses offsets outside the log', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    await broker.admin.createTopic({ name: 'range', partitions: 1 });
    await broker.produce.records('range', [{ value: bytes('a') }], 1);
    expect(
      await codeOf(broker.fetch.read('range', 0, { offset: 5, maxBytes: 1024, maxWaitMs: 0, minBytes: 1 })),
    ).toBe('OFFSET_OUT_OF_RANGE');
    expect(
      await codeOf(broker.fetch.read('range', 3, { offset: 0, maxBytes: 1024, maxWaitMs: 0, minBytes: 1 })),
    ).toBe('UNKNOWN_TOPIC_OR_PARTITION');
  });

  it('finds offsets by timestamp', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    await broker.admin.createTopic({ name: 'times', partitions: 1 });
    await broker.produce.records(
      'times',
      [
        { value: bytes('a'), timestamp: 1_000 },
        { value: bytes('b'), timestamp: 2_000 },
      ],
      1,
    );
    await broker.produce.records('times', [{ value: bytes('c'), timestamp: 3_000 }], 1);
    expect((await broker.fetch.offsets('times', 0, 1_500)).offset).toBe(1);
    expect((await broker.fetch.offsets('times', 0, 2_500)).offset).toBe(2);
    expect((await broker.fetch.offsets('times', 0, 9_000)).offset).toBe(null);
    expect((await broker.fetch.offsets('times', 0, -1)).offset).toBe(3);
    expect((await broker.fetch.offsets('times', 0, -2)).offset).toBe(0);
    const plain = await broker.fetch.offsets('times', 0);
    expect(plain).toEqual({ partition: 0, earliest: 0, latest: 3, highWatermark: 3 });
  });
});

describe('topic admin and the registry', () => {
  it('keeps the cluster id and topics across a restart', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock();
    const first = await startBroker(fs, clock);
    await first.broker.admin.createTopic({
      name: 'kept',
      partitions: 2,
      configs: { 'retention.ms': 60_000 },
    });
    await first.broker.produce.records('kept', [{ value: bytes('v'), partition: 1 }], 1);
    const clusterId = first.broker.admin.cluster().clusterId;
    await first.close();
    const second = await startBroker(fs, clock);
    expect(second.broker.admin.cluster().clusterId).toBe(clusterId);
    const kept = await second.broker.admin.describeTopic('kept');
    expect(kept.configs).toEqual({ 'retention.ms': 60_000 });
    expect(kept.partitions.map((p) => p.logEndOffset)).toEqual([0, 1]);
    const stored = JSON.parse((await fs.readFile(`${DATA_DIR}/__cluster/topics.json`))!.toString());
    expect(stored.topics.map((t: { name: string }) => t.name)).toEqual(['kept']);
  });

  it('lets only one of two concurrent creates of a name succeed', async () => {
    const { broker } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    const results = await Promise.allSettled([
      broker.admin.createTopic({ name: 'twice', partitions: 2 }),
      broker.admin.createTopic({ name: 'twice', partitions: 3 }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
    expect(((results[1] as PromiseRejectedResult).reason as SluiceError).code).toBe('TOPIC_ALREADY_EXISTS');
    expect((await broker.admin.describeTopic('twice')).partitions).toHaveLength(2);
  });

  it('removes partition data no topic owns at start, so a re-created topic starts empty', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock();
    const first = await startBroker(fs, clock);
    await first.broker.admin.createTopic({ name: 'ghost', partitions: 1 });
    await first.broker.produce.records('ghost', [{ value: bytes('old') }], 1);
    await first.close();
    // A crash after the definition was removed but before the data was deleted: the definition
    // leaves the registry's file while no broker runs (the first one's reconciler, told of a
    // removal, would delete the data itself, racing the next start).
    await (await FileTopicRegistry.open(DATA_DIR, fs)).remove('ghost');
    expect(await fs.readdir(DATA_DIR)).toContain('ghost-0');
    const second = await startBroker(fs, clock);
    expect(second.logs.get('ghost', 0)).toBeUndefined();
    await second.broker.admin.createTopic({ name: 'ghost', partitions: 1 });
    expect((await second.broker.admin.describeTopic('ghost')).partitions[0]!.logEndOffset).toBe(0);
  });

  it('grows partitions, alters and resets configs, deletes topics with their data', async () => {
    const { broker, logs } = await startBroker(new SimulatedFileSystem(), new ManualClock());
    await broker.admin.createTopic({ name: 'admin', partitions: 1 });
    expect((await broker.admin.addPartitions('admin', 3)).partitions).toHaveLength(3);
    expect(await codeOf(broker.admin.addPartitions('admin', 2))).toBe('INVALID_PARTITIONS');
    expect(
      (await broker.admin.alterConfigs('admin', { 'retention.ms': 1000, 'cleanup.policy': 'compact' }))
        .configs,
    ).toEqual({
      'retention.ms': 1000,
      'cleanup.policy': 'compact',
    });
    expect(logs.get('admin', 2)!.config.cleanupPolicy).toContain('compact');
    expect((await broker.admin.alterConfigs('admin', { 'cleanup.policy': null })).configs).toEqual({
      'retention.ms': 1000,
    });
    expect(await codeOf(broker.admin.alterConfigs('admin', { 'retention.ms': 'soon' }))).toBe(
      'INVALID_CONFIG',
    );
    expect(await broker.admin.deleteTopic('admin')).toEqual({ name: 'admin', deleted: true });
    expect(logs.get('admin', 0)).toBeUndefined();
    expect(await codeOf(Promise.resolve().then(() => broker.admin.describeTopic('admin')))).toBe(
      'UNKNOWN_TOPIC_OR_PARTITION',
    );
  });
});

describe('deleting a topic under a waiting fetch', () => {
  it('answers the waiting fetch at once with UNKNOWN_TOPIC_OR_PARTITION, leaving other waiters alone', async () => {
    const clock = new ManualClock();
    const { broker } = await startBroker(new SimulatedFileSystem(), clock);
    await broker.admin.createTopic({ name: 'doomed', partitions: 1 });
    await broker.admin.createTopic({ name: 'other', partitions: 1 });
    const doomed = codeOf(
      broker.fetch.read('doomed', 0, { offset: 0, maxBytes: 1024, maxWaitMs: 30_000, minBytes: 1 }),
    );
    const other = broker.fetch.read('other', 0, {
      offset: 0,
      maxBytes: 1024,
      maxWaitMs: 30_000,
      minBytes: 1,
    });
    await new Promise((r) => setImmediate(r));
    expect(broker.fetch.waiting).toBe(2);
    await broker.admin.deleteTopic('doomed');
    expect(await doomed).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    expect(broker.fetch.waiting).toBe(1);
    // A config change during a wait is not a deletion.
    await broker.admin.alterConfigs('other', { 'retention.ms': 1000 });
    await broker.produce.records('other', [{ value: bytes('still here') }], 1);
    expect(values((await other).data)).toEqual(['still here']);
  });
});
