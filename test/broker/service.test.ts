import { afterEach, describe, expect, it } from 'vitest';
import { BrokerService } from '../../src/broker/service.js';
import { FileTopicRegistry } from '../../src/broker/topic-registry.js';
import { ManualClock } from '../../src/common/clock.js';
import { SluiceError } from '../../src/common/errors.js';
import { decodeRecords, encodeBatch, splitBatches } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';

/**
 * The broker service on an in-memory file system and a manual clock: partitioning, acks,
 * long-poll waiters, topic admin and the registry, all deterministic.
 */
const DATA_DIR = '/data';

interface Node {
  service: BrokerService;
  logs: LogManager;
  registry: FileTopicRegistry;
  close(): Promise<void>;
}

const open: Node[] = [];
afterEach(async () => {
  for (const node of open.splice(0)) await node.close();
});

async function startService(
  fs: SimulatedFileSystem,
  clock: ManualClock,
  options: { defaultConfigs?: Record<string, string | number | boolean>; fetchWaitersMax?: number } = {},
): Promise<Node> {
  const logs = await LogManager.open({ dataDir: DATA_DIR }, { fs, clock });
  const registry = await FileTopicRegistry.open(DATA_DIR, fs);
  const service = new BrokerService(
    { nodeId: 7, host: '127.0.0.1', port: 1, version: 'test', ...options },
    { registry, logs, clock },
  );
  await service.start();
  let closed = false;
  const node = {
    service,
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
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock());
    await service.createTopic({ name: 'keyed', partitions: 7 });
    // Kafka's murmur2("foobar") is -790332482 (Kafka's own UtilsTest); partition = toPositive(h) % n.
    const expected = (-790332482 & 0x7fffffff) % 7;
    const offsets = await service.produce(
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
    const description = service.describeTopic('keyed');
    expect(description.partitions.map((p) => p.logEndOffset)).toEqual(
      Array.from({ length: 7 }, (_, p) => (p === expected ? 2 : 0)),
    );
  });

  it('keeps the keyless records of one request together and moves on with the next request', async () => {
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock());
    await service.createTopic({ name: 'sticky', partitions: 3 });
    const seen: number[] = [];
    for (let request = 0; request < 6; request++) {
      const offsets = await service.produce(
        'sticky',
        [{ value: bytes('x') }, { value: bytes('y') }, { value: bytes('z') }],
        1,
      );
      const partitions = new Set(offsets.map((o) => o.partition));
      expect(partitions.size).toBe(1);
      seen.push(offsets[0]!.partition);
    }
    // Round-robin: every partition gets two requests' worth.
    expect(service.describeTopic('sticky').partitions.map((p) => p.logEndOffset)).toEqual([6, 6, 6]);
    expect(new Set(seen).size).toBe(3);
  });

  it('honours an explicit partition and refuses one that does not exist, appending nothing', async () => {
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock());
    await service.createTopic({ name: 'explicit', partitions: 2 });
    const offsets = await service.produce('explicit', [{ value: bytes('a'), partition: 1 }], 1);
    expect(offsets).toEqual([{ partition: 1, offset: 0 }]);
    const code = await codeOf(
      service.produce(
        'explicit',
        [
          { value: bytes('ok'), partition: 0 },
          { value: bytes('bad'), partition: 2 },
        ],
        1,
      ),
    );
    expect(code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    expect(service.describeTopic('explicit').partitions.map((p) => p.logEndOffset)).toEqual([0, 1]);
  });
});

describe('acks and validation', () => {
  it('refuses acks=all when min.insync.replicas exceeds the single replica, and appends nothing', async () => {
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock());
    await service.createTopic({ name: 'strict', partitions: 1, configs: { 'min.insync.replicas': 2 } });
    expect(await codeOf(service.produce('strict', [{ value: bytes('x') }], -1))).toBe('NOT_ENOUGH_REPLICAS');
    expect(
      await codeOf(
        service.produceBatches('strict', 0, encodeBatch([{ value: bytes('x'), timestamp: 1 }]), -1),
      ),
    ).toBe('NOT_ENOUGH_REPLICAS');
    expect(service.describeTopic('strict').partitions[0]!.logEndOffset).toBe(0);
    // acks=1 does not wait for replicas and is accepted.
    expect(await service.produce('strict', [{ value: bytes('x') }], 1)).toEqual([
      { partition: 0, offset: 0 },
    ]);
  });

  it('refuses a replication factor above one, unknown configs and bad names', async () => {
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock());
    expect(await codeOf(service.createTopic({ name: 'rf', replicationFactor: 3 }))).toBe(
      'INVALID_REPLICATION_FACTOR',
    );
    expect(await codeOf(service.createTopic({ name: 'cfg', configs: { 'no.such': 1 } }))).toBe(
      'INVALID_CONFIG',
    );
    expect(await codeOf(service.createTopic({ name: '__internal' }))).toBe('INVALID_TOPIC_EXCEPTION');
    expect(await codeOf(service.createTopic({ name: 'a/b' }))).toBe('INVALID_TOPIC_EXCEPTION');
    expect(await codeOf(service.createTopic({ name: '..' }))).toBe('INVALID_TOPIC_EXCEPTION');
    expect(service.listTopics()).toEqual([]);
  });

  it('checks every pre-built batch and appends none when one is corrupt', async () => {
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock());
    await service.createTopic({ name: 'batches', partitions: 1 });
    const good = encodeBatch([
      { value: bytes('g1'), timestamp: 1 },
      { value: bytes('g2'), timestamp: 1 },
    ]);
    const bad = encodeBatch([{ value: bytes('b1'), timestamp: 1 }]);
    bad[bad.length - 2]! ^= 0x01;
    expect(await codeOf(service.produceBatches('batches', 0, Buffer.concat([good, bad]), 1))).toBe(
      'CORRUPT_MESSAGE',
    );
    expect(service.describeTopic('batches').partitions[0]!.logEndOffset).toBe(0);
    const result = await service.produceBatches('batches', 0, Buffer.concat([good, good]), 1);
    expect(result).toEqual({ partition: 0, baseOffset: 0, lastOffset: 3, batchCount: 2 });
  });

  it('refuses a record larger than max.message.bytes', async () => {
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock(), {
      defaultConfigs: { 'max.message.bytes': 2048 },
    });
    await service.createTopic({ name: 'small', partitions: 1 });
    expect(await codeOf(service.produce('small', [{ value: Buffer.alloc(4096) }], 1))).toBe(
      'RECORD_TOO_LARGE',
    );
    const many = Array.from({ length: 40 }, () => ({ value: Buffer.alloc(100) }));
    expect(await codeOf(service.produce('small', many, 1))).toBe('MESSAGE_TOO_LARGE');
    expect(service.describeTopic('small').partitions[0]!.logEndOffset).toBe(0);
  });
});

describe('fetch and long-poll', () => {
  it('waits for an append, then answers with it', async () => {
    const clock = new ManualClock();
    const { service } = await startService(new SimulatedFileSystem(), clock);
    await service.createTopic({ name: 'poll', partitions: 1 });
    let answered = false;
    const fetching = service
      .fetch('poll', 0, { offset: 0, maxBytes: 1 << 20, maxWaitMs: 5_000, minBytes: 1 })
      .then((r) => {
        answered = true;
        return r;
      });
    await new Promise((r) => setImmediate(r));
    expect(answered).toBe(false);
    await service.produce('poll', [{ value: bytes('hello') }], 1);
    const result = await fetching;
    expect(result.batchCount).toBe(1);
    expect(values(result.data)).toEqual(['hello']);
    expect(result.nextOffset).toBe(1);
    expect(result.highWatermark).toBe(1);
  });

  it('answers empty when the wait times out on the clock, and when the request is aborted', async () => {
    const clock = new ManualClock();
    const { service } = await startService(new SimulatedFileSystem(), clock);
    await service.createTopic({ name: 'idle', partitions: 1 });
    const timing = service.fetch('idle', 0, {
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
    const aborting = service.fetch('idle', 0, {
      offset: 0,
      maxBytes: 1024,
      maxWaitMs: 30_000,
      minBytes: 1,
      signal: controller.signal,
    });
    await new Promise((r) => setImmediate(r));
    controller.abort();
    expect((await aborting).batchCount).toBe(0);
    // Both waiters are gone: a bounded service with room for one accepts a new one.
  });

  it('bounds the number of waiting fetches', async () => {
    const clock = new ManualClock();
    const { service } = await startService(new SimulatedFileSystem(), clock, { fetchWaitersMax: 1 });
    await service.createTopic({ name: 'bounded', partitions: 1 });
    const first = service.fetch('bounded', 0, { offset: 0, maxBytes: 1024, maxWaitMs: 1_000, minBytes: 1 });
    await new Promise((r) => setImmediate(r));
    expect(
      await codeOf(service.fetch('bounded', 0, { offset: 0, maxBytes: 1024, maxWaitMs: 1_000, minBytes: 1 })),
    ).toBe('LIMIT_EXCEEDED');
    clock.advance(1_000);
    await first;
    // The slot is free again once the first waiter has finished.
    const again = service.fetch('bounded', 0, { offset: 0, maxBytes: 1024, maxWaitMs: 1_000, minBytes: 1 });
    await new Promise((r) => setImmediate(r));
    clock.advance(1_000);
    expect((await again).batchCount).toBe(0);
  });

  it('refuses offsets outside the log', async () => {
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock());
    await service.createTopic({ name: 'range', partitions: 1 });
    await service.produce('range', [{ value: bytes('a') }], 1);
    expect(
      await codeOf(service.fetch('range', 0, { offset: 5, maxBytes: 1024, maxWaitMs: 0, minBytes: 1 })),
    ).toBe('OFFSET_OUT_OF_RANGE');
    expect(
      await codeOf(service.fetch('range', 3, { offset: 0, maxBytes: 1024, maxWaitMs: 0, minBytes: 1 })),
    ).toBe('UNKNOWN_TOPIC_OR_PARTITION');
  });

  it('finds offsets by timestamp', async () => {
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock());
    await service.createTopic({ name: 'times', partitions: 1 });
    await service.produce(
      'times',
      [
        { value: bytes('a'), timestamp: 1_000 },
        { value: bytes('b'), timestamp: 2_000 },
      ],
      1,
    );
    await service.produce('times', [{ value: bytes('c'), timestamp: 3_000 }], 1);
    expect((await service.offsets('times', 0, 1_500)).offset).toBe(1);
    expect((await service.offsets('times', 0, 2_500)).offset).toBe(2);
    expect((await service.offsets('times', 0, 9_000)).offset).toBe(null);
    expect((await service.offsets('times', 0, -1)).offset).toBe(3);
    expect((await service.offsets('times', 0, -2)).offset).toBe(0);
    const plain = await service.offsets('times', 0);
    expect(plain).toEqual({ partition: 0, earliest: 0, latest: 3, highWatermark: 3 });
  });
});

describe('topic admin and the registry', () => {
  it('keeps the cluster id and topics across a restart', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock();
    const first = await startService(fs, clock);
    await first.service.createTopic({ name: 'kept', partitions: 2, configs: { 'retention.ms': 60_000 } });
    await first.service.produce('kept', [{ value: bytes('v'), partition: 1 }], 1);
    const clusterId = first.service.cluster().clusterId;
    await first.close();
    const second = await startService(fs, clock);
    expect(second.service.cluster().clusterId).toBe(clusterId);
    const kept = second.service.describeTopic('kept');
    expect(kept.configs).toEqual({ 'retention.ms': 60_000 });
    expect(kept.partitions.map((p) => p.logEndOffset)).toEqual([0, 1]);
    const stored = JSON.parse((await fs.readFile(`${DATA_DIR}/__cluster/topics.json`))!.toString());
    expect(stored.topics.map((t: { name: string }) => t.name)).toEqual(['kept']);
  });

  it('lets only one of two concurrent creates of a name succeed', async () => {
    const { service } = await startService(new SimulatedFileSystem(), new ManualClock());
    const results = await Promise.allSettled([
      service.createTopic({ name: 'twice', partitions: 2 }),
      service.createTopic({ name: 'twice', partitions: 3 }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
    expect(((results[1] as PromiseRejectedResult).reason as SluiceError).code).toBe('TOPIC_ALREADY_EXISTS');
    expect(service.describeTopic('twice').partitions).toHaveLength(2);
  });

  it('removes partition data no topic owns at start, so a re-created topic starts empty', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock();
    const first = await startService(fs, clock);
    await first.service.createTopic({ name: 'ghost', partitions: 1 });
    await first.service.produce('ghost', [{ value: bytes('old') }], 1);
    // A crash after the definition was removed but before the data was deleted.
    await first.registry.remove('ghost');
    await first.close();
    const second = await startService(fs, clock);
    expect(second.logs.get('ghost', 0)).toBeUndefined();
    await second.service.createTopic({ name: 'ghost', partitions: 1 });
    expect(second.service.describeTopic('ghost').partitions[0]!.logEndOffset).toBe(0);
  });

  it('grows partitions, alters and resets configs, deletes topics with their data', async () => {
    const { service, logs } = await startService(new SimulatedFileSystem(), new ManualClock());
    await service.createTopic({ name: 'admin', partitions: 1 });
    expect((await service.addPartitions('admin', 3)).partitions).toHaveLength(3);
    expect(await codeOf(service.addPartitions('admin', 2))).toBe('INVALID_PARTITIONS');
    expect(
      (await service.alterConfigs('admin', { 'retention.ms': 1000, 'cleanup.policy': 'compact' })).configs,
    ).toEqual({
      'retention.ms': 1000,
      'cleanup.policy': 'compact',
    });
    expect(logs.get('admin', 2)!.config.cleanupPolicy).toContain('compact');
    expect((await service.alterConfigs('admin', { 'cleanup.policy': null })).configs).toEqual({
      'retention.ms': 1000,
    });
    expect(await codeOf(service.alterConfigs('admin', { 'retention.ms': 'soon' }))).toBe('INVALID_CONFIG');
    expect(await service.deleteTopic('admin')).toEqual({ name: 'admin', deleted: true });
    expect(logs.get('admin', 0)).toBeUndefined();
    expect(await codeOf(Promise.resolve().then(() => service.describeTopic('admin')))).toBe(
      'UNKNOWN_TOPIC_OR_PARTITION',
    );
  });
});

describe('deleting a topic under a waiting fetch', () => {
  it('answers the waiting fetch at once with UNKNOWN_TOPIC_OR_PARTITION, leaving other waiters alone', async () => {
    const clock = new ManualClock();
    const { service } = await startService(new SimulatedFileSystem(), clock);
    await service.createTopic({ name: 'doomed', partitions: 1 });
    await service.createTopic({ name: 'other', partitions: 1 });
    const doomed = codeOf(
      service.fetch('doomed', 0, { offset: 0, maxBytes: 1024, maxWaitMs: 30_000, minBytes: 1 }),
    );
    const other = service.fetch('other', 0, { offset: 0, maxBytes: 1024, maxWaitMs: 30_000, minBytes: 1 });
    await new Promise((r) => setImmediate(r));
    expect(service.waitingFetches).toBe(2);
    await service.deleteTopic('doomed');
    expect(await doomed).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    expect(service.waitingFetches).toBe(1);
    // A config change during a wait is not a deletion.
    await service.alterConfigs('other', { 'retention.ms': 1000 });
    await service.produce('other', [{ value: bytes('still here') }], 1);
    expect(values((await other).data)).toEqual(['still here']);
  });
});
