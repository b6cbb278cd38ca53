import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { isSluiceError } from '../../src/common/errors.js';
import { PartitionReplica } from '../../src/replication/replica.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf } from '../storage/helpers.js';

/**
 * A replicated partition's rules on its leader, with followers played by calls: the high
 * watermark over the in-sync set (Kafka's Partition.maybeIncrementLeaderHW), acks=all waits, and
 * the in-sync set's shrink and expansion (maybeShrinkIsr, maybeExpandIsr).
 */
const LAG_MS = 1000;

/** An empty partition log on a simulated disk. */
function emptyLog(clock: ManualClock): Promise<PartitionLog> {
  return PartitionLog.open({ dir: '/d/t-0', config: {} }, { fs: new SimulatedFileSystem(), clock });
}

async function leaderOf3(options: { minInsync?: number } = {}) {
  const clock = new ManualClock();
  const log = await emptyLog(clock);
  const replica = new PartitionReplica(
    {
      topic: 't',
      partition: 0,
      nodeId: 1,
      replicas: [1, 2, 3],
      isr: [1, 2, 3],
      leader: 1,
      leaderEpoch: 0,
      nowMs: 0,
    },
    { log },
  );
  replica.setMinInsync(options.minInsync ?? 1);
  const append = async (n: number) => {
    for (let i = 0; i < n; i++) await replica.appendAsLeader(batchOf([`v${log.logEndOffset}`]));
  };
  const timers = (fn: () => void, ms: number) => clock.setTimeout(fn, ms);
  return { clock, log, replica, append, timers };
}

async function outcome(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return isSluiceError(error) ? error.code : String(error);
  }
}

describe('a replicated partition on its leader', () => {
  it('exposes only what every in-sync replica holds: the lowest log end over the set, never going back', async () => {
    const { replica, append } = await leaderOf3();
    await append(10);
    expect(replica.highWatermark).toBe(0);
    replica.followerFetched(2, 10, 1);
    expect(replica.highWatermark).toBe(0);
    replica.followerFetched(3, 4, 1);
    expect(replica.highWatermark).toBe(4);
    replica.followerFetched(3, 10, 2);
    expect(replica.highWatermark).toBe(10);
    // A follower that fetches from an earlier offset (it truncated) never pulls it back.
    replica.followerFetched(2, 3, 3);
    expect(replica.highWatermark).toBe(10);
    // Reads stop at it.
    await append(5);
    const read = await replica.read(0, { maxBytes: 1 << 20 });
    expect(read.nextOffset).toBe(10);
  });

  it('counts a proposed in-sync set with the committed one until the controller decides', async () => {
    const { replica, append } = await leaderOf3();
    await append(10);
    replica.followerFetched(2, 10, 1);
    replica.followerFetched(3, 2, 1);
    expect(replica.highWatermark).toBe(2);
    // Shrinking away the slow follower 3: until committed, it still holds the high watermark back.
    replica.proposeIsr([1, 2]);
    expect(replica.highWatermark).toBe(2);
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1, 2] }, 5);
    expect(replica.proposedIsr).toBeUndefined();
    expect(replica.highWatermark).toBe(10);
  });

  it('holds the high watermark while the in-sync set is smaller than min.insync.replicas', async () => {
    const { replica, append } = await leaderOf3({ minInsync: 2 });
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1] }, 0);
    await append(5);
    expect(replica.highWatermark).toBe(0);
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 2, replicas: [1, 2, 3], isr: [1, 2] }, 0);
    replica.followerFetched(2, 5, 1);
    expect(replica.highWatermark).toBe(5);
  });

  it('answers an acks=all append once replicated, or says why not: the set fell under the minimum, the leadership moved, time ran out', async () => {
    const { replica, append, timers, clock } = await leaderOf3({ minInsync: 2 });
    await append(3);
    const replicated = replica.waitForHighWatermark(3, { timeoutMs: 5000, setTimeout: timers });
    replica.followerFetched(2, 3, 1);
    replica.followerFetched(3, 3, 1);
    expect(await outcome(replicated)).toBe('resolved');

    await append(1);
    const shrunk = replica.waitForHighWatermark(4, { timeoutMs: 5000, setTimeout: timers });
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1] }, 2);
    expect(await outcome(shrunk)).toBe('NOT_ENOUGH_REPLICAS_AFTER_APPEND');

    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 2, replicas: [1, 2, 3], isr: [1, 2, 3] }, 2);
    const late = replica.waitForHighWatermark(4, { timeoutMs: 100, setTimeout: timers });
    clock.advance(101);
    expect(await outcome(late)).toBe('REQUEST_TIMED_OUT');

    const moved = replica.waitForHighWatermark(4, { timeoutMs: 5000, setTimeout: timers });
    replica.setRole({ leader: 2, leaderEpoch: 1, partitionEpoch: 3, replicas: [1, 2, 3], isr: [2, 3] }, 3);
    expect(await outcome(moved)).toBe('NOT_LEADER_OR_FOLLOWER');
    expect(await outcome(Promise.resolve().then(() => replica.appendAsLeader(batchOf(['x']))))).toBe(
      'NOT_LEADER_OR_FOLLOWER',
    );
  });

  it('drops a follower not caught up within the lag time, and takes it back once at the high watermark and the epoch start', async () => {
    const { replica, append } = await leaderOf3();
    const live = () => true;
    await append(10);
    replica.followerFetched(2, 10, 100);
    replica.followerFetched(3, 10, 100);
    expect(replica.isrChange(100 + LAG_MS, LAG_MS, live)).toBeUndefined();
    // 3 stops fetching; 2 keeps up.
    await append(5);
    replica.followerFetched(2, 15, 900);
    expect(replica.isrChange(100 + LAG_MS + 1, LAG_MS, live)).toEqual([1, 2]);
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1, 2] }, 1200);
    expect(replica.highWatermark).toBe(15);
    // Behind the high watermark it stays out; at it, it joins; a fenced broker never joins.
    replica.followerFetched(3, 12, 1300);
    expect(replica.isrChange(1300, LAG_MS, live)).toBeUndefined();
    replica.followerFetched(3, 15, 1400);
    expect(replica.isrChange(1400, LAG_MS, () => false)).toBeUndefined();
    expect(replica.isrChange(1400, LAG_MS, live)).toEqual([1, 2, 3]);
  });

  it('counts a follower caught up when it reaches the log end the leader had at its previous fetch', async () => {
    const { replica, append } = await leaderOf3();
    await append(10);
    replica.followerFetched(2, 10, 0);
    replica.followerFetched(3, 10, 0);
    // Records keep arriving, so follower 2 is never at the very end when it fetches, but each
    // fetch reaches the end of the one before: it is caught up as of its previous fetch.
    for (let t = 1; t <= 5; t++) {
      await append(2);
      replica.followerFetched(2, 10 + 2 * (t - 1) + 0, t * 400);
      replica.followerFetched(3, replica.logEndOffset, t * 400);
    }
    expect(replica.isrChange(5 * 400, LAG_MS, () => true)).toBeUndefined();
  });
});

describe('a leader cut off from the controller', () => {
  it('refuses appends and reads once it may have been replaced, and takes them again when it may lead', async () => {
    const log = await emptyLog(new ManualClock());
    let lease = true;
    const replica = new PartitionReplica(
      { topic: 't', partition: 0, nodeId: 1, replicas: [1], leaderEpoch: 0, canLead: () => lease },
      { log },
    );
    await replica.appendAsLeader(batchOf(['kept']));
    lease = false;
    expect(await outcome(Promise.resolve().then(() => replica.appendAsLeader(batchOf(['lost']))))).toBe(
      'NOT_LEADER_OR_FOLLOWER',
    );
    expect(await outcome(Promise.resolve().then(() => replica.read(0, { maxBytes: 1024 })))).toBe(
      'NOT_LEADER_OR_FOLLOWER',
    );
    expect(log.logEndOffset).toBe(1);
    lease = true;
    await replica.appendAsLeader(batchOf(['again']));
    expect(log.logEndOffset).toBe(2);
  });
});

describe('a new leader of a replicated partition', () => {
  it('answers OFFSET_NOT_AVAILABLE until its high watermark reaches its epoch start', async () => {
    const log = await emptyLog(new ManualClock());
    for (let i = 0; i < 5; i++) await log.append(batchOf([`v${i}`]), { assignOffsets: true, leaderEpoch: 0 });
    // It followed at epoch 0 with a high watermark of 3, and now leads at epoch 1.
    const replica = new PartitionReplica(
      {
        topic: 't',
        partition: 0,
        nodeId: 2,
        replicas: [1, 2, 3],
        isr: [1, 2, 3],
        leader: 1,
        leaderEpoch: 0,
        highWatermark: 3,
      },
      { log },
    );
    replica.setRole({ leader: 2, leaderEpoch: 1, partitionEpoch: 1, replicas: [1, 2, 3], isr: [2, 3] }, 0);
    expect(replica.epochStartOffset).toBe(5);
    expect(await outcome(Promise.resolve().then(() => replica.read(0, { maxBytes: 1024 })))).toBe(
      'OFFSET_NOT_AVAILABLE',
    );
    replica.followerFetched(3, 5, 1);
    expect(replica.highWatermark).toBe(5);
    const read = await replica.read(0, { maxBytes: 1 << 20 });
    expect(read.nextOffset).toBe(5);
  });
});
