import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';
import { batchOf } from './helpers.js';

/**
 * Proves that retention.bytes holds between the log manager's retention passes: a partition
 * written faster than the passes come checks its size at every segment roll.
 */
describe('size retention at roll', () => {
  it('a retention.bytes=4096 partition stays near its limit with no retention pass at all', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock();
    const manager = await LogManager.open(
      {
        dataDir: '/data',
        retentionCheckMs: 60_000,
        defaultConfig: { segmentBytes: 1024, retentionBytes: 4096 },
      },
      { fs, clock },
    );
    const log = await manager.getOrCreate('events', 0);
    let written = 0;
    let largest = 0;
    for (let i = 0; written < 75_000; i++) {
      const batch = batchOf([`value-${i}`.padEnd(200, '.')]);
      await log.append(batch, { assignOffsets: true });
      written += batch.length;
      largest = Math.max(largest, log.sizeBytes);
    }
    // At a roll the oldest closed segments go while the rest still hold retention.bytes, so the
    // closed ones keep under 4096 plus one segment, and the active one adds up to segment.bytes.
    expect(largest).toBeLessThanOrEqual(4096 + 2 * 1024);
    expect(log.logStartOffset).toBeGreaterThan(0);
    expect(log.logStartOffset).toBe(log.segmentBaseOffsets()[0]);
    await manager.close();
    const again = await LogManager.open({ dataDir: '/data', retentionCheckMs: 60_000 }, { fs, clock });
    expect(again.get('events', 0)!.logStartOffset).toBe(log.logStartOffset);
    await again.close();
  });

  it('the retention pass runs at the interval the log manager is given, not before', async () => {
    const segmentsAfter = async (retentionCheckMs: number, advanceMs: number) => {
      const fs = new SimulatedFileSystem();
      const clock = new ManualClock();
      const options = {
        dataDir: '/data',
        retentionCheckMs,
        defaultConfig: { segmentBytes: 1024, retentionMs: 1000, retentionBytes: -1 },
      };
      const manager = await LogManager.open(options, { fs, clock });
      const log = await manager.getOrCreate('old', 0);
      for (let i = 0; i < 20; i++)
        await log.append(batchOf([`v${i}`.padEnd(200, '.')], { timestamp: clock.nowMs() }), {
          assignOffsets: true,
        });
      clock.advance(advanceMs);
      // close() waits for a pass the timer started.
      await manager.close();
      const reopened = await LogManager.open(options, { fs, clock });
      const count = reopened.get('old', 0)!.segmentCount;
      await reopened.close();
      return count;
    };
    expect(await segmentsAfter(60_000, 1500)).toBeGreaterThan(2);
    expect(await segmentsAfter(1500, 1500)).toBe(1);
  });
});
