import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { isSluiceError, type SluiceError } from '../../src/common/errors.js';
import { splitBatches } from '../../src/protocol/batch.js';
import { DEFAULT_LOG_CONFIG } from '../../src/protocol/topic-config.js';
import { divergingEpoch, type EpochEnd, truncationOffset } from '../../src/replication/divergence.js';
import { enoughInSync, highWatermarkOf } from '../../src/replication/isr.js';
import { PartitionReplica, type PartitionReplicaOptions } from '../../src/replication/replica.js';
import { ReplicaManager } from '../../src/replication/replica-manager.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf } from '../storage/helpers.js';

/**
 * The rules of src/replication/ one by one, each at its boundary (the tests mutation testing asked
 * for, stryker/replication.config.mjs): the high watermark over the in-sync set and never going
 * back, min.insync.replicas, the leader-epoch checks of KIP-320, who may be asked for what, the
 * caught-up rule and the in-sync set's shrink and expansion, acks=all waits, and where a follower
 * truncates (KIP-101, KIP-279).
 */

/** A leader-epoch cache over `[epoch, startOffset]` pairs ending at `logEnd`, as PartitionLog answers. */
function epochs(starts: readonly [number, number][], logEnd: number): EpochEnd {
  return (asked) => {
    let found: number | undefined;
    for (let i = 0; i < starts.length; i++) if (starts[i]![0] <= asked) found = i;
    if (found === undefined) return undefined;
    const next = starts[found + 1];
    return { epoch: starts[found]![0], endOffset: next ? next[1] : logEnd };
  };
}

function emptyLog(clock = new ManualClock()): Promise<PartitionLog> {
  return PartitionLog.open({ dir: '/d/t-0', config: {} }, { fs: new SimulatedFileSystem(), clock });
}

async function logOf(n: number, clock = new ManualClock()): Promise<PartitionLog> {
  const log = await emptyLog(clock);
  for (let i = 0; i < n; i++) await log.append(batchOf([`v${i}`]), { assignOffsets: true, leaderEpoch: 0 });
  return log;
}

function replicaOver(log: PartitionLog, options: Partial<PartitionReplicaOptions> = {}): PartitionReplica {
  return new PartitionReplica(
    {
      topic: 't',
      partition: 0,
      nodeId: 1,
      replicas: [1, 2, 3],
      isr: [1, 2, 3],
      leader: 1,
      leaderEpoch: 0,
      nowMs: 0,
      ...options,
    },
    { log },
  );
}

function refusalOf(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (error) {
    if (isSluiceError(error)) return error;
    throw error;
  }
  throw new Error('expected a refusal, the call succeeded');
}

async function outcome(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return isSluiceError(error) ? error.code : String(error);
  }
}

describe('isr.ts: the high watermark and min.insync.replicas as pure rules', () => {
  it('the high watermark is the lowest log end over the in-sync set, never below the current one', () => {
    expect(highWatermarkOf(0, [7, 3, 5])).toBe(3);
    expect(highWatermarkOf(0, [3, 7])).toBe(3);
    expect(highWatermarkOf(4, [3, 7])).toBe(4);
    expect(highWatermarkOf(2, [9])).toBe(9);
  });

  it('acks=all may be appended with exactly min.insync.replicas in sync, not one fewer', () => {
    expect(enoughInSync(2, 2)).toBe(true);
    expect(enoughInSync(3, 2)).toBe(true);
    expect(enoughInSync(1, 2)).toBe(false);
  });
});

describe('divergence.ts: where a follower parts from its leader (KIP-101, KIP-279, KIP-595)', () => {
  // Leader: epoch 0 at 0, epoch 2 at 10, epoch 5 at 20, log end 30.
  const leader = epochs(
    [
      [0, 0],
      [2, 10],
      [5, 20],
    ],
    30,
  );

  it('an empty follower, or one that knows no epoch, agrees with any leader', () => {
    expect(divergingEpoch(leader, -1, 12)).toBeUndefined();
    expect(divergingEpoch(leader, 2, 0)).toBeUndefined();
  });

  it('a follower whose last epoch ends at or before the leader’s end of it agrees', () => {
    expect(divergingEpoch(leader, 2, 20)).toBeUndefined();
    expect(divergingEpoch(leader, 2, 15)).toBeUndefined();
    expect(divergingEpoch(leader, 5, 30)).toBeUndefined();
  });

  it('a follower past the leader’s end of its epoch diverges there, by one offset', () => {
    expect(divergingEpoch(leader, 2, 21)).toEqual({ epoch: 2, endOffset: 20 });
  });

  it('an epoch the leader never had is answered with the largest one below it and its end', () => {
    expect(divergingEpoch(leader, 3, 12)).toEqual({ epoch: 2, endOffset: 20 });
  });

  it('a leader with no epoch at or below the asked one answers epoch -1', () => {
    const late = epochs([[4, 0]], 10);
    expect(divergingEpoch(late, 2, 5)).toEqual({ epoch: -1, endOffset: -1 });
  });

  const follower = { logStartOffset: 2, logEndOffset: 25, highWatermark: 8 };

  it('a leader that knows no such epoch leaves the follower its high watermark (committed below it)', () => {
    expect(truncationOffset({ epoch: -1, endOffset: -1 }, epochs([[0, 0]], 25), follower)).toBe(8);
  });

  it('a follower with the same epoch truncates to the sooner of the two ends', () => {
    const own = epochs(
      [
        [0, 0],
        [2, 10],
        [3, 18],
      ],
      25,
    );
    expect(truncationOffset({ epoch: 2, endOffset: 15 }, own, follower)).toBe(15);
    expect(truncationOffset({ epoch: 2, endOffset: 20 }, own, follower)).toBe(18);
  });

  it('a follower with only a smaller epoch truncates to its own end of that one', () => {
    const own = epochs(
      [
        [0, 0],
        [1, 6],
        [4, 12],
      ],
      25,
    );
    expect(truncationOffset({ epoch: 3, endOffset: 20 }, own, follower)).toBe(12);
  });

  it('a follower with no epoch that low truncates to its log start, never below it nor above its end', () => {
    expect(truncationOffset({ epoch: 1, endOffset: 5 }, epochs([[3, 2]], 25), follower)).toBe(2);
    expect(truncationOffset({ epoch: 3, endOffset: 40 }, epochs([[3, 2]], 25), follower)).toBe(25);
    expect(
      truncationOffset({ epoch: -1, endOffset: -1 }, epochs([[3, 2]], 25), { ...follower, highWatermark: 0 }),
    ).toBe(2);
    expect(
      truncationOffset({ epoch: -1, endOffset: -1 }, epochs([[3, 2]], 25), {
        ...follower,
        highWatermark: 30,
      }),
    ).toBe(25);
  });
});

describe('a replica: what it knows at start', () => {
  it('is one of its partition’s replicas, or is refused', async () => {
    const log = await emptyLog();
    expect(() => replicaOver(log, { nodeId: 4 })).toThrow(/one of its partition replicas/);
  });

  it('a partition with one replica starts at its log end; a replicated one at 0 or its checkpoint, capped at the log end', async () => {
    const log = await logOf(5);
    const alone = new PartitionReplica(
      { topic: 't', partition: 0, nodeId: 1, replicas: [1], leaderEpoch: 0 },
      { log },
    );
    expect(alone.highWatermark).toBe(5);
    expect(alone.leaderId).toBe(1);
    expect(alone.inSyncReplicas).toEqual([1]);
    expect(alone.partitionEpoch).toBe(0);
    expect(replicaOver(log).highWatermark).toBe(0);
    expect(replicaOver(log, { highWatermark: 3 }).highWatermark).toBe(3);
    expect(replicaOver(log, { highWatermark: 9 }).highWatermark).toBe(5);
    expect(replicaOver(log, { partitionEpoch: 6 }).partitionEpoch).toBe(6);
    expect(replicaOver(log).epochStartOffset).toBe(5);
  });

  it('a new leader knows no follower’s position: each is -1 with a full lag window from now', async () => {
    const log = await logOf(2);
    const replica = replicaOver(log, { nowMs: 500 });
    expect(replica.followerEnds()).toEqual([
      { id: 2, logEndOffset: -1, lastCaughtUpMs: 500 },
      { id: 3, logEndOffset: -1, lastCaughtUpMs: 500 },
    ]);
    expect(replica.isrChange(500 + 1000, 1000, () => true)).toBeUndefined();
    expect(replica.isrChange(500 + 1001, 1000, () => true)).toEqual([1]);
    // A follower knows no followers.
    expect(replicaOver(log, { leader: 2 }).followerEnds()).toEqual([]);
  });
});

describe('a replica: who may be asked for what', () => {
  it('checks a client’s leader epoch as KIP-320 does: older is fenced, newer unknown, absent or equal passes', async () => {
    const replica = replicaOver(await emptyLog(), { leaderEpoch: 4 });
    expect(() => replica.checkLeaderEpoch(undefined)).not.toThrow();
    expect(() => replica.checkLeaderEpoch(4)).not.toThrow();
    const fenced = refusalOf(() => replica.checkLeaderEpoch(3));
    expect(fenced.code).toBe('FENCED_LEADER_EPOCH');
    expect(fenced.details).toEqual({ topic: 't', partition: 0, leaderEpoch: 4 });
    const unknown = refusalOf(() => replica.checkLeaderEpoch(5));
    expect(unknown.code).toBe('UNKNOWN_LEADER_EPOCH');
    expect(unknown.details).toEqual({ topic: 't', partition: 0, leaderEpoch: 4 });
  });

  it('a follower names the leader (NOT_LEADER_OR_FOLLOWER); a partition without one is LEADER_NOT_AVAILABLE', async () => {
    const log = await emptyLog();
    const follower = replicaOver(log, { leader: 2 });
    expect(follower.isLeader).toBe(false);
    const notLeader = refusalOf(() => follower.requireLeader());
    expect(notLeader.code).toBe('NOT_LEADER_OR_FOLLOWER');
    expect(notLeader.details).toEqual({ topic: 't', partition: 0, leader: 2 });
    const none = replicaOver(log, { leader: -1 });
    expect(refusalOf(() => none.requireLeader()).code).toBe('LEADER_NOT_AVAILABLE');
    expect(refusalOf(() => none.requireReadable()).code).toBe('LEADER_NOT_AVAILABLE');
    // Leader 0 is a node like any other.
    const zero = new PartitionReplica(
      { topic: 't', partition: 0, nodeId: 1, replicas: [0, 1], isr: [0, 1], leader: 0, leaderEpoch: 0 },
      { log },
    );
    expect(refusalOf(() => zero.requireLeader()).code).toBe('NOT_LEADER_OR_FOLLOWER');
  });

  it('a single-replica leader reads at once; a new replicated leader only from its epoch start on', async () => {
    const log = await logOf(3);
    const alone = new PartitionReplica(
      { topic: 't', partition: 0, nodeId: 1, replicas: [1], leaderEpoch: 1 },
      { log },
    );
    expect(() => alone.requireReadable()).not.toThrow();
    const replicated = replicaOver(log, { highWatermark: 3 });
    expect(() => replicated.requireReadable()).not.toThrow();
    const behind = replicaOver(log, { highWatermark: 2 });
    expect(refusalOf(() => behind.requireReadable()).code).toBe('OFFSET_NOT_AVAILABLE');
  });

  it('refuses acks=all below min.insync.replicas with the counts, and takes it at the minimum', async () => {
    const replica = replicaOver(await emptyLog(), { isr: [1, 2] });
    expect(() => replica.checkEnoughReplicas(2)).not.toThrow();
    const refused = refusalOf(() => replica.checkEnoughReplicas(3));
    expect(refused.code).toBe('NOT_ENOUGH_REPLICAS');
    expect(refused.details).toEqual({ isr: 2, minInSyncReplicas: 3 });
  });

  it('stamps every appended batch with its leader epoch; reads stop at the high watermark', async () => {
    const log = await emptyLog();
    const replica = new PartitionReplica(
      { topic: 't', partition: 0, nodeId: 1, replicas: [1], leaderEpoch: 7 },
      { log },
    );
    const appended = await replica.appendAsLeader(batchOf(['a', 'b']));
    expect(appended.baseOffset).toBe(0);
    await replica.appendAsLeader(batchOf(['c']), { crcChecked: true });
    expect(log.latestEpoch).toBe(7);
    const read = await replica.read(0, { maxBytes: 1 << 20 });
    const batches = splitBatches(read.data);
    expect(batches.map((b) => b.header.partitionLeaderEpoch)).toEqual([7, 7]);
    expect(read.nextOffset).toBe(3);
  });
});

describe('a replica: leadership changes', () => {
  it('ignores a role at an older leader epoch (replayed changes never go back)', async () => {
    const replica = replicaOver(await emptyLog(), { leaderEpoch: 3 });
    replica.setRole({ leader: 2, leaderEpoch: 2, replicas: [1, 2, 3], isr: [2] });
    expect(replica.leaderId).toBe(1);
    expect(replica.leaderEpoch).toBe(3);
    expect(replica.inSyncReplicas).toEqual([1, 2, 3]);
  });

  it('the same leadership at a new partition epoch keeps what followers said; a new leader epoch forgets it', async () => {
    const log = await logOf(4);
    const replica = replicaOver(log);
    replica.followerFetched(2, 4, 10);
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1, 2] }, 20);
    expect(replica.followerEnds().find((f) => f.id === 2)?.logEndOffset).toBe(4);
    expect(replica.partitionEpoch).toBe(1);
    // A role without a partition epoch keeps the one held.
    replica.setRole({ leader: 1, leaderEpoch: 0, replicas: [1, 2, 3], isr: [1, 2] }, 20);
    expect(replica.partitionEpoch).toBe(1);
    await log.append(batchOf(['x']), { assignOffsets: true, leaderEpoch: 1 });
    replica.setRole({ leader: 1, leaderEpoch: 1, partitionEpoch: 2, replicas: [1, 2, 3], isr: [1, 2] }, 30);
    expect(replica.followerEnds()).toEqual([
      { id: 2, logEndOffset: -1, lastCaughtUpMs: 30 },
      { id: 3, logEndOffset: -1, lastCaughtUpMs: 30 },
    ]);
    expect(replica.epochStartOffset).toBe(5);
  });

  it('a leader that stays leader at a new epoch keeps its acks=all waiters; one that becomes follower fails them', async () => {
    const clock = new ManualClock();
    const log = await logOf(2);
    const replica = replicaOver(log, { isr: [1, 2] });
    const timers = (fn: () => void, ms: number) => clock.setTimeout(fn, ms);
    const kept = replica.waitForHighWatermark(2, { timeoutMs: 5000, setTimeout: timers });
    replica.setRole({ leader: 1, leaderEpoch: 1, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1, 2] }, 0);
    replica.followerFetched(2, 2, 1);
    expect(await outcome(kept)).toBe('resolved');
    expect(clock.pendingTimers()).toBe(0);
    await log.append(batchOf(['y']), { assignOffsets: true, leaderEpoch: 1 });
    const failed = replica.waitForHighWatermark(3, { timeoutMs: 5000, setTimeout: timers });
    replica.setRole({ leader: 2, leaderEpoch: 2, partitionEpoch: 2, replicas: [1, 2, 3], isr: [2] }, 2);
    expect(await outcome(failed)).toBe('NOT_LEADER_OR_FOLLOWER');
    expect(clock.pendingTimers()).toBe(0);
  });

  it('a follower that becomes leader has no waiters to fail, and a follower taking a follower role changes nothing for them', async () => {
    const clock = new ManualClock();
    const log = await logOf(2, clock);
    const replica = replicaOver(log, { leader: 2 });
    replica.setRole({ leader: 3, leaderEpoch: 1, partitionEpoch: 1, replicas: [1, 2, 3], isr: [3] }, 0);
    expect(replica.leaderId).toBe(3);
    replica.setRole({ leader: 1, leaderEpoch: 2, partitionEpoch: 2, replicas: [1, 2, 3], isr: [1] }, 0);
    expect(replica.isLeader).toBe(true);
    expect(replica.highWatermark).toBe(2);
  });

  it('a committed in-sync set equal to the proposed one (in any order) ends the proposal; another keeps it', async () => {
    const replica = replicaOver(await logOf(3));
    replica.proposeIsr([1, 2]);
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1, 2, 3] }, 0);
    expect(replica.proposedIsr).toEqual([1, 2]);
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 2, replicas: [1, 2, 3], isr: [2, 1] }, 0);
    expect(replica.proposedIsr).toBeUndefined();
    replica.proposeIsr([1, 2, 3]);
    replica.proposeIsr(undefined);
    expect(replica.proposedIsr).toBeUndefined();
  });

  it('a new leadership drops a pending proposal', async () => {
    const replica = replicaOver(await logOf(3));
    replica.proposeIsr([1, 2]);
    replica.setRole({ leader: 1, leaderEpoch: 1, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1, 2, 3] }, 0);
    expect(replica.proposedIsr).toBeUndefined();
  });
});

describe('a replica: the high watermark', () => {
  it('a proposed member that never fetched counts as 0, never as -1', async () => {
    const replica = replicaOver(await logOf(4), { isr: [1] });
    replica.proposeIsr([1, 2]);
    expect(replica.highWatermark).toBe(0);
    replica.followerFetched(2, 4, 1);
    expect(replica.highWatermark).toBe(4);
  });

  it('stands still while the in-sync set is below min.insync.replicas, moves at it', async () => {
    const log = await logOf(4);
    const replica = replicaOver(log, { isr: [1, 2] });
    replica.setMinInsync(3);
    replica.followerFetched(2, 4, 1);
    expect(replica.highWatermark).toBe(0);
    replica.setMinInsync(2);
    replica.followerFetched(2, 4, 2);
    expect(replica.highWatermark).toBe(4);
  });

  it('with fewer replicas than min.insync.replicas, follows the in-sync set regardless', async () => {
    const log = await logOf(4);
    const replica = replicaOver(log, { replicas: [1, 2], isr: [1, 2] });
    replica.setMinInsync(3);
    replica.followerFetched(2, 4, 1);
    expect(replica.highWatermark).toBe(4);
  });

  it('a follower fetch past the leader’s log end counts as the log end', async () => {
    const replica = replicaOver(await logOf(4), { isr: [1, 2] });
    replica.followerFetched(2, 9, 1);
    expect(replica.followerEnds().find((f) => f.id === 2)?.logEndOffset).toBe(4);
    expect(replica.highWatermark).toBe(4);
  });

  it('a fetch from a replica the leader did not know is recorded, with its lag window from now', async () => {
    const replica = replicaOver(await logOf(4), { replicas: [1, 2], isr: [1] });
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1] }, 0);
    replica.followerFetched(3, 2, 50);
    expect(replica.followerEnds().find((f) => f.id === 3)).toEqual({
      id: 3,
      logEndOffset: 2,
      lastCaughtUpMs: 50,
    });
  });

  it('on a follower: the leader’s high watermark capped at its own log end, never back; ignored on a leader', async () => {
    const log = await logOf(5);
    const follower = replicaOver(log, { leader: 2 });
    const seen: number[] = [];
    const unsubscribe = follower.onHighWatermarkAdvance((end) => seen.push(end));
    follower.setFollowerHighWatermark(3);
    expect(follower.highWatermark).toBe(3);
    follower.setFollowerHighWatermark(9);
    expect(follower.highWatermark).toBe(5);
    follower.setFollowerHighWatermark(1);
    expect(follower.highWatermark).toBe(5);
    expect(seen).toEqual([5, 5]);
    unsubscribe();
    follower.truncatedTo(4);
    follower.setFollowerHighWatermark(5);
    expect(seen).toEqual([5, 5]);
    const leader = replicaOver(log);
    leader.setFollowerHighWatermark(4);
    expect(leader.highWatermark).toBe(0);
  });

  it('after a truncation, the high watermark is at most the new log end, and never raised by it', async () => {
    const follower = replicaOver(await logOf(5), { leader: 2, highWatermark: 4 });
    follower.truncatedTo(5);
    expect(follower.highWatermark).toBe(4);
    follower.truncatedTo(2);
    expect(follower.highWatermark).toBe(2);
  });

  it('an acks=all wait already met resolves at once, without a timer; one met later cancels its timer', async () => {
    const clock = new ManualClock();
    const log = await logOf(3);
    const replica = replicaOver(log, { isr: [1, 2], highWatermark: 2 });
    const timers = (fn: () => void, ms: number) => clock.setTimeout(fn, ms);
    expect(await outcome(replica.waitForHighWatermark(2, { timeoutMs: 10, setTimeout: timers }))).toBe(
      'resolved',
    );
    expect(clock.pendingTimers()).toBe(0);
    const first = replica.waitForHighWatermark(3, { timeoutMs: 10, setTimeout: timers });
    const second = replica.waitForHighWatermark(4, { timeoutMs: 10, setTimeout: timers });
    replica.followerFetched(2, 3, 1);
    expect(await outcome(first)).toBe('resolved');
    expect(clock.pendingTimers()).toBe(1);
    clock.advance(10);
    expect(await outcome(second)).toBe('REQUEST_TIMED_OUT');
  });

  it('a set that shrinks but stays at min.insync.replicas keeps its acks=all waiters', async () => {
    const clock = new ManualClock();
    const log = await logOf(3, clock);
    const replica = replicaOver(log);
    replica.setMinInsync(2);
    const timers = (fn: () => void, ms: number) => clock.setTimeout(fn, ms);
    const waiting = replica.waitForHighWatermark(3, { timeoutMs: 100, setTimeout: timers });
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1, 2] }, 0);
    replica.followerFetched(2, 3, 1);
    expect(await outcome(waiting)).toBe('resolved');
  });
});

describe('a replica: the caught-up rule and the in-sync set', () => {
  it('KIP-903: a position a broker reported before it restarted never brings its new incarnation in', async () => {
    const log = await logOf(4);
    const replica = replicaOver(log, { isr: [1, 3] });
    replica.followerFetched(3, 4, 0, 30);
    // Broker 2 fetched up to the log end as incarnation 20, then restarted (registered as 21).
    replica.followerFetched(2, 4, 0, 20);
    const registered = new Map([
      [2, 21],
      [3, 30],
    ]);
    const live = (id: number, epoch: number | undefined) =>
      epoch !== undefined && registered.get(id) === epoch;
    expect(replica.isrChange(10, 1000, live)).toBeUndefined();
    // Its new incarnation's first fetch says where its log really ends: its old position is gone.
    replica.followerFetched(2, 1, 20, 21);
    expect(replica.followerEnds().find((f) => f.id === 2)?.logEndOffset).toBe(1);
    expect(replica.isrChange(20, 1000, live)).toBeUndefined();
    // Caught up as itself, it joins.
    replica.followerFetched(2, 4, 30, 21);
    expect(replica.isrChange(30, 1000, live)).toEqual([1, 2, 3]);
  });

  it("a new incarnation's first fetch restarts the follower's lag window with its own position", async () => {
    const log = await logOf(4);
    const replica = replicaOver(log, { isr: [1, 2, 3] });
    replica.followerFetched(3, 4, 0, 30);
    replica.followerFetched(2, 4, 0, 20);
    replica.followerFetched(2, 0, 500, 21);
    const state = replica.followerEnds().find((f) => f.id === 2)!;
    expect(state).toEqual({ id: 2, logEndOffset: 0, lastCaughtUpMs: 500 });
  });

  it('a follower exactly at the lag limit stays; one past it leaves; the leader always stays', async () => {
    const log = await logOf(4);
    const replica = replicaOver(log);
    replica.followerFetched(2, 4, 100);
    replica.followerFetched(3, 4, 100);
    expect(replica.isrChange(1100, 1000, () => true)).toBeUndefined();
    replica.followerFetched(2, 4, 1101);
    expect(replica.isrChange(1101, 1000, () => true)).toEqual([1, 2]);
  });

  it('a fetch short of both log ends does not count as caught up', async () => {
    const log = await logOf(4);
    const replica = replicaOver(log);
    replica.followerFetched(2, 4, 0);
    replica.followerFetched(3, 4, 0);
    await log.append(batchOf(['a', 'b']), { assignOffsets: true, leaderEpoch: 0 });
    // 3 fetches below the log end it was at at its previous fetch (4): not caught up at either.
    replica.followerFetched(3, 3, 900);
    replica.followerFetched(2, 6, 900);
    expect(replica.followerEnds().find((f) => f.id === 3)?.lastCaughtUpMs).toBe(0);
    // Exactly at the previous fetch's log end: caught up as of the previous fetch.
    replica.followerFetched(3, 6, 950);
    expect(replica.followerEnds().find((f) => f.id === 3)?.lastCaughtUpMs).toBe(950);
  });

  it('caught up as of its previous fetch never moves the caught-up time back', async () => {
    const log = await logOf(4);
    const replica = replicaOver(log);
    replica.followerFetched(2, 4, 500);
    await log.append(batchOf(['a']), { assignOffsets: true, leaderEpoch: 0 });
    replica.followerFetched(2, 4, 600);
    expect(replica.followerEnds().find((f) => f.id === 2)?.lastCaughtUpMs).toBe(500);
    await log.append(batchOf(['b']), { assignOffsets: true, leaderEpoch: 0 });
    // Reaches 5, the log end at the fetch at 600: caught up as of 600.
    replica.followerFetched(2, 5, 700);
    expect(replica.followerEnds().find((f) => f.id === 2)?.lastCaughtUpMs).toBe(600);
  });

  it('proposes nothing on a follower or while a proposal is pending', async () => {
    const log = await logOf(4);
    const follower = replicaOver(log, { leader: 2 });
    expect(follower.isrChange(1e9, 1000, () => true)).toBeUndefined();
    const leader = replicaOver(log);
    leader.proposeIsr([1, 2, 3]);
    expect(leader.isrChange(1e9, 1000, () => true)).toBeUndefined();
  });

  it('a follower joins at exactly the high watermark and the epoch start, in replica order, not one below', async () => {
    const log = await logOf(6);
    const replica = replicaOver(log, { replicas: [3, 1, 2], isr: [1], highWatermark: 4 });
    // This leadership started at 6 (the log end when it took over).
    replica.followerFetched(2, 5, 1);
    replica.followerFetched(3, 5, 1);
    expect(replica.isrChange(1, 1000, () => true)).toBeUndefined();
    replica.followerFetched(3, 6, 2);
    expect(replica.isrChange(2, 1000, () => true)).toEqual([3, 1]);
    replica.followerFetched(2, 6, 3);
    expect(replica.isrChange(3, 1000, () => true)).toEqual([3, 1, 2]);
    expect(replica.isrChange(3, 1000, (id) => id !== 3)).toEqual([1, 2]);
  });

  it('a follower that has not fetched in this leadership never joins, even with a high watermark of 0', async () => {
    const replica = replicaOver(await emptyLog(), { isr: [1] });
    expect(replica.isrChange(0, 1000, () => true)).toBeUndefined();
  });
});

describe('a replica: what it describes', () => {
  it('a replicated leader lists each follower’s end and lag, by id, a follower that never fetched lagging the whole log', async () => {
    const log = await logOf(5);
    const replica = replicaOver(log, { replicas: [1, 3, 2] });
    replica.followerFetched(3, 2, 1);
    expect(replica.describe()).toEqual({
      partition: 0,
      leader: 1,
      leaderEpoch: 0,
      replicas: [1, 3, 2],
      isr: [1, 2, 3],
      logStartOffset: 0,
      logEndOffset: 5,
      highWatermark: 0,
      replicaStates: [
        { id: 2, logEndOffset: -1, lag: 5 },
        { id: 3, logEndOffset: 2, lag: 3 },
      ],
    });
    expect(replica.logStartOffset).toBe(0);
  });

  it('a follower and a single replica list no replica states', async () => {
    const log = await logOf(1);
    expect(replicaOver(log, { leader: 2 }).describe().replicaStates).toBeUndefined();
    const alone = new PartitionReplica(
      { topic: 't', partition: 0, nodeId: 1, replicas: [1], leaderEpoch: 0 },
      { log },
    );
    expect(alone.describe()).not.toHaveProperty('replicaStates');
  });
});

describe('ReplicaManager: one replica per open log', () => {
  async function manager(fs = new SimulatedFileSystem(), canLead?: () => boolean) {
    const logs = await LogManager.open({ dataDir: '/d' }, { fs, clock: new ManualClock(0) });
    const replicas = new ReplicaManager({ nodeId: 2, ...(canLead ? { canLead } : {}) }, { logs });
    return { logs, replicas };
  }

  it('without a role, this node leads alone at epoch 0; with one, it takes the role', async () => {
    const { logs, replicas } = await manager();
    const alone = await replicas.getOrCreate('t', 0, DEFAULT_LOG_CONFIG);
    expect(alone.replicas).toEqual([2]);
    expect(alone.isLeader).toBe(true);
    expect(alone.leaderEpoch).toBe(0);
    const role = { leader: 1, leaderEpoch: 3, replicas: [1, 2], isr: [1, 2] };
    const follower = await replicas.getOrCreate('t', 1, DEFAULT_LOG_CONFIG, role);
    expect(follower.leaderId).toBe(1);
    expect(follower.inSyncReplicas).toEqual([1, 2]);
    expect(follower.leaderEpoch).toBe(3);
    expect(follower.partitionEpoch).toBe(0);
    // The open replica is returned again, and takes a newer role; without a role it keeps its own.
    expect(await replicas.getOrCreate('t', 1, DEFAULT_LOG_CONFIG)).toBe(follower);
    expect(follower.leaderEpoch).toBe(3);
    expect(
      await replicas.getOrCreate('t', 1, DEFAULT_LOG_CONFIG, { ...role, leader: 2, leaderEpoch: 4 }, 7),
    ).toBe(follower);
    expect(follower.isLeader).toBe(true);
    expect(follower.followerEnds()).toEqual([{ id: 1, logEndOffset: -1, lastCaughtUpMs: 7 }]);
    await logs.close();
  });

  it('a replicated partition starts from its high watermark checkpoint, a single-replica one from its log end', async () => {
    const fs = new SimulatedFileSystem();
    const first = await manager(fs);
    for (const partition of [0, 1]) {
      const replica = await first.replicas.getOrCreate('t', partition, DEFAULT_LOG_CONFIG);
      for (let i = 0; i < 5; i++) await replica.appendAsLeader(batchOf([`v${i}`]));
      await replica.log.checkpointHighWatermark(2);
    }
    await first.logs.close();
    const second = await manager(fs);
    const replicated = await second.replicas.getOrCreate('t', 0, DEFAULT_LOG_CONFIG, {
      leader: 1,
      leaderEpoch: 1,
      replicas: [1, 2],
      isr: [1, 2],
    });
    expect(replicated.highWatermark).toBe(2);
    const single = await second.replicas.getOrCreate('t', 1, DEFAULT_LOG_CONFIG, {
      leader: 2,
      leaderEpoch: 1,
      replicas: [2],
      isr: [2],
    });
    expect(single.highWatermark).toBe(5);
    await second.logs.close();
  });

  it('passes on whether this node may lead', async () => {
    let lease = true;
    const { logs, replicas } = await manager(new SimulatedFileSystem(), () => lease);
    const replica = await replicas.getOrCreate('t', 0, DEFAULT_LOG_CONFIG);
    lease = false;
    expect(refusalOf(() => replica.requireLeader()).code).toBe('NOT_LEADER_OR_FOLLOWER');
    await logs.close();
  });

  it('a log deleted under its replica: the replica is gone, and the next one is new', async () => {
    const { logs, replicas } = await manager();
    const before = await replicas.getOrCreate('t', 0, DEFAULT_LOG_CONFIG);
    const other = await replicas.getOrCreate('u', 0, DEFAULT_LOG_CONFIG);
    expect(replicas.get('t', 0)).toBe(before);
    expect(replicas.get('t', 1)).toBeUndefined();
    expect([...replicas.all()].map((r) => r.replica)).toEqual([before, other]);
    await logs.deletePartition('t', 0);
    expect(replicas.get('t', 0)).toBeUndefined();
    expect([...replicas.all()].map((r) => r.replica)).toEqual([other]);
    expect(replicas.hasLog('t', 0)).toBe(false);
    const after = await replicas.getOrCreate('t', 0, DEFAULT_LOG_CONFIG);
    expect(after).not.toBe(before);
    expect(replicas.get('t', 0)).toBe(after);
    expect(replicas.hasLog('t', 0)).toBe(true);
    expect(replicas.listLogs()).toEqual([
      { topic: 't', partition: 0 },
      { topic: 'u', partition: 0 },
    ]);
    await replicas.delete('u', 0);
    expect(replicas.get('u', 0)).toBeUndefined();
    expect(replicas.hasLog('u', 0)).toBe(false);
    expect(replicas.listLogs()).toEqual([{ topic: 't', partition: 0 }]);
    await logs.close();
  });

  it('keys partitions by topic and number apart: topic "a1" partition 0 is not topic "a" partition 10', async () => {
    const { logs, replicas } = await manager();
    const a10 = await replicas.getOrCreate('a', 10, DEFAULT_LOG_CONFIG);
    const a1 = await replicas.getOrCreate('a1', 0, DEFAULT_LOG_CONFIG);
    expect(a1).not.toBe(a10);
    expect(replicas.get('a', 10)).toBe(a10);
    expect(replicas.get('a1', 0)).toBe(a1);
    await logs.close();
  });
});

describe('replica rules the first mutation run showed unguarded', () => {
  it('a follower at offset 0 has nothing to truncate, whatever epoch it names', () => {
    const leader = epochs(
      [
        [0, 0],
        [2, 10],
      ],
      30,
    );
    expect(divergingEpoch(leader, 3, 0)).toBeUndefined();
  });

  it('a follower with only a smaller epoch goes back to its own end of it, even past the leader’s end (KIP-279 asks again)', () => {
    const own = epochs(
      [
        [0, 0],
        [1, 12],
      ],
      25,
    );
    expect(
      truncationOffset({ epoch: 3, endOffset: 10 }, own, {
        logStartOffset: 0,
        logEndOffset: 25,
        highWatermark: 0,
      }),
    ).toBe(25);
    const two = epochs(
      [
        [0, 0],
        [1, 6],
        [4, 12],
      ],
      25,
    );
    expect(
      truncationOffset({ epoch: 3, endOffset: 8 }, two, {
        logStartOffset: 0,
        logEndOffset: 25,
        highWatermark: 0,
      }),
    ).toBe(12);
  });

  it('only a leader moves its high watermark: a leaderless last in-sync replica keeps its own', async () => {
    const log = await logOf(5);
    const replica = replicaOver(log, { leader: -1, isr: [1], highWatermark: 2 });
    await log.append(batchOf(['x']), { assignOffsets: true, leaderEpoch: 0 });
    replica.setRole({ leader: -1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1] });
    expect(replica.highWatermark).toBe(2);
  });

  it('an in-sync member the leader has not heard from in this leadership counts as 0', async () => {
    const replica = replicaOver(await logOf(4), { isr: [1, 2] });
    replica.followerFetched(2, 4, 1);
    expect(replica.highWatermark).toBe(4);
    replica.setRole(
      { leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3, 4], isr: [1, 2, 4] },
      2,
    );
    expect(replica.highWatermark).toBe(4);
    await replica.appendAsLeader(batchOf(['y']));
    replica.followerFetched(2, 5, 3);
    expect(replica.highWatermark).toBe(4);
  });

  it('tells its listeners only when the high watermark moves', async () => {
    const replica = replicaOver(await logOf(4), { isr: [1, 2] });
    const seen: number[] = [];
    replica.onHighWatermarkAdvance((end) => seen.push(end));
    replica.followerFetched(2, 0, 1);
    expect(seen).toEqual([]);
    replica.followerFetched(2, 3, 2);
    expect(seen).toEqual([4]);
    replica.followerFetched(2, 3, 3);
    expect(seen).toEqual([4]);
  });

  it('a fetch below the log end the leader had at the previous fetch leaves the caught-up time where it was', async () => {
    const log = await logOf(4);
    const replica = replicaOver(log);
    replica.followerFetched(2, 4, 100);
    await log.append(batchOf(['a', 'b']), { assignOffsets: true, leaderEpoch: 0 });
    replica.followerFetched(2, 4, 500);
    expect(replica.followerEnds().find((f) => f.id === 2)?.lastCaughtUpMs).toBe(100);
    replica.followerFetched(2, 3, 900);
    expect(replica.followerEnds().find((f) => f.id === 2)?.lastCaughtUpMs).toBe(100);
  });

  it('a follower past the high watermark but short of this epoch’s start does not join', async () => {
    const replica = replicaOver(await logOf(6), { isr: [1, 2], highWatermark: 4 });
    expect(replica.highWatermark).toBe(4);
    replica.followerFetched(3, 5, 1);
    expect(replica.isrChange(1, 1000, () => true)).toBeUndefined();
    replica.followerFetched(3, 6, 2);
    expect(replica.isrChange(2, 1000, () => true)).toEqual([1, 2, 3]);
  });

  it('a timed-out acks=all wait leaves the others waiting', async () => {
    const clock = new ManualClock();
    const replica = replicaOver(await logOf(3), { isr: [1, 2] });
    const timers = (fn: () => void, ms: number) => clock.setTimeout(fn, ms);
    const short = replica.waitForHighWatermark(3, { timeoutMs: 10, setTimeout: timers });
    const long = replica.waitForHighWatermark(3, { timeoutMs: 1000, setTimeout: timers });
    clock.advance(10);
    expect(await outcome(short)).toBe('REQUEST_TIMED_OUT');
    replica.followerFetched(2, 3, 1);
    expect(await outcome(long)).toBe('resolved');
  });

  it('a committed set of the same size with another member does not end a proposal', async () => {
    const replica = replicaOver(await logOf(3), { isr: [1, 2] });
    replica.proposeIsr([1, 3]);
    replica.setRole({ leader: 1, leaderEpoch: 0, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1, 2] }, 0);
    expect(replica.proposedIsr).toEqual([1, 3]);
  });

  it('a single-replica partition is readable at once, whatever high watermark it was opened with', async () => {
    const log = await logOf(5);
    const alone = new PartitionReplica(
      { topic: 't', partition: 0, nodeId: 1, replicas: [1], leaderEpoch: 0, highWatermark: 2 },
      { log },
    );
    expect(() => alone.requireReadable()).not.toThrow();
  });

  it('hands the log what the leader knows: a CRC checked already, reads verified and capped at the high watermark', async () => {
    const log = await logOf(2);
    const calls: { method: string; options: unknown }[] = [];
    const spied = new Proxy(log, {
      get(target, key) {
        const value = Reflect.get(target, key, target);
        if (key === 'append' || key === 'read')
          return (...args: unknown[]) => {
            calls.push({ method: key, options: args[1] });
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const replica = new PartitionReplica(
      { topic: 't', partition: 0, nodeId: 1, replicas: [1], leaderEpoch: 3 },
      { log: spied },
    );
    await replica.appendAsLeader(batchOf(['a']), { crcChecked: true });
    await replica.appendAsLeader(batchOf(['b']));
    await replica.read(0, { maxBytes: 100 });
    expect(calls).toEqual([
      { method: 'append', options: { assignOffsets: true, leaderEpoch: 3, crcChecked: true } },
      { method: 'append', options: { assignOffsets: true, leaderEpoch: 3 } },
      { method: 'read', options: { maxBytes: 100, maxOffset: 4, verify: true } },
    ]);
  });

  it('each refusal says why, naming the partition', async () => {
    const clock = new ManualClock();
    const timers = (fn: () => void, ms: number) => clock.setTimeout(fn, ms);
    const log = await logOf(3);
    const said = (run: () => unknown) => {
      const e = refusalOf(run);
      return { code: e.code, message: e.message, details: e.details };
    };
    const replica = replicaOver(log, { leaderEpoch: 4, isr: [1, 2] });
    expect(said(() => replica.checkLeaderEpoch(3)).message).toBe(
      'leader epoch 3 of t/0 is fenced; the current one is 4',
    );
    expect(said(() => replica.checkLeaderEpoch(5)).message).toBe(
      'leader epoch 5 of t/0 is newer than 4, the latest this node knows',
    );
    expect(said(() => replica.requireReadable())).toEqual({
      code: 'OFFSET_NOT_AVAILABLE',
      message: 't/0 has a new leader whose high watermark (0) has not reached its epoch start (3) yet',
      details: { topic: 't', partition: 0 },
    });
    expect(said(() => replica.checkEnoughReplicas(3))).toMatchObject({
      message: '2 in-sync replica, min.insync.replicas is 3; nothing was appended',
    });
    expect(said(() => replicaOver(log, { leader: 2 }).requireLeader())).toEqual({
      code: 'NOT_LEADER_OR_FOLLOWER',
      message: 'node 1 does not lead t/0; node 2 does',
      details: { topic: 't', partition: 0, leader: 2 },
    });
    expect(said(() => replicaOver(log, { leader: -1 }).requireLeader())).toEqual({
      code: 'LEADER_NOT_AVAILABLE',
      message: 'partition t/0 has no leader right now',
      details: { topic: 't', partition: 0, leader: -1 },
    });
    expect(said(() => replicaOver(log, { canLead: () => false }).requireLeader())).toEqual({
      code: 'NOT_LEADER_OR_FOLLOWER',
      message:
        'node 1 has not reached the controller for longer than its session: another node may lead t/0 now',
      details: { topic: 't', partition: 0, leader: 1 },
    });
    const rejection = async (promise: Promise<unknown>) => {
      try {
        await promise;
      } catch (error) {
        const e = error as SluiceError;
        return { code: e.code, message: e.message, details: e.details };
      }
      return undefined;
    };
    replica.setMinInsync(2);
    const timedOut = replica.waitForHighWatermark(3, { timeoutMs: 10, setTimeout: timers });
    clock.advance(10);
    expect(await rejection(timedOut)).toEqual({
      code: 'REQUEST_TIMED_OUT',
      message: 'the append to t/0 was not replicated to the in-sync set within 10 ms; it may still be',
      details: { topic: 't', partition: 0 },
    });
    const shrunk = replica.waitForHighWatermark(3, { timeoutMs: 1000, setTimeout: timers });
    replica.setRole({ leader: 1, leaderEpoch: 4, partitionEpoch: 1, replicas: [1, 2, 3], isr: [1] });
    expect(await rejection(shrunk)).toEqual({
      code: 'NOT_ENOUGH_REPLICAS_AFTER_APPEND',
      message:
        'the in-sync set of t/0 fell to 1, below min.insync.replicas 2, after the append; it may still be replicated',
      details: { topic: 't', partition: 0, isr: 1 },
    });
    const moved = replica.waitForHighWatermark(3, { timeoutMs: 1000, setTimeout: timers });
    replica.setRole({ leader: 2, leaderEpoch: 5, partitionEpoch: 2, replicas: [1, 2, 3], isr: [2] });
    expect(await rejection(moved)).toEqual({
      code: 'NOT_LEADER_OR_FOLLOWER',
      message: 'leadership of t/0 moved while waiting',
      details: { topic: 't', partition: 0, leader: 2 },
    });
  });
});
