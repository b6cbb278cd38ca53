import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog, RECOVERY_POINT_FILE, readCheckpoint } from '../../src/storage/partition-log.js';
import { batchOf } from './helpers.js';

/**
 * An open after a process crash (kill -9: the page cache keeps the unsynced writes) finds batches
 * past the recovery point that were never fsynced. The recovery-point checkpoint it writes must
 * not claim them durable before they are: a power loss right after the open would otherwise leave
 * a checkpoint above what the disk holds, and a later recovery would trust (not scan) offsets it
 * never had, and the index entries rebuilt over them.
 */
const dir = '/d/rd-0';

describe('recovery after a process crash', () => {
  for (const [name, config] of [
    ['one segment', { flushPolicy: 'async' as const, flushMs: 3_600_000, indexIntervalBytes: 256 }],
    [
      'several segments',
      { flushPolicy: 'async' as const, flushMs: 3_600_000, segmentBytes: 2048, indexIntervalBytes: 256 },
    ],
  ] as const) {
    it(`${name}: the recovery point it writes holds after a power loss right after the open`, async () => {
      const fs = new SimulatedFileSystem();
      const clock = new ManualClock(0);
      const log = await PartitionLog.open({ dir, config }, { fs, clock });
      for (let i = 0; i < 20; i++)
        await log.append(batchOf([`flushed${i}`.padEnd(100, '.')]), { assignOffsets: true, leaderEpoch: 1 });
      await log.flush();
      const flushedEnd = log.logEndOffset;
      for (let i = 0; i < 30; i++)
        await log.append(batchOf([`unsynced${i}`.padEnd(100, '.')]), { assignOffsets: true, leaderEpoch: 2 });
      // kill -9: the log is abandoned unclosed; its unsynced writes are still what a reader sees.
      const reopened = await PartitionLog.open({ dir, config }, { fs, clock });
      expect(reopened.logEndOffset).toBe(flushedEnd + 30);
      // Power loss now.
      const afterLoss = fs.afterPowerLoss();
      const claimed = await readCheckpoint(afterLoss, `${dir}/${RECOVERY_POINT_FILE}`);
      const recovered = await PartitionLog.open({ dir, config }, { fs: afterLoss, clock });
      expect(claimed, 'the checkpoint names only offsets the disk holds').toBeLessThanOrEqual(
        recovered.logEndOffset,
      );
      expect(recovered.logEndOffset).toBeGreaterThanOrEqual(flushedEnd);
      // The epochs it holds start within the log.
      for (const entry of recovered.leaderEpochs.entries())
        expect(entry.startOffset).toBeLessThan(recovered.logEndOffset);
      await recovered.close();
      await reopened.close();
    });
  }
});
