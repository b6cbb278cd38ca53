import { randomUUID } from 'node:crypto';
import { SluiceError } from '../common/errors.js';
import type { ConfigValue } from '../protocol/topic-config.js';
import type { ReplicaRole } from '../replication/replica.js';
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
  /** The topic's id: a topic deleted and created again under its name has a new one. */
  topicId(name: string): string | undefined;
  /** The partitions `nodeId` holds a replica of, with the leadership the registry records. */
  localPartitions(nodeId: number): LocalPartition[];
  /** Any partition's leadership as the registry records it; undefined when it does not exist. */
  partitionRole(topic: string, partition: number): ReplicaRole | undefined;
  /** Calls `listener` after every change the registry applies; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** One partition a node holds a replica of. */
export interface LocalPartition {
  topic: string;
  topicId: string;
  partition: number;
  role: ReplicaRole;
}

/**
 * `${dataDir}/__cluster/topics.json`, replaced atomically (temporary file, fsync, rename) on each
 * change, so that a crash leaves either the old or the new definition, never a mix.
 */
export class FileTopicRegistry implements TopicRegistry {
  #topics = new Map<string, TopicRecord>();
  /** Each topic's id, kept in the file beside the topics (a file written before ids gets them here). */
  #ids = new Map<string, string>();
  readonly #listeners = new Set<() => void>();
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
    let parsed: { clusterId: string; topics: TopicRecord[]; topicIds?: Record<string, string> };
    try {
      parsed = JSON.parse(data.toString('utf8'));
    } catch (error) {
      throw new SluiceError('KAFKA_STORAGE_ERROR', `${path} is not valid JSON`, { cause: error });
    }
    const registry = new FileTopicRegistry(parsed.clusterId, path, fs);
    for (const topic of parsed.topics) registry.#topics.set(topic.name, topic);
    for (const [name, id] of Object.entries(parsed.topicIds ?? {}))
      if (registry.#topics.has(name) && typeof id === 'string') registry.#ids.set(name, id);
    // A file written before topic ids: each topic gets one now, kept before anything reads it.
    const missing = [...registry.#topics.keys()].filter((name) => !registry.#ids.has(name));
    if (missing.length > 0) {
      for (const name of missing) registry.#ids.set(name, randomUUID());
      await registry.#persist();
    }
    return registry;
  }

  list(): TopicRecord[] {
    return [...this.#topics.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get(name: string): TopicRecord | undefined {
    return this.#topics.get(name);
  }

  topicId(name: string): string | undefined {
    return this.#ids.get(name);
  }

  /** Every partition of every topic, led by this node at leader epoch 0: a node alone. */
  localPartitions(nodeId: number): LocalPartition[] {
    const out: LocalPartition[] = [];
    for (const topic of this.list()) {
      const topicId = this.topicId(topic.name)!;
      const role = { leader: nodeId, leaderEpoch: 0, replicas: [nodeId], isr: [nodeId] };
      for (let p = 0; p < topic.partitions; p++) out.push({ topic: topic.name, topicId, partition: p, role });
    }
    return out;
  }

  /** Undefined: the file knows no node; every partition is this node's own, and its replica says. */
  partitionRole(): ReplicaRole | undefined {
    return undefined;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Durable when it resolves; on failure the registry is left as it was. */
  async put(topic: TopicRecord): Promise<void> {
    const next = new Map(this.#topics);
    next.set(topic.name, topic);
    const ids = new Map(this.#ids);
    if (!ids.has(topic.name)) ids.set(topic.name, randomUUID());
    await this.#persist(next, ids);
    this.#topics = next;
    this.#ids = ids;
    for (const listener of this.#listeners) listener();
  }

  async remove(name: string): Promise<void> {
    const next = new Map(this.#topics);
    next.delete(name);
    const ids = new Map(this.#ids);
    ids.delete(name);
    await this.#persist(next, ids);
    this.#topics = next;
    this.#ids = ids;
    for (const listener of this.#listeners) listener();
  }

  #persist(topics: Map<string, TopicRecord> = this.#topics, ids = this.#ids): Promise<void> {
    const list = [...topics.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const topicIds = Object.fromEntries([...ids].filter(([name]) => topics.has(name)));
    const body = Buffer.from(
      `${JSON.stringify({ clusterId: this.clusterId, topics: list, topicIds }, null, 2)}\n`,
    );
    // One write at a time, in order; a failed write does not block the ones after it.
    const writing = this.#writing.catch(() => {}).then(() => this.fs.writeFileAtomic(this.path, body));
    this.#writing = writing;
    return writing;
  }
}
