import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { LIMITS } from '../../src/common/limits.js';
import { type Random, SeededRandom } from '../../src/common/random.js';
import { Controller, PRODUCER_ID_BLOCK_SIZE, type ShutdownKind } from '../../src/metadata/controller.js';
import { MetadataImage, replayAll } from '../../src/metadata/image.js';
import { encodeRecord, type MetadataRecord, type PartitionChangeRecord } from '../../src/metadata/records.js';

/**
 * The controller's rules one at a time, each at its edge (the tests mutation testing asked for,
 * stryker/metadata.config.mjs): the session timeout and who is fenced when, producer-id blocks,
 * the replication factor against the live brokers, partition counts, preferred leaders and
 * reassignment completions in bounded passes, the partition epoch fencing of alterPartition, and
 * the shape of the partition changes it writes (only the fields that change).
 */
const SESSION_MS = 9_000;
const ID = 'AAAAAAAAAAAAAAAAAAAAAQ';

function setup(brokerIds: number[], options: { level?: number; random?: Random } = {}) {
  const clock = new ManualClock();
  const controller = new Controller(
    { sessionTimeoutMs: SESSION_MS },
    { clock, random: options.random ?? new SeededRandom(7) },
  );
  let image = MetadataImage.EMPTY;
  const written: MetadataRecord[][] = [];
  const apply = (records: MetadataRecord[]) => {
    const delta = replayAll(
      image,
      records.map((record, i) => ({ record, offset: image.lastOffset + 1 + i })),
    );
    expect(delta.ignored).toEqual([]);
    // Every record the controller writes passes the codec's checks (what a node would append).
    for (const record of records) encodeRecord(record);
    written.push(records);
    image = delta.after;
    return records;
  };
  apply([
    { type: 'clusterId', version: 0, clusterId: 'cluster-a' },
    { type: 'featureLevel', version: 0, name: 'metadata.version', level: options.level ?? 3 },
  ]);
  const register = (brokerId: number, n = 0, shutdown?: ShutdownKind) =>
    apply(
      controller.registerBroker(image, {
        brokerId,
        incarnationId: `incarnation-${brokerId}-${n}`,
        endpoints: [{ name: 'public', host: '127.0.0.1', port: 9000 + brokerId }],
        rack: null,
        ...(shutdown ? { shutdown } : {}),
      }),
    );
  const beat = (brokerId: number, caughtUp = true) =>
    apply(
      controller.heartbeat(image, { brokerId, brokerEpoch: image.broker(brokerId)!.brokerEpoch, caughtUp }),
    );
  for (const id of brokerIds) {
    register(id);
    beat(id);
  }
  /** Topic `name`, one partition per replica list given, every replica in sync, the first leading. */
  const topic = (
    name: string,
    topicId: string,
    partitions: number[][],
    configs: Record<string, string> = {},
  ) => {
    apply([
      { type: 'topic', version: 0, name, topicId },
      ...partitions.map(
        (replicas, partition): MetadataRecord => ({
          type: 'partition',
          version: 0,
          topicId,
          partition,
          replicas,
          isr: replicas,
          leader: replicas[0]!,
          leaderEpoch: 0,
          partitionEpoch: 0,
        }),
      ),
      ...Object.entries(configs).map(
        ([config, value]): MetadataRecord => ({
          type: 'config',
          version: 0,
          resource: { type: 'topic', name },
          name: config,
          value,
        }),
      ),
    ]);
  };
  const p = (topicId = ID, partition = 0) => image.partition(topicId, partition)!;
  return { clock, controller, apply, image: () => image, written, register, beat, topic, p };
}

function code(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

describe('controller: options', () => {
  it('the session timeout is a positive integer of milliseconds', () => {
    const deps = { clock: new ManualClock(), random: new SeededRandom(1) };
    for (const bad of [0, -1, 1.5, Number.NaN])
      expect(code(() => new Controller({ sessionTimeoutMs: bad }, deps))).toBe('INVALID_CONFIG');
    expect(() => new Controller({ sessionTimeoutMs: 1 }, deps)).not.toThrow();
  });
});

describe('controller: broker sessions at their edge', () => {
  it('a broker silent for exactly the session timeout is not fenced; one millisecond more and it is', () => {
    const c = setup([1, 2]);
    c.clock.advance(SESSION_MS);
    c.beat(2);
    expect(c.controller.fenceExpired(c.image())).toEqual([]);
    c.clock.advance(1);
    const fenced = c.apply(c.controller.fenceExpired(c.image()));
    expect(fenced).toEqual([
      { type: 'fenceBroker', version: 0, brokerId: 1, brokerEpoch: c.image().broker(1)!.brokerEpoch },
    ]);
    expect(c.image().broker(1)!.fenced).toBe(true);
    // A fenced broker is not fenced again.
    c.clock.advance(SESSION_MS + 1);
    c.beat(2);
    expect(c.controller.fenceExpired(c.image())).toEqual([]);
  });

  it('brokers whose sessions expired together are fenced in id order, each losing its leaderships', () => {
    const c = setup([3, 1, 2]);
    c.topic('t', ID, [
      [3, 2],
      [1, 2],
    ]);
    c.clock.advance(SESSION_MS + 1);
    c.beat(2);
    const records = c.apply(c.controller.fenceExpired(c.image()));
    expect(
      records.filter((r) => r.type === 'fenceBroker').map((r) => (r as { brokerId: number }).brokerId),
    ).toEqual([1, 3]);
    expect(c.p(ID, 0).leader).toBe(2);
    expect(c.p(ID, 1).leader).toBe(2);
  });

  it('a new controller gives a broker it never heard from a full session from its first look', () => {
    const c = setup([1]);
    const fresh = new Controller(
      { sessionTimeoutMs: SESSION_MS },
      { clock: c.clock, random: new SeededRandom(1) },
    );
    c.clock.advance(5 * SESSION_MS);
    expect(fresh.fenceExpired(c.image())).toEqual([]);
    c.clock.advance(SESSION_MS);
    expect(fresh.fenceExpired(c.image())).toEqual([]);
    c.clock.advance(1);
    expect(fresh.fenceExpired(c.image()).map((r) => r.type)).toEqual(['fenceBroker']);
  });

  it('the session starts at registration: a registered broker that never heartbeats expires a session later', () => {
    const c = setup([]);
    c.clock.advance(1000);
    c.register(1);
    c.clock.advance(SESSION_MS);
    // Fenced already (never unfenced): nothing to fence, whatever its session says.
    expect(c.controller.fenceExpired(c.image())).toEqual([]);
    c.beat(1);
    expect(c.image().broker(1)!.fenced).toBe(false);
    c.clock.advance(SESSION_MS);
    expect(c.controller.fenceExpired(c.image())).toEqual([]);
  });

  it('a heartbeat refreshes the session but writes nothing for an unfenced broker or one not caught up', () => {
    const c = setup([1]);
    expect(
      c.controller.heartbeat(c.image(), {
        brokerId: 1,
        brokerEpoch: c.image().broker(1)!.brokerEpoch,
        caughtUp: true,
      }),
    ).toEqual([]);
    c.register(2);
    expect(
      c.controller.heartbeat(c.image(), {
        brokerId: 2,
        brokerEpoch: c.image().broker(2)!.brokerEpoch,
        caughtUp: false,
      }),
    ).toEqual([]);
    expect(c.image().broker(2)!.fenced).toBe(true);
    expect(
      code(() => c.controller.heartbeat(c.image(), { brokerId: 9, brokerEpoch: 0, caughtUp: true })),
    ).toBe('INVALID_REQUEST');
    expect(
      code(() => c.controller.heartbeat(c.image(), { brokerId: 2, brokerEpoch: 0, caughtUp: true })),
    ).toBe('INVALID_REQUEST');
    c.clock.advance(SESSION_MS);
    c.controller.heartbeat(c.image(), {
      brokerId: 1,
      brokerEpoch: c.image().broker(1)!.brokerEpoch,
      caughtUp: true,
    });
    c.clock.advance(SESSION_MS);
    expect(c.controller.fenceExpired(c.image())).toEqual([]);
  });

  it('a controlled shutdown of a fenced or unknown broker, or at a stale epoch, writes nothing', () => {
    const c = setup([1, 2]);
    const epoch = c.image().broker(1)!.brokerEpoch;
    expect(c.controller.controlledShutdown(c.image(), 1, epoch + 1)).toEqual([]);
    expect(c.controller.controlledShutdown(c.image(), 7, epoch)).toEqual([]);
    c.apply(c.controller.controlledShutdown(c.image(), 1, epoch));
    expect(c.image().broker(1)!.fenced).toBe(true);
    expect(c.controller.controlledShutdown(c.image(), 1, epoch)).toEqual([]);
  });
});

describe('controller: producer ids', () => {
  it('hands out blocks of a thousand that never overlap, only to the current incarnation', () => {
    const c = setup([1, 2]);
    const first = c.apply(c.controller.allocateProducerIds(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    expect(first).toEqual([
      { type: 'producerIdBlock', version: 0, brokerId: 1, firstProducerId: 0, size: PRODUCER_ID_BLOCK_SIZE },
    ]);
    expect(PRODUCER_ID_BLOCK_SIZE).toBe(1000);
    const second = c.apply(c.controller.allocateProducerIds(c.image(), 2, c.image().broker(2)!.brokerEpoch));
    expect(second).toMatchObject([{ brokerId: 2, firstProducerId: 1000 }]);
    expect(c.image().nextProducerId).toBe(2000);
    expect(
      code(() => c.controller.allocateProducerIds(c.image(), 1, c.image().broker(1)!.brokerEpoch - 1)),
    ).toBe('INVALID_REQUEST');
    expect(code(() => c.controller.allocateProducerIds(c.image(), 5, 0))).toBe('INVALID_REQUEST');
  });
});

describe('controller: topics against the live brokers', () => {
  it('a replication factor equal to the live brokers is placed; fenced brokers do not count', () => {
    const c = setup([1, 2, 3]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 'a', partitions: 1, replicationFactor: 3, configs: {} }),
    );
    expect(c.image().topic('a')!.partitions.get(0)!.replicas).toHaveLength(3);
    c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    expect(
      code(() =>
        c.controller.createTopic(c.image(), { name: 'b', partitions: 1, replicationFactor: 3, configs: {} }),
      ),
    ).toBe('INVALID_REPLICATION_FACTOR');
    c.apply(
      c.controller.createTopic(c.image(), { name: 'b', partitions: 4, replicationFactor: 2, configs: {} }),
    );
    for (const p of c.image().topic('b')!.partitions.values()) expect(p.replicas).not.toContain(3);
    // A topic of replication factor 3 cannot grow with two live brokers.
    expect(code(() => c.controller.addPartitions(c.image(), 'a', 2))).toBe('INVALID_REPLICATION_FACTOR');
  });

  it('writes a new topic’s configs in name order, after its partitions', () => {
    const c = setup([1]);
    const records = c.controller.createTopic(c.image(), {
      name: 't',
      partitions: 2,
      replicationFactor: 1,
      configs: { 'segment.bytes': '4096', 'cleanup.policy': 'compact', 'retention.ms': '5' },
    });
    expect(records.map((r) => r.type)).toEqual([
      'topic',
      'partition',
      'partition',
      'config',
      'config',
      'config',
    ]);
    expect(records.filter((r) => r.type === 'config').map((r) => (r as { name: string }).name)).toEqual([
      'cleanup.policy',
      'retention.ms',
      'segment.bytes',
    ]);
    expect(records[1]).toMatchObject({
      partition: 0,
      leaderEpoch: 0,
      partitionEpoch: 0,
      isr: [1],
      leader: 1,
    });
    const altered = c.controller.alterConfigs(c.apply(records) && c.image(), 't', {
      'retention.ms': '9',
      'cleanup.policy': null,
    });
    expect(altered.map((r) => (r as { name: string }).name)).toEqual(['cleanup.policy', 'retention.ms']);
  });

  it('grows a topic to at most the partition limit, never by a fraction, with the replication factor of partition 0', () => {
    const c = setup([1, 2]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 2, configs: {} }),
    );
    for (const bad of [1, 0, 1.5, LIMITS.partitionsMax + 1])
      expect(
        code(() => c.controller.addPartitions(c.image(), 't', bad)),
        String(bad),
      ).toBe('INVALID_PARTITIONS');
    const grown = c.apply(c.controller.addPartitions(c.image(), 't', 3));
    expect(grown.map((r) => (r as { partition: number }).partition)).toEqual([1, 2]);
    for (const r of grown) expect((r as unknown as { replicas: number[] }).replicas).toHaveLength(2);
    expect(code(() => c.controller.addPartitions(c.image(), 'nope', 2))).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    expect(code(() => c.controller.deleteTopic(c.image(), 'nope'))).toBe('UNKNOWN_TOPIC_OR_PARTITION');
  });

  it('never gives a topic the all-zero id or the id of a topic that exists', () => {
    // A Random that draws zeros for the first 16 bytes, then the same 16 bytes twice, then others.
    const draws = [
      ...new Array(16).fill(0),
      ...new Array(16).fill(5),
      ...new Array(16).fill(5),
      ...new Array(16).fill(6),
    ];
    let at = 0;
    const random = new (class extends SeededRandom {
      override int(bound: number): number {
        return at < draws.length ? draws[at++]! % bound : super.int(bound);
      }
    })(1);
    const c = setup([1], { random });
    c.apply(
      c.controller.createTopic(c.image(), { name: 'a', partitions: 1, replicationFactor: 1, configs: {} }),
    );
    c.apply(
      c.controller.createTopic(c.image(), { name: 'b', partitions: 1, replicationFactor: 1, configs: {} }),
    );
    const a = c.image().topic('a')!.topicId;
    const b = c.image().topic('b')!.topicId;
    expect(Buffer.from(a, 'base64url')).toEqual(Buffer.alloc(16, 5));
    expect(Buffer.from(b, 'base64url')).toEqual(Buffer.alloc(16, 6));
  });
});

describe('controller: bounded passes', () => {
  it('moves at most `max` leaderships back to their preferred replicas in one pass', () => {
    const c = setup([1, 2]);
    c.topic('t', ID, [
      [1, 2],
      [1, 2],
      [1, 2],
    ]);
    c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    c.register(1, 1);
    c.beat(1);
    // Back in sync (the leader asks for it), broker 1 is preferred again everywhere.
    for (let partition = 0; partition < 3; partition++) {
      const p = c.p(ID, partition);
      c.apply(
        c.controller.alterPartition(c.image(), {
          brokerId: 2,
          brokerEpoch: c.image().broker(2)!.brokerEpoch,
          topicId: ID,
          partition,
          leaderEpoch: p.leaderEpoch,
          partitionEpoch: p.partitionEpoch,
          isr: [1, 2],
        }),
      );
    }
    expect(c.controller.preferredLeaders(c.image(), 2)).toHaveLength(2);
    expect(c.controller.preferredLeaders(c.image(), 0)).toEqual([]);
    c.apply(c.controller.preferredLeaders(c.image()));
    for (let partition = 0; partition < 3; partition++) expect(c.p(ID, partition).leader).toBe(1);
  });

  it('gives no leadership back to a preferred replica that is fenced, or to a leaderless partition', () => {
    const c = setup([1, 2]);
    c.topic('t', ID, [[1, 2]]);
    const p = c.p();
    c.apply([{ type: 'partitionChange', version: 0, topicId: ID, partition: 0, leader: 2 }]);
    expect(c.p().leaderEpoch).toBe(p.leaderEpoch + 1);
    c.apply([
      { type: 'fenceBroker', version: 0, brokerId: 1, brokerEpoch: c.image().broker(1)!.brokerEpoch },
    ]);
    expect(c.p().isr).toContain(1);
    expect(c.controller.preferredLeaders(c.image())).toEqual([]);
    c.apply([{ type: 'partitionChange', version: 0, topicId: ID, partition: 0, leader: -1 }]);
    c.apply([
      { type: 'unfenceBroker', version: 0, brokerId: 1, brokerEpoch: c.image().broker(1)!.brokerEpoch },
    ]);
    expect(c.controller.preferredLeaders(c.image())).toEqual([]);
  });

  it('completes at most `max` reassignments in one pass', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [
      [1, 2],
      [1, 2],
    ]);
    c.apply(
      c.controller.reassignPartitions(c.image(), [
        { topic: 't', partition: 0, replicas: [1, 3] },
        { topic: 't', partition: 1, replicas: [1, 3] },
      ]),
    );
    // The adding replica joins both in-sync sets as written by hand, without the completion.
    for (const partition of [0, 1])
      c.apply([{ type: 'partitionChange', version: 0, topicId: ID, partition, isr: [1, 2, 3] }]);
    expect(c.controller.completeReassignments(c.image(), 1)).toHaveLength(1);
    expect(c.controller.completeReassignments(c.image(), 0)).toEqual([]);
    c.apply(c.controller.completeReassignments(c.image()));
    expect(c.p(ID, 0).replicas).toEqual([1, 3]);
    expect(c.p(ID, 1).replicas).toEqual([1, 3]);
    expect(c.controller.completeReassignments(c.image())).toEqual([]);
  });
});

describe('controller: alterPartition, fenced by broker, leader and partition epochs', () => {
  const ask = (
    c: ReturnType<typeof setup>,
    fields: Partial<Parameters<Controller['alterPartition']>[1]> = {},
  ) => {
    const p = c.p();
    return c.controller.alterPartition(c.image(), {
      brokerId: p.leader,
      brokerEpoch: c.image().broker(p.leader)!.brokerEpoch,
      topicId: ID,
      partition: 0,
      leaderEpoch: p.leaderEpoch,
      partitionEpoch: p.partitionEpoch,
      isr: [...p.isr],
      ...fields,
    });
  };

  it('refuses an unknown partition, a stale or fenced broker, a non-leader, and stale epochs, each with its code', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    expect(code(() => ask(c, { partition: 1 }))).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    expect(code(() => ask(c, { brokerEpoch: 0 }))).toBe('INVALID_REQUEST');
    expect(code(() => ask(c, { brokerId: 2, brokerEpoch: c.image().broker(2)!.brokerEpoch }))).toBe(
      'FENCED_LEADER_EPOCH',
    );
    expect(code(() => ask(c, { leaderEpoch: 1 }))).toBe('FENCED_LEADER_EPOCH');
    expect(code(() => ask(c, { partitionEpoch: 1 }))).toBe('INVALID_UPDATE_VERSION');
    expect(code(() => ask(c, { isr: [2, 3] }))).toBe('INVALID_REQUEST');
    expect(code(() => ask(c, { isr: [1, 4] }))).toBe('INVALID_REQUEST');
    c.apply(ask(c, { isr: [1, 2] }));
    expect(code(() => ask(c, { partitionEpoch: 0 }))).toBe('INVALID_UPDATE_VERSION');
    // A leader fenced meanwhile is refused even at the current epochs.
    const epoch = c.image().broker(1)!.brokerEpoch;
    c.apply([{ type: 'fenceBroker', version: 0, brokerId: 1, brokerEpoch: epoch }]);
    expect(
      code(() =>
        c.controller.alterPartition(c.image(), {
          brokerId: 1,
          brokerEpoch: epoch,
          topicId: ID,
          partition: 0,
          leaderEpoch: c.p().leaderEpoch,
          partitionEpoch: c.p().partitionEpoch,
          isr: [1],
        }),
      ),
    ).toBe('INVALID_REQUEST');
  });

  it('writes the set without repeats, in replica order, and lets only unfenced brokers join', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    c.apply(ask(c, { isr: [1] }));
    const change = ask(c, { isr: [3, 1, 3, 2] })[0] as PartitionChangeRecord;
    expect(change.isr).toEqual([1, 2, 3]);
    c.apply([
      { type: 'fenceBroker', version: 0, brokerId: 3, brokerEpoch: c.image().broker(3)!.brokerEpoch },
    ]);
    expect(code(() => ask(c, { isr: [1, 3] }))).toBe('INVALID_REQUEST');
    c.apply(ask(c, { isr: [1, 2] }));
    expect(c.p().isr).toEqual([1, 2]);
    expect(c.p().partitionEpoch).toBe(2);
  });
});

describe('controller: the partition changes it writes hold only what changes', () => {
  it('a follower that leaves: the in-sync set only, version 0, no leader field', () => {
    const c = setup([1, 2, 3], { level: 3 });
    c.topic('t', ID, [[1, 2, 3]]);
    const records = c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    expect(records[1]).toEqual({
      type: 'partitionChange',
      version: 0,
      topicId: ID,
      partition: 0,
      isr: [1, 2],
    });
  });

  it('a leader that leaves: the new leader and the set, and the leader epoch moves', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    const records = c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    expect(records[1]).toEqual({
      type: 'partitionChange',
      version: 0,
      topicId: ID,
      partition: 0,
      leader: 2,
      isr: [2, 3],
    });
    expect(c.p().leaderEpoch).toBe(1);
  });

  it('a leader that leaves a set it was alone in keeps its place, leaderless: the leader field only', () => {
    const c = setup([1, 2]);
    c.topic('t', ID, [[1, 2]]);
    c.apply(ask1(c, [1]));
    const records = c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    expect(records[1]).toEqual({
      type: 'partitionChange',
      version: 0,
      topicId: ID,
      partition: 0,
      leader: -1,
    });
    expect(c.p().isr).toEqual([1]);
  });

  it('below min.insync.replicas a leaving replica becomes eligible: a version 2 change with the eligible set', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]], { 'min.insync.replicas': '3' });
    const records = c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    expect(records[1]).toEqual({
      type: 'partitionChange',
      version: 2,
      topicId: ID,
      partition: 0,
      isr: [1, 2],
      elr: [3],
    });
    expect(c.p().elr).toEqual([3]);
  });

  it('the same below metadata.version 3: no eligible set, version 0', () => {
    const c = setup([1, 2, 3], { level: 2 });
    c.topic('t', ID, [[1, 2, 3]], { 'min.insync.replicas': '3' });
    const records = c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    expect(records[1]).toEqual({
      type: 'partitionChange',
      version: 0,
      topicId: ID,
      partition: 0,
      isr: [1, 2],
    });
  });
});

/** The leader of partition 0 of ID asks for `isr`. */
function ask1(c: ReturnType<typeof setup>, isr: number[]) {
  const p = c.p();
  return c.controller.alterPartition(c.image(), {
    brokerId: p.leader,
    brokerEpoch: c.image().broker(p.leader)!.brokerEpoch,
    topicId: ID,
    partition: 0,
    leaderEpoch: p.leaderEpoch,
    partitionEpoch: p.partitionEpoch,
    isr,
  });
}

describe('controller: offline logs', () => {
  it('a partition named twice in one report changes once', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    const records = c.controller.offlineReplicas(c.image(), {
      brokerId: 2,
      brokerEpoch: c.image().broker(2)!.brokerEpoch,
      partitions: [
        { topicId: ID, partition: 0 },
        { topicId: ID, partition: 0 },
      ],
    });
    expect(records).toEqual([
      { type: 'partitionChange', version: 0, topicId: ID, partition: 0, isr: [1, 3] },
    ]);
  });
});

describe('controller: what a refusal says (problem details name the topic, partition or broker)', () => {
  const refusal = (run: () => unknown) => {
    try {
      run();
    } catch (error) {
      const e = error as { code: string; message: string; details: Record<string, unknown> };
      return { code: e.code, message: e.message, details: e.details };
    }
    throw new Error('expected a refusal');
  };

  it('topics: exists, too few live brokers, bad partition counts, unknown', () => {
    const c = setup([1, 2]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 2, configs: {} }),
    );
    expect(
      refusal(() =>
        c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 1, configs: {} }),
      ),
    ).toEqual({
      code: 'TOPIC_ALREADY_EXISTS',
      message: 'topic t already exists',
      details: { topic: 't' },
    });
    expect(
      refusal(() =>
        c.controller.createTopic(c.image(), { name: 'u', partitions: 1, replicationFactor: 3, configs: {} }),
      ),
    ).toEqual({
      code: 'INVALID_REPLICATION_FACTOR',
      message: 'replication factor 3 is larger than the 2 live broker(s)',
      details: { availableBrokers: 2 },
    });
    expect(refusal(() => c.controller.addPartitions(c.image(), 't', 1))).toEqual({
      code: 'INVALID_PARTITIONS',
      message: `topic t has 1 partitions; the new count must be larger, at most ${LIMITS.partitionsMax}`,
      details: { current: 1 },
    });
    c.apply(c.controller.controlledShutdown(c.image(), 2, c.image().broker(2)!.brokerEpoch));
    expect(refusal(() => c.controller.addPartitions(c.image(), 't', 2))).toEqual({
      code: 'INVALID_REPLICATION_FACTOR',
      message: 'topic t has replication factor 2; 1 broker(s) are live',
      details: { availableBrokers: 1 },
    });
    expect(refusal(() => c.controller.alterConfigs(c.image(), 'v', {}))).toEqual({
      code: 'UNKNOWN_TOPIC_OR_PARTITION',
      message: 'topic v does not exist',
      details: { topic: 'v' },
    });
  });

  it('brokers: a stale epoch in a heartbeat, a producer-id request or an offline report', () => {
    const c = setup([1]);
    const stale = {
      code: 'INVALID_REQUEST',
      message: 'broker 1 at epoch 99 is not registered (register again)',
      details: { brokerId: 1, brokerEpoch: 99 },
    };
    expect(
      refusal(() => c.controller.heartbeat(c.image(), { brokerId: 1, brokerEpoch: 99, caughtUp: true })),
    ).toEqual(stale);
    expect(refusal(() => c.controller.allocateProducerIds(c.image(), 1, 99))).toEqual(stale);
    expect(
      refusal(() =>
        c.controller.offlineReplicas(c.image(), { brokerId: 1, brokerEpoch: 99, partitions: [] }),
      ),
    ).toEqual(stale);
  });

  it('alterPartition: each refusal says why', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    const base = {
      brokerId: 1,
      brokerEpoch: c.image().broker(1)!.brokerEpoch,
      topicId: ID,
      partition: 0,
      leaderEpoch: 0,
      partitionEpoch: 0,
      isr: [1, 2],
    };
    const message = (fields: Partial<typeof base>) =>
      refusal(() => c.controller.alterPartition(c.image(), { ...base, ...fields })).message;
    expect(message({ partition: 3 })).toBe(`no partition ${ID}/3`);
    expect(message({ brokerEpoch: 99 })).toBe('broker 1 at epoch 99 is not a current, unfenced broker');
    expect(message({ leaderEpoch: 4 })).toBe(
      'broker 1 at leader epoch 4 does not lead the partition (leader 1, epoch 0)',
    );
    expect(message({ partitionEpoch: 4 })).toBe('partition epoch 4 is stale; the partition is at 0');
    expect(message({ isr: [2] })).toBe('the in-sync set must hold the leader and only replicas');
    expect(message({ isr: [1, 5] })).toBe('the in-sync set must hold the leader and only replicas');
    c.apply(c.controller.alterPartition(c.image(), { ...base, isr: [1] }));
    c.apply([
      { type: 'fenceBroker', version: 0, brokerId: 3, brokerEpoch: c.image().broker(3)!.brokerEpoch },
    ]);
    expect(message({ partitionEpoch: 1, isr: [1, 3] })).toBe(
      'broker 3 is fenced: it cannot join the in-sync set',
    );
  });

  it('reassignments: a partition named twice, an unknown partition, a stale epoch, one in progress', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2]]);
    const reassign = (requests: Parameters<Controller['reassignPartitions']>[1]) =>
      refusal(() => c.controller.reassignPartitions(c.image(), requests));
    expect(
      reassign([
        { topic: 't', partition: 0, replicas: [1, 3] },
        { topic: 't', partition: 0, replicas: [2, 3] },
      ]),
    ).toEqual({
      code: 'INVALID_REQUEST',
      message: 't/0 is named twice in one reassignment',
      details: { topic: 't', partition: 0 },
    });
    expect(reassign([{ topic: 't', partition: 4, replicas: [1] }])).toEqual({
      code: 'UNKNOWN_TOPIC_OR_PARTITION',
      message: 'topic t has no partition 4',
      details: { topic: 't', partition: 4 },
    });
    expect(reassign([{ topic: 't', partition: 0, replicas: [1], partitionEpoch: 3 }])).toEqual({
      code: 'INVALID_UPDATE_VERSION',
      message: 'partition epoch 3 of t/0 is stale; it is at 0',
      details: { topic: 't', partition: 0, partitionEpoch: 0 },
    });
    c.apply(
      c.controller.reassignPartitions(c.image(), [
        { topic: 't', partition: 0, replicas: [3, 1], partitionEpoch: 0 },
      ]),
    );
    expect(reassign([{ topic: 't', partition: 0, replicas: [2, 3] }])).toEqual({
      code: 'REASSIGNMENT_IN_PROGRESS',
      message: 't/0 is being reassigned to 3,1: cancel that first',
      details: { topic: 't', partition: 0 },
    });
  });
});

describe('controller: reassignments in progress', () => {
  it('the same target again changes nothing; a target of the same length in another order, or sharing only a prefix, is refused', () => {
    const c = setup([1, 2, 3, 4]);
    c.topic('t', ID, [[1, 2]]);
    c.apply(c.controller.reassignPartitions(c.image(), [{ topic: 't', partition: 0, replicas: [1, 3] }]));
    expect(
      c.controller.reassignPartitions(c.image(), [{ topic: 't', partition: 0, replicas: [1, 3] }]),
    ).toEqual([]);
    for (const replicas of [
      [3, 1],
      [1, 4],
      [1, 3, 4],
    ])
      expect(
        code(() => c.controller.reassignPartitions(c.image(), [{ topic: 't', partition: 0, replicas }])),
      ).toBe('REASSIGNMENT_IN_PROGRESS');
  });

  it('a reassignment that only removes a replica is in progress too while it cannot complete', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    // Broker 3 leaves the in-sync set; a target of broker 3 alone adds nothing and removes 1 and 2,
    // but no replica of it is in sync, so it cannot complete.
    c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    c.apply(c.controller.reassignPartitions(c.image(), [{ topic: 't', partition: 0, replicas: [3] }]));
    expect(c.p().removingReplicas).toEqual([1, 2]);
    expect(c.p().addingReplicas).toEqual([]);
    expect(
      code(() => c.controller.reassignPartitions(c.image(), [{ topic: 't', partition: 0, replicas: [1] }])),
    ).toBe('REASSIGNMENT_IN_PROGRESS');
  });
});

describe('controller: alterConfigs writes only what changes', () => {
  it('a config that leaves the eligible replicas as they are writes the config alone', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]], { 'min.insync.replicas': '3' });
    c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    expect(c.p().elr).toEqual([3]);
    const records = c.controller.alterConfigs(c.image(), 't', { 'retention.ms': '5' });
    expect(records.map((r) => r.type)).toEqual(['config']);
  });
});

describe('controller: restarts and the unclean-restart rule (KIP-966), record by record', () => {
  it('a registration without a shutdown kind is a clean one: the last in-sync replica keeps its place and leads again', () => {
    const c = setup([1, 2]);
    c.topic('t', ID, [[1, 2]], { 'flush.policy': '"async"' });
    c.apply(c.controller.controlledShutdown(c.image(), 2, c.image().broker(2)!.brokerEpoch));
    c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    expect(c.p()).toMatchObject({ leader: -1, isr: [1] });
    expect(c.register(1, 1).map((r) => r.type)).toEqual(['registerBroker']);
    c.beat(1);
    expect(c.p()).toMatchObject({ leader: 1, isr: [1] });
  });

  it('an unclean restart changes nothing of partitions the broker holds no place in, nor a live leader elsewhere', () => {
    const c = setup([1, 2, 3, 4]);
    c.topic('t', ID, [[1, 2]]);
    c.topic('u', 'AAAAAAAAAAAAAAAAAAAAAg', [[1, 2, 3]]);
    c.apply([
      { type: 'partitionChange', version: 0, topicId: 'AAAAAAAAAAAAAAAAAAAAAg', partition: 0, leader: 2 },
    ]);
    c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    c.apply(c.controller.controlledShutdown(c.image(), 4, c.image().broker(4)!.brokerEpoch));
    expect(c.register(4, 1, 'new').map((r) => r.type)).toEqual(['registerBroker']);
    expect(c.register(3, 1, 'new').map((r) => r.type)).toEqual(['registerBroker']);
    expect(c.p('AAAAAAAAAAAAAAAAAAAAAg')).toMatchObject({ leader: 2, isr: [1, 2] });
  });

  it('the last in-sync replica back with a new disk hands the partition to an eligible replica in the registration’s entry', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]], { 'min.insync.replicas': '3' });
    c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    c.apply(c.controller.controlledShutdown(c.image(), 2, c.image().broker(2)!.brokerEpoch));
    c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    expect(c.p()).toMatchObject({ leader: -1, isr: [1], elr: [2, 3] });
    c.register(2, 1);
    c.beat(2);
    // Broker 2 is eligible and live: it leads at once, alone in the in-sync set.
    expect(c.p()).toMatchObject({ leader: 2, isr: [2], elr: [1, 3] });
  });

  it('an eligible replica elected after the last in-sync one came back unclean is written with the eligible set it leaves', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]], { 'min.insync.replicas': '3' });
    c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    c.apply(c.controller.controlledShutdown(c.image(), 2, c.image().broker(2)!.brokerEpoch));
    c.register(2, 1);
    // 2 is fenced until its heartbeat; 1 (the leader) stops, then comes back with a new disk.
    c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    c.beat(2);
    expect(c.p()).toMatchObject({ leader: 2, isr: [2] });
    const records = c.register(1, 1, 'new');
    expect(records[1]).toEqual({ type: 'partitionChange', version: 2, topicId: ID, partition: 0, elr: [3] });
  });

  it('a replica that leaves keeps the leader where it is, even when the leader is not the preferred one', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    c.apply([{ type: 'partitionChange', version: 0, topicId: ID, partition: 0, leader: 2 }]);
    const records = c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    expect(records[1]).toEqual({
      type: 'partitionChange',
      version: 0,
      topicId: ID,
      partition: 0,
      isr: [1, 2],
    });
    expect(c.p().leader).toBe(2);
  });

  it('flush.policy written as plain text counts as written as JSON', () => {
    const c = setup([1, 2]);
    c.topic('t', ID, [[1, 2]], { 'flush.policy': 'sync' });
    c.apply(c.controller.controlledShutdown(c.image(), 2, c.image().broker(2)!.brokerEpoch));
    c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    expect(c.register(1, 1, 'unclean').map((r) => r.type)).toEqual(['registerBroker']);
    expect(c.p().isr).toEqual([1]);
  });
});

describe('controller: alterPartition records', () => {
  it('an eligible replica back in sync leaves the eligible set with the in-sync change alone (version 0)', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]], { 'min.insync.replicas': '3' });
    c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    expect(c.p().elr).toEqual([3]);
    c.register(3, 1);
    c.beat(3);
    const records = c.apply(ask1(c, [1, 2, 3]));
    expect(records).toEqual([
      { type: 'partitionChange', version: 0, topicId: ID, partition: 0, isr: [1, 2, 3] },
    ]);
    expect(c.p().elr).toEqual([]);
  });

  it('a set of the same size with another member is written as the new set', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    c.apply(ask1(c, [1, 2]));
    c.apply(ask1(c, [1, 3]));
    expect(c.p().isr).toEqual([1, 3]);
  });

  it('the set it holds already is written as a leader-only change (the partition epoch moves, nothing else)', () => {
    const c = setup([1, 2]);
    c.topic('t', ID, [[1, 2]]);
    expect(c.apply(ask1(c, [1, 2]))).toEqual([
      { type: 'partitionChange', version: 0, topicId: ID, partition: 0, leader: 1 },
    ]);
    expect(c.p()).toMatchObject({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, isr: [1, 2] });
  });
});

describe('controller: placement across topics', () => {
  it('a new topic goes to the brokers holding the fewest replicas already, whatever the seed', () => {
    for (let seed = 1; seed <= 6; seed++) {
      const c = setup([1, 2, 3], { random: new SeededRandom(seed) });
      c.topic('a', ID, [[1], [2]]);
      const records = c.controller.createTopic(c.image(), {
        name: 'b',
        partitions: 1,
        replicationFactor: 1,
        configs: {},
      });
      expect((records[1] as unknown as { replicas: number[] }).replicas, `seed ${seed}`).toEqual([3]);
    }
  });
});

describe('controller: a replica whose broker is no longer registered', () => {
  it('counts as not live: leadership moves past it, without a crash', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    c.apply([
      { type: 'unregisterBroker', version: 0, brokerId: 2, brokerEpoch: c.image().broker(2)!.brokerEpoch },
    ]);
    c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    expect(c.p().leader).toBe(3);
  });
});

describe('controller: more rules the second mutation run showed unguarded', () => {
  it('says what is wrong with a session timeout', () => {
    expect(
      () =>
        new Controller({ sessionTimeoutMs: 0 }, { clock: new ManualClock(), random: new SeededRandom(1) }),
    ).toThrow('sessionTimeoutMs must be a positive integer');
  });

  it('a config change is written for the topic it names', () => {
    const c = setup([1]);
    c.topic('t', ID, [[1]]);
    const records = c.apply(c.controller.alterConfigs(c.image(), 't', { 'retention.ms': '9' }));
    expect(records).toEqual([
      {
        type: 'config',
        version: 0,
        resource: { type: 'topic', name: 't' },
        name: 'retention.ms',
        value: '9',
      },
    ]);
  });

  it('a drawn topic id with a zero byte among others is taken as drawn', () => {
    let at = 0;
    const random = new (class extends SeededRandom {
      override int(bound: number): number {
        return at < 16 ? at++ % bound : super.int(bound);
      }
    })(1);
    const c = setup([1], { random });
    c.apply(
      c.controller.createTopic(c.image(), { name: 'a', partitions: 1, replicationFactor: 1, configs: {} }),
    );
    expect([...Buffer.from(c.image().topic('a')!.topicId, 'base64url')]).toEqual([...new Array(16).keys()]);
  });

  it('a reassignment that only adds a replica is in progress too: another target is refused', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2]]);
    c.apply(c.controller.reassignPartitions(c.image(), [{ topic: 't', partition: 0, replicas: [1, 2, 3] }]));
    expect(c.p()).toMatchObject({ addingReplicas: [3], removingReplicas: [] });
    expect(
      code(() =>
        c.controller.reassignPartitions(c.image(), [{ topic: 't', partition: 0, replicas: [1, 3] }]),
      ),
    ).toBe('REASSIGNMENT_IN_PROGRESS');
  });

  it('an unclean restart of an eligible replica drops it from the eligible set and leaves a live leader where it is', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]], { 'min.insync.replicas': '3' });
    c.apply([{ type: 'partitionChange', version: 0, topicId: ID, partition: 0, leader: 2 }]);
    c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    expect(c.p()).toMatchObject({ leader: 2, elr: [3] });
    const records = c.register(3, 1, 'new');
    expect(records.slice(1)).toEqual([
      { type: 'partitionChange', version: 2, topicId: ID, partition: 0, elr: [] },
    ]);
    expect(c.p().leader).toBe(2);
  });

  it('an unclean restart within the session writes one change per partition', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]]);
    const records = c.register(1, 1, 'unclean');
    expect(records.map((r) => r.type)).toEqual(['registerBroker', 'partitionChange']);
    expect(c.p()).toMatchObject({ leader: 2, isr: [2, 3] });
  });

  it('brokers fenced together: the second one’s leaderships go to a live replica, never to the first', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 3, 2]]);
    c.clock.advance(SESSION_MS + 1);
    c.beat(2);
    c.apply(c.controller.fenceExpired(c.image()));
    expect(c.p()).toMatchObject({ leader: 2, isr: [2] });
  });

  it('an eligible replica that takes over is written with the eligible set it leaves', () => {
    const c = setup([1, 2, 3]);
    c.topic('t', ID, [[1, 2, 3]], { 'min.insync.replicas': '3' });
    c.apply(c.controller.controlledShutdown(c.image(), 3, c.image().broker(3)!.brokerEpoch));
    c.apply(c.controller.controlledShutdown(c.image(), 2, c.image().broker(2)!.brokerEpoch));
    c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    c.register(2, 1);
    const epoch = c.image().broker(2)!.brokerEpoch;
    const records = c.apply(
      c.controller.heartbeat(c.image(), { brokerId: 2, brokerEpoch: epoch, caughtUp: true }),
    );
    expect(records[1]).toEqual({
      type: 'partitionChange',
      version: 2,
      topicId: ID,
      partition: 0,
      leader: 2,
      isr: [2],
      elr: [1, 3],
    });
  });

  it('an unclean election leaves nothing eligible, in a record that encodes', () => {
    const c = setup([1, 2]);
    c.topic('t', ID, [[1, 2]], { 'unclean.leader.election.enable': 'true' });
    c.apply(ask1(c, [1]));
    c.apply(c.controller.controlledShutdown(c.image(), 2, c.image().broker(2)!.brokerEpoch));
    c.apply(c.controller.controlledShutdown(c.image(), 1, c.image().broker(1)!.brokerEpoch));
    c.register(2, 1);
    const epoch = c.image().broker(2)!.brokerEpoch;
    const records = c.apply(
      c.controller.heartbeat(c.image(), { brokerId: 2, brokerEpoch: epoch, caughtUp: true }),
    );
    expect(records[1]).toMatchObject({ type: 'partitionChange', leader: 2, isr: [2] });
    expect(c.p().elr).toEqual([]);
  });
});
