import type { Clock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { partitionForKey } from '../common/murmur2.js';
import type { Acks } from '../protocol/api.js';
import {
  batchCodecAt,
  compressBatch,
  decodeRecords,
  type ProducerFields,
  type SplitBatch,
  splitProducedBatches,
} from '../protocol/batch.js';
import { CODEC_NAMES } from '../protocol/compression.js';
import { type ProduceRecordSource, recordArraySource } from '../protocol/produce-body.js';
import type { CompressionType } from '../protocol/topic-config.js';
import type { PartitionReplica } from '../replication/replica.js';
import type { AppendedBatches, ProduceApi, ProducedOffsets, ProduceInput, ProduceOptions } from './api.js';
import { type CompressionMetrics, toCompressionType } from './compression.js';
import type { BrokerMetrics } from './metrics.js';
import type { ProducerIds } from './producer-ids.js';
import type { RemotePartitions } from './remote-partitions.js';
import type { TopicRecord } from './topic-registry.js';
import type { Topics } from './topics.js';

/**
 * Produce on one node: chooses each record's partition, turns each partition's share into one
 * batch, and appends it on the partition's replica as leader.
 */
/** How long an acks=all produce waits for replication when the request does not say. */
const DEFAULT_PRODUCE_TIMEOUT_MS = 30_000;

export class ProduceService implements ProduceApi {
  readonly #topics: Topics;
  readonly #clock: Clock;
  readonly #metrics: BrokerMetrics;
  #stickyPartition = 0;

  readonly #remote: RemotePartitions | undefined;
  readonly #producerIds: ProducerIds | undefined;
  readonly #compression: CompressionMetrics | undefined;

  constructor(deps: {
    topics: Topics;
    clock: Clock;
    metrics: BrokerMetrics;
    compression?: CompressionMetrics;
    remote?: RemotePartitions;
    producerIds?: ProducerIds;
  }) {
    this.#topics = deps.topics;
    this.#producerIds = deps.producerIds;
    this.#remote = deps.remote;
    this.#clock = deps.clock;
    this.#metrics = deps.metrics;
    this.#compression = deps.compression;
  }

  async records(
    topicName: string,
    records: readonly ProduceInput[],
    acks: Acks,
  ): Promise<{ partition: number; offset: number }[]> {
    const produced = await this.from(topicName, recordArraySource(records), acks);
    const out: { partition: number; offset: number }[] = new Array(produced.count);
    for (let i = 0; i < produced.count; i++)
      out[i] = { partition: produced.partitions[i]!, offset: produced.offsets[i]! };
    return out;
  }

  /**
   * Partitions the records (named partition, else murmur2 of the key as Kafka's default
   * partitioner, else one sticky partition per request), turns each partition's share into one
   * batch and appends it. With acks=0 the result holds no record.
   */
  async from(
    topicName: string,
    records: ProduceRecordSource,
    acks: Acks,
    options: ProduceOptions = {},
  ): Promise<ProducedOffsets> {
    const topic = await this.#topics.resolve(topicName);
    if (records.count === 0)
      throw new SluiceError('INVALID_REQUEST', 'records must hold at least one record');
    if (records.count > LIMITS.requestRecordsMax) {
      throw new SluiceError(
        'TOO_MANY_RECORDS',
        `a request holds at most ${LIMITS.requestRecordsMax} records`,
      );
    }
    const partitions = this.#partitionsOf(topic, records);
    const byPartition = groupByPartition(partitions);
    const producer = options.producer;
    if (producer && byPartition.size > 1)
      throw new SluiceError(
        'INVALID_REQUEST',
        "an idempotent producer's records go to one partition per request (its sequence numbers are per partition)",
      );
    let duplicate = false;
    const compressionType = this.#topics.config(topic).compressionType;
    const batches = new Map<PartitionReplica, Buffer>();
    // The shares of partitions another node leads go there as pre-built batches.
    const forwarded: { target: { nodeId: number; url: string }; partition: number; batch: Buffer }[] = [];
    for (const [partition, indexes] of byPartition) {
      const target = this.#remote?.forwardTarget(topicName, partition);
      const now = this.#clock.nowMs();
      if (target) {
        const batchBytesMax = this.#topics.config(topic).log.batchBytesMax;
        forwarded.push({
          target,
          partition,
          batch: encodePartitionBatch(
            records,
            indexes,
            partition,
            batchBytesMax,
            now,
            producer,
            compressionType,
          ),
        });
        continue;
      }
      // A partition placed here a moment ago may not be open yet: that (rare) case waits for it.
      const replica =
        this.#topics.replicas.get(topicName, partition) ??
        (await this.#topics.localReplica(topicName, partition)).replica;
      batches.set(
        replica,
        encodePartitionBatch(
          records,
          indexes,
          partition,
          replica.log.config.batchBytesMax,
          now,
          producer,
          compressionType,
        ),
      );
    }
    for (const replica of batches.keys()) {
      replica.checkLeaderEpoch(options.leaderEpoch);
      this.#checkAcks(topic, replica, acks);
    }
    const offsets = new Float64Array(records.count);
    const parts = [...batches.keys()].map((replica) => replica.partition);
    const appends = [...batches].map(async ([replica, batch]) => {
      const result = await replica.appendAsLeader(batch, { crcChecked: true });
      const indexes = byPartition.get(replica.partition)!;
      if (result.duplicate) {
        duplicate = true;
        this.#metrics.duplicate();
      } else {
        this.#countIn(replica, indexes.length, batch.length);
        this.#compression?.appended(batch);
      }
      for (let n = 0; n < indexes.length; n++) offsets[indexes[n]!] = result.baseOffset + n;
      if (acks === -1) await this.#replicated(replica, result.lastOffset + 1, options.timeoutMs);
    });
    for (const { target, partition, batch } of forwarded) {
      parts.push(partition);
      appends.push(
        (async () => {
          const result = await this.#remote!.append(
            target,
            topicName,
            partition,
            batch,
            acks,
            options.timeoutMs,
          );
          if (!result) return;
          if (result.duplicate) duplicate = true;
          const indexes = byPartition.get(partition)!;
          for (let n = 0; n < indexes.length; n++) offsets[indexes[n]!] = result.baseOffset + n;
        })(),
      );
    }
    if (acks === 0) {
      // Fire and forget, as Kafka's acks=0: the producer is answered before the append completes.
      for (const a of appends) a.catch(() => {});
      return { count: 0, partitions: new Int32Array(0), offsets: new Float64Array(0) };
    }
    await this.#topics.unlessDeleted(topicName, everyPart(parts, appends));
    return { count: records.count, partitions, offsets, ...(duplicate ? { duplicate } : {}) };
  }

  async topicBatches(
    topicName: string,
    data: Buffer,
    acks: Acks,
    options: ProduceOptions = {},
  ): Promise<ProducedOffsets> {
    const topic = await this.#topics.resolve(topicName);
    const batchBytesMax = this.#topics.config(topic).log.batchBytesMax;
    const { batches } = this.#checkBatches(data, batchBytesMax);
    if (batches.some((b) => b.header.producerId !== -1))
      throw new SluiceError(
        'INVALID_REQUEST',
        "an idempotent producer's batches go to /v1/topics/{topic}/partitions/{partition}/records (its sequence numbers are per partition)",
      );
    const records = batches.flatMap((b) => decodeRecords(data, b.pos));
    const source = recordArraySource(records);
    const partitions = this.#partitionsOf(topic, source);
    const partition = partitions[0]!;
    const replica = this.#topics.replicas.get(topicName, partition);
    const local = replica !== undefined && this.#remote?.forwardTarget(topicName, partition) === undefined;
    if (local && partitions.every((p) => p === partition)) {
      // Every record goes to one partition led here: the batches are stored as they came.
      const result = await this.#appendChecked(topic, replica, data, batches, acks, options);
      if (!result) return { count: 0, partitions: new Int32Array(0), offsets: new Float64Array(0) };
      const offsets = new Float64Array(records.length);
      for (let i = 0; i < offsets.length; i++) offsets[i] = result.baseOffset + i;
      return { count: records.length, partitions, offsets };
    }
    // Spread over partitions: each share is a new batch, in the codec the first batch came in.
    const codec = CODEC_NAMES[batchCodecAt(data, batches[0]!.pos)] ?? 'none';
    return this.from(
      topicName,
      {
        ...source,
        partitionAt: (i) => partitions[i]!,
        encodeBatch: (indexes, nowMs, producer) =>
          compressBatch(source.encodeBatch(indexes, nowMs, producer), codec),
      },
      acks,
      options,
    );
  }

  async initProducer(): Promise<{ producerId: number; producerEpoch: number }> {
    if (!this.#producerIds)
      throw new SluiceError(
        'INVALID_REQUEST',
        'this broker has no metadata quorum to allocate producer ids from',
      );
    return { producerId: await this.#producerIds.next(), producerEpoch: 0 };
  }

  /**
   * Appends pre-built batches in the stored layout without decoding any record: header, sizes and
   * CRC are checked, offsets are assigned in place.
   */
  async batches(
    topicName: string,
    partition: number,
    data: Buffer,
    acks: Acks,
    options: ProduceOptions = {},
  ): Promise<AppendedBatches | undefined> {
    const { topic, replica } = await this.#topics.localReplica(topicName, partition);
    const { batches } = this.#checkBatches(data, replica.log.config.batchBytesMax);
    const result = await this.#appendChecked(topic, replica, data, batches, acks, options);
    if (!result) return undefined;
    return {
      partition,
      baseOffset: result.baseOffset,
      lastOffset: result.lastOffset,
      batchCount: result.batchCount,
      ...(result.duplicate ? { duplicate: true } : {}),
    };
  }

  /**
   * Every header field of a client's batch is checked against its records before anything is
   * appended (the log itself checks only what a stored batch must hold), and with acks=0 a bad
   * batch is still refused to the producer, since the answer goes before the append completes. A
   * compressed batch is decompressed and walked here, once, then stored as it came (or in the
   * topic's compression.type); followers store the leader's bytes without decompressing.
   */
  #checkBatches(data: Buffer, batchBytesMax: number): { batches: SplitBatch[]; recordCount: number } {
    return splitProducedBatches(data, {
      batchBytesMax,
      recordsMax: LIMITS.requestRecordsMax,
      recordBytesMax: batchBytesMax,
      uncompressedBatchBytesMax: LIMITS.uncompressedBatchBytesMax,
    });
  }

  /** Appends checked batches (in the topic's compression.type) as leader; undefined with acks=0. */
  async #appendChecked(
    topic: TopicRecord,
    replica: PartitionReplica,
    data: Buffer,
    batches: readonly SplitBatch[],
    acks: Acks,
    options: ProduceOptions,
  ): Promise<
    { baseOffset: number; lastOffset: number; batchCount: number; duplicate?: boolean } | undefined
  > {
    const batchBytesMax = replica.log.config.batchBytesMax;
    const stored = toCompressionType(
      data,
      batches,
      this.#topics.config(topic).compressionType,
      batchBytesMax,
      this.#compression,
    );
    replica.checkLeaderEpoch(options.leaderEpoch);
    this.#checkAcks(topic, replica, acks);
    const appending = replica.appendAsLeader(stored, { crcChecked: true }).then(async (result) => {
      if (result.duplicate) this.#metrics.duplicate();
      else {
        this.#countIn(replica, result.lastOffset - result.baseOffset + 1, stored.length);
        this.#compression?.appended(stored);
      }
      if (acks === -1) await this.#replicated(replica, result.lastOffset + 1, options.timeoutMs);
      return result;
    });
    if (acks === 0) {
      appending.catch(() => {});
      return undefined;
    }
    return this.#topics.unlessDeleted(topic.name, appending);
  }

  /** acks=all: waits until the in-sync set holds the append (the high watermark reaches its end). */
  #replicated(replica: PartitionReplica, end: number, timeoutMs = DEFAULT_PRODUCE_TIMEOUT_MS): Promise<void> {
    return replica.waitForHighWatermark(end, {
      timeoutMs,
      setTimeout: (fn, ms) => this.#clock.setTimeout(fn, ms),
    });
  }

  #countIn(replica: PartitionReplica, records: number, bytes: number): void {
    const counters = this.#metrics.partition(replica);
    counters.recordsIn.inc(records);
    counters.bytesIn.inc(bytes);
  }

  /** Each record's partition: the one it names, else murmur2 of its key, else this request's sticky one. */
  #partitionsOf(topic: TopicRecord, records: ProduceRecordSource): Int32Array {
    const sticky = this.#stickyPartition++ % topic.partitions;
    const partitions = new Int32Array(records.count);
    for (let i = 0; i < records.count; i++) {
      let partition = records.partitionAt(i);
      if (partition !== -1) {
        if (!Number.isInteger(partition) || partition < 0 || partition >= topic.partitions) {
          throw new SluiceError(
            'UNKNOWN_TOPIC_OR_PARTITION',
            `topic ${topic.name} has no partition ${partition}`,
            { details: { topic: topic.name, partition } },
          );
        }
      } else {
        const key = records.keyAt(i);
        partition = key ? partitionForKey(key, topic.partitions) : sticky;
      }
      partitions[i] = partition;
    }
    return partitions;
  }

  /** acks=all needs min.insync.replicas in sync, checked before anything is appended. */
  #checkAcks(topic: TopicRecord, replica: PartitionReplica, acks: Acks): void {
    if (acks !== -1) return;
    replica.checkEnoughReplicas(this.#topics.config(topic).minInsyncReplicas);
  }
}

/**
 * Waits for every partition's part of a produce (`parts[i]` is the partition of `appends[i]`) and
 * answers for the request as a whole. NOT_ENOUGH_REPLICAS says nothing was appended, so it is
 * passed on only when it holds for every part (or another failure comes first); when another part
 * was, or may have been, appended, the request is indeterminate: NOT_ENOUGH_REPLICAS_AFTER_APPEND,
 * naming those partitions. A request of one partition is answered as its part is.
 */
async function everyPart(parts: readonly number[], appends: readonly Promise<void>[]): Promise<void> {
  const settled = await Promise.allSettled(appends);
  const refusedAll = (s: PromiseSettledResult<void>) =>
    s.status === 'rejected' && s.reason instanceof SluiceError && s.reason.code === 'NOT_ENOUGH_REPLICAS';
  const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (rejected.length === 0) return;
  const error = (rejected.find((s) => !refusedAll(s)) ?? rejected[0]!).reason as unknown;
  const appended = parts.filter((_, i) => !refusedAll(settled[i]!));
  if (!(error instanceof SluiceError) || error.code !== 'NOT_ENOUGH_REPLICAS' || appended.length === 0)
    throw error;
  throw new SluiceError(
    'NOT_ENOUGH_REPLICAS_AFTER_APPEND',
    `${error.message}; the records of partitions ${appended.join(', ')} were appended (or may have been)`,
    { details: { ...error.details, appendedPartitions: appended }, cause: error },
  );
}

/** One partition's share of a request as one batch, after checking each record's and the batch's size. */
function encodePartitionBatch(
  records: ProduceRecordSource,
  indexes: number[],
  partition: number,
  recordBytesMax: number,
  nowMs: number,
  producer: ProducerFields | undefined,
  compressionType: CompressionType,
): Buffer {
  for (const i of indexes) {
    const size = records.payloadBytesAt(i);
    if (size > recordBytesMax) {
      throw new SluiceError(
        'RECORD_TOO_LARGE',
        `record ${i} is ${size} bytes; the limit is ${recordBytesMax}`,
        {
          details: { index: i },
        },
      );
    }
  }
  const plain = records.encodeBatch(indexes, nowMs, producer);
  // The broker builds these batches: in the topic's compression.type when it names a codec.
  const batch = compressionType === 'producer' ? plain : compressBatch(plain, compressionType);
  if (batch.length > recordBytesMax) {
    throw new SluiceError(
      'MESSAGE_TOO_LARGE',
      `the records for partition ${partition} make a ${batch.length}-byte batch; the limit is ${recordBytesMax}`,
    );
  }
  return batch;
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
