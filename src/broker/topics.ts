import { SluiceError } from '../common/errors.js';
import {
  type ConfigValue,
  parseTopicConfig,
  parseTopicConfigDefaults,
  type TopicConfig,
  type TopicConfigDefaults,
} from '../protocol/topic-config.js';
import type { PartitionReplica } from '../replication/replica.js';
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
  readonly defaults: TopicConfigDefaults;
  readonly #configs = new Map<string, TopicConfig>();

  constructor(
    options: { defaultConfigs: Record<string, ConfigValue> },
    deps: { registry: TopicRegistry; replicas: ReplicaManager },
  ) {
    this.defaults = parseTopicConfigDefaults(options.defaultConfigs);
    this.#registry = deps.registry;
    this.#replicas = deps.replicas;
    for (const topic of this.#registry.list())
      this.#configs.set(topic.name, parseTopicConfig(topic.configs, this.defaults));
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

  list(): TopicRecord[] {
    return this.#registry.list();
  }

  find(name: string): TopicRecord | undefined {
    return this.#registry.get(name);
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
    let config = this.#configs.get(topic.name);
    if (!config) {
      config = parseTopicConfig(topic.configs, this.defaults);
      this.#configs.set(topic.name, config);
    }
    return config;
  }

  /** Parses configs as a topic would take them; throws INVALID_CONFIG. */
  parse(configs: Record<string, ConfigValue>): TopicConfig {
    return parseTopicConfig(configs, this.defaults);
  }

  /** Stores the topic durably with its already parsed configs. */
  async put(topic: TopicRecord, config: TopicConfig): Promise<void> {
    await this.#registry.put(topic);
    this.#configs.set(topic.name, config);
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
