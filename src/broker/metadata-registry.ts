import { SluiceError } from '../common/errors.js';
import type { Controller } from '../metadata/controller.js';
import type { TopicImage } from '../metadata/image.js';
import type { MetadataLog } from '../metadata/metadata-log.js';
import type { MetadataRecord } from '../metadata/records.js';
import type { ConfigValue } from '../protocol/topic-config.js';
import type { TopicRecord, TopicRegistry } from './topic-registry.js';

/**
 * The broker's topic definitions kept in the metadata log instead of a file: reads come from the
 * image this node has applied, and each change is the controller's records, committed through Raft
 * before it resolves. A topic config value is kept as its JSON text, so that a number stays a number
 * and the string "60000" stays a string, as the client gave them.
 */
export class MetadataTopicRegistry implements TopicRegistry {
  readonly #log: MetadataLog;
  readonly #controller: Controller;

  constructor(deps: { log: MetadataLog; controller: Controller }) {
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

  /** Creates the topic, or carries out the difference: more partitions, configs set or removed. */
  async put(topic: TopicRecord): Promise<void> {
    const image = this.#log.image;
    const existing = image.topic(topic.name);
    const records: MetadataRecord[] = [];
    if (!existing) {
      records.push(
        ...this.#controller.createTopic(image, {
          name: topic.name,
          partitions: topic.partitions,
          replicationFactor: topic.replicationFactor,
          configs: Object.fromEntries(Object.entries(topic.configs).map(([k, v]) => [k, JSON.stringify(v)])),
        }),
      );
    } else {
      if (topic.partitions > existing.partitions.size)
        records.push(...this.#controller.addPartitions(image, topic.name, topic.partitions));
      const changes: Record<string, string | null> = {};
      for (const [name, value] of Object.entries(topic.configs)) {
        const text = JSON.stringify(value);
        if (existing.configs.get(name) !== text) changes[name] = text;
      }
      for (const name of existing.configs.keys()) if (!(name in topic.configs)) changes[name] = null;
      if (Object.keys(changes).length > 0) {
        // A config record does not depend on the partition records before it in the entry.
        records.push(...this.#controller.alterConfigs(image, topic.name, changes));
      }
    }
    await this.#log.propose(records);
  }

  topicId(name: string): string | undefined {
    return this.#log.image.topic(name)?.topicId;
  }

  async remove(name: string): Promise<void> {
    await this.#log.propose(this.#controller.deleteTopic(this.#log.image, name));
  }
}

function topicRecordOf(topic: TopicImage): TopicRecord {
  const configs: Record<string, ConfigValue> = {};
  for (const [name, text] of topic.configs.entries()) configs[name] = JSON.parse(text) as ConfigValue;
  return {
    name: topic.name,
    partitions: topic.partitions.size,
    replicationFactor: topic.partitions.get(0)?.replicas.length ?? 1,
    configs,
  };
}
