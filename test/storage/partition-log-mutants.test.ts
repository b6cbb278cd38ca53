import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { crc32c } from '../../src/common/crc32c.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { type FileSystem, SimulatedFileSystem } from '../../src/storage/fs.js';
import {
  CLEAN_SHUTDOWN_FILE,
  PartitionLog,
  RECOVERY_POINT_FILE,
  readCheckpoint,
  TRUNCATE_FULLY_FILE,
} from '../../src/storage/partition-log.js';
import { batchOf, refusal } from './helpers.js';

/**
 * Rules of the partition log's clean-shutdown marker and checkpoint bookkeeping that the storage
 * mutation run left unguarded after the marker started to outlive a clean open
 * (docs/mutation-protocol-storage.md): an open after a crash closes cleanly even when nothing
 * changed, a log closed without a change is closed all the same, and the recovery point the log
 * believes written is the one it wrote to that file.
 */

const dir = '/d/mutants-0';

function setup(config: Record<string, unknown> = {}) {
  const fs = new SimulatedFileSystem();
  const clock = new ManualClock(1_000_000);
  const open = () => PartitionLog.open({ dir, config }, { fs, clock });
  return { fs, clock, open };
}

describe('the clean-shutdown marker', () => {
  it('an open that recovered from a crash and a close with no change between leave a clean log', async () => {
    const { fs, open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true });
    fs.crashLosingAllUnsynced();
    const recovered = await open();
    expect(recovered.recoveryReport).toBeDefined();
    await recovered.close();
    expect(await fs.readdir(dir)).toContain(CLEAN_SHUTDOWN_FILE);
    const again = await open();
    expect(again.recoveryReport).toBeUndefined();
    expect(again.logEndOffset).toBe(2);
    await again.close();
  });

  it('a log closed with no change since a clean open is closed: it refuses appends and reads', async () => {
    const { fs, open } = setup();
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    await log.close();
    const idle = await open();
    await idle.close();
    for (const call of [
      (): Promise<unknown> => idle.append(batchOf(['b']), { assignOffsets: true }),
      () => idle.read(0, { maxBytes: 1 << 20 }),
    ]) {
      const error = await refusal(Promise.resolve().then(call));
      expect(error.code).toBe('KAFKA_STORAGE_ERROR');
      expect(error.message).toBe(`the log in ${dir} is closed`);
    }
    // A second close has nothing left to do, and the files are as the clean shutdown left them.
    await idle.close();
    expect(await fs.readdir(dir)).toContain(CLEAN_SHUTDOWN_FILE);
  });
});

describe('the recovery-point checkpoint', () => {
  it('an open after a crash that kept one record writes the recovery point 1', async () => {
    const { fs, open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a']), { assignOffsets: true });
    expect(await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`)).toBe(0);
    fs.crashLosingAllUnsynced();
    const crashed = await open();
    expect(crashed.logEndOffset).toBe(1);
    expect(await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`)).toBe(1);
    await crashed.close();
  });

  it('another checkpoint holding the same value does not count as the recovery point written', async () => {
    const { fs, open } = setup({ flushPolicy: 'async', flushMs: 1_000_000 });
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true });
    // The high-watermark checkpoint says 2 before any flush moved the recovery point there.
    await log.checkpointHighWatermark(2);
    expect(await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`)).toBe(0);
    await log.flush();
    expect(log.recoveryPoint).toBe(2);
    expect(await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`)).toBe(2);
    await log.close();
  });
});

function producerBatch(producerId: number, baseSequence: number, values: readonly string[]): Buffer {
  return encodeBatch(
    values.map((v, i) => ({ key: null, value: Buffer.from(v), timestamp: 1_000 + i })),
    { producerId, producerEpoch: 0, baseSequence },
  );
}

const asLeader = { assignOffsets: true, leaderEpoch: 0 } as const;

describe("a leader's producer checks within one append and one group", () => {
  it('a retry queued behind its first try is answered with its offsets and the log end after the group', async () => {
    const { open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    const batch = producerBatch(7, 0, ['a', 'b']);
    const [first, retry] = await Promise.all([
      log.append(Buffer.from(batch), asLeader),
      log.append(Buffer.from(batch), asLeader),
    ]);
    expect(first).toEqual({ baseOffset: 0, lastOffset: 1, logEndOffset: 2, batchCount: 1 });
    expect(retry).toEqual({ baseOffset: 0, lastOffset: 1, logEndOffset: 2, batchCount: 1, duplicate: true });
    expect(log.logEndOffset).toBe(2);
    await log.close();
  });

  it('a retry queued behind a first try whose write failed is refused, not answered', async () => {
    const { fs, open } = setup({ flushPolicy: 'async' });
    const log = await open();
    fs.fault = (operation, path) =>
      operation === 'write' && path.endsWith('.log') ? new Error('EIO') : undefined;
    const batch = producerBatch(7, 0, ['a']);
    const outcomes = await Promise.allSettled([
      log.append(Buffer.from(batch), asLeader),
      log.append(Buffer.from(batch), asLeader),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    expect(log.offlineReason).toBeDefined();
  });

  it('a retry of a batch in the log, in a group whose write fails, is refused with the group', async () => {
    const { fs, open } = setup({ flushPolicy: 'async' });
    const log = await open();
    const batch = producerBatch(7, 0, ['a']);
    await log.append(Buffer.from(batch), asLeader);
    fs.fault = (operation, path) =>
      operation === 'write' && path.endsWith('.log') ? new Error('EIO') : undefined;
    const outcomes = await Promise.allSettled([
      log.append(batchOf(['b']), asLeader),
      log.append(Buffer.from(batch), asLeader),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    expect(log.offlineReason).toBeDefined();
  });

  it('an intact retry queued behind a corrupt first try is written as the first try, not answered as a duplicate', async () => {
    // Defect found by this pass: the retry was answered as a duplicate of offsets the corrupt
    // first try never got (the log stayed empty), an acknowledged record that was nowhere.
    for (const flushPolicy of ['sync', 'async'] as const) {
      const { open } = setup({ flushPolicy });
      const log = await open();
      const intact = producerBatch(3, 0, ['a']);
      const damaged = Buffer.from(intact);
      damaged[damaged.length - 1]! ^= 0xff;
      const [first, retry] = await Promise.allSettled([
        log.append(damaged, asLeader),
        log.append(Buffer.from(intact), asLeader),
      ]);
      expect(first.status).toBe('rejected');
      expect((first as PromiseRejectedResult).reason.code).toBe('CORRUPT_MESSAGE');
      expect(retry).toEqual({
        status: 'fulfilled',
        value: { baseOffset: 0, lastOffset: 0, logEndOffset: 1, batchCount: 1 },
      });
      expect((await log.readRecords(0, { maxBytes: 1 << 20 })).records).toHaveLength(1);
      // Retried once more, it is now a duplicate of what the log holds.
      expect((await log.append(Buffer.from(intact), asLeader)).duplicate).toBe(true);
      expect(log.logEndOffset).toBe(1);
      await log.close();
    }
  });

  it('a retry queued between its first try and a later append reports the log end when it is answered', async () => {
    const { open } = setup({ flushPolicy: 'async' });
    const log = await open();
    const batch = producerBatch(7, 0, ['a']);
    const [, retry, later] = await Promise.all([
      log.append(Buffer.from(batch), asLeader),
      log.append(Buffer.from(batch), asLeader),
      log.append(batchOf(['b', 'c']), asLeader),
    ]);
    expect(later.logEndOffset).toBe(3);
    expect(retry).toEqual({ baseOffset: 0, lastOffset: 0, logEndOffset: 3, batchCount: 1, duplicate: true });
    await log.close();
  });

  it("a retry of the second batch of an append in the same group gets that batch's offsets", async () => {
    const { open } = setup({ flushPolicy: 'async' });
    const log = await open();
    for (let i = 0; i < 5; i++) await log.append(batchOf([`x${i}`]), asLeader);
    const second = producerBatch(6, 1, ['b']);
    const [both, retry] = await Promise.all([
      log.append(Buffer.concat([producerBatch(6, 0, ['a']), second]), asLeader),
      log.append(Buffer.from(second), asLeader),
    ]);
    expect(both).toEqual({ baseOffset: 5, lastOffset: 6, logEndOffset: 7, batchCount: 2 });
    expect(retry).toEqual({ baseOffset: 6, lastOffset: 6, logEndOffset: 7, batchCount: 1, duplicate: true });
    await log.close();
  });

  it('a retry of several batches in one append answers from the first offset of the first to the last of the last', async () => {
    const { open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['x']), asLeader);
    const both = Buffer.concat([producerBatch(4, 0, ['a', 'b']), producerBatch(4, 2, ['c'])]);
    expect(await log.append(Buffer.from(both), asLeader)).toEqual({
      baseOffset: 1,
      lastOffset: 3,
      logEndOffset: 4,
      batchCount: 2,
    });
    await log.append(batchOf(['y']), asLeader);
    expect(await log.append(Buffer.from(both), asLeader)).toEqual({
      baseOffset: 1,
      lastOffset: 3,
      logEndOffset: 5,
      batchCount: 2,
      duplicate: true,
    });
    await log.close();
  });

  it('refuses an append that mixes a retried producer batch with a new one, or with a batch of no producer', async () => {
    const { open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(producerBatch(4, 0, ['a']), asLeader);
    for (const mixed of [
      Buffer.concat([producerBatch(4, 0, ['a']), producerBatch(4, 1, ['b'])]),
      Buffer.concat([producerBatch(4, 0, ['a']), batchOf(['plain'])]),
    ]) {
      const error = await refusal(log.append(mixed, asLeader));
      expect(error.code).toBe('INVALID_REQUEST');
      expect(error.message).toContain('mixes retried producer batches with new ones');
    }
    expect(log.logEndOffset).toBe(1);
    // The new batch alone is taken: the refused append changed no producer's state.
    expect((await log.append(producerBatch(4, 1, ['b']), asLeader)).baseOffset).toBe(1);
    await log.close();
  });

  it("a follower's producer batches are written as they come, unchecked", async () => {
    const { open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    // Sequence 5 of a producer this log has never seen: a leader would refuse it.
    const batch = producerBatch(9, 5, ['f']);
    await log.append(batch, { assignOffsets: false });
    expect(log.logEndOffset).toBe(1);
    expect(log.producers.get(9)?.batches.at(-1)?.lastSequence).toBe(5);
    await log.close();
  });
});

describe('a read into a buffer the caller allocates', () => {
  it('passes the allocator to the segment read: the data lies in the buffer it gave', async () => {
    const { open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a', 'b']), { assignOffsets: true });
    const given: Buffer[] = [];
    const allocate = (bytes: number) => {
      const buf = Buffer.alloc(bytes);
      given.push(buf);
      return buf;
    };
    const result = await log.read(0, { maxBytes: 1 << 20, allocate });
    expect(result.batchCount).toBe(1);
    expect(given).toHaveLength(1);
    expect(result.data.buffer).toBe(given[0]!.buffer);
    await log.close();
  });
});

describe('the retention limit', () => {
  it('counts a limit that is not a number (undefined, a string) as 0', async () => {
    for (const value of [undefined, '5']) {
      const { open } = setup({ flushPolicy: 'sync', segmentMs: 0, retentionBytes: -1, retentionMs: -1 });
      const log = await open();
      for (let i = 0; i < 4; i++) await log.append(batchOf([`v${i}`]), { assignOffsets: true });
      expect(log.segmentCount).toBe(4);
      log.setRetentionLimit(() => value as unknown as number);
      log.updateConfig({ retentionBytes: 0 });
      expect(await log.enforceRetention()).toEqual({ segmentsDeleted: 0 });
      expect((await refusal(log.deleteRecordsBefore(1))).code).toBe('OFFSET_OUT_OF_RANGE');
      await log.close();
    }
  });
});

describe("the producers' state of deleted segments", () => {
  it('outlives the segments retention deleted, through a crash, from the snapshot at the new first segment', async () => {
    const { fs, open } = setup({ flushPolicy: 'sync', segmentMs: 0 });
    const log = await open();
    // Each append rolls: segments [P@0], [Q@1], [R@2]; snapshots at 1 and 2. No leader epoch: no
    // epoch checkpoint write follows the deletions and syncs the directory for them.
    const noEpoch = { assignOffsets: true } as const;
    await log.append(producerBatch(1, 0, ['p']), noEpoch);
    await log.append(producerBatch(2, 0, ['q']), noEpoch);
    await log.append(batchOf(['r']), noEpoch);
    expect(log.segmentBaseOffsets()).toEqual([0, 1, 2]);
    await log.deleteRecordsBefore(2);
    const snapshots = async () =>
      (await fs.readdir(dir)).filter((n) => n.endsWith('.producer-snapshot')).sort();
    // The snapshot below the log's first segment goes (durably); the one at it stays.
    expect(await snapshots()).toEqual(['00000000000000000002.producer-snapshot']);
    fs.crashLosingAllUnsynced();
    expect(await snapshots()).toEqual(['00000000000000000002.producer-snapshot']);
    const reopened = await open();
    expect(reopened.recoveryReport).toBeDefined();
    expect(reopened.producers.get(1)?.batches.at(-1)?.lastSequence).toBe(0);
    expect(reopened.producers.get(2)?.batches.at(-1)?.lastSequence).toBe(0);
    // Their next batches are taken, not refused as from producers the log does not know.
    await reopened.append(producerBatch(1, 1, ['p1']), asLeader);
    await reopened.append(producerBatch(2, 1, ['q1']), asLeader);
    await reopened.close();
  });
});

describe('the high watermark and the retention limit at the edges', () => {
  it('a cut inside a batch below the high watermark lowers it to the batch start, on disk too', async () => {
    const { fs, open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a', 'b', 'c']), asLeader);
    await log.checkpointHighWatermark(3);
    await log.truncateTo(2);
    expect(log.logEndOffset).toBe(0);
    expect(log.highWatermarkCheckpoint).toBe(0);
    expect(await readCheckpoint(fs, `${dir}/high-watermark-checkpoint`)).toBe(0);
    await log.close();
  });

  it('checkpointHighWatermark takes 0, and names the value in its refusals', async () => {
    const { fs, open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    await log.append(batchOf(['a', 'b']), asLeader);
    await log.checkpointHighWatermark(0);
    expect(log.highWatermarkCheckpoint).toBe(0);
    expect(await fs.readFile(`${dir}/high-watermark-checkpoint`)).toBeUndefined();
    const negative = await refusal(log.checkpointHighWatermark(-1));
    expect([negative.code, negative.message]).toEqual([
      'INVALID_REQUEST',
      'high watermark -1 is not an offset',
    ]);
    const past = await refusal(log.checkpointHighWatermark(3));
    expect([past.code, past.message]).toEqual([
      'OFFSET_OUT_OF_RANGE',
      'high watermark 3 is beyond the log end 2',
    ]);
    expect(past.details).toEqual({ logStartOffset: 0, logEndOffset: 2 });
    await log.close();
  });

  it('a record exactly at the retention limit, in a segment that starts below it, supersedes nothing', async () => {
    const { open } = setup({
      flushPolicy: 'sync',
      cleanupPolicy: 'compact',
      segmentMs: Number.MAX_SAFE_INTEGER,
    });
    const log = await open();
    const put = (key: string, value: string) => log.append(batchOf([value], { keys: [key] }), asLeader);
    // Segment 0: k=a @0, y=b @1. Segment 1: y=c @2, k=d @3. Segment 2 (active): w @4.
    await put('k', 'a');
    await put('y', 'b');
    log.updateConfig({ segmentMs: 0 });
    await put('y', 'c');
    log.updateConfig({ segmentMs: Number.MAX_SAFE_INTEGER });
    await put('k', 'd');
    log.updateConfig({ segmentMs: 0 });
    await put('w', 'e');
    expect(log.segmentBaseOffsets()).toEqual([0, 2, 4]);
    log.setRetentionLimit(() => 3);
    // k=d @3 is at the limit: k=a @0 stays the latest of its key below it.
    expect(await log.compact()).toEqual({ segmentsCleaned: 0, recordsRemoved: 0 });
    expect((await log.readRecords(0, { maxBytes: 1 << 20 })).records.map((r) => r.offset)).toContain(0);
    await log.close();
  });

  it('deleteRecordsBefore past the retention limit names both offsets, with the limit and the log end as details', async () => {
    const { open } = setup({ flushPolicy: 'sync' });
    const log = await open();
    for (let i = 0; i < 4; i++) await log.append(batchOf([`v${i}`]), { assignOffsets: true });
    log.setRetentionLimit(() => 2);
    const error = await refusal(log.deleteRecordsBefore(3));
    expect([error.code, error.message, error.details]).toEqual([
      'OFFSET_OUT_OF_RANGE',
      'offset 3 is beyond the retention limit 2',
      { retentionLimit: 2, logEndOffset: 4 },
    ]);
    await log.close();
  });

  it('an open refuses a truncation intent that is damaged, naming it, or whose value is not a whole number', async () => {
    const intent = `${dir}/${TRUNCATE_FULLY_FILE}`;
    // A bad CRC; then values whose CRC is right but that are no offset.
    for (const value of ['300', '-3', '3x', 'x3']) {
      const { fs, open } = setup();
      await (await open()).close();
      const crc = value === '300' ? 'bad' : crc32c(Buffer.from(`${value}\n`)).toString(16);
      await fs.writeFileAtomic(intent, Buffer.from(`${value}\n${crc}\n`));
      const error = await refusal(open());
      expect([error.code, error.message, error.retriable]).toEqual([
        'KAFKA_STORAGE_ERROR',
        `the truncation intent ${intent} is damaged`,
        false,
      ]);
    }
  });

  it('truncateFullyAndStartAt names the offset it refuses', async () => {
    const { open } = setup();
    const log = await open();
    const error = await refusal(log.truncateFullyAndStartAt(-2));
    expect([error.code, error.message]).toEqual(['INVALID_REQUEST', 'offset -2 is not a valid offset']);
    await log.close();
  });
});

describe("compaction and producers' newest batches", () => {
  async function overwritten(firstProducer: number, expire: boolean) {
    const { open, clock } = setup({
      flushPolicy: 'sync',
      segmentBytes: 200,
      cleanupPolicy: 'compact',
      producerIdExpirationMs: 5_000,
    });
    const log = await open();
    await log.append(
      encodeBatch([{ key: Buffer.from('k'), value: Buffer.from('old'), timestamp: clock.nowMs() }], {
        producerId: firstProducer,
        producerEpoch: 0,
        baseSequence: 0,
      }),
      asLeader,
    );
    if (expire) {
      clock.advance(10_000);
      await log.enforceRetention();
      expect(log.producers.get(firstProducer)).toBeUndefined();
    }
    for (let seq = 0; seq < 8; seq++)
      await log.append(
        encodeBatch([{ key: Buffer.from('k'), value: Buffer.from(`new${seq}`), timestamp: clock.nowMs() }], {
          producerId: 9,
          producerEpoch: 0,
          baseSequence: seq,
        }),
        asLeader,
      );
    expect((await log.compact()).segmentsCleaned).toBeGreaterThan(0);
    const values = (await log.readRecords(0, { maxBytes: 1 << 20 })).records.map((r) =>
      Buffer.from(r.value!).toString(),
    );
    await log.close();
    return values;
  }

  it("keeps producer 0's only batch, its newest, although its key is superseded", async () => {
    expect(await overwritten(0, false)).toContain('old');
  });

  it('cleans the batch of a producer that has expired like any other', async () => {
    expect(await overwritten(1, true)).not.toContain('old');
  });
});

describe("the producers' state rebuilt at open", () => {
  it('applies each batch once when the snapshot lies inside the segment replayed (a clean close, appends, a crash)', async () => {
    // Batches of 400 kB and no index entry: the close snapshots the producers at the log end
    // (more than 1 MiB would be replayed otherwise), and the replay walks the segment from its start.
    const { fs, open } = setup({ flushPolicy: 'sync', indexIntervalBytes: 16 << 20 });
    const big = (seq: number) => producerBatch(7, seq, [`a${seq}`.padEnd(400_000, '.')]);
    const log = await open();
    for (let seq = 0; seq < 3; seq++) await log.append(big(seq), asLeader);
    await log.close();
    const reopened = await open();
    await reopened.append(big(3), asLeader);
    fs.crashLosingAllUnsynced();
    expect((await fs.readdir(dir)).filter((n) => n.endsWith('.producer-snapshot'))).toEqual([
      '00000000000000000003.producer-snapshot',
    ]);
    const recovered = await open();
    expect(recovered.recoveryReport).toBeDefined();
    // The batches below the snapshot are in it already: the walk passes over them.
    expect(recovered.producers.get(7)?.batches.map((b) => [b.firstSequence, b.firstOffset])).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    await recovered.close();
  });

  /**
   * Segment 0 holds producer 1's batch, a batch of no producer and producer 2's batch; segment 1
   * producer 3's. Indexed every batch after the first (indexIntervalBytes 1), so that an open
   * that does not recover segment 0 loads its indexes and walks only its tail, past the damage.
   */
  async function damagedOlderSegment(fs: SimulatedFileSystem) {
    const config = { flushPolicy: 'sync' as const, segmentBytes: 270, indexIntervalBytes: 1 };
    const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock(1_000_000) });
    await log.append(producerBatch(1, 0, ['p']), asLeader);
    await log.append(batchOf(['x']), asLeader);
    await log.append(producerBatch(2, 0, ['q']), asLeader);
    await log.append(producerBatch(3, 0, ['r']), asLeader);
    expect(log.segmentBaseOffsets()).toEqual([0, 3]);
    // The recovery-point checkpoint says 4: an open after the crash recovers segment 1 only.
    await log.flush();
    fs.crashLosingAllUnsynced();
    // No snapshot: the state comes from the log's first batch on.
    for (const name of await fs.readdir(dir))
      if (name.endsWith('.producer-snapshot')) await fs.unlink(`${dir}/${name}`);
    // The second batch of segment 0 loses its first header marker.
    const file = fs.fileFor(`${dir}/00000000000000000000.log`);
    const second = producerBatch(1, 0, ['p']).length;
    expect(file.current[second]).toBe(0x9e);
    for (const content of [file.current, file.durable]) content[second] = 0;
    return { config, second };
  }

  it('passes over damage in an older segment: the batches after it in that segment are not applied, later segments are', async () => {
    for (const withLogger of [false, true]) {
      const fs = new SimulatedFileSystem();
      const { config } = await damagedOlderSegment(fs);
      const logged: { fields: Record<string, unknown>; message: string }[] = [];
      const logger = {
        error: (fields: Record<string, unknown>, message: string) => logged.push({ fields, message }),
      };
      const log = await PartitionLog.open(
        { dir, config },
        { fs, clock: new ManualClock(1_000_000), ...(withLogger ? { logger } : {}) },
      );
      expect(log.recoveryReport?.segmentsScanned).toBe(1);
      expect(log.producers.get(1)?.batches.at(-1)?.lastSequence).toBe(0);
      expect(log.producers.get(2)).toBeUndefined();
      expect(log.producers.get(3)?.batches.at(-1)?.lastSequence).toBe(0);
      if (withLogger) {
        expect(logged).toEqual([
          {
            fields: { dir, segment: 0, err: expect.objectContaining({ code: 'CORRUPT_MESSAGE' }) },
            message: 'a damaged segment was passed over while rebuilding the producer state',
          },
        ]);
      }
      await log.close();
    }
  });

  it('passes over a damaged snapshot for the log, and logs it', async () => {
    // Each append rolls: the roll before the second writes the snapshot at 1.
    const config = { flushPolicy: 'sync' as const, segmentMs: 0 };
    const { fs, open } = setup(config);
    const log = await open();
    await log.append(producerBatch(7, 0, ['a']), asLeader);
    await log.append(batchOf(['b']), asLeader);
    await log.close();
    const snapshot = `${dir}/00000000000000000001.producer-snapshot`;
    expect(await fs.exists(snapshot)).toBe(true);
    // Only that one: a snapshot the close may write at the log end goes.
    await fs.unlink(`${dir}/00000000000000000002.producer-snapshot`).catch(() => undefined);
    await fs.writeFileAtomic(snapshot, Buffer.from('not a snapshot'));
    const logged: { fields: Record<string, unknown>; message: string }[] = [];
    const logger = {
      error: (fields: Record<string, unknown>, message: string) => logged.push({ fields, message }),
    };
    const reopened = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock(), logger });
    expect(reopened.producers.get(7)?.batches.map((b) => b.lastSequence)).toEqual([0]);
    expect(logged).toEqual([
      {
        fields: { dir, offset: 1, err: expect.any(Error) },
        message: 'a producer state snapshot is damaged: an older one or the log is used',
      },
    ]);
    await reopened.close();
  });

  it('fails the open on a read error of an older segment (only damage is passed over)', async () => {
    const sim = new SimulatedFileSystem();
    const { config, second } = await damagedOlderSegment(sim);
    // Repair the damage: here the read itself fails, at the segment's first byte, which only the
    // producers' replay reads (the index load walks the tail from the last indexed batch).
    const file = sim.fileFor(`${dir}/00000000000000000000.log`);
    for (const content of [file.current, file.durable]) content[second] = 0x9e;
    const eio = () => Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    const failing: FileSystem = {
      open: async (path) => {
        const handle = await sim.open(path);
        if (!path.endsWith('00000000000000000000.log')) return handle;
        return {
          read: async (buffer, offset, length, position) => {
            if (position === 0) throw eio();
            return handle.read(buffer, offset, length, position);
          },
          readSync: (buffer, offset, length, position) => {
            if (position === 0) throw eio();
            return handle.readSync(buffer, offset, length, position);
          },
          write: (data, position) => handle.write(data, position),
          writeSync: (data, position) => handle.writeSync(data, position),
          sync: () => handle.sync(),
          truncate: (length) => handle.truncate(length),
          size: () => handle.size(),
          close: () => handle.close(),
        };
      },
      readFile: (path) => sim.readFile(path),
      writeFileAtomic: (path, data) => sim.writeFileAtomic(path, data),
      exists: (path) => sim.exists(path),
      readdir: (path) => sim.readdir(path),
      mkdir: (path) => sim.mkdir(path),
      unlink: (path) => sim.unlink(path),
      rename: (from, to) => sim.rename(from, to),
      removeDir: (path) => sim.removeDir(path),
      syncDir: (path) => sim.syncDir(path),
    };
    await expect(
      PartitionLog.open({ dir, config }, { fs: failing, clock: new ManualClock() }),
    ).rejects.toThrow('EIO: i/o error');
  });
});

describe('producer snapshots past the log end at an open', () => {
  it('are deleted, so that a log that grows past their offset again never starts from them', async () => {
    const { fs, open } = setup({ segmentMs: 0 });
    const log = await open();
    await log.append(producerBatch(1, 0, ['p']), { assignOffsets: true });
    await log.append(batchOf(['q']), { assignOffsets: true });
    // A snapshot of another history at offset 9, past this log's end (2): what a truncation, or a
    // crash that lost the batches it covers, leaves behind.
    const stale = log.producers.encode(9);
    await log.close();
    const name = '00000000000000000009.producer-snapshot';
    await fs.writeFileAtomic(`${dir}/${name}`, stale);
    const reopened = await open();
    expect(reopened.logEndOffset).toBe(2);
    expect(await fs.readdir(dir)).not.toContain(name);
    await reopened.close();
  });
});
