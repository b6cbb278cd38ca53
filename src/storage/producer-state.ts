import { SluiceError } from '../common/errors.js';
import type { BatchHeader } from '../protocol/batch.js';
import { packr, unpackr } from '../protocol/msgpack.js';

/**
 * What a partition knows of each idempotent producer that wrote to it: its epoch and the sequence
 * ranges and offsets of its last `PRODUCER_BATCHES_KEPT` batches. The leader checks every batch a
 * client sends against it (a retried batch is answered with its first offsets instead of being
 * appended twice, a gap or an older epoch is refused); followers and recovery only apply batches.
 * The state belongs to the log: it is rebuilt from the batches themselves, from a snapshot on.
 *
 * Sequence numbers are int32 and wrap from 2^31 - 1 to 0, as Kafka's do.
 */
export const PRODUCER_BATCHES_KEPT = 5;

const SEQUENCE_MAX = 0x7fffffff;

/** One retained batch of a producer. */
export interface ProducerBatch {
  readonly firstSequence: number;
  readonly lastSequence: number;
  readonly firstOffset: number;
  readonly lastOffset: number;
}

/** One producer's state; immutable (each change makes a new entry). */
export interface ProducerEntry {
  readonly producerId: number;
  readonly epoch: number;
  /** Oldest first; never empty. */
  readonly batches: readonly ProducerBatch[];
  /** The largest batch timestamp seen: expiry counts from it. */
  readonly lastTimestamp: number;
}

/** The producer fields of a batch header and where the batch sits. */
export type ProducerBatchHeader = Pick<
  BatchHeader,
  'producerId' | 'producerEpoch' | 'baseSequence' | 'lastOffsetDelta' | 'baseOffset' | 'maxTimestamp'
>;

/** What the leader does with a client's batch. */
export type SequenceVerdict =
  | { readonly kind: 'append' }
  | { readonly kind: 'duplicate'; readonly batch: ProducerBatch };

export function lastSequenceOf(header: Pick<BatchHeader, 'baseSequence' | 'lastOffsetDelta'>): number {
  return (header.baseSequence + header.lastOffsetDelta) % (SEQUENCE_MAX + 1);
}

function nextSequence(sequence: number): number {
  return sequence === SEQUENCE_MAX ? 0 : sequence + 1;
}

/**
 * The leader's check of a client's batch from producer `header.producerId` against what the
 * partition knows of it (`entry`, undefined when nothing). Throws the refusal:
 * PRODUCER_FENCED for an epoch older than the producer's, OUT_OF_ORDER_SEQUENCE_NUMBER for a
 * sequence that is not the next one (a gap, or an old batch no longer retained), and
 * UNKNOWN_PRODUCER_ID for a producer the partition has no state of (it expired, or was never
 * here) whose batch does not start at sequence 0.
 */
export function checkSequence(
  entry: ProducerEntry | undefined,
  header: ProducerBatchHeader,
): SequenceVerdict {
  const { producerId, producerEpoch, baseSequence } = header;
  const details = { producerId, producerEpoch, baseSequence };
  if (!entry) {
    if (baseSequence === 0) return { kind: 'append' };
    throw new SluiceError(
      'UNKNOWN_PRODUCER_ID',
      `this partition has no state of producer ${producerId} (it expired, or the producer never wrote here), ` +
        `and its batch starts at sequence ${baseSequence}, not 0`,
      { details },
    );
  }
  if (producerEpoch < entry.epoch) {
    throw new SluiceError(
      'PRODUCER_FENCED',
      `producer ${producerId} epoch ${producerEpoch} is older than its current epoch ${entry.epoch}`,
      { details: { ...details, currentEpoch: entry.epoch } },
    );
  }
  if (producerEpoch > entry.epoch) {
    if (baseSequence === 0) return { kind: 'append' };
    throw new SluiceError(
      'OUT_OF_ORDER_SEQUENCE_NUMBER',
      `producer ${producerId} starts epoch ${producerEpoch} at sequence ${baseSequence}; a new epoch starts at 0`,
      { details: { ...details, expectedSequence: 0 } },
    );
  }
  const lastSequence = lastSequenceOf(header);
  const duplicate = entry.batches.find(
    (b) => b.firstSequence === baseSequence && b.lastSequence === lastSequence,
  );
  if (duplicate) return { kind: 'duplicate', batch: duplicate };
  const expected = nextSequence(entry.batches[entry.batches.length - 1]!.lastSequence);
  if (baseSequence !== expected) {
    throw new SluiceError(
      'OUT_OF_ORDER_SEQUENCE_NUMBER',
      `producer ${producerId} epoch ${producerEpoch} sent sequence ${baseSequence}; the next one is ${expected}`,
      { details: { ...details, expectedSequence: expected } },
    );
  }
  return { kind: 'append' };
}

/** The entry after the batch `header` (its offsets assigned) is appended. */
export function withBatch(entry: ProducerEntry | undefined, header: ProducerBatchHeader): ProducerEntry {
  const batch: ProducerBatch = {
    firstSequence: header.baseSequence,
    lastSequence: lastSequenceOf(header),
    firstOffset: header.baseOffset,
    lastOffset: header.baseOffset + header.lastOffsetDelta,
  };
  const sameEpoch = entry !== undefined && entry.epoch === header.producerEpoch;
  const kept = sameEpoch ? entry.batches.slice(-(PRODUCER_BATCHES_KEPT - 1)) : [];
  return {
    producerId: header.producerId,
    epoch: header.producerEpoch,
    batches: [...kept, batch],
    lastTimestamp: Math.max(entry?.lastTimestamp ?? -1, header.maxTimestamp),
  };
}

/** Every producer of one partition. */
export class ProducerState {
  #entries = new Map<number, ProducerEntry>();

  get size(): number {
    return this.#entries.size;
  }

  get(producerId: number): ProducerEntry | undefined {
    return this.#entries.get(producerId);
  }

  entries(): IterableIterator<ProducerEntry> {
    return this.#entries.values();
  }

  /** Records an appended batch (a leader's after its check, a follower's or recovery's as it is). */
  apply(header: ProducerBatchHeader): void {
    if (header.producerId < 0) return;
    this.#entries.set(header.producerId, withBatch(this.#entries.get(header.producerId), header));
  }

  /** Puts back an entry as a snapshot holds it. */
  restore(entry: ProducerEntry): void {
    this.#entries.set(entry.producerId, entry);
  }

  clear(): void {
    this.#entries.clear();
  }

  /** Forgets producers whose last batch is older than `expirationMs` before `nowMs`; how many. */
  expire(nowMs: number, expirationMs: number): number {
    let removed = 0;
    for (const [id, entry] of this.#entries) {
      if (nowMs - entry.lastTimestamp > expirationMs) {
        this.#entries.delete(id);
        removed++;
      }
    }
    return removed;
  }

  /**
   * The snapshot file's bytes: the state as of log offset `offset` (every batch below it applied).
   * msgpack `[1, offset, [[producerId, epoch, lastTimestamp, [[firstSeq, lastSeq, firstOffset,
   * lastOffset], ...]], ...]]`.
   */
  encode(offset: number): Buffer {
    const producers = [...this.#entries.values()].map((e) => [
      e.producerId,
      e.epoch,
      e.lastTimestamp,
      e.batches.map((b) => [b.firstSequence, b.lastSequence, b.firstOffset, b.lastOffset]),
    ]);
    return packr.pack([SNAPSHOT_VERSION, offset, producers]);
  }

  /** Reads a snapshot; CORRUPT_MESSAGE for bytes that are not one. */
  static decode(bytes: Uint8Array): { offset: number; state: ProducerState } {
    const corrupt = (why: string) =>
      new SluiceError('CORRUPT_MESSAGE', `the producer state snapshot is damaged: ${why}`);
    let value: unknown;
    try {
      value = unpackr.unpack(bytes);
    } catch {
      throw corrupt('not msgpack');
    }
    if (!Array.isArray(value) || value.length !== 3 || value[0] !== SNAPSHOT_VERSION)
      throw corrupt('bad header');
    const [, offset, producers] = value as [number, unknown, unknown];
    if (!isNatural(offset) || !Array.isArray(producers)) throw corrupt('bad offset or producer list');
    const state = new ProducerState();
    for (const p of producers) {
      if (!Array.isArray(p) || p.length !== 4) throw corrupt('bad producer');
      const [producerId, epoch, lastTimestamp, batches] = p as unknown[];
      if (!isNatural(producerId) || !isNatural(epoch) || !Number.isSafeInteger(lastTimestamp))
        throw corrupt('bad producer fields');
      if (!Array.isArray(batches) || batches.length === 0 || batches.length > PRODUCER_BATCHES_KEPT)
        throw corrupt('bad batch list');
      const kept: ProducerBatch[] = batches.map((b: unknown) => {
        if (!Array.isArray(b) || b.length !== 4 || !b.every(isNatural)) throw corrupt('bad batch');
        const [firstSequence, lastSequence, firstOffset, lastOffset] = b as number[];
        if (lastOffset! < firstOffset! || lastOffset! >= offset) throw corrupt('bad batch offsets');
        return {
          firstSequence: firstSequence!,
          lastSequence: lastSequence!,
          firstOffset: firstOffset!,
          lastOffset: lastOffset!,
        };
      });
      state.#entries.set(producerId, {
        producerId,
        epoch,
        batches: kept,
        lastTimestamp: lastTimestamp as number,
      });
    }
    return { offset, state };
  }
}

const SNAPSHOT_VERSION = 1;

function isNatural(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}
