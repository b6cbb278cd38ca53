import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import type { PartitionReplica } from '../replication/replica.js';
import type { FetchWaiters } from './fetch-waiters.js';
import type { BrokerMetrics } from './metrics.js';
import type { LocalPartition, TopicRegistry } from './topic-registry.js';
import type { Topics } from './topics.js';

/** What the reconciler needs of the node's partition logs beyond the replicas. */
export interface TopicIdStore {
  readTopicId(topic: string, partition: number): Promise<string | undefined>;
  writeTopicId(topic: string, partition: number, topicId: string): Promise<void>;
}

/**
 * Makes the partitions this node holds match what the registry says it should hold, after every
 * change and at start: it opens the logs of partitions placed here, gives each replica the
 * leadership the metadata records, applies changed topic configs, and deletes the logs of
 * partitions no longer placed here. A log whose directory names another topic id (a topic deleted
 * and created again under its name) is deleted before the new one is created, so the new topic
 * never shows the old records. Passes run one at a time and are idempotent: applying the same
 * state twice changes nothing, so entries replayed after a restart are harmless.
 */
export class PartitionReconciler {
  readonly #nodeId: number;
  readonly #registry: TopicRegistry;
  readonly #topics: Topics;
  readonly #ids: TopicIdStore;
  readonly #waiters: FetchWaiters;
  readonly #metrics: BrokerMetrics;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #onPartitions:
    | ((held: { replica: PartitionReplica; topicId: string; leader: number }[]) => void)
    | undefined;
  /** The topic id of each open replica, by partition key. */
  readonly #topicIds = new Map<string, string>();
  /** The config text each open replica's log last took, by partition key. */
  readonly #configOf = new Map<string, string>();
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(
    options: { nodeId: number },
    deps: {
      registry: TopicRegistry;
      topics: Topics;
      ids: TopicIdStore;
      waiters: FetchWaiters;
      metrics: BrokerMetrics;
      logger: Logger;
      clock: Clock;
      /** Told after every pass which partitions this node holds and who leads each (replication). */
      onPartitions?: (held: { replica: PartitionReplica; topicId: string; leader: number }[]) => void;
    },
  ) {
    this.#clock = deps.clock;
    this.#onPartitions = deps.onPartitions;
    this.#nodeId = options.nodeId;
    this.#registry = deps.registry;
    this.#topics = deps.topics;
    this.#ids = deps.ids;
    this.#waiters = deps.waiters;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  /** The first pass, then one after every registry change. */
  async start(): Promise<void> {
    this.#unsubscribe = this.#registry.onChange(() => {
      this.sync().catch((error) => this.#logger.error({ err: error }, 'applying a metadata change failed'));
    });
    await this.sync();
  }

  close(): void {
    this.#unsubscribe?.();
  }

  /** Resolves once a pass that started after this call has finished. */
  sync(): Promise<void> {
    if (!this.#running) {
      this.#running = this.#pass().finally(() => {
        this.#running = undefined;
      });
      return this.#running;
    }
    // A pass is running: one more follows it, shared by every caller that arrives meanwhile.
    this.#next ??= this.#running
      .catch(() => {})
      .then(() => {
        this.#next = undefined;
        return this.sync();
      });
    return this.#next;
  }

  async #pass(): Promise<void> {
    const desired = new Map<string, LocalPartition>();
    for (const p of this.#registry.localPartitions(this.#nodeId)) desired.set(keyOf(p.topic, p.partition), p);
    const replicas = this.#topics.replicas;
    const dropped = new Set<PartitionReplica>();
    const goneTopics = new Set<string>();
    for (const { topic, partition } of replicas.listLogs()) {
      const key = keyOf(topic, partition);
      const want = desired.get(key);
      let known = this.#topicIds.get(key);
      if (known === undefined && want) {
        known = await this.#ids.readTopicId(topic, partition);
        // A directory without an id is the single-node release's: it is the topic of its name.
        if (known === undefined) {
          await this.#ids.writeTopicId(topic, partition, want.topicId);
          known = want.topicId;
        }
        this.#topicIds.set(key, known);
      }
      if (want && known === want.topicId) continue;
      const replica = replicas.get(topic, partition);
      if (replica) dropped.add(replica);
      this.#topicIds.delete(key);
      this.#configOf.delete(key);
      if (!this.#topics.find(topic)) goneTopics.add(topic);
      // Fetches waiting on it answer now (UNKNOWN_TOPIC_OR_PARTITION) instead of at their deadline.
      if (replica) this.#waiters.wake(new Set([replica]));
      await replicas.delete(topic, partition);
    }
    for (const name of goneTopics) this.#metrics.forgetTopic(name);
    const held: { replica: PartitionReplica; topicId: string; leader: number }[] = [];
    const now = this.#clock.monotonicMs();
    const apply = async ([key, want]: [string, LocalPartition]) => {
      const topic = this.#topics.find(want.topic);
      if (!topic) return;
      const config = this.#topics.config(topic);
      const configText = JSON.stringify(topic.configs);
      const isNew = !this.#topicIds.has(key);
      const replica = await replicas.getOrCreate(want.topic, want.partition, config.log, want.role, now);
      replica.setMinInsync(config.minInsyncReplicas);
      held.push({ replica, topicId: want.topicId, leader: want.role.leader });
      if (isNew) {
        await this.#ids.writeTopicId(want.topic, want.partition, want.topicId);
        this.#topicIds.set(key, want.topicId);
      } else if (this.#configOf.get(key) !== configText) {
        replica.log.updateConfig(config.log);
      }
      this.#configOf.set(key, configText);
    };
    // Partitions are independent: a topic of many partitions opens its logs (each a few fsyncs)
    // several at a time.
    const work = [...desired];
    let next = 0;
    const worker = async () => {
      while (next < work.length) await apply(work[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, work.length) }, worker));
    this.#onPartitions?.(held);
  }
}

/** Partition logs opened or created at once by one pass. */
const OPEN_CONCURRENCY = 16;

function keyOf(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
