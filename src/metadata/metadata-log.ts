import { SluiceError } from '../common/errors.js';
import { packr, unpackr } from '../protocol/msgpack.js';
import type { Entry } from '../raft/types.js';
import {
  decodeImage,
  encodeImage,
  type MetadataDelta,
  MetadataDeltaBuilder,
  MetadataImage,
} from './image.js';
import { decodeRecord, encodeRecord, type MetadataRecord } from './records.js';

/**
 * `__cluster_metadata`: the metadata records in the Raft log, replayed into the image.
 *
 * One Raft entry holds the records of one decision (a topic with its partitions and configs, a
 * fence with its leader elections), applied together or not at all:
 *
 *   entry data = msgpack array of record bytes (each `encodeRecord`)
 *
 * A record's offset, which the image keeps as `lastOffset` and which a registration turns into the
 * broker epoch, is `raftIndex × RECORDS_PER_ENTRY_MAX + position`: it grows with the log, is the
 * same on every node, and is known only once the entry is committed. The leader's empty entry of
 * each term carries no record.
 */
export const RECORDS_PER_ENTRY_MAX = 65_536;

/** What the log needs of the Raft driver (`RaftDriver` implements it). */
export interface MetadataRaft {
  onApply(handler: (entry: Entry) => void): void;
  onSnapshot(hooks: { take(): Uint8Array; restore(data: Uint8Array, index: number): void }): void;
  propose(data: Uint8Array): Promise<{ index: number; term: number }>;
}

export function encodeEntry(records: readonly MetadataRecord[]): Uint8Array {
  if (records.length === 0 || records.length > RECORDS_PER_ENTRY_MAX)
    throw new SluiceError('INVALID_REQUEST', `an entry holds 1 to ${RECORDS_PER_ENTRY_MAX} records`);
  return packr.pack(records.map((r) => encodeRecord(r)));
}

export function decodeEntry(data: Uint8Array): MetadataRecord[] {
  let parts: unknown;
  try {
    parts = unpackr.unpack(data);
  } catch (error) {
    throw new SluiceError('INVALID_RECORD', 'a metadata entry is not msgpack', { cause: error });
  }
  if (!Array.isArray(parts) || parts.length === 0 || parts.length > RECORDS_PER_ENTRY_MAX)
    throw new SluiceError('INVALID_RECORD', 'a metadata entry is not a list of records');
  return parts.map((part) => {
    if (!(part instanceof Uint8Array))
      throw new SluiceError('INVALID_RECORD', 'a metadata record is not bytes');
    return decodeRecord(part);
  });
}

export class MetadataLog {
  #image: MetadataImage = MetadataImage.EMPTY;
  readonly #listeners = new Set<(delta: MetadataDelta) => void>();
  readonly #raft: MetadataRaft;

  /** Hooks itself into the driver: call before the driver starts, so a stored snapshot is restored. */
  constructor(deps: { raft: MetadataRaft }) {
    this.#raft = deps.raft;
    this.#raft.onApply((entry) => this.#apply(entry));
    this.#raft.onSnapshot({
      take: () => encodeImage(this.#image),
      restore: (data) => {
        const before = this.#image;
        this.#image = decodeImage(data);
        const delta: MetadataDelta = {
          ...new MetadataDeltaBuilder(this.#image).build(),
          before,
          restored: true,
        };
        for (const listener of this.#listeners) listener(delta);
      },
    });
  }

  /** The image of every record applied on this node so far. */
  get image(): MetadataImage {
    return this.#image;
  }

  /** Calls `listener` with the delta of every applied entry; returns the unsubscribe function. */
  onChange(listener: (delta: MetadataDelta) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Appends the records as one entry and resolves once it is committed and applied here (so the
   * image shows them). Rejects with NOT_LEADER when this node does not lead the metadata quorum.
   */
  async propose(records: readonly MetadataRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.#raft.propose(encodeEntry(records));
  }

  /**
   * Resolves once every entry committed before it is applied here: a leader calls it after it is
   * elected, so that its decisions read an image with every earlier leader's committed records.
   */
  async barrier(): Promise<void> {
    await this.#raft.propose(new Uint8Array(0));
  }

  /**
   * Resolves once the image has applied the record at `offset` (at once when it has); resolves
   * false, and stops listening, when `signal` aborts first.
   */
  waitFor(offset: number, signal?: AbortSignal): Promise<boolean> {
    if (this.#image.lastOffset >= offset) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const abort = () => {
        off();
        resolve(false);
      };
      const off = this.onChange((delta) => {
        if (delta.after.lastOffset < offset) return;
        off();
        signal?.removeEventListener('abort', abort);
        resolve(true);
      });
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  #apply(entry: Entry): void {
    if (entry.data.length === 0) return;
    // A record that does not decode stops this node here rather than guessing (a newer release's
    // record reaches an older node only past a metadata.version it cannot support).
    const records = decodeEntry(entry.data);
    const builder = new MetadataDeltaBuilder(this.#image);
    records.forEach((record, i) => {
      builder.replay(record, entry.index * RECORDS_PER_ENTRY_MAX + i);
    });
    const delta = builder.build();
    this.#image = delta.after;
    for (const listener of this.#listeners) listener(delta);
  }
}
