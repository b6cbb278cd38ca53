import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SeededRandom } from '../../src/common/random.js';
import { Controller } from '../../src/metadata/controller.js';
import {
  decodeImage,
  encodeImage,
  MetadataImage,
  type PartitionImage,
  replayAll,
} from '../../src/metadata/image.js';
import { localChanges } from '../../src/metadata/listener.js';
import { decodeRecord, encodeRecord, type MetadataRecord } from '../../src/metadata/records.js';

/**
 * Partition reassignment and broker decommission on the controller, replayed through the real image
 * as every node replays them: the start (replicas = target ++ removed, adding and removing sets),
 * the completion once the leader's in-sync set takes in the last adding replica (replicas = target,
 * ISR cut, leadership moved off a removed leader at a new epoch), cancellation, the refusals, and
 * what the brokers that gain or lose a replica are told to do.
 */
function setup(brokers: { id: number; rack?: string }[], metadataVersion = 2) {
  const clock = new ManualClock();
  const controller = new Controller({ sessionTimeoutMs: 9000 }, { clock, random: new SeededRandom(3) });
  let image = MetadataImage.EMPTY;
  const apply = (records: MetadataRecord[]) => {
    // Every record goes through the codec too: what the controller writes is what nodes read.
    const decoded = records.map((r) => decodeRecord(encodeRecord(r)));
    const delta = replayAll(
      image,
      decoded.map((record, i) => ({ record, offset: image.lastOffset + 1 + i })),
    );
    expect(delta.ignored).toEqual([]);
    image = delta.after;
    return delta;
  };
  apply([
    { type: 'clusterId', version: 0, clusterId: 'c' },
    { type: 'featureLevel', version: 0, name: 'metadata.version', level: metadataVersion },
  ]);
  for (const { id, rack } of brokers) {
    apply(
      controller.registerBroker(image, {
        brokerId: id,
        incarnationId: `i${id}`,
        endpoints: [{ name: 'public', host: '127.0.0.1', port: 9000 + id }],
        rack: rack ?? null,
      }),
    );
    apply(
      controller.heartbeat(image, {
        brokerId: id,
        brokerEpoch: image.broker(id)!.brokerEpoch,
        caughtUp: true,
      }),
    );
  }
  const part = (topic = 't', partition = 0): PartitionImage => image.topic(topic)!.partitions.get(partition)!;
  /** The leader's in-sync set change, as its replication would ask for it. */
  const alterIsr = (isr: number[], topic = 't', partition = 0) => {
    const p = part(topic, partition);
    return apply(
      controller.alterPartition(image, {
        brokerId: p.leader,
        brokerEpoch: image.broker(p.leader)!.brokerEpoch,
        topicId: p.topicId,
        partition,
        leaderEpoch: p.leaderEpoch,
        partitionEpoch: p.partitionEpoch,
        isr,
      }),
    );
  };
  const createTopic = (replicationFactor: number, partitions = 1, name = 't') =>
    apply(controller.createTopic(image, { name, partitions, replicationFactor, configs: {} }));
  const reassign = (replicas: number[] | null, extra: { partitionEpoch?: number } = {}) =>
    apply(controller.reassignPartitions(image, [{ topic: 't', partition: 0, replicas, ...extra }]));
  return { controller, apply, image: () => image, part, alterIsr, createTopic, reassign, clock };
}

/** Moves partition t/0 to exactly `replicas` (placement is seeded; tests start from a known state). */
function placeAt(c: ReturnType<typeof setup>, replicas: number[]) {
  c.reassign(replicas);
  if (c.part().addingReplicas.length > 0) c.alterIsr([...c.part().isr, ...c.part().addingReplicas]);
  expect(c.part().replicas).toEqual(replicas);
}

describe('reassignment', () => {
  it('adds the target replicas first, completes once they are in sync, and moves a removed leader', () => {
    const c = setup([{ id: 1 }, { id: 2 }, { id: 3 }]);
    c.createTopic(2);
    placeAt(c, [1, 2]);
    expect(c.part().leader).toBe(1);
    const epochs = { leader: c.part().leaderEpoch, partition: c.part().partitionEpoch };

    const started = c.reassign([2, 3]);
    let p = c.part();
    expect(p.replicas).toEqual([2, 3, 1]);
    expect(p.addingReplicas).toEqual([3]);
    expect(p.removingReplicas).toEqual([1]);
    expect(p.isr).toEqual([2, 1]);
    expect(p.leader).toBe(1);
    expect(p.leaderEpoch).toBe(epochs.leader);
    expect(p.partitionEpoch).toBe(epochs.partition + 1);
    // Broker 3 opens its log and follows the leader; nothing stops yet.
    expect(localChanges(started, 3).follow.map((f) => f.leader)).toEqual([1]);
    expect(localChanges(started, 1).stop).toEqual([]);

    const done = c.alterIsr([2, 3, 1]);
    p = c.part();
    expect(p.replicas).toEqual([2, 3]);
    expect(p.isr).toEqual([2, 3]);
    expect(p.addingReplicas).toEqual([]);
    expect(p.removingReplicas).toEqual([]);
    expect(p.leader).toBe(2);
    expect(p.leaderEpoch).toBe(epochs.leader + 1);
    // The removed replica deletes its log; the new leader leads.
    expect(localChanges(done, 1).stop.map((s) => s.deleteData)).toEqual([true]);
    expect(localChanges(done, 2).lead.map((l) => l.partition)).toEqual([0]);
  });

  it('stays in progress while an adding replica is out of sync, and completes from a leader change that keeps the leader', () => {
    const c = setup([{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }]);
    c.createTopic(1);
    placeAt(c, [1]);
    c.reassign([1, 3, 4]);
    expect(c.part().addingReplicas).toEqual([3, 4]);
    c.alterIsr([1, 3]);
    expect(c.part().addingReplicas).toEqual([3, 4]);
    expect(c.part().replicas).toEqual([1, 3, 4]);
    c.alterIsr([1, 3, 4]);
    expect(c.part()).toMatchObject({ replicas: [1, 3, 4], isr: [1, 3, 4], leader: 1, addingReplicas: [] });
  });

  it('completes at once when nothing is added (a shrink of the replication factor, a reorder)', () => {
    const c = setup([{ id: 1 }, { id: 2 }, { id: 3 }]);
    c.createTopic(3);
    placeAt(c, [1, 2, 3]);
    c.reassign([3, 2]);
    expect(c.part()).toMatchObject({ replicas: [3, 2], isr: [3, 2], leader: 3, removingReplicas: [] });
    c.reassign([2, 3]);
    expect(c.part()).toMatchObject({ replicas: [2, 3], isr: [2, 3], leader: 3 });
    const before = c.part().partitionEpoch;
    expect(
      c.controller.reassignPartitions(c.image(), [{ topic: 't', partition: 0, replicas: [2, 3] }]),
    ).toEqual([]);
    expect(c.part().partitionEpoch).toBe(before);
  });

  it('cancels back to the original replicas; a cancelled adding leader hands leadership back', () => {
    const c = setup([{ id: 1 }, { id: 2 }, { id: 3 }]);
    c.createTopic(1);
    placeAt(c, [1]);
    c.reassign([3]);
    expect(c.part().replicas).toEqual([3, 1]);
    const cancelled = c.reassign(null);
    expect(c.part()).toMatchObject({
      replicas: [1],
      isr: [1],
      leader: 1,
      addingReplicas: [],
      removingReplicas: [],
    });
    expect(localChanges(cancelled, 3).stop.map((s) => s.deleteData)).toEqual([true]);
    expect(() => c.reassign(null)).toThrow(expect.objectContaining({ code: 'NO_REASSIGNMENT_IN_PROGRESS' }));
  });

  it('refuses bad targets, stale epochs, a second reassignment and an old metadata.version, changing nothing', () => {
    const c = setup([{ id: 1 }, { id: 2 }, { id: 3 }]);
    c.createTopic(2);
    placeAt(c, [1, 2]);
    const refuse = (requests: Parameters<Controller['reassignPartitions']>[1], code: string) =>
      expect(() => c.controller.reassignPartitions(c.image(), requests)).toThrow(
        expect.objectContaining({ code }),
      );
    refuse([{ topic: 't', partition: 0, replicas: [] }], 'INVALID_REPLICA_ASSIGNMENT');
    refuse([{ topic: 't', partition: 0, replicas: [2, 2] }], 'INVALID_REPLICA_ASSIGNMENT');
    refuse([{ topic: 't', partition: 0, replicas: [2, 9] }], 'INVALID_REPLICA_ASSIGNMENT');
    refuse([{ topic: 't', partition: 1, replicas: [2] }], 'UNKNOWN_TOPIC_OR_PARTITION');
    refuse([{ topic: 'nope', partition: 0, replicas: [2] }], 'UNKNOWN_TOPIC_OR_PARTITION');
    refuse(
      [{ topic: 't', partition: 0, replicas: [3], partitionEpoch: c.part().partitionEpoch - 1 }],
      'INVALID_UPDATE_VERSION',
    );
    refuse(
      [
        { topic: 't', partition: 0, replicas: [3] },
        { topic: 't', partition: 0, replicas: [2] },
      ],
      'INVALID_REQUEST',
    );
    // All or none: a good request before a bad one is not carried out either.
    c.createTopic(1, 1, 'u');
    refuse(
      [
        { topic: 'u', partition: 0, replicas: [3] },
        { topic: 't', partition: 0, replicas: [] },
      ],
      'INVALID_REPLICA_ASSIGNMENT',
    );
    c.reassign([2, 3], { partitionEpoch: c.part().partitionEpoch });
    refuse([{ topic: 't', partition: 0, replicas: [3, 1] }], 'REASSIGNMENT_IN_PROGRESS');
    // The same target again is no change.
    expect(
      c.controller.reassignPartitions(c.image(), [{ topic: 't', partition: 0, replicas: [2, 3] }]),
    ).toEqual([]);

    const old = setup([{ id: 1 }, { id: 2 }], 1);
    old.createTopic(1);
    expect(() => old.reassign([2])).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_VERSION' }));
  });

  it('stays in progress, led by the old leader, while an adding replica is fenced', () => {
    const c = setup([{ id: 1 }, { id: 2 }, { id: 3 }]);
    c.createTopic(1);
    placeAt(c, [1]);
    c.reassign([2, 3]);
    c.alterIsr([1, 2]);
    // Broker 2 is fenced (leaving the ISR): 3 joins, but 2 has still to catch up.
    c.clock.advance(5000);
    c.apply(
      c.controller.heartbeat(c.image(), {
        brokerId: 1,
        brokerEpoch: c.image().broker(1)!.brokerEpoch,
        caughtUp: true,
      }),
    );
    c.apply(
      c.controller.heartbeat(c.image(), {
        brokerId: 3,
        brokerEpoch: c.image().broker(3)!.brokerEpoch,
        caughtUp: true,
      }),
    );
    c.clock.advance(5000);
    c.apply(c.controller.fenceExpired(c.image()));
    expect(c.image().broker(2)!.fenced).toBe(true);
    expect(c.part().isr).toEqual([1]);
    c.alterIsr([1, 3]);
    expect(c.part()).toMatchObject({ replicas: [2, 3, 1], isr: [3, 1], leader: 1, addingReplicas: [2, 3] });
    expect(c.controller.completeReassignments(c.image())).toEqual([]);
  });

  it('survives a snapshot: the adding and removing sets are in the image encoding', () => {
    const c = setup([{ id: 1 }, { id: 2 }, { id: 3 }]);
    c.createTopic(1);
    placeAt(c, [1]);
    c.reassign([2, 3]);
    const bytes = encodeImage(c.image());
    expect(bytes[1]).toBe(1); // the format version, after the array header
    expect(Buffer.from(encodeImage(decodeImage(bytes))).equals(Buffer.from(bytes))).toBe(true);
    expect(decodeImage(bytes).partition(c.part().topicId, 0)).toEqual(c.part());
  });
});

describe('decommission', () => {
  it('moves every replica off the broker, over racks the partition does not use, evenly', () => {
    const c = setup([
      { id: 1, rack: 'a' },
      { id: 2, rack: 'b' },
      { id: 3, rack: 'a' },
      { id: 4, rack: 'b' },
      { id: 5, rack: 'c' },
    ]);
    c.createTopic(2, 6);
    const topic = () => [...c.image().topic('t')!.partitions.values()];
    const held = topic().filter((p) => p.replicas.includes(1));
    expect(held.length).toBeGreaterThan(0);
    c.apply(c.controller.decommissionBroker(c.image(), 1));
    for (const p of topic()) {
      const target = p.replicas.filter((id) => !p.removingReplicas.includes(id));
      expect(target).not.toContain(1);
      expect(target).toHaveLength(2);
      expect(new Set(target).size).toBe(2);
      if (held.some((h) => h.partition === p.partition)) {
        expect(p.removingReplicas).toEqual([1]);
        // The other replica's rack is avoided: two racks per partition.
        const racks = target.map((id) => c.image().broker(id)!.rack);
        expect(new Set(racks).size).toBe(2);
      }
    }
    // Every move completes once the new replicas are in sync; then broker 1 holds nothing.
    for (const p of topic())
      if (p.addingReplicas.length > 0) c.alterIsr([...p.isr, ...p.addingReplicas], 't', p.partition);
    for (const p of topic()) expect(p.replicas).not.toContain(1);
    // A second decommission has nothing left to move.
    expect(c.controller.decommissionBroker(c.image(), 1)).toEqual([]);
  });

  it('refuses when the remaining brokers cannot hold the replication factor, changing nothing', () => {
    const c = setup([{ id: 1 }, { id: 2 }, { id: 3 }]);
    c.createTopic(3, 2);
    expect(() => c.controller.decommissionBroker(c.image(), 2)).toThrow(
      expect.objectContaining({ code: 'INVALID_REPLICATION_FACTOR' }),
    );
    expect(() => c.controller.decommissionBroker(c.image(), 9)).toThrow(
      expect.objectContaining({ code: 'INVALID_REPLICA_ASSIGNMENT' }),
    );
  });

  it('leaves partitions already moving off the broker, and refuses one whose reassignment keeps it', () => {
    const c = setup([{ id: 1 }, { id: 2 }, { id: 3 }]);
    c.createTopic(1);
    placeAt(c, [1]);
    c.reassign([2]);
    expect(c.controller.decommissionBroker(c.image(), 1)).toEqual([]);
    c.reassign(null);
    c.reassign([1, 2]);
    expect(() => c.controller.decommissionBroker(c.image(), 1)).toThrow(
      expect.objectContaining({ code: 'REASSIGNMENT_IN_PROGRESS' }),
    );
  });
});
