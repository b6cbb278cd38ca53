import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { isSluiceError } from '../../src/common/errors.js';
import { SeededRandom } from '../../src/common/random.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf, valuesOf } from './helpers.js';

/**
 * Proves that any sequence of appends, reads, rolls, truncations, deletions, retention, clean
 * reopens and crashes after a flush leaves the log equal to a plain in-memory list of batches.
 */

type Op =
  | { kind: 'append'; values: string[] }
  | { kind: 'read'; at: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'deleteBefore'; at: number }
  | { kind: 'retention' }
  | { kind: 'reopen' }
  | { kind: 'flushAndCrash'; seed: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      values: fc.array(fc.string({ minLength: 1, maxLength: 60 }), { minLength: 1, maxLength: 5 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('read' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteBefore' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'retention' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('flushAndCrash' as const), seed: fc.nat() }) },
);

interface ModelBatch {
  base: number;
  values: string[];
}

class Model {
  batches: ModelBatch[] = [];
  logStart = 0;
  get end(): number {
    const last = this.batches.at(-1);
    return last ? last.base + last.values.length : this.logStart;
  }
  append(values: string[]): void {
    this.batches.push({ base: this.end, values });
  }
  truncate(at: number): void {
    if (at >= this.end) return;
    if (at <= this.logStart) {
      this.batches = [];
      return;
    }
    this.batches = this.batches.filter((b) => b.base + b.values.length <= at);
    // Rounding down to a batch start may land below the log start: the log then restarts there.
    if (this.end <= this.logStart) this.batches = [];
  }
  recordsFrom(offset: number): { offset: number; value: string }[] {
    const out: { offset: number; value: string }[] = [];
    for (const b of this.batches) {
      for (let i = 0; i < b.values.length; i++)
        if (b.base + i >= offset) out.push({ offset: b.base + i, value: b.values[i]! });
    }
    return out;
  }
}

async function readAll(log: PartitionLog, from: number): Promise<{ offset: number; value: string }[]> {
  const out: { offset: number; value: string }[] = [];
  let offset = from;
  for (let guard = 0; offset < log.logEndOffset && guard < 10_000; guard++) {
    const { records, nextOffset } = await log.readRecords(offset, { maxBytes: 300 });
    for (const r of records) out.push({ offset: r.offset, value: valuesOf([r])[0]! });
    expect(nextOffset).toBeGreaterThan(offset);
    offset = nextOffset;
  }
  return out;
}

describe('PartitionLog against an in-memory model', () => {
  it('agrees with the model after every operation', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 300, max: 1500 }),
        async (ops, segmentBytes) => {
          const fs = new SimulatedFileSystem();
          const clock = new ManualClock();
          const config = { segmentBytes, indexIntervalBytes: 128, retentionBytes: 2000, retentionMs: -1 };
          let log = await PartitionLog.open({ dir: '/d/t-0', config }, { fs, clock });
          const model = new Model();
          for (const op of ops) {
            switch (op.kind) {
              case 'append': {
                const result = await log.append(batchOf(op.values), { assignOffsets: true });
                expect(result.baseOffset).toBe(model.end);
                model.append(op.values);
                break;
              }
              case 'read': {
                const offset = model.logStart + (op.at % (model.end - model.logStart + 1));
                expect(await readAll(log, offset)).toEqual(model.recordsFrom(offset));
                break;
              }
              case 'truncate': {
                const at = op.at % (model.end + 2);
                await log.truncateTo(at);
                model.truncate(at);
                break;
              }
              case 'deleteBefore': {
                const at = op.at % (model.end + 1);
                await log.deleteRecordsBefore(at);
                model.logStart = Math.max(model.logStart, at);
                break;
              }
              case 'retention': {
                const before = log.logStartOffset;
                await log.enforceRetention();
                expect(log.logStartOffset).toBeGreaterThanOrEqual(before);
                model.logStart = log.logStartOffset;
                break;
              }
              case 'reopen':
                await log.close();
                log = await PartitionLog.open({ dir: '/d/t-0', config }, { fs, clock });
                break;
              case 'flushAndCrash':
                await log.flush();
                fs.crash(new SeededRandom(op.seed));
                log = await PartitionLog.open({ dir: '/d/t-0', config }, { fs, clock });
                break;
            }
            if (model.batches.length === 0) model.logStart = Math.max(model.logStart, log.logStartOffset);
            expect(log.logEndOffset).toBe(model.end);
            expect(log.logStartOffset).toBe(model.logStart);
          }
          expect(await readAll(log, log.logStartOffset)).toEqual(model.recordsFrom(model.logStart));
          await log.close();
        },
      ),
      {
        numRuns: Number(process.env.STORAGE_MODEL_RUNS ?? 60),
        seed: Number(process.env.STORAGE_MODEL_SEED ?? 20261125),
      },
    );
  });
});

describe('crash recovery', () => {
  it('a cut at every byte of the last batches keeps exactly the whole batches before it', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock();
    const dir = '/d/c-0';
    const log = await PartitionLog.open({ dir }, { fs, clock });
    const batches = [batchOf(['a', 'b']), batchOf(['c']), batchOf(['d', 'e', 'f'])];
    const ends: number[] = [];
    for (const b of batches) {
      await log.append(b, { assignOffsets: true });
      ends.push(log.sizeBytes);
    }
    await log.flush();
    const file = fs.files.get(`${dir}/00000000000000000000.log`)!;
    const full = Buffer.from(file.durable);
    const offsetsAfter = [2, 3, 6];
    for (let cut = ends[0]!; cut <= full.length; cut++) {
      const copy = new SimulatedFileSystem();
      for (const d of fs.dirs) copy.dirs.add(d);
      for (const [path, f] of fs.files) {
        const content = Buffer.from(f.durable);
        copy.files.set(path, { durable: content, current: Buffer.from(content), pending: [] });
      }
      const logFile = copy.files.get(`${dir}/00000000000000000000.log`)!;
      logFile.durable = full.subarray(0, cut);
      logFile.current = Buffer.from(logFile.durable);
      const reopened = await PartitionLog.open({ dir }, { fs: copy, clock });
      const whole = ends.filter((e) => e <= cut).length;
      expect(reopened.logEndOffset, `cut at byte ${cut}`).toBe(offsetsAfter[whole - 1]);
      expect(reopened.sizeBytes).toBe(ends[whole - 1]);
      const next = await reopened.append(batchOf(['next']), { assignOffsets: true });
      expect(next.baseOffset).toBe(offsetsAfter[whole - 1]);
      const all = valuesOf((await reopened.readRecords(0, { maxBytes: 1 << 20 })).records);
      expect(all).toEqual([...['a', 'b', 'c', 'd', 'e', 'f'].slice(0, offsetsAfter[whole - 1]), 'next']);
      await reopened.close();
    }
  });

  it('never loses an acknowledged sync append and never serves a torn batch, over many seeded crashes', async () => {
    for (let seed = 1; seed <= 150; seed++) {
      const random = new SeededRandom(seed);
      const fs = new SimulatedFileSystem();
      const clock = new ManualClock();
      const dir = '/d/s-0';
      const config = { flushPolicy: 'sync' as const, segmentBytes: 400 + random.int(800) };
      const log = await PartitionLog.open({ dir, config }, { fs, clock });
      const acked: string[] = [];
      const count = 1 + random.int(20);
      const pending: Promise<void>[] = [];
      for (let i = 0; i < count; i++) {
        const value = `s${seed}-${i}`;
        pending.push(
          log.append(batchOf([value]), { assignOffsets: true }).then(() => void acked.push(value)),
        );
        if (random.chance(0.3)) await Promise.all(pending.splice(0));
      }
      // Crash with some appends possibly still in flight: only acknowledged ones are promised.
      if (random.chance(0.5)) await Promise.all(pending.splice(0));
      fs.crash(random);
      await Promise.allSettled(pending);
      const reopened = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
      const values = valuesOf((await readAllRecords(reopened)).map((r) => r));
      const ackedSet = new Set(acked);
      const expectedPrefix = Array.from({ length: count }, (_, i) => `s${seed}-${i}`).slice(0, values.length);
      expect(values, `seed ${seed}`).toEqual(expectedPrefix);
      for (const a of ackedSet) expect(values, `seed ${seed}: acknowledged ${a} lost`).toContain(a);
      await reopened.close();
    }
  });
});

async function readAllRecords(log: PartitionLog) {
  const out: { value: Uint8Array | null }[] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const { records, nextOffset } = await log.readRecords(offset, { maxBytes: 1 << 20 });
    out.push(...records);
    offset = nextOffset;
  }
  return out;
}

describe('compaction', () => {
  it('keeps the latest value of every key, keeps offsets and their order, and drops old tombstones', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock(10_000_000);
    const config = { segmentBytes: 500, cleanupPolicy: 'compact' as const, deleteRetentionMs: 1000 };
    const log = await PartitionLog.open({ dir: '/d/k-0', config }, { fs, clock });
    const written: { key: string; value: string | null; offset: number }[] = [];
    const random = new SeededRandom(7);
    for (let i = 0; i < 60; i++) {
      const key = `k${random.int(8)}`;
      const value = random.chance(0.1) ? null : `v${i}`;
      const { baseOffset } = await log.append(
        batchOf([value ?? '\u0000tombstone'], { keys: [key], timestamp: clock.nowMs() }),
        {
          assignOffsets: true,
        },
      );
      written.push({ key, value, offset: baseOffset });
    }
    const bases = log.segmentBaseOffsets();
    const activeBase = bases.at(-1)!;
    // The last record of every closed segment stays, so that each segment keeps its end offset.
    const segmentEnds = new Set(bases.slice(1).map((base) => base - 1));
    clock.advance(5000);
    const { recordsRemoved } = await log.compact();
    expect(recordsRemoved).toBeGreaterThan(0);
    const remaining = await readAllWithKeys(log);
    const latest = new Map<string, number>();
    for (const w of written) latest.set(w.key, w.offset);
    const expected = written.filter((w) => {
      if (w.offset >= activeBase || segmentEnds.has(w.offset)) return true;
      return latest.get(w.key) === w.offset && w.value !== null;
    });
    expect(remaining).toEqual(expected.map((w) => ({ key: w.key, value: w.value, offset: w.offset })));
    expect(log.logEndOffset).toBe(60);
    try {
      await log.read(-5, { maxBytes: 10 });
    } catch (error) {
      expect(isSluiceError(error, 'OFFSET_OUT_OF_RANGE')).toBe(true);
    }
    await log.close();
    const reopened = await PartitionLog.open({ dir: '/d/k-0', config }, { fs, clock });
    expect(await readAllWithKeys(reopened)).toEqual(remaining);
    await reopened.close();
  });
});

async function readAllWithKeys(log: PartitionLog) {
  const out: { key: string; value: string | null; offset: number }[] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const { records, nextOffset } = await log.readRecords(offset, { maxBytes: 1 << 20 });
    for (const r of records) {
      out.push({
        key: Buffer.from(r.key!).toString(),
        value: r.value === null ? null : Buffer.from(r.value).toString(),
        offset: r.offset,
      });
    }
    offset = nextOffset;
  }
  return out;
}
