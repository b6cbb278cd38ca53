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
  /** The node that leads the partition (-1: none); this node when absent. */
  leader?: number;
  /** The in-sync set as the metadata log records it; `[leader]` when absent. */
  isr?: readonly number[];
}

/** A partition's leadership as the metadata log records it. */
export interface ReplicaRole {
  leader: number;
  leaderEpoch: number;
  replicas: readonly number[];
  isr: readonly number[];
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
  #replicas: readonly number[];
  #leaderEpoch: number;
  #leader: number;
  #isr: readonly number[];
  #highWatermark: number;

  constructor(options: PartitionReplicaOptions, deps: { log: PartitionLog }) {
    assert(options.replicas.includes(options.nodeId), 'a replica is one of its partition replicas');
    this.topic = options.topic;
    this.partition = options.partition;
    this.#nodeId = options.nodeId;
    this.#replicas = [...options.replicas];
    this.#leaderEpoch = options.leaderEpoch;
    this.#leader = options.leader ?? options.nodeId;
    this.#isr = [...(options.isr ?? [this.#leader])];
    this.log = deps.log;
    this.#highWatermark = highWatermarkOf(0, [deps.log.logEndOffset]);
  }

  /** The node that leads the partition, -1 when none does. */
  get leaderId(): number {
    return this.#leader;
  }

  /** Whether this node leads the partition: only then does it take appends and serve reads. */
  get isLeader(): boolean {
    return this.#leader === this.#nodeId;
  }

  /**
   * Takes the leadership the metadata log now records. An older leader epoch than the one held is
   * ignored (changes replayed again after a restart arrive in order, never backwards).
   */
  setRole(role: ReplicaRole): void {
    if (role.leaderEpoch < this.#leaderEpoch) return;
    this.#leader = role.leader;
    this.#leaderEpoch = role.leaderEpoch;
    this.#replicas = [...role.replicas];
    this.#isr = [...role.isr];
  }

  /**
   * The leader epoch a client knows, checked as Kafka's KIP-320 does: an older one is
   * FENCED_LEADER_EPOCH (the client's metadata is stale), a newer one UNKNOWN_LEADER_EPOCH (this
   * node has not caught up with the metadata yet). Absent: no check.
   */
  checkLeaderEpoch(epoch: number | undefined): void {
    if (epoch === undefined || epoch === this.#leaderEpoch) return;
    const details = { topic: this.topic, partition: this.partition, leaderEpoch: this.#leaderEpoch };
    if (epoch < this.#leaderEpoch)
      throw new SluiceError(
        'FENCED_LEADER_EPOCH',
        `leader epoch ${epoch} of ${this.topic}/${this.partition} is fenced; the current one is ${this.#leaderEpoch}`,
        { details },
      );
    throw new SluiceError(
      'UNKNOWN_LEADER_EPOCH',
      `leader epoch ${epoch} of ${this.topic}/${this.partition} is newer than ${this.#leaderEpoch}, the latest this node knows`,
      { details },
    );
  }

  /** NOT_LEADER_OR_FOLLOWER unless this node leads the partition; LEADER_NOT_AVAILABLE when none does. */
  requireLeader(): void {
    if (this.isLeader) return;
    const details = { topic: this.topic, partition: this.partition, leader: this.#leader };
    if (this.#leader < 0) {
      throw new SluiceError(
        'LEADER_NOT_AVAILABLE',
        `partition ${this.topic}/${this.partition} has no leader right now`,
        { details },
      );
    }
    throw new SluiceError(
      'NOT_LEADER_OR_FOLLOWER',
      `node ${this.#nodeId} does not lead ${this.topic}/${this.partition}; node ${this.#leader} does`,
      { details },
    );
  }

  get leaderEpoch(): number {
    return this.#leaderEpoch;
  }

  get replicas(): readonly number[] {
    return this.#replicas;
  }

  /** The in-sync set the metadata log records; until replication lands, only the leader. */
  get inSyncReplicas(): readonly number[] {
    return this.#isr;
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
    this.requireLeader();
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
    this.requireLeader();
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
