import { SluiceError } from '../common/errors.js';
import { type TopicImage, targetReplicas } from '../metadata/image.js';
import type { MetadataLog } from '../metadata/metadata-log.js';
import type { ControllerCommand } from '../protocol/internal-api.js';
import type { ConfigValue } from '../protocol/topic-config.js';
import type { ReplicaRole } from '../replication/replica.js';
import type { LocalPartition, TopicRecord, TopicRegistry } from './topic-registry.js';

/**
 * The broker's topic definitions kept in the metadata log instead of a file: reads come from the
 * image this node has applied, and each change is the controller's records, committed through Raft
 * before it resolves. A topic config value is kept as its JSON text, so that a number stays a number
 * and the string "60000" stays a string, as the client gave them.
 */
export class MetadataTopicRegistry implements TopicRegistry {
  readonly #log: MetadataLog;
  readonly #controller: ControllerChannel;

  constructor(deps: { log: MetadataLog; controller: ControllerChannel }) {
    this.#log = deps.log;
    this.#controller = deps.controller;
  }

  get clusterId(): string {
    const id = this.#log.image.clusterId;
    if (id === null)
      throw new SluiceError('LEADER_NOT_AVAILABLE', 'the cluster has not been bootstrapped yet');
    return id;
  }

  list(): TopicRecord[] {
    const image = this.#log.image;
    return [...image.topicIdsByName.keys()].sort().map((name) => topicRecordOf(image.topic(name)!));
  }

  get(name: string): TopicRecord | undefined {
    const topic = this.#log.image.topic(name);
    return topic ? topicRecordOf(topic) : undefined;
  }

  topicId(name: string): string | undefined {
    return this.#log.image.topic(name)?.topicId;
  }

  localPartitions(nodeId: number): LocalPartition[] {
    const out: LocalPartition[] = [];
    const image = this.#log.image;
    for (const name of [...image.topicIdsByName.keys()].sort()) {
      const topic = image.topic(name)!;
      for (const p of [...topic.partitions.values()].sort((a, b) => a.partition - b.partition)) {
        if (!p.replicas.includes(nodeId)) continue;
        out.push({
          topic: name,
          topicId: topic.topicId,
          partition: p.partition,
          role: {
            leader: p.leader,
            leaderEpoch: p.leaderEpoch,
            partitionEpoch: p.partitionEpoch,
            replicas: p.replicas,
            isr: p.isr,
          },
        });
      }
    }
    return out;
  }

  partitionRole(topic: string, partition: number): ReplicaRole | undefined {
    const p = this.#log.image.topic(topic)?.partitions.get(partition);
    return p
      ? {
          leader: p.leader,
          leaderEpoch: p.leaderEpoch,
          partitionEpoch: p.partitionEpoch,
          replicas: p.replicas,
          isr: p.isr,
          ...(p.elr.length > 0 ? { elr: p.elr } : {}),
        }
      : undefined;
  }

  onChange(listener: () => void): () => void {
    return this.#log.onChange(() => listener());
  }

  /**
   * Creates the topic, or carries out the difference: more partitions, configs set or removed. The
   * active controller decides (wherever it runs); this resolves once this node's image shows it.
   */
  async put(topic: TopicRecord): Promise<void> {
    const existing = this.#log.image.topic(topic.name);
    const configs = Object.fromEntries(Object.entries(topic.configs).map(([k, v]) => [k, JSON.stringify(v)]));
    if (!existing) {
      await this.#controller.submit({
        type: 'createTopic',
        name: topic.name,
        partitions: topic.partitions,
        replicationFactor: topic.replicationFactor,
        configs,
      });
      return;
    }
    if (topic.partitions > existing.partitions.size)
      await this.#controller.submit({
        type: 'addPartitions',
        name: topic.name,
        partitions: topic.partitions,
      });
    const changes: Record<string, string | null> = {};
    for (const [name, text] of Object.entries(configs))
      if (existing.configs.get(name) !== text) changes[name] = text;
    for (const name of existing.configs.keys()) if (!(name in configs)) changes[name] = null;
    if (Object.keys(changes).length > 0)
      await this.#controller.submit({ type: 'alterConfigs', name: topic.name, changes });
  }

  async remove(name: string): Promise<void> {
    await this.#controller.submit({ type: 'deleteTopic', name });
  }
}

/** Where the registry's changes are decided: the active controller (`ControllerService.submit`). */
export interface ControllerChannel {
  /** Resolves once this node's image has applied the decision (with what the controller answered). */
  submit(command: ControllerCommand): Promise<unknown>;
}

/** Each image's topics are converted once (a produce or fetch looks its topic up every time). */
const records = new WeakMap<TopicImage, TopicRecord>();

function topicRecordOf(topic: TopicImage): TopicRecord {
  let record = records.get(topic);
  if (!record) records.set(topic, (record = convert(topic)));
  return record;
}

function convert(topic: TopicImage): TopicRecord {
  const configs: Record<string, ConfigValue> = {};
  for (const [name, text] of topic.configs.entries()) configs[name] = JSON.parse(text) as ConfigValue;
  return {
    name: topic.name,
    partitions: topic.partitions.size,
    replicationFactor: replicationFactorOf(topic),
    configs,
  };
}

/** The replicas a partition keeps once any reassignment in progress completes (partition 0 speaks for the topic). */
function replicationFactorOf(topic: TopicImage): number {
  const p = topic.partitions.get(0);
  return p ? targetReplicas(p).length : 1;
}
