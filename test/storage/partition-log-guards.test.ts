import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import type { Family, MetricSpec, Metrics } from '../../src/common/metrics.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { type FileHandle, SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { segmentName } from '../../src/storage/segment.js';
import { batchOf, refusal, valuesOf } from './helpers.js';

/**
 * Rules of the partition log that a mutation run found unguarded (docs/mutation-protocol-storage.md):
 * the storage metrics, which files open takes as segments and in what order, what a refused or
 * cut open leaves, recovery of batches above the default size limit, an fsync raced by a
 * truncation, compaction at a base offset above 0, and the edges of timestamp lookups and
 * tombstone retention.
 */

const dir = '/d/guards-0';

/**
 * The simulated file system with hooks a test can arm: a one-shot wait before the next fsync of a
 * `.log` file, reads that fail, a directory listing in reverse order (the real one promises no
 * order), and a count of the handles open.
 */
class HookedFileSystem extends SimulatedFileSystem {
  beforeNextLogSync: (() => Promise<void>) | undefined;
  failReads = false;
  reverseListing = false;
  openHandles = 0;

  override async open(path: string): Promise<FileHandle> {
    const handle = await super.open(path);
    this.openHandles++;
    const { read, readSync, sync, close } = {
      read: handle.read.bind(handle),
      readSync: handle.readSync.bind(handle),
      sync: handle.sync.bind(handle),
      close: handle.close.bind(handle),
    };
    let closed = false;
    handle.read = async (...args) => {
      if (this.failReads) throw new Error('EIO');
      return read(...args);
    };
    handle.readSync = (...args) => {
      if (this.failReads) throw new Error('EIO');
      return readSync(...args);
    };
    handle.sync = async () => {
      const wait = path.endsWith('.log') ? this.beforeNextLogSync : undefined;
      if (wait) {
        this.beforeNextLogSync = undefined;
        await wait();
      }
      return sync();
    };
    handle.close = async () => {
      if (!closed) this.openHandles--;
      closed = true;
      return close();
    };
    return handle;
  }

  override async readdir(path: string): Promise<string[]> {
    const names = await super.readdir(path);
    return this.reverseListing ? names.reverse() : names;
  }
}

function setup(config: Record<string, unknown> = {}, metrics?: Metrics) {
  const fs = new HookedFileSystem();
  const clock = new ManualClock(1_000_000);
  const open = (more: Record<string, unknown> = {}) =>
    PartitionLog.open(
      { dir, config: { ...config, ...more } },
      { fs, clock, ...(metrics ? { metrics } : {}) },
    );
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

async function turns(count = 10): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A `Metrics` that keeps every family declared and every value counted or observed, by label values. */
function recordingMetrics() {
  const families = new Map<string, { kind: string; spec: MetricSpec; values: Map<string, number[]> }>();
  const declare =
    (kind: string) =>
    (spec: MetricSpec): Family<never> => {
      const family = families.get(spec.name) ?? { kind, spec, values: new Map<string, number[]>() };
      families.set(spec.name, family);
      return {
        labels: (...labelValues: string[]) => {
          const key = labelValues.join(',');
          const values = family.values.get(key) ?? [];
          family.values.set(key, values);
          const child = {
            inc: (amount = 1) => values.push(amount),
            observe: (value: number) => values.push(value),
            set: () => {},
            dec: () => {},
          };
          return child as never;
        },
        remove: () => {},
      };
    };
  const metrics: Metrics = {
    counter: declare('counter'),
    gauge: declare('gauge'),
    histogram: declare('histogram'),
    collectedGauge: () => {},
  };
  const values = (name: string, labels = '') => families.get(name)?.values.get(labels) ?? [];
  return { metrics, families, values };
}

const record = (timestamps: readonly number[], key: (i: number) => string | null = () => null) =>
  encodeBatch(
    timestamps.map((timestamp, i) => {
      const k = key(i);
      return { key: k === null ? null : Buffer.from(k), value: Buffer.from(`v${timestamp}-${i}`), timestamp };
    }),
  );

describe('storage metrics', () => {
  it('are declared under the names, kinds and labels docs/observability.md lists, each with a help text', async () => {
    const { metrics, families } = recordingMetrics();
    const { open } = setup({}, metrics);
    const log = await open();
    const docs = readFileSync(new URL('../../docs/observability.md', import.meta.url), 'utf8');
    const expected = [
      ['sluice_storage_errors_total', 'counter', ['operation']],
      ['sluice_log_fsync_duration_seconds', 'histogram', []],
      ['sluice_log_append_group_appends', 'histogram', []],
      ['sluice_log_append_group_bytes', 'histogram', []],
      ['sluice_corrupt_batches_total', 'counter', ['check']],
    ] as const;
    for (const [name, kind, labelNames] of expected) {
      const family = families.get(name);
      expect([family?.kind, family?.spec.labelNames ?? []], name).toEqual([kind, labelNames]);
      expect(family!.spec.help.length, name).toBeGreaterThan(10);
      expect(docs, name).toContain(`| \`${name}\` | ${kind} |`);
    }
    await log.close();
  });

  it('count append groups, fsync time in seconds, write and read errors, and verified reads cut at a damaged batch', async () => {
    const { metrics, values } = recordingMetrics();
    const { fs, clock, open } = setup({ flushMs: 1 << 30 }, metrics);
    const log = await open();
    const first = batchOf(['a', 'b']);
    await log.append(first, { assignOffsets: true });
    expect([values('sluice_log_append_group_appends'), values('sluice_log_append_group_bytes')]).toEqual([
      [1],
      [first.length],
    ]);
    // Each fsync takes 5 ms of the manual clock.
    fs.fault = (operation) => {
      if (operation === 'sync') clock.advance(5);
      return undefined;
    };
    await log.flush();
    fs.fault = undefined;
    expect(values('sluice_log_fsync_duration_seconds')).toEqual([0.005]);
    // A verified read of whole batches counts nothing; one cut before a damaged batch counts once.
    await log.append(batchOf(['c']), { assignOffsets: true });
    expect((await log.read(0, { maxBytes: 1 << 20, verify: true })).batchCount).toBe(2);
    expect(values('sluice_corrupt_batches_total', 'crc')).toEqual([]);
    const file = fs.files.get(`${dir}/${segmentName(0)}.log`)!;
    file.current[file.current.length - 2] = file.current[file.current.length - 2]! ^ 0xff;
    expect((await log.read(0, { maxBytes: 1 << 20, verify: true })).batchCount).toBe(1);
    expect(values('sluice_corrupt_batches_total', 'crc')).toEqual([1]);
    fs.failReads = true;
    expect((await refusal(log.read(0, { maxBytes: 1 << 20 }))).code).toBe('KAFKA_STORAGE_ERROR');
    fs.failReads = false;
    expect(values('sluice_storage_errors_total', 'read')).toEqual([1]);
    expect(values('sluice_storage_errors_total', 'write')).toEqual([]);
    fs.fault = (operation) => (operation === 'write' ? new Error('EIO') : undefined);
    await refusal(log.append(batchOf(['d']), { assignOffsets: true }));
    fs.fault = undefined;
    expect(values('sluice_storage_errors_total', 'write')).toEqual([1]);
    await log.close();
  });
});

describe('open', () => {
  it('takes only files named by 20 digits and .log as segments: a leftover .log.cleaned or a copy changes nothing', async () => {
    const { fs, open } = setup();
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true });
    await log.close();
    for (const name of [`${segmentName(0)}.log.cleaned`, `copy-${segmentName(0)}.log`]) {
      const handle = await fs.open(`${dir}/${name}`);
      await handle.write(batchOf(['stray']), 0);
      await handle.close();
    }
    for (let reopen = 0; reopen < 2; reopen++) {
      const again = await open();
      expect([await readAll(again), again.segmentBaseOffsets()], `reopen ${reopen}`).toEqual([
        ['a', 'b'],
        [0],
      ]);
      await again.close();
    }
    expect(await fs.exists(`${dir}/${segmentName(0)}.log.cleaned`)).toBe(false);
  });

  it('orders segments by base offset whatever order the directory lists them in', async () => {
    const { fs, open } = setup({ segmentBytes: 150 });
    const log = await open();
    for (let i = 0; i < 3; i++) await log.append(batchOf([`a${i}`, `b${i}`]), { assignOffsets: true });
    expect(log.segmentBaseOffsets()).toEqual([0, 2, 4]);
    await log.close();
    fs.reverseListing = true;
    const again = await open();
    expect([again.segmentBaseOffsets(), await readAll(again)]).toEqual([
      [0, 2, 4],
      ['a0', 'b0', 'a1', 'b1', 'a2', 'b2'],
    ]);
    await again.close();
  });

  it('an open refused for a missing segment closes every segment it opened and names both files', async () => {
    const { fs, open } = setup({ segmentBytes: 150 });
    const log = await open();
    for (let i = 0; i < 3; i++) await log.append(batchOf([`a${i}`, `b${i}`]), { assignOffsets: true });
    await log.close();
    expect(fs.openHandles).toBe(0);
    for (const ext of ['log', 'index', 'timeindex']) await fs.unlink(`${dir}/${segmentName(2)}.${ext}`);
    const error = await refusal(open());
    expect(error.message).toBe(
      `offsets [2, 4) of ${dir} are in no segment file: ${segmentName(0)}.log ends at offset 2, ` +
        `${segmentName(4)}.log begins at 4; a segment file is missing`,
    );
    expect(fs.openHandles).toBe(0);
  });

  it('drops a segment that overlaps its predecessor, after a clean shutdown too, and only that one', async () => {
    const { fs, open } = setup({ segmentBytes: 150 });
    const log = await open();
    for (let i = 0; i < 3; i++) await log.append(batchOf([`a${i}`, `b${i}`]), { assignOffsets: true });
    await log.close();
    // The newest segment's files named as if it began at 3: its batches start at 4, inside [2, 4).
    for (const ext of ['log', 'index', 'timeindex'])
      await fs.rename(`${dir}/${segmentName(4)}.${ext}`, `${dir}/${segmentName(3)}.${ext}`);
    for (let reopen = 0; reopen < 2; reopen++) {
      const again = await open();
      expect([again.segmentBaseOffsets(), await readAll(again)], `reopen ${reopen}`).toEqual([
        [0, 2],
        ['a0', 'b0', 'a1', 'b1'],
      ]);
      await again.close();
    }
  });

  it('recovery reports the bytes it cut off a torn tail', async () => {
    const { fs, open } = setup();
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    await log.flush();
    // A crash in the middle of the next write: part of a batch is on disk, no clean shutdown.
    const torn = batchOf(['b']).subarray(0, 40);
    const file = fs.files.get(`${dir}/${segmentName(0)}.log`)!;
    file.current = Buffer.concat([file.current, torn]);
    const recovered = await open();
    expect(recovered.recoveryReport?.truncatedBytes).toBe(torn.length);
    expect(await readAll(recovered)).toEqual(['a']);
    await recovered.close();
  });
});

describe('batches above the default size limit', () => {
  const big = (key: string) =>
    encodeBatch([{ key: Buffer.from(key), value: Buffer.alloc(1_500_000, 1), timestamp: 1 }]);

  it('survive crash recovery when the topic allows them', async () => {
    const { fs, open } = setup({ batchBytesMax: 2 << 20 });
    const log = await open();
    await log.append(big('k'), { assignOffsets: true });
    await log.append(batchOf(['after']), { assignOffsets: true });
    await log.flush();
    fs.crashLosingAllUnsynced();
    const recovered = await open();
    expect([recovered.logEndOffset, recovered.recoveryReport?.problem]).toEqual([2, undefined]);
    await recovered.close();
  });

  it('survive the reopen of a segment that compaction rewrote', async () => {
    const { open } = setup({ batchBytesMax: 2 << 20, cleanupPolicy: 'compact', segmentBytes: 3 << 20 });
    const log = await open();
    await log.append(
      record([1], () => 'gone'),
      { assignOffsets: true },
    );
    await log.append(big('big'), { assignOffsets: true });
    await log.append(
      record([2], () => 'end'),
      { assignOffsets: true },
    );
    log.updateConfig({ segmentMs: 0 });
    await log.append(
      record([3], () => 'gone'),
      { assignOffsets: true },
    );
    expect(log.segmentBaseOffsets()).toEqual([0, 3]);
    expect(await log.compact()).toEqual({ segmentsCleaned: 1, recordsRemoved: 1 });
    const { records } = await log.readRecords(1, { maxBytes: 1 });
    expect([records[0]?.offset, records[0]?.value?.length]).toEqual([1, 1_500_000]);
    await log.close();
  });
});

describe('an fsync raced by a truncation', () => {
  it('does not move the recovery point over the offsets written after the cut', async () => {
    const { fs, open } = setup({ flushMs: 1 << 30 });
    const log = await open();
    for (let i = 0; i < 10; i++) await log.append(batchOf([`a${i}`]), { assignOffsets: true });
    let release: () => void = () => {};
    fs.beforeNextLogSync = () => new Promise<void>((resolve) => (release = resolve));
    const flushing = log.flush();
    await turns();
    // The fsync of offsets up to 10 is in flight; the log is cut at 5 and written again.
    await log.truncateTo(5);
    for (let i = 0; i < 5; i++) await log.append(batchOf([`b${i}`]), { assignOffsets: true });
    release();
    await flushing;
    expect(log.logEndOffset).toBe(10);
    expect(log.recoveryPoint).toBeLessThanOrEqual(5);
    await log.close();
  });
});

describe('compaction of a batch at a base offset above 0', () => {
  it('keeps the offsets of the records it keeps', async () => {
    const { open } = setup({ cleanupPolicy: 'compact', segmentBytes: 1 << 20 });
    const log = await open();
    await log.append(
      record([1], () => 'a'),
      { assignOffsets: true },
    );
    // Offsets 1..3: b, c, b again; the first b goes.
    await log.append(
      record([2, 3, 4], (i) => (i === 1 ? 'c' : 'b')),
      { assignOffsets: true },
    );
    log.updateConfig({ segmentMs: 0 });
    await log.append(
      record([5], () => 'z'),
      { assignOffsets: true },
    );
    expect(await log.compact()).toEqual({ segmentsCleaned: 1, recordsRemoved: 1 });
    // The first segment's records, as one read returns them.
    const { records } = await log.readRecords(0, { maxBytes: 1 << 20 });
    expect(records.map((r) => [r.offset, Buffer.from(r.key!).toString()])).toEqual([
      [0, 'a'],
      [2, 'c'],
      [3, 'b'],
    ]);
    await log.close();
  });
});

describe('edges', () => {
  it('offsetForTimestamp never answers an offset below the log start', async () => {
    const { open } = setup();
    const log = await open();
    await log.append(record([2000, 1000, 1000]), { assignOffsets: true });
    await log.deleteRecordsBefore(1);
    expect(await log.offsetForTimestamp(1500)).toBeNull();
    expect(await log.offsetForTimestamp(1000)).toBe(1);
    await log.close();
  });

  it('offsetForTimestamp looks past a first matching batch whose matching records are all below the log start', async () => {
    const { open } = setup();
    const log = await open();
    await log.append(record([2000, 1000, 1000]), { assignOffsets: true });
    await log.append(record([1500]), { assignOffsets: true });
    await log.deleteRecordsBefore(1);
    // Batch [0-2] has max timestamp 2000, but its record at 2000 is offset 0, below the log start.
    expect(await log.offsetForTimestamp(1500)).toBe(3);
    await log.close();
  });

  it('a tombstone stays while its segment is exactly delete.retention.ms old', async () => {
    const { clock, open } = setup({ cleanupPolicy: 'compact', deleteRetentionMs: 1000 });
    const log = await open();
    const t = clock.nowMs() - 1000;
    await log.append(encodeBatch([{ key: Buffer.from('k'), value: null, timestamp: t }]), {
      assignOffsets: true,
    });
    await log.append(
      record([t], () => 'z'),
      { assignOffsets: true },
    );
    log.updateConfig({ segmentMs: 0 });
    await log.append(
      record([clock.nowMs()], () => 'x'),
      { assignOffsets: true },
    );
    expect(log.segmentCount).toBe(2);
    await log.compact();
    expect(await readAll(log)).toEqual([null, `v${t}-0`, `v${clock.nowMs()}-0`]);
    await log.close();
  });

  it('a deleted log refuses calls as closed', async () => {
    const { open } = setup();
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    await log.deleteAll();
    expect((await refusal(log.append(batchOf(['b']), { assignOffsets: true }))).message).toBe(
      `the log in ${dir} is closed`,
    );
  });
});
