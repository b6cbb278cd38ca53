import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { divergingEpoch, truncationOffset } from '../../src/replication/divergence.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf } from '../storage/helpers.js';

/**
 * Followers truncate by leader epochs, never to their own high watermark: the loss scenarios of
 * KIP-101 and the back-to-back failover of KIP-279, each on two real logs. `reconcile` runs the
 * fetch-time check until the follower's log is a prefix of the leader's, then copies the rest.
 */
async function logWith(name: string, epochs: readonly number[]): Promise<PartitionLog> {
  const log = await PartitionLog.open(
    { dir: `/d/${name}-0`, config: {} },
    { fs: new SimulatedFileSystem(), clock: new ManualClock() },
  );
  for (const [i, epoch] of epochs.entries())
    await log.append(batchOf([`e${epoch} #${i}`]), { assignOffsets: true, leaderEpoch: epoch });
  return log;
}

const endOf = (log: PartitionLog) => (epoch: number) =>
  log.leaderEpochs.endOffsetFor(epoch, log.logEndOffset);

async function values(log: PartitionLog): Promise<string[]> {
  const { records } = await log.readRecords(log.logStartOffset, { maxBytes: 1 << 20 });
  return records.map((r) => Buffer.from(r.value!).toString());
}

/** The follower's fetch loop against a leader, as ReplicationService runs it; returns the truncations. */
async function reconcile(
  leader: PartitionLog,
  follower: PartitionLog,
  followerHighWatermark: number,
): Promise<number[]> {
  const truncations: number[] = [];
  for (let round = 0; round < 10; round++) {
    const diverging = divergingEpoch(
      endOf(leader),
      follower.leaderEpochs.latestEpoch() ?? -1,
      follower.logEndOffset,
    );
    if (!diverging) break;
    const to = truncationOffset(diverging, endOf(follower), {
      logStartOffset: follower.logStartOffset,
      logEndOffset: follower.logEndOffset,
      highWatermark: followerHighWatermark,
    });
    truncations.push(to);
    await follower.truncateTo(to);
  }
  const rest = await leader.read(follower.logEndOffset, { maxBytes: 1 << 20 });
  if (rest.batchCount > 0) await follower.append(rest.data, { assignOffsets: false });
  return truncations;
}

describe('truncation by leader epoch', () => {
  it('keeps a committed record a restarted follower holds above its stale high watermark (KIP-101, first scenario)', async () => {
    const leader = await logWith('a', [0, 0]);
    const follower = await logWith('b', [0, 0]);
    // The follower's high watermark is 1 (it learns the leader's one fetch late): truncating to it
    // would drop offset 1, which the leader acknowledged.
    expect(await reconcile(leader, follower, 1)).toEqual([]);
    expect(await values(follower)).toEqual(await values(leader));
    expect(follower.logEndOffset).toBe(2);
  });

  it('drops what a replica wrote in an epoch the new leader overwrote (KIP-101, second scenario)', async () => {
    // Both had offset 0 of epoch 0; the old leader also wrote offset 1 in epoch 0, which nobody
    // else has; the new leader wrote its own offset 1 in epoch 1.
    const leader = await logWith('b', [0, 1]);
    const follower = await logWith('a', [0, 0]);
    expect(divergingEpoch(endOf(leader), 0, 2)).toEqual({ epoch: 0, endOffset: 1 });
    expect(await reconcile(leader, follower, 0)).toEqual([1]);
    expect(await values(follower)).toEqual(await values(leader));
  });

  it('finds the common point after back-to-back leader changes (KIP-279)', async () => {
    // Epoch 1's leader wrote 3 and 4 and lost them to epoch 2's leader, which wrote 3, 4 and 5.
    const leader = await logWith('l', [0, 0, 0, 2, 2, 2]);
    const follower = await logWith('f', [0, 0, 0, 1, 1]);
    // The leader answers with its own epoch below the one asked, and where that epoch ends.
    expect(divergingEpoch(endOf(leader), 1, 5)).toEqual({ epoch: 0, endOffset: 3 });
    expect(await reconcile(leader, follower, 2)).toEqual([3]);
    expect(await values(follower)).toEqual(await values(leader));
  });

  it('truncates to the follower’s own end of the epoch when it is sooner than the leader’s', async () => {
    // The follower has epoch 0 up to 2 and then epoch 3 (never known to the leader).
    const leader = await logWith('l', [0, 0, 0, 0, 2]);
    const follower = await logWith('f', [0, 0, 3]);
    const diverging = divergingEpoch(endOf(leader), 3, 3)!;
    expect(diverging).toEqual({ epoch: 2, endOffset: 5 });
    // The follower knows no epoch 2: its largest below is 0, which ends at 2 on it; asked again
    // from there (epoch 0, offset 2), the leader agrees.
    expect(await reconcile(leader, follower, 0)).toEqual([2]);
    expect(await values(follower)).toEqual(await values(leader));
  });

  it('agrees with a follower whose log is a prefix, and answers an empty one with nothing to do', async () => {
    const leader = await logWith('l', [0, 1, 1]);
    expect(divergingEpoch(endOf(leader), 1, 2)).toBeUndefined();
    expect(divergingEpoch(endOf(leader), -1, 0)).toBeUndefined();
    // A leader that knows no epoch as low as the follower's (its log starts later): the follower
    // keeps only its high watermark.
    expect(
      truncationOffset({ epoch: -1, endOffset: -1 }, () => undefined, {
        logStartOffset: 0,
        logEndOffset: 9,
        highWatermark: 4,
      }),
    ).toBe(4);
  });
});
