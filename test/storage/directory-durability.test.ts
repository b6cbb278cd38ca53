import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf, valuesOf } from './helpers.js';

/**
 * Proves that the directory entries an acknowledged append depends on are synced: a segment file
 * created by a roll exists after a power loss that loses every unsynced directory change.
 */
describe('directory durability', () => {
  it('an acknowledged sync append right after a segment roll survives a power loss', async () => {
    const fs = new SimulatedFileSystem();
    const config = { flushPolicy: 'sync' as const, segmentBytes: 300 };
    const log = await PartitionLog.open({ dir: '/data/t-0', config }, { fs, clock: new ManualClock() });
    const acknowledged: string[] = [];
    while (log.segmentCount < 3) {
      const value = `v${acknowledged.length}`.padEnd(60, '.');
      await log.append(batchOf([value]), { assignOffsets: true });
      acknowledged.push(value);
    }
    fs.crashLosingAllUnsynced();
    const reopened = await PartitionLog.open({ dir: '/data/t-0', config }, { fs, clock: new ManualClock() });
    expect(reopened.logEndOffset).toBe(acknowledged.length);
    const values: (string | null)[] = [];
    for (let offset = 0; offset < reopened.logEndOffset; ) {
      const { records, nextOffset } = await reopened.readRecords(offset, { maxBytes: 1 << 20 });
      values.push(...valuesOf(records));
      offset = nextOffset;
    }
    expect(values).toEqual(acknowledged);
    await reopened.close();
  });

  it('a partition made in a new data directory survives a power loss right after its first sync append', async () => {
    const fs = new SimulatedFileSystem();
    const config = { flushPolicy: 'sync' as const };
    const log = await PartitionLog.open({ dir: '/new/data/t-1', config }, { fs, clock: new ManualClock() });
    await log.append(batchOf(['first']), { assignOffsets: true });
    fs.crashLosingAllUnsynced();
    const reopened = await PartitionLog.open(
      { dir: '/new/data/t-1', config },
      { fs, clock: new ManualClock() },
    );
    expect(valuesOf((await reopened.readRecords(0, { maxBytes: 1 << 20 })).records)).toEqual(['first']);
    await reopened.close();
  });
});
