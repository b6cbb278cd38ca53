import { assert } from '../common/assert.js';
import { SluiceError } from '../common/errors.js';
import {
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_PREFIX_BYTES,
  type BatchHeader,
  checkBatchAt,
  readBatchHeader,
} from '../protocol/batch.js';
import type { FileHandle, FileSystem } from './fs.js';

/** `00000000000000170410` */
export function segmentName(baseOffset: number): string {
  return String(baseOffset).padStart(20, '0');
}

export const INDEX_ENTRY_BYTES = 8;
export const TIME_INDEX_ENTRY_BYTES = 12;
/** Index entries buffered in memory before they are written out. */
const PENDING_INDEX_ENTRIES_MAX = 1024;

export interface EpochStart {
  epoch: number;
  startOffset: number;
}

/** Where a recovery scan starts within a segment, and the index entries before it (`#resumePoint`). */
interface ResumePoint {
  offset: number;
  position: number;
  /** The largest record timestamp among the batches before `offset` (its time index entry). */
  maxTimestampBefore: number;
  indexOffsets: number[];
  indexPositions: number[];
  timeTimestamps: number[];
  timeOffsets: number[];
}

export interface BatchLocation {
  position: number;
  size: number;
  header: BatchHeader;
}

export interface SegmentReadOptions {
  /**
   * Bytes left free before and after the returned data in its buffer, for a caller that frames
   * the batches (a response header and trailer) without copying them.
   */
  reserve?: { before: number; after: number };
  /** Read on the calling thread (see `FileHandle.readSync`): for bytes the page cache holds. */
  sync?: boolean;
  /**
   * Where the read's buffer comes from (at least `bytes` long, its own backing store), instead of
   * a fresh allocation: a pool whose caller returns the buffer once the data is no longer used.
   */
  allocate?: (bytes: number) => Buffer;
}

/** Read past the requested bytes, so that one read also covers the walk from the indexed position. */
const READ_SLACK_BYTES = 16 * 1024;

export interface SegmentReadResult {
  data: Buffer;
  batchCount: number;
  nextOffset: number;
  /** Set when the bytes asked for by `reserve` are free around `data` in its own buffer. */
  reserved?: { before: number; after: number };
}

/**
 * One segment of a partition: `<base>.log` with its batches back to back, a sparse `<base>.index`
 * (relative offset u32, position u32, big-endian, one entry every `indexIntervalBytes`) and a
 * `<base>.timeindex` (timestamp i64, relative offset u32: no record before that offset in this
 * segment has a timestamp above the entry's). Both indexes are kept in memory and appended to their
 * files unsynced: they are rebuilt from the log after a crash.
 */
export class Segment {
  /** Bytes of whole batches in the log file. */
  size = 0;
  /** Offset after the last batch; baseOffset while empty. */
  nextOffset: number;
  /** Largest record timestamp in the segment; -1 while empty. */
  maxTimestamp = -1;
  /** Clock time of the first append, for `segment.ms` rolls. */
  createdMs: number;
  /** Whether bytes were written since the last fsync that succeeded (or is in flight). */
  dirty = false;
  /** The fsync in flight or the last one: a caller that finds nothing dirty still waits for it. */
  #lastSync: Promise<void> = Promise.resolve();
  #indexOffsets: number[] = [];
  #indexPositions: number[] = [];
  #timeTimestamps: number[] = [];
  #timeOffsets: number[] = [];
  #bytesSinceIndex = 0;
  #pendingIndex: Buffer[] = [];
  /** Index files written or cut since their last fsync (true at open: never assumed durable). */
  #indexesDirty = true;
  #pendingTimeIndex: Buffer[] = [];
  #readers = 0;
  #closeWhenIdle: (() => void) | undefined;
  #closed = false;

  private constructor(
    readonly dir: string,
    readonly baseOffset: number,
    readonly log: FileHandle,
    private readonly indexFile: FileHandle,
    private readonly timeIndexFile: FileHandle,
    private readonly fs: FileSystem,
    nowMs: number,
  ) {
    this.nextOffset = baseOffset;
    this.createdMs = nowMs;
  }

  static paths(dir: string, baseOffset: number) {
    const base = `${dir}/${segmentName(baseOffset)}`;
    return { log: `${base}.log`, index: `${base}.index`, timeIndex: `${base}.timeindex` };
  }

  /** Creates the segment's files, empty, and syncs the directory that holds them. */
  static async create(dir: string, baseOffset: number, fs: FileSystem, nowMs: number): Promise<Segment> {
    const paths = Segment.paths(dir, baseOffset);
    const [log, index, timeIndex] = await Promise.all([
      fs.open(paths.log),
      fs.open(paths.index),
      fs.open(paths.timeIndex),
    ]);
    await Promise.all([log.truncate(0), index.truncate(0), timeIndex.truncate(0)]);
    // The new files must outlive a power loss before they hold acknowledged appends.
    await fs.syncDir(dir);
    return new Segment(dir, baseOffset, log, index, timeIndex, fs, nowMs);
  }

  /**
   * Opens an existing segment. With `recover`, every batch is checked (length, markers, CRC,
   * offsets increasing) and the file is cut at the first bad one; `corrupt` then says so, and the
   * caller deletes every later segment. With `recoveryPoint` too, the check starts at the last
   * indexed batch at or below it (`#resumePoint`): the bytes before are durable, and only the rest
   * is read. Without `recover`, the indexes are loaded if they are consistent and rebuilt from
   * batch headers if not.
   */
  static async open(
    dir: string,
    baseOffset: number,
    fs: FileSystem,
    options: {
      recover: boolean;
      /** Offsets below this are known to be on disk (the log's recovery point). */
      recoveryPoint?: number;
      indexIntervalBytes: number;
      batchBytesMax: number;
      nowMs: number;
    },
  ): Promise<{
    segment: Segment;
    corrupt: string | undefined;
    fileSize: number;
    /** With `recover`: where each leader epoch starts among the batches kept, in offset order. */
    epochStarts: EpochStart[];
    /** With `recover`: the offset and file position the check started from, and the bytes it read. */
    scanned?: { fromOffset: number; fromPosition: number; bytes: number };
  }> {
    const paths = Segment.paths(dir, baseOffset);
    const [log, index, timeIndex] = await Promise.all([
      fs.open(paths.log),
      fs.open(paths.index),
      fs.open(paths.timeIndex),
    ]);
    const segment = new Segment(dir, baseOffset, log, index, timeIndex, fs, options.nowMs);
    const fileSize = await log.size();
    const epochStarts: EpochStart[] = [];
    if (options.recover) {
      const [indexSize, timeSize] = await Promise.all([index.size(), timeIndex.size()]);
      const sizes = { indexSize, timeSize };
      const resume =
        options.recoveryPoint !== undefined && options.recoveryPoint > baseOffset
          ? await segment.#resumePoint(fileSize, options.recoveryPoint, sizes)
          : undefined;
      const corrupt = await segment.#rebuild(fileSize, options, true, epochStarts, resume, sizes);
      const fromPosition = resume?.position ?? 0;
      const scanned = {
        fromOffset: resume?.offset ?? baseOffset,
        fromPosition,
        bytes: fileSize - fromPosition,
      };
      return { segment, corrupt, fileSize, epochStarts, scanned };
    }
    const loaded = await segment.#loadIndexes(fileSize);
    if (!loaded) await segment.#rebuild(fileSize, options, false, []);
    return { segment, corrupt: undefined, fileSize, epochStarts };
  }

  async #loadIndexes(fileSize: number): Promise<boolean> {
    const [indexSize, timeSize] = await Promise.all([this.indexFile.size(), this.timeIndexFile.size()]);
    if (indexSize % INDEX_ENTRY_BYTES !== 0 || timeSize % TIME_INDEX_ENTRY_BYTES !== 0) return false;
    const indexBuf = Buffer.alloc(indexSize);
    const timeBuf = Buffer.alloc(timeSize);
    await Promise.all([
      this.indexFile.read(indexBuf, 0, indexSize, 0),
      this.timeIndexFile.read(timeBuf, 0, timeSize, 0),
    ]);
    let lastOffset = -1;
    let lastPosition = -1;
    for (let at = 0; at < indexSize; at += INDEX_ENTRY_BYTES) {
      const rel = indexBuf.readUInt32BE(at);
      const position = indexBuf.readUInt32BE(at + 4);
      if (rel <= lastOffset || position <= lastPosition || position >= fileSize) return false;
      this.#indexOffsets.push(this.baseOffset + rel);
      this.#indexPositions.push(position);
      lastOffset = rel;
      lastPosition = position;
    }
    let lastTimestamp = Number.NEGATIVE_INFINITY;
    for (let at = 0; at < timeSize; at += TIME_INDEX_ENTRY_BYTES) {
      const hi = timeBuf.readInt32BE(at);
      const timestamp = hi * 0x1_0000_0000 + timeBuf.readUInt32BE(at + 4);
      const rel = timeBuf.readUInt32BE(at + 8);
      if (timestamp < lastTimestamp) return false;
      this.#timeTimestamps.push(timestamp);
      this.#timeOffsets.push(this.baseOffset + rel);
      lastTimestamp = timestamp;
    }
    // The tail after the last index entry is walked to find the end of the log. The last time
    // entry holds the max timestamp of every batch before its offset; the tail gives the rest.
    const from = this.#indexPositions.at(-1) ?? 0;
    this.maxTimestamp = this.#timeTimestamps.at(-1) ?? -1;
    const tail = await this.#scan(from, fileSize, false, Number.MAX_SAFE_INTEGER, (location) => {
      this.nextOffset = location.header.baseOffset + location.header.lastOffsetDelta + 1;
      if (location.header.maxTimestamp > this.maxTimestamp) this.maxTimestamp = location.header.maxTimestamp;
      return undefined;
    });
    if (tail.error !== undefined || tail.end !== fileSize) return false;
    this.size = fileSize;
    this.#bytesSinceIndex = fileSize - from;
    // Loaded as they are on disk: nothing to sync until they are written. (Indexes lost in a crash
    // cost no correctness either: an open checks them against the log and rebuilds them.)
    this.#indexesDirty = false;
    return true;
  }

  /**
   * Where a recovery scan may start instead of the segment's first byte: the last index entry at
   * or below `recoveryPoint`, provided the indexes load consistently, a batch header with that base
   * offset lies at its position, and the time index has its entry at the same offset (the running
   * maximum timestamp of the batches before). Everything before that position holds offsets below
   * the recovery point, which were synced before the checkpoint named it. Undefined: scan it all.
   */
  async #resumePoint(
    fileSize: number,
    recoveryPoint: number,
    { indexSize, timeSize }: { indexSize: number; timeSize: number },
  ): Promise<ResumePoint | undefined> {
    if (indexSize % INDEX_ENTRY_BYTES !== 0 || timeSize % TIME_INDEX_ENTRY_BYTES !== 0) return undefined;
    const indexBuf = Buffer.alloc(indexSize);
    const timeBuf = Buffer.alloc(timeSize);
    await Promise.all([
      this.indexFile.read(indexBuf, 0, indexSize, 0),
      this.timeIndexFile.read(timeBuf, 0, timeSize, 0),
    ]);
    const offsets: number[] = [];
    const positions: number[] = [];
    for (let at = 0; at < indexSize; at += INDEX_ENTRY_BYTES) {
      const offset = this.baseOffset + indexBuf.readUInt32BE(at);
      const position = indexBuf.readUInt32BE(at + 4);
      if (offset <= (offsets.at(-1) ?? -1) || position <= (positions.at(-1) ?? 0) || position >= fileSize)
        return undefined;
      if (offset > recoveryPoint) break;
      offsets.push(offset);
      positions.push(position);
    }
    const offset = offsets.at(-1);
    const position = positions.at(-1);
    if (offset === undefined || position === undefined) return undefined;
    const timestamps: number[] = [];
    const timeOffsets: number[] = [];
    for (let at = 0; at < timeSize; at += TIME_INDEX_ENTRY_BYTES) {
      const timestamp = timeBuf.readInt32BE(at) * 0x1_0000_0000 + timeBuf.readUInt32BE(at + 4);
      const timeOffset = this.baseOffset + timeBuf.readUInt32BE(at + 8);
      if (timestamp < (timestamps.at(-1) ?? Number.NEGATIVE_INFINITY)) return undefined;
      if (timeOffset > offset) break;
      timestamps.push(timestamp);
      timeOffsets.push(timeOffset);
    }
    if (timeOffsets.at(-1) !== offset) return undefined;
    const head = Buffer.alloc(BATCH_HEADER_BYTES);
    if ((await this.log.read(head, 0, BATCH_HEADER_BYTES, position)) < BATCH_HEADER_BYTES) return undefined;
    const peeked = peekHeader(head, 0);
    if (typeof peeked === 'string' || peeked.header.baseOffset !== offset) return undefined;
    // The entries at the resume point itself are made again by the scan (`#track`).
    return {
      offset,
      position,
      maxTimestampBefore: timestamps.pop()!,
      indexOffsets: offsets.slice(0, -1),
      indexPositions: positions.slice(0, -1),
      timeTimestamps: timestamps,
      timeOffsets: timeOffsets.slice(0, -1),
    };
  }

  async #rebuild(
    fileSize: number,
    options: { indexIntervalBytes: number; batchBytesMax: number },
    verify: boolean,
    epochStarts: EpochStart[],
    resume?: ResumePoint,
    /** The index files' sizes now, when known: a file already of the size kept is not cut. */
    sizes?: { indexSize: number; timeSize: number },
  ): Promise<string | undefined> {
    this.#indexOffsets = resume?.indexOffsets ?? [];
    this.#indexPositions = resume?.indexPositions ?? [];
    this.#timeTimestamps = resume?.timeTimestamps ?? [];
    this.#timeOffsets = resume?.timeOffsets ?? [];
    // At a resume point, as far past the last entry as makes `#track` index that batch again.
    this.#bytesSinceIndex = resume ? options.indexIntervalBytes : 0;
    this.size = resume?.position ?? 0;
    this.nextOffset = resume?.offset ?? this.baseOffset;
    this.maxTimestamp = resume?.maxTimestampBefore ?? -1;
    this.#indexesDirty = true;
    const indexKept = this.#indexOffsets.length * INDEX_ENTRY_BYTES;
    const timeKept = this.#timeOffsets.length * TIME_INDEX_ENTRY_BYTES;
    await Promise.all([
      sizes?.indexSize === indexKept ? undefined : this.indexFile.truncate(indexKept),
      sizes?.timeSize === timeKept ? undefined : this.timeIndexFile.truncate(timeKept),
    ]);
    const entries: Buffer[] = [];
    const timeEntries: Buffer[] = [];
    const result = await this.#scan(this.size, fileSize, verify, options.batchBytesMax, (location) => {
      if (location.header.baseOffset < this.nextOffset)
        return `batch at position ${location.position} goes back to offset ${location.header.baseOffset}`;
      const epoch = location.header.partitionLeaderEpoch;
      if (epoch >= 0 && epoch > (epochStarts.at(-1)?.epoch ?? -1))
        epochStarts.push({ epoch, startOffset: location.header.baseOffset });
      const added = this.#track(
        location.header,
        location.position,
        location.size,
        options.indexIntervalBytes,
      );
      if (added) {
        entries.push(added.index);
        timeEntries.push(added.time);
      }
      return undefined;
    });
    if (result.end < fileSize) {
      await this.log.truncate(result.end);
      await this.log.sync();
    }
    this.size = result.end;
    this.#indexesDirty = true;
    if (entries.length > 0) {
      await this.indexFile.write(Buffer.concat(entries), indexKept);
      await this.timeIndexFile.write(Buffer.concat(timeEntries), timeKept);
    }
    return (
      result.error ??
      (result.end < fileSize
        ? `${fileSize - result.end} bytes of partial batch at position ${result.end}`
        : undefined)
    );
  }

  /**
   * Walks batches in [from, to). With `verify`, each whole batch is checked by `checkBatchAt`;
   * otherwise only the header markers and length. Stops at the first bad or partial batch.
   */
  async #scan(
    from: number,
    to: number,
    verify: boolean,
    batchBytesMax: number,
    visit: (location: BatchLocation) => string | undefined,
  ): Promise<{ end: number; error: string | undefined }> {
    // No larger than the bytes to walk: a small segment (most, with many partitions) takes a small
    // buffer, not a chunk of 64 KiB or 1 MiB each that the GC reclaims only later.
    const chunkBytes = Math.max(0, Math.min(verify ? Math.max(1 << 20, batchBytesMax) : 1 << 16, to - from));
    const buf = Buffer.allocUnsafe(chunkBytes);
    let pos = from;
    while (pos < to) {
      const n = await this.log.read(buf, 0, Math.min(chunkBytes, to - pos), pos);
      const reachesEnd = pos + n >= to;
      let off = 0;
      while (off < n) {
        let location: BatchLocation | undefined;
        if (verify) {
          const check = checkBatchAt(buf, off, n, batchBytesMax);
          if (!check.ok) {
            if (check.reason === 'incomplete' && !reachesEnd && off > 0) break;
            return { end: pos + off, error: check.reason === 'corrupt' ? check.message : undefined };
          }
          location = { position: pos + off, size: check.size, header: check.header };
        } else {
          if (n - off < BATCH_HEADER_BYTES) {
            if (!reachesEnd && off > 0) break;
            return { end: pos + off, error: undefined };
          }
          const peeked = peekHeader(buf, off);
          if (typeof peeked === 'string') return { end: pos + off, error: peeked };
          if (pos + off + peeked.size > to) return { end: pos + off, error: undefined };
          location = { position: pos + off, size: peeked.size, header: peeked.header };
        }
        const problem = visit(location);
        if (typeof problem === 'string') return { end: pos + off, error: problem };
        off += location.size;
      }
      if (off === 0) return { end: pos, error: 'batch larger than the read buffer' };
      pos += off;
    }
    return { end: pos, error: undefined };
  }

  /** Updates in-memory state for a batch appended at `position`; returns index entries to write. */
  #track(
    header: BatchHeader,
    position: number,
    size: number,
    indexIntervalBytes: number,
  ): { index: Buffer; time: Buffer } | undefined {
    let added: { index: Buffer; time: Buffer } | undefined;
    if (this.#bytesSinceIndex >= indexIntervalBytes && position > 0) {
      const rel = header.baseOffset - this.baseOffset;
      this.#indexOffsets.push(header.baseOffset);
      this.#indexPositions.push(position);
      const timestamp = Math.max(this.maxTimestamp, -1);
      this.#timeTimestamps.push(timestamp);
      this.#timeOffsets.push(header.baseOffset);
      const index = Buffer.allocUnsafe(INDEX_ENTRY_BYTES);
      index.writeUInt32BE(rel, 0);
      index.writeUInt32BE(position, 4);
      const time = Buffer.allocUnsafe(TIME_INDEX_ENTRY_BYTES);
      time.writeBigInt64BE(BigInt(timestamp), 0);
      time.writeUInt32BE(rel, 8);
      added = { index, time };
      this.#bytesSinceIndex = 0;
    }
    this.#bytesSinceIndex += size;
    this.nextOffset = header.baseOffset + header.lastOffsetDelta + 1;
    if (header.maxTimestamp > this.maxTimestamp) this.maxTimestamp = header.maxTimestamp;
    this.size = position + size;
    return added;
  }

  /**
   * Appends batches (already rewritten by the caller) in one write at the end of the file.
   * `verify` runs while the write is in flight, so that checking the batches costs no time beside
   * the write; when it returns false the bytes just written are cut off again, nothing is appended
   * and the result is false. Nothing reads past `size`, so the unverified bytes are never served,
   * and a crash before the cut leaves a tail that recovery's CRC scan removes. With `sync` the
   * write happens on this thread (`FileHandle.writeSync`), after `verify`.
   */
  async append(
    data: Buffer,
    batches: readonly BatchLocation[],
    indexIntervalBytes: number,
    options: { verify?: () => boolean; sync?: boolean } = {},
  ): Promise<boolean> {
    assert(!this.#closed, 'append to a closed segment');
    const start = this.size;
    const { verify, sync } = options;
    let verified: boolean;
    if (sync) {
      verified = verify === undefined || verify();
      // A corrupt append is not written at all.
      if (verified) this.log.writeSync(data, start);
      else return false;
    } else {
      const writing = this.log.write(data, start);
      try {
        verified = verify === undefined || verify();
      } finally {
        await writing;
      }
    }
    this.dirty = true;
    if (!verified) {
      await this.log.truncate(start);
      return false;
    }
    const indexEntries: Buffer[] = [];
    const timeEntries: Buffer[] = [];
    for (const batch of batches) {
      const added = this.#track(batch.header, start + batch.position, batch.size, indexIntervalBytes);
      if (added) {
        indexEntries.push(added.index);
        timeEntries.push(added.time);
      }
    }
    // Index entries are written with the next flush, not with every append: one syscall per
    // append, and the indexes are rebuilt from the log after a crash anyway.
    this.#pendingIndex.push(...indexEntries);
    this.#pendingTimeIndex.push(...timeEntries);
    if (this.#pendingIndex.length >= PENDING_INDEX_ENTRIES_MAX) await this.#writePendingIndexes();
    return true;
  }

  async #writePendingIndexes(): Promise<void> {
    if (this.#pendingIndex.length === 0) return;
    const index = Buffer.concat(this.#pendingIndex);
    const time = Buffer.concat(this.#pendingTimeIndex);
    const indexAt = this.#indexOffsets.length * INDEX_ENTRY_BYTES - index.length;
    const timeAt = this.#timeOffsets.length * TIME_INDEX_ENTRY_BYTES - time.length;
    this.#pendingIndex = [];
    this.#pendingTimeIndex = [];
    this.#indexesDirty = true;
    await Promise.all([this.indexFile.write(index, indexAt), this.timeIndexFile.write(time, timeAt)]);
  }

  /** Position of the last indexed batch at or before `offset` (0 if none). */
  lookupPosition(offset: number): number {
    const i = upperBound(this.#indexOffsets, offset) - 1;
    return i >= 0 ? this.#indexPositions[i]! : 0;
  }

  /** Offset to start scanning from for records at or after `timestampMs`. */
  lookupTimestamp(timestampMs: number): number {
    // Entries hold the running max of earlier batches: the last one below the target proves that
    // no record before its offset qualifies.
    const i = lowerBound(this.#timeTimestamps, timestampMs) - 1;
    return i >= 0 ? this.#timeOffsets[i]! : this.baseOffset;
  }

  /**
   * Runs `work` as a reader of this segment: `close` waits until every reader is done, so that a
   * segment replaced (compaction) or deleted (retention, truncation) while reads run is closed
   * only after them. Call it in the same turn as the segment was taken from the log's list.
   */
  async withReader<T>(work: () => Promise<T>): Promise<T> {
    assert(!this.#closed, `read of the closed segment ${this.baseOffset}`);
    this.#readers++;
    try {
      return await work();
    } finally {
      this.#readers--;
      if (this.#readers === 0) this.#closeWhenIdle?.();
    }
  }

  /**
   * Walks batch headers from the indexed position for `offset` until `visit` says stop. A header
   * that is not one, or a batch running past the end of the segment, throws CORRUPT_MESSAGE
   * (`#damaged`): the walk cannot find the batches after it.
   */
  locate(offset: number, visit: (location: BatchLocation) => boolean): Promise<void> {
    return this.withReader(async () => {
      const from = this.lookupPosition(offset);
      let stopped = false;
      const walked = await this.#scan(from, this.size, false, Number.MAX_SAFE_INTEGER, (location) => {
        if (visit(location)) return undefined;
        stopped = true;
        return 'stop';
      });
      if (!stopped && walked.end < this.size)
        throw this.#damaged(walked.end, walked.error ?? 'a batch runs past the end of the segment');
    });
  }

  /**
   * Damage found by a read at `position`: a non-retriable CORRUPT_MESSAGE, the same on every retry,
   * whose details say where reading can go on: the first indexed batch after the damage, or the
   * segment's end (the next segment's base offset). The message names no file: the HTTP layer
   * shows a CORRUPT_MESSAGE's message and details to the client.
   */
  #damaged(position: number, problem: string): SluiceError {
    const i = upperBound(this.#indexPositions, position);
    const nextReadableOffset = this.#indexOffsets[i] ?? this.nextOffset;
    return new SluiceError(
      'CORRUPT_MESSAGE',
      `the stored batch at byte ${position} of segment ${this.baseOffset} is damaged (${problem}); ` +
        `reads from offset ${nextReadableOffset} on do not cross it`,
      {
        retriable: false,
        details: { segmentBaseOffset: this.baseOffset, damagedPosition: position, nextReadableOffset },
      },
    );
  }

  /**
   * Whole batches from the one holding `offset`, within `maxBytes` (at least one batch), none
   * ending past `maxOffset`. One read from the indexed position usually covers both finding the
   * batch and the data; only a first batch larger than that window takes a second read.
   */
  async read(
    offset: number,
    maxBytes: number,
    maxOffset: number,
    options: SegmentReadOptions = {},
  ): Promise<SegmentReadResult> {
    // Not through withReader: a synchronous read must happen before this call returns.
    assert(!this.#closed, `read of the closed segment ${this.baseOffset}`);
    this.#readers++;
    try {
      const size = this.size;
      const from = this.lookupPosition(offset);
      const before = options.reserve?.before ?? 0;
      const after = options.reserve?.after ?? 0;
      const window = Math.min(size - from, Math.max(maxBytes, 1) + READ_SLACK_BYTES);
      // A buffer of its own (not a slice of the shared pool), so the reserved bytes are the caller's.
      const bytes = before + window + after;
      const buf = options.allocate ? options.allocate(bytes) : Buffer.allocUnsafeSlow(bytes);
      assert(buf.length >= bytes && buf.byteOffset === 0, 'an allocated read buffer is not whole');
      const n = options.sync
        ? this.log.readSync(buf, before, window, from)
        : await this.log.read(buf, before, window, from);
      const taken = this.#take(
        buf,
        before,
        before + n,
        { at: from - before, size },
        offset,
        maxBytes,
        maxOffset,
      );
      if (taken.batchCount > 0) {
        const data = buf.subarray(taken.start, taken.end);
        const { batchCount, nextOffset } = taken;
        return options.reserve
          ? { data, batchCount, nextOffset, reserved: options.reserve }
          : { data, batchCount, nextOffset };
      }
      if (taken.pastMaxOffset || from + n >= size)
        return { data: Buffer.alloc(0), batchCount: 0, nextOffset: offset };
      return await this.#readLocated(offset, maxBytes, maxOffset);
    } finally {
      this.#readers--;
      if (this.#readers === 0) this.#closeWhenIdle?.();
    }
  }

  /** Where the batch that holds `offset` (or the first one after it) lies; undefined past the end. */
  async #batchHolding(offset: number): Promise<BatchLocation | undefined> {
    let found: BatchLocation | undefined;
    await this.locate(offset, (location) => {
      if (location.header.baseOffset + location.header.lastOffsetDelta + 1 > offset) {
        found = location;
        return false;
      }
      return true;
    });
    return found;
  }

  /** The general read: finds the batch holding `offset` by its header first, then reads from it. */
  async #readLocated(offset: number, maxBytes: number, maxOffset: number): Promise<SegmentReadResult> {
    const start = await this.#batchHolding(offset);
    if (!start) return { data: Buffer.alloc(0), batchCount: 0, nextOffset: offset };
    const size = this.size;
    const windowBytes = Math.min(size - start.position, Math.max(maxBytes, start.size));
    const buf = Buffer.allocUnsafe(windowBytes);
    const n = await this.log.read(buf, 0, windowBytes, start.position);
    const taken = this.#take(buf, 0, n, { at: start.position, size }, offset, maxBytes, maxOffset);
    return {
      data: buf.subarray(taken.start, taken.end),
      batchCount: taken.batchCount,
      nextOffset: taken.nextOffset,
    };
  }

  /**
   * Walks the batches in `buf[pos, end)`: skips those that end at or before `offset`, then takes
   * whole batches within `maxBytes` (at least one) that end at or before `maxOffset`. A header that
   * is not one, or a batch running past the segment's end, throws CORRUPT_MESSAGE (`#damaged`).
   * `pastMaxOffset` says the batch holding `offset` ends past `maxOffset`, so there is nothing to read.
   */
  #take(
    buf: Buffer,
    pos: number,
    end: number,
    /**
     * The file position of `buf[0]` and the segment's size when the read began: a batch that runs
     * past that size is damage, not the end of the buffer (a truncation since cannot be mistaken).
     */
    file: { at: number; size: number },
    offset: number,
    maxBytes: number,
    maxOffset: number,
  ): { start: number; end: number; batchCount: number; nextOffset: number; pastMaxOffset: boolean } {
    let start = -1;
    let batchCount = 0;
    let nextOffset = offset;
    while (end - pos >= BATCH_HEADER_BYTES) {
      const peeked = peekHeader(buf, pos);
      if (typeof peeked === 'string') throw this.#damaged(file.at + pos, peeked);
      if (file.at + pos + peeked.size > file.size)
        throw this.#damaged(file.at + pos, `batch of ${peeked.size} bytes runs past the end of the segment`);
      const batchNext = peeked.header.baseOffset + peeked.header.lastOffsetDelta + 1;
      if (start < 0 && batchNext <= offset) {
        pos += peeked.size;
        continue;
      }
      if (batchNext > maxOffset) {
        if (start < 0) return { start: 0, end: 0, batchCount: 0, nextOffset: offset, pastMaxOffset: true };
        break;
      }
      if (pos + peeked.size > end) break;
      if (start < 0) start = pos;
      else if (pos + peeked.size - start > maxBytes) break;
      pos += peeked.size;
      batchCount++;
      nextOffset = batchNext;
    }
    return start < 0
      ? { start: 0, end: 0, batchCount: 0, nextOffset: offset, pastMaxOffset: false }
      : { start, end: pos, batchCount, nextOffset, pastMaxOffset: false };
  }

  /** Reads one whole batch at a known location. */
  readBatch(location: BatchLocation): Promise<Buffer> {
    return this.withReader(async () => {
      const buf = Buffer.allocUnsafe(location.size);
      await this.log.read(buf, 0, location.size, location.position);
      return buf;
    });
  }

  /** Cuts the segment before the batch that holds `offset`; returns the new next offset. */
  async truncateTo(offset: number): Promise<number> {
    const cut = await this.#batchHolding(offset);
    if (!cut) return this.nextOffset;
    await this.#writePendingIndexes();
    const keep = this.#indexOffsets.findIndex((o) => o >= cut!.header.baseOffset);
    if (keep >= 0) {
      this.#indexOffsets.length = keep;
      this.#indexPositions.length = keep;
    }
    const keepTime = this.#timeOffsets.findIndex((o) => o >= cut!.header.baseOffset);
    if (keepTime >= 0) {
      this.#timeOffsets.length = keepTime;
      this.#timeTimestamps.length = keepTime;
    }
    await this.log.truncate(cut.position);
    await this.log.sync();
    this.#indexesDirty = true;
    await Promise.all([
      this.indexFile.truncate(this.#indexOffsets.length * INDEX_ENTRY_BYTES),
      this.timeIndexFile.truncate(this.#timeOffsets.length * TIME_INDEX_ENTRY_BYTES),
    ]);
    this.size = cut.position;
    this.nextOffset = cut.header.baseOffset;
    this.#bytesSinceIndex = cut.position - (this.#indexPositions.at(-1) ?? 0);
    // The max timestamp can only be recomputed from what is left.
    this.maxTimestamp = -1;
    await this.locate(this.baseOffset, (location) => {
      if (location.header.maxTimestamp > this.maxTimestamp) this.maxTimestamp = location.header.maxTimestamp;
      return true;
    });
    return this.nextOffset;
  }

  /**
   * Makes every byte written so far durable. The dirty flag is cleared when the fsync starts (a
   * write during it makes the segment dirty again) and set again when it fails: a failed fsync
   * never counts as one that covered the bytes.
   */
  sync(): Promise<void> {
    if (!this.dirty) return this.#lastSync;
    this.dirty = false;
    this.#lastSync = this.log.sync().catch((error: unknown) => {
      this.dirty = true;
      throw error;
    });
    return this.#lastSync;
  }

  /**
   * Makes the log file durable whatever this process wrote to it, and the indexes: after a
   * recovery, the bytes a crashed process left in the page cache, which the recovery scan kept.
   */
  async syncRecovered(): Promise<void> {
    await this.log.sync();
    await this.syncIndexes();
  }

  /** Writes buffered index entries and makes the index files durable (before a clean shutdown or a roll). */
  async syncIndexes(): Promise<void> {
    await this.#writePendingIndexes();
    // Nothing written since the last sync: an idle segment costs no fsync at a timed flush.
    if (!this.#indexesDirty) return;
    this.#indexesDirty = false;
    try {
      await Promise.all([this.indexFile.sync(), this.timeIndexFile.sync()]);
    } catch (error) {
      this.#indexesDirty = true;
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#readers > 0) await new Promise<void>((resolve) => (this.#closeWhenIdle = resolve));
    await Promise.all([this.log.close(), this.indexFile.close(), this.timeIndexFile.close()]);
  }

  /** Closes and removes the segment's files. */
  async delete(): Promise<void> {
    await this.close();
    const paths = Segment.paths(this.dir, this.baseOffset);
    await Promise.all([
      this.fs.unlink(paths.log),
      this.fs.unlink(paths.index),
      this.fs.unlink(paths.timeIndex),
    ]);
  }
}

/** Reads a header whose markers and length look sane, without the CRC (that needs the whole batch). */
function peekHeader(buf: Buffer, off: number): { size: number; header: BatchHeader } | string {
  if (
    buf[off] !== 0x9e ||
    buf[off + 1] !== 0xcf ||
    buf[off + 10] !== 0xce ||
    buf[off + 21] !== 0xce ||
    buf[off + 29] !== 0xce
  ) {
    return `no batch header at this position`;
  }
  try {
    const header = readBatchHeader(buf, off);
    const size = BATCH_LENGTH_PREFIX_BYTES + header.batchLength;
    if (size < BATCH_HEADER_BYTES) return `batch length ${header.batchLength} too small`;
    return { size, header };
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** First index whose value is greater than `value` in an ascending array. */
function upperBound(values: readonly number[], value: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose value is not less than `value` in an ascending array. */
function lowerBound(values: readonly number[], value: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
