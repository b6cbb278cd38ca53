import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SeededRandom } from '../../src/common/random.js';
import { Controller, type ShutdownKind } from '../../src/metadata/controller.js';
import { MetadataImage, type PartitionImage, replayAll } from '../../src/metadata/image.js';
import type { MetadataRecord } from '../../src/metadata/records.js';

/**
 * Eligible leader replicas and the unclean-restart rule (KIP-966), through the real controller and
 * image: which replicas may lead once no in-sync one can, and how a broker that may have lost
 * acknowledged writes is kept from leading with less than was committed.
 *
 * The rule each test guards: a replica may lead only if it holds every committed record. An
 * in-sync replica does; so does one that left the in-sync set while the set was smaller than
 * `min.insync.replicas` (the high watermark stood still from then on); a broker whose machine went
 * down (asynchronous flush) or whose data directory is new may not, until it has caught up.
 */
const SESSION_MS = 9_000;

function setup(brokerIds: number[], level = 3) {
  const clock = new ManualClock();
  const controller = new Controller({ sessionTimeoutMs: SESSION_MS }, { clock, random: new SeededRandom(7) });
  let image = MetadataImage.EMPTY;
  const written: MetadataRecord[] = [];
  const apply = (records: MetadataRecord[]) => {
    const delta = replayAll(
      image,
      records.map((record, i) => ({ record, offset: image.lastOffset + 1 + i })),
    );
    expect(delta.ignored).toEqual([]);
    written.push(...records);
    image = delta.after;
  };
  apply([
    { type: 'clusterId', version: 0, clusterId: 'cluster-a' },
    { type: 'featureLevel', version: 0, name: 'metadata.version', level },
  ]);
  const register = (brokerId: number, shutdown: ShutdownKind = 'clean', n = 0) => {
    apply(
      controller.registerBroker(image, {
        brokerId,
        incarnationId: `incarnation-${brokerId}-${n}`,
        endpoints: [{ name: 'public', host: '127.0.0.1', port: 9000 + brokerId }],
        rack: null,
        shutdown,
      }),
    );
  };
  const unfence = (brokerId: number) => {
    const epoch = image.broker(brokerId)!.brokerEpoch;
    apply(controller.heartbeat(image, { brokerId, brokerEpoch: epoch, caughtUp: true }));
  };
  for (const id of brokerIds) {
    register(id);
    unfence(id);
  }
  /** Topic `t`, one partition on brokers 1..replicationFactor in that order, every one in sync. */
  const createTopic = (configs: Record<string, string>, replicationFactor = 3) => {
    const topicId = 'AAAAAAAAAAAAAAAAAAAAAQ';
    const replicas = brokerIds.slice(0, replicationFactor);
    apply([
      { type: 'topic', version: 0, name: 't', topicId },
      {
        type: 'partition',
        version: 0,
        topicId,
        partition: 0,
        replicas,
        isr: replicas,
        leader: replicas[0]!,
        leaderEpoch: 0,
        partitionEpoch: 0,
      },
      ...Object.entries(configs).map(
        ([name, value]): MetadataRecord => ({
          type: 'config',
          version: 0,
          resource: { type: 'topic', name: 't' },
          name,
          value,
        }),
      ),
    ]);
    return topicId;
  };
  const partition = (): PartitionImage => image.topic('t')!.partitions.get(0)!;
  /** The leader asks for a new in-sync set, as its ISR manager would. */
  const setIsr = (isr: number[]) => {
    const p = partition();
    apply(
      controller.alterPartition(image, {
        brokerId: p.leader,
        brokerEpoch: image.broker(p.leader)!.brokerEpoch,
        topicId: p.topicId,
        partition: 0,
        leaderEpoch: p.leaderEpoch,
        partitionEpoch: p.partitionEpoch,
        isr,
      }),
    );
  };
  /** Every broker but `silent` heartbeats; then the session of `silent` runs out. */
  const expire = (silent: number) => {
    clock.advance(SESSION_MS + 1);
    for (const b of image.brokers.values())
      if (b.brokerId !== silent && !b.fenced)
        apply(
          controller.heartbeat(image, { brokerId: b.brokerId, brokerEpoch: b.brokerEpoch, caughtUp: true }),
        );
    apply(controller.fenceExpired(image));
  };
  return {
    controller,
    apply,
    image: () => image,
    written,
    register,
    unfence,
    createTopic,
    partition,
    setIsr,
    expire,
  };
}

/** Leader, ISR and ELR of partition 0 of `t` (the sets sorted). */
const state = (p: PartitionImage) => ({
  leader: p.leader,
  isr: [...p.isr].sort(),
  elr: [...p.elr].sort(),
});

describe('eligible leader replicas', () => {
  it('a replica that leaves an in-sync set smaller than min.insync.replicas becomes eligible, and may lead', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '2' });
    expect(c.partition().leader).toBe(1);
    // 3 falls behind: the set is still at the minimum, so the high watermark goes on without 3.
    c.setIsr([1, 2]);
    expect(state(c.partition())).toEqual({ leader: 1, isr: [1, 2], elr: [] });
    // 2 falls behind: the set is below the minimum, the high watermark stops, 2 holds all of it.
    c.setIsr([1]);
    expect(state(c.partition())).toEqual({ leader: 1, isr: [1], elr: [2] });
    // The leader is lost: 2 leads from the eligible set, alone in sync; 1, the last in-sync
    // replica, held everything too and becomes eligible.
    c.expire(1);
    expect(state(c.partition())).toEqual({ leader: 2, isr: [2], elr: [1] });
    expect(c.partition().leaderEpoch).toBe(1);
  });

  it('a replica that left an in-sync set at the minimum is not eligible: the partition waits for its in-sync replica', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '1' });
    c.setIsr([1, 2]);
    c.setIsr([1]);
    // With a minimum of 1 the high watermark moved on with 1 alone: 2 and 3 may lack records.
    expect(c.partition().elr).toEqual([]);
    c.expire(1);
    expect(state(c.partition())).toEqual({ leader: -1, isr: [1], elr: [] });
    // 1 returns cleanly: it leads again with everything.
    c.register(1, 'clean', 1);
    c.unfence(1);
    expect(state(c.partition())).toEqual({ leader: 1, isr: [1], elr: [] });
  });

  it('a set that reaches min.insync.replicas again has no eligible replicas (the high watermark moves again)', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '2' });
    c.setIsr([1]);
    expect(c.partition().elr).toEqual([2, 3]);
    // 2 catches up and joins: it leaves the eligible set by being in sync; 3 is no longer sure to
    // hold what the set of two commits from now on.
    c.setIsr([1, 2]);
    expect(state(c.partition())).toEqual({ leader: 1, isr: [1, 2], elr: [] });
  });

  it('a lower min.insync.replicas takes the eligibility away in the same entry', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '2' });
    c.setIsr([1]);
    expect(c.partition().elr).toEqual([2, 3]);
    c.apply(c.controller.alterConfigs(c.image(), 't', { 'min.insync.replicas': '1' }));
    expect(c.partition().elr).toEqual([]);
  });

  it('fewer replicas than min.insync.replicas: the high watermark moves regardless, nothing is eligible', () => {
    const c = setup([1, 2]);
    c.createTopic({ 'min.insync.replicas': '3' }, 2);
    c.setIsr([1]);
    expect(c.partition().elr).toEqual([]);
  });

  it('writes no version 2 record below metadata.version 3', () => {
    const c = setup([1, 2, 3], 2);
    c.createTopic({ 'min.insync.replicas': '2' });
    c.setIsr([1]);
    c.expire(1);
    c.register(1, 'unclean', 1);
    expect(c.written.filter((r) => r.version === 2)).toEqual([]);
    expect(c.partition().elr).toEqual([]);
  });
});

describe('the unclean-restart rule', () => {
  it('the last in-sync replica back after its machine went down (async flush) does not lead again', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '1' });
    c.setIsr([1]);
    c.expire(1);
    expect(state(c.partition())).toEqual({ leader: -1, isr: [1], elr: [] });
    c.register(1, 'unclean', 1);
    expect(state(c.partition())).toEqual({ leader: -1, isr: [], elr: [] });
    c.unfence(1);
    // Offline rather than led by a replica that may lack acknowledged records.
    expect(state(c.partition())).toEqual({ leader: -1, isr: [], elr: [] });
  });

  it('the same restart with flush.policy=sync keeps its place: its records were on disk before it counted them', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '1', 'flush.policy': '"sync"' });
    c.setIsr([1]);
    c.expire(1);
    c.register(1, 'unclean', 1);
    c.unfence(1);
    expect(state(c.partition())).toEqual({ leader: 1, isr: [1], elr: [] });
  });

  it('a new data directory leaves every in-sync set, whatever the flush policy', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '1', 'flush.policy': '"sync"' });
    c.setIsr([1]);
    c.expire(1);
    c.register(1, 'new', 1);
    c.unfence(1);
    expect(state(c.partition())).toEqual({ leader: -1, isr: [], elr: [] });
  });

  it('an eligible replica back unclean is no longer eligible; one back clean still is', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '2' });
    c.setIsr([1]);
    expect(c.partition().elr).toEqual([2, 3]);
    c.expire(2);
    c.register(2, 'unclean', 1);
    expect(c.partition().elr).toEqual([3]);
    c.expire(3);
    c.register(3, 'clean', 1);
    expect(c.partition().elr).toEqual([3]);
    // The leader goes; 3, eligible and back, leads; 2 does not.
    c.unfence(2);
    c.unfence(3);
    c.expire(1);
    expect(state(c.partition())).toEqual({ leader: 3, isr: [3], elr: [1] });
  });

  it('the last in-sync replica back unclean hands the partition to an eligible replica', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '2' });
    c.setIsr([1]);
    c.expire(2);
    c.expire(3);
    c.expire(1);
    expect(state(c.partition())).toEqual({ leader: -1, isr: [1], elr: [2, 3] });
    c.register(2, 'clean', 1);
    c.unfence(2);
    expect(state(c.partition())).toEqual({ leader: 2, isr: [2], elr: [1, 3] });
    // 1 comes back unclean: out of the eligible set too.
    c.register(1, 'unclean', 1);
    expect(state(c.partition())).toEqual({ leader: 2, isr: [2], elr: [3] });
  });

  it('a broker that restarts unclean within its session leaves its leaderships and every in-sync set', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '2' });
    // Registered again before the controller noticed: the new incarnation may lack what it held.
    c.register(1, 'unclean', 1);
    const p = c.partition();
    expect(p.leader).toBe(2);
    expect(p.isr).toEqual([2, 3]);
    expect(p.elr).toEqual([]);
  });

  it('a partition with one replica keeps it after an unclean restart: no other copy could hold more', () => {
    const c = setup([1]);
    c.createTopic({}, 1);
    c.expire(1);
    c.register(1, 'new', 1);
    c.unfence(1);
    expect(state(c.partition())).toEqual({ leader: 1, isr: [1], elr: [] });
  });
});

describe('unclean.leader.election.enable', () => {
  it('off (the default), an offline partition stays offline; turned on, the first live replica leads, nothing eligible after it', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '1' });
    c.setIsr([1]);
    c.expire(1);
    c.register(1, 'unclean', 1);
    c.unfence(1);
    expect(c.partition().leader).toBe(-1);
    c.apply(c.controller.alterConfigs(c.image(), 't', { 'unclean.leader.election.enable': 'true' }));
    expect(state(c.partition())).toEqual({ leader: 1, isr: [1], elr: [] });
  });

  it('on, an eligible or in-sync replica is still preferred to an out-of-sync one', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '2', 'unclean.leader.election.enable': 'true' });
    c.setIsr([1, 2]);
    c.setIsr([1]);
    expect(c.partition().elr).toEqual([2]);
    c.expire(1);
    // 3 is first of the live out-of-sync replicas, but 2 is eligible.
    expect(c.partition().leader).toBe(2);
  });
});

describe('a partition log gone offline on a storage error', () => {
  const offline = (
    c: ReturnType<typeof setup>,
    brokerId: number,
    epoch = c.image().broker(brokerId)!.brokerEpoch,
  ) =>
    c.controller.offlineReplicas(c.image(), {
      brokerId,
      brokerEpoch: epoch,
      partitions: [{ topicId: c.partition().topicId, partition: 0 }],
    });

  it('moves the leadership to another in-sync replica and takes the broker out of the set', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '2' });
    c.apply(offline(c, 1));
    expect(state(c.partition())).toEqual({ leader: 2, isr: [2, 3], elr: [] });
    expect(c.partition().leaderEpoch).toBe(1);
    // Reported again (a retry): nothing left to change.
    expect(offline(c, 1)).toEqual([]);
  });

  it('the last in-sync replica keeps its place, leaderless, to lead again after a restart', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({ 'min.insync.replicas': '1' });
    c.setIsr([1]);
    c.apply(offline(c, 1));
    expect(state(c.partition())).toEqual({ leader: -1, isr: [1], elr: [] });
    expect(offline(c, 1)).toEqual([]);
  });

  it('refuses a stale broker epoch, and ignores unknown partitions', () => {
    const c = setup([1, 2, 3]);
    c.createTopic({});
    expect(() => offline(c, 1, 999)).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(
      c.controller.offlineReplicas(c.image(), {
        brokerId: 1,
        brokerEpoch: c.image().broker(1)!.brokerEpoch,
        partitions: [{ topicId: 'AAAAAAAAAAAAAAAAAAAAAg', partition: 0 }],
      }),
    ).toEqual([]);
  });
});
