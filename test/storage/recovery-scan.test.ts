import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import type { FileHandle, FileSystem } from '../../src/storage/fs.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf, valuesOf } from './helpers.js';

/**
 * Proves that recovery after a crash reads only what follows the recovery point: the segment that
 * holds it is checked from its last indexed batch at or below it, not from its first byte. Bytes
 * are counted at the file system (every read of a `.log` file during the open), not timed.
 */
const dir = '/d/r-0';
const config = { flushPolicy: 'async' as const, flushMs: 3_600_000, indexIntervalBytes: 512 };

/** `fs` with a count of the bytes read from `.log` files. */
function counting(inner: FileSystem): { fs: FileSystem; logBytesRead: { n: number }; replaced: string[] } {
  const logBytesRead = { n: 0 };
  const replaced: string[] = [];
  const wrap = (path: string, handle: FileHandle): FileHandle => {
    const isLog = path.endsWith('.log');
    return {
      read: async (buffer, offset, length, position) => {
        const n = await handle.read(buffer, offset, length, position);
        if (isLog) logBytesRead.n += n;
        return n;
      },
      readSync: (buffer, offset, length, position) => {
        const n = handle.readSync(buffer, offset, length, position);
        if (isLog) logBytesRead.n += n;
        return n;
      },
      write: (data, position) => handle.write(data, position),
      writeSync: (data, position) => handle.writeSync(data, position),
      sync: () => handle.sync(),
      truncate: (length) => handle.truncate(length),
      size: () => handle.size(),
      close: () => handle.close(),
    };
  };
  const fs: FileSystem = {
    open: async (path) => wrap(path, await inner.open(path)),
    readFile: (path) => inner.readFile(path),
    writeFileAtomic: (path, data, options) => {
      replaced.push(path.slice(path.lastIndexOf('/') + 1));
      return inner.writeFileAtomic(path, data, options);
    },
    exists: (path) => inner.exists(path),
    readdir: (path) => inner.readdir(path),
    mkdir: (path) => inner.mkdir(path),
    unlink: (path) => inner.unlink(path),
    rename: (from, to) => inner.rename(from, to),
    removeDir: (path) => inner.removeDir(path),
    syncDir: (path) => inner.syncDir(path),
  };
  return { fs, logBytesRead, replaced };
}

const value = (i: number) => `v${i}-`.padEnd(200, 'x');

async function fill(log: PartitionLog, from: number, to: number, leaderEpoch = 0): Promise<void> {
  for (let i = from; i < to; i++) await log.append(batchOf([value(i)]), { assignOffsets: true, leaderEpoch });
}

async function expectAll(log: PartitionLog, count: number): Promise<void> {
  const { records } = await log.readRecords(0, { maxBytes: 10_000_000 });
  expect(valuesOf(records)).toEqual(Array.from({ length: count }, (_, i) => value(i)));
  // A read from an offset inside the kept index prefix and one after it find their batches.
  for (const offset of [1, Math.floor(count / 2), count - 1]) {
    const one = await log.readRecords(offset, { maxBytes: 1 });
    expect(valuesOf(one.records)[0]).toBe(value(offset));
  }
}

describe('recovery scans only what follows the recovery point', () => {
  it('checks the active segment from the indexed batch at the recovery point, and reads little else', async () => {
    const sim = new SimulatedFileSystem();
    const log = await PartitionLog.open({ dir, config }, { fs: sim, clock: new ManualClock() });
    await fill(log, 0, 2000);
    await log.flush();
    const recoveryPoint = log.recoveryPoint;
    expect(recoveryPoint).toBe(2000);
    await fill(log, 2000, 2050);
    sim.crashLosingAllUnsynced();
    const { fs, logBytesRead } = counting(sim);
    const reopened = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    const opened = logBytesRead.n;
    const segmentBytes = (await sim.readFile(`${dir}/00000000000000000000.log`))!.length;
    expect(reopened.logEndOffset).toBe(2000);
    // The scan starts within one index interval (plus a batch) of the recovery point's position.
    expect(reopened.recoveryReport!.scannedBytes).toBeLessThan(2 * config.indexIntervalBytes);
    // Everything the open read of the log: that scan, the producer-state walk (which reads the
    // batch headers of the active segment) and nothing that grows with the segment beyond that.
    expect(segmentBytes).toBeGreaterThan(400_000);
    expect(opened).toBeLessThan(segmentBytes + 4 * config.indexIntervalBytes);
    await expectAll(reopened, 2000);
    await fill(reopened, 2000, 2100);
    await expectAll(reopened, 2100);
    await reopened.close();
  });

  it('reads the whole segment again when its index cannot be trusted', async () => {
    const sim = new SimulatedFileSystem();
    const log = await PartitionLog.open({ dir, config }, { fs: sim, clock: new ManualClock() });
    await fill(log, 0, 500);
    await log.flush();
    await fill(log, 500, 510);
    sim.crashLosingAllUnsynced();
    // An index entry that names a position holding no batch with its offset.
    const index = (await sim.readFile(`${dir}/00000000000000000000.index`))!;
    index.writeUInt32BE(index.readUInt32BE(index.length - 4) + 7, index.length - 4);
    await sim.writeFileAtomic(`${dir}/00000000000000000000.index`, index);
    const reopened = await PartitionLog.open({ dir, config }, { fs: sim, clock: new ManualClock() });
    const segmentBytes = (await sim.readFile(`${dir}/00000000000000000000.log`))!.length;
    expect(reopened.recoveryReport!.scannedBytes).toBe(segmentBytes);
    await expectAll(reopened, 500);
    await reopened.close();
  });

  it('keeps the leader epochs that started before the scan and rebuilds those after it', async () => {
    const sim = new SimulatedFileSystem();
    const log = await PartitionLog.open({ dir, config }, { fs: sim, clock: new ManualClock() });
    await fill(log, 0, 300, 1);
    await fill(log, 300, 600, 2);
    await log.flush();
    // Epoch 3 starts after the recovery point; its appends are synced by a later flush whose
    // recovery point never landed (the checkpoint write stalls).
    await fill(log, 600, 650, 3);
    sim.fault = (operation, path) =>
      operation === 'writeFileAtomic' &&
      (path.endsWith('recovery-point-checkpoint') || path.endsWith('leader-epoch-checkpoint'))
        ? 'stall'
        : undefined;
    void log.flush();
    await new Promise((resolve) => setTimeout(resolve, 10));
    sim.crashLosingAllUnsynced();
    sim.fault = undefined;
    const reopened = await PartitionLog.open({ dir, config }, { fs: sim, clock: new ManualClock() });
    expect(reopened.logEndOffset).toBe(650);
    expect(reopened.recoveryReport!.scannedBytes).toBeLessThan(
      (await sim.readFile(`${dir}/00000000000000000000.log`))!.length / 4,
    );
    expect(reopened.leaderEpochs.entries()).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 300 },
      { epoch: 3, startOffset: 600 },
    ]);
    // The max timestamp and the time index survive the partial scan: a lookup by time still works.
    expect(await reopened.offsetForTimestamp(1_000)).toBe(0);
    await reopened.close();
  });

  it('rewrites no checkpoint when an open after a crash finds everything flushed', async () => {
    const sim = new SimulatedFileSystem();
    const log = await PartitionLog.open({ dir, config }, { fs: sim, clock: new ManualClock() });
    // Small enough to have no index entry: the scan starts at the segment's first batch, where the
    // checkpoint's first epoch starts too.
    await fill(log, 0, 1, 0);
    await fill(log, 1, 2, 4);
    await log.flush();
    sim.crashLosingAllUnsynced();
    const { fs, replaced } = counting(sim);
    const reopened = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    expect(reopened.recoveryReport).toBeDefined();
    expect(reopened.logEndOffset).toBe(2);
    expect(reopened.recoveryReport!.scannedBytes).toBe(
      (await sim.readFile(`${dir}/00000000000000000000.log`))!.length,
    );
    // The recovery point and the leader epochs on disk already say what the scan found.
    expect(replaced).toEqual([]);
    expect(reopened.leaderEpochs.entries()).toEqual([
      { epoch: 0, startOffset: 0 },
      { epoch: 4, startOffset: 1 },
    ]);
    await reopened.close();
  });

  it('still rewrites them when the scan finds what they lack', async () => {
    const sim = new SimulatedFileSystem();
    const log = await PartitionLog.open({ dir, config }, { fs: sim, clock: new ManualClock() });
    await fill(log, 0, 3, 0);
    await log.flush();
    // Synced by a flush whose checkpoints never landed.
    await fill(log, 3, 6, 4);
    sim.fault = (operation, path) =>
      operation === 'writeFileAtomic' && /recovery-point|leader-epoch/.test(path) ? 'stall' : undefined;
    void log.flush();
    await new Promise((resolve) => setTimeout(resolve, 10));
    sim.crashLosingAllUnsynced();
    sim.fault = undefined;
    const { fs, replaced } = counting(sim);
    const reopened = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    expect(reopened.logEndOffset).toBe(6);
    expect(replaced).toContain('leader-epoch-checkpoint');
    expect(replaced).toContain('recovery-point-checkpoint');
    expect(reopened.leaderEpochs.entries()).toEqual([
      { epoch: 0, startOffset: 0 },
      { epoch: 4, startOffset: 3 },
    ]);
    await reopened.close();
  });

  it('takes the epochs at and after the scan from the batches even when the checkpoint names as many others', async () => {
    // The checkpoint on disk names the right number of epochs after the scan's start, but not
    // the ones the batches carry: another epoch, or another start offset.
    const forged: [string, (cache: PartitionLog['leaderEpochs']) => void][] = [
      [
        'another epoch',
        (cache) => {
          cache.truncateFromEnd(1);
          cache.assign(3, 1);
        },
      ],
      [
        'another start',
        (cache) => {
          cache.truncateFromEnd(1);
          cache.assign(4, 2);
        },
      ],
    ];
    // No index entry: the scan starts at the segment's first batch, and every epoch is after it.
    const unindexed = { ...config, indexIntervalBytes: 1 << 20 };
    for (const [what, forge] of forged) {
      const sim = new SimulatedFileSystem();
      const log = await PartitionLog.open({ dir, config: unindexed }, { fs: sim, clock: new ManualClock() });
      await fill(log, 0, 1, 0);
      await fill(log, 1, 3, 4);
      await log.flush();
      forge(log.leaderEpochs);
      await log.leaderEpochs.flush();
      sim.crashLosingAllUnsynced();
      const reopened = await PartitionLog.open(
        { dir, config: unindexed },
        { fs: sim, clock: new ManualClock() },
      );
      expect(reopened.recoveryReport!.scannedBytes).toBe(
        (await sim.readFile(`${dir}/00000000000000000000.log`))!.length,
      );
      expect([what, reopened.leaderEpochs.entries()]).toEqual([
        what,
        [
          { epoch: 0, startOffset: 0 },
          { epoch: 4, startOffset: 1 },
        ],
      ]);
      await reopened.close();
    }
  });

  it('rewrites no checkpoint when the scan resumes at the batch that starts the last epoch, an older one before it', async () => {
    const sim = new SimulatedFileSystem();
    // Every batch indexed: the scan resumes at the last one, the first of epoch 5.
    const everyBatch = { ...config, indexIntervalBytes: 1 };
    const log = await PartitionLog.open({ dir, config: everyBatch }, { fs: sim, clock: new ManualClock() });
    await fill(log, 0, 10, 1);
    await fill(log, 10, 11, 5);
    await log.flush();
    sim.crashLosingAllUnsynced();
    const { fs, replaced } = counting(sim);
    const reopened = await PartitionLog.open({ dir, config: everyBatch }, { fs, clock: new ManualClock() });
    expect(reopened.logEndOffset).toBe(11);
    const segmentBytes = (await sim.readFile(`${dir}/00000000000000000000.log`))!.length;
    expect(reopened.recoveryReport!.scannedBytes).toBeLessThan(segmentBytes / 5);
    // Epoch 1, before the scan, is the checkpoint's; epoch 5, where the scan starts, is what it
    // says already: nothing is rewritten.
    expect(replaced).toEqual([]);
    expect(reopened.leaderEpochs.entries()).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 5, startOffset: 10 },
    ]);
    await reopened.close();
  });
});
