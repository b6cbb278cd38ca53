import { randomUUID } from 'node:crypto';
import { SluiceError } from '../common/errors.js';
import type { ConfigValue } from '../protocol/topic-config.js';
import type { FileSystem } from '../storage/fs.js';

export interface TopicRecord {
  name: string;
  partitions: number;
  replicationFactor: number;
  configs: Record<string, ConfigValue>;
}

/**
 * Where a node keeps its cluster id and topic definitions. The single-node broker keeps them in one
 * file; a multi-node cluster replays them from the metadata quorum. The broker depends only on
 * this interface.
 */
export interface TopicRegistry {
  readonly clusterId: string;
  list(): TopicRecord[];
  get(name: string): TopicRecord | undefined;
  put(topic: TopicRecord): Promise<void>;
  remove(name: string): Promise<void>;
  /** The topic's id, where the registry keeps ids (the metadata log does; the file does not). */
  topicId?(name: string): string | undefined;
}

/**
 * `${dataDir}/__cluster/topics.json`, replaced atomically (temporary file, fsync, rename) on each
 * change, so that a crash leaves either the old or the new definition, never a mix.
 */
export class FileTopicRegistry implements TopicRegistry {
  #topics = new Map<string, TopicRecord>();
  #writing: Promise<void> = Promise.resolve();

  private constructor(
    readonly clusterId: string,
    private readonly path: string,
    private readonly fs: FileSystem,
  ) {}

  static async open(dataDir: string, fs: FileSystem): Promise<FileTopicRegistry> {
    const dir = `${dataDir}/__cluster`;
    await fs.mkdir(dir);
    const path = `${dir}/topics.json`;
    const data = await fs.readFile(path);
    if (data === undefined) {
      const registry = new FileTopicRegistry(randomUUID(), path, fs);
      await registry.#persist();
      return registry;
    }
    let parsed: { clusterId: string; topics: TopicRecord[] };
    try {
      parsed = JSON.parse(data.toString('utf8'));
    } catch (error) {
      throw new SluiceError('KAFKA_STORAGE_ERROR', `${path} is not valid JSON`, { cause: error });
    }
    const registry = new FileTopicRegistry(parsed.clusterId, path, fs);
    for (const topic of parsed.topics) registry.#topics.set(topic.name, topic);
    return registry;
  }

  list(): TopicRecord[] {
    return [...this.#topics.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get(name: string): TopicRecord | undefined {
    return this.#topics.get(name);
  }

  /** Durable when it resolves; on failure the registry is left as it was. */
  async put(topic: TopicRecord): Promise<void> {
    const next = new Map(this.#topics);
    next.set(topic.name, topic);
    await this.#persist(next);
    this.#topics = next;
  }

  async remove(name: string): Promise<void> {
    const next = new Map(this.#topics);
    next.delete(name);
    await this.#persist(next);
    this.#topics = next;
  }

  #persist(topics: Map<string, TopicRecord> = this.#topics): Promise<void> {
    const list = [...topics.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const body = Buffer.from(`${JSON.stringify({ clusterId: this.clusterId, topics: list }, null, 2)}\n`);
    // One write at a time, in order; a failed write does not block the ones after it.
    const writing = this.#writing.catch(() => {}).then(() => this.fs.writeFileAtomic(this.path, body));
    this.#writing = writing;
    return writing;
  }
}
