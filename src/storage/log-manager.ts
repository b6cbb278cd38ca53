import { assert } from '../common/assert.js';
import type { TimerHandle } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import type { LogConfig } from '../protocol/topic-config.js';
import { type FileSystem, mkdirDurable } from './fs.js';
import { PartitionLog, type PartitionLogDeps, storageMeters } from './partition-log.js';

export interface LogManagerOptions {
  dataDir: string;
  defaultConfig?: Partial<LogConfig>;
  /**
   * How often retention and compaction run over every log, in ms; 300000 (five minutes, as
   * Kafka's `log.retention.check.interval.ms`) when not given. retention.bytes is also applied at
   * every segment roll, whatever this is.
   */
  retentionCheckMs?: number;
}

const PARTITION_DIR = /^(.+)-(\d+)$/;
const RETENTION_CHECK_MS_DEFAULT = 5 * 60 * 1000;

/**
 * Every partition log of one node, one directory each: `${dataDir}/${topic}-${partition}`.
 * Runs retention and compaction on a timer taken from the injected clock.
 */
/** The file in a partition directory that names the topic id it belongs to. */
export const TOPIC_ID_FILE = 'partition.metadata';

/** Partition logs closed at once when the node stops. */
const CLOSE_CONCURRENCY = 32;
/** Partition logs opened at once when the node starts. */
const OPEN_CONCURRENCY = 16;

export class LogManager {
  readonly #logs = new Map<string, PartitionLog>();
  readonly #opening = new Map<string, Promise<PartitionLog>>();
  /**
   * The topic id of each partition directory as read while the logs opened at start, until its
   * one reader takes it (`readTopicId`: the reconciler's first pass asks once per log; one read
   * after another there took seconds at 10,000 partitions). Undefined values are kept too (no
   * file: a single-node release's directory).
   */
  readonly #topicIdsAtOpen = new Map<string, string | undefined>();
  #timer: TimerHandle | undefined;
  #maintenance: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(
    readonly options: LogManagerOptions,
    private readonly deps: PartitionLogDeps,
  ) {}

  private get fs(): FileSystem {
    return this.deps.fs;
  }

  static async open(options: LogManagerOptions, deps: PartitionLogDeps): Promise<LogManager> {
    const { fs, clock } = deps;
    const retentionCheckMs = options.retentionCheckMs ?? RETENTION_CHECK_MS_DEFAULT;
    assert(
      Number.isSafeInteger(retentionCheckMs) && retentionCheckMs > 0,
      `retentionCheckMs ${retentionCheckMs} is not a positive integer`,
    );
    const manager = new LogManager(options, deps);
    // The storage metrics are exported (at 0) before the first partition exists.
    if (deps.metrics) storageMeters(deps.metrics);
    await mkdirDurable(fs, options.dataDir);
    const names = (await fs.readdir(options.dataDir)).filter(
      (name) => PARTITION_DIR.test(name) && !name.startsWith('__cluster'),
    );
    // Opened OPEN_CONCURRENCY at a time: each open is a dozen small file operations, which the
    // thread pool runs side by side; one after another, 10,000 partitions took longer than 5 s.
    let next = 0;
    let failing = false;
    const opener = async () => {
      while (next < names.length && !failing) {
        const name = names[next++]!;
        const log = await PartitionLog.open(
          { dir: `${options.dataDir}/${name}`, config: options.defaultConfig, exists: true },
          deps,
        ).catch((error: unknown) => {
          failing = true;
          throw error;
        });
        manager.#logs.set(name, log);
        manager.#topicIdsAtOpen.set(name, await manager.#readTopicIdFile(name));
      }
    };
    const opened = await Promise.allSettled(Array.from({ length: OPEN_CONCURRENCY }, opener));
    const failed = opened.find((result) => result.status === 'rejected');
    if (failed) {
      // The openers stop at their next name; the logs already open close before the error goes up.
      await Promise.allSettled([...manager.#logs.values()].map((log) => log.close()));
      throw failed.reason;
    }
    manager.#timer = clock.setInterval(() => {
      manager.#maintenance = manager.#maintenance.then(async () => {
        await manager.runMaintenance();
      });
    }, retentionCheckMs);
    return manager;
  }

  static partitionDirName(topic: string, partition: number): string {
    return `${topic}-${partition}`;
  }

  async getOrCreate(topic: string, partition: number, config?: Partial<LogConfig>): Promise<PartitionLog> {
    if (this.#closed) throw new SluiceError('SHUTTING_DOWN', 'the log manager is closed');
    const name = LogManager.partitionDirName(topic, partition);
    const existing = this.#logs.get(name);
    if (existing) {
      if (config) existing.updateConfig(config);
      return existing;
    }
    let opening = this.#opening.get(name);
    if (!opening) {
      opening = PartitionLog.open(
        { dir: `${this.options.dataDir}/${name}`, config: { ...this.options.defaultConfig, ...config } },
        this.deps,
      );
      this.#opening.set(name, opening);
    }
    try {
      const log = await opening;
      this.#logs.set(name, log);
      return log;
    } finally {
      this.#opening.delete(name);
    }
  }

  /**
   * The id of the topic a partition directory was created for (`partition.metadata`), so that a
   * topic deleted and created again under its name never adopts the old directory; undefined for
   * a directory of the single-node release, which has none.
   */
  async readTopicId(topic: string, partition: number): Promise<string | undefined> {
    const name = LogManager.partitionDirName(topic, partition);
    if (this.#topicIdsAtOpen.has(name)) {
      const known = this.#topicIdsAtOpen.get(name);
      this.#topicIdsAtOpen.delete(name);
      return known;
    }
    return this.#readTopicIdFile(name);
  }

  async #readTopicIdFile(name: string): Promise<string | undefined> {
    const path = `${this.options.dataDir}/${name}/${TOPIC_ID_FILE}`;
    const data = await this.fs.readFile(path);
    if (data === undefined) return undefined;
    try {
      const parsed = JSON.parse(data.toString('utf8')) as { topicId?: unknown };
      return typeof parsed.topicId === 'string' ? parsed.topicId : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records the topic id in the partition's directory (atomically: a crash leaves the old or the new). */
  async writeTopicId(topic: string, partition: number, topicId: string): Promise<void> {
    const name = LogManager.partitionDirName(topic, partition);
    this.#topicIdsAtOpen.delete(name);
    const path = `${this.options.dataDir}/${name}/${TOPIC_ID_FILE}`;
    await this.fs.writeFileAtomic(path, Buffer.from(`${JSON.stringify({ version: 0, topicId })}\n`));
  }

  get(topic: string, partition: number): PartitionLog | undefined {
    return this.#logs.get(LogManager.partitionDirName(topic, partition));
  }

  list(): { topic: string; partition: number; log: PartitionLog }[] {
    const out: { topic: string; partition: number; log: PartitionLog }[] = [];
    for (const [name, log] of this.#logs) {
      const match = PARTITION_DIR.exec(name)!;
      out.push({ topic: match[1]!, partition: Number(match[2]), log });
    }
    return out.sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
  }

  async deletePartition(topic: string, partition: number): Promise<void> {
    const name = LogManager.partitionDirName(topic, partition);
    this.#topicIdsAtOpen.delete(name);
    const log = this.#logs.get(name);
    this.#logs.delete(name);
    if (log) await log.deleteAll();
    else await this.fs.removeDir(`${this.options.dataDir}/${name}`);
    // A deleted partition must not come back after a power loss.
    await this.fs.syncDir(this.options.dataDir);
  }

  /**
   * Retention, then compaction, over every log; an error on one log does not stop the others. An
   * offline log is skipped (it said why when it went offline), as is one deleted meanwhile; any
   * other failure is logged. A storage failure has already taken that log offline (fail-stop).
   */
  async runMaintenance(): Promise<{ segmentsDeleted: number; segmentsCleaned: number }> {
    let segmentsDeleted = 0;
    let segmentsCleaned = 0;
    for (const [name, log] of [...this.#logs]) {
      if (log.offlineReason !== undefined) continue;
      try {
        segmentsDeleted += (await log.enforceRetention()).segmentsDeleted;
        if (log.config.cleanupPolicy.includes('compact'))
          segmentsCleaned += (await log.compact()).segmentsCleaned;
      } catch (error) {
        if (this.#logs.get(name) !== log || log.offlineReason !== undefined) continue;
        this.deps.logger?.error({ dir: log.dir, err: error }, 'log maintenance failed');
      }
    }
    return { segmentsDeleted, segmentsCleaned };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer?.cancel();
    await this.#maintenance;
    // Several at once: each close syncs its files and writes its markers, and the file system
    // commits concurrent syncs together (a node with thousands of partitions stops in seconds,
    // not minutes). Every close is awaited; the first failure is thrown after all have run.
    const logs = [...this.#logs.values()];
    let next = 0;
    let failure: unknown;
    const worker = async () => {
      while (next < logs.length) {
        const log = logs[next++]!;
        await log.close().catch((error: unknown) => {
          failure ??= error;
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(CLOSE_CONCURRENCY, logs.length) }, worker));
    this.#logs.clear();
    if (failure !== undefined) throw failure;
  }
}
