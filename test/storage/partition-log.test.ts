import { mkdtemp, readdir, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { isSluiceError } from '../../src/common/errors.js';
import { checkBatchAt, encodeBatch, readBatchHeader } from '../../src/protocol/batch.js';
import { logConfigFromTopicConfigs } from '../../src/protocol/topic-config.js';
import { type FileHandle, nodeFileSystem, SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';
import { type AppendResult, PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf, valuesOf } from './helpers.js';

let dir: string;
/** The real file system with a clock that moves only when a test says so. */
const real = () => ({ fs: nodeFileSystem, clock: new ManualClock() });
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    expect(isSluiceError(error) && error.code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe('PartitionLog on the real file system', () => {
  it('assigns offsets, reads whole batches back byte for byte, and survives a clean reopen', async () => {
    const log = await PartitionLog.open({ dir }, real());
    const a = await log.append(batchOf(['a0', 'a1', 'a2']), { assignOffsets: true, leaderEpoch: 1 });
    const b = await log.append(batchOf(['b0']), { assignOffsets: true, leaderEpoch: 1 });
    expect([a.baseOffset, a.lastOffset, b.baseOffset, log.logEndOffset]).toEqual([0, 2, 3, 4]);
    const read = await log.read(0, { maxBytes: 1 << 20 });
    expect(read.batchCount).toBe(2);
    expect(read.nextOffset).toBe(4);
    expect(checkBatchAt(read.data).ok).toBe(true);
    expect(valuesOf((await log.readRecords(1, { maxBytes: 1 << 20 })).records)).toEqual(['a1', 'a2', 'b0']);
    expect(readBatchHeader(read.data).partitionLeaderEpoch).toBe(1);
    await log.close();
    expect(await readdir(dir)).toContain('.clean-shutdown');
    const reopened = await PartitionLog.open({ dir }, real());
    expect(reopened.recoveryReport).toBeUndefined();
    expect(reopened.logEndOffset).toBe(4);
    expect((await reopened.read(0, { maxBytes: 1 << 20 })).data).toEqual(read.data);
    await reopened.close();
  });

  it('respects maxBytes (but returns at least one batch) and maxOffset (the high watermark)', async () => {
    const log = await PartitionLog.open({ dir }, real());
    for (let i = 0; i < 5; i++) await log.append(batchOf([`v${i}`.repeat(50)]), { assignOffsets: true });
    const one = await log.read(0, { maxBytes: 1 });
    expect(one.batchCount).toBe(1);
    const two = await log.read(1, { maxBytes: one.data.length * 2 });
    expect([two.batchCount, two.nextOffset]).toEqual([2, 3]);
    const capped = await log.read(0, { maxBytes: 1 << 20, maxOffset: 3 });
    expect([capped.batchCount, capped.nextOffset]).toEqual([3, 3]);
    expect((await log.read(5, { maxBytes: 100 })).batchCount).toBe(0);
    await expectCode(log.read(6, { maxBytes: 100 }), 'OFFSET_OUT_OF_RANGE');
    await expectCode(log.read(-1, { maxBytes: 100 }), 'OFFSET_OUT_OF_RANGE');
    await log.close();
  });

  it('refuses a corrupt batch and appends nothing of the call', async () => {
    const log = await PartitionLog.open({ dir }, real());
    const good = batchOf(['ok']);
    const bad = batchOf(['bad']);
    bad[bad.length - 1]! ^= 0xff;
    await expectCode(log.append(Buffer.concat([good, bad]), { assignOffsets: true }), 'CORRUPT_MESSAGE');
    await expectCode(log.append(Buffer.from([1, 2, 3]), { assignOffsets: true }), 'CORRUPT_MESSAGE');
    expect(log.logEndOffset).toBe(0);
    expect(log.sizeBytes).toBe(0);
    await log.close();
  });

  it('keeps follower offsets and refuses a gap', async () => {
    const log = await PartitionLog.open({ dir }, real());
    const batch = encodeBatch([{ value: Buffer.from('x'), timestamp: 1 }], {
      baseOffset: 0,
      partitionLeaderEpoch: 2,
    });
    await log.append(batch, { assignOffsets: false });
    const gap = encodeBatch([{ value: Buffer.from('y'), timestamp: 1 }], { baseOffset: 5 });
    await expectCode(log.append(gap, { assignOffsets: false }), 'INVALID_REQUEST');
    expect(log.leaderEpochs.entries()).toEqual([{ epoch: 2, startOffset: 0 }]);
    await log.close();
  });

  it('rolls segments by size, named by 20-digit base offset, and finds offsets across them', async () => {
    const log = await PartitionLog.open(
      { dir, config: { segmentBytes: 1024, indexIntervalBytes: 200 } },
      real(),
    );
    for (let i = 0; i < 40; i++)
      await log.append(batchOf([`record-${i}`.padEnd(60, '.')]), { assignOffsets: true });
    expect(log.segmentCount).toBeGreaterThan(3);
    const files = await readdir(dir);
    expect(files).toContain('00000000000000000000.log');
    expect(files.filter((f) => f.endsWith('.log')).every((f) => /^\d{20}\.log$/.test(f))).toBe(true);
    for (let offset = 0; offset < 40; offset++) {
      const { records } = await log.readRecords(offset, { maxBytes: 1 });
      expect(valuesOf(records)[0]).toBe(`record-${offset}`.padEnd(60, '.'));
    }
    await log.close();
  });

  it('rolls by segment.ms using the injected clock', async () => {
    const clock = new ManualClock();
    const log = await PartitionLog.open({ dir, config: { segmentMs: 1000 } }, { fs: nodeFileSystem, clock });
    await log.append(batchOf(['a']), { assignOffsets: true });
    clock.advance(999);
    await log.append(batchOf(['b']), { assignOffsets: true });
    expect(log.segmentCount).toBe(1);
    clock.advance(1);
    await log.append(batchOf(['c']), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([0, 2]);
    await log.close();
  });

  it('finds offsets by timestamp', async () => {
    const log = await PartitionLog.open(
      { dir, config: { segmentBytes: 2048, indexIntervalBytes: 100 } },
      real(),
    );
    for (let i = 0; i < 30; i++)
      await log.append(batchOf([`t${i}`, `u${i}`], { timestamp: 10_000 + i * 10 }), { assignOffsets: true });
    expect(await log.offsetForTimestamp(0)).toBe(0);
    expect(await log.offsetForTimestamp(10_001)).toBe(1);
    expect(await log.offsetForTimestamp(10_002)).toBe(2);
    expect(await log.offsetForTimestamp(10_155)).toBe(32);
    expect(await log.offsetForTimestamp(10_291)).toBe(59);
    expect(await log.offsetForTimestamp(10_292)).toBeNull();
    await log.close();
  });

  it('truncates to an offset at a batch start, drops later epochs, and continues from there', async () => {
    const log = await PartitionLog.open({ dir, config: { segmentBytes: 600 } }, real());
    for (let i = 0; i < 10; i++) {
      await log.append(batchOf([`x${i}`.repeat(40), 'y']), {
        assignOffsets: true,
        leaderEpoch: i < 5 ? 1 : 2,
      });
    }
    expect(log.leaderEpochs.endOffsetFor(1, log.logEndOffset)).toEqual({ epoch: 1, endOffset: 10 });
    expect(log.leaderEpochs.endOffsetFor(5)).toEqual({ epoch: 2, endOffset: 20 });
    expect(log.logEndOffset).toBe(20);
    await log.truncateTo(7);
    expect(log.logEndOffset).toBe(6);
    expect(log.leaderEpochs.entries()).toEqual(
      [
        { epoch: 1, startOffset: 0 },
        { epoch: 2, startOffset: 10 },
      ].filter((e) => e.startOffset < 6),
    );
    const appended = await log.append(batchOf(['after']), { assignOffsets: true });
    expect(appended.baseOffset).toBe(6);
    const { records } = await log.readRecords(4, { maxBytes: 1 << 20 });
    expect(valuesOf(records)).toEqual(['x2'.repeat(40), 'y']);
    expect(valuesOf((await log.readRecords(6, { maxBytes: 1 << 20 })).records)).toEqual(['after']);
    await log.close();
  });

  it('deletes records before an offset and applies retention by bytes and time, never the active segment', async () => {
    const clock = new ManualClock(1_000_000);
    const log = await PartitionLog.open(
      { dir, config: { segmentBytes: 500, retentionBytes: 1200, retentionMs: -1 } },
      { fs: nodeFileSystem, clock },
    );
    for (let i = 0; i < 20; i++) {
      await log.append(batchOf([`r${i}`.repeat(30)], { timestamp: clock.nowMs() }), { assignOffsets: true });
    }
    const before = log.segmentCount;
    const { segmentsDeleted } = await log.enforceRetention();
    expect(segmentsDeleted).toBeGreaterThan(0);
    expect(log.segmentCount).toBe(before - segmentsDeleted);
    expect(log.sizeBytes).toBeLessThanOrEqual(1200 + 500);
    expect(log.logStartOffset).toBe(log.segmentBaseOffsets()[0]);
    await expectCode(log.read(0, { maxBytes: 100 }), 'OFFSET_OUT_OF_RANGE');
    log.updateConfig({ retentionBytes: -1, retentionMs: 1000 });
    clock.advance(5000);
    await log.enforceRetention();
    expect(log.segmentCount).toBe(1);
    expect(log.logEndOffset).toBe(20);
    await log.deleteRecordsBefore(19);
    expect(log.logStartOffset).toBe(19);
    await log.close();
    const reopened = await PartitionLog.open({ dir }, real());
    expect([reopened.logStartOffset, reopened.logEndOffset]).toEqual([19, 20]);
    await reopened.close();
  });

  it('recovers after a crash that tore the tail: whole batches before the cut remain', async () => {
    const log = await PartitionLog.open({ dir }, real());
    for (let i = 0; i < 3; i++) await log.append(batchOf([`v${i}`]), { assignOffsets: true });
    await log.flush();
    // No close: no clean-shutdown marker. Cut the last batch in half.
    const logFile = join(dir, '00000000000000000000.log');
    const size = log.sizeBytes;
    await truncate(logFile, size - 5);
    const reopened = await PartitionLog.open({ dir }, real());
    expect(reopened.recoveryReport?.problem).toBeDefined();
    expect(reopened.logEndOffset).toBe(2);
    expect(valuesOf((await reopened.readRecords(0, { maxBytes: 1 << 20 })).records)).toEqual(['v0', 'v1']);
    expect((await reopened.append(batchOf(['v2again']), { assignOffsets: true })).baseOffset).toBe(2);
    await reopened.close();
  });

  it('log manager opens partitions by directory name and deletes them', async () => {
    const clock = new ManualClock();
    const manager = await LogManager.open({ dataDir: dir }, { fs: nodeFileSystem, clock });
    const log = await manager.getOrCreate('orders', 3);
    await log.append(batchOf(['x']), { assignOffsets: true });
    await manager.close();
    const again = await LogManager.open({ dataDir: dir }, { fs: nodeFileSystem, clock });
    expect(again.list().map((l) => [l.topic, l.partition, l.log.logEndOffset])).toEqual([['orders', 3, 1]]);
    await again.deletePartition('orders', 3);
    expect(await readdir(dir)).toEqual([]);
    await again.close();
  });

  it('log manager runs retention on its clock and keeps the new log start across a restart', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock();
    const options = {
      dataDir: '/data',
      retentionCheckMs: 1000,
      // By time: retention by size also runs at every roll, without the timer.
      defaultConfig: { segmentBytes: 300, retentionMs: 500, retentionBytes: -1 },
    };
    const manager = await LogManager.open(options, { fs, clock });
    const log = await manager.getOrCreate('events', 0);
    for (let i = 0; i < 12; i++)
      await log.append(batchOf([`value-${i}`.repeat(8)], { timestamp: clock.nowMs() }), {
        assignOffsets: true,
      });
    expect(log.segmentCount).toBeGreaterThan(3);
    expect(log.logStartOffset).toBe(0);
    clock.advance(999);
    await manager.close();
    const early = await LogManager.open(options, { fs, clock });
    expect(early.get('events', 0)!.logStartOffset).toBe(0);
    clock.advance(1000);
    // close() waits for the maintenance round the timer started.
    await early.close();
    const later = await LogManager.open(options, { fs, clock });
    const reopened = later.get('events', 0)!;
    expect(reopened.logStartOffset).toBeGreaterThan(0);
    expect(reopened.logEndOffset).toBe(12);
    expect(reopened.segmentCount).toBe(1);
    await later.close();
  });

  it('a truncation that rounds down below the log start empties the log at the log start', async () => {
    const fs = new SimulatedFileSystem();
    const log = await PartitionLog.open({ dir: '/d/t-0' }, { fs, clock: new ManualClock() });
    await log.append(batchOf(['a', 'b', 'c']), { assignOffsets: true });
    await log.deleteRecordsBefore(1);
    // Offset 2 lies in the batch that starts at 0, below the log start 1.
    await log.truncateTo(2);
    expect([log.logStartOffset, log.logEndOffset]).toEqual([1, 1]);
    expect((await log.append(batchOf(['d']), { assignOffsets: true })).baseOffset).toBe(1);
    expect(valuesOf((await log.readRecords(1, { maxBytes: 1 << 20 })).records)).toEqual(['d']);
    await log.close();
  });

  it('parses Kafka-named configs and refuses bad values with INVALID_CONFIG', () => {
    const config = logConfigFromTopicConfigs({
      'retention.ms': '1000',
      'cleanup.policy': 'compact',
      'flush.policy': 'sync',
      'min.insync.replicas': 1,
    });
    expect([config.retentionMs, config.cleanupPolicy, config.flushPolicy]).toEqual([1000, 'compact', 'sync']);
    const bads: Record<string, string | number>[] = [
      { 'retention.ms': 'soon' },
      { 'segment.bytes': 1 },
      { 'cleanup.policy': 'shred' },
    ];
    for (const bad of bads) {
      try {
        logConfigFromTopicConfigs(bad);
        expect.unreachable();
      } catch (error) {
        expect(isSluiceError(error, 'INVALID_CONFIG')).toBe(true);
      }
    }
  });
});

describe('group commit', () => {
  it('shares fsyncs among concurrent sync appends, and every append is durable when it resolves', async () => {
    const fs = new SimulatedFileSystem();
    const log = await PartitionLog.open(
      { dir: '/data/p-0', config: { flushPolicy: 'sync' } },
      { fs, clock: new ManualClock() },
    );
    const syncsBefore = fs.syncCount;
    const appends = Array.from({ length: 32 }, (_, i) =>
      log.append(batchOf([`g${i}`]), { assignOffsets: true }),
    );
    await Promise.all(appends);
    const syncs = fs.syncCount - syncsBefore;
    expect(syncs).toBeGreaterThan(0);
    expect(syncs).toBeLessThan(32);
    fs.crashLosingAllUnsynced();
    const reopened = await PartitionLog.open({ dir: '/data/p-0' }, { fs, clock: new ManualClock() });
    expect(reopened.logEndOffset).toBe(32);
    await reopened.close();
  });
});

describe('reads', () => {
  /**
   * A simulated file system that records how `.log` files are read and written, and can make the
   * synchronous calls slow, as when the disk answers instead of the page cache.
   */
  function watchedFs(clock: ManualClock) {
    const fs = new SimulatedFileSystem();
    const calls: string[] = [];
    const slow = { reads: false, writes: false };
    const open = async (path: string): Promise<FileHandle> => {
      const handle = await fs.open(path);
      if (!path.endsWith('.log')) return handle;
      return {
        read: (...args) => {
          calls.push('read');
          return handle.read(...args);
        },
        readSync: (...args) => {
          calls.push('readSync');
          if (slow.reads) clock.advance(5);
          return handle.readSync(...args);
        },
        write: (...args) => {
          calls.push('write');
          return handle.write(...args);
        },
        writeSync: (...args) => {
          calls.push('writeSync');
          if (slow.writes) clock.advance(5);
          return handle.writeSync(...args);
        },
        sync: () => handle.sync(),
        truncate: (n) => handle.truncate(n),
        size: () => handle.size(),
        close: () => handle.close(),
      };
    };
    const watched = new Proxy(fs, {
      get: (target, name) => {
        if (name === 'open') return open;
        const member = Reflect.get(target, name);
        return typeof member === 'function' ? member.bind(target) : member;
      },
    });
    return { fs: watched, calls, slow };
  }

  it('reads the active segment synchronously until such reads are slow three times in a row, then through the thread pool for a while', async () => {
    const clock = new ManualClock();
    const { fs, calls, slow } = watchedFs(clock);
    const log = await PartitionLog.open({ dir: '/data/r-0' }, { fs, clock });
    for (let i = 0; i < 3; i++) await log.append(batchOf([`r${i}`]), { assignOffsets: true });
    const readAll = async () => valuesOf((await log.readRecords(0, { maxBytes: 1 << 20 })).records);
    calls.length = 0;
    expect(await readAll()).toEqual(['r0', 'r1', 'r2']);
    expect(calls).toEqual(['readSync']);
    slow.reads = true;
    // One slow read may be a lost time slice; three in a row are the disk.
    for (let i = 0; i < 2; i++) expect(await readAll()).toEqual(['r0', 'r1', 'r2']);
    calls.length = 0;
    expect(await readAll()).toEqual(['r0', 'r1', 'r2']);
    expect(calls).toEqual(['readSync']);
    slow.reads = false;
    calls.length = 0;
    expect(await readAll()).toEqual(['r0', 'r1', 'r2']);
    expect(calls).toEqual(['read']);
    clock.advance(30_000);
    calls.length = 0;
    expect(await readAll()).toEqual(['r0', 'r1', 'r2']);
    expect(calls).toEqual(['readSync']);
    await log.close();
  });

  it('writes appends up to 1 MiB synchronously until such writes are slow three times in a row, then through the thread pool for a while', async () => {
    const clock = new ManualClock();
    const { fs, calls, slow } = watchedFs(clock);
    const log = await PartitionLog.open({ dir: '/data/w-1' }, { fs, clock });
    const append = (value: string) => log.append(batchOf([value]), { assignOffsets: true });
    await append('a');
    expect(calls).toEqual(['writeSync']);
    // A group over 1 MiB always goes through the thread pool.
    calls.length = 0;
    await Promise.all([append('x'.repeat(600_000)), append('y'.repeat(600_000))]);
    expect(calls).toEqual(['write']);
    slow.writes = true;
    calls.length = 0;
    for (let i = 0; i < 3; i++) await append(`slow${i}`);
    expect(calls).toEqual(['writeSync', 'writeSync', 'writeSync']);
    slow.writes = false;
    calls.length = 0;
    await append('pooled');
    expect(calls).toEqual(['write']);
    clock.advance(30_000);
    calls.length = 0;
    await append('again');
    expect(calls).toEqual(['writeSync']);
    expect(valuesOf((await log.readRecords(6, { maxBytes: 1 << 20 })).records)).toEqual(['pooled', 'again']);
    await log.close();
  });

  it('returns a whole first batch larger than the read window, through a second read', async () => {
    const log = await PartitionLog.open(
      { dir: '/data/r-2' },
      { fs: new SimulatedFileSystem(), clock: new ManualClock() },
    );
    const big = (tag: string) => batchOf([tag.repeat(12_000), `${tag}-tail`]);
    for (const tag of ['a', 'b', 'c']) await log.append(big(tag), { assignOffsets: true });
    for (const offset of [0, 1, 2, 3, 5]) {
      const result = await log.read(offset, { maxBytes: 1 });
      expect(result.batchCount).toBe(1);
      expect(checkBatchAt(result.data).ok).toBe(true);
      expect(readBatchHeader(result.data).baseOffset).toBe(offset - (offset % 2));
      expect(result.nextOffset).toBe(offset - (offset % 2) + 2);
    }
    const two = await log.read(1, { maxBytes: 40_000, maxOffset: 4 });
    expect([two.batchCount, two.nextOffset]).toEqual([2, 4]);
    await log.close();
  });

  it('leaves the asked-for room around the batches it returns', async () => {
    const log = await PartitionLog.open(
      { dir: '/data/r-1' },
      { fs: new SimulatedFileSystem(), clock: new ManualClock() },
    );
    await log.append(batchOf(['x', 'y']), { assignOffsets: true });
    const result = await log.read(0, { maxBytes: 1 << 20, reserve: { before: 16, after: 64 } });
    expect(result.reserved).toEqual({ before: 16, after: 64 });
    expect(result.data.byteOffset).toBeGreaterThanOrEqual(16);
    expect(
      result.data.buffer.byteLength - result.data.byteOffset - result.data.length,
    ).toBeGreaterThanOrEqual(64);
    expect(checkBatchAt(result.data).ok).toBe(true);
    await log.close();
  });
});

describe('write coalescing', () => {
  it('appends that arrive together share one write and keep their call order', async () => {
    const fs = new SimulatedFileSystem();
    const log = await PartitionLog.open({ dir: '/data/w-0' }, { fs, clock: new ManualClock() });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => log.append(batchOf([`c${i}`, `d${i}`]), { assignOffsets: true })),
    );
    expect(results.map((r) => r.baseOffset)).toEqual(results.map((_, i) => i * 2));
    const writes = fs.files
      .get('/data/w-0/00000000000000000000.log')!
      .pending.filter((op) => op.kind === 'write').length;
    expect(writes).toBeGreaterThan(0);
    expect(writes).toBeLessThan(50);
    expect(valuesOf((await log.readRecords(98, { maxBytes: 1 << 20 })).records)).toEqual(['c49', 'd49']);
    await log.close();
  });

  it('a follower append that does not continue the log is refused alone, the others of its group land', async () => {
    const log = await PartitionLog.open(
      { dir: '/data/f-0' },
      { fs: new SimulatedFileSystem(), clock: new ManualClock() },
    );
    const at = (base: number, value: string) =>
      encodeBatch([{ value: Buffer.from(value), timestamp: 1 }], { baseOffset: base });
    const outcomes = await Promise.allSettled([
      log.append(at(0, 'a'), { assignOffsets: false }),
      log.append(at(5, 'gap'), { assignOffsets: false }),
      log.append(at(1, 'b'), { assignOffsets: false }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(valuesOf((await log.readRecords(0, { maxBytes: 1 << 20 })).records)).toEqual(['a', 'b']);
    await log.close();
  });

  it('a corrupt append in a shared write is cut off again; the others of its group land with contiguous offsets', async () => {
    const fs = new SimulatedFileSystem();
    const log = await PartitionLog.open({ dir: '/data/x-0' }, { fs, clock: new ManualClock() });
    await log.append(batchOf(['first']), { assignOffsets: true });
    const bad = batchOf(['bad']);
    bad[bad.length - 1]! ^= 0xff;
    const outcomes = await Promise.allSettled([
      log.append(batchOf(['a0', 'a1']), { assignOffsets: true }),
      log.append(bad, { assignOffsets: true }),
      log.append(batchOf(['b0']), { assignOffsets: true }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const rejected = outcomes[1] as PromiseRejectedResult;
    expect(isSluiceError(rejected.reason) && rejected.reason.code).toBe('CORRUPT_MESSAGE');
    expect(
      outcomes.flatMap((o) => (o.status === 'fulfilled' ? [[o.value.baseOffset, o.value.lastOffset]] : [])),
    ).toEqual([
      [1, 2],
      [3, 3],
    ]);
    expect(valuesOf((await log.readRecords(0, { maxBytes: 1 << 20 })).records)).toEqual([
      'first',
      'a0',
      'a1',
      'b0',
    ]);
    // The file holds exactly the appended batches: no byte of the corrupt one is left behind.
    const file = fs.files.get('/data/x-0/00000000000000000000.log')!;
    expect(file.current.length).toBe(log.sizeBytes);
    await log.close();
  });

  it('a crash after a corrupt append was written but before it was cut off never serves it, and keeps what was flushed', async () => {
    const fs = new SimulatedFileSystem();
    const log = await PartitionLog.open({ dir: '/data/y-0' }, { fs, clock: new ManualClock() });
    await log.append(batchOf(['kept']), { assignOffsets: true });
    await log.flush();
    // Two appends that arrive together make a group over 1 MiB: one write through the thread
    // pool, with the CRCs checked while it is in flight.
    const bad = batchOf(['b'.repeat(600_000)]);
    bad[bad.length - 3]! ^= 0x55;
    const outcomes = await Promise.allSettled([
      log.append(bad, { assignOffsets: true }),
      log.append(batchOf(['g'.repeat(600_000)]), { assignOffsets: true }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseFulfilledResult<AppendResult>).value.baseOffset).toBe(1);
    // Power fails with the group's write on disk and its cut-off lost.
    const logPath = '/data/y-0/00000000000000000000.log';
    const file = fs.files.get(logPath)!;
    expect(file.pending.map((op) => op.kind)).toEqual(['write', 'truncate', 'write']);
    fs.crashKeeping((path, pending) => (path === logPath ? 1 : pending.length));
    expect(file.current.length).toBeGreaterThan(1_200_000);
    const reopened = await PartitionLog.open({ dir: '/data/y-0' }, { fs, clock: new ManualClock() });
    expect(reopened.recoveryReport).toBeDefined();
    expect(reopened.logEndOffset).toBe(1);
    expect(valuesOf((await reopened.readRecords(0, { maxBytes: 1 << 20 })).records)).toEqual(['kept']);
    const next = await reopened.append(batchOf(['after']), { assignOffsets: true });
    expect(next.baseOffset).toBe(1);
    await reopened.close();
  });
});
