import { assert } from '../common/assert.js';
import { crc32c } from '../common/crc32c.js';
import { SluiceError } from '../common/errors.js';
import type { FileSystem } from './fs.js';

/** Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET: no epoch, and so no end offset, answers. */
export const UNDEFINED_EPOCH = -1;
export const UNDEFINED_EPOCH_OFFSET = -1;

export interface EpochEntry {
  epoch: number;
  startOffset: number;
}

/**
 * The leader-epoch checkpoint of one partition: for each leader epoch, the first offset written in
 * it. Followers use `endOffsetFor` to find where their log diverges from a new leader's and
 * truncate there, instead of trusting a high watermark that may be stale.
 *
 * File `leader-epoch-checkpoint`, text, replaced atomically on every change:
 *   line 1: `0` (format version)
 *   line 2: number of entries N
 *   N lines: `<epoch> <startOffset>`
 *   last line: CRC-32C of the lines above, in hex
 */
export class LeaderEpochCache {
  #entries: EpochEntry[] = [];
  #writing: Promise<void> = Promise.resolve();
  /** The first checkpoint write that failed; every later flush reports it. */
  #failure: unknown;
  #onWriteFailure: ((error: unknown) => void) | undefined;
  /** Where the log ends now; set by the owning PartitionLog so `endOffsetFor(epoch)` needs no second argument. */
  #logEndOffset: (() => number) | undefined;

  private constructor(
    private readonly path: string,
    private readonly fs: FileSystem,
  ) {}

  static async load(path: string, fs: FileSystem): Promise<LeaderEpochCache> {
    const cache = new LeaderEpochCache(path, fs);
    const data = await fs.readFile(path);
    if (data !== undefined) cache.#entries = parseCheckpoint(data.toString('utf8'), path);
    return cache;
  }

  /**
   * Ties the cache to its log: the latest epoch ends at the log's current end offset, and a failed
   * checkpoint write is reported to the log (which goes offline) as it happens.
   */
  attachLog(logEndOffset: () => number, onWriteFailure: (error: unknown) => void): void {
    this.#logEndOffset = logEndOffset;
    this.#onWriteFailure = onWriteFailure;
  }

  entries(): EpochEntry[] {
    return this.#entries.map((e) => ({ ...e }));
  }

  latestEpoch(): number | undefined {
    return this.#entries.at(-1)?.epoch;
  }

  /** Records that `epoch` starts at `startOffset`. Epochs only grow; an old or equal epoch is ignored. */
  assign(epoch: number, startOffset: number): void {
    assert(Number.isSafeInteger(epoch) && epoch >= 0, `epoch ${epoch} is not valid`);
    const last = this.#entries.at(-1);
    if (last && epoch <= last.epoch) return;
    assert(
      !last || startOffset >= last.startOffset,
      `epoch ${epoch} starts at ${startOffset}, before epoch ${last?.epoch}`,
    );
    this.#entries.push({ epoch, startOffset });
    this.#persist();
  }

  /**
   * The largest epoch not above `epoch`, and the offset where it ends: the start of the next epoch,
   * or `logEndOffset` for the latest one. Undefined when every known epoch is above `epoch`.
   */
  endOffsetFor(epoch: number, logEndOffset?: number): { epoch: number; endOffset: number } | undefined {
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const entry = this.#entries[i]!;
      if (entry.epoch <= epoch) {
        const next = this.#entries[i + 1];
        if (next) return { epoch: entry.epoch, endOffset: next.startOffset };
        const end = logEndOffset ?? this.#logEndOffset?.();
        assert(end !== undefined, 'endOffsetFor needs the log end offset of an unattached cache');
        return { epoch: entry.epoch, endOffset: end };
      }
    }
    return undefined;
  }

  /** Drops epochs that start at or after `offset` (the log was truncated there). */
  truncateFromEnd(offset: number): void {
    const before = this.#entries.length;
    this.#entries = this.#entries.filter((e) => e.startOffset < offset);
    if (this.#entries.length !== before) this.#persist();
  }

  /** The log now starts at `offset`: the epoch that covers it starts there. */
  truncateFromStart(offset: number): void {
    let changed = false;
    while (this.#entries.length > 1 && this.#entries[1]!.startOffset <= offset) {
      this.#entries.shift();
      changed = true;
    }
    const first = this.#entries[0];
    if (first && first.startOffset < offset) {
      first.startOffset = offset;
      changed = true;
    }
    if (changed) this.#persist();
  }

  /**
   * Forgets every epoch: the log was emptied and starts over at an offset none of them covers
   * (`PartitionLog.truncateFullyAndStartAt`), so none of their start offsets means anything now.
   */
  clear(): void {
    if (this.#entries.length === 0) return;
    this.#entries = [];
    this.#persist();
  }

  /** Resolves when every change so far is on disk; rejects once any checkpoint write has failed. */
  async flush(): Promise<void> {
    await this.#writing;
    if (this.#failure !== undefined) throw this.#failure;
  }

  #persist(): void {
    const snapshot = serializeCheckpoint(this.#entries);
    this.#writing = this.#writing.then(async () => {
      if (this.#failure !== undefined) return;
      try {
        await this.fs.writeFileAtomic(this.path, Buffer.from(snapshot, 'utf8'));
      } catch (error) {
        this.#failure = error;
        this.#onWriteFailure?.(error);
      }
    });
  }
}

function serializeCheckpoint(entries: readonly EpochEntry[]): string {
  const body = `0\n${entries.length}\n${entries.map((e) => `${e.epoch} ${e.startOffset}\n`).join('')}`;
  return `${body}${crc32c(Buffer.from(body, 'utf8')).toString(16)}\n`;
}

function parseCheckpoint(text: string, path: string): EpochEntry[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const crcLine = lines.pop();
  const body = lines.length ? `${lines.join('\n')}\n` : '';
  if (
    crcLine === undefined ||
    crc32c(Buffer.from(body, 'utf8')).toString(16) !== crcLine ||
    lines[0] !== '0'
  ) {
    throw new SluiceError('KAFKA_STORAGE_ERROR', `leader-epoch checkpoint ${path} is damaged`);
  }
  const count = Number(lines[1]);
  const entries = lines.slice(2).map((line) => {
    const [epoch, startOffset] = line.split(' ').map(Number);
    return { epoch: epoch!, startOffset: startOffset! };
  });
  if (entries.length !== count)
    throw new SluiceError('KAFKA_STORAGE_ERROR', `leader-epoch checkpoint ${path} is damaged`);
  return entries;
}
