import type { LogConfig } from '../protocol/topic-config.js';
import type { LogManager } from '../storage/log-manager.js';
import { PartitionReplica, type ReplicaRole } from './replica.js';

/**
 * The partitions this node holds, each as a `PartitionReplica` over its log. A partition deleted and
 * created again gets a new replica object, so that work started on the old one can tell.
 */
export class ReplicaManager {
  readonly #logs: LogManager;
  readonly nodeId: number;
  readonly #replicas = new Map<string, PartitionReplica>();

  readonly #canLead: (() => boolean) | undefined;

  constructor(options: { nodeId: number; canLead?: () => boolean }, deps: { logs: LogManager }) {
    this.#canLead = options.canLead;
    this.nodeId = options.nodeId;
    this.#logs = deps.logs;
  }

  /**
   * Opens (or creates) the partition's log and returns its replica; an open one takes `config`. The
   * replica takes `role` (the leadership the metadata records); without it this node leads alone
   * at epoch 0.
   */
  async getOrCreate(
    topic: string,
    partition: number,
    config: LogConfig,
    role?: ReplicaRole,
    nowMs = 0,
  ): Promise<PartitionReplica> {
    const log = await this.#logs.getOrCreate(topic, partition, config);
    const key = keyOf(topic, partition);
    const existing = this.#replicas.get(key);
    if (existing && existing.log === log) {
      if (role) existing.setRole(role, nowMs);
      return existing;
    }
    const replica = new PartitionReplica(
      {
        topic,
        partition,
        nodeId: this.nodeId,
        replicas: role?.replicas ?? [this.nodeId],
        leaderEpoch: role?.leaderEpoch ?? 0,
        ...(role ? { leader: role.leader, isr: role.isr } : {}),
        ...(role?.partitionEpoch !== undefined ? { partitionEpoch: role.partitionEpoch } : {}),
        // A replicated partition knows only what its checkpoint says was committed.
        ...(role && role.replicas.length > 1 ? { highWatermark: log.highWatermarkCheckpoint } : {}),
        nowMs,
        ...(this.#canLead ? { canLead: this.#canLead } : {}),
      },
      { log },
    );
    this.#replicas.set(key, replica);
    return replica;
  }

  get(topic: string, partition: number): PartitionReplica | undefined {
    const replica = this.#replicas.get(keyOf(topic, partition));
    // The log may have been dropped under the replica (a delete of its directory).
    return replica && this.#logs.get(topic, partition) === replica.log ? replica : undefined;
  }

  /** Every open replica of this node. */
  *all(): IterableIterator<{ replica: PartitionReplica }> {
    for (const replica of this.#replicas.values())
      if (this.#logs.get(replica.topic, replica.partition) === replica.log) yield { replica };
  }

  /** Partition logs on disk, whether or not a topic owns them. */
  listLogs(): { topic: string; partition: number }[] {
    return this.#logs.list().map(({ topic, partition }) => ({ topic, partition }));
  }

  /** Whether a log for the partition is open (leftovers of an interrupted delete included). */
  hasLog(topic: string, partition: number): boolean {
    return this.#logs.get(topic, partition) !== undefined;
  }

  async delete(topic: string, partition: number): Promise<void> {
    this.#replicas.delete(keyOf(topic, partition));
    await this.#logs.deletePartition(topic, partition);
  }
}

function keyOf(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
