import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { crc32c } from '../../src/common/crc32c.js';
import { isSluiceError } from '../../src/common/errors.js';
import { encodeBatch, splitBatches } from '../../src/protocol/batch.js';
import { type FileHandle, SimulatedFileSystem } from '../../src/storage/fs.js';
import {
  PartitionLog,
  type PendingAppend,
  planGroup,
  readCheckpoint,
} from '../../src/storage/partition-log.js';
import { batchOf, refusal, valuesOf } from './helpers.js';

/**
 * Rules of the partition log that a mutation run found unguarded: what an append resolves to,
 * the recovery point and the epoch cache around a truncation, the queue and group limits, the
 * boundaries of segment rolls and retention, and what a checkpoint file must hold to be trusted.
 */

const dir = '/d/rules-0';

function setup(config: Record<string, unknown> = {}) {
  const fs = new SimulatedFileSystem();
  const clock = new ManualClock(1_000_000);
  const open = (more: Record<string, unknown> = {}) =>
    PartitionLog.open({ dir, config: { ...config, ...more } }, { fs, clock });
  return { fs, clock, open };
}

async function readAll(log: PartitionLog): Promise<(string | null)[]> {
  const out: (string | null)[] = [];
  for (let offset = log.logStartOffset; offset < log.logEndOffset; ) {
    const { records, nextOffset } = await log.readRecords(offset, { maxBytes: 1 << 20 });
    out.push(...valuesOf(records));
    offset = nextOffset;
  }
  return out;
}

describe('appends', () => {
  it('a sync append resolves to its offsets once durable, as an async one does', async () => {
    for (const flushPolicy of ['sync', 'async'] as const) {
      const { open } = setup({ flushPolicy });
      const log = await open();
      const first = await log.append(batchOf(['a', 'b']), { assignOffsets: true });
      expect(first).toEqual({ baseOffset: 0, lastOffset: 1, logEndOffset: 2, batchCount: 1 });
      const both = await log.append(Buffer.concat([batchOf(['c']), batchOf(['d', 'e'])]), {
        assignOffsets: true,
      });
      expect(both).toEqual({ baseOffset: 2, lastOffset: 4, logEndOffset: 5, batchCount: 2 });
      if (flushPolicy === 'sync') expect(log.recoveryPoint).toBe(5);
      await log.close();
    }
  });

  it('refuses an empty append with INVALID_REQUEST, before anything is queued', async () => {
    const { open } = setup();
    const log = await open();
    const error = await refusal(log.append(Buffer.alloc(0), { assignOffsets: true }));
    expect(error.code).toBe('INVALID_REQUEST');
    expect(error.message).toBe('an append holds at least one batch');
    expect(log.logEndOffset).toBe(0);
    await log.close();
  });

  it('queues at most 10000 appends; the next is refused with LIMIT_EXCEEDED and the queued ones land', async () => {
    const { open } = setup();
    const log = await open();
    const batches = Array.from({ length: 10_001 }, (_, i) => batchOf([`q${i}`]));
    const appends = batches.map((b) => log.append(b, { assignOffsets: true }));
    const outcomes = await Promise.allSettled(appends);
    const rejected = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [[i, o.reason]] : []));
    expect(rejected).toHaveLength(1);
    const [index, reason] = rejected[0]!;
    expect(index).toBe(10_000);
    expect(isSluiceError(reason) && reason.code).toBe('LIMIT_EXCEEDED');
    expect((reason as Error).message).toBe(`more than 10000 appends are waiting on ${dir}`);
    expect(log.logEndOffset).toBe(10_000);
    await log.close();
  });

  it('a leader append writes its epoch, 0 included, into every batch and the epoch cache; without one, the batch keeps -1 and the cache nothing', async () => {
    const { open } = setup();
    const log = await open();
    await log.append(batchOf(['none']), { assignOffsets: true });
    expect(log.leaderEpochs.entries()).toEqual([]);
    await log.append(Buffer.concat([batchOf(['z0']), batchOf(['z1'])]), {
      assignOffsets: true,
      leaderEpoch: 0,
    });
    await log.append(batchOf(['e4']), { assignOffsets: true, leaderEpoch: 4 });
    expect(log.leaderEpochs.entries()).toEqual([
      { epoch: 0, startOffset: 1 },
      { epoch: 4, startOffset: 3 },
    ]);
    const { data } = await log.read(0, { maxBytes: 1 << 20 });
    const epochs = splitBatches(data).map((b) => b.header.partitionLeaderEpoch);
    expect(epochs).toEqual([-1, 0, 0, 4]);
    await log.close();
  });

  it('groups up to 8 MiB of queued appends in one write, never less than one append', () => {
    const fake = (bytes: number): PendingAppend => {
      return {
        data: { length: bytes } as unknown as Buffer,
        batches: splitBatches(batchOf(['x'])),
        options: { assignOffsets: true },
        resolve: () => {},
        reject: () => {},
      };
    };
    const mib = 1024 * 1024;
    expect(planGroup([fake(4 * mib), fake(4 * mib), fake(1)], 0).taken).toBe(2);
    expect(planGroup([fake(4 * mib), fake(4 * mib + 1)], 0).taken).toBe(1);
    expect(planGroup([fake(9 * mib), fake(1)], 0).taken).toBe(1);
  });
});

describe('truncation', () => {
  it('moves the recovery point down to the new log end, so later appends are recovered after a crash, not trusted', async () => {
    const { fs, open } = setup({ segmentBytes: 400 });
    const log = await open();
    for (let i = 0; i < 12; i++)
      await log.append(batchOf([`old${i}`.padEnd(30, '.'), 'tail']), { assignOffsets: true, leaderEpoch: 1 });
    await log.flush();
    expect(log.recoveryPoint).toBe(24);
    // Offset 13 lies inside the batch [12, 14): the log is cut at 12.
    await log.truncateTo(13);
    expect(log.logEndOffset).toBe(12);
    expect(log.recoveryPoint).toBe(12);
    expect(await readCheckpoint(fs, `${dir}/recovery-point-checkpoint`)).toBe(12);
    for (let i = 0; i < 6; i++)
      await log.append(batchOf([`new${i}`.padEnd(30, '.')]), { assignOffsets: true, leaderEpoch: 2 });
    expect(log.recoveryPoint).toBe(12);
    // The new batches were never synced: a crash loses them, and recovery must not serve any
    // torn or stale bytes in their place.
    fs.crashLosingAllUnsynced();
    const reopened = await open();
    expect(reopened.recoveryReport).toBeDefined();
    const values = await readAll(reopened);
    expect(values.length).toBeGreaterThanOrEqual(12);
    expect(values.slice(0, 12)).toEqual(
      Array.from({ length: 6 }, (_, i) => [`old${i}`.padEnd(30, '.'), 'tail']).flat(),
    );
    expect(values.slice(12).every((v, k) => v === `new${k}`.padEnd(30, '.'))).toBe(true);
    expect(reopened.recoveryPoint).toBe(reopened.logEndOffset);
    await reopened.close();
  });

  it('a truncation at or past the log end changes nothing', async () => {
    const { open } = setup();
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true, leaderEpoch: 3 });
    await log.flush();
    let notified = 0;
    log.onAppend(() => notified++);
    await log.truncateTo(2);
    await log.truncateTo(9);
    expect([log.logEndOffset, log.recoveryPoint, notified]).toEqual([2, 2, 0]);
    expect(log.leaderEpochs.entries()).toEqual([{ epoch: 3, startOffset: 0 }]);
    await log.close();
  });

  it('drops the epochs that start at or after the new end, keeps the one the cut lands in, and tells listeners', async () => {
    const { open } = setup();
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true, leaderEpoch: 0 });
    await log.append(batchOf(['c', 'd']), { assignOffsets: true, leaderEpoch: 2 });
    await log.append(batchOf(['e']), { assignOffsets: true, leaderEpoch: 5 });
    const ends: number[] = [];
    log.onAppend((end) => ends.push(end));
    await log.truncateTo(3);
    expect(log.logEndOffset).toBe(2);
    expect(ends).toEqual([2]);
    expect(log.leaderEpochs.entries()).toEqual([{ epoch: 0, startOffset: 0 }]);
    await log.truncateTo(0);
    expect(log.logEndOffset).toBe(0);
    expect(log.leaderEpochs.entries()).toEqual([]);
    expect(log.recoveryPoint).toBe(0);
    await log.close();
  });
});

describe('rolls and retention at their boundaries', () => {
  it('a segment rolls when an append would take it past segment.bytes, not when it fills it exactly', async () => {
    const size = batchOf(['x'.repeat(50)]).length;
    const { open } = setup({ segmentBytes: size * 2 });
    const log = await open();
    await log.append(batchOf(['x'.repeat(50)]), { assignOffsets: true });
    await log.append(batchOf(['y'.repeat(50)]), { assignOffsets: true });
    expect(log.segmentCount).toBe(1);
    await log.append(batchOf(['z'.repeat(50)]), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([0, 2]);
    await log.close();
  });

  it('an empty active segment never rolls, however old', async () => {
    const { clock, open } = setup({ segmentMs: 10 });
    const log = await open();
    clock.advance(1000);
    await log.append(batchOf(['a']), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([0]);
    await log.close();
  });

  it('retention by time deletes a segment whose newest record is older than retention.ms, not one exactly that old', async () => {
    const { clock, open } = setup({ retentionMs: 1000, retentionBytes: -1, segmentBytes: 1 << 20 });
    const log = await open();
    const t0 = clock.nowMs();
    await log.append(batchOf(['a'], { timestamp: t0 }), { assignOffsets: true });
    log.updateConfig({ segmentMs: 1 });
    clock.advance(1);
    await log.append(batchOf(['b'], { timestamp: clock.nowMs() }), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([0, 1]);
    clock.advance(999);
    expect(clock.nowMs()).toBe(t0 + 1000);
    expect((await log.enforceRetention()).segmentsDeleted).toBe(0);
    clock.advance(1);
    expect((await log.enforceRetention()).segmentsDeleted).toBe(1);
    expect(log.logStartOffset).toBe(1);
    await log.close();
  });

  it('retention by size keeps segments while what remains would be below retention.bytes, deletes one that leaves exactly it', async () => {
    const one = batchOf(['r'.repeat(40)]).length;
    const { open } = setup({ segmentBytes: one, retentionBytes: -1, retentionMs: -1 });
    const log = await open();
    for (let i = 0; i < 4; i++) await log.append(batchOf([`${i}`.repeat(40)]), { assignOffsets: true });
    expect(log.segmentCount).toBe(4);
    log.updateConfig({ retentionBytes: one * 3 + 1 });
    expect((await log.enforceRetention()).segmentsDeleted).toBe(0);
    log.updateConfig({ retentionBytes: one * 3 });
    expect((await log.enforceRetention()).segmentsDeleted).toBe(1);
    expect([log.logStartOffset, log.segmentCount]).toEqual([1, 3]);
    // A compacted topic is never cut by retention.
    log.updateConfig({ retentionBytes: 0, cleanupPolicy: 'compact' });
    expect((await log.enforceRetention()).segmentsDeleted).toBe(0);
    await log.close();
  });
});

/** The simulated file system, recording how `.log` files are read and written; each synchronous call costs `cost.ms`. */
function watched(sim: SimulatedFileSystem, clock: ManualClock) {
  const calls: string[] = [];
  const cost = { ms: 0 };
  const open = async (path: string): Promise<FileHandle> => {
    const handle = await sim.open(path);
    if (!path.endsWith('.log')) return handle;
    return {
      read: (...args) => {
        calls.push('read');
        return handle.read(...args);
      },
      readSync: (...args) => {
        calls.push('readSync');
        clock.advance(cost.ms);
        return handle.readSync(...args);
      },
      write: (...args) => {
        calls.push('write');
        return handle.write(...args);
      },
      writeSync: (...args) => {
        calls.push('writeSync');
        clock.advance(cost.ms);
        return handle.writeSync(...args);
      },
      sync: () => handle.sync(),
      truncate: (n) => handle.truncate(n),
      size: () => handle.size(),
      close: () => handle.close(),
    };
  };
  const fs = new Proxy(sim, {
    get: (target, name) => {
      if (name === 'open') return open;
      const member = Reflect.get(target, name);
      return typeof member === 'function' ? member.bind(target) : member;
    },
  });
  return { fs, calls, cost };
}

describe('groups and their writes', () => {
  it('a group of exactly 1 MiB is written on this thread, a larger one through the pool', async () => {
    const sim = new SimulatedFileSystem();
    const clock = new ManualClock();
    const { fs, calls } = watched(sim, clock);
    const log = await PartitionLog.open({ dir }, { fs, clock });
    const mib = 1024 * 1024;
    const overhead = batchOf(['']).length;
    const exact = batchOf(['m'.repeat(mib - overhead - 3)]);
    expect(exact.length).toBe(mib);
    calls.length = 0;
    await log.append(exact, { assignOffsets: true });
    expect(calls).toEqual(['writeSync']);
    const over = batchOf(['m'.repeat(mib - overhead - 2)]);
    expect(over.length).toBe(mib + 1);
    calls.length = 0;
    await log.append(over, { assignOffsets: true });
    expect(calls).toEqual(['write']);
    await log.close();
  });

  it('appends past one 8 MiB group are written by the next drain without another append arriving', async () => {
    const { open } = setup({ segmentBytes: 64 * 1024 * 1024 });
    const log = await open();
    const appends = Array.from({ length: 9 }, (_, i) =>
      log.append(batchOf([String(i).repeat(1_000_000)]), { assignOffsets: true }),
    );
    const results = await Promise.all(appends);
    expect(results.map((r) => r.baseOffset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    await log.close();
  });

  it('a group whose every append is refused writes nothing and tells no listener', async () => {
    const { clock, open } = setup({ segmentMs: 10 });
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    let heard = 0;
    log.onAppend(() => heard++);
    clock.advance(100);
    const gap = encodeBatch([{ value: Buffer.from('g'), timestamp: 1 }], { baseOffset: 7 });
    expect((await refusal(log.append(gap, { assignOffsets: false }))).code).toBe('INVALID_REQUEST');
    // The refusal comes before the rest of the drain: wait for the serialized work to end.
    await log.flush();
    expect([heard, log.segmentCount, log.logEndOffset]).toEqual([0, 1, 1]);
    await log.close();
  });

  it('a roll applies retention by size, down to retention.bytes 0, and never retention by time', async () => {
    const one = batchOf(['r'.repeat(40)]).length;
    const { clock, open } = setup({ segmentBytes: one, retentionBytes: 0, retentionMs: 10 });
    const log = await open();
    for (let i = 0; i < 3; i++) await log.append(batchOf([`${i}`.repeat(40)]), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([2]);
    log.updateConfig({ retentionBytes: 1 << 20 });
    clock.advance(1000);
    await log.append(batchOf(['3'.repeat(40)], { timestamp: 0 }), { assignOffsets: true });
    await log.append(batchOf(['4'.repeat(40)], { timestamp: 0 }), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([2, 3, 4]);
    await log.close();
  });
});

describe('slow synchronous reads', () => {
  it('a read of exactly 2 ms is not slow; three of 3 ms in a row are', async () => {
    const sim = new SimulatedFileSystem();
    const clock = new ManualClock();
    const { fs, calls, cost } = watched(sim, clock);
    const log = await PartitionLog.open({ dir }, { fs, clock });
    await log.append(batchOf(['a']), { assignOffsets: true });
    const readOnce = async () => {
      calls.length = 0;
      await log.read(0, { maxBytes: 1 << 20 });
      return calls.join();
    };
    cost.ms = 2;
    for (let i = 0; i < 4; i++) expect(await readOnce()).toBe('readSync');
    // Two slow reads and a fast one: the count starts again.
    for (const ms of [3, 3, 0, 3, 3]) {
      cost.ms = ms;
      expect(await readOnce()).toBe('readSync');
    }
    cost.ms = 3;
    expect(await readOnce()).toBe('readSync');
    cost.ms = 0;
    expect(await readOnce()).toBe('read');
    clock.advance(29_999);
    expect(await readOnce()).toBe('read');
    clock.advance(1);
    expect(await readOnce()).toBe('readSync');
    await log.close();
  });
});

describe('reads of older segments', () => {
  it('go through the thread pool, and their time does not count against synchronous reads', async () => {
    const sim = new SimulatedFileSystem();
    const clock = new ManualClock();
    const { fs, calls, cost } = watched(sim, clock);
    const log = await PartitionLog.open({ dir, config: { segmentBytes: 150 } }, { fs, clock });
    for (let i = 0; i < 3; i++) await log.append(batchOf([`a${i}`, `b${i}`]), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([0, 2, 4]);
    clock.advance(10_000);
    cost.ms = 50;
    calls.length = 0;
    for (let i = 0; i < 4; i++) await log.read(0, { maxBytes: 1 });
    expect(calls).toEqual(['read', 'read', 'read', 'read']);
    calls.length = 0;
    await log.read(4, { maxBytes: 1 });
    expect(calls).toEqual(['readSync']);
    await log.close();
  });
});

describe('clean shutdown', () => {
  it('a clean reopen keeps the epochs of the checkpoint, and the marker until the first change, so a crash after that change is recovered', async () => {
    const { fs, open } = setup();
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true, leaderEpoch: 2 });
    await log.append(batchOf(['b']), { assignOffsets: true, leaderEpoch: 5 });
    await log.close();
    expect(await fs.readdir(dir)).toContain('.clean-shutdown');
    const reopened = await open();
    expect(reopened.recoveryReport).toBeUndefined();
    expect(reopened.leaderEpochs.entries()).toEqual([
      { epoch: 2, startOffset: 0 },
      { epoch: 5, startOffset: 1 },
    ]);
    // Nothing changed since the clean close: the marker still tells the truth, even after a crash.
    expect(await fs.readdir(dir)).toContain('.clean-shutdown');
    fs.crashLosingAllUnsynced();
    const idle = await open();
    expect(idle.recoveryReport).toBeUndefined();
    expect(idle.logEndOffset).toBe(2);
    // The first change removes it durably before it writes anything.
    await idle.append(batchOf(['c']), { assignOffsets: true, leaderEpoch: 5 });
    expect(await fs.readdir(dir)).not.toContain('.clean-shutdown');
    fs.crashLosingAllUnsynced();
    const crashed = await open();
    expect(crashed.recoveryReport).toBeDefined();
    expect(crashed.leaderEpochs.entries()).toHaveLength(2);
    await crashed.close();
  });

  it('after a clean open the first change pays the marker removal (one directory sync), later ones do not', async () => {
    const { fs, open } = setup();
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true, leaderEpoch: 1 });
    await log.close();
    const reopened = await open();
    const before = fs.syncCount;
    await reopened.append(batchOf(['b']), { assignOffsets: true, leaderEpoch: 1 });
    expect(fs.syncCount - before).toBe(1);
    const after = fs.syncCount;
    await reopened.append(batchOf(['c']), { assignOffsets: true, leaderEpoch: 1 });
    expect(fs.syncCount).toBe(after);
    await reopened.close();
  });

  it('an open after a crash writes the recovery point at the recovered end, whatever the checkpoint said', async () => {
    // Synced appends: the batches survive the crash, the checkpoint (moved only by a flush) lags.
    const { fs, open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true, leaderEpoch: 1 });
    await log.append(batchOf(['c']), { assignOffsets: true, leaderEpoch: 1 });
    expect(await readCheckpoint(fs, `${dir}/recovery-point-checkpoint`)).toBe(0);
    fs.crashLosingAllUnsynced();
    const crashed = await open();
    expect(crashed.recoveryReport).toBeDefined();
    expect(crashed.logEndOffset).toBe(3);
    expect(await readCheckpoint(fs, `${dir}/recovery-point-checkpoint`)).toBe(3);
    await crashed.close();
  });

  it('a clean reopen of an idle log writes nothing and syncs nothing, at open, at a timed flush or at close', async () => {
    const { fs, open } = setup();
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true, leaderEpoch: 1 });
    await log.close();
    const before = fs.syncCount;
    const reopened = await open();
    await reopened.flush();
    await reopened.close();
    expect(fs.syncCount).toBe(before);
    // And it is still a clean log, whole.
    const again = await open();
    expect(again.recoveryReport).toBeUndefined();
    expect(again.logEndOffset).toBe(2);
    expect((await again.readRecords(0, { maxBytes: 1 << 20 })).records).toHaveLength(2);
    await again.close();
  });
});

describe('checkpoints', () => {
  it('a checkpoint is trusted only when its CRC matches and its value is digits', async () => {
    const fs = new SimulatedFileSystem();
    const write = (text: string) => fs.writeFileAtomic('/c', Buffer.from(text));
    const sealed = (value: string) => `${value}\n${crc32c(Buffer.from(`${value}\n`)).toString(16)}\n`;
    expect(await readCheckpoint(fs, '/c')).toBe(0);
    await write(sealed('42'));
    expect(await readCheckpoint(fs, '/c')).toBe(42);
    await write(sealed('42').replace('42', '43'));
    expect(await readCheckpoint(fs, '/c')).toBe(0);
    await write(sealed('-5'));
    expect(await readCheckpoint(fs, '/c')).toBe(0);
    await write(sealed('4x'));
    expect(await readCheckpoint(fs, '/c')).toBe(0);
    await write('42');
    expect(await readCheckpoint(fs, '/c')).toBe(0);
  });

  it('leftover .tmp and .cleaned files are removed at open', async () => {
    const { fs, open } = setup();
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    await log.close();
    await fs.writeFileAtomic(`${dir}/x.tmp`, Buffer.from('junk'));
    await fs.writeFileAtomic(`${dir}/00000000000000000000.log.cleaned`, Buffer.from('junk'));
    const reopened = await open();
    const names = await fs.readdir(dir);
    expect(names.filter((n) => n.endsWith('.tmp') || n.endsWith('.cleaned'))).toEqual([]);
    expect(await readAll(reopened)).toEqual(['a']);
    await reopened.close();
  });

  it('after a crash, only the segments from the one holding the recovery point on are scanned', async () => {
    const { fs, open } = setup({ segmentBytes: 300 });
    const log = await open();
    for (let i = 0; i < 12; i++)
      await log.append(batchOf([`v${i}`.padEnd(60, '.')]), { assignOffsets: true });
    await log.flush();
    const segments = log.segmentCount;
    expect(segments).toBeGreaterThan(3);
    await log.append(batchOf(['unsynced']), { assignOffsets: true });
    fs.crashLosingAllUnsynced();
    const reopened = await open();
    expect(reopened.recoveryReport?.segmentsScanned).toBe(1);
    expect(reopened.logEndOffset).toBe(12);
    await reopened.close();
  });
});

describe('reads', () => {
  it('readRecords walks every returned batch, leaving out records before the asked offset', async () => {
    const { open } = setup();
    const log = await open();
    await log.append(batchOf(['a', 'b', 'c']), { assignOffsets: true });
    await log.append(batchOf(['d']), { assignOffsets: true });
    await log.append(batchOf(['e', 'f']), { assignOffsets: true });
    const { records, nextOffset } = await log.readRecords(1, { maxBytes: 1 << 20 });
    expect(valuesOf(records)).toEqual(['b', 'c', 'd', 'e', 'f']);
    expect(records.map((r) => r.offset)).toEqual([1, 2, 3, 4, 5]);
    expect(nextOffset).toBe(6);
    const capped = await log.readRecords(4, { maxBytes: 1 << 20, maxOffset: 4 });
    expect([capped.records, capped.nextOffset]).toEqual([[], 4]);
    await log.close();
  });

  it('refuses offsets outside [log start, log end] with their bounds in the details', async () => {
    const { open } = setup();
    const log = await open();
    await log.append(batchOf(['a', 'b', 'c']), { assignOffsets: true });
    await log.deleteRecordsBefore(1);
    for (const offset of [0, 4, 1.5, Number.NaN]) {
      const error = await refusal(log.read(offset, { maxBytes: 100 }));
      expect(error.code).toBe('OFFSET_OUT_OF_RANGE');
      expect(error.details).toEqual({ logStartOffset: 1, logEndOffset: 3 });
      expect(error.message).toBe(`offset ${offset} is outside [1, 3]`);
    }
    expect((await log.read(3, { maxBytes: 100 })).batchCount).toBe(0);
    expect((await refusal(log.deleteRecordsBefore(4))).code).toBe('OFFSET_OUT_OF_RANGE');
    await log.close();
  });

  it('offsetForTimestamp never answers below the log start, and looks on in later segments', async () => {
    const { open } = setup({ segmentBytes: 300 });
    const log = await open();
    // Two batches per segment; offset 4 has the newest timestamp of its segment, offset 5 an old one.
    const times = [5000, 5100, 5200, 5300, 9000, 100, 8500, 8600];
    for (const [i, timestamp] of times.entries())
      await log.append(batchOf([`t${i}`.padEnd(40, '.')], { timestamp }), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([0, 2, 4, 6]);
    expect(await log.offsetForTimestamp(5150)).toBe(2);
    expect(await log.offsetForTimestamp(8550)).toBe(4);
    expect(await log.offsetForTimestamp(9001)).toBeNull();
    await log.deleteRecordsBefore(5);
    expect(await log.offsetForTimestamp(0)).toBe(5);
    expect(await log.offsetForTimestamp(5250)).toBe(6);
    expect(await log.offsetForTimestamp(8550)).toBe(7);
    await log.close();
  });

  it('a read at the high watermark returns nothing and the offset asked for, in any segment', async () => {
    const { open } = setup({ segmentBytes: 150 });
    const log = await open();
    for (let i = 0; i < 4; i++) await log.append(batchOf([`a${i}`, `b${i}`]), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([0, 2, 4, 6]);
    for (const offset of [0, 2, 6]) {
      const result = await log.read(offset, { maxBytes: 1 << 20, maxOffset: offset });
      expect([result.batchCount, result.nextOffset], `offset ${offset}`).toEqual([0, offset]);
    }
    await log.close();
  });
});

describe('followers', () => {
  it('a follower append keeps its own offsets and epochs', async () => {
    const { open } = setup();
    const log = await open();
    const at = (base: number, epoch: number) =>
      encodeBatch([{ value: Buffer.from(`f${base}`), timestamp: 1 }], {
        baseOffset: base,
        partitionLeaderEpoch: epoch,
      });
    expect(await log.append(at(0, 0), { assignOffsets: false })).toEqual({
      baseOffset: 0,
      lastOffset: 0,
      logEndOffset: 1,
      batchCount: 1,
    });
    await log.append(at(1, 3), { assignOffsets: false, leaderEpoch: 9 });
    expect(log.leaderEpochs.entries()).toEqual([
      { epoch: 0, startOffset: 0 },
      { epoch: 3, startOffset: 1 },
    ]);
    await log.close();
  });
});
