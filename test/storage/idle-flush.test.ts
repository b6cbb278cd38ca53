import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog, RECOVERY_POINT_FILE } from '../../src/storage/partition-log.js';
import { batchOf } from './helpers.js';

/**
 * The timed flush of an asynchronously flushed log costs nothing while the log is idle: no fsync,
 * no checkpoint rewrite. A node with thousands of idle partitions otherwise spent several fsyncs
 * per partition per second (index files, the recovery-point checkpoint and its directory), which
 * made creating a thousand partitions take minutes. What an append brings is still flushed.
 */
const settle = async () => {
  for (let i = 0; i < 50; i++) await Promise.resolve();
};

describe('the timed flush of an idle log', () => {
  it('syncs what an append wrote once, then nothing until the next append', async () => {
    const clock = new ManualClock();
    const fs = new SimulatedFileSystem();
    const log = await PartitionLog.open(
      { dir: '/d/t-0', config: { flushPolicy: 'async', flushMs: 100 } },
      { fs, clock },
    );
    await log.append(batchOf(['a', 'b']), { assignOffsets: true });
    for (let i = 0; i < 3; i++) {
      clock.advance(100);
      await settle();
    }
    const afterFirst = fs.syncCount;
    expect((await fs.readFile(`/d/t-0/${RECOVERY_POINT_FILE}`))?.toString()).toMatch(/^2\n/);
    // Ten idle intervals: not one sync.
    for (let i = 0; i < 10; i++) {
      clock.advance(100);
      await settle();
    }
    expect(fs.syncCount).toBe(afterFirst);
    // An append is flushed at the next interval, and the checkpoint moves with it.
    await log.append(batchOf(['c']), { assignOffsets: true });
    clock.advance(100);
    await settle();
    expect(fs.syncCount).toBeGreaterThan(afterFirst);
    expect((await fs.readFile(`/d/t-0/${RECOVERY_POINT_FILE}`))?.toString()).toMatch(/^3\n/);
    // A power loss now keeps all three records.
    await log.close();
    fs.crashLosingAllUnsynced();
    const reopened = await PartitionLog.open({ dir: '/d/t-0', config: {} }, { fs, clock });
    expect(reopened.logEndOffset).toBe(3);
    await reopened.close();
  });
});
