import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { crc32c } from '../../src/common/crc32c.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { HIGH_WATERMARK_FILE, PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf, refusal, valuesOf } from './helpers.js';

/**
 * Proves the high-watermark checkpoint: written only when the caller asks, durable when the call
 * resolves, monotonic, read at open within [log start, log end] (and lowered on disk when recovery
 * kept less), lowered by truncation before any record goes, so that after a power loss at any step
 * every offset below the checkpoint still holds the record that was committed there.
 */
const dir = '/d/hw-0';
const path = `${dir}/${HIGH_WATERMARK_FILE}`;

function open(
  fs: SimulatedFileSystem,
  config: Record<string, unknown> = { flushPolicy: 'sync' },
): Promise<PartitionLog> {
  return PartitionLog.open(
    { dir, config: { segmentBytes: 300, ...config } },
    { fs, clock: new ManualClock() },
  );
}

async function appendValues(log: PartitionLog, values: readonly string[], epoch = 1): Promise<void> {
  for (const value of values) await log.append(batchOf([value]), { assignOffsets: true, leaderEpoch: epoch });
}

const values = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${prefix}${i}`.padEnd(40, '.'));

async function storedValue(fs: SimulatedFileSystem): Promise<string | undefined> {
  return (await fs.readFile(path))?.toString('utf8');
}

async function readAll(log: PartitionLog): Promise<string[]> {
  const out: string[] = [];
  for (let offset = log.logStartOffset; offset < log.logEndOffset; ) {
    const { records, nextOffset } = await log.readRecords(offset, { maxBytes: 1 << 20 });
    out.push(...valuesOf(records).map(String));
    offset = nextOffset;
  }
  return out;
}

describe('the high-watermark checkpoint', () => {
  it('is 0 and absent on a new log, and appends never write it', async () => {
    const fs = new SimulatedFileSystem();
    const log = await open(fs);
    expect(log.highWatermarkCheckpoint).toBe(0);
    await appendValues(log, values('v', 10));
    await log.flush();
    expect(log.highWatermarkCheckpoint).toBe(0);
    expect(await fs.exists(path)).toBe(false);
    await log.close();
    expect(await fs.exists(path)).toBe(false);
    expect((await open(fs)).highWatermarkCheckpoint).toBe(0);
  });

  it('is durable when checkpointHighWatermark resolves, in the checkpoint form', async () => {
    const fs = new SimulatedFileSystem();
    const log = await open(fs);
    await appendValues(log, values('v', 10));
    await log.checkpointHighWatermark(7);
    expect(log.highWatermarkCheckpoint).toBe(7);
    expect(await storedValue(fs)).toBe(`7\n${crc32c(Buffer.from('7\n')).toString(16)}\n`);
    fs.crashLosingAllUnsynced();
    const reopened = await open(fs);
    expect(reopened.highWatermarkCheckpoint).toBe(7);
    await reopened.close();
  });

  it('is monotonic: a lower value is ignored and not written', async () => {
    const fs = new SimulatedFileSystem();
    const log = await open(fs);
    await appendValues(log, values('v', 10));
    await log.checkpointHighWatermark(8);
    const syncs = fs.syncCount;
    await log.checkpointHighWatermark(3);
    await log.checkpointHighWatermark(8);
    expect(log.highWatermarkCheckpoint).toBe(8);
    expect(fs.syncCount).toBe(syncs);
    await log.checkpointHighWatermark(10);
    expect(log.highWatermarkCheckpoint).toBe(10);
    await log.close();
    expect((await open(fs)).highWatermarkCheckpoint).toBe(10);
  });

  it('refuses a value past the log end (OFFSET_OUT_OF_RANGE) or not an offset (INVALID_REQUEST)', async () => {
    const fs = new SimulatedFileSystem();
    const log = await open(fs);
    await appendValues(log, values('v', 4));
    expect((await refusal(log.checkpointHighWatermark(5))).code).toBe('OFFSET_OUT_OF_RANGE');
    for (const bad of [-1, 2.5, Number.NaN])
      expect((await refusal(log.checkpointHighWatermark(bad))).code).toBe('INVALID_REQUEST');
    await log.checkpointHighWatermark(4);
    expect(log.highWatermarkCheckpoint).toBe(4);
    await log.close();
  });

  it('is checked against the log end its write lands beside: a truncation queued before it wins', async () => {
    const fs = new SimulatedFileSystem();
    const log = await open(fs);
    await appendValues(log, values('v', 10));
    const truncating = log.truncateTo(4);
    const refused = refusal(log.checkpointHighWatermark(9));
    await truncating;
    expect((await refused).code).toBe('OFFSET_OUT_OF_RANGE');
    expect(log.highWatermarkCheckpoint).toBe(0);
    await log.close();
  });

  it('is clamped to the log end recovery kept, and lowered on disk before new records arrive', async () => {
    const fs = new SimulatedFileSystem();
    // Nothing fsyncs the appends (no timer runs on the manual clock), so a crash loses them.
    // (nor does a roll: one segment holds them all).
    const log = await open(fs, { flushPolicy: 'async', flushMs: 1_000_000, segmentBytes: 1 << 20 });
    await appendValues(log, values('v', 10));
    await log.checkpointHighWatermark(10);
    fs.crashLosingAllUnsynced();
    const reopened = await open(fs, { flushPolicy: 'sync' });
    expect(reopened.logEndOffset).toBe(0);
    expect(reopened.highWatermarkCheckpoint).toBe(0);
    expect(await storedValue(fs)).toMatch(/^0\n/);
    await appendValues(reopened, values('new', 10), 2);
    fs.crashLosingAllUnsynced();
    const again = await open(fs);
    expect(again.logEndOffset).toBe(10);
    expect(again.highWatermarkCheckpoint).toBe(0);
    await again.close();
  });

  it('is never below the log start: deleting records past it raises it, as an open does', async () => {
    const fs = new SimulatedFileSystem();
    const log = await open(fs);
    await appendValues(log, values('v', 20));
    await log.checkpointHighWatermark(3);
    await log.deleteRecordsBefore(12);
    expect(log.highWatermarkCheckpoint).toBe(12);
    await log.close();
    // The file still says 3; the open raises it to the log start.
    expect(await storedValue(fs)).toMatch(/^3\n/);
    const reopened = await open(fs);
    expect(reopened.highWatermarkCheckpoint).toBe(12);
    await reopened.close();
  });

  it('a damaged checkpoint reads as absent', async () => {
    const fs = new SimulatedFileSystem();
    const log = await open(fs);
    await appendValues(log, values('v', 10));
    await log.close();
    await fs.writeFileAtomic(path, Buffer.from('7\nbeef\n'));
    const reopened = await open(fs);
    expect(reopened.highWatermarkCheckpoint).toBe(0);
    await reopened.close();
  });

  it('truncateTo below it lowers it (in memory and on disk) to the new log end; above it, not', async () => {
    const fs = new SimulatedFileSystem();
    const log = await open(fs);
    await appendValues(log, values('v', 20));
    await log.checkpointHighWatermark(15);
    await log.truncateTo(17);
    expect(log.highWatermarkCheckpoint).toBe(15);
    await log.truncateTo(9);
    expect(log.highWatermarkCheckpoint).toBe(9);
    expect(await storedValue(fs)).toMatch(/^9\n/);
    await appendValues(log, values('new', 10), 2);
    fs.crashLosingAllUnsynced();
    const reopened = await open(fs);
    expect(reopened.logEndOffset).toBe(19);
    expect(reopened.highWatermarkCheckpoint).toBe(9);
    await reopened.close();
  });

  it('truncateFullyAndStartAt sets it to the new start, lowered or raised', async () => {
    for (const [hw, offset] of [
      [15, 4],
      [15, 100],
    ] as const) {
      const fs = new SimulatedFileSystem();
      const log = await open(fs);
      await appendValues(log, values('v', 20));
      await log.checkpointHighWatermark(hw);
      await log.truncateFullyAndStartAt(offset);
      expect(log.highWatermarkCheckpoint).toBe(offset);
      expect(await storedValue(fs)).toMatch(new RegExp(`^${offset}\n`));
      await appendValues(log, values('new', 5), 2);
      fs.crashLosingAllUnsynced();
      const reopened = await open(fs);
      expect(reopened.highWatermarkCheckpoint).toBe(offset);
      await reopened.close();
    }
  });

  for (const operation of ['truncateTo', 'truncateFullyAndStartAt'] as const) {
    it(`after a power loss at any step of ${operation} and the appends after it, every offset below the checkpoint holds its committed record`, async () => {
      const fs = new SimulatedFileSystem();
      const log = await open(fs);
      const old = values('old', 40);
      await appendValues(log, old);
      await log.checkpointHighWatermark(30);
      const cut = 12;
      const crashPoints: SimulatedFileSystem[] = [];
      fs.fault = () => {
        crashPoints.push(fs.afterPowerLoss());
        return undefined;
      };
      if (operation === 'truncateTo') await log.truncateTo(cut);
      else await log.truncateFullyAndStartAt(cut);
      await appendValues(log, values('new', 30), 2);
      fs.fault = undefined;
      expect(crashPoints.length).toBeGreaterThan(10);
      for (const [i, point] of crashPoints.entries()) {
        const reopened = await open(point);
        const hw = reopened.highWatermarkCheckpoint;
        const where = `crash point ${i}: high watermark ${hw}, log [${reopened.logStartOffset}, ${reopened.logEndOffset})`;
        expect(hw, where).toBeGreaterThanOrEqual(reopened.logStartOffset);
        expect(hw, where).toBeLessThanOrEqual(reopened.logEndOffset);
        const committed = (await readAll(reopened)).slice(0, hw - reopened.logStartOffset);
        expect(committed, where).toEqual(old.slice(reopened.logStartOffset, hw));
        // New records where the log now ends, then a second power loss: the checkpoint must not
        // have come to cover them.
        await appendValues(reopened, values('later', 25), 3);
        point.crashLosingAllUnsynced();
        const again = await open(point);
        const hwAgain = again.highWatermarkCheckpoint;
        expect(hwAgain, `${where}, then reopened twice`).toBeLessThanOrEqual(hw);
        const still = (await readAll(again)).slice(0, hwAgain - again.logStartOffset);
        expect(still, `${where}, then reopened twice`).toEqual(old.slice(again.logStartOffset, hwAgain));
        await again.close();
        await reopened.close();
      }
      await log.close();
    });
  }
});
