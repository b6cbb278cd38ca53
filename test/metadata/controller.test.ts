import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SeededRandom } from '../../src/common/random.js';
import { Controller } from '../../src/metadata/controller.js';
import { MetadataImage, replayAll } from '../../src/metadata/image.js';
import { localChanges } from '../../src/metadata/listener.js';
import type { MetadataRecord } from '../../src/metadata/records.js';

/**
 * The controller's decisions, replayed through the real image as every node would replay them:
 * placement and topic admin, broker sessions and fencing with leader election from the ISR, and
 * what each broker's listener makes of the result.
 */
const SESSION_MS = 9_000;

function setup(brokerIds: number[]) {
  const clock = new ManualClock();
  const controller = new Controller({ sessionTimeoutMs: SESSION_MS }, { clock, random: new SeededRandom(7) });
  let image = MetadataImage.EMPTY;
  const apply = (records: MetadataRecord[]) => {
    const delta = replayAll(
      image,
      records.map((record, i) => ({ record, offset: image.lastOffset + 1 + i })),
    );
    expect(delta.ignored).toEqual([]);
    image = delta.after;
    return delta;
  };
  apply([{ type: 'clusterId', version: 0, clusterId: 'cluster-a' }]);
  for (const brokerId of brokerIds) {
    apply(
      controller.registerBroker(image, {
        brokerId,
        incarnationId: `incarnation-${brokerId}`,
        endpoints: [{ name: 'public', host: '127.0.0.1', port: 9000 + brokerId }],
        rack: null,
      }),
    );
    const epoch = image.broker(brokerId)!.brokerEpoch;
    apply(controller.heartbeat(image, { brokerId, brokerEpoch: epoch, caughtUp: true }));
  }
  return { clock, controller, apply, image: () => image };
}

describe('controller: topics', () => {
  it('places a topic over the live brokers, leaders spread, every replica in sync, configs recorded', () => {
    const c = setup([1, 2, 3]);
    c.apply(
      c.controller.createTopic(c.image(), {
        name: 'orders',
        partitions: 6,
        replicationFactor: 3,
        configs: { 'retention.ms': '1000' },
      }),
    );
    const topic = c.image().topic('orders')!;
    const partitions = [...topic.partitions.values()];
    expect(partitions).toHaveLength(6);
    for (const p of partitions) {
      expect(new Set(p.replicas).size).toBe(3);
      expect(p.isr).toEqual(p.replicas);
      expect(p.leader).toBe(p.replicas[0]);
      expect(p.leaderEpoch).toBe(0);
    }
    const leaders = partitions.map((p) => p.leader);
    for (const id of [1, 2, 3]) expect(leaders.filter((l) => l === id)).toHaveLength(2);
    expect(topic.configs.get('retention.ms')).toBe('1000');
  });

  it('refuses a replication factor above the live brokers, a second topic of one name, and a shrink', () => {
    const c = setup([1, 2]);
    expect(() =>
      c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 3, configs: {} }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_REPLICATION_FACTOR' }));
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 2, replicationFactor: 2, configs: {} }),
    );
    expect(() =>
      c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 1, configs: {} }),
    ).toThrow(expect.objectContaining({ code: 'TOPIC_ALREADY_EXISTS' }));
    expect(() => c.controller.addPartitions(c.image(), 't', 2)).toThrow(
      expect.objectContaining({ code: 'INVALID_PARTITIONS' }),
    );
    c.apply(c.controller.addPartitions(c.image(), 't', 4));
    expect(c.image().topic('t')!.partitions.size).toBe(4);
    expect(c.image().topic('t')!.partitions.get(3)!.replicas).toHaveLength(2);
  });

  it('gives a re-created topic a new id, so that its partitions never meet the old data', () => {
    const c = setup([1]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 1, configs: {} }),
    );
    const first = c.image().topic('t')!.topicId;
    const removed = c.apply(c.controller.deleteTopic(c.image(), 't'));
    expect(localChanges(removed, 1).stop).toEqual([
      { topicId: first, topicName: 't', partition: 0, deleteData: true },
    ]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 1, configs: {} }),
    );
    expect(c.image().topic('t')!.topicId).not.toBe(first);
  });

  it('sets and deletes topic configs', () => {
    const c = setup([1]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 1, configs: {} }),
    );
    c.apply(c.controller.alterConfigs(c.image(), 't', { 'retention.ms': '5', 'segment.bytes': '4096' }));
    c.apply(c.controller.alterConfigs(c.image(), 't', { 'retention.ms': null }));
    expect([...c.image().topic('t')!.configs.entries()]).toEqual([['segment.bytes', '4096']]);
    expect(() => c.controller.alterConfigs(c.image(), 'nope', {})).toThrow(
      expect.objectContaining({ code: 'UNKNOWN_TOPIC_OR_PARTITION' }),
    );
  });
});

describe('controller: broker sessions', () => {
  it('fences a broker whose heartbeats stopped and elects new leaders from the ISR, with new epochs', () => {
    const c = setup([1, 2, 3]);
    c.apply(
      c.controller.createTopic(c.image(), {
        name: 'orders',
        partitions: 6,
        replicationFactor: 3,
        configs: {},
      }),
    );
    const before = [...c.image().topic('orders')!.partitions.values()];
    // Brokers 1 and 2 keep beating; broker 3 goes silent.
    for (let t = 0; t < 4; t++) {
      c.clock.advance(SESSION_MS / 3);
      for (const id of [1, 2])
        c.apply(
          c.controller.heartbeat(c.image(), {
            brokerId: id,
            brokerEpoch: c.image().broker(id)!.brokerEpoch,
            caughtUp: true,
          }),
        );
      if (t < 2) expect(c.controller.fenceExpired(c.image())).toEqual([]);
    }
    const delta = c.apply(c.controller.fenceExpired(c.image()));
    expect(delta.brokersFenced).toEqual([3]);
    expect(c.image().broker(3)!.fenced).toBe(true);
    for (const p of c.image().topic('orders')!.partitions.values()) {
      const old = before.find((b) => b.partition === p.partition)!;
      expect(p.isr).not.toContain(3);
      expect(p.leader).not.toBe(3);
      expect([1, 2]).toContain(p.leader);
      if (old.leader === 3) expect(p.leaderEpoch).toBe(old.leaderEpoch + 1);
      else expect(p.leaderEpoch).toBe(old.leaderEpoch);
    }
    // What broker 1's listener sees: every partition it leads now, since each lost broker 3 from
    // its ISR (a new partition epoch), those it took over with a new leader epoch.
    const led = localChanges(delta, 1).lead;
    const ledNow = [...c.image().topic('orders')!.partitions.values()].filter((p) => p.leader === 1);
    expect(led.map((r) => r.partition).sort()).toEqual(ledNow.map((p) => p.partition).sort());
    for (const role of led) {
      const old = before.find((b) => b.partition === role.partition)!;
      expect(role.leaderEpoch).toBe(old.leader === 3 ? old.leaderEpoch + 1 : old.leaderEpoch);
      expect(role.isr).not.toContain(3);
    }
    // Nothing more to fence while the others keep beating.
    expect(c.controller.fenceExpired(c.image())).toEqual([]);
  });

  it('leaves a partition leaderless rather than electing a replica outside the ISR', () => {
    const c = setup([1, 2]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 2, configs: {} }),
    );
    const p = c.image().topic('t')!.partitions.get(0)!;
    const [leader, follower] = p.replicas as [number, number];
    // The follower falls out of the ISR, then the leader dies.
    c.apply([{ type: 'partitionChange', version: 0, topicId: p.topicId, partition: 0, isr: [leader] }]);
    c.clock.advance(SESSION_MS / 2);
    c.apply(
      c.controller.heartbeat(c.image(), {
        brokerId: follower,
        brokerEpoch: c.image().broker(follower)!.brokerEpoch,
        caughtUp: true,
      }),
    );
    c.clock.advance(SESSION_MS / 2 + 1);
    c.apply(c.controller.fenceExpired(c.image()));
    const after = c.image().partition(p.topicId, 0)!;
    expect(after.leader).toBe(-1);
    // The last in-sync replica stays in the ISR, so that it can lead again with everything acknowledged.
    expect(after.isr).toEqual([leader]);
  });

  it('gives a leaderless partition back to its last in-sync replica with the heartbeat that unfences it', () => {
    const c = setup([1, 2]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 2, replicationFactor: 1, configs: {} }),
    );
    const topic = c.image().topic('t')!;
    const owner = topic.partitions.get(0)!.replicas[0]!;
    const other = owner === 1 ? 2 : 1;
    const before = topic.partitions.get(0)!;
    // The owner's session expires while the other broker keeps beating.
    c.clock.advance(SESSION_MS / 2);
    const beat = (id: number) =>
      c.controller.heartbeat(c.image(), {
        brokerId: id,
        brokerEpoch: c.image().broker(id)!.brokerEpoch,
        caughtUp: true,
      });
    c.apply(beat(other));
    c.clock.advance(SESSION_MS / 2 + 1);
    c.apply(c.controller.fenceExpired(c.image()));
    expect(c.image().partition(before.topicId, 0)!.leader).toBe(-1);
    // Nothing to elect while the only in-sync replica is fenced.
    expect(c.controller.electLeaderless(c.image())).toEqual([]);
    // It registers again (a restart) and is unfenced by its heartbeat: it leads again, at a new epoch.
    c.apply(
      c.controller.registerBroker(c.image(), {
        brokerId: owner,
        incarnationId: 'second',
        endpoints: [],
        rack: null,
      }),
    );
    // Its unfencing heartbeat gives it its partitions back in the same entry.
    c.apply(beat(owner));
    const after = c.image().partition(before.topicId, 0)!;
    expect(after.leader).toBe(owner);
    expect(after.leaderEpoch).toBeGreaterThan(before.leaderEpoch);
    expect(c.controller.electLeaderless(c.image())).toEqual([]);
  });

  it('fences a broker in controlled shutdown at once, and ignores a stale epoch or a second request', () => {
    const c = setup([1, 2, 3]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 3, replicationFactor: 2, configs: {} }),
    );
    const epoch = c.image().broker(2)!.brokerEpoch;
    expect(c.controller.controlledShutdown(c.image(), 2, epoch - 1)).toEqual([]);
    c.apply(c.controller.controlledShutdown(c.image(), 2, epoch));
    expect(c.image().broker(2)!.fenced).toBe(true);
    for (const p of c.image().topic('t')!.partitions.values()) {
      expect(p.leader).not.toBe(2);
      expect(p.isr).not.toContain(2);
      expect(p.leader === -1 || p.isr.includes(p.leader)).toBe(true);
    }
    expect(c.controller.controlledShutdown(c.image(), 2, epoch)).toEqual([]);
  });

  it('gives leadership back to the preferred replica once it is in sync and unfenced', () => {
    const c = setup([1, 2, 3]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 3, replicationFactor: 3, configs: {} }),
    );
    expect(c.controller.preferredLeaders(c.image())).toEqual([]);
    const p = c.image().topic('t')!.partitions.get(0)!;
    const preferred = p.replicas[0]!;
    const other = p.replicas[1]!;
    // A failover moved it; while the preferred replica is out of sync nothing moves back.
    c.apply([
      {
        type: 'partitionChange',
        version: 0,
        topicId: p.topicId,
        partition: 0,
        leader: other,
        isr: p.replicas.filter((id) => id !== preferred),
      },
    ]);
    expect(c.controller.preferredLeaders(c.image())).toEqual([]);
    c.apply([
      { type: 'partitionChange', version: 0, topicId: p.topicId, partition: 0, isr: [...p.replicas] },
    ]);
    const moves = c.controller.preferredLeaders(c.image());
    expect(moves).toHaveLength(1);
    c.apply(moves);
    const back = c.image().partition(p.topicId, 0)!;
    expect(back.leader).toBe(preferred);
    expect(back.leaderEpoch).toBeGreaterThan(p.leaderEpoch);
    expect(c.controller.preferredLeaders(c.image(), 0)).toEqual([]);
  });

  it('changes an in-sync set only for the current leader at the current epochs, with the leader in and only live replicas added', () => {
    const c = setup([1, 2, 3]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 't', partitions: 1, replicationFactor: 3, configs: {} }),
    );
    const p = c.image().topic('t')!.partitions.get(0)!;
    const leader = p.leader;
    const [a, b] = p.replicas.filter((id) => id !== leader) as [number, number];
    const ask = (over: Partial<Parameters<Controller['alterPartition']>[1]> = {}) => {
      const now = c.image().partition(p.topicId, 0)!;
      return c.controller.alterPartition(c.image(), {
        brokerId: leader,
        brokerEpoch: c.image().broker(leader)!.brokerEpoch,
        topicId: p.topicId,
        partition: 0,
        leaderEpoch: now.leaderEpoch,
        partitionEpoch: now.partitionEpoch,
        isr: [leader, a],
        ...over,
      });
    };
    const code = (f: () => unknown) => {
      try {
        f();
        return 'accepted';
      } catch (error) {
        return (error as { code: string }).code;
      }
    };
    expect(code(() => ask({ brokerId: a, brokerEpoch: c.image().broker(a)!.brokerEpoch }))).toBe(
      'FENCED_LEADER_EPOCH',
    );
    expect(code(() => ask({ leaderEpoch: p.leaderEpoch + 1 }))).toBe('FENCED_LEADER_EPOCH');
    expect(code(() => ask({ partitionEpoch: p.partitionEpoch + 1 }))).toBe('INVALID_UPDATE_VERSION');
    expect(code(() => ask({ brokerEpoch: 1 }))).toBe('INVALID_REQUEST');
    expect(code(() => ask({ isr: [a, b] }))).toBe('INVALID_REQUEST');
    expect(code(() => ask({ isr: [leader, 99] }))).toBe('INVALID_REQUEST');
    expect(code(() => ask({ topicId: 'AAAAAAAAAAAAAAAAAAAAAB' }))).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    // Shrink: one partitionChange, replica order kept, a new partition epoch.
    c.apply(ask({ isr: [a, leader] }));
    const shrunk = c.image().partition(p.topicId, 0)!;
    expect(shrunk.isr).toEqual(p.replicas.filter((id) => id !== b));
    expect(shrunk.partitionEpoch).toBe(p.partitionEpoch + 1);
    expect(shrunk.leaderEpoch).toBe(p.leaderEpoch);
    // The request computed before the shrink is stale now.
    expect(code(() => ask({ partitionEpoch: p.partitionEpoch, isr: [leader, a, b] }))).toBe(
      'INVALID_UPDATE_VERSION',
    );
    // A fenced broker cannot join; once unfenced it can.
    c.clock.advance(SESSION_MS / 2);
    for (const id of [leader, a])
      c.apply(
        c.controller.heartbeat(c.image(), {
          brokerId: id,
          brokerEpoch: c.image().broker(id)!.brokerEpoch,
          caughtUp: true,
        }),
      );
    c.clock.advance(SESSION_MS / 2 + 1);
    c.apply(c.controller.fenceExpired(c.image()));
    expect(c.image().broker(b)!.fenced).toBe(true);
    expect(code(() => ask({ isr: [leader, a, b] }))).toBe('INVALID_REQUEST');
  });

  it('starts every session afresh after resetSessions (a new active controller)', () => {
    const c = setup([1, 2]);
    c.clock.advance(SESSION_MS + 1);
    c.controller.resetSessions();
    // Unheard since the reset: each broker gets a full session from the first check.
    expect(c.controller.fenceExpired(c.image())).toEqual([]);
    c.clock.advance(SESSION_MS - 1);
    expect(c.controller.fenceExpired(c.image())).toEqual([]);
    c.clock.advance(2);
    const fenced = c.controller.fenceExpired(c.image()).filter((r) => r.type === 'fenceBroker');
    expect(fenced.map((r) => (r as { brokerId: number }).brokerId)).toEqual([1, 2]);
  });

  it('refuses a heartbeat at a stale broker epoch; a restart registers anew, fenced until caught up', () => {
    const c = setup([1]);
    const oldEpoch = c.image().broker(1)!.brokerEpoch;
    c.apply(
      c.controller.registerBroker(c.image(), {
        brokerId: 1,
        incarnationId: 'incarnation-1b',
        endpoints: [{ name: 'public', host: '127.0.0.1', port: 9001 }],
        rack: null,
      }),
    );
    const newEpoch = c.image().broker(1)!.brokerEpoch;
    expect(newEpoch).toBeGreaterThan(oldEpoch);
    expect(c.image().broker(1)!.fenced).toBe(true);
    expect(() =>
      c.controller.heartbeat(c.image(), { brokerId: 1, brokerEpoch: oldEpoch, caughtUp: true }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(
      c.controller.heartbeat(c.image(), { brokerId: 1, brokerEpoch: newEpoch, caughtUp: false }),
    ).toEqual([]);
    c.apply(c.controller.heartbeat(c.image(), { brokerId: 1, brokerEpoch: newEpoch, caughtUp: true }));
    expect(c.image().broker(1)!.fenced).toBe(false);
  });

  it('moves the leaderships of a broker that registers again before its session expired: fenced, it leads nothing', () => {
    // Found by the metadata simulation (test/sim/metadata-sim.ts): a broker restarted within its
    // session registered a new incarnation, fenced, and went on leading its partitions.
    const c = setup([1, 2, 3]);
    c.apply(
      c.controller.createTopic(c.image(), { name: 'all', partitions: 6, replicationFactor: 3, configs: {} }),
    );
    c.apply(
      c.controller.createTopic(c.image(), { name: 'solo', partitions: 3, replicationFactor: 1, configs: {} }),
    );
    const before = [...c.image().topicsById.values()].flatMap((t) => [...t.partitions.values()]);
    expect(before.some((p) => p.leader === 3 && p.replicas.length === 3)).toBe(true);
    expect(before.some((p) => p.leader === 3 && p.replicas.length === 1)).toBe(true);
    const delta = c.apply(
      c.controller.registerBroker(c.image(), {
        brokerId: 3,
        incarnationId: 'incarnation-3b',
        endpoints: [{ name: 'public', host: '127.0.0.1', port: 9003 }],
        rack: null,
      }),
    );
    expect(delta.brokersRegistered.map((b) => b.brokerId)).toEqual([3]);
    expect(c.image().broker(3)!.fenced).toBe(true);
    for (const old of before) {
      const p = c.image().partition(old.topicId, old.partition)!;
      expect(p.leader).not.toBe(3);
      if (old.replicas.length === 3) {
        expect(p.isr).not.toContain(3);
        expect(p.leaderEpoch).toBe(old.leader === 3 ? old.leaderEpoch + 1 : old.leaderEpoch);
      } else if (old.leader === 3) {
        // Its only replica: leaderless, and it keeps its ISR place to lead again once unfenced.
        expect(p).toMatchObject({ leader: -1, isr: [3], leaderEpoch: old.leaderEpoch + 1 });
      }
    }
    const epoch = c.image().broker(3)!.brokerEpoch;
    c.apply(c.controller.heartbeat(c.image(), { brokerId: 3, brokerEpoch: epoch, caughtUp: true }));
    c.apply(c.controller.electLeaderless(c.image()));
    for (const old of before.filter((p) => p.replicas.length === 1 && p.leader === 3))
      expect(c.image().partition(old.topicId, old.partition)!.leader).toBe(3);
    // Registering again while unfenced moves everything away again; while fenced, nothing is left to move.
    const live = c.controller.registerBroker(c.image(), {
      brokerId: 3,
      incarnationId: 'incarnation-3c',
      endpoints: [],
      rack: null,
    });
    expect(live.filter((r) => r.type === 'partitionChange').length).toBeGreaterThan(0);
    c.apply(live);
    expect(
      c.controller.registerBroker(c.image(), {
        brokerId: 3,
        incarnationId: 'incarnation-3d',
        endpoints: [],
        rack: null,
      }),
    ).toHaveLength(1);
  });
});

describe('listener', () => {
  it('tells each broker what it leads and follows, and applying a delta again changes nothing', () => {
    const c = setup([1, 2, 3]);
    const firstOffset = c.image().lastOffset + 1;
    const records = c.controller.createTopic(c.image(), {
      name: 'orders',
      partitions: 3,
      replicationFactor: 2,
      configs: {},
    });
    const delta = c.apply(records);
    const all = [...c.image().topic('orders')!.partitions.values()];
    for (const id of [1, 2, 3]) {
      const changes = localChanges(delta, id);
      expect(changes.lead.map((r) => r.partition).sort()).toEqual(
        all
          .filter((p) => p.leader === id)
          .map((p) => p.partition)
          .sort(),
      );
      expect(changes.follow.map((r) => r.partition).sort()).toEqual(
        all
          .filter((p) => p.leader !== id && p.replicas.includes(id))
          .map((p) => p.partition)
          .sort(),
      );
      expect(changes.stop).toEqual([]);
    }
    // The same records again at their offsets (a restart replays what followed the snapshot): the
    // image is unchanged and no broker has anything to do.
    const again = replayAll(
      c.image(),
      records.map((record, i) => ({ record, offset: firstOffset + i })),
    );
    expect(again.after).toBe(c.image());
    for (const id of [1, 2, 3]) expect(localChanges(again, id)).toEqual({ lead: [], follow: [], stop: [] });
  });
});
