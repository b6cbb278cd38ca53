import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf, valuesOf } from './helpers.js';

/**
 * Proves that no crash point of a truncation, or of the appends after it, brings truncated data
 * back or leaves a gap: a power loss before any file-system step of `truncateTo` reopens as a
 * contiguous prefix of the old log, and once the truncation is done, never an old record past the
 * cut. Each crash point is the state `afterPowerLoss` copies just before a step.
 */
const dir = '/d/tr-0';
const config = { segmentBytes: 300, flushPolicy: 'sync' as const };

async function readAll(log: PartitionLog): Promise<{ offset: number; value: string }[]> {
  const out: { offset: number; value: string }[] = [];
  for (let offset = log.logStartOffset; offset < log.logEndOffset; ) {
    const { records, nextOffset } = await log.readRecords(offset, { maxBytes: 1 << 20 });
    records.forEach((r, i) => void out.push({ offset: r.offset, value: valuesOf(records)[i]! }));
    offset = nextOffset;
  }
  return out;
}

describe('truncation under power loss', () => {
  for (const cut of [0, 3, 17, 29]) {
    it(`every crash point of truncateTo(${cut}) and the appends after it reopens as a prefix of the old or the new log`, async () => {
      const fs = new SimulatedFileSystem();
      const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
      const old = Array.from({ length: 40 }, (_, i) => `old${i}`.padEnd(40, '.'));
      for (const value of old) await log.append(batchOf([value]), { assignOffsets: true, leaderEpoch: 1 });
      await log.flush();
      expect(log.segmentCount).toBeGreaterThan(4);
      const crashPoints: { phase: 'truncating' | 'appending'; fs: SimulatedFileSystem }[] = [];
      let phase: 'truncating' | 'appending' = 'truncating';
      fs.fault = () => {
        crashPoints.push({ phase, fs: fs.afterPowerLoss() });
        return undefined;
      };
      await log.truncateTo(cut);
      phase = 'appending';
      crashPoints.push({ phase, fs: fs.afterPowerLoss() });
      const fresh = Array.from({ length: 12 }, (_, i) => `new${i}`.padEnd(40, '.'));
      for (const value of fresh) await log.append(batchOf([value]), { assignOffsets: true, leaderEpoch: 2 });
      fs.fault = undefined;
      expect(crashPoints.length).toBeGreaterThan(5);
      for (const [i, point] of crashPoints.entries()) {
        const where = `crash point ${i} (${point.phase}) of truncateTo(${cut})`;
        const reopened = await PartitionLog.open({ dir, config }, { fs: point.fs, clock: new ManualClock() });
        const records = await readAll(reopened);
        expect(
          records.map((r) => r.offset),
          where,
        ).toEqual(records.map((_, k) => k));
        const values = records.map((r) => r.value);
        const oldPrefix = values.every((v, k) => v === old[k]);
        const newAfterCut =
          values.length >= cut &&
          values.slice(0, cut).every((v, k) => v === old[k]) &&
          values.slice(cut).every((v, k) => v === fresh[k]);
        if (point.phase === 'truncating') expect(oldPrefix || newAfterCut, where).toBe(true);
        else expect(newAfterCut, `${where}: truncated records came back`).toBe(true);
        const epochs = reopened.leaderEpochs.entries();
        expect(
          epochs.every((e) => e.startOffset < reopened.logEndOffset),
          where,
        ).toBe(true);
        await reopened.close();
      }
    });
  }
});
