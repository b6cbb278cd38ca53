import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { SeededRandom } from '../../src/common/random.js';
import { encodeBatch, nextOffsetOf, readBatchHeader } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf } from './helpers.js';

/**
 * Proves `endOffsetForEpoch` and `latestEpoch` answer as Kafka's OffsetsForLeaderEpoch does
 * (LeaderEpochFileCache.endOffsetFor: the largest epoch not above the one asked for, and where it
 * ends), for every case, after truncateTo and truncateFullyAndStartAt, and after a power loss at
 * any point, where the cache rebuilt by recovery must agree with an oracle computed from the
 * batches the reopened log holds.
 */
const dir = '/d/ep-0';
const config = { segmentBytes: 400, flushPolicy: 'sync' as const };
const UNDEFINED = { epoch: -1, endOffset: -1 };

function open(fs: SimulatedFileSystem): Promise<PartitionLog> {
  return PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
}

/** Appends one batch of `count` records per entry, as a leader of `epoch`. */
async function appendEpochs(
  log: PartitionLog,
  plan: readonly [epoch: number, count: number][],
): Promise<void> {
  for (const [epoch, count] of plan) {
    const values = Array.from({ length: count }, (_, i) => `e${epoch}-${i}`);
    await log.append(batchOf(values), { assignOffsets: true, leaderEpoch: epoch });
  }
}

/** Epochs 2 (offsets 0-9), 3 (10-24), 6 (25-29). */
async function threeEpochs(fs = new SimulatedFileSystem()): Promise<PartitionLog> {
  const log = await open(fs);
  await appendEpochs(log, [
    [2, 4],
    [2, 6],
    [3, 5],
    [3, 5],
    [3, 5],
    [6, 5],
  ]);
  return log;
}

/** The oracle: Kafka's rule over the epochs and start offsets the visible batches show. */
async function oracle(log: PartitionLog): Promise<(epoch: number) => { epoch: number; endOffset: number }> {
  const starts: { epoch: number; startOffset: number }[] = [];
  for (let offset = log.logStartOffset; offset < log.logEndOffset; ) {
    const { data, nextOffset } = await log.read(offset, { maxBytes: 1 << 20 });
    for (let pos = 0; pos < data.length; ) {
      const header = readBatchHeader(data, pos);
      const epoch = header.partitionLeaderEpoch;
      if (nextOffsetOf(header) > log.logStartOffset && epoch >= 0 && epoch > (starts.at(-1)?.epoch ?? -1))
        starts.push({ epoch, startOffset: Math.max(header.baseOffset, log.logStartOffset) });
      pos += 15 + header.batchLength;
    }
    offset = nextOffset;
  }
  const end = log.logEndOffset;
  return (epoch) => {
    if (epoch < 0 || starts.length === 0) return UNDEFINED;
    const latest = starts.at(-1)!;
    if (epoch >= latest.epoch) return { epoch: latest.epoch, endOffset: end };
    const floor = starts.filter((s) => s.epoch <= epoch).at(-1);
    const next = starts.find((s) => s.epoch > epoch)!;
    return { epoch: floor?.epoch ?? epoch, endOffset: next.startOffset };
  };
}

async function expectOracle(log: PartitionLog, where: string): Promise<void> {
  const expected = await oracle(log);
  for (let epoch = -1; epoch <= 12; epoch++)
    expect(log.endOffsetForEpoch(epoch), `${where}: epoch ${epoch}`).toEqual(expected(epoch));
  expect(log.latestEpoch, where).toBe(log.leaderEpochs.entries().at(-1)?.epoch);
}

describe('endOffsetForEpoch', () => {
  it('answers (-1, -1) for every epoch of a log without epochs, and latestEpoch is undefined', async () => {
    const log = await open(new SimulatedFileSystem());
    expect(log.latestEpoch).toBeUndefined();
    for (const epoch of [-1, 0, 1, 100]) expect(log.endOffsetForEpoch(epoch)).toEqual(UNDEFINED);
    // Batches without an epoch (-1) add none.
    await log.append(batchOf(['a']), { assignOffsets: true });
    expect(log.latestEpoch).toBeUndefined();
    expect(log.endOffsetForEpoch(0)).toEqual(UNDEFINED);
    await log.close();
  });

  it('answers each case of Kafka LeaderEpochFileCache.endOffsetFor', async () => {
    const log = await threeEpochs();
    expect(log.latestEpoch).toBe(6);
    // The latest epoch, and above it: the log end.
    expect(log.endOffsetForEpoch(6)).toEqual({ epoch: 6, endOffset: 30 });
    expect(log.endOffsetForEpoch(7)).toEqual({ epoch: 6, endOffset: 30 });
    expect(log.endOffsetForEpoch(1_000)).toEqual({ epoch: 6, endOffset: 30 });
    // A known epoch, and one between known ones: the largest not above it, to the next's start.
    expect(log.endOffsetForEpoch(3)).toEqual({ epoch: 3, endOffset: 25 });
    expect(log.endOffsetForEpoch(4)).toEqual({ epoch: 3, endOffset: 25 });
    expect(log.endOffsetForEpoch(5)).toEqual({ epoch: 3, endOffset: 25 });
    expect(log.endOffsetForEpoch(2)).toEqual({ epoch: 2, endOffset: 10 });
    // Below the first known epoch (KIP-279): the epoch asked for, to the first epoch's start.
    expect(log.endOffsetForEpoch(1)).toEqual({ epoch: 1, endOffset: 0 });
    expect(log.endOffsetForEpoch(0)).toEqual({ epoch: 0, endOffset: 0 });
    // UNDEFINED_EPOCH, and what is no epoch at all.
    expect(log.endOffsetForEpoch(-1)).toEqual(UNDEFINED);
    expect(log.endOffsetForEpoch(1.5)).toEqual(UNDEFINED);
    // The latest epoch follows the log end as it grows.
    await appendEpochs(log, [[6, 3]]);
    expect(log.endOffsetForEpoch(6)).toEqual({ epoch: 6, endOffset: 33 });
    await log.close();
  });

  it('below the first epoch after records were deleted: the first epoch now starts at the log start', async () => {
    const log = await threeEpochs();
    await log.deleteRecordsBefore(12);
    expect(log.leaderEpochs.entries()).toEqual([
      { epoch: 3, startOffset: 12 },
      { epoch: 6, startOffset: 25 },
    ]);
    expect(log.endOffsetForEpoch(2)).toEqual({ epoch: 2, endOffset: 12 });
    expect(log.endOffsetForEpoch(3)).toEqual({ epoch: 3, endOffset: 25 });
    await expectOracle(log, 'after deleteRecordsBefore(12)');
    await log.close();
  });

  it('after truncateTo, the epochs past the cut are gone and the last one left ends at the new log end', async () => {
    const log = await threeEpochs();
    await log.truncateTo(20);
    expect(log.latestEpoch).toBe(3);
    expect(log.endOffsetForEpoch(6)).toEqual({ epoch: 3, endOffset: 20 });
    expect(log.endOffsetForEpoch(3)).toEqual({ epoch: 3, endOffset: 20 });
    expect(log.endOffsetForEpoch(2)).toEqual({ epoch: 2, endOffset: 10 });
    await log.truncateTo(10);
    expect(log.latestEpoch).toBe(2);
    expect(log.endOffsetForEpoch(3)).toEqual({ epoch: 2, endOffset: 10 });
    // A new leader's epoch appended after the cut.
    await appendEpochs(log, [[8, 2]]);
    expect(log.endOffsetForEpoch(6)).toEqual({ epoch: 2, endOffset: 10 });
    expect(log.endOffsetForEpoch(8)).toEqual({ epoch: 8, endOffset: 12 });
    await expectOracle(log, 'after truncateTo(10) and an append in epoch 8');
    await log.close();
  });

  it('after truncateFullyAndStartAt, no epoch is known until a batch brings one', async () => {
    const log = await threeEpochs();
    await log.truncateFullyAndStartAt(100);
    expect(log.latestEpoch).toBeUndefined();
    for (const epoch of [0, 2, 6, 9]) expect(log.endOffsetForEpoch(epoch)).toEqual(UNDEFINED);
    const batch = encodeBatch([{ key: null, value: Buffer.from('x'), timestamp: 1 }], {
      baseOffset: 100,
      partitionLeaderEpoch: 7,
    });
    await log.append(batch, { assignOffsets: false });
    expect(log.latestEpoch).toBe(7);
    expect(log.endOffsetForEpoch(7)).toEqual({ epoch: 7, endOffset: 101 });
    expect(log.endOffsetForEpoch(6)).toEqual({ epoch: 6, endOffset: 100 });
    await log.close();
  });

  it('answers the same after a clean reopen', async () => {
    const fs = new SimulatedFileSystem();
    const log = await threeEpochs(fs);
    const before = [...Array(10).keys()].map((e) => log.endOffsetForEpoch(e));
    await log.close();
    const reopened = await open(fs);
    expect([...Array(10).keys()].map((e) => reopened.endOffsetForEpoch(e))).toEqual(before);
    await reopened.close();
  });

  it('refuses on a closed log rather than answer from a stale cache', async () => {
    const log = await threeEpochs();
    await log.close();
    expect(() => log.endOffsetForEpoch(3)).toThrow(/closed/);
  });

  it('after a power loss at any point, the rebuilt cache agrees with the batches the log holds', async () => {
    const steps = await countSteps();
    expect(steps).toBeGreaterThan(20);
    for (let seed = 1; seed <= 60; seed++) {
      const random = new SeededRandom(seed);
      const fs = new SimulatedFileSystem();
      const log = await open(fs);
      const stopAt = random.int(steps);
      let step = 0;
      let stopped!: () => void;
      const stop = new Promise<void>((resolve) => (stopped = resolve));
      // A synchronous write cannot stall; every other operation can be where the power goes.
      fs.fault = (operation) => {
        if (operation === 'write' || step++ < stopAt) return undefined;
        stopped();
        return 'stall';
      };
      void followerLife(log).then(stopped, stopped);
      await stop;
      fs.crash(random);
      // The stopped log's work in flight must not touch the files the reopened one uses: it
      // gets a copy of the disk, and the old one is powered off for good.
      const disk = fs.afterPowerLoss();
      fs.fault = (operation) => (operation === 'write' ? new Error('powered off') : 'stall');
      const reopened = await open(disk);
      await expectOracle(reopened, `seed ${seed}, power lost at step ${stopAt}`);
      // A follower's next batch in a newer epoch adds it where the log ends.
      const end = reopened.logEndOffset;
      const batch = encodeBatch([{ key: null, value: Buffer.from('n'), timestamp: 1 }], {
        baseOffset: end,
        partitionLeaderEpoch: 20,
      });
      await reopened.append(batch, { assignOffsets: false });
      expect(reopened.endOffsetForEpoch(20), `seed ${seed}`).toEqual({ epoch: 20, endOffset: end + 1 });
      expect(reopened.endOffsetForEpoch(19).endOffset, `seed ${seed}`).toBe(end);
      await reopened.close();
    }
  });
});

/**
 * The scenario a follower lives through: epochs, a truncation to a diverging point, a new
 * leader's epoch, a full truncation, a new start. A power loss stops it at a random file-system
 * step and keeps a random part of the unsynced writes (the last perhaps torn).
 */
async function followerLife(log: PartitionLog): Promise<void> {
  await appendEpochs(log, [
    [1, 3],
    [1, 5],
    [2, 4],
  ]);
  await log.flush();
  await appendEpochs(log, [
    [4, 6],
    [4, 2],
  ]);
  await log.truncateTo(9);
  await appendEpochs(log, [
    [5, 3],
    [7, 4],
  ]);
  await log.truncateFullyAndStartAt(40);
  for (const [i, epoch] of [9, 9, 11].entries()) {
    const batch = encodeBatch([{ key: null, value: Buffer.from(`f${i}`), timestamp: 1 }], {
      baseOffset: 40 + i,
      partitionLeaderEpoch: epoch,
    });
    await log.append(batch, { assignOffsets: false });
  }
}

/** How many file-system steps (other than writes) the whole scenario takes. */
async function countSteps(): Promise<number> {
  const fs = new SimulatedFileSystem();
  const log = await open(fs);
  let steps = 0;
  fs.fault = (operation) => {
    if (operation !== 'write') steps++;
    return undefined;
  };
  await followerLife(log);
  await log.close();
  return steps;
}
