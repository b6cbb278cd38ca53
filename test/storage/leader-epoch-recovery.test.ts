import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf } from './helpers.js';

/**
 * Proves that recovery rebuilds the leader-epoch cache from the batches it scans: a synced append
 * whose epoch never reached the checkpoint before a crash is still known after the reopen.
 */
const dir = '/d/e-0';
const stallCheckpoint = (fs: SimulatedFileSystem) => {
  fs.fault = (operation, path) =>
    operation === 'writeFileAtomic' && path.endsWith('leader-epoch-checkpoint') ? 'stall' : undefined;
};

describe('leader epochs after a crash', () => {
  it('a synced epoch-2 append whose checkpoint never landed is in the cache after recovery', async () => {
    const fs = new SimulatedFileSystem();
    const config = { flushPolicy: 'sync' as const };
    const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    await log.append(batchOf(['e1']), { assignOffsets: true, leaderEpoch: 1 });
    await log.leaderEpochs.flush();
    stallCheckpoint(fs);
    await log.append(batchOf(['e2a', 'e2b']), { assignOffsets: true, leaderEpoch: 2 });
    fs.crashLosingAllUnsynced();
    fs.fault = undefined;
    const reopened = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    expect(reopened.logEndOffset).toBe(3);
    expect(reopened.leaderEpochs.entries()).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 1 },
    ]);
    expect(reopened.leaderEpochs.endOffsetFor(1)).toEqual({ epoch: 1, endOffset: 1 });
    await reopened.close();
  });

  it('epoch 0 reaches the cache, from appends and from recovery, across segments', async () => {
    const fs = new SimulatedFileSystem();
    const config = { flushPolicy: 'sync' as const, segmentBytes: 300 };
    const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    stallCheckpoint(fs);
    for (let i = 0; i < 6; i++)
      await log.append(batchOf([`z${i}`.repeat(40)]), { assignOffsets: true, leaderEpoch: 0 });
    for (let i = 0; i < 3; i++)
      await log.append(batchOf([`t${i}`.repeat(40)]), { assignOffsets: true, leaderEpoch: 3 });
    expect(log.leaderEpochs.entries()).toEqual([
      { epoch: 0, startOffset: 0 },
      { epoch: 3, startOffset: 6 },
    ]);
    expect(log.segmentCount).toBeGreaterThan(2);
    fs.crashLosingAllUnsynced();
    fs.fault = undefined;
    const reopened = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    expect(reopened.leaderEpochs.entries()).toEqual([
      { epoch: 0, startOffset: 0 },
      { epoch: 3, startOffset: 6 },
    ]);
    expect(reopened.leaderEpochs.endOffsetFor(2)).toEqual({ epoch: 0, endOffset: 6 });
    await reopened.close();
  });
});
