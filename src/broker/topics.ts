import { SluiceError } from '../common/errors.js';
import {
  type ConfigValue,
  parseTopicConfig,
  parseTopicConfigDefaults,
  type TopicConfig,
  type TopicConfigDefaults,
} from '../protocol/topic-config.js';
import type { PartitionReplica, ReplicaRole } from '../replication/replica.js';
import type { ReplicaManager } from '../replication/replica-manager.js';
import type { TopicRecord, TopicRegistry } from './topic-registry.js';

/**
 * The topics this node knows, their parsed configs and their partitions' replicas: the lookups
 * that admin, produce and fetch share. A topic's configs are parsed when it is loaded or changed,
 * never per request.
 */
export class Topics {
  readonly #registry: TopicRegistry;
  readonly #replicas: ReplicaManager;
  readonly #catchUp: (() => Promise<void>) | undefined;
  #settle: (() => Promise<void>) | undefined;
  readonly defaults: TopicConfigDefaults;
  /** Each topic's parsed configs with the text they were parsed from (another node may change them). */
  readonly #configs = new Map<string, { text: string; config: TopicConfig }>();
  readonly #byRecord = new WeakMap<TopicRecord, TopicConfig>();

  constructor(
    options: { defaultConfigs: Record<string, ConfigValue> },
    deps: { registry: TopicRegistry; replicas: ReplicaManager; catchUp?: () => Promise<void> },
  ) {
    this.#catchUp = deps.catchUp;
    this.defaults = parseTopicConfigDefaults(options.defaultConfigs);
    this.#registry = deps.registry;
    this.#replicas = deps.replicas;
  }

  get clusterId(): string {
    return this.#registry.clusterId;
  }

  get replicas(): ReplicaManager {
    return this.#replicas;
  }

  /** The topic's id in the metadata log; the all-zero id where topics have none (a file registry). */
  topicId(name: string): string {
    return this.#registry.topicId?.(name) ?? 'AAAAAAAAAAAAAAAAAAAAAA';
  }

  /** A partition's leadership as the metadata records it (undefined on a node alone or when unknown). */
  role(topic: string, partition: number): ReplicaRole | undefined {
    return this.#registry.partitionRole(topic, partition);
  }

  list(): TopicRecord[] {
    return this.#registry.list();
  }

  find(name: string): TopicRecord | undefined {
    return this.#registry.get(name);
  }

  /**
   * The topic, after catching up with the cluster's metadata when this node does not know it (it
   * may have been created through another node a moment ago); else UNKNOWN_TOPIC_OR_PARTITION.
   */
  async resolve(name: string, partition?: number): Promise<TopicRecord> {
    const known = this.#registry.get(name);
    if (known && (partition === undefined || partition < known.partitions)) return known;
    if (this.#catchUp) await this.#catchUp();
    return this.get(name);
  }

  /** Catches up with the cluster's metadata unless every one of the topics is known here. */
  async catchUpUnless(names: readonly string[]): Promise<void> {
    if (this.#catchUp && names.some((name) => !this.#registry.get(name))) await this.#catchUp();
  }

  /**
   * The topic and this node's replica of the partition, for a produce or fetch: after catching up
   * with the metadata when the topic or partition is not known here, and after the partition's log
   * is opened when it was placed here a moment ago. A partition another node holds is
   * NOT_LEADER_OR_FOLLOWER (naming the leader), so that a client goes there.
   */
  async localReplica(
    name: string,
    partition: number,
  ): Promise<{ topic: TopicRecord; replica: PartitionReplica }> {
    let topic = await this.resolve(name, partition);
    let local = Number.isInteger(partition) ? this.#replicas.get(topic.name, partition) : undefined;
    if (local?.isLeader) return { topic, replica: local };
    if (local && this.#catchUp && this.#settle) {
      // Not the leader as this node knows it: the controller may have made it the leader a moment
      // ago. Catch up before refusing (only this path pays for it).
      await this.#catchUp();
      await this.#settle();
      local = this.#replicas.get(topic.name, partition) ?? local;
    }
    if (local) return { topic, replica: local };
    let role = Number.isInteger(partition) ? this.#registry.partitionRole(name, partition) : undefined;
    if (role && !role.replicas.includes(this.#replicas.nodeId) && this.#catchUp) {
      // Placed elsewhere as this node knows it: the topic may have been deleted and created again,
      // or reassigned, a moment ago. Catch up before refusing (only this path pays for it).
      await this.#catchUp();
      topic = this.get(name);
      role = this.#registry.partitionRole(name, partition);
      local = this.#replicas.get(name, partition);
      if (local) return { topic, replica: local };
    }
    if (role && !role.replicas.includes(this.#replicas.nodeId)) this.#refuseElsewhere(name, partition, role);
    if (role && this.#settle) await this.#settle();
    return { topic, replica: this.replica(topic, partition) };
  }

  #refuseElsewhere(name: string, partition: number, role: ReplicaRole): never {
    if (role.leader < 0) {
      throw new SluiceError(
        'LEADER_NOT_AVAILABLE',
        `partition ${name}/${partition} has no leader right now`,
        {
          details: { topic: name, partition, leader: -1 },
        },
      );
    }
    throw new SluiceError(
      'NOT_LEADER_OR_FOLLOWER',
      `node ${this.#replicas.nodeId} does not hold ${name}/${partition}; node ${role.leader} leads it`,
      { details: { topic: name, partition, leader: role.leader } },
    );
  }

  /** Called once by the broker: waits until the partitions placed here are open. */
  settleWith(settle: () => Promise<void>): void {
    this.#settle = settle;
  }

  /** The topic, or UNKNOWN_TOPIC_OR_PARTITION. */
  get(name: string): TopicRecord {
    const topic = this.#registry.get(name);
    if (!topic)
      throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${name} does not exist`, {
        details: { topic: name },
      });
    return topic;
  }

  /** The topic's parsed configs over the broker's defaults. */
  config(topic: TopicRecord): TopicConfig {
    // Registries hand out the same record while a topic is unchanged: no text to compare per request.
    const known = this.#byRecord.get(topic);
    if (known) return known;
    const text = JSON.stringify(topic.configs);
    const cached = this.#configs.get(topic.name);
    const config = cached?.text === text ? cached.config : parseTopicConfig(topic.configs, this.defaults);
    this.#configs.set(topic.name, { text, config });
    this.#byRecord.set(topic, config);
    return config;
  }

  /** Parses configs as a topic would take them; throws INVALID_CONFIG. */
  parse(configs: Record<string, ConfigValue>): TopicConfig {
    return parseTopicConfig(configs, this.defaults);
  }

  /** Stores the topic durably with its already parsed configs. */
  async put(topic: TopicRecord, config: TopicConfig): Promise<void> {
    await this.#registry.put(topic);
    this.#configs.set(topic.name, { text: JSON.stringify(topic.configs), config });
  }

  async remove(name: string): Promise<void> {
    await this.#registry.remove(name);
    this.#configs.delete(name);
  }

  /** The partition's replica on this node, or UNKNOWN_TOPIC_OR_PARTITION. */
  replica(topic: TopicRecord, partition: number): PartitionReplica {
    const replica =
      Number.isInteger(partition) && partition >= 0 && partition < topic.partitions
        ? this.#replicas.get(topic.name, partition)
        : undefined;
    if (!replica) {
      throw new SluiceError(
        'UNKNOWN_TOPIC_OR_PARTITION',
        `topic ${topic.name} has no partition ${partition}`,
        { details: { topic: topic.name, partition } },
      );
    }
    return replica;
  }

  /**
   * A log operation that fails because its topic was deleted meanwhile (the log closed under it)
   * is reported as the missing topic it now is, not as a storage error.
   */
  async unlessDeleted<T>(topicName: string, operation: Promise<T>): Promise<T> {
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
}
