import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog, TRUNCATE_FULLY_FILE } from '../../src/storage/partition-log.js';
import { batchOf, refusal, valuesOf } from './helpers.js';

/**
 * Proves `truncateFullyAndStartAt`: the log is emptied and starts over at any offset (past its
 * end, inside it, at an old segment's base, below its start), a follower's append continues at
 * that offset, every leader epoch is forgotten, and no power loss at any step reopens as anything
 * but the old log or the new empty one.
 */
const dir = '/d/tf-0';
const config = { segmentBytes: 300, flushPolicy: 'sync' as const };

function open(fs: SimulatedFileSystem): Promise<PartitionLog> {
  return PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
}

/** A follower's batch: offsets and epoch set by its leader. */
function followerBatch(baseOffset: number, values: readonly string[], epoch: number): Buffer {
  return encodeBatch(
    values.map((v, i) => ({ key: null, value: Buffer.from(v), timestamp: 1_000 + i })),
    { baseOffset, partitionLeaderEpoch: epoch },
  );
}

async function readAll(log: PartitionLog): Promise<{ offset: number; value: string }[]> {
  const out: { offset: number; value: string }[] = [];
  for (let offset = log.logStartOffset; offset < log.logEndOffset; ) {
    const { records, nextOffset } = await log.readRecords(offset, { maxBytes: 1 << 20 });
    records.forEach((r, i) => void out.push({ offset: r.offset, value: valuesOf(records)[i]! }));
    offset = nextOffset;
  }
  return out;
}

/** A log of 40 records over several segments, epochs 1 (offsets 0-19) and 3 (20-39), its start at 5. */
async function oldLog(fs: SimulatedFileSystem): Promise<{ log: PartitionLog; old: string[] }> {
  const log = await open(fs);
  const old = Array.from({ length: 40 }, (_, i) => `old${i}`.padEnd(40, '.'));
  for (const [i, value] of old.entries())
    await log.append(batchOf([value]), { assignOffsets: true, leaderEpoch: i < 20 ? 1 : 3 });
  await log.deleteRecordsBefore(5);
  await log.flush();
  expect(log.segmentCount).toBeGreaterThan(4);
  return { log, old };
}

describe('truncateFullyAndStartAt', () => {
  for (const [why, offset] of [
    ['past the log end', 1_000],
    ['at the log end', 40],
    ['inside the log', 17],
    ['at the base offset of the first segment', 0],
    ['below the log start', 2],
  ] as const) {
    it(`empties the log and starts it at ${offset} (${why}); a follower continues there`, async () => {
      const fs = new SimulatedFileSystem();
      const { log } = await oldLog(fs);
      const ends: number[] = [];
      log.onAppend((end) => ends.push(end));
      await log.truncateFullyAndStartAt(offset);
      expect(log.logStartOffset).toBe(offset);
      expect(log.logEndOffset).toBe(offset);
      expect(log.recoveryPoint).toBe(offset);
      expect(log.segmentBaseOffsets()).toEqual([offset]);
      expect(log.leaderEpochs.entries()).toEqual([]);
      expect(ends).toEqual([offset]);
      expect(await readAll(log)).toEqual([]);
      if (offset > 0)
        expect((await refusal(log.read(offset - 1, { maxBytes: 1024 }))).code).toBe('OFFSET_OUT_OF_RANGE');
      const segmentFiles = (await fs.readdir(dir)).filter((n) => /^\d{20}\./.test(n));
      expect(segmentFiles.sort()).toEqual(
        ['.index', '.log', '.timeindex'].map((ext) => `${String(offset).padStart(20, '0')}${ext}`),
      );
      expect(await fs.exists(`${dir}/${TRUNCATE_FULLY_FILE}`)).toBe(false);

      // A batch that does not begin at the new start is refused; one that does is appended.
      const wrong = await refusal(log.append(followerBatch(offset + 1, ['x'], 7), { assignOffsets: false }));
      expect(wrong.code).toBe('INVALID_REQUEST');
      const result = await log.append(followerBatch(offset, ['a', 'b'], 7), { assignOffsets: false });
      expect(result).toMatchObject({ baseOffset: offset, lastOffset: offset + 1, logEndOffset: offset + 2 });
      expect(log.leaderEpochs.entries()).toEqual([{ epoch: 7, startOffset: offset }]);
      expect(await readAll(log)).toEqual([
        { offset, value: 'a' },
        { offset: offset + 1, value: 'b' },
      ]);

      await log.close();
      const reopened = await open(fs);
      expect(reopened.logStartOffset).toBe(offset);
      expect(reopened.logEndOffset).toBe(offset + 2);
      expect(reopened.leaderEpochs.entries()).toEqual([{ epoch: 7, startOffset: offset }]);
      await reopened.close();
    });
  }

  it('lets a leader assign offsets from the new start', async () => {
    const fs = new SimulatedFileSystem();
    const { log } = await oldLog(fs);
    await log.truncateFullyAndStartAt(500);
    const result = await log.append(batchOf(['n0', 'n1']), { assignOffsets: true, leaderEpoch: 4 });
    expect(result).toMatchObject({ baseOffset: 500, logEndOffset: 502 });
    expect(log.leaderEpochs.entries()).toEqual([{ epoch: 4, startOffset: 500 }]);
    await log.close();
  });

  it('refuses an offset that is not a non-negative safe integer, and changes nothing', async () => {
    const fs = new SimulatedFileSystem();
    const { log } = await oldLog(fs);
    for (const offset of [-1, 1.5, Number.NaN, 2 ** 53])
      expect((await refusal(log.truncateFullyAndStartAt(offset))).code).toBe('INVALID_REQUEST');
    expect([log.logStartOffset, log.logEndOffset]).toEqual([5, 40]);
    await log.close();
  });

  it('a read already in an old segment finishes with the old bytes', async () => {
    const fs = new SimulatedFileSystem();
    const { log, old } = await oldLog(fs);
    const reading = log.readRecords(5, { maxBytes: 1 << 20 });
    await log.truncateFullyAndStartAt(100);
    const { records } = await reading;
    expect(valuesOf(records)[0]).toBe(old[5]);
    await log.close();
  });

  for (const offset of [1_000, 17, 0]) {
    it(`every crash point of truncateFullyAndStartAt(${offset}) and the appends after it reopens as the old log or the new one`, async () => {
      const fs = new SimulatedFileSystem();
      const { log, old } = await oldLog(fs);
      const crashPoints: { phase: 'truncating' | 'appending'; fs: SimulatedFileSystem }[] = [];
      let phase: 'truncating' | 'appending' = 'truncating';
      fs.fault = () => {
        crashPoints.push({ phase, fs: fs.afterPowerLoss() });
        return undefined;
      };
      await log.truncateFullyAndStartAt(offset);
      phase = 'appending';
      crashPoints.push({ phase, fs: fs.afterPowerLoss() });
      const fresh = Array.from({ length: 12 }, (_, i) => `new${i}`.padEnd(40, '.'));
      for (const [i, value] of fresh.entries())
        await log.append(followerBatch(offset + i, [value], 9), { assignOffsets: false });
      fs.fault = undefined;
      expect(crashPoints.filter((p) => p.phase === 'truncating').length).toBeGreaterThan(5);
      let sawOld = false;
      let sawNew = false;
      for (const [i, point] of crashPoints.entries()) {
        const where = `crash point ${i} (${point.phase}) of truncateFullyAndStartAt(${offset})`;
        const reopened = await open(point.fs);
        const records = await readAll(reopened);
        const isOld =
          reopened.logStartOffset === 5 &&
          reopened.logEndOffset === 40 &&
          records.every((r, k) => r.offset === 5 + k && r.value === old[5 + k]) &&
          records.length === 35 &&
          JSON.stringify(reopened.leaderEpochs.entries()) ===
            JSON.stringify([
              { epoch: 1, startOffset: 5 },
              { epoch: 3, startOffset: 20 },
            ]);
        const isNew =
          reopened.logStartOffset === offset &&
          records.every((r, k) => r.offset === offset + k && r.value === fresh[k]) &&
          reopened.logEndOffset === offset + records.length &&
          JSON.stringify(reopened.leaderEpochs.entries()) ===
            JSON.stringify(records.length ? [{ epoch: 9, startOffset: offset }] : []);
        if (point.phase === 'truncating') expect(isOld || isNew, where).toBe(true);
        else expect(isNew, `${where}: the old log came back`).toBe(true);
        sawOld ||= isOld;
        sawNew ||= isNew;
        expect(await point.fs.exists(`${dir}/${TRUNCATE_FULLY_FILE}`), where).toBe(false);
        // The reopened log takes a follower's next batch where it ends.
        await reopened.append(followerBatch(reopened.logEndOffset, ['next'], 10), { assignOffsets: false });
        await reopened.close();
      }
      expect(sawOld && sawNew).toBe(true);
      await log.close();
    });
  }

  it('an open that finds the intent finishes the truncation (a crash right after the intent landed)', async () => {
    const fs = new SimulatedFileSystem();
    const { log } = await oldLog(fs);
    let atIntent: SimulatedFileSystem | undefined;
    fs.fault = (operation, path) => {
      // The first step after the intent's rename: the state a power loss there leaves.
      if (atIntent === undefined && operation === 'unlink' && path.endsWith('.log'))
        atIntent = fs.afterPowerLoss();
      return undefined;
    };
    await log.truncateFullyAndStartAt(300);
    fs.fault = undefined;
    expect(atIntent).toBeDefined();
    expect(await atIntent!.exists(`${dir}/${TRUNCATE_FULLY_FILE}`)).toBe(true);
    expect((await atIntent!.readdir(dir)).some((n) => n.endsWith('.log'))).toBe(true);
    const reopened = await open(atIntent!);
    expect([reopened.logStartOffset, reopened.logEndOffset]).toEqual([300, 300]);
    expect(reopened.segmentBaseOffsets()).toEqual([300]);
    expect(reopened.leaderEpochs.entries()).toEqual([]);
    expect(await atIntent!.exists(`${dir}/${TRUNCATE_FULLY_FILE}`)).toBe(false);
    await reopened.close();
    await log.close();
  });

  it('an open refuses a damaged intent rather than guess which log to serve', async () => {
    const fs = new SimulatedFileSystem();
    const { log } = await oldLog(fs);
    await log.close();
    await fs.writeFileAtomic(`${dir}/${TRUNCATE_FULLY_FILE}`, Buffer.from('300\nbad\n'));
    const error = await refusal(open(fs));
    expect(error.code).toBe('KAFKA_STORAGE_ERROR');
    expect(error.retriable).toBe(false);
  });
});
