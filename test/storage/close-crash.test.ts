import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import type { LogConfig } from '../../src/protocol/topic-config.js';
import { SimulatedFileSystem, type SimulatedOperation } from '../../src/storage/fs.js';
import {
  CLEAN_SHUTDOWN_FILE,
  PartitionLog,
  RECOVERY_POINT_FILE,
  readCheckpoint,
} from '../../src/storage/partition-log.js';
import type { ProducerEntry } from '../../src/storage/producer-state.js';

/**
 * A clean close writes only what changed: the recovery-point checkpoint when it moved, a producer
 * snapshot when an open would otherwise replay more than 1 MiB, and the clean-shutdown marker, an
 * empty file created without a rename, whose directory entry shares one directory sync with the
 * renames of the other two. These tests crash before every file-system step of a close and check
 * that the log reopens with every flushed record, the producers' state of the records kept, and
 * offsets without a gap; and that the marker alone surviving (the renames of its directory lost)
 * still opens correctly.
 */
const dir = '/d/close-0';

function producerBatch(producerId: number, baseSequence: number, values: readonly string[]): Buffer {
  return encodeBatch(
    values.map((v, i) => ({ key: null, value: Buffer.from(v), timestamp: 1_000 + i })),
    { producerId, producerEpoch: 0, baseSequence },
  );
}

const asLeader = { assignOffsets: true, leaderEpoch: 3 } as const;

function stateOf(log: PartitionLog): ProducerEntry[] {
  return [...log.producers.entries()].sort((a, b) => a.producerId - b.producerId);
}

async function valuesIn(log: PartitionLog): Promise<string[]> {
  const out: string[] = [];
  for (let offset = log.logStartOffset; offset < log.logEndOffset; ) {
    const { records, nextOffset } = await log.readRecords(offset, { maxBytes: 1 << 24 });
    for (const r of records) out.push(Buffer.from(r.value!).toString());
    offset = nextOffset;
  }
  return out;
}

function open(fs: SimulatedFileSystem, config: Partial<LogConfig>): Promise<PartitionLog> {
  return PartitionLog.open({ dir, config }, { fs, clock: new ManualClock(0) });
}

/**
 * Appends records `from` to `from + count` (`from` a multiple of 6) of two idempotent producers,
 * `producer` and `producer + 1` taking batches of 3 in turn, each batch continuing its sequence.
 */
async function writeRecords(
  log: PartitionLog,
  from: number,
  count: number,
  width = 40,
  producer = 1,
): Promise<void> {
  for (let i = from; i < from + count; i += 3) {
    const id = producer + ((i / 3) % 2);
    const values = [i, i + 1, i + 2].map((n) => `r${n}`.padEnd(width, '.'));
    const sequence = Math.floor(i / 6) * 3;
    await log.append(producerBatch(id, sequence, values), asLeader);
  }
}

/** The file-system operations `work` makes, in order, with the path each names. */
async function operationsOf(fs: SimulatedFileSystem, work: () => Promise<void>) {
  const ops: { operation: SimulatedOperation; path: string }[] = [];
  fs.fault = (operation, path) => {
    ops.push({ operation, path: path.slice(path.lastIndexOf('/') + 1) });
    return undefined;
  };
  await work();
  fs.fault = undefined;
  return ops;
}

describe('a clean close under power loss', () => {
  for (const [name, config, count] of [
    ['one segment, a few records', { flushPolicy: 'async' }, 12],
    ['several segments', { flushPolicy: 'async', segmentBytes: 600 }, 60],
    ['over 1 MiB since the newest snapshot', { flushPolicy: 'async' }, 3_300],
  ] as const) {
    it(`${name}: every crash point of the close reopens with every flushed record`, async () => {
      const fs = new SimulatedFileSystem();
      const log = await open(fs, config);
      const width = count > 1000 ? 400 : 40;
      await writeRecords(log, 0, count, width);
      await log.flush();
      const flushed = await valuesIn(log);
      // More, not flushed: the close syncs them.
      await writeRecords(log, count, 6, width);
      const all = await valuesIn(log);
      const stateAtClose = stateOf(log);
      const crashPoints: SimulatedFileSystem[] = [];
      fs.fault = () => {
        crashPoints.push(fs.afterPowerLoss());
        return undefined;
      };
      await log.close();
      fs.fault = undefined;
      crashPoints.push(fs.afterPowerLoss());
      expect(crashPoints.length).toBeGreaterThan(3);
      for (const [i, point] of crashPoints.entries()) {
        const where = `${name}: crash point ${i} of ${crashPoints.length}`;
        const reopened = await open(point, config);
        const values = await valuesIn(reopened);
        // A prefix of what was appended that holds every flushed record.
        expect(values.length, where).toBeGreaterThanOrEqual(flushed.length);
        expect(values, where).toEqual(all.slice(0, values.length));
        if (i === crashPoints.length - 1) {
          expect(reopened.recoveryReport, `${where}: the close completed`).toBeUndefined();
          expect(values, where).toEqual(all);
          expect(stateOf(reopened), where).toEqual(stateAtClose);
        }
        // The producers' state is the one the records kept give, replayed from no snapshot.
        const bare = point.afterPowerLoss();
        for (const file of await bare.readdir(dir))
          if (file.endsWith('.producer-snapshot') || file === CLEAN_SHUTDOWN_FILE)
            await bare.unlink(`${dir}/${file}`);
        const replayed = await open(bare, config);
        expect(stateOf(reopened), where).toEqual(stateOf(replayed));
        expect(stateOf(reopened).length, where).toBe(2);
        await replayed.close();
        expect(reopened.recoveryPoint, where).toBe(reopened.logEndOffset);
        // It takes appends and closes cleanly again.
        await writeRecords(reopened, 0, 6, width, 5);
        await reopened.close();
        const again = await open(point, config);
        expect(again.recoveryReport, where).toBeUndefined();
        expect((await valuesIn(again)).slice(0, values.length), where).toEqual(values);
        await again.close();
      }
    });
  }

  it('the marker surviving alone (the renames of its directory lost) opens with an older recovery point and snapshot', async () => {
    const fs = new SimulatedFileSystem();
    const config = { flushPolicy: 'async' as const };
    const log = await open(fs, config);
    await writeRecords(log, 0, 3_300, 400);
    await log.close();
    // Open cleanly, append, and close: a power loss just before the close's directory sync
    // keeps the synced segment bytes and loses the renames; the marker is then created by hand.
    const second = await open(fs, config);
    await writeRecords(second, 3_300, 6, 400);
    const all = await valuesIn(second);
    const state = stateOf(second);
    let beforeDirSync: SimulatedFileSystem | undefined;
    fs.fault = (operation, path) => {
      if (operation === 'syncDir' && path === dir) beforeDirSync = fs.afterPowerLoss();
      return undefined;
    };
    await second.close();
    fs.fault = undefined;
    const point = beforeDirSync!;
    expect(await point.exists(`${dir}/${CLEAN_SHUTDOWN_FILE}`)).toBe(false);
    const oldRecoveryPoint = await readCheckpoint(point, `${dir}/${RECOVERY_POINT_FILE}`);
    expect(oldRecoveryPoint).toBeLessThan(second.logEndOffset);
    await point.writeFileAtomic(`${dir}/${CLEAN_SHUTDOWN_FILE}`, Buffer.alloc(0));
    const reopened = await open(point, config);
    expect(reopened.recoveryReport).toBeUndefined();
    expect(await valuesIn(reopened)).toEqual(all);
    expect(stateOf(reopened)).toEqual(state);
    // The open rewrote the checkpoint it found below the log end.
    expect(await readCheckpoint(point, `${dir}/${RECOVERY_POINT_FILE}`)).toBe(reopened.logEndOffset);
    // A crash now recovers from there, with every record.
    await writeRecords(reopened, 0, 6, 400, 5);
    await reopened.flush();
    point.crashLosingAllUnsynced();
    const recovered = await open(point, config);
    expect((await valuesIn(recovered)).slice(0, all.length)).toEqual(all);
    expect(stateOf(recovered).map((e) => e.producerId)).toEqual([...state.map((e) => e.producerId), 5, 6]);
    await recovered.close();
  });
});

describe('what a clean close writes', () => {
  it('a log whose recovery point is on disk and with a small replay writes only the marker and one directory sync', async () => {
    const fs = new SimulatedFileSystem();
    const config = { flushPolicy: 'async' as const };
    const log = await open(fs, config);
    await writeRecords(log, 0, 12);
    await log.flush();
    const ops = await operationsOf(fs, () => log.close());
    expect(ops.filter((o) => o.operation === 'writeFileAtomic')).toEqual([]);
    expect(ops.filter((o) => o.operation === 'syncDir')).toEqual([{ operation: 'syncDir', path: 'close-0' }]);
    expect(await fs.exists(`${dir}/${CLEAN_SHUTDOWN_FILE}`)).toBe(true);
    // Nothing to replay past what is small: no snapshot either.
    expect((await fs.readdir(dir)).filter((n) => n.endsWith('.producer-snapshot'))).toEqual([]);
    const reopened = await open(fs, config);
    expect(reopened.recoveryReport).toBeUndefined();
    expect(stateOf(reopened).map((e) => e.producerId)).toEqual([1, 2]);
    await reopened.close();
  });

  it('a moved recovery point is written, and a snapshot when more than 1 MiB would be replayed', async () => {
    const fs = new SimulatedFileSystem();
    const config = { flushPolicy: 'async' as const };
    const log = await open(fs, config);
    await writeRecords(log, 0, 3_300, 400);
    expect(log.sizeBytes).toBeGreaterThan(1024 * 1024);
    const ops = await operationsOf(fs, () => log.close());
    const replaced = ops.filter((o) => o.operation === 'writeFileAtomic').map((o) => o.path);
    expect(replaced).toEqual([
      RECOVERY_POINT_FILE,
      `${String(log.logEndOffset).padStart(20, '0')}.producer-snapshot`,
    ]);
    expect(ops.filter((o) => o.operation === 'syncDir').length).toBe(1);
    // Opened and closed again without a change: nothing is written at all.
    const reopened = await open(fs, config);
    const idle = await operationsOf(fs, () => reopened.close());
    expect(idle).toEqual([]);
    // One more record: the snapshot at the end covers all but it, so none is written.
    const third = await open(fs, config);
    await writeRecords(third, 3_300, 3, 400);
    const small = await operationsOf(fs, () => third.close());
    expect(small.filter((o) => o.operation === 'writeFileAtomic').map((o) => o.path)).toEqual([
      RECOVERY_POINT_FILE,
    ]);
  });
});
