import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf } from './helpers.js';

/**
 * Proves that reads running while compaction swaps a cleaned segment in are served from the old
 * segment or from the new one, never failed by a file closed under them.
 */
describe('compaction swap', () => {
  it('every read and timestamp lookup during compaction succeeds with old or new data', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock(10_000_000);
    const config = { segmentBytes: 400, cleanupPolicy: 'compact' as const, deleteRetentionMs: 0 };
    const log = await PartitionLog.open({ dir: '/d/k-0', config }, { fs, clock });
    for (let i = 0; i < 60; i++) {
      await log.append(batchOf([`v${i}`], { keys: [`k${i % 4}`], timestamp: 1_000 + i }), {
        assignOffsets: true,
      });
    }
    expect(log.segmentCount).toBeGreaterThan(4);
    const end = log.logEndOffset;
    let done = false;
    const compacting = log.compact().finally(() => (done = true));
    const failures: unknown[] = [];
    let reads = 0;
    for (let round = 0; !done && round < 10_000; round++) {
      const offset = round % end;
      const outcomes = await Promise.allSettled([
        log.read(offset, { maxBytes: 1 << 16 }),
        log.offsetForTimestamp(1_000 + offset),
      ]);
      reads++;
      for (const outcome of outcomes) if (outcome.status === 'rejected') failures.push(outcome.reason);
      for (const outcome of outcomes)
        if (outcome.status === 'fulfilled' && typeof outcome.value === 'object' && outcome.value !== null)
          expect(outcome.value.nextOffset).toBeGreaterThan(offset);
    }
    const { segmentsCleaned } = await compacting;
    expect(segmentsCleaned).toBeGreaterThan(0);
    expect(reads).toBeGreaterThan(5);
    expect(failures.map(String)).toEqual([]);
    await log.close();
  });
});
