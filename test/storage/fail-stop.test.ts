import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf, refusal, valuesOf } from './helpers.js';

/**
 * Proves that a failed write or fsync takes a partition offline for good on this node (fail-stop):
 * after the kernel reported a lost write, nothing the log holds in memory can be trusted to match
 * the disk, and a later fsync that "succeeds" promises nothing.
 */

const eio = () => Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });

function setup(config: Record<string, unknown>) {
  const fs = new SimulatedFileSystem();
  const clock = new ManualClock();
  const logged: { fields: Record<string, unknown>; message: string }[] = [];
  const logger = {
    error: (fields: Record<string, unknown>, message: string) => logged.push({ fields, message }),
  };
  const open = () => PartitionLog.open({ dir: '/d/t-0', config }, { fs, clock, logger });
  return { fs, clock, logged, open };
}

async function expectOffline(log: PartitionLog): Promise<void> {
  for (const call of [
    () => log.append(batchOf(['later']), { assignOffsets: true }),
    () => log.read(0, { maxBytes: 1 << 20 }),
    () => log.flush(),
  ]) {
    const error = await refusal(call());
    expect(error.code).toBe('KAFKA_STORAGE_ERROR');
    expect(error.retriable).toBe(false);
    expect(String(error.details.offlineReason)).toBe(log.offlineReason);
    expect(String(error.details.why)).toMatch(/reopened from disk/);
  }
}

describe('fail-stop on a storage error', () => {
  it('deletes a log that went offline, directory and all, without closing it first', async () => {
    const { fs, open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    fs.fault = (operation) => (operation === 'sync' ? eio() : undefined);
    await refusal(log.append(batchOf(['b']), { assignOffsets: true }));
    fs.fault = undefined;
    expect(log.offlineReason).toBeDefined();
    // A topic deleted while its partition is offline: its data must still go.
    await log.deleteAll();
    expect(await fs.exists('/d/t-0')).toBe(false);
  });

  it('an fsync error refuses the append, takes the log offline, and a reopen from disk recovers', async () => {
    const { fs, logged, open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    fs.fault = (operation) => (operation === 'sync' ? eio() : undefined);
    expect((await refusal(log.append(batchOf(['b']), { assignOffsets: true }))).code).toBe(
      'KAFKA_STORAGE_ERROR',
    );
    fs.fault = undefined;
    // The fsync that failed may have dropped b's pages: no later flush may claim b is on disk.
    await refusal(log.flush());
    expect(log.recoveryPoint).toBe(1);
    expect(log.offlineReason).toMatch(/fsync/);
    await expectOffline(log);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.fields).toMatchObject({ dir: '/d/t-0', reason: log.offlineReason });
    // Closing an offline log writes no clean-shutdown marker: the next open must recover.
    await log.close();
    expect(await fs.exists('/d/t-0/.clean-shutdown')).toBe(false);
    fs.crashLosingAllUnsynced();
    const reopened = await open();
    expect(reopened.recoveryReport).toBeDefined();
    expect(reopened.offlineReason).toBeUndefined();
    expect(valuesOf((await reopened.readRecords(0, { maxBytes: 1 << 20 })).records)).toEqual(['a']);
    expect((await reopened.append(batchOf(['c']), { assignOffsets: true })).baseOffset).toBe(1);
    await reopened.close();
  });

  it('with flush.policy=async a failed timer flush is not swallowed: the log goes offline and says why', async () => {
    const { fs, clock, logged, open } = setup({ flushPolicy: 'async', flushMs: 100 });
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    fs.fault = (operation) => (operation === 'sync' ? eio() : undefined);
    clock.advance(100);
    for (let i = 0; i < 20; i++) await Promise.resolve();
    fs.fault = undefined;
    expect(log.offlineReason).toMatch(/fsync/);
    expect(logged).toHaveLength(1);
    await expectOffline(log);
    await log.close();
  });

  it('a write error takes the log offline; the refused bytes are never served', async () => {
    const { fs, logged, open } = setup({});
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    fs.fault = (operation, path) => (operation === 'write' && path.endsWith('.log') ? eio() : undefined);
    await refusal(log.append(batchOf(['b']), { assignOffsets: true }));
    fs.fault = undefined;
    expect(log.offlineReason).toMatch(/write/);
    expect(logged).toHaveLength(1);
    await expectOffline(log);
    await log.close();
  });
});
