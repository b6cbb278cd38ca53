import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import type { LogConfig } from '../../src/protocol/topic-config.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { type AppendResult, PartitionLog } from '../../src/storage/partition-log.js';
import {
  PRODUCER_BATCHES_KEPT,
  type ProducerEntry,
  ProducerState,
} from '../../src/storage/producer-state.js';
import { refusal } from './helpers.js';

/**
 * Idempotent producers on one partition log: the leader answers a retried batch with its first
 * offsets and writes nothing, refuses gaps, older epochs and unknown producers; the state is the
 * log's, the same after a clean reopen (from the snapshot), after a crash (from the log), after
 * truncation, and kept through compaction.
 */

const dir = '/d/idem-0';

function producerBatch(
  producerId: number,
  producerEpoch: number,
  baseSequence: number,
  values: readonly string[],
  options: { timestamp?: number; keys?: readonly string[] } = {},
): Buffer {
  return encodeBatch(
    values.map((v, i) => ({
      key: options.keys ? Buffer.from(options.keys[i]!) : null,
      value: Buffer.from(v),
      timestamp: (options.timestamp ?? 1_000) + i,
    })),
    { producerId, producerEpoch, baseSequence },
  );
}

async function openLog(fs: SimulatedFileSystem, clock: ManualClock, config: Partial<LogConfig> = {}) {
  return PartitionLog.open({ dir, config: { flushPolicy: 'sync', ...config } }, { fs, clock });
}

const asLeader = { assignOffsets: true, leaderEpoch: 0 } as const;

function stateOf(log: PartitionLog): ProducerEntry[] {
  return [...log.producers.entries()].sort((a, b) => a.producerId - b.producerId);
}

async function valuesIn(log: PartitionLog): Promise<string[]> {
  const { records } = await log.readRecords(log.logStartOffset, { maxBytes: 1 << 24 });
  return records.map((r) => Buffer.from(r.value!).toString());
}

describe('the leader checks idempotent producers', () => {
  it('answers a retried batch with its first offsets and appends nothing', async () => {
    const log = await openLog(new SimulatedFileSystem(), new ManualClock(0));
    const first = await log.append(producerBatch(7, 0, 0, ['a', 'b']), asLeader);
    const second = await log.append(producerBatch(7, 0, 2, ['c']), asLeader);
    const retry = await log.append(producerBatch(7, 0, 0, ['a', 'b']), asLeader);
    expect(retry).toMatchObject({
      baseOffset: first.baseOffset,
      lastOffset: first.lastOffset,
      duplicate: true,
    });
    expect((await log.append(producerBatch(7, 0, 2, ['c']), asLeader)).baseOffset).toBe(second.baseOffset);
    expect(log.logEndOffset).toBe(3);
    expect(await valuesIn(log)).toEqual(['a', 'b', 'c']);
    await log.close();
  });

  it('refuses a gap, an older epoch and a producer it has no state of, appending nothing', async () => {
    const log = await openLog(new SimulatedFileSystem(), new ManualClock(0));
    await log.append(producerBatch(7, 1, 0, ['a']), asLeader);
    const gap = await refusal(log.append(producerBatch(7, 1, 2, ['x']), asLeader));
    expect(gap.code).toBe('OUT_OF_ORDER_SEQUENCE_NUMBER');
    expect(gap.details).toMatchObject({ expectedSequence: 1 });
    expect((await refusal(log.append(producerBatch(7, 0, 1, ['x']), asLeader))).code).toBe('PRODUCER_FENCED');
    expect((await refusal(log.append(producerBatch(8, 0, 5, ['x']), asLeader))).code).toBe(
      'UNKNOWN_PRODUCER_ID',
    );
    // A newer epoch starts at sequence 0, nowhere else.
    expect((await refusal(log.append(producerBatch(7, 2, 1, ['x']), asLeader))).code).toBe(
      'OUT_OF_ORDER_SEQUENCE_NUMBER',
    );
    expect(log.logEndOffset).toBe(1);
    await log.append(producerBatch(7, 2, 0, ['b']), asLeader);
    // The older epoch is fenced from then on.
    expect((await refusal(log.append(producerBatch(7, 1, 1, ['x']), asLeader))).code).toBe('PRODUCER_FENCED');
    expect(await valuesIn(log)).toEqual(['a', 'b']);
    await log.close();
  });

  it('recognises retries of the last five batches only', async () => {
    const log = await openLog(new SimulatedFileSystem(), new ManualClock(0));
    const results: AppendResult[] = [];
    for (let seq = 0; seq < PRODUCER_BATCHES_KEPT + 1; seq++)
      results.push(await log.append(producerBatch(3, 0, seq, [`v${seq}`]), asLeader));
    for (let seq = 1; seq <= PRODUCER_BATCHES_KEPT; seq++) {
      const retry = await log.append(producerBatch(3, 0, seq, [`v${seq}`]), asLeader);
      expect(retry.duplicate).toBe(true);
      expect(retry.baseOffset).toBe(results[seq]!.baseOffset);
    }
    // The oldest is no longer retained: not a duplicate, and not the next sequence either.
    expect((await refusal(log.append(producerBatch(3, 0, 0, ['v0']), asLeader))).code).toBe(
      'OUT_OF_ORDER_SEQUENCE_NUMBER',
    );
    expect(log.logEndOffset).toBe(PRODUCER_BATCHES_KEPT + 1);
    await log.close();
  });

  it('takes several batches of one producer in one group write, in order', async () => {
    const log = await openLog(new SimulatedFileSystem(), new ManualClock(0));
    const appends = [0, 1, 2, 3].map((seq) => log.append(producerBatch(5, 0, seq, [`v${seq}`]), asLeader));
    const gap = log.append(producerBatch(5, 0, 9, ['gap']), asLeader);
    const results = await Promise.all(appends);
    expect(results.map((r) => r.baseOffset)).toEqual([0, 1, 2, 3]);
    expect((await refusal(gap)).code).toBe('OUT_OF_ORDER_SEQUENCE_NUMBER');
    expect(await valuesIn(log)).toEqual(['v0', 'v1', 'v2', 'v3']);
    await log.close();
  });

  it('wraps sequence numbers from 2^31 - 1 to 0', async () => {
    const log = await openLog(new SimulatedFileSystem(), new ManualClock(0));
    await log.append(producerBatch(4, 0, 0, ['a', 'a2']), asLeader);
    // A follower's batch is taken as it is: it puts the producer near the end of the range.
    await log.append(
      encodeBatch(
        [
          { key: null, value: Buffer.from('b'), timestamp: 1 },
          { key: null, value: Buffer.from('c'), timestamp: 1 },
        ],
        {
          baseOffset: 2,
          partitionLeaderEpoch: 0,
          producerId: 4,
          producerEpoch: 0,
          baseSequence: 2 ** 31 - 2,
        },
      ),
      { assignOffsets: false },
    );
    // Sequence 1 would follow the first batch; after 2^31 - 1 comes 0.
    expect((await refusal(log.append(producerBatch(4, 0, 1, ['x']), asLeader))).code).toBe(
      'OUT_OF_ORDER_SEQUENCE_NUMBER',
    );
    expect((await log.append(producerBatch(4, 0, 0, ['d']), asLeader)).duplicate).toBeUndefined();
    expect(log.logEndOffset).toBe(5);
    await log.close();
  });

  it('leaves batches without a producer alone', async () => {
    const log = await openLog(new SimulatedFileSystem(), new ManualClock(0));
    const plain = encodeBatch([{ key: null, value: Buffer.from('p'), timestamp: 1 }]);
    await log.append(plain, asLeader);
    await log.append(Buffer.from(plain), asLeader);
    expect(log.logEndOffset).toBe(2);
    expect(log.producers.size).toBe(0);
    await log.close();
  });
});

describe("the producers' state belongs to the log", () => {
  /** Appends a seeded mix of producers' batches, some retried, across several segments. */
  async function writeHistory(log: PartitionLog, seed: number): Promise<void> {
    const random = fc.sample(
      fc.array(fc.tuple(fc.nat(3), fc.nat(3), fc.boolean()), { minLength: 40, maxLength: 40 }),
      {
        seed,
        numRuns: 1,
      },
    )[0]!;
    const next = new Map<number, number>();
    for (const [producer, size, retry] of random) {
      const seq = next.get(producer) ?? 0;
      const values = Array.from({ length: size + 1 }, (_, i) => `p${producer}-${seq + i}`);
      const batch = producerBatch(producer, 0, seq, values, { timestamp: 1_000 + seq });
      await log.append(Buffer.from(batch), asLeader);
      if (retry) expect((await log.append(Buffer.from(batch), asLeader)).duplicate).toBe(true);
      next.set(producer, seq + values.length);
    }
  }

  it('is the same after a clean reopen (from the snapshot) and after a crash (from the log)', async () => {
    for (const seed of [1, 2, 3]) {
      const fs = new SimulatedFileSystem();
      const clock = new ManualClock(0);
      const log = await openLog(fs, clock, { segmentBytes: 600 });
      await writeHistory(log, seed);
      const expected = stateOf(log);
      expect(expected.length).toBeGreaterThan(1);
      expect(log.segmentCount).toBeGreaterThan(2);
      await log.close();
      const snapshots = (await fs.readdir(dir)).filter((n) => n.endsWith('.producer-snapshot'));
      expect(snapshots.length).toBeGreaterThan(1);
      const reopened = await openLog(fs, clock, { segmentBytes: 600 });
      expect(stateOf(reopened), `seed ${seed}, clean`).toEqual(expected);
      // A crash: no snapshot at the end; recovery replays from the newest snapshot of a roll.
      fs.crashLosingAllUnsynced();
      const recovered = await openLog(fs, clock, { segmentBytes: 600 });
      expect(stateOf(recovered), `seed ${seed}, crash`).toEqual(expected);
      // Without any snapshot, the whole log.
      await recovered.close();
      for (const name of await fs.readdir(dir))
        if (name.endsWith('.producer-snapshot') || name === '.clean-shutdown')
          await fs.unlink(`${dir}/${name}`);
      const scanned = await openLog(fs, clock, { segmentBytes: 600 });
      expect(stateOf(scanned), `seed ${seed}, no snapshot`).toEqual(expected);
      await scanned.close();
    }
  });

  it('passes over a damaged snapshot', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock(0);
    const log = await openLog(fs, clock, { segmentBytes: 600 });
    await writeHistory(log, 4);
    const expected = stateOf(log);
    await log.close();
    const newest = (await fs.readdir(dir))
      .filter((n) => n.endsWith('.producer-snapshot'))
      .sort()
      .at(-1)!;
    await fs.writeFileAtomic(`${dir}/${newest}`, Buffer.from('not a snapshot'));
    const reopened = await openLog(fs, clock, { segmentBytes: 600 });
    expect(stateOf(reopened)).toEqual(expected);
    await reopened.close();
  });

  it('forgets truncated batches: a follower that truncates takes them again', async () => {
    const fs = new SimulatedFileSystem();
    const log = await openLog(fs, new ManualClock(0), { segmentBytes: 300 });
    for (let seq = 0; seq < 6; seq++) await log.append(producerBatch(2, 0, seq, [`v${seq}`]), asLeader);
    await log.close();
    const reopened = await openLog(fs, new ManualClock(0), { segmentBytes: 300 });
    await reopened.truncateTo(3);
    expect(reopened.producers.get(2)!.batches.at(-1)!.lastSequence).toBe(2);
    // The snapshots past the cut are gone with it.
    for (const name of await fs.readdir(dir))
      if (name.endsWith('.producer-snapshot')) expect(Number(name.slice(0, 20))).toBeLessThanOrEqual(3);
    const again = await reopened.append(producerBatch(2, 0, 3, ['v3']), asLeader);
    expect(again.duplicate).toBeUndefined();
    expect(again.baseOffset).toBe(3);
    await reopened.truncateFullyAndStartAt(100);
    expect(reopened.producers.size).toBe(0);
    expect((await fs.readdir(dir)).filter((n) => n.endsWith('.producer-snapshot'))).toEqual([]);
    await reopened.close();
  });

  it("keeps each producer's newest batch through compaction", async () => {
    const fs = new SimulatedFileSystem();
    const log = await openLog(fs, new ManualClock(0), { segmentBytes: 200, cleanupPolicy: 'compact' });
    // Producer 1 writes key k once; producer 2 then overwrites k many times.
    await log.append(producerBatch(1, 0, 0, ['old'], { keys: ['k'] }), asLeader);
    for (let seq = 0; seq < 8; seq++)
      await log.append(producerBatch(2, 0, seq, [`new${seq}`], { keys: ['k'] }), asLeader);
    const before = stateOf(log);
    expect((await log.compact()).segmentsCleaned).toBeGreaterThan(0);
    // Producer 1's only batch is its newest: kept, although its key is superseded.
    expect(await valuesIn(log)).toContain('old');
    expect(stateOf(log)).toEqual(before);
    await log.close();
    for (const name of await fs.readdir(dir))
      if (name.endsWith('.producer-snapshot') || name === '.clean-shutdown')
        await fs.unlink(`${dir}/${name}`);
    const scanned = await openLog(fs, new ManualClock(0), { segmentBytes: 200, cleanupPolicy: 'compact' });
    expect(scanned.producers.get(1)?.batches.at(-1)?.lastSequence).toBe(0);
    expect(scanned.producers.get(2)?.batches.at(-1)?.lastSequence).toBe(7);
    await scanned.close();
  });

  it('forgets a producer not heard of for producer.id.expiration.ms', async () => {
    const clock = new ManualClock(10_000);
    const log = await openLog(new SimulatedFileSystem(), clock, { producerIdExpirationMs: 5_000 });
    await log.append(producerBatch(1, 0, 0, ['a'], { timestamp: 10_000 }), asLeader);
    await log.append(producerBatch(2, 0, 0, ['b'], { timestamp: 13_000 }), asLeader);
    clock.advance(4_500);
    await log.enforceRetention();
    expect(log.producers.size).toBe(2);
    clock.advance(1_000);
    await log.enforceRetention();
    expect([...log.producers.entries()].map((e) => e.producerId)).toEqual([2]);
    expect((await refusal(log.append(producerBatch(1, 0, 1, ['c']), asLeader))).code).toBe(
      'UNKNOWN_PRODUCER_ID',
    );
    await log.close();
  });
});

describe('ProducerState snapshots', () => {
  it('round-trip, and damaged bytes are CORRUPT_MESSAGE', () => {
    const state = new ProducerState();
    state.apply({
      producerId: 9,
      producerEpoch: 1,
      baseSequence: 0,
      lastOffsetDelta: 2,
      baseOffset: 10,
      maxTimestamp: 5,
    });
    state.apply({
      producerId: 9,
      producerEpoch: 1,
      baseSequence: 3,
      lastOffsetDelta: 0,
      baseOffset: 13,
      maxTimestamp: 7,
    });
    const { offset, state: back } = ProducerState.decode(state.encode(14));
    expect(offset).toBe(14);
    expect([...back.entries()]).toEqual([...state.entries()]);
    expect(() => ProducerState.decode(Buffer.from([1, 2, 3]))).toThrow(/producer state snapshot/);
    // A batch at or past the snapshot's offset cannot be in it.
    expect(() => ProducerState.decode(state.encode(13))).toThrow(/offsets/);
  });
});
