import type { Clock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { partitionForKey } from '../common/murmur2.js';
import type {
  Acks,
  ClusterResponse,
  OffsetsResponse,
  PartitionInfo,
  TopicDescription,
} from '../protocol/api.js';
import { TOPIC_NAME_PATTERN } from '../protocol/api.js';
import { type RecordInput, splitBatches } from '../protocol/batch.js';
import { type ProduceRecordSource, recordArraySource } from '../protocol/produce-body.js';
import {
  type ConfigValue,
  DEFAULT_LOG_CONFIG,
  type LogConfig,
  logConfigFromTopicConfigs,
  validateTopicConfigs,
} from '../protocol/topic-config.js';
import type { LogManager } from '../storage/log-manager.js';
import type { PartitionLog } from '../storage/partition-log.js';
import type { TopicRecord, TopicRegistry } from './topic-registry.js';

export interface ProduceInput extends Omit<RecordInput, 'timestamp' | 'offsetDelta'> {
  /** Milliseconds since the epoch; the broker's clock when absent. */
  timestamp?: number;
  partition?: number;
}

/** Where each record of a produce request landed, in request order. */
export interface ProducedOffsets {
  count: number;
  partitions: Int32Array;
  offsets: Float64Array;
}

export interface CreateTopicRequest {
  name: string;
  partitions?: number;
  replicationFactor?: number;
  configs?: Record<string, ConfigValue>;
}

export interface FetchOptions {
  offset: number | 'earliest' | 'latest';
  maxBytes: number;
  maxWaitMs: number;
  minBytes: number;
  signal?: AbortSignal;
  /** Bytes to leave free around the returned batches, for framing them without a copy. */
  reserve?: { before: number; after: number };
}

export interface FetchResult {
  /** Whole stored batches back to back. */
  data: Buffer;
  /** Set when the bytes asked for by `reserve` are free around `data` in its own buffer. */
  reserved?: { before: number; after: number };
  batchCount: number;
  /** The offset the read started from (after resolving earliest/latest). */
  offset: number;
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

export interface BrokerServiceOptions {
  nodeId: number;
  host: string;
  port: number;
  version: string;
  /** Defaults for topics, in Kafka config names (e.g. `flush.policy`, `num.partitions`). */
  defaultConfigs?: Record<string, ConfigValue>;
  fetchWaitersMax?: number;
}

/**
 * One node's broker: topics, produce, fetch, offsets. On a single node every partition is led here
 * with itself as the only in-sync replica, so the high watermark is the log end offset.
 * The HTTP layer depends on this class's type only.
 */
export class BrokerService {
  readonly #registry: TopicRegistry;
  readonly #logs: LogManager;
  readonly #clock: Clock;
  #stickyPartition = 0;
  #waiters = 0;
  readonly #waitersMax: number;
  readonly #defaults: Record<string, ConfigValue>;
  #shuttingDown = false;
  /** Finishers of the waiting fetches, so that a shutdown can answer them at once. */
  readonly #wakers = new Map<() => void, PartitionLog>();
  /** Topic admin runs one operation at a time, so that two creates of one name cannot interleave. */
  #admin: Promise<unknown> = Promise.resolve();

  constructor(
    readonly options: BrokerServiceOptions,
    deps: { registry: TopicRegistry; logs: LogManager; clock: Clock },
  ) {
    this.#registry = deps.registry;
    this.#logs = deps.logs;
    this.#clock = deps.clock;
    this.#waitersMax = options.fetchWaitersMax ?? 10_000;
    this.#defaults = options.defaultConfigs ?? {};
    validateTopicConfigs(this.#defaults, true);
  }

  /**
   * Opens the logs of every known topic (at start). Partition directories that no topic owns (a
   * crash between deleting a topic's definition and its data, or between creating a topic's logs
   * and its definition) are removed, so that a topic created later under the same name starts
   * empty instead of resurrecting old records.
   */
  async start(): Promise<void> {
    for (const { topic, partition } of this.#logs.list()) {
      const owner = this.#registry.get(topic);
      if (!owner || partition >= owner.partitions) await this.#logs.deletePartition(topic, partition);
    }
    for (const topic of this.#registry.list()) {
      for (let p = 0; p < topic.partitions; p++)
        await this.#logs.getOrCreate(topic.name, p, this.#logConfig(topic));
    }
  }

  /**
   * Starts a clean shutdown: every waiting fetch is answered now with what it has, later fetches
   * do not wait, follow streams end, and the HTTP layer refuses new requests with SHUTTING_DOWN.
   */
  beginShutdown(): void {
    this.#shuttingDown = true;
    for (const wake of [...this.#wakers.keys()]) wake();
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Long-poll fetches (and follow streams) waiting for records now. */
  get waitingFetches(): number {
    return this.#waiters;
  }

  /** The most waiting fetches the broker holds at once; more are refused with LIMIT_EXCEEDED. */
  get waitingFetchesMax(): number {
    return this.#waitersMax;
  }

  cluster(): ClusterResponse {
    return {
      clusterId: this.#registry.clusterId,
      nodeId: this.options.nodeId,
      version: this.options.version,
      controllerId: this.options.nodeId,
      nodes: [{ id: this.options.nodeId, host: this.options.host, port: this.options.port, rack: null }],
    };
  }

  listTopics(): { name: string; partitions: number; replicationFactor: number }[] {
    return this.#registry
      .list()
      .map((t) => ({ name: t.name, partitions: t.partitions, replicationFactor: t.replicationFactor }));
  }

  createTopic(request: CreateTopicRequest): Promise<TopicDescription> {
    return this.#serially(() => this.#createTopic(request));
  }

  async #createTopic(request: CreateTopicRequest): Promise<TopicDescription> {
    validateTopicName(request.name);
    if (this.#registry.get(request.name)) {
      throw new SluiceError('TOPIC_ALREADY_EXISTS', `topic ${request.name} already exists`, {
        details: { topic: request.name },
      });
    }
    const partitions = request.partitions ?? Number(this.#defaults['num.partitions'] ?? 1);
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > LIMITS.partitionsMax) {
      throw new SluiceError(
        'INVALID_PARTITIONS',
        `partitions must be an integer in [1, ${LIMITS.partitionsMax}]`,
      );
    }
    const replicationFactor = request.replicationFactor ?? 1;
    if (replicationFactor !== 1) {
      throw new SluiceError(
        'INVALID_REPLICATION_FACTOR',
        `replication factor ${replicationFactor} is larger than the 1 available node`,
        { details: { availableNodes: 1 } },
      );
    }
    const configs = request.configs ?? {};
    validateTopicConfigs(configs, false);
    const topic: TopicRecord = {
      name: request.name,
      partitions,
      replicationFactor,
      configs,
      createdMs: this.#clock.nowMs(),
    };
    const logConfig = this.#logConfig(topic);
    for (let p = 0; p < partitions; p++) {
      // Leftovers of an interrupted delete must not become the new topic's records.
      if (this.#logs.get(topic.name, p)) await this.#logs.deletePartition(topic.name, p);
      await this.#logs.getOrCreate(topic.name, p, logConfig);
    }
    await this.#registry.put(topic);
    return this.describeTopic(topic.name);
  }

  describeTopic(name: string): TopicDescription {
    const topic = this.#topic(name);
    const partitions: PartitionInfo[] = [];
    for (let p = 0; p < topic.partitions; p++) {
      const log = this.#partitionLog(topic, p);
      partitions.push({
        partition: p,
        leader: this.options.nodeId,
        leaderEpoch: 0,
        replicas: [this.options.nodeId],
        isr: [this.options.nodeId],
        logStartOffset: log.logStartOffset,
        logEndOffset: log.logEndOffset,
        highWatermark: log.logEndOffset,
      });
    }
    return {
      name: topic.name,
      partitions,
      replicationFactor: topic.replicationFactor,
      configs: { ...topic.configs },
    };
  }

  deleteTopic(name: string): Promise<{ name: string; deleted: true }> {
    return this.#serially(() => this.#deleteTopic(name));
  }

  async #deleteTopic(name: string): Promise<{ name: string; deleted: true }> {
    const topic = this.#topic(name);
    const logs = new Set(
      Array.from({ length: topic.partitions }, (_, p) => this.#logs.get(name, p)).filter(
        (l) => l !== undefined,
      ),
    );
    await this.#registry.remove(name);
    // Fetches waiting on these logs answer now (with UNKNOWN_TOPIC_OR_PARTITION) instead of at
    // their deadline.
    for (const [wake, log] of [...this.#wakers]) if (logs.has(log)) wake();
    for (let p = 0; p < topic.partitions; p++) await this.#logs.deletePartition(name, p);
    return { name, deleted: true };
  }

  /** Sets configs; a null value resets that config to the default. */
  alterConfigs(name: string, changes: Record<string, ConfigValue | null>): Promise<TopicDescription> {
    return this.#serially(() => this.#alterConfigs(name, changes));
  }

  async #alterConfigs(name: string, changes: Record<string, ConfigValue | null>): Promise<TopicDescription> {
    const topic = this.#topic(name);
    const configs = { ...topic.configs };
    for (const [key, value] of Object.entries(changes)) {
      if (value === null) delete configs[key];
      else configs[key] = value;
    }
    validateTopicConfigs(configs, false);
    const updated = { ...topic, configs };
    const logConfig = this.#logConfig(updated);
    await this.#registry.put(updated);
    for (let p = 0; p < topic.partitions; p++) this.#partitionLog(updated, p).updateConfig(logConfig);
    return this.describeTopic(name);
  }

  addPartitions(name: string, partitions: number): Promise<TopicDescription> {
    return this.#serially(() => this.#addPartitions(name, partitions));
  }

  async #addPartitions(name: string, partitions: number): Promise<TopicDescription> {
    const topic = this.#topic(name);
    if (
      !Number.isInteger(partitions) ||
      partitions <= topic.partitions ||
      partitions > LIMITS.partitionsMax
    ) {
      throw new SluiceError(
        'INVALID_PARTITIONS',
        `topic ${name} has ${topic.partitions} partitions; the new count must be larger`,
        {
          details: { current: topic.partitions },
        },
      );
    }
    const updated = { ...topic, partitions };
    const logConfig = this.#logConfig(updated);
    for (let p = topic.partitions; p < partitions; p++) await this.#logs.getOrCreate(name, p, logConfig);
    await this.#registry.put(updated);
    return this.describeTopic(name);
  }

  /**
   * Appends records, choosing each one's partition: the given one, else murmur2(key) as Kafka's
   * default partitioner, else one partition picked round-robin for all keyless records of this
   * request (sticky). Returns each record's offset in request order.
   */
  async produce(
    topicName: string,
    records: readonly ProduceInput[],
    acks: Acks,
  ): Promise<{ partition: number; offset: number }[]> {
    const produced = await this.produceFrom(topicName, recordArraySource(records), acks);
    const out: { partition: number; offset: number }[] = new Array(produced.count);
    for (let i = 0; i < produced.count; i++)
      out[i] = { partition: produced.partitions[i]!, offset: produced.offsets[i]! };
    return out;
  }

  /**
   * Partitions the records (named partition, else murmur2 of the key, else one sticky partition
   * per request), turns each partition's share into one batch and appends it. With acks=0 the
   * result holds no record.
   */
  async produceFrom(topicName: string, records: ProduceRecordSource, acks: Acks): Promise<ProducedOffsets> {
    const topic = this.#topic(topicName);
    if (records.count === 0)
      throw new SluiceError('INVALID_REQUEST', 'records must hold at least one record');
    if (records.count > LIMITS.requestRecordsMax) {
      throw new SluiceError(
        'TOO_MANY_RECORDS',
        `a request holds at most ${LIMITS.requestRecordsMax} records`,
      );
    }
    const sticky = this.#stickyPartition++ % topic.partitions;
    const partitions = new Int32Array(records.count);
    for (let i = 0; i < records.count; i++) {
      let partition = records.partitionAt(i);
      if (partition !== -1) {
        if (!Number.isInteger(partition) || partition < 0 || partition >= topic.partitions) {
          throw new SluiceError(
            'UNKNOWN_TOPIC_OR_PARTITION',
            `topic ${topicName} has no partition ${partition}`,
            {
              details: { topic: topicName, partition },
            },
          );
        }
      } else {
        const key = records.keyAt(i);
        partition = key ? partitionForKey(key, topic.partitions) : sticky;
      }
      partitions[i] = partition;
    }
    const byPartition = groupByPartition(partitions);
    const batches = new Map<number, Buffer>();
    for (const [partition, indexes] of byPartition) {
      // The log holds its parsed config; parsing the topic's configs again per request is waste.
      const recordBytesMax = this.#partitionLog(topic, partition).config.batchBytesMax;
      for (const i of indexes) {
        const size = records.payloadBytesAt(i);
        if (size > recordBytesMax) {
          throw new SluiceError(
            'RECORD_TOO_LARGE',
            `record ${i} is ${size} bytes; the limit is ${recordBytesMax}`,
            { details: { index: i } },
          );
        }
      }
      const batch = records.encodeBatch(indexes, this.#clock.nowMs());
      if (batch.length > recordBytesMax) {
        throw new SluiceError(
          'MESSAGE_TOO_LARGE',
          `the records for partition ${partition} make a ${batch.length}-byte batch; the limit is ${recordBytesMax}`,
        );
      }
      batches.set(partition, batch);
    }
    this.#checkAcks(topic, acks);
    const offsets = new Float64Array(records.count);
    const appends = [...batches].map(async ([partition, batch]) => {
      const result = await this.#partitionLog(topic, partition).append(batch, {
        assignOffsets: true,
        leaderEpoch: 0,
        encodedHere: true,
      });
      const indexes = byPartition.get(partition)!;
      for (let n = 0; n < indexes.length; n++) offsets[indexes[n]!] = result.baseOffset + n;
    });
    if (acks === 0) {
      // Fire and forget, as Kafka's acks=0: the producer is answered before the append completes.
      for (const a of appends) a.catch(() => {});
      return { count: 0, partitions: new Int32Array(0), offsets: new Float64Array(0) };
    }
    await this.#unlessDeleted(topicName, Promise.all(appends));
    return { count: records.count, partitions, offsets };
  }

  /**
   * Appends pre-built batches in the stored layout without decoding any record: header, sizes and
   * CRC are checked, offsets are assigned in place.
   */
  async produceBatches(
    topicName: string,
    partition: number,
    data: Buffer,
    acks: Acks,
  ): Promise<{ partition: number; baseOffset: number; lastOffset: number; batchCount: number } | undefined> {
    const topic = this.#topic(topicName);
    const log = this.#partitionLog(topic, partition);
    // The log checks every batch; with acks=0 the answer goes before the append completes, so the
    // batches are checked here too, and a corrupt one is still refused to the producer.
    if (acks === 0) splitBatches(data, log.config.batchBytesMax);
    this.#checkAcks(topic, acks);
    const appending = log.append(data, { assignOffsets: true, leaderEpoch: 0 });
    if (acks === 0) {
      appending.catch(() => {});
      return undefined;
    }
    const result = await this.#unlessDeleted(topicName, appending);
    return {
      partition,
      baseOffset: result.baseOffset,
      lastOffset: result.lastOffset,
      batchCount: result.batchCount,
    };
  }

  /** Reads whole batches; waits up to maxWaitMs for at least minBytes (at least one batch). */
  async fetch(topicName: string, partition: number, options: FetchOptions): Promise<FetchResult> {
    const topic = this.#topic(topicName);
    const log = this.#partitionLog(topic, partition);
    const offset =
      options.offset === 'earliest'
        ? log.logStartOffset
        : options.offset === 'latest'
          ? log.logEndOffset
          : options.offset;
    const maxBytes = Math.min(options.maxBytes, LIMITS.fetchBytesMax);
    const minBytes = Math.max(1, options.minBytes);
    const readOptions = { maxBytes, ...(options.reserve ? { reserve: options.reserve } : {}) };
    let result = await this.#unlessDeleted(topicName, log.read(offset, readOptions));
    if (result.data.length < minBytes && options.maxWaitMs > 0 && !options.signal?.aborted) {
      await this.#waitForData(
        log,
        offset,
        minBytes,
        Math.min(options.maxWaitMs, LIMITS.fetchWaitMsMax),
        options.signal,
      );
      // The topic may have been deleted (or deleted and created again) during the wait.
      if (!this.#registry.get(topicName) || this.#logs.get(topicName, partition) !== log) {
        throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${topicName} was deleted`, {
          details: { topic: topicName, partition },
        });
      }
      result = await this.#unlessDeleted(topicName, log.read(offset, readOptions));
    }
    return {
      data: result.data,
      ...(result.reserved ? { reserved: result.reserved } : {}),
      batchCount: result.batchCount,
      offset,
      nextOffset: result.nextOffset,
      highWatermark: log.logEndOffset,
      logStartOffset: log.logStartOffset,
    };
  }

  /** Resolves when the log has grown by at least `minBytes` past `offset` (roughly), the time is up, or the signal aborts. */
  waitForAppend(
    topicName: string,
    partition: number,
    offset: number,
    maxWaitMs: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const log = this.#partitionLog(this.#topic(topicName), partition);
    return this.#waitForData(log, offset, 1, maxWaitMs, signal);
  }

  #waitForData(
    log: PartitionLog,
    offset: number,
    minBytes: number,
    maxWaitMs: number,
    signal?: AbortSignal,
  ): Promise<void> {
    if (this.#waiters >= this.#waitersMax) {
      throw new SluiceError('LIMIT_EXCEEDED', `too many waiting fetches (limit ${this.#waitersMax})`);
    }
    if ((log.logEndOffset > offset && minBytes <= 1) || this.#shuttingDown) return Promise.resolve();
    this.#waiters++;
    const startSize = log.sizeBytes;
    return new Promise<void>((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        this.#waiters--;
        this.#wakers.delete(finish);
        unsubscribe();
        timer.cancel();
        signal?.removeEventListener('abort', finish);
        resolve();
      };
      const unsubscribe = log.onAppend((logEnd) => {
        if (logEnd > offset && log.sizeBytes - startSize >= minBytes - 1) finish();
      });
      const timer = this.#clock.setTimeout(finish, maxWaitMs);
      this.#wakers.set(finish, log);
      signal?.addEventListener('abort', finish, { once: true });
    });
  }

  async offsets(topicName: string, partition: number, timestamp?: number): Promise<OffsetsResponse> {
    const log = this.#partitionLog(this.#topic(topicName), partition);
    const response: OffsetsResponse = {
      partition,
      earliest: log.logStartOffset,
      latest: log.logEndOffset,
      highWatermark: log.logEndOffset,
    };
    if (timestamp !== undefined) {
      response.timestamp = timestamp;
      // -1 asks for the latest offset, -2 the earliest, as Kafka's ListOffsets.
      response.offset =
        timestamp === -1
          ? log.logEndOffset
          : timestamp === -2
            ? log.logStartOffset
            : await log.offsetForTimestamp(timestamp);
    }
    return response;
  }

  /**
   * A log operation that fails because its topic was deleted meanwhile (the log closed under it)
   * is reported as the missing topic it now is, not as a storage error.
   */
  async #unlessDeleted<T>(topicName: string, operation: Promise<T>): Promise<T> {
    try {
      return await operation;
    } catch (error) {
      if (!this.#registry.get(topicName)) {
        throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${topicName} was deleted`, {
          details: { topic: topicName },
          cause: error,
        });
      }
      throw error;
    }
  }

  #serially<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#admin.then(operation);
    this.#admin = result.catch(() => {});
    return result;
  }

  #checkAcks(topic: TopicRecord, acks: Acks): void {
    if (acks !== -1) return;
    const minInSync = Number(
      topic.configs['min.insync.replicas'] ?? this.#defaults['min.insync.replicas'] ?? 1,
    );
    const inSync = 1;
    if (inSync < minInSync) {
      throw new SluiceError(
        'NOT_ENOUGH_REPLICAS',
        `${inSync} in-sync replica, min.insync.replicas is ${minInSync}; nothing was appended`,
        {
          details: { isr: inSync, minInSyncReplicas: minInSync },
        },
      );
    }
  }

  #topic(name: string): TopicRecord {
    const topic = this.#registry.get(name);
    if (!topic)
      throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${name} does not exist`, {
        details: { topic: name },
      });
    return topic;
  }

  #partitionLog(topic: TopicRecord, partition: number): PartitionLog {
    const log =
      Number.isInteger(partition) && partition >= 0 && partition < topic.partitions
        ? this.#logs.get(topic.name, partition)
        : undefined;
    if (!log) {
      throw new SluiceError(
        'UNKNOWN_TOPIC_OR_PARTITION',
        `topic ${topic.name} has no partition ${partition}`,
        {
          details: { topic: topic.name, partition },
        },
      );
    }
    return log;
  }

  #logConfig(topic: TopicRecord): LogConfig {
    return logConfigFromTopicConfigs(
      topic.configs,
      logConfigFromTopicConfigs(this.#defaults, DEFAULT_LOG_CONFIG),
    );
  }
}

export function validateTopicName(name: unknown): asserts name is string {
  if (
    typeof name !== 'string' ||
    !new RegExp(TOPIC_NAME_PATTERN).test(name) ||
    name === '.' ||
    name === '..' ||
    name.startsWith('__')
  ) {
    throw new SluiceError(
      'INVALID_TOPIC_EXCEPTION',
      `topic name ${JSON.stringify(name)} is not valid: 1 to 249 of [a-zA-Z0-9._-], not "." or "..", not starting with "__"`,
    );
  }
}

/** Record indexes per partition, each list in request order. */
function groupByPartition(partitions: Int32Array): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  const first = partitions[0]!;
  let same = true;
  for (let i = 1; i < partitions.length && same; i++) same = partitions[i] === first;
  if (same) {
    // The common case, one partition per request: no lookup per record.
    const all: number[] = new Array(partitions.length);
    for (let i = 0; i < all.length; i++) all[i] = i;
    groups.set(first, all);
    return groups;
  }
  for (let i = 0; i < partitions.length; i++) {
    let list = groups.get(partitions[i]!);
    if (!list) groups.set(partitions[i]!, (list = []));
    list.push(i);
  }
  return groups;
}
