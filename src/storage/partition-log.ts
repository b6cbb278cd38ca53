import { assert } from '../common/assert.js';
import type { Clock, TimerHandle } from '../common/clock.js';
import { crc32c } from '../common/crc32c.js';
import { isSluiceError, SluiceError } from '../common/errors.js';
import {
  CORRUPT_BATCHES,
  COUNT_BUCKETS,
  type Counter,
  type Histogram,
  LATENCY_BUCKETS_SECONDS,
  type Metrics,
  noopMetrics,
  SIZE_BUCKETS_BYTES,
} from '../common/metrics.js';
import {
  BATCH_LENGTH_PREFIX_BYTES,
  type BatchHeader,
  type BatchRecord,
  batchCrcProblem,
  decodeRecords,
  encodeBatch,
  nextOffsetOf,
  readBatchHeader,
  setBaseOffset,
  setPartitionLeaderEpoch,
  splitBatches,
} from '../protocol/batch.js';
import { DEFAULT_LOG_CONFIG, type LogConfig } from '../protocol/topic-config.js';
import { type FileSystem, mkdirDurable } from './fs.js';
import { LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET } from './leader-epoch.js';
import { checkSequence, type ProducerEntry, ProducerState, withBatch } from './producer-state.js';
import { type BatchLocation, type EpochStart, Segment, segmentName } from './segment.js';

export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
  logEndOffset: number;
  batchCount: number;
  /** Set when the append was a producer's retry of batches the log holds: nothing was written. */
  duplicate?: boolean;
}

export interface ReadResult {
  /** Whole stored batches back to back, byte-identical to the log; empty at the log end. */
  data: Buffer;
  batchCount: number;
  /** The offset after the last returned batch, or the requested offset when none was returned. */
  nextOffset: number;
  /** Set when the bytes asked for by `reserve` are free around `data` in its own buffer. */
  reserved?: { before: number; after: number };
}

/** Where storage reports failures it does not answer to a caller (a structured logger fits). */
export interface StorageLogger {
  error(fields: Record<string, unknown>, message: string): void;
}

/** Storage never picks the real disk or clock by itself: the composition root passes both. */
export interface ReadOptions {
  /** Byte budget; at least one whole batch is returned whatever it is. */
  maxBytes: number;
  /** No batch that ends past this offset (the high watermark) is returned. */
  maxOffset?: number;
  /** Bytes to leave free before and after the data in its buffer (see `ReadResult.reserved`). */
  reserve?: { before: number; after: number };
  /** Where the read's buffer comes from (`SegmentReadOptions.allocate`). */
  allocate?: (bytes: number) => Buffer;
  /**
   * Check the CRC-32C of every returned batch (`verifiedPrefix`): batches up to the first bad one
   * are returned; a bad first batch throws CORRUPT_MESSAGE. The bytes are still not decoded.
   */
  verify?: boolean;
}

export interface PartitionLogDeps {
  fs: FileSystem;
  clock: Clock;
  /** Told once when a partition goes offline; the reason is also kept in `offlineReason`. */
  logger?: StorageLogger;
  /** Where the logs count fsyncs, append groups, storage errors and damaged batches read. */
  metrics?: Metrics;
}

/**
 * The storage metrics every log of a node shares (node-wide, not per partition: the per-partition
 * series are the broker's). Declaring them again for each log returns the same families.
 */
export interface StorageMeters {
  fsyncSeconds: Histogram;
  groupAppends: Histogram;
  groupBytes: Histogram;
  writeErrors: Counter;
  readErrors: Counter;
  corruptBatches: Counter;
}

export function storageMeters(metrics: Metrics): StorageMeters {
  const errors = metrics.counter({
    name: 'sluice_storage_errors_total',
    help: 'Failed storage operations: a failed write or fsync takes its partition offline, a failed read fails that read',
    labelNames: ['operation'],
  });
  return {
    fsyncSeconds: metrics
      .histogram({
        name: 'sluice_log_fsync_duration_seconds',
        help: 'Time to fsync the segments of one partition log (one group commit)',
        buckets: LATENCY_BUCKETS_SECONDS,
      })
      .labels(),
    groupAppends: metrics
      .histogram({
        name: 'sluice_log_append_group_appends',
        help: 'Appends written together in one write of a partition log (group commit of concurrent produce requests)',
        buckets: COUNT_BUCKETS,
      })
      .labels(),
    groupBytes: metrics
      .histogram({
        name: 'sluice_log_append_group_bytes',
        help: 'Bytes written in one write of a partition log',
        buckets: SIZE_BUCKETS_BYTES,
      })
      .labels(),
    writeErrors: errors.labels('write'),
    readErrors: errors.labels('read'),
    corruptBatches: metrics.counter(CORRUPT_BATCHES).labels('crc'),
  };
}

/** Why an offline partition is not retriable on this node, for the error's details. */
const OFFLINE_WHY =
  'a write or fsync failed, so what the files hold is unknown (the kernel may have dropped unsynced ' +
  'pages and a later fsync would not say so); the partition stays offline on this node until it is ' +
  'reopened from disk (a restart), which recovers by a CRC scan from the last recovery point';

export const CLEAN_SHUTDOWN_FILE = '.clean-shutdown';
/**
 * Append groups up to this size are written on the event loop's thread (`FileHandle.writeSync`),
 * as Kafka's request handlers write: a write into the page cache is a memory copy (64 KiB in about
 * 12 µs on the 2-core machines Sluice is measured on), while the round trip through libuv's thread
 * pool costs 40 µs or more per write there, most of it waking one thread from another. Larger
 * groups, which would hold the event loop for longer, go through the thread pool.
 */
const SYNC_WRITE_BYTES_MAX = 1024 * 1024;
/** A synchronous read or write slower than this waited for the disk, not the page cache. */
const SLOW_SYNC_MS = 2;
/** Slow synchronous operations in a row that turn them off. */
const SLOW_SYNC_IN_A_ROW = 3;
/** How long reads or writes go through the thread pool after slow synchronous ones. */
const SYNC_OFF_MS = 30_000;

/**
 * Watches synchronous reads and writes: one slow operation may be this thread losing its core,
 * several in a row mean the disk itself answers, and then the thread pool takes over for a while.
 */
class SlowSyncGuard {
  #slowInARow = 0;
  #offUntil = 0;
  constructor(private readonly clock: Clock) {}

  /** Whether the next operation may be synchronous. */
  allowed(): boolean {
    return this.clock.monotonicMs() >= this.#offUntil;
  }

  /** Records how long one synchronous operation took. */
  observe(elapsedMs: number): void {
    this.#slowInARow = elapsedMs > SLOW_SYNC_MS ? this.#slowInARow + 1 : 0;
    if (this.#slowInARow < SLOW_SYNC_IN_A_ROW) return;
    this.#slowInARow = 0;
    this.#offUntil = this.clock.monotonicMs() + SYNC_OFF_MS;
  }
}

/** Appends waiting for their write; past it, append refuses with LIMIT_EXCEEDED. */
const APPEND_QUEUE_MAX = 10_000;
/** Largest group of queued appends written at once. */
const APPEND_GROUP_BYTES_MAX = 8 * 1024 * 1024;

export interface AppendOptions {
  /** The leader assigns offsets; a follower's batches carry theirs. */
  assignOffsets: boolean;
  /** Written into every batch when offsets are assigned. */
  leaderEpoch?: number;
  /**
   * Every batch's CRC is known to be right already: encoded in this process a moment ago (a
   * produce of decoded records), or checked by the caller from the same immutable buffer (a
   * client's pre-built batches after `splitProducedBatches`). It is then not computed a second
   * time. Batches the caller has not checked, a leader's for a follower, are always checked here.
   */
  crcChecked?: boolean;
}

export interface PendingAppend {
  data: Buffer;
  batches: { pos: number; size: number; header: BatchHeader }[];
  options: AppendOptions;
  resolve: (result: AppendResult) => void;
  reject: (error: unknown) => void;
}
export const RECOVERY_POINT_FILE = 'recovery-point-checkpoint';
export const HIGH_WATERMARK_FILE = 'high-watermark-checkpoint';
export const LOG_START_FILE = 'log-start-offset-checkpoint';
const LEADER_EPOCH_FILE = 'leader-epoch-checkpoint';
/**
 * The durable intent of `truncateFullyAndStartAt`, in the checkpoint form: the offset the new,
 * empty log starts at. Once it is on disk the old log is gone whatever happens next: an open that
 * finds it finishes the work (`finishTruncateFully`) before it reads any segment.
 */
export const TRUNCATE_FULLY_FILE = 'truncate-fully-intent';

/**
 * The log of one partition: a directory of segments. Appends are serialized and each is one
 * sequential write; `sync` flushing batches the fsyncs of appends that arrive together. Reads do not
 * wait for appends or fsyncs.
 *
 * Invariants, asserted by `#checkInvariants` after every append, truncation and move of the log
 * start (asserts stay on in production): segments are sorted by base offset and contiguous in
 * offsets, each ending where the next begins; the active segment is the last;
 * firstBase <= logStartOffset <= logEndOffset; recoveryPoint <= logEndOffset;
 * logStartOffset <= highWatermarkCheckpoint <= logEndOffset.
 */
export class PartitionLog {
  readonly dir: string;
  #config: LogConfig;
  readonly #fs: FileSystem;
  readonly #clock: Clock;
  #segments: Segment[] = [];
  #logStartOffset = 0;
  #recoveryPoint = 0;
  /** The recovery point the checkpoint file holds as far as this process wrote it (-1: not written yet). */
  #recoveryPointWritten = -1;
  /**
   * Opened after a clean shutdown and not written to since: the clean-shutdown marker is still on
   * disk, and goes (durably) before the first change to the log. A crash before then finds the
   * log as it was closed, so the marker still tells the truth; a broker restart with thousands of
   * idle partitions does not pay a directory fsync per partition.
   */
  #cleanMarker = false;
  /** The last high watermark the caller checkpointed, lowered by truncation, raised to the log start. */
  #highWatermark = 0;
  /** Retention and compaction stay below what it returns (`setRetentionLimit`); none when unset. */
  #retentionLimit: (() => number) | undefined;
  #writeChain: Promise<unknown> = Promise.resolve();
  #checkpoints: Promise<void> = Promise.resolve();
  #appendQueue: PendingAppend[] = [];
  #appendScheduled = false;
  #syncWaiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  #syncing = false;
  /**
   * The offset of the newest producer snapshot on disk within the log, the one an open would
   * start from (undefined: none, an open replays from the first segment). Only a cost: the state
   * rebuilt is the same from any snapshot or from none.
   */
  #snapshotAt: number | undefined;
  /** Counts truncations, so that an fsync that raced one does not move the recovery point. */
  #truncations = 0;
  #listeners = new Set<(logEndOffset: number) => void>();
  #flushTimer: TimerHandle | undefined;
  readonly #syncReads: SlowSyncGuard;
  readonly #syncWrites: SlowSyncGuard;
  #closed = false;
  /** Set by the first failed write or fsync; the log refuses everything after it (fail-stop). */
  #offline: { reason: string; error: unknown } | undefined;
  readonly #logger: StorageLogger | undefined;
  readonly #meters: StorageMeters;
  readonly leaderEpochs: LeaderEpochCache;
  /** Each idempotent producer's last batches, rebuilt from the log (from a snapshot on) at open. */
  readonly producers = new ProducerState();
  /** What recovery found at open: undefined when the log was shut down cleanly. */
  readonly recoveryReport:
    | {
        segmentsScanned: number;
        /** Bytes of log the recovery scan read and checked: from the recovery point's indexed batch on. */
        scannedBytes: number;
        truncatedBytes: number;
        problem: string | undefined;
      }
    | undefined;

  private constructor(
    dir: string,
    config: LogConfig,
    deps: PartitionLogDeps,
    leaderEpochs: LeaderEpochCache,
    recoveryReport: PartitionLog['recoveryReport'],
  ) {
    this.dir = dir;
    this.#config = config;
    this.#fs = deps.fs;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    this.#meters = storageMeters(deps.metrics ?? noopMetrics);
    this.#syncReads = new SlowSyncGuard(deps.clock);
    this.#syncWrites = new SlowSyncGuard(deps.clock);
    this.leaderEpochs = leaderEpochs;
    leaderEpochs.attachLog(
      () => this.logEndOffset,
      (error) => this.#goOffline('the leader-epoch checkpoint write failed', error),
    );
    this.recoveryReport = recoveryReport;
  }

  /**
   * Opens the log in `dir`, creating it when missing. After a crash (no clean-shutdown marker) the
   * segments from the one holding the recovery point on are checked batch by batch and cut at the
   * first bad batch (`recoverSegments`), and the leader-epoch cache is rebuilt from the batches
   * scanned: its checkpoint is written after an append and may not have landed.
   */
  static async open(
    options: {
      dir: string;
      config?: Partial<LogConfig>;
      /** The directory was just listed in its parent (a start-up): it is not made. */
      exists?: boolean;
    },
    deps: PartitionLogDeps,
  ): Promise<PartitionLog> {
    const { fs, clock } = deps;
    const config = { ...DEFAULT_LOG_CONFIG, ...options.config };
    const dir = options.dir;
    if (options.exists !== true) await mkdirDurable(fs, dir);
    let names = await fs.readdir(dir);
    for (const name of names) {
      if (name.endsWith('.tmp') || name.endsWith('.cleaned')) await fs.unlink(`${dir}/${name}`);
    }
    if (names.includes(TRUNCATE_FULLY_FILE)) {
      const startAt = await readIntent(fs, `${dir}/${TRUNCATE_FULLY_FILE}`);
      await finishTruncateFully(fs, dir, startAt, {
        writeCheckpoint: (name, value) => writeCheckpointFile(fs, `${dir}/${name}`, value),
        clearLeaderEpochs: async () => {
          const cache = await LeaderEpochCache.load(`${dir}/${LEADER_EPOCH_FILE}`, fs);
          cache.clear();
          await cache.flush();
        },
      });
      names = await fs.readdir(dir);
    }
    const clean = names.includes(CLEAN_SHUTDOWN_FILE);
    const recoveryPoint = clean
      ? Number.POSITIVE_INFINITY
      : await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`);
    const leaderEpochs = await LeaderEpochCache.load(`${dir}/${LEADER_EPOCH_FILE}`, fs);
    const recovered = await recoverSegments(dir, names, { clean, recoveryPoint, config }, deps);
    const { segments, report } = recovered;
    const storedStart = await readCheckpoint(fs, `${dir}/${LOG_START_FILE}`);
    const first = segments[0];
    if (first && storedStart < first.baseOffset) {
      for (const segment of segments) await segment.close();
      throw missingOffsets(dir, storedStart, first.baseOffset, [
        `the log starts at ${storedStart} (${LOG_START_FILE})`,
        `the oldest segment ${segmentName(first.baseOffset)}.log begins at ${first.baseOffset}`,
      ]);
    }
    const log = new PartitionLog(dir, config, deps, leaderEpochs, report);
    if (segments.length === 0)
      segments.push(await Segment.create(dir, Math.max(0, storedStart), fs, clock.nowMs()));
    log.#segments = segments;
    log.#logStartOffset = Math.max(segments[0]!.baseOffset, storedStart, 0);
    if (log.#logStartOffset > log.logEndOffset) log.#logStartOffset = log.logEndOffset;
    log.#recoveryPoint = log.logEndOffset;
    // What recovery kept may end below the checkpoint (unflushed batches lost); records below the
    // log start are gone, so nothing below it is waited for either.
    const storedHighWatermark = await readCheckpoint(fs, `${dir}/${HIGH_WATERMARK_FILE}`);
    log.#highWatermark = Math.min(Math.max(storedHighWatermark, log.#logStartOffset), log.logEndOffset);
    log.#checkInvariants();
    // A checkpoint past the recovered end is lowered on disk before anything is appended: the
    // offsets past the end will hold new records, which it would otherwise claim were committed.
    if (storedHighWatermark > log.#highWatermark)
      await log.#writeCheckpoint(HIGH_WATERMARK_FILE, log.#highWatermark);
    leaderEpochs.truncateFromEnd(log.logEndOffset);
    const scannedFrom = recovered.scannedFrom;
    if (
      scannedFrom !== undefined &&
      !sameEpochStarts(leaderEpochs.entries(), scannedFrom, recovered.epochStarts)
    ) {
      // Epochs below the scan are in the checkpoint (a flush lands it before the recovery point
      // moves); those at and after it come from the batches themselves. When the checkpoint holds
      // them already, nothing is rewritten: an open after a crash of 10,000 idle partitions
      // would otherwise write 20,000 checkpoints that say what they said.
      leaderEpochs.truncateFromEnd(scannedFrom);
      for (const start of recovered.epochStarts) leaderEpochs.assign(start.epoch, start.startOffset);
    }
    leaderEpochs.truncateFromStart(log.#logStartOffset);
    await log.#rebuildProducers(names);
    // A crash after a change must be detected: the marker goes before the first one
    // (`#serialize`), not here.
    log.#cleanMarker = clean;
    // The rebuilt epochs land before the recovery point moves past the batches they came from.
    await leaderEpochs.flush();
    // After a clean shutdown the checkpoint on disk already says the log end (close wrote it);
    // after a crash it does when every append had been flushed.
    const storedRecoveryPoint = clean
      ? await readCheckpoint(fs, `${dir}/${RECOVERY_POINT_FILE}`)
      : recoveryPoint;
    if (storedRecoveryPoint === log.#recoveryPoint) log.#recoveryPointWritten = storedRecoveryPoint;
    else {
      // What recovery kept past the stored point may be a crashed process's unsynced writes,
      // still in the page cache (kill -9 loses none of them, a power loss may): they, and the
      // index entries rebuilt over them, are made durable before the checkpoint says they are.
      for (const segment of segments)
        if (segment.nextOffset > storedRecoveryPoint) await segment.syncRecovered();
      await log.#writeCheckpoint(RECOVERY_POINT_FILE, log.#recoveryPoint);
    }
    log.#scheduleFlush();
    return log;
  }

  get config(): LogConfig {
    return this.#config;
  }

  updateConfig(config: Partial<LogConfig>): void {
    const flushChanged = config.flushMs !== undefined && config.flushMs !== this.#config.flushMs;
    this.#config = { ...this.#config, ...config };
    if (flushChanged) this.#scheduleFlush();
  }

  /** Why the log went offline after a storage failure; undefined while it is healthy. */
  get offlineReason(): string | undefined {
    return this.#offline?.reason;
  }

  get logStartOffset(): number {
    return this.#logStartOffset;
  }

  get logEndOffset(): number {
    return this.#active().nextOffset;
  }

  /** Offsets below this are known to be on disk. */
  get recoveryPoint(): number {
    return this.#recoveryPoint;
  }

  /**
   * The high watermark last written by `checkpointHighWatermark`, as read at open (0 when the file
   * is absent), kept within [logStartOffset, logEndOffset]: lowered by a truncation below it
   * (`truncateTo`, `truncateFullyAndStartAt`), raised when the log start passes it.
   */
  get highWatermarkCheckpoint(): number {
    return this.#highWatermark;
  }

  /**
   * Writes `highWatermark` to `high-watermark-checkpoint` atomically (file, fsync, rename, directory
   * fsync) and resolves once it is durable. Never written by appends: the replication layer writes
   * it when it chooses (periodically and at close). Monotonic: a value below the current one is
   * ignored, since the records below the higher one were committed and still are (a follower can
   * learn a lower high watermark from a new leader that has not caught up); only a truncation
   * lowers it. A value past the log end is refused (OFFSET_OUT_OF_RANGE): the high watermark is
   * never above the log end offset. A failed write takes the log offline (`#serialize`).
   */
  checkpointHighWatermark(highWatermark: number): Promise<void> {
    this.#checkOpen();
    if (!Number.isSafeInteger(highWatermark) || highWatermark < 0) {
      return Promise.reject(
        new SluiceError('INVALID_REQUEST', `high watermark ${highWatermark} is not an offset`),
      );
    }
    // Serialized with appends and truncations, so that the log end it is checked against is the
    // one it lands beside: a truncation queued before it has lowered both already.
    return this.#serialize(async () => {
      if (highWatermark > this.logEndOffset) {
        throw new SluiceError(
          'OFFSET_OUT_OF_RANGE',
          `high watermark ${highWatermark} is beyond the log end ${this.logEndOffset}`,
          { details: { logStartOffset: this.#logStartOffset, logEndOffset: this.logEndOffset } },
        );
      }
      if (highWatermark <= this.#highWatermark) return;
      this.#highWatermark = highWatermark;
      await this.#writeCheckpoint(HIGH_WATERMARK_FILE, highWatermark);
    });
  }

  /** The latest leader epoch of the log's batches; undefined when none carries one. */
  get latestEpoch(): number | undefined {
    return this.leaderEpochs.latestEpoch();
  }

  /**
   * Where the log's leader epoch `epoch` ends, as Kafka's OffsetsForLeaderEpoch answers (KIP-101,
   * with KIP-279's rule that the answer names the largest epoch not above the one asked for), and
   * as Kafka's `LeaderEpochFileCache.endOffsetFor` computes it:
   * - `epoch` at or above the latest epoch: (latest epoch, log end offset). Kafka answers
   *   UNDEFINED above the latest, a case it never reaches because a new leader records its epoch
   *   at once; Sluice's rule holds as well when it has not yet (the log's records end there).
   * - between known epochs: (largest epoch <= `epoch`, start offset of the next epoch).
   * - below the first known epoch: (`epoch`, start offset of the first known epoch): the log's
   *   older epochs were deleted with their records, and a follower must not keep anything past
   *   where what is left begins (Kafka since KIP-279; before it, UNDEFINED).
   * - no epoch known (an empty cache, after `truncateFullyAndStartAt` too), or `epoch` negative
   *   (UNDEFINED_EPOCH): (-1, -1).
   */
  endOffsetForEpoch(epoch: number): { epoch: number; endOffset: number } {
    this.#checkOpen();
    if (!Number.isSafeInteger(epoch) || epoch < 0)
      return { epoch: UNDEFINED_EPOCH, endOffset: UNDEFINED_EPOCH_OFFSET };
    const found = this.leaderEpochs.endOffsetFor(epoch, this.logEndOffset);
    if (found) return found;
    const first = this.leaderEpochs.entries()[0];
    if (first === undefined) return { epoch: UNDEFINED_EPOCH, endOffset: UNDEFINED_EPOCH_OFFSET };
    return { epoch, endOffset: first.startOffset };
  }

  /** Total bytes of all segments. */
  get sizeBytes(): number {
    return this.#segments.reduce((sum, s) => sum + s.size, 0);
  }

  get segmentCount(): number {
    return this.#segments.length;
  }

  segmentBaseOffsets(): number[] {
    return this.#segments.map((s) => s.baseOffset);
  }

  /** Called after every append and truncation with the new log end offset; returns an unsubscribe. */
  onAppend(listener: (logEndOffset: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Appends one or more whole batches. All are checked before any becomes part of the log; one bad
   * batch rejects the call and nothing of it is appended (see #drainAppends for where the CRCs are
   * checked). The leader (`assignOffsets`) gets offsets assigned in place; a follower's batches
   * must continue the log exactly.
   */
  append(data: Buffer, options: AppendOptions): Promise<AppendResult> {
    // Not an async function: an append is one write's worth of work, and the extra promise turns
    // of an async wrapper are a measurable part of it.
    let batches: PendingAppend['batches'];
    try {
      this.#checkOpen();
      // The CRCs are checked in #writeGroup while the write is in flight.
      batches = splitBatches(data, this.#config.batchBytesMax, false);
      if (batches.length === 0)
        throw new SluiceError('INVALID_REQUEST', 'an append holds at least one batch');
      if (this.#appendQueue.length >= APPEND_QUEUE_MAX) {
        throw new SluiceError(
          'LIMIT_EXCEEDED',
          `more than ${APPEND_QUEUE_MAX} appends are waiting on ${this.dir}`,
        );
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const appended = new Promise<AppendResult>((resolve, reject) => {
      this.#appendQueue.push({ data, batches, options, resolve, reject });
      this.#scheduleDrain();
    });
    if (this.#config.flushPolicy !== 'sync') return appended;
    return appended.then((result) => this.#requestSync().then(() => result));
  }

  /**
   * Writes the next group of queued appends in one write: appends that arrive while a write is in
   * flight share the next one, so a partition under many small produce requests does one syscall
   * per group, not per request. Offsets are assigned in queue order (`planGroup`).
   */
  async #drainAppends(): Promise<void> {
    this.#appendScheduled = false;
    const unavailable = this.#unavailable();
    if (unavailable) {
      for (const pending of this.#appendQueue.splice(0)) pending.reject(unavailable);
      return;
    }
    const plan = planGroup(this.#appendQueue, this.logEndOffset, APPEND_GROUP_BYTES_MAX, this.producers);
    this.#appendQueue.splice(0, plan.taken);
    if (this.#appendQueue.length > 0) this.#scheduleDrain();
    for (const { pending, error } of plan.rejected) pending.reject(error);
    if (plan.accepted.length > 0) await this.#writeGroup(plan.accepted);
    // A retry of batches already in the log is answered after the group, in queue order.
    for (const { pending, result } of plan.duplicates) {
      const unavailable = this.#unavailable();
      if (unavailable) pending.reject(unavailable);
      else pending.resolve({ ...result, logEndOffset: this.logEndOffset });
    }
  }

  /** Queues one drain of the append queue behind the work already serialized, unless one is queued. */
  #scheduleDrain(): void {
    if (this.#appendScheduled) return;
    this.#appendScheduled = true;
    void this.#serialize(() => this.#drainAppends());
  }

  /**
   * Stamps the planned offsets into the accepted appends and writes them at the end of the log.
   * The batches' CRCs are checked before a synchronous write, or while a write through the thread
   * pool is in flight; a group with a corrupt batch is cut off again before the log end moves
   * (see `Segment.append`), its corrupt appends fail and the others are queued again.
   */
  async #writeGroup(accepted: readonly PlannedAppend[]): Promise<void> {
    for (const planned of accepted) stampOffsets(planned);
    const corrupt = new Map<PendingAppend, string>();
    const verify = () => findCorrupt(accepted, corrupt);
    try {
      const buffers = accepted.map((a) => a.pending.data);
      const data = buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers);
      if (this.#mustRoll(data.length)) {
        await this.#roll();
        if (this.#config.retentionBytes >= 0) await this.#applyRetention({ bytes: true, time: false });
      }
      this.#meters.groupAppends.observe(accepted.length);
      this.#meters.groupBytes.observe(data.length);
      const locations = groupLocations(accepted);
      // Written on this thread unless it is large, or such writes were slow of late (the kernel
      // throttling writers that dirty pages faster than the disk takes them).
      const sync = data.length <= SYNC_WRITE_BYTES_MAX && this.#syncWrites.allowed();
      const started = sync ? this.#clock.monotonicMs() : 0;
      const appending = this.#active().append(data, locations, this.#config.indexIntervalBytes, {
        verify,
        sync,
      });
      if (sync) this.#syncWrites.observe(this.#clock.monotonicMs() - started);
      if (!(await appending)) {
        this.#requeueAfterCorrupt(accepted, corrupt);
        return;
      }
      for (const location of locations) {
        if (location.header.partitionLeaderEpoch >= 0)
          this.leaderEpochs.assign(location.header.partitionLeaderEpoch, location.header.baseOffset);
        this.producers.apply(location.header);
      }
      this.#checkInvariants();
    } catch (error) {
      // Whatever broke, the bytes on disk may now differ from what the log believes: fail-stop.
      this.#goOffline(`an append's write failed: ${messageOf(error)}`, error);
      for (const { pending } of accepted) pending.reject(this.#unavailable());
      return;
    }
    this.#notify();
    for (const { pending, result } of accepted) pending.resolve(result);
  }

  /**
   * Nothing of a group with a corrupt batch was appended: the corrupt appends fail, the others go
   * back to the front of the queue and get their offsets again.
   */
  #requeueAfterCorrupt(
    accepted: readonly PlannedAppend[],
    corrupt: ReadonlyMap<PendingAppend, string>,
  ): void {
    for (const [pending, problem] of corrupt) pending.reject(new SluiceError('CORRUPT_MESSAGE', problem));
    const retry = accepted.map((a) => a.pending).filter((pending) => !corrupt.has(pending));
    if (retry.length === 0) return;
    this.#appendQueue.unshift(...retry);
    this.#scheduleDrain();
  }

  /**
   * Whole batches from the one holding `offset`. Reads of the active segment, which holds the
   * newest bytes and where consumers that keep up read, are synchronous: those bytes were written
   * recently and the page cache holds them, and a copy on this thread costs a fraction of a trip
   * through the thread pool. Should such reads take long several times in a row (the page cache
   * no longer holds the bytes), the log reads through the thread pool for `SYNC_OFF_MS`.
   */
  async read(offset: number, options: ReadOptions): Promise<ReadResult> {
    this.#checkOpen();
    const logEnd = this.logEndOffset;
    if (!Number.isSafeInteger(offset) || offset < this.#logStartOffset || offset > logEnd) {
      throw new SluiceError(
        'OFFSET_OUT_OF_RANGE',
        `offset ${offset} is outside [${this.#logStartOffset}, ${logEnd}]`,
        {
          details: { logStartOffset: this.#logStartOffset, logEndOffset: logEnd },
        },
      );
    }
    const maxOffset = Math.min(options.maxOffset ?? logEnd, logEnd);
    if (offset >= maxOffset) return { data: Buffer.alloc(0), batchCount: 0, nextOffset: offset };
    try {
      const result = await this.#readSegments(offset, maxOffset, options);
      return options.verify ? this.#verified(result) : result;
    } catch (error) {
      // Damage (CORRUPT_MESSAGE) passes as it is; an I/O error says only that this read failed.
      if (error instanceof SluiceError) throw error;
      this.#meters.readErrors.inc();
      throw new SluiceError('KAFKA_STORAGE_ERROR', `a read of ${this.dir} at offset ${offset} failed`, {
        cause: error,
      });
    }
  }

  /** `verifiedPrefix`, counting a read that met a damaged batch (cut before it, or refused). */
  #verified(result: ReadResult): ReadResult {
    let verified: ReadResult;
    try {
      verified = verifiedPrefix(result);
    } catch (error) {
      this.#meters.corruptBatches.inc();
      throw error;
    }
    if (verified !== result) this.#meters.corruptBatches.inc();
    return verified;
  }

  async #readSegments(
    offset: number,
    maxOffset: number,
    options: Pick<ReadOptions, 'maxBytes' | 'reserve' | 'allocate'>,
  ): Promise<ReadResult> {
    const requested = offset;
    let i = this.#segmentIndexFor(offset);
    // An offset can fall in a gap left by compaction, or at the very end of a segment.
    while (i < this.#segments.length) {
      const segment = this.#segments[i]!;
      if (offset < segment.nextOffset) {
        const sync = i === this.#segments.length - 1 && this.#syncReads.allowed();
        const started = sync ? this.#clock.monotonicMs() : 0;
        // A synchronous read happens within this call, before the promise is returned.
        const reading = segment.read(offset, Math.max(1, options.maxBytes), maxOffset, {
          ...(options.reserve ? { reserve: options.reserve } : {}),
          ...(options.allocate ? { allocate: options.allocate } : {}),
          sync,
        });
        if (sync) this.#syncReads.observe(this.#clock.monotonicMs() - started);
        const result = await reading;
        if (result.batchCount > 0 || i === this.#segments.length - 1) return result;
        // Nothing returned because `maxOffset` (the high watermark) cuts the batch at the offset:
        // no later segment can be read either, and the reader must come back to this offset.
        if (maxOffset < segment.nextOffset) return { ...result, nextOffset: requested };
      }
      i++;
      const following = this.#segments[i];
      if (following && following.baseOffset > offset) offset = following.baseOffset;
    }
    return { data: Buffer.alloc(0), batchCount: 0, nextOffset: offset };
  }

  /** Decoded records from `offset` on, for slow paths (JSON, compaction, tests). */
  async readRecords(
    offset: number,
    options: { maxBytes: number; maxOffset?: number },
  ): Promise<{ records: BatchRecord[]; nextOffset: number }> {
    const result = await this.read(offset, options);
    const records: BatchRecord[] = [];
    let pos = 0;
    while (pos < result.data.length) {
      const header = readBatchHeader(result.data, pos);
      for (const record of decodeRecords(result.data, pos)) if (record.offset >= offset) records.push(record);
      pos += 15 + header.batchLength;
    }
    return { records, nextOffset: result.nextOffset };
  }

  /** The first offset whose record timestamp is at or after `timestampMs`, or null. */
  async offsetForTimestamp(timestampMs: number): Promise<number | null> {
    this.#checkOpen();
    for (const segment of this.#segments) {
      if (segment.maxTimestamp < timestampMs || segment.nextOffset <= this.#logStartOffset) continue;
      const from = Math.max(segment.lookupTimestamp(timestampMs), this.#logStartOffset);
      // One reader over both steps: compaction may swap the segment out between them.
      const found = await segment.withReader(() => firstOffsetAtTime(segment, from, timestampMs));
      if (found !== null) return found;
    }
    return null;
  }

  /**
   * Removes every record at and after `offset` (rounded down to the start of its batch). Ordered so
   * that a power loss at any step leaves a contiguous prefix of the log, and none after it returns
   * truncated records: the recovery point moves down first (what is left past it is scanned, not
   * trusted), then segments go newest first, each deletion made durable by a directory sync before
   * the next, then the segment holding the cut is truncated and fsynced.
   */
  truncateTo(offset: number): Promise<void> {
    this.#checkOpen();
    return this.#serialize(async () => {
      if (offset >= this.logEndOffset) return;
      this.#truncations++;
      // Lowered durably before any record goes: offsets at and past the cut will hold records
      // nobody has committed, and a checkpoint that still covered them would say they were.
      await this.#lowerHighWatermark(offset);
      if (this.#recoveryPoint > offset) {
        this.#recoveryPoint = offset;
        await this.#writeCheckpoint(RECOVERY_POINT_FILE, this.#recoveryPoint);
      }
      if (offset > this.#logStartOffset) {
        while (this.#segments.length > 1 && this.#active().baseOffset >= offset) await this.#deleteNewest();
        await this.#active().truncateTo(offset);
      }
      // Truncation rounds down to a batch start; when that batch began below the log start (or the
      // offset itself is there), the log is emptied and restarts at the log start, never below it.
      if (offset <= this.#logStartOffset || this.logEndOffset <= this.#logStartOffset) {
        while (this.#segments.length > 1) await this.#deleteNewest();
        await this.#segments[0]!.delete();
        await this.#fs.syncDir(this.dir);
        this.#segments = [
          await Segment.create(this.dir, this.#logStartOffset, this.#fs, this.#clock.nowMs()),
        ];
      }
      this.#recoveryPoint = Math.min(this.#recoveryPoint, this.logEndOffset);
      await this.#writeCheckpoint(RECOVERY_POINT_FILE, this.#recoveryPoint);
      // The cut rounds down to a batch start, or the log restarts at its start.
      const highWatermark = Math.max(Math.min(this.#highWatermark, this.logEndOffset), this.#logStartOffset);
      if (highWatermark !== this.#highWatermark) {
        this.#highWatermark = highWatermark;
        await this.#writeCheckpoint(HIGH_WATERMARK_FILE, highWatermark);
      }
      this.leaderEpochs.truncateFromEnd(this.logEndOffset);
      await this.leaderEpochs.flush();
      await this.#rebuildProducers(await this.#fs.readdir(this.dir));
      this.#checkInvariants();
      this.#notify();
    });
  }

  /**
   * Deletes every segment and starts an empty log at `offset`: its log start and log end offsets
   * are both `offset`, and a follower's next append must begin there. For a follower whose leader's
   * log starts past this log's end, or whose log has nothing in common with its leader's. Every
   * leader epoch is forgotten (none covers an offset of the new log).
   *
   * A power loss at any step reopens as the old log or as the new empty one, never a mix: the
   * intent (`TRUNCATE_FULLY_FILE`) is written durably first and is the point of no return. Before
   * it, nothing of the old log has changed; after it, the old segments are deleted (a directory
   * sync), the new segment is created, the log-start, recovery-point, high-watermark and
   * leader-epoch checkpoints name the new log, and the intent is deleted last. An open that finds the intent finishes
   * those steps itself. (Creating the new segment before deleting the old ones cannot work in
   * general: `offset` may name an old segment's file, or lie inside or below the old log.)
   */
  truncateFullyAndStartAt(offset: number): Promise<void> {
    this.#checkOpen();
    if (!Number.isSafeInteger(offset) || offset < 0)
      return Promise.reject(new SluiceError('INVALID_REQUEST', `offset ${offset} is not a valid offset`));
    return this.#serialize(async () => {
      this.#truncations++;
      // Lowering the recovery point is always safe; a flush meanwhile writes no offset of the old log.
      this.#recoveryPoint = Math.min(this.#recoveryPoint, offset);
      // Lowered before the point of no return: should the old log survive a crash, its records
      // past `offset` were not all committed for this log any more.
      await this.#lowerHighWatermark(offset);
      await this.#writeCheckpoint(TRUNCATE_FULLY_FILE, offset);
      await finishTruncateFully(this.#fs, this.dir, offset, {
        writeCheckpoint: (name, value) => this.#writeCheckpoint(name, value),
        clearLeaderEpochs: () => {
          this.leaderEpochs.clear();
          return this.leaderEpochs.flush();
        },
        // The old files are unlinked, not yet closed: reads and a timer's flush in flight still
        // use their descriptors, and the log never has a closed active segment.
        afterOldDeleted: async () => {
          const old = this.#segments;
          this.#segments = [await Segment.create(this.dir, offset, this.#fs, this.#clock.nowMs())];
          this.#logStartOffset = offset;
          this.#recoveryPoint = offset;
          this.#highWatermark = offset;
          // No batch of the old log is left, nor any producer state (its snapshots went with it).
          this.producers.clear();
          this.#snapshotAt = undefined;
          // Waits for the reads already in them (`Segment.close`).
          for (const segment of old) await segment.close();
        },
      });
      this.#checkInvariants();
      this.#notify();
    });
  }

  /** Lowers the high-watermark checkpoint to `offset` durably, when it is above it. */
  async #lowerHighWatermark(offset: number): Promise<void> {
    if (this.#highWatermark <= offset) return;
    this.#highWatermark = offset;
    await this.#writeCheckpoint(HIGH_WATERMARK_FILE, offset);
  }

  /** Deletes the newest segment durably (its files, then a directory sync). */
  async #deleteNewest(): Promise<void> {
    assert(this.#segments.length > 1, 'the last segment is never deleted alone');
    await this.#segments.pop()!.delete();
    await this.#fs.syncDir(this.dir);
  }

  /**
   * Sets the offset that retention and compaction never reach: no record at or above what `limit`
   * returns is deleted or cleaned, and `deleteRecordsBefore` refuses an offset above it. The
   * replication layer passes the high watermark, so that a record no replica may yet have is
   * never deleted, and a record past it (which may still be truncated away) never makes an older
   * one of its key go. Asked at every retention pass, compaction and deletion; undefined removes
   * the limit (the default: everything may go). A value that is not a number counts as 0.
   */
  setRetentionLimit(limit: (() => number) | undefined): void {
    this.#retentionLimit = limit;
  }

  /** Where retention must stop now: +Infinity without a limit. */
  #retentionLimitOffset(): number {
    if (this.#retentionLimit === undefined) return Number.POSITIVE_INFINITY;
    const limit = this.#retentionLimit();
    return Number.isNaN(limit) || typeof limit !== 'number' ? 0 : Math.max(0, limit);
  }

  /** Advances the log start offset; whole segments below it are deleted, never the active one. */
  deleteRecordsBefore(offset: number): Promise<void> {
    this.#checkOpen();
    return this.#serialize(async () => {
      if (offset > this.logEndOffset) {
        throw new SluiceError(
          'OFFSET_OUT_OF_RANGE',
          `offset ${offset} is beyond the log end ${this.logEndOffset}`,
        );
      }
      const limit = this.#retentionLimitOffset();
      if (offset > limit) {
        throw new SluiceError(
          'OFFSET_OUT_OF_RANGE',
          `offset ${offset} is beyond the retention limit ${limit}`,
          { details: { retentionLimit: limit, logEndOffset: this.logEndOffset } },
        );
      }
      await this.#advanceStart(offset);
    });
  }

  /**
   * Applies retention.ms and retention.bytes by deleting whole old segments. The log manager calls
   * it on its timer; retention.bytes is also applied at every roll (`#writeGroup`), so that a
   * partition written faster than the timer comes does not grow past it by more than a segment.
   */
  enforceRetention(): Promise<{ segmentsDeleted: number }> {
    this.#checkOpen();
    return this.#serialize(async () => {
      this.producers.expire(this.#clock.nowMs(), this.#config.producerIdExpirationMs);
      return this.#applyRetention({ bytes: true, time: true });
    });
  }

  /**
   * Deletes the oldest closed segments that retention (by size, by time, or both) lets go, and
   * none whose last offset is at or past the retention limit (`setRetentionLimit`).
   */
  async #applyRetention(by: { bytes: boolean; time: boolean }): Promise<{ segmentsDeleted: number }> {
    if (this.#config.cleanupPolicy === 'compact') return { segmentsDeleted: 0 };
    const { retentionMs, retentionBytes } = this.#config;
    const now = this.#clock.nowMs();
    let total = this.sizeBytes;
    let deleteBefore = this.#logStartOffset;
    let count = 0;
    const limit = this.#retentionLimitOffset();
    for (const segment of this.#segments.slice(0, -1)) {
      // Its last offset is below the limit, or it stays (and every later one with it).
      if (segment.nextOffset > limit) break;
      const expired =
        by.time && retentionMs >= 0 && segment.maxTimestamp >= 0 && segment.maxTimestamp < now - retentionMs;
      const oversized = by.bytes && retentionBytes >= 0 && total - segment.size >= retentionBytes;
      if (!expired && !oversized) break;
      total -= segment.size;
      deleteBefore = segment.nextOffset;
      count++;
    }
    if (count > 0) await this.#advanceStart(deleteBefore);
    return { segmentsDeleted: count };
  }

  /**
   * Keeps the latest record of every key in the closed segments (offsets unchanged), and drops
   * tombstones whose segment is older than delete.retention.ms. The active segment is never touched;
   * keys written there still supersede older records. The last batch of a segment always keeps at
   * least its last record, so that the segment still ends where the next one begins after a reopen
   * (its end is read from its last batch): a missing segment file is then told apart from a gap
   * left by compaction. Nothing at or past the retention limit (`setRetentionLimit`) is cleaned
   * or counts as a newer record of its key.
   */
  compact(): Promise<{ segmentsCleaned: number; recordsRemoved: number }> {
    this.#checkOpen();
    return this.#serialize(async () => {
      if (!this.#config.cleanupPolicy.includes('compact') || this.#segments.length < 2)
        return { segmentsCleaned: 0, recordsRemoved: 0 };
      // Records at or past the limit neither are cleaned nor supersede older ones: they may
      // still be truncated away, and the older record would then be the latest.
      const limit = this.#retentionLimitOffset();
      const latest = new Map<string, number>();
      for (const segment of this.#segments) {
        if (segment.baseOffset >= limit) break;
        await this.#forEachBatch(segment, (batch) => {
          for (const record of decodeRecords(batch))
            if (record.key !== null && record.offset < limit) latest.set(keyOf(record.key), record.offset);
        });
      }
      const horizon = this.#clock.nowMs() - this.#config.deleteRetentionMs;
      let recordsRemoved = 0;
      let segmentsCleaned = 0;
      for (let i = 0; i < this.#segments.length - 1; i++) {
        const segment = this.#segments[i]!;
        if (segment.nextOffset > limit) break;
        const dropTombstones = segment.maxTimestamp < horizon;
        const keeps = (r: BatchRecord) =>
          r.key === null || (latest.get(keyOf(r.key)) === r.offset && !(r.value === null && dropTombstones));
        const kept: Buffer[] = [];
        let removedHere = 0;
        await this.#forEachBatch(segment, (batch) => {
          const header = readBatchHeader(batch);
          // A segment keeps its end offset; a producer's newest batch keeps its sequence numbers,
          // so that its state survives a rebuild from the log.
          const last = nextOffsetOf(header) === segment.nextOffset || this.#isNewestOfProducer(header);
          const cleaned = compactBatch(batch, keeps, last);
          removedHere += cleaned.removed;
          if (cleaned.batch) kept.push(cleaned.batch);
        });
        if (removedHere === 0) continue;
        recordsRemoved += removedHere;
        segmentsCleaned++;
        const replaced = await this.#replaceSegment(segment, kept);
        // Reads that start from here on find the new segment; the old one closes after the
        // reads already in it (`Segment.close` waits for its readers).
        this.#segments[i] = replaced;
        await segment.close();
      }
      this.#checkInvariants();
      return { segmentsCleaned, recordsRemoved };
    });
  }

  /**
   * Makes every append so far durable and records the recovery point. The leader-epoch checkpoint
   * lands first, so that every epoch below the recovery point is in it (recovery rebuilds the rest
   * from the batches it scans).
   */
  async flush(): Promise<void> {
    this.#checkOpen();
    await this.#requestSync();
    try {
      await this.#active().syncIndexes();
      await this.leaderEpochs.flush();
      // An idle log has nothing new to record: a timed flush of thousands of idle partitions
      // must not cost a checkpoint write (an fsync, a rename, a directory fsync) each per second.
      if (this.#recoveryPoint !== this.#recoveryPointWritten)
        await this.#writeCheckpoint(RECOVERY_POINT_FILE, this.#recoveryPoint);
    } catch (error) {
      this.#goOffline(`flush failed: ${messageOf(error)}`, error);
      throw this.#unavailable() ?? error;
    }
  }

  /**
   * Flushes everything, writes the clean-shutdown marker and closes the files. An offline log only
   * closes its files: without the marker, the next open recovers from the last recovery point.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    // No timer-driven flush may start once closing has begun.
    this.#flushTimer?.cancel();
    this.#flushTimer = undefined;
    await this.#writeChain;
    if (this.#offline) {
      this.#closed = true;
      this.#listeners.clear();
      for (const segment of this.#segments) await segment.close();
      return;
    }
    if (this.#cleanMarker) {
      // Not changed since a clean open: the files are as that shutdown left them, marker included.
      this.#closed = true;
      await this.leaderEpochs.flush();
      await this.#checkpoints;
      for (const segment of this.#segments) await segment.close();
      this.#listeners.clear();
      return;
    }
    await this.#requestSync();
    this.#closed = true;
    // The segments and their indexes are durable before anything below names them: a clean open
    // trusts the indexes it finds (`Segment.open` checks only that they fit the log).
    for (const segment of this.#segments) await segment.syncIndexes();
    await this.leaderEpochs.flush();
    // The checkpoint and the snapshot are written only when they would say something new, and
    // their renames share one directory sync with the marker's creation. A power loss before it
    // keeps any of the three: an older recovery point is below the log end (a longer scan after a
    // later crash, and an open after this one rewrites it), an older snapshot means a longer
    // replay, and the marker is the last thing the directory can need, every byte it vouches
    // for having been synced above.
    if (this.#recoveryPoint !== this.#recoveryPointWritten)
      await this.#writeCheckpoint(RECOVERY_POINT_FILE, this.#recoveryPoint, { syncDir: false });
    if (this.#replayBytesAtOpen() > SNAPSHOT_REPLAY_BYTES_MAX)
      await this.#snapshotProducers(this.logEndOffset, { syncDir: false });
    for (const segment of this.#segments) await segment.close();
    // Empty: nothing of it can be torn, and only its directory entry needs to be durable.
    await (await this.#fs.open(`${this.dir}/${CLEAN_SHUTDOWN_FILE}`)).close();
    await this.#fs.syncDir(this.dir);
    this.#listeners.clear();
  }

  /** Closes and removes the whole partition directory (topic deletion). */
  async deleteAll(): Promise<void> {
    if (!this.#closed) {
      // Work queued before goes first; a log that went offline refuses it, and is deleted all the same.
      await this.#serialize(async () => {}).catch(() => {});
      this.#closed = true;
      this.#flushTimer?.cancel();
      for (const segment of this.#segments) await segment.close().catch(() => {});
    }
    await this.leaderEpochs.flush();
    await this.#fs.removeDir(this.dir);
  }

  // ---- internals ----

  #active(): Segment {
    return this.#segments[this.#segments.length - 1]!;
  }

  #checkOpen(): void {
    const unavailable = this.#unavailable();
    if (unavailable) throw unavailable;
  }

  /** The error every call gets once the log is offline or closed; undefined while it serves. */
  #unavailable(): SluiceError | undefined {
    if (this.#offline) {
      return new SluiceError(
        'KAFKA_STORAGE_ERROR',
        `the log in ${this.dir} is offline: ${this.#offline.reason}`,
        {
          retriable: false,
          cause: this.#offline.error,
          details: { offlineReason: this.#offline.reason, why: OFFLINE_WHY },
        },
      );
    }
    if (this.#closed) return new SluiceError('KAFKA_STORAGE_ERROR', `the log in ${this.dir} is closed`);
    return undefined;
  }

  /**
   * Fail-stop: after a failed write or fsync the log refuses every append, read and flush, keeps
   * the first reason, and says so once through the logger. Only a reopen from disk, which recovers
   * from the last recovery point, brings the partition back.
   */
  #goOffline(reason: string, error: unknown): void {
    if (this.#offline || this.#closed) return;
    this.#offline = { reason, error };
    this.#meters.writeErrors.inc();
    this.#flushTimer?.cancel();
    this.#flushTimer = undefined;
    this.#logger?.error(
      { dir: this.dir, reason, err: error },
      'partition log offline after a storage failure',
    );
    const unavailable = this.#unavailable()!;
    for (const pending of this.#appendQueue.splice(0)) pending.reject(unavailable);
  }

  /** Index of the last segment whose base offset is at or below `offset`. */
  #segmentIndexFor(offset: number): number {
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#segments[mid]!.baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Runs storage work after the work queued before it. An error that is not a SluiceError (an I/O
   * error, a broken invariant) leaves the files in an unknown state and takes the log offline.
   */
  #serialize<T>(work: () => Promise<T>): Promise<T> {
    const guarded = async () => {
      const unavailable = this.#unavailable();
      if (unavailable) throw unavailable;
      try {
        if (this.#cleanMarker) {
          // The first change since a clean open: from here on a crash must be detected.
          await this.#fs.unlink(`${this.dir}/${CLEAN_SHUTDOWN_FILE}`);
          await this.#fs.syncDir(this.dir);
          this.#cleanMarker = false;
        }
        return await work();
      } catch (error) {
        if (error instanceof SluiceError) throw error;
        this.#goOffline(`storage work failed: ${messageOf(error)}`, error);
        throw this.#unavailable() ?? error;
      }
    };
    const run = this.#writeChain.then(guarded, guarded);
    // The chain only orders the work; each caller gets its own outcome from `run`.
    this.#writeChain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  #notify(): void {
    const end = this.logEndOffset;
    for (const listener of this.#listeners) listener(end);
  }

  /** Whether the active segment is closed before `incomingBytes` more: it is full or old enough. */
  #mustRoll(incomingBytes: number): boolean {
    const active = this.#active();
    if (active.size === 0) return false;
    const full = active.size + incomingBytes > this.#config.segmentBytes;
    return full || this.#clock.nowMs() - active.createdMs >= this.#config.segmentMs;
  }

  async #roll(): Promise<void> {
    const active = this.#active();
    // The closed segment is synced before the new one can hold acknowledged data, so that a
    // recovery which starts at the new segment never misses unsynced bytes in the old one.
    await active.sync();
    await active.syncIndexes();
    // Every batch below the new segment is durable now: the producers' state as of there is a
    // snapshot recovery can start from.
    await this.#snapshotProducers(active.nextOffset);
    this.#segments.push(await Segment.create(this.dir, active.nextOffset, this.#fs, this.#clock.nowMs()));
  }

  /** Group commit: every caller that arrives while an fsync runs shares the next one. */
  #requestSync(): Promise<void> {
    const unavailable = this.#unavailable();
    if (unavailable) return Promise.reject(unavailable);
    return new Promise((resolve, reject) => {
      this.#syncWaiters.push({ resolve, reject });
      if (!this.#syncing) void this.#runSyncs();
    });
  }

  async #runSyncs(): Promise<void> {
    this.#syncing = true;
    while (this.#syncWaiters.length > 0) {
      const waiters = this.#syncWaiters;
      this.#syncWaiters = [];
      // Appends already written are covered; wait for any write in progress to land first.
      await this.#writeChain;
      const target = this.logEndOffset;
      const truncations = this.#truncations;
      try {
        const started = this.#clock.monotonicMs();
        for (const segment of this.#segments) await segment.sync();
        this.#meters.fsyncSeconds.observe((this.#clock.monotonicMs() - started) / 1000);
        // A truncation while the fsync ran may have replaced offsets below target with unsynced ones.
        if (truncations === this.#truncations) this.#recoveryPoint = Math.max(this.#recoveryPoint, target);
        this.#checkInvariants();
        for (const w of waiters) w.resolve();
      } catch (error) {
        this.#goOffline(`fsync failed: ${messageOf(error)}`, error);
        const failure = this.#unavailable()!;
        for (const w of waiters) w.reject(failure);
      }
    }
    this.#syncing = false;
  }

  #scheduleFlush(): void {
    this.#flushTimer?.cancel();
    this.#flushTimer = undefined;
    if (this.#config.flushPolicy !== 'async') return;
    this.#flushTimer = this.#clock.setInterval(() => {
      if (this.#unavailable()) return;
      // A failed flush takes the log offline (once: #goOffline ignores a second reason).
      this.flush().catch((error: unknown) =>
        this.#goOffline(`a timed flush failed: ${messageOf(error)}`, error),
      );
    }, this.#config.flushMs);
  }

  async #advanceStart(offset: number): Promise<void> {
    if (offset <= this.#logStartOffset) return;
    this.#logStartOffset = offset;
    // Records below the log start are gone: none is waited for (an open raises it the same way).
    this.#highWatermark = Math.max(this.#highWatermark, offset);
    await this.#writeCheckpoint(LOG_START_FILE, offset);
    while (this.#segments.length > 1 && this.#segments[0]!.nextOffset <= offset) {
      await this.#segments.shift()!.delete();
    }
    await this.#deleteProducerSnapshots((at) => at < this.#segments[0]!.baseOffset);
    if (this.#snapshotAt !== undefined && this.#snapshotAt < this.#segments[0]!.baseOffset)
      this.#snapshotAt = undefined;
    this.leaderEpochs.truncateFromStart(offset);
    this.#checkInvariants();
  }

  #isNewestOfProducer(header: BatchHeader): boolean {
    if (header.producerId < 0) return false;
    const batches = this.producers.get(header.producerId)?.batches;
    return batches !== undefined && batches[batches.length - 1]!.firstOffset === header.baseOffset;
  }

  /**
   * Writes the producers' state as of `offset` (every batch below it is in the log and durable) to
   * `<offset>.producer-snapshot`, so that recovery replays only the batches after it.
   */
  async #snapshotProducers(offset: number, options?: { syncDir?: boolean }): Promise<void> {
    // Written with no producer too: an open then knows that no batch before `offset` needs replaying.
    await this.#fs.writeFileAtomic(
      `${this.dir}/${segmentName(offset)}${PRODUCER_SNAPSHOT_SUFFIX}`,
      this.producers.encode(offset),
      options,
    );
    this.#snapshotAt = offset;
  }

  /**
   * The bytes an open would replay to rebuild the producers' state: from the indexed batch at or
   * below the newest snapshot's offset (where `#rebuildProducers` starts reading) to the log end,
   * or the whole log without a snapshot.
   */
  #replayBytesAtOpen(): number {
    const from = this.#snapshotAt ?? this.#segments[0]!.baseOffset;
    if (from >= this.logEndOffset) return 0;
    let bytes = 0;
    for (const segment of this.#segments) {
      if (segment.nextOffset <= from) continue;
      bytes += segment.size - (segment.baseOffset <= from ? segment.lookupPosition(from) : 0);
    }
    return bytes;
  }

  async #deleteProducerSnapshots(
    drop: (offset: number) => boolean,
    names?: readonly string[],
  ): Promise<void> {
    let deleted = false;
    for (const name of names ?? (await this.#fs.readdir(this.dir))) {
      if (!PRODUCER_SNAPSHOT_FILE.test(name) || !drop(Number(name.slice(0, 20)))) continue;
      await this.#fs.unlink(`${this.dir}/${name}`);
      deleted = true;
    }
    if (deleted) await this.#fs.syncDir(this.dir);
  }

  /**
   * The producers' state from the log itself: the newest snapshot within the log (from its first
   * segment to its end) and every batch after it. Snapshots past the end (the batches they cover
   * were truncated, or lost in a crash) are deleted; a damaged one is passed over for an older one.
   */
  async #rebuildProducers(names: readonly string[]): Promise<void> {
    const first = this.#segments[0]!.baseOffset;
    const end = this.logEndOffset;
    const offsets = names
      .filter((n) => PRODUCER_SNAPSHOT_FILE.test(n))
      .map((n) => Number(n.slice(0, 20)))
      .sort((a, b) => b - a);
    // `names` is the directory as listed just before: no snapshot was written since.
    await this.#deleteProducerSnapshots((at) => at > end, names);
    this.producers.clear();
    this.#snapshotAt = undefined;
    let from = first;
    for (const at of offsets) {
      if (at > end || at < first) continue;
      const bytes = await this.#fs.readFile(`${this.dir}/${segmentName(at)}${PRODUCER_SNAPSHOT_SUFFIX}`);
      if (!bytes) continue;
      try {
        const { state } = ProducerState.decode(bytes);
        for (const entry of state.entries()) this.producers.restore(entry);
        from = at;
        this.#snapshotAt = at;
        break;
      } catch (error) {
        this.#logger?.error(
          { dir: this.dir, offset: at, err: error },
          'a producer state snapshot is damaged: an older one or the log is used',
        );
      }
    }
    for (const segment of this.#segments) {
      if (segment.nextOffset <= from) continue;
      try {
        await segment.locate(from, (location) => {
          if (location.header.baseOffset >= from) this.producers.apply(location.header);
          return true;
        });
      } catch (error) {
        // Damage in an older segment (reads report it as CORRUPT_MESSAGE): the batches past it
        // in that segment cannot be read by anyone, so the producer state goes on after it.
        if (!isSluiceError(error, 'CORRUPT_MESSAGE')) throw error;
        this.#logger?.error(
          { dir: this.dir, segment: segment.baseOffset, err: error },
          'a damaged segment was passed over while rebuilding the producer state',
        );
      }
    }
  }

  /** The invariants in the class comment; a broken one is a bug that would serve wrong data. */
  #checkInvariants(): void {
    const segments = this.#segments;
    assert(segments.length > 0, `${this.dir}: no segment`);
    for (let i = 1; i < segments.length; i++) {
      const previous = segments[i - 1]!;
      const segment = segments[i]!;
      assert(
        previous.nextOffset === segment.baseOffset,
        `${this.dir}: segment ${previous.baseOffset} ends at ${previous.nextOffset}, the next begins at ${segment.baseOffset}`,
      );
    }
    const end = this.logEndOffset;
    assert(
      segments[0]!.baseOffset <= this.#logStartOffset && this.#logStartOffset <= end,
      `${this.dir}: log start ${this.#logStartOffset} outside [${segments[0]!.baseOffset}, ${end}]`,
    );
    assert(
      this.#recoveryPoint <= end,
      `${this.dir}: recovery point ${this.#recoveryPoint} beyond log end ${end}`,
    );
    assert(
      this.#logStartOffset <= this.#highWatermark && this.#highWatermark <= end,
      `${this.dir}: high watermark ${this.#highWatermark} outside [${this.#logStartOffset}, ${end}]`,
    );
  }

  async #forEachBatch(segment: Segment, visit: (batch: Buffer) => void): Promise<void> {
    const locations: BatchLocation[] = [];
    await segment.locate(segment.baseOffset, (location) => {
      locations.push(location);
      return true;
    });
    for (const location of locations) visit(await segment.readBatch(location));
  }

  /**
   * Writes `batches` as the new content of `segment`: a `.cleaned` file, fsync, rename over the log,
   * then opens it. The old segment stays open for the reads in it: its descriptor still reads the
   * file it opened after the rename.
   */
  async #replaceSegment(segment: Segment, batches: Buffer[]): Promise<Segment> {
    const paths = Segment.paths(this.dir, segment.baseOffset);
    const cleanedPath = `${paths.log}.cleaned`;
    const handle = await this.#fs.open(cleanedPath);
    await handle.truncate(0);
    await handle.write(Buffer.concat(batches), 0);
    await handle.sync();
    await handle.close();
    await this.#fs.rename(cleanedPath, paths.log);
    await this.#fs.unlink(paths.index);
    await this.#fs.unlink(paths.timeIndex);
    // Either the old or the cleaned content survives a power loss; the sync settles which.
    await this.#fs.syncDir(this.dir);
    const { segment: replaced } = await Segment.open(this.dir, segment.baseOffset, this.#fs, {
      recover: true,
      indexIntervalBytes: this.#config.indexIntervalBytes,
      batchBytesMax: Math.max(this.#config.batchBytesMax, DEFAULT_LOG_CONFIG.batchBytesMax),
      nowMs: segment.createdMs,
    });
    // Compaction keeps the last record of a segment (see `compact`): its end offset stays.
    assert(
      replaced.nextOffset === segment.nextOffset,
      `compacted segment ${segment.baseOffset} ends at ${replaced.nextOffset}, not ${segment.nextOffset}`,
    );
    return replaced;
  }

  /** Checkpoint writes are serialized: a timer's flush and a close must not interleave them. */
  #writeCheckpoint(name: string, value: number, options?: { syncDir?: boolean }): Promise<void> {
    const write = this.#checkpoints.then(async () => {
      await writeCheckpointFile(this.#fs, `${this.dir}/${name}`, value, options);
      if (name === RECOVERY_POINT_FILE) this.#recoveryPointWritten = value;
    });
    this.#checkpoints = write.catch(() => {});
    return write;
  }
}

export interface PlannedAppend {
  pending: PendingAppend;
  /** The offset of the append's first batch. */
  baseOffset: number;
  result: AppendResult;
}

export interface GroupPlan {
  /** How many appends from the front of the queue the plan covers. */
  taken: number;
  /** In queue order, with offsets contiguous from the log end. */
  accepted: PlannedAppend[];
  rejected: { pending: PendingAppend; error: SluiceError }[];
  /**
   * Producers' retries of batches the log holds: answered, not written. A retry of a batch planned
   * in the same group ends the group instead (`taken` stops before it).
   */
  duplicates: { pending: PendingAppend; result: AppendResult }[];
}

/**
 * Plans the next group write, touching nothing: the appends from the front of `queue` up to
 * `groupBytesMax` (at least one), each given the offsets it gets after the log end `logEnd`. A
 * leader's append (`assignOffsets`) takes the next offsets; a follower's must continue the log
 * exactly and is rejected alone (INVALID_REQUEST) when it does not, the others keep their places.
 */
export function planGroup(
  queue: readonly PendingAppend[],
  logEnd: number,
  groupBytesMax: number = APPEND_GROUP_BYTES_MAX,
  producers?: ProducerState,
): GroupPlan {
  let groupBytes = 0;
  let taken = 0;
  while (taken < queue.length && (taken === 0 || groupBytes + queue[taken]!.data.length <= groupBytesMax)) {
    groupBytes += queue[taken]!.data.length;
    taken++;
  }
  const plan: GroupPlan = { taken, accepted: [], rejected: [], duplicates: [] };
  // Producers as they will be after the appends accepted so far (a producer may have several
  // batches in one group); made only for a group with a leader's producer batches in it.
  let planned: Map<number, ProducerEntry> | undefined;
  let next = logEnd;
  for (let at = 0; at < taken; at++) {
    const pending = queue[at]!;
    const end = plannedEnd(pending, next);
    if (typeof end !== 'number') {
      plan.rejected.push({ pending, error: end });
      continue;
    }
    // Only a leader's batches are checked; a follower's are applied as they are once written.
    if (producers && pending.options.assignOffsets && hasProducerBatch(pending)) {
      planned ??= new Map();
      const verdict = planProducers(pending, next, producers, planned);
      if (verdict instanceof SluiceError) {
        plan.rejected.push({ pending, error: verdict });
        continue;
      }
      if (verdict) {
        // A retry of a batch planned in this group ends the group: it is answered as a duplicate
        // only once that batch is in the log (a group with a corrupt batch writes nothing, and the
        // retry is then the producer's first try).
        if (verdict.baseOffset >= logEnd) {
          plan.taken = at;
          break;
        }
        plan.duplicates.push({ pending, result: verdict });
        continue;
      }
    }
    const batchCount = pending.batches.length;
    plan.accepted.push({
      pending,
      baseOffset: next,
      result: { baseOffset: next, lastOffset: end - 1, logEndOffset: end, batchCount },
    });
    next = end;
  }
  return plan;
}

function hasProducerBatch(pending: PendingAppend): boolean {
  for (const { header } of pending.batches) if (header.producerId >= 0) return true;
  return false;
}

/**
 * The producer check of a leader's append planned at `start`: its batches from idempotent
 * producers are checked against `producers` as `planned` updates it (and `planned` takes each
 * accepted batch). Undefined: append it. An AppendResult: every producer batch of it is a retry of
 * one already in the log, answered with that batch's offsets. A SluiceError: refuse the whole
 * append (nothing of it is written).
 */
function planProducers(
  pending: PendingAppend,
  start: number,
  producers: ProducerState,
  planned: Map<number, ProducerEntry>,
): AppendResult | SluiceError | undefined {
  const updates = new Map<number, ProducerEntry>();
  let duplicateOf: { first: number; last: number } | undefined;
  let fresh = 0;
  let next = start;
  for (const { header } of pending.batches) {
    const baseOffset = next;
    next += header.lastOffsetDelta + 1;
    if (header.producerId < 0) {
      fresh++;
      continue;
    }
    const id = header.producerId;
    const entry = updates.get(id) ?? planned.get(id) ?? producers.get(id);
    let verdict: ReturnType<typeof checkSequence>;
    try {
      verdict = checkSequence(entry, header);
    } catch (error) {
      if (error instanceof SluiceError) return error;
      throw error;
    }
    if (verdict.kind === 'duplicate') {
      duplicateOf = {
        first: Math.min(duplicateOf?.first ?? verdict.batch.firstOffset, verdict.batch.firstOffset),
        last: Math.max(duplicateOf?.last ?? verdict.batch.lastOffset, verdict.batch.lastOffset),
      };
      continue;
    }
    fresh++;
    updates.set(id, withBatch(entry, { ...header, baseOffset }));
  }
  if (duplicateOf) {
    if (fresh > 0) {
      return new SluiceError(
        'INVALID_REQUEST',
        'an append mixes retried producer batches with new ones; send a retry exactly as the first try',
      );
    }
    return {
      baseOffset: duplicateOf.first,
      lastOffset: duplicateOf.last,
      logEndOffset: start,
      batchCount: pending.batches.length,
      duplicate: true,
    };
  }
  for (const [id, entry] of updates) planned.set(id, entry);
  return undefined;
}

/** Where the log ends after `pending` when it starts at `start`, or why it cannot go there. */
function plannedEnd(pending: PendingAppend, start: number): number | SluiceError {
  let next = start;
  for (const batch of pending.batches) {
    if (!pending.options.assignOffsets && batch.header.baseOffset !== next) {
      return new SluiceError(
        'INVALID_REQUEST',
        `batch starts at offset ${batch.header.baseOffset}, the log ends at ${next}`,
        { details: { logEndOffset: next } },
      );
    }
    next += batch.header.lastOffsetDelta + 1;
    assert(Number.isSafeInteger(next), 'offset beyond 2^53');
  }
  return next;
}

/** Writes a leader's planned offsets and epoch into its batches, in place (the CRCs stay valid). */
function stampOffsets({ pending, baseOffset }: PlannedAppend): void {
  const { data, batches, options } = pending;
  if (!options.assignOffsets) return;
  let next = baseOffset;
  for (const batch of batches) {
    setBaseOffset(data, batch.pos, next);
    batch.header.baseOffset = next;
    if (options.leaderEpoch !== undefined) {
      setPartitionLeaderEpoch(data, batch.pos, options.leaderEpoch);
      batch.header.partitionLeaderEpoch = options.leaderEpoch;
    }
    next = nextOffsetOf(batch.header);
  }
}

/** Records in `corrupt` every append of the group whose CRC is wrong; true when there is none. */
function findCorrupt(accepted: readonly PlannedAppend[], corrupt: Map<PendingAppend, string>): boolean {
  for (const { pending } of accepted) {
    if (pending.options.crcChecked) continue;
    for (const b of pending.batches) {
      const problem = batchCrcProblem(pending.data, b.pos, b.size);
      if (problem) {
        corrupt.set(pending, problem);
        break;
      }
    }
  }
  return corrupt.size === 0;
}

/** Where each batch of the group lies within the group's one buffer. */
function groupLocations(accepted: readonly PlannedAppend[]): BatchLocation[] {
  const locations: BatchLocation[] = [];
  let base = 0;
  for (const { pending } of accepted) {
    for (const b of pending.batches)
      locations.push({ position: base + b.pos, size: b.size, header: b.header });
    base += pending.data.length;
  }
  return locations;
}

/**
 * The batches of `result` up to the first whose CRC-32C is wrong. Damage in the first batch throws
 * a non-retriable CORRUPT_MESSAGE naming its offset and, as `nextReadableOffset`, the offset after
 * it (its length field passed the read's checks, so the next batch is found from it): a consumer
 * that accepts losing the batch reads on from there.
 */
export function verifiedPrefix(result: ReadResult): ReadResult {
  const { data } = result;
  let pos = 0;
  let batchCount = 0;
  let nextOffset = result.nextOffset;
  while (pos < data.length) {
    const header = readBatchHeader(data, pos);
    const size = BATCH_LENGTH_PREFIX_BYTES + header.batchLength;
    const problem = batchCrcProblem(data, pos, size);
    if (problem !== undefined) {
      if (batchCount > 0) break;
      const nextReadableOffset =
        pos + size < data.length ? readBatchHeader(data, pos + size).baseOffset : result.nextOffset;
      throw new SluiceError(
        'CORRUPT_MESSAGE',
        `the stored batch at offset ${header.baseOffset} is damaged (${problem}); reads from offset ${nextReadableOffset} on do not include it`,
        { retriable: false, details: { batchOffset: header.baseOffset, nextReadableOffset } },
      );
    }
    pos += size;
    batchCount++;
    nextOffset = nextOffsetOf(header);
  }
  if (batchCount === result.batchCount) return result;
  return { ...result, data: data.subarray(0, pos), batchCount, nextOffset };
}

/**
 * Offsets no segment holds: a segment file went missing while the log was closed. Opening would
 * serve the log as if those records had never existed, so the open is refused; the message names
 * the files (the HTTP layer shows clients only the title of a storage error).
 */
function missingOffsets(dir: string, from: number, to: number, evidence: readonly string[]): SluiceError {
  return new SluiceError(
    'KAFKA_STORAGE_ERROR',
    `offsets [${from}, ${to}) of ${dir} are in no segment file: ${evidence.join(', ')}; a segment file is missing`,
    { retriable: false, details: { dir, missingFromOffset: from, missingToOffset: to } },
  );
}

interface RecoveredSegments {
  segments: Segment[];
  report: PartitionLog['recoveryReport'];
  /** The offset the batch-by-batch scan started from; undefined after a clean shutdown. */
  scannedFrom: number | undefined;
  /** Where each leader epoch starts in the scanned batches, in offset order. */
  epochStarts: EpochStart[];
}

/**
 * Opens the segment files among `names`, oldest first. Without a clean shutdown, every segment from
 * the one that holds the recovery point on (those not known to be flushed) is checked batch by
 * batch, the first of them from its last indexed batch at or below the recovery point; at the
 * first bad batch, or a segment that overlaps its predecessor, the rest goes.
 */
async function recoverSegments(
  dir: string,
  names: readonly string[],
  options: { clean: boolean; recoveryPoint: number; config: LogConfig },
  deps: PartitionLogDeps,
): Promise<RecoveredSegments> {
  const { clean, recoveryPoint, config } = options;
  const { fs, clock } = deps;
  const bases = names
    .filter((n) => SEGMENT_LOG_FILE.test(n))
    .map((n) => Number(n.slice(0, 20)))
    .sort((a, b) => a - b);
  const out: RecoveredSegments = {
    segments: [],
    report: clean
      ? undefined
      : { segmentsScanned: 0, scannedBytes: 0, truncatedBytes: 0, problem: undefined },
    scannedFrom: undefined,
    epochStarts: [],
  };
  let firstToRecover = 0;
  for (let i = 0; i < bases.length; i++) if (bases[i]! <= recoveryPoint) firstToRecover = i;
  for (let i = 0; i < bases.length; i++) {
    const base = bases[i]!;
    const recover = !clean && i >= firstToRecover;
    const opened = await Segment.open(dir, base, fs, {
      recover,
      ...(recover ? { recoveryPoint } : {}),
      indexIntervalBytes: config.indexIntervalBytes,
      batchBytesMax: Math.max(config.batchBytesMax, DEFAULT_LOG_CONFIG.batchBytesMax),
      nowMs: clock.nowMs(),
    });
    const { segment, corrupt, fileSize } = opened;
    const previous = out.segments.at(-1);
    if (previous && segment.baseOffset > previous.nextOffset) {
      for (const open of [...out.segments, segment]) await open.close();
      throw missingOffsets(dir, previous.nextOffset, segment.baseOffset, [
        `${segmentName(previous.baseOffset)}.log ends at offset ${previous.nextOffset}`,
        `${segmentName(base)}.log begins at ${base}`,
      ]);
    }
    if (previous && segment.baseOffset < previous.nextOffset) {
      await segment.delete();
      if (out.report) out.report.problem = `segment ${base} overlaps its predecessor`;
      await deleteSegmentFiles(fs, dir, bases.slice(i + 1));
      break;
    }
    out.segments.push(segment);
    if (recover) {
      out.scannedFrom ??= opened.scanned?.fromOffset ?? base;
      out.epochStarts.push(...opened.epochStarts);
    }
    if (out.report && recover) {
      out.report.segmentsScanned++;
      out.report.scannedBytes += opened.scanned?.bytes ?? fileSize;
      out.report.truncatedBytes += fileSize - segment.size;
    }
    if (corrupt !== undefined || (recover && fileSize !== segment.size)) {
      if (out.report) out.report.problem = corrupt ?? `torn batch at the end of segment ${base}`;
      // Everything after the first bad batch is suspect: later segments go.
      await deleteSegmentFiles(fs, dir, bases.slice(i + 1));
      break;
    }
  }
  return out;
}

/** Whether the epochs starting at or after `from` in `entries` are exactly `starts`. */
function sameEpochStarts(
  entries: readonly { epoch: number; startOffset: number }[],
  from: number,
  starts: readonly EpochStart[],
): boolean {
  const kept = entries.filter((entry) => entry.startOffset >= from);
  return (
    kept.length === starts.length &&
    kept.every((entry, i) => entry.epoch === starts[i]!.epoch && entry.startOffset === starts[i]!.startOffset)
  );
}

/** Replaces the checkpoint at `path` atomically: `<value>\n<crc32c of "<value>\n" in hex>\n`. */
function writeCheckpointFile(
  fs: FileSystem,
  path: string,
  value: number,
  options?: { syncDir?: boolean },
): Promise<void> {
  const body = Buffer.from(`${value}\n`);
  const crc = crc32c(body).toString(16);
  return fs.writeFileAtomic(path, Buffer.from(`${value}\n${crc}\n`), options);
}

/**
 * The offset of a `truncateFullyAndStartAt` intent. It was written atomically, so a damaged one is
 * damage on disk, and which log to open is then unknown: the open is refused.
 */
async function readIntent(fs: FileSystem, path: string): Promise<number> {
  const data = await fs.readFile(path);
  const [value, crc] = (data ?? Buffer.alloc(0)).toString('utf8').split('\n');
  if (value === undefined || crc !== crc32c(Buffer.from(`${value}\n`)).toString(16) || !/^\d+$/.test(value))
    throw new SluiceError('KAFKA_STORAGE_ERROR', `the truncation intent ${path} is damaged`, {
      retriable: false,
    });
  return Number(value);
}

/**
 * The steps of `truncateFullyAndStartAt` after its intent is durable, shared by the live call and
 * by an open that finds the intent (a crash came between): each step may run twice. The old
 * segments' files go first (a directory sync makes their deletion durable, so that none comes back
 * beside the new log), then the checkpoints name the new log, then the intent goes. A new segment created before the
 * intent is gone is empty (appends wait for the truncation), so deleting it again loses nothing.
 */
async function finishTruncateFully(
  fs: FileSystem,
  dir: string,
  offset: number,
  steps: {
    writeCheckpoint: (name: string, value: number) => Promise<void>;
    clearLeaderEpochs: () => Promise<void>;
    /** The live call creates its new active segment here; an open creates it from the log start. */
    afterOldDeleted?: () => Promise<void>;
  },
): Promise<void> {
  const names = await fs.readdir(dir);
  const bases = names.filter((n) => SEGMENT_LOG_FILE.test(n)).map((n) => Number(n.slice(0, 20)));
  // The old log's producer snapshots go with it (the directory sync below makes it durable).
  for (const name of names) if (PRODUCER_SNAPSHOT_FILE.test(name)) await fs.unlink(`${dir}/${name}`);
  // Deletes newest first and syncs the directory.
  await deleteSegmentFiles(fs, dir, bases);
  await steps.afterOldDeleted?.();
  await steps.writeCheckpoint(LOG_START_FILE, offset);
  await steps.writeCheckpoint(RECOVERY_POINT_FILE, offset);
  await steps.writeCheckpoint(HIGH_WATERMARK_FILE, offset);
  await steps.clearLeaderEpochs();
  await fs.unlink(`${dir}/${TRUNCATE_FULLY_FILE}`);
  await fs.syncDir(dir);
}

const SEGMENT_LOG_FILE = /^\d{20}\.log$/;
/** `<offset>.producer-snapshot`: the producers' state as of that offset (every batch below it applied). */
const PRODUCER_SNAPSHOT_FILE = /^\d{20}\.producer-snapshot$/;
const PRODUCER_SNAPSHOT_SUFFIX = '.producer-snapshot';
/**
 * A clean close writes a producer snapshot at the log end only when an open would otherwise
 * replay more than this from the newest snapshot (or the whole log): reading it back costs an open
 * a millisecond or so, while the snapshot costs the close an fsync, a rename and its share of a
 * directory sync, which 10,000 idle one-record partitions would pay every stop.
 */
const SNAPSHOT_REPLAY_BYTES_MAX = 1024 * 1024;

/** A checkpoint file's offset; 0 when the file is missing or its CRC is wrong. */
export async function readCheckpoint(fs: FileSystem, path: string): Promise<number> {
  const data = await fs.readFile(path);
  if (!data) return 0;
  const [value, crc] = data.toString('utf8').split('\n');
  if (value === undefined || crc !== crc32c(Buffer.from(`${value}\n`)).toString(16) || !/^\d+$/.test(value))
    return 0;
  return Number(value);
}

/**
 * Deletes the files of the segments at `baseOffsets`, newest first, and syncs the directory: a
 * segment that came back after a power loss would follow a cut-short one with a gap.
 */
async function deleteSegmentFiles(
  fs: FileSystem,
  dir: string,
  baseOffsets: readonly number[],
): Promise<void> {
  if (baseOffsets.length === 0) return;
  for (const baseOffset of [...baseOffsets].reverse()) {
    const paths = Segment.paths(dir, baseOffset);
    await Promise.all([fs.unlink(paths.log), fs.unlink(paths.index), fs.unlink(paths.timeIndex)]);
  }
  await fs.syncDir(dir);
}

/**
 * One batch after compaction: the records `keeps` accepts, re-encoded with the batch's offsets,
 * epoch and producer fields (and its lastOffsetDelta, so the batch still ends where it did), or
 * the batch itself when all stay. With `last`, the batch's last record stays whatever `keeps`
 * says, so that a segment never loses its end offset.
 */
function compactBatch(
  batch: Buffer,
  keeps: (record: BatchRecord) => boolean,
  last: boolean,
): { batch: Buffer | undefined; removed: number } {
  const header = readBatchHeader(batch);
  const records = decodeRecords(batch);
  const keep = records.filter((r, i) => keeps(r) || (last && i === records.length - 1));
  const removed = records.length - keep.length;
  if (removed === 0) return { batch, removed };
  if (keep.length === 0) return { batch: undefined, removed };
  const encoded = encodeBatch(
    keep.map((r) => ({
      key: r.key,
      value: r.value,
      headers: r.headers,
      timestamp: r.timestamp,
      offsetDelta: r.offset - header.baseOffset,
    })),
    {
      baseOffset: header.baseOffset,
      partitionLeaderEpoch: header.partitionLeaderEpoch,
      attributes: header.attributes,
      producerId: header.producerId,
      producerEpoch: header.producerEpoch,
      baseSequence: header.baseSequence,
      lastOffsetDelta: header.lastOffsetDelta,
    },
  );
  return { batch: encoded, removed };
}

/** The first offset at or after `from` in `segment` whose record timestamp is at or after `timestampMs`. */
async function firstOffsetAtTime(
  segment: Segment,
  from: number,
  timestampMs: number,
): Promise<number | null> {
  // The first batch whose max timestamp reaches the time may hold its matching records only before
  // `from` (the log start inside it): then the search goes on after that batch.
  let start = from;
  for (;;) {
    let candidate: BatchLocation | undefined;
    await segment.locate(start, (location) => {
      if (nextOffsetOf(location.header) > start && location.header.maxTimestamp >= timestampMs) {
        candidate = location;
        return false;
      }
      return true;
    });
    if (!candidate) return null;
    const batch = await segment.readBatch(candidate);
    for (const record of decodeRecords(batch)) {
      if (record.offset >= from && record.timestamp >= timestampMs) return record.offset;
    }
    start = nextOffsetOf(candidate.header);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function keyOf(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}
