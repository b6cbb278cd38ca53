import { assert } from '../common/assert.js';
import { SluiceError } from '../common/errors.js';
import type { PartitionInfo } from '../protocol/api.js';
import type { AppendResult, PartitionLog, ReadResult } from '../storage/partition-log.js';
import { enoughInSync, highWatermarkOf } from './isr.js';

export interface PartitionReplicaOptions {
  topic: string;
  partition: number;
  /** This node's id. */
  nodeId: number;
  /** Every replica of the partition, this node first when it leads. */
  replicas: readonly number[];
  leaderEpoch: number;
}

/**
 * One partition as this node holds it: its log, and the replica state around it (leader, leader
 * epoch, in-sync set, high watermark). The broker asks the replica, never the log, what may be
 * exposed to consumers and which epoch an append carries.
 *
 * A single node leads every partition with itself as the only replica and the only in-sync
 * replica, at leader epoch 0, so the high watermark follows the log end offset. Replication will
 * add followers' log end offsets to the in-sync set that `highWatermarkOf` takes.
 */
export class PartitionReplica {
  readonly topic: string;
  readonly partition: number;
  readonly log: PartitionLog;
  readonly #nodeId: number;
  readonly #replicas: readonly number[];
  readonly #leaderEpoch: number;
  #highWatermark: number;

  constructor(options: PartitionReplicaOptions, deps: { log: PartitionLog }) {
    assert(options.replicas.includes(options.nodeId), 'a replica is one of its partition replicas');
    this.topic = options.topic;
    this.partition = options.partition;
    this.#nodeId = options.nodeId;
    this.#replicas = [...options.replicas];
    this.#leaderEpoch = options.leaderEpoch;
    this.log = deps.log;
    this.#highWatermark = highWatermarkOf(0, [deps.log.logEndOffset]);
  }

  get leaderId(): number {
    return this.#nodeId;
  }

  get leaderEpoch(): number {
    return this.#leaderEpoch;
  }

  get replicas(): readonly number[] {
    return this.#replicas;
  }

  /** The in-sync set; on a single node only the leader itself. */
  get inSyncReplicas(): readonly number[] {
    return [this.#nodeId];
  }

  get logStartOffset(): number {
    return this.log.logStartOffset;
  }

  get logEndOffset(): number {
    return this.log.logEndOffset;
  }

  /** Offsets below it are on every in-sync replica; consumers see nothing at or above it. */
  get highWatermark(): number {
    this.#highWatermark = highWatermarkOf(this.#highWatermark, this.#inSyncLogEnds());
    assert(this.#highWatermark <= this.log.logEndOffset, 'the high watermark never passes the log end');
    return this.#highWatermark;
  }

  /**
   * Refuses an `acks=all` produce before anything is appended when the in-sync set is smaller
   * than `min.insync.replicas`.
   */
  checkEnoughReplicas(minInsyncReplicas: number): void {
    const inSync = this.inSyncReplicas.length;
    if (enoughInSync(inSync, minInsyncReplicas)) return;
    throw new SluiceError(
      'NOT_ENOUGH_REPLICAS',
      `${inSync} in-sync replica, min.insync.replicas is ${minInsyncReplicas}; nothing was appended`,
      { details: { isr: inSync, minInSyncReplicas: minInsyncReplicas } },
    );
  }

  /** Appends as the leader: offsets assigned here, every batch stamped with the leader epoch. */
  appendAsLeader(data: Buffer, options: { crcChecked?: boolean } = {}): Promise<AppendResult> {
    return this.log.append(data, {
      assignOffsets: true,
      leaderEpoch: this.#leaderEpoch,
      ...(options.crcChecked ? { crcChecked: true } : {}),
    });
  }

  /**
   * Whole batches from `offset`, none at or above the high watermark, each CRC-checked (CRC-32C
   * runs at gigabytes per second): a damaged batch ends the read before it, and a read that starts
   * at one is refused with CORRUPT_MESSAGE naming the next readable offset. No path, zero-copy
   * msgpack included, serves a damaged stored batch.
   */
  read(
    offset: number,
    options: { maxBytes: number; reserve?: { before: number; after: number } },
  ): Promise<ReadResult> {
    return this.log.read(offset, { ...options, maxOffset: this.highWatermark, verify: true });
  }

  /**
   * Calls `listener` each time the high watermark may have advanced (with the log end offset);
   * returns the unsubscribe function.
   */
  onHighWatermarkAdvance(listener: (logEndOffset: number) => void): () => void {
    return this.log.onAppend(listener);
  }

  describe(): PartitionInfo {
    return {
      partition: this.partition,
      leader: this.leaderId,
      leaderEpoch: this.leaderEpoch,
      replicas: [...this.replicas],
      isr: [...this.inSyncReplicas],
      logStartOffset: this.logStartOffset,
      logEndOffset: this.logEndOffset,
      highWatermark: this.highWatermark,
    };
  }

  #inSyncLogEnds(): number[] {
    return [this.log.logEndOffset];
  }
}
