import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import {
  CLEAN_SHUTDOWN_FILE,
  PartitionLog,
  RECOVERY_POINT_FILE,
  readCheckpoint,
} from '../../src/storage/partition-log.js';
import { batchOf, refusal } from './helpers.js';

/**
 * Rules of the partition log's clean-shutdown marker and checkpoint bookkeeping that the storage
 * mutation run left unguarded after the marker started to outlive a clean open
 * (docs/mutation-protocol-storage.md): an open after a crash closes cleanly even when nothing
 * changed, a log closed without a change is closed all the same, and the recovery point the log
 * believes written is the one it wrote to that file.
 */

const dir = '/d/mutants-0';

function setup(config: Record<string, unknown> = {}) {
  const fs = new SimulatedFileSystem();
  const clock = new ManualClock(1_000_000);
  const open = () => PartitionLog.open({ dir, config }, { fs, clock });
  return { fs, clock, open };
}

describe('the clean-shutdown marker', () => {
  it('an open that recovered from a crash and a close with no change between leave a clean log', async () => {
    const { fs, open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true });
    fs.crashLosingAllUnsynced();
    const recovered = await open();
    expect(recovered.recoveryReport).toBeDefined();
    await recovered.close();
    expect(await fs.readdir(dir)).toContain(CLEAN_SHUTDOWN_FILE);
    const again = await open();
    expect(again.recoveryReport).toBeUndefined();
    expect(again.logEndOffset).toBe(2);
    await again.close();
  });

  it('a log closed with no change since a clean open is closed: it refuses appends and reads', async () => {
    const { fs, open } = setup();
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    await log.close();
    const idle = await open();
    await idle.close();
    for (const call of [
      (): Promise<unknown> => idle.append(batchOf(['b']), { assignOffsets: true }),
      () => idle.read(0, { maxBytes: 1 << 20 }),
    ]) {
      const error = await refusal(Promise.resolve().then(call));
      expect(error.code).toBe('KAFKA_STORAGE_ERROR');
      expect(error.message).toBe(`the log in ${dir} is closed`);
    }
    // A second close has nothing left to do, and the files are as the clean shutdown left them.
    await idle.close();
    expect(await fs.readdir(dir)).toContain(CLEAN_SHUTDOWN_FILE);
  });
});

describe('the recovery-point checkpoint', () => {
  it('an open after a crash that kept one record writes the recovery point 1', async () => {
    const { fs, open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    expect(await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`)).toBe(0);
    fs.crashLosingAllUnsynced();
    const crashed = await open();
    expect(crashed.logEndOffset).toBe(1);
    expect(await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`)).toBe(1);
    await crashed.close();
  });

  it('another checkpoint holding the same value does not count as the recovery point written', async () => {
    const { fs, open } = setup({ flushPolicy: 'async', flushMs: 1_000_000 });
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true });
    // The high-watermark checkpoint says 2 before any flush moved the recovery point there.
    await log.checkpointHighWatermark(2);
    expect(await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`)).toBe(0);
    await log.flush();
    expect(log.recoveryPoint).toBe(2);
    expect(await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`)).toBe(2);
    await log.close();
  });
});
