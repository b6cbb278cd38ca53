import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import type { OffsetsResponse } from '../protocol/api.js';
import { recordCountOf } from '../protocol/batch.js';
import type { PartitionReplica } from '../replication/replica.js';
import type { FetchApi, FetchOptions, FetchResult } from './api.js';
import { type CompressionMetrics, forClientCodecs } from './compression.js';
import type { FetchWaiters } from './fetch-waiters.js';
import type { BrokerMetrics } from './metrics.js';
import type { Topics } from './topics.js';

/** Fetch and offsets on one node: whole stored batches below the high watermark, long-polling. */
export class FetchService implements FetchApi {
  readonly #topics: Topics;
  readonly #waiters: FetchWaiters;
  readonly #metrics: BrokerMetrics;
  readonly #compression: CompressionMetrics | undefined;

  constructor(deps: {
    topics: Topics;
    waiters: FetchWaiters;
    metrics: BrokerMetrics;
    compression?: CompressionMetrics;
  }) {
    this.#topics = deps.topics;
    this.#waiters = deps.waiters;
    this.#metrics = deps.metrics;
    this.#compression = deps.compression;
  }

  get waiting(): number {
    return this.#waiters.waiting;
  }

  get waitingMax(): number {
    return this.#waiters.waitingMax;
  }

  async read(topicName: string, partition: number, options: FetchOptions): Promise<FetchResult> {
    const { replica } = await this.#topics.localReplica(topicName, partition);
    replica.checkLeaderEpoch(options.leaderEpoch);
    const offset =
      options.offset === 'earliest'
        ? replica.logStartOffset
        : options.offset === 'latest'
          ? replica.highWatermark
          : options.offset;
    const maxBytes = Math.min(options.maxBytes, LIMITS.fetchBytesMax);
    const minBytes = Math.max(1, options.minBytes);
    const readOptions = {
      maxBytes,
      ...(options.reserve ? { reserve: options.reserve } : {}),
      ...(options.allocate ? { allocate: options.allocate } : {}),
    };
    let result = await this.#topics.unlessDeleted(topicName, replica.read(offset, readOptions));
    if (result.data.length < minBytes && options.maxWaitMs > 0 && !options.signal?.aborted) {
      await this.#waiters.wait(
        replica,
        offset,
        minBytes,
        Math.min(options.maxWaitMs, LIMITS.fetchWaitMsMax),
        options.signal,
      );
      // The topic may have been deleted (or deleted and created again) during the wait.
      this.#checkStillThere(topicName, partition, replica);
      result = await this.#topics.unlessDeleted(topicName, replica.read(offset, readOptions));
    }
    if (result.batchCount > 0 && !options.probe) {
      const counters = this.#metrics.partition(replica);
      counters.recordsOut.inc(recordCountOf(result.data));
      counters.bytesOut.inc(result.data.length);
    }
    if (options.acceptCodecs && result.batchCount > 0) {
      const converted = forClientCodecs(result.data, options.acceptCodecs, maxBytes, this.#compression);
      if (converted.changed)
        return {
          data: converted.data,
          batchCount: converted.batchCount,
          offset,
          nextOffset: converted.nextOffset ?? result.nextOffset,
          highWatermark: replica.highWatermark,
          logStartOffset: replica.logStartOffset,
        };
    }
    return {
      data: result.data,
      ...(result.reserved ? { reserved: result.reserved } : {}),
      batchCount: result.batchCount,
      offset,
      nextOffset: result.nextOffset,
      highWatermark: replica.highWatermark,
      logStartOffset: replica.logStartOffset,
    };
  }

  async offsets(
    topicName: string,
    partition: number,
    timestamp?: number,
    leaderEpoch?: number,
  ): Promise<OffsetsResponse> {
    const { replica } = await this.#topics.localReplica(topicName, partition);
    replica.checkLeaderEpoch(leaderEpoch);
    replica.requireReadable();
    const response: OffsetsResponse = {
      partition,
      earliest: replica.logStartOffset,
      latest: replica.highWatermark,
      highWatermark: replica.highWatermark,
    };
    if (timestamp !== undefined) {
      response.timestamp = timestamp;
      // -1 asks for the latest offset, -2 the earliest, as Kafka's ListOffsets.
      response.offset =
        timestamp === -1
          ? replica.highWatermark
          : timestamp === -2
            ? replica.logStartOffset
            : await replica.log.offsetForTimestamp(timestamp);
    }
    return response;
  }

  #checkStillThere(topicName: string, partition: number, replica: PartitionReplica): void {
    if (this.#topics.find(topicName) && this.#topics.replicas.get(topicName, partition) === replica) return;
    throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${topicName} was deleted`, {
      details: { topic: topicName, partition },
    });
  }
}
