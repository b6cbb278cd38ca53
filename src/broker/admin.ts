import type { Clock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import type { Logger } from '../common/logger.js';
import type { ClusterResponse, MetadataResponse, TopicDescription } from '../protocol/api.js';
import { TOPIC_NAME_PATTERN } from '../protocol/api.js';
import type { ConfigValue } from '../protocol/topic-config.js';
import type { PartitionReplica } from '../replication/replica.js';
import type { AdminApi, CreateTopicRequest, TopicSummary } from './api.js';
import type { FetchWaiters } from './fetch-waiters.js';
import type { BrokerMetrics } from './metrics.js';
import type { TopicRecord } from './topic-registry.js';
import type { Topics } from './topics.js';

export interface AdminOptions {
  nodeId: number;
  version: string;
  /** Where clients reach this node; read when asked, since the port is known only once bound. */
  address: () => { host: string; port: number };
  /**
   * The cluster as the metadata quorum sees it (controller, registered brokers, quorum status);
   * without it, this node alone.
   */
  clusterView?: () => Pick<ClusterResponse, 'controllerId' | 'nodes' | 'metadata'>;
}

/**
 * Topic admin on one node: create, describe, delete, configs, partitions, and the cluster view.
 * Operations run one at a time, so that two creates of one name cannot interleave.
 */
export class AdminService implements AdminApi {
  readonly #options: AdminOptions;
  readonly #topics: Topics;
  readonly #waiters: FetchWaiters;
  readonly #clock: Clock;
  readonly #metrics: BrokerMetrics;
  readonly #logger: Logger;
  #serial: Promise<unknown> = Promise.resolve();

  constructor(
    options: AdminOptions,
    deps: { topics: Topics; waiters: FetchWaiters; clock: Clock; metrics: BrokerMetrics; logger: Logger },
  ) {
    this.#options = options;
    this.#topics = deps.topics;
    this.#waiters = deps.waiters;
    this.#clock = deps.clock;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  /**
   * Opens the logs of every known topic (at start). Partition directories that no topic owns (a
   * crash between deleting a topic's definition and its data, or between creating a topic's logs
   * and its definition) are removed, so that a topic created later under the same name starts
   * empty instead of resurrecting old records.
   */
  async start(): Promise<void> {
    const replicas = this.#topics.replicas;
    for (const { topic, partition } of replicas.listLogs()) {
      const owner = this.#topics.find(topic);
      if (!owner || partition >= owner.partitions) await replicas.delete(topic, partition);
    }
    for (const topic of this.#topics.list()) {
      const { log } = this.#topics.config(topic);
      for (let p = 0; p < topic.partitions; p++) await replicas.getOrCreate(topic.name, p, log);
    }
  }

  cluster(): ClusterResponse {
    const { nodeId, version } = this.#options;
    const { host, port } = this.#options.address();
    const base = { clusterId: this.#topics.clusterId, nodeId, version };
    if (!this.#options.clusterView)
      return { ...base, controllerId: nodeId, nodes: [{ id: nodeId, host, port, rack: null }] };
    const view = this.#options.clusterView();
    // This node's own endpoint is the one it is bound to (a port chosen at bind time included).
    const nodes = view.nodes.map((n) => (n.id === nodeId ? { ...n, host, port } : n));
    return { ...base, ...view, nodes };
  }

  metadata(names?: readonly string[]): MetadataResponse {
    const cluster = this.cluster();
    const wanted = names ?? this.#topics.list().map((t) => t.name);
    const topics: MetadataResponse['topics'] = [];
    const unknownTopics: string[] = [];
    for (const name of wanted) {
      const topic = this.#topics.find(name);
      if (!topic) {
        unknownTopics.push(name);
        continue;
      }
      topics.push({
        name,
        topicId: this.#topics.topicId(name),
        partitions: Array.from({ length: topic.partitions }, (_, p) => {
          const { partition, leader, leaderEpoch, replicas, isr } = this.#topics.replica(topic, p).describe();
          return { partition, leader, leaderEpoch, replicas, isr };
        }),
      });
    }
    return {
      clusterId: cluster.clusterId,
      controllerId: cluster.controllerId,
      nodes: cluster.nodes.map((n) => ({
        id: n.id,
        host: n.host,
        port: n.port,
        rack: n.rack ?? null,
        fenced: n.fenced ?? false,
      })),
      topics,
      unknownTopics,
    };
  }

  listTopics(): TopicSummary[] {
    return this.#topics
      .list()
      .map((t) => ({ name: t.name, partitions: t.partitions, replicationFactor: t.replicationFactor }));
  }

  createTopic(request: CreateTopicRequest): Promise<TopicDescription> {
    return this.#serially(() => this.#createTopic(request));
  }

  async #createTopic(request: CreateTopicRequest): Promise<TopicDescription> {
    validateTopicName(request.name);
    if (this.#topics.find(request.name)) {
      throw new SluiceError('TOPIC_ALREADY_EXISTS', `topic ${request.name} already exists`, {
        details: { topic: request.name },
      });
    }
    const partitions = request.partitions ?? this.#topics.defaults.numPartitions;
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
    const config = this.#topics.parse(configs);
    const topic: TopicRecord = {
      name: request.name,
      partitions,
      replicationFactor,
      configs,
    };
    const replicas = this.#topics.replicas;
    for (let p = 0; p < partitions; p++) {
      // Leftovers of an interrupted delete must not become the new topic's records.
      if (replicas.hasLog(topic.name, p)) await replicas.delete(topic.name, p);
      await replicas.getOrCreate(topic.name, p, config.log);
    }
    await this.#topics.put(topic, config);
    this.#logger.info({ topic: topic.name, partitions, configs: Object.keys(configs) }, 'topic created');
    return this.describeTopic(topic.name);
  }

  describeTopic(name: string): TopicDescription {
    const topic = this.#topics.get(name);
    const partitions = Array.from({ length: topic.partitions }, (_, p) =>
      this.#topics.replica(topic, p).describe(),
    );
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
    const topic = this.#topics.get(name);
    const replicas = this.#topics.replicas;
    const open = new Set<PartitionReplica>();
    for (let p = 0; p < topic.partitions; p++) {
      const replica = replicas.get(name, p);
      if (replica) open.add(replica);
    }
    await this.#topics.remove(name);
    // Fetches waiting on these partitions answer now (with UNKNOWN_TOPIC_OR_PARTITION) instead of
    // at their deadline.
    this.#waiters.wake(open);
    for (let p = 0; p < topic.partitions; p++) await replicas.delete(name, p);
    this.#metrics.forgetTopic(name);
    this.#logger.info({ topic: name, partitions: topic.partitions }, 'topic deleted');
    return { name, deleted: true };
  }

  alterConfigs(name: string, changes: Record<string, ConfigValue | null>): Promise<TopicDescription> {
    return this.#serially(() => this.#alterConfigs(name, changes));
  }

  async #alterConfigs(name: string, changes: Record<string, ConfigValue | null>): Promise<TopicDescription> {
    const topic = this.#topics.get(name);
    const configs = { ...topic.configs };
    for (const [key, value] of Object.entries(changes)) {
      if (value === null) delete configs[key];
      else configs[key] = value;
    }
    const config = this.#topics.parse(configs);
    const updated = { ...topic, configs };
    await this.#topics.put(updated, config);
    for (let p = 0; p < topic.partitions; p++) this.#topics.replica(updated, p).log.updateConfig(config.log);
    // The names only: a config value may be anything a client sent.
    this.#logger.info({ topic: name, configs: Object.keys(changes) }, 'topic configs changed');
    return this.describeTopic(name);
  }

  addPartitions(name: string, partitions: number): Promise<TopicDescription> {
    return this.#serially(() => this.#addPartitions(name, partitions));
  }

  async #addPartitions(name: string, partitions: number): Promise<TopicDescription> {
    const topic = this.#topics.get(name);
    if (
      !Number.isInteger(partitions) ||
      partitions <= topic.partitions ||
      partitions > LIMITS.partitionsMax
    ) {
      throw new SluiceError(
        'INVALID_PARTITIONS',
        `topic ${name} has ${topic.partitions} partitions; the new count must be larger`,
        { details: { current: topic.partitions } },
      );
    }
    const updated = { ...topic, partitions };
    const config = this.#topics.config(topic);
    for (let p = topic.partitions; p < partitions; p++)
      await this.#topics.replicas.getOrCreate(name, p, config.log);
    await this.#topics.put(updated, config);
    this.#logger.info({ topic: name, from: topic.partitions, partitions }, 'topic partitions added');
    return this.describeTopic(name);
  }

  #serially<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#serial.then(operation);
    // Only the order matters here; each operation's own error goes to its caller.
    this.#serial = result.catch(() => {});
    return result;
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
