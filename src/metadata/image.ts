import { assert } from '../common/assert.js';
import { type ErrorCode, isSluiceError, SluiceError } from '../common/errors.js';
import { packr, unpackr } from '../protocol/msgpack.js';
import {
  type ConfigResource,
  checkRecord,
  type Endpoint,
  METADATA_VERSION_ELR,
  METADATA_VERSION_REASSIGNMENT,
  type MetadataRecord,
  type PartitionRecord,
} from './records.js';

/**
 * The metadata image: what every node knows of the cluster after replaying `__cluster_metadata` up
 * to some offset. Images are immutable and share structure: a record replaces the one topic, broker
 * or partition it concerns and the few trie nodes above it, never a copy of the rest, so that
 * replaying is linear in the records and an old image stays valid for whoever holds it (a listener
 * compares the image before a batch of records with the one after, see MetadataDelta).
 *
 * Replay never reads a clock or chance, and never throws on a record that decoded: a record that
 * does not make sense against the image (see `rejectionOf`) is ignored, identically on every node,
 * and reported in the delta. Offsets are Raft indexes (from 1); a record at or below the image's
 * `lastOffset` was applied already and changes nothing, so that entries after a snapshot can be
 * replayed again after a restart.
 */

// ---------------------------------------------------------------------------------------------
// A persistent hash map (a hash array mapped trie, 32-way): set and delete copy one path of at
// most 7 nodes. Kept here while the image is its only user.

type Key = string | number;
const BITS = 5;
const MASK = 31;

interface Leaf<K, V> {
  readonly kind: 'leaf';
  readonly hash: number;
  readonly key: K;
  readonly value: V;
}
interface Collision<K, V> {
  readonly kind: 'collision';
  readonly hash: number;
  readonly leaves: readonly Leaf<K, V>[];
}
interface Branch<K, V> {
  readonly kind: 'branch';
  readonly bitmap: number;
  readonly children: readonly TrieNode<K, V>[];
}
type TrieNode<K, V> = Leaf<K, V> | Collision<K, V> | Branch<K, V>;

function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function hashOf(key: Key): number {
  if (typeof key === 'number') return mix32(key | 0);
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return mix32(h);
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Two nodes of different hashes under one new branch at `shift` (they differ within 32 bits). */
function merge<K, V>(a: Leaf<K, V> | Collision<K, V>, b: Leaf<K, V>, shift: number): Branch<K, V> {
  const ia = (a.hash >>> shift) & MASK;
  const ib = (b.hash >>> shift) & MASK;
  if (ia === ib) return { kind: 'branch', bitmap: 1 << ia, children: [merge(a, b, shift + BITS)] };
  return { kind: 'branch', bitmap: (1 << ia) | (1 << ib), children: ia < ib ? [a, b] : [b, a] };
}

function insert<K, V>(node: TrieNode<K, V> | undefined, shift: number, leaf: Leaf<K, V>): TrieNode<K, V> {
  if (node === undefined) return leaf;
  if (node.kind === 'leaf') {
    if (node.key === leaf.key) return node.value === leaf.value ? node : leaf;
    if (node.hash === leaf.hash) return { kind: 'collision', hash: leaf.hash, leaves: [node, leaf] };
    return merge(node, leaf, shift);
  }
  if (node.kind === 'collision') {
    if (node.hash !== leaf.hash) return merge(node, leaf, shift);
    const at = node.leaves.findIndex((l) => l.key === leaf.key);
    if (at < 0) return { ...node, leaves: [...node.leaves, leaf] };
    if (node.leaves[at]!.value === leaf.value) return node;
    return { ...node, leaves: node.leaves.map((l, i) => (i === at ? leaf : l)) };
  }
  const bit = 1 << ((leaf.hash >>> shift) & MASK);
  const at = popcount(node.bitmap & (bit - 1));
  if ((node.bitmap & bit) === 0) {
    const children = [...node.children];
    children.splice(at, 0, leaf);
    return { kind: 'branch', bitmap: node.bitmap | bit, children };
  }
  const child = node.children[at]!;
  const next = insert(child, shift + BITS, leaf);
  if (next === child) return node;
  const children = [...node.children];
  children[at] = next;
  return { kind: 'branch', bitmap: node.bitmap, children };
}

function remove<K, V>(node: TrieNode<K, V>, shift: number, hash: number, key: K): TrieNode<K, V> | undefined {
  if (node.kind === 'leaf') return node.key === key ? undefined : node;
  if (node.kind === 'collision') {
    if (node.hash !== hash) return node;
    const leaves = node.leaves.filter((l) => l.key !== key);
    if (leaves.length === node.leaves.length) return node;
    return leaves.length === 1 ? leaves[0] : { ...node, leaves };
  }
  const bit = 1 << ((hash >>> shift) & MASK);
  if ((node.bitmap & bit) === 0) return node;
  const at = popcount(node.bitmap & (bit - 1));
  const child = node.children[at]!;
  const next = remove(child, shift + BITS, hash, key);
  if (next === child) return node;
  const children = [...node.children];
  if (next === undefined) children.splice(at, 1);
  else children[at] = next;
  if (children.length === 0) return undefined;
  // A lone leaf moves up: lookups compare the key at the leaf, so it need not sit at full depth.
  if (children.length === 1 && children[0]!.kind !== 'branch') return children[0];
  return { kind: 'branch', bitmap: next === undefined ? node.bitmap & ~bit : node.bitmap, children };
}

/** An immutable map with structural sharing. Iteration order follows hashes: sort where order matters. */
export class PersistentMap<K extends Key, V> {
  static readonly #empty = new PersistentMap<never, never>(undefined, 0);

  static empty<K extends Key, V>(): PersistentMap<K, V> {
    return PersistentMap.#empty as unknown as PersistentMap<K, V>;
  }

  private constructor(
    private readonly root: TrieNode<K, V> | undefined,
    readonly size: number,
  ) {}

  static from<K extends Key, V>(entries: Iterable<readonly [K, V]>): PersistentMap<K, V> {
    let map = PersistentMap.empty<K, V>();
    for (const [k, v] of entries) map = map.set(k, v);
    return map;
  }

  get(key: K): V | undefined {
    const hash = hashOf(key);
    let node = this.root;
    let shift = 0;
    while (node !== undefined) {
      if (node.kind === 'leaf') return node.key === key ? node.value : undefined;
      if (node.kind === 'collision') return node.leaves.find((l) => l.key === key)?.value;
      const bit = 1 << ((hash >>> shift) & MASK);
      if ((node.bitmap & bit) === 0) return undefined;
      node = node.children[popcount(node.bitmap & (bit - 1))];
      shift += BITS;
    }
    return undefined;
  }

  has(key: K): boolean {
    return this.get(key) !== undefined;
  }

  /** `this` itself when the key already maps to this very value. */
  set(key: K, value: V): PersistentMap<K, V> {
    assert(value !== undefined, 'a persistent map holds no undefined values');
    const had = this.has(key);
    const root = insert(this.root, 0, { kind: 'leaf', hash: hashOf(key), key, value });
    return root === this.root ? this : new PersistentMap(root, had ? this.size : this.size + 1);
  }

  delete(key: K): PersistentMap<K, V> {
    if (this.root === undefined || !this.has(key)) return this;
    return new PersistentMap(remove(this.root, 0, hashOf(key), key), this.size - 1);
  }

  *entries(): IterableIterator<[K, V]> {
    if (this.root === undefined) return;
    const stack: TrieNode<K, V>[] = [this.root];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.kind === 'leaf') yield [node.key, node.value];
      else if (node.kind === 'collision') for (const l of node.leaves) yield [l.key, l.value];
      else for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
    }
  }

  *keys(): IterableIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): IterableIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  /** The entries sorted by key (numbers numerically, strings by code unit). */
  sorted(): [K, V][] {
    return [...this.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
}

// ---------------------------------------------------------------------------------------------
// The image.

export interface BrokerImage {
  readonly brokerId: number;
  readonly incarnationId: string;
  /** The offset of the registerBroker record that gave this incarnation its place. */
  readonly brokerEpoch: number;
  /** A registered broker starts fenced; the controller unfences it once it has caught up. */
  readonly fenced: boolean;
  readonly rack: string | null;
  readonly endpoints: readonly Endpoint[];
}

export interface PartitionImage {
  readonly topicId: string;
  readonly partition: number;
  /** The first replica is the preferred leader. */
  readonly replicas: readonly number[];
  /** A subset of replicas; the leader is in it. */
  readonly isr: readonly number[];
  /** -1: no leader. */
  readonly leader: number;
  readonly leaderEpoch: number;
  readonly partitionEpoch: number;
  /**
   * A reassignment in progress: the replicas it adds (within `replicas`, catching up) and those it
   * takes away once every adding one is in sync; both empty when none is. The target is
   * `replicas` without `removingReplicas`, in that order.
   */
  readonly addingReplicas: readonly number[];
  readonly removingReplicas: readonly number[];
  /**
   * The eligible leader replicas (KIP-966): replicas out of the in-sync set that still hold every
   * committed record, because they left it while it was smaller than `min.insync.replicas` and the
   * high watermark has not moved since. None of them is in `isr`; all are replicas. Empty below
   * metadata.version 3.
   */
  readonly elr: readonly number[];
}

const NONE: readonly number[] = Object.freeze([]);

/** Whether a reassignment of the partition is in progress. */
export function reassigning(p: PartitionImage): boolean {
  return p.addingReplicas.length > 0 || p.removingReplicas.length > 0;
}

/** The replicas a partition has once its reassignment completes (its replicas when none is in progress). */
export function targetReplicas(p: PartitionImage): readonly number[] {
  return p.removingReplicas.length === 0
    ? p.replicas
    : p.replicas.filter((id) => !p.removingReplicas.includes(id));
}

export interface TopicImage {
  readonly topicId: string;
  readonly name: string;
  /** Partitions 0 to size - 1: partition records come in order, so the set has no gaps. */
  readonly partitions: PersistentMap<number, PartitionImage>;
  /** The topic's own configs (raw strings, as the controller validated them); defaults are apart. */
  readonly configs: PersistentMap<string, string>;
}

interface ImageFields {
  readonly lastOffset: number;
  readonly clusterId: string | null;
  readonly metadataVersion: number;
  readonly nextProducerId: number;
  readonly brokers: PersistentMap<number, BrokerImage>;
  readonly topicsById: PersistentMap<string, TopicImage>;
  readonly topicIdsByName: PersistentMap<string, string>;
  readonly brokerDefaultConfigs: PersistentMap<string, string>;
}

export class MetadataImage implements ImageFields {
  static readonly EMPTY: MetadataImage = new MetadataImage({
    lastOffset: 0,
    clusterId: null,
    metadataVersion: 0,
    nextProducerId: 0,
    brokers: PersistentMap.empty(),
    topicsById: PersistentMap.empty(),
    topicIdsByName: PersistentMap.empty(),
    brokerDefaultConfigs: PersistentMap.empty(),
  });

  /** The offset of the last record replayed (0: none). */
  readonly lastOffset: number;
  /** Set once, by the first clusterId record. */
  readonly clusterId: string | null;
  /** The `metadata.version` feature level (0: not set yet). */
  readonly metadataVersion: number;
  /** The first producer id no block has handed out. */
  readonly nextProducerId: number;
  readonly brokers: PersistentMap<number, BrokerImage>;
  readonly topicsById: PersistentMap<string, TopicImage>;
  readonly topicIdsByName: PersistentMap<string, string>;
  readonly brokerDefaultConfigs: PersistentMap<string, string>;

  private constructor(fields: ImageFields) {
    this.lastOffset = fields.lastOffset;
    this.clusterId = fields.clusterId;
    this.metadataVersion = fields.metadataVersion;
    this.nextProducerId = fields.nextProducerId;
    this.brokers = fields.brokers;
    this.topicsById = fields.topicsById;
    this.topicIdsByName = fields.topicIdsByName;
    this.brokerDefaultConfigs = fields.brokerDefaultConfigs;
    Object.freeze(this);
  }

  /** A copy with some fields replaced: the rest is shared. */
  with(changes: Partial<ImageFields>): MetadataImage {
    return new MetadataImage({ ...this, ...changes });
  }

  broker(brokerId: number): BrokerImage | undefined {
    return this.brokers.get(brokerId);
  }

  topic(name: string): TopicImage | undefined {
    const id = this.topicIdsByName.get(name);
    return id === undefined ? undefined : this.topicsById.get(id);
  }

  topicById(topicId: string): TopicImage | undefined {
    return this.topicsById.get(topicId);
  }

  partition(topicId: string, partition: number): PartitionImage | undefined {
    return this.topicsById.get(topicId)?.partitions.get(partition);
  }

  configs(resource: ConfigResource): PersistentMap<string, string> | undefined {
    return resource.type === 'brokerDefaults'
      ? this.brokerDefaultConfigs
      : this.topic(resource.name)?.configs;
  }
}

// ---------------------------------------------------------------------------------------------
// Replay.

/** Why a record does not apply to an image: what the controller would have been told. */
interface Rejection {
  readonly code: ErrorCode;
  readonly message: string;
}

const reject = (code: ErrorCode, message: string): Rejection => ({ code, message });

/** The partition state rules every partition and partition change must keep. */
function partitionStateProblem(
  replicas: readonly number[],
  isr: readonly number[],
  leader: number,
  adding: readonly number[] = NONE,
  removing: readonly number[] = NONE,
) {
  const replicaSet = new Set(replicas);
  if (!isr.every((id) => replicaSet.has(id))) return 'the ISR holds a broker that is not a replica';
  if (leader !== -1 && !isr.includes(leader)) return `leader ${leader} is not in the ISR`;
  if (!adding.every((id) => replicaSet.has(id))) return 'an adding replica is not a replica';
  if (!removing.every((id) => replicaSet.has(id))) return 'a removing replica is not a replica';
  if (adding.some((id) => removing.includes(id))) return 'a replica is both adding and removing';
  if (removing.length === replicas.length) return 'a reassignment removes every replica';
  return undefined;
}

function brokerEpochProblem(image: MetadataImage, brokerId: number, brokerEpoch: number) {
  const broker = image.brokers.get(brokerId);
  if (!broker) return reject('INVALID_REQUEST', `broker ${brokerId} is not registered`);
  if (broker.brokerEpoch !== brokerEpoch)
    return reject(
      'INVALID_REQUEST',
      `broker ${brokerId} has epoch ${broker.brokerEpoch}, not ${brokerEpoch} (a stale record)`,
    );
  return broker;
}

function withTopic(image: MetadataImage, topic: TopicImage): MetadataImage {
  return image.with({ topicsById: image.topicsById.set(topic.topicId, Object.freeze(topic)) });
}

/** The image after one record, or why the record does not apply. `offset` is the record's. */
function apply(image: MetadataImage, record: MetadataRecord, offset: number): MetadataImage | Rejection {
  // A version some node of the cluster may not read is refused until metadata.version allows it.
  if (record.version === 1 && image.metadataVersion < METADATA_VERSION_REASSIGNMENT)
    return reject(
      'UNSUPPORTED_VERSION',
      `${record.type} v1 needs metadata.version ${METADATA_VERSION_REASSIGNMENT}; the cluster is at ${image.metadataVersion}`,
    );
  if (record.version === 2 && image.metadataVersion < METADATA_VERSION_ELR)
    return reject(
      'UNSUPPORTED_VERSION',
      `${record.type} v2 needs metadata.version ${METADATA_VERSION_ELR}; the cluster is at ${image.metadataVersion}`,
    );
  switch (record.type) {
    case 'clusterId':
      if (image.clusterId !== null)
        return reject('INVALID_REQUEST', `the cluster id is set already (${image.clusterId})`);
      return image.with({ clusterId: record.clusterId });
    case 'featureLevel':
      if (record.level < image.metadataVersion)
        return reject('INVALID_REQUEST', `metadata.version ${image.metadataVersion} cannot go down`);
      return image.with({ metadataVersion: record.level });
    case 'registerBroker': {
      // A new registration replaces any earlier incarnation of the id: its epoch is this offset.
      const broker: BrokerImage = Object.freeze({
        brokerId: record.brokerId,
        incarnationId: record.incarnationId,
        brokerEpoch: offset,
        fenced: true,
        rack: record.rack,
        endpoints: record.endpoints,
      });
      return image.with({ brokers: image.brokers.set(record.brokerId, broker) });
    }
    case 'unregisterBroker': {
      const broker = brokerEpochProblem(image, record.brokerId, record.brokerEpoch);
      if ('code' in broker) return broker;
      return image.with({ brokers: image.brokers.delete(record.brokerId) });
    }
    case 'fenceBroker':
    case 'unfenceBroker': {
      const broker = brokerEpochProblem(image, record.brokerId, record.brokerEpoch);
      if ('code' in broker) return broker;
      const fenced = record.type === 'fenceBroker';
      if (broker.fenced === fenced) return image;
      return image.with({
        brokers: image.brokers.set(broker.brokerId, Object.freeze({ ...broker, fenced })),
      });
    }
    case 'topic': {
      if (image.topicIdsByName.has(record.name))
        return reject('TOPIC_ALREADY_EXISTS', `topic ${record.name} exists`);
      if (image.topicsById.has(record.topicId))
        return reject('INVALID_REQUEST', `topic id ${record.topicId} is in use`);
      const topic: TopicImage = Object.freeze({
        topicId: record.topicId,
        name: record.name,
        partitions: PersistentMap.empty<number, PartitionImage>(),
        configs: PersistentMap.empty<string, string>(),
      });
      return image.with({
        topicsById: image.topicsById.set(record.topicId, topic),
        topicIdsByName: image.topicIdsByName.set(record.name, record.topicId),
      });
    }
    case 'partition': {
      const topic = image.topicsById.get(record.topicId);
      if (!topic) return reject('UNKNOWN_TOPIC_OR_PARTITION', `no topic has id ${record.topicId}`);
      if (record.partition !== topic.partitions.size)
        return reject(
          'INVALID_PARTITIONS',
          `topic ${topic.name} has ${topic.partitions.size} partitions: the next one is ${topic.partitions.size}, not ${record.partition}`,
        );
      const problem = partitionStateProblem(
        record.replicas,
        record.isr,
        record.leader,
        record.addingReplicas,
        record.removingReplicas,
      );
      if (problem) return reject('INVALID_REQUEST', problem);
      return withTopic(image, {
        ...topic,
        partitions: topic.partitions.set(record.partition, partitionOf(record)),
      });
    }
    case 'partitionChange': {
      const topic = image.topicsById.get(record.topicId);
      const current = topic?.partitions.get(record.partition);
      if (!topic || !current)
        return reject('UNKNOWN_TOPIC_OR_PARTITION', `no partition ${record.topicId}/${record.partition}`);
      const replicas = record.replicas ?? current.replicas;
      const isr = record.isr ?? current.isr;
      const leader = record.leader ?? current.leader;
      const addingReplicas = record.addingReplicas ?? current.addingReplicas;
      const removingReplicas = record.removingReplicas ?? current.removingReplicas;
      const problem = partitionStateProblem(replicas, isr, leader, addingReplicas, removingReplicas);
      if (problem) return reject('INVALID_REQUEST', problem);
      // Every change is a new partition epoch (what ISR change requests are fenced by); only a new
      // leader is a new leader epoch (what followers truncate by).
      // An in-sync replica or a broker that is no longer a replica is never eligible as well.
      const elrBase = record.elr ?? current.elr;
      const elr = elrBase.some((id) => isr.includes(id) || !replicas.includes(id))
        ? Object.freeze(elrBase.filter((id) => !isr.includes(id) && replicas.includes(id)))
        : elrBase;
      const next: PartitionImage = Object.freeze({
        ...current,
        replicas,
        isr,
        leader,
        addingReplicas,
        removingReplicas,
        elr,
        leaderEpoch: leader === current.leader ? current.leaderEpoch : current.leaderEpoch + 1,
        partitionEpoch: current.partitionEpoch + 1,
      });
      return withTopic(image, { ...topic, partitions: topic.partitions.set(record.partition, next) });
    }
    case 'config': {
      const apply = (configs: PersistentMap<string, string>) =>
        record.value === null ? configs.delete(record.name) : configs.set(record.name, record.value);
      if (record.resource.type === 'brokerDefaults')
        return image.with({ brokerDefaultConfigs: apply(image.brokerDefaultConfigs) });
      const topic = image.topic(record.resource.name);
      if (!topic) return reject('UNKNOWN_TOPIC_OR_PARTITION', `no topic ${record.resource.name}`);
      return withTopic(image, { ...topic, configs: apply(topic.configs) });
    }
    case 'producerIdBlock': {
      // Blocks never overlap: two producers with one id would share sequence numbers.
      if (record.firstProducerId < image.nextProducerId)
        return reject(
          'INVALID_REQUEST',
          `producer ids below ${image.nextProducerId} are handed out already, not ${record.firstProducerId}`,
        );
      const next = record.firstProducerId + record.size;
      if (!Number.isSafeInteger(next)) return reject('INVALID_REQUEST', 'producer ids run past 2^53');
      return image.with({ nextProducerId: next });
    }
    case 'removeTopic': {
      const topic = image.topicsById.get(record.topicId);
      if (!topic) return reject('UNKNOWN_TOPIC_OR_PARTITION', `no topic has id ${record.topicId}`);
      return image.with({
        topicsById: image.topicsById.delete(topic.topicId),
        topicIdsByName: image.topicIdsByName.delete(topic.name),
      });
    }
  }
}

function partitionOf(record: PartitionRecord): PartitionImage {
  return Object.freeze({
    topicId: record.topicId,
    partition: record.partition,
    replicas: record.replicas,
    isr: record.isr,
    leader: record.leader,
    leaderEpoch: record.leaderEpoch,
    partitionEpoch: record.partitionEpoch,
    addingReplicas: record.addingReplicas ?? NONE,
    removingReplicas: record.removingReplicas ?? NONE,
    elr: NONE,
  });
}

function checkOffset(offset: number): void {
  assert(Number.isSafeInteger(offset) && offset >= 1, `a record offset is a Raft index, got ${offset}`);
}

/**
 * Why `record` would be ignored if it were written after `image`, as the typed error the controller
 * answers with (undefined: it applies). The controller asks this before it writes anything, so
 * that replay's ignoring is a guard, never a path the log takes.
 */
export function rejectionOf(image: MetadataImage, record: MetadataRecord): SluiceError | undefined {
  const result = apply(image, record, image.lastOffset + 1);
  return result instanceof MetadataImage
    ? undefined
    : new SluiceError(result.code, result.message, { details: { recordType: record.type } });
}

export interface ReplayResult {
  readonly image: MetadataImage;
  /** Set when the record did not apply and was ignored (the image then moved only its offset). */
  readonly ignored: SluiceError | undefined;
}

/**
 * The image after the record at `offset`. A record at or below `image.lastOffset` returns the image
 * unchanged (replayed already); one that does not apply moves `lastOffset` only and says why.
 */
export function replayRecord(image: MetadataImage, record: MetadataRecord, offset: number): ReplayResult {
  checkOffset(offset);
  if (offset <= image.lastOffset) return { image, ignored: undefined };
  const result = apply(image, record, offset);
  if (result instanceof MetadataImage)
    return { image: result.with({ lastOffset: offset }), ignored: undefined };
  return {
    image: image.with({ lastOffset: offset }),
    ignored: new SluiceError(result.code, result.message, { details: { recordType: record.type, offset } }),
  };
}

/** `replayRecord(...).image`. */
export function replay(image: MetadataImage, record: MetadataRecord, offset: number): MetadataImage {
  return replayRecord(image, record, offset).image;
}

// ---------------------------------------------------------------------------------------------
// Delta: what changed between two images, for a node to act on what concerns it.

export interface PartitionDelta {
  readonly topicId: string;
  readonly topicName: string;
  readonly partition: number;
  /** undefined: created in this delta. */
  readonly before: PartitionImage | undefined;
  /** undefined: its topic was removed. */
  readonly after: PartitionImage | undefined;
}

export interface IgnoredRecord {
  readonly offset: number;
  readonly record: MetadataRecord;
  readonly reason: SluiceError;
}

export interface MetadataDelta {
  readonly before: MetadataImage;
  readonly after: MetadataImage;
  /** Sorted by topic id; a topic created and removed within the delta is in neither list. */
  readonly topicsCreated: readonly TopicImage[];
  /** As they were before. */
  readonly topicsRemoved: readonly TopicImage[];
  /** Partitions created, changed (leader, ISR, replicas, epochs) or removed with their topic. */
  readonly partitionsChanged: readonly PartitionDelta[];
  /** New brokers and new incarnations (a new broker epoch), sorted by id. */
  readonly brokersRegistered: readonly BrokerImage[];
  /** As they were before: gone, or replaced by a new incarnation. */
  readonly brokersUnregistered: readonly BrokerImage[];
  /** Brokers unfenced before and fenced now (a new registration starts fenced: not listed here). */
  readonly brokersFenced: readonly number[];
  /** Brokers fenced or absent before and unfenced now. */
  readonly brokersUnfenced: readonly number[];
  /** Resources whose configs changed, topics by name. */
  readonly configsChanged: readonly ConfigResource[];
  readonly clusterIdChanged: boolean;
  readonly metadataVersionChanged: boolean;
  readonly ignored: readonly IgnoredRecord[];
  /**
   * Set when the image was replaced by a snapshot from the leader: the lists above are empty, and a
   * listener compares `before` and `after` itself.
   */
  readonly restored?: boolean;
}

const byKey =
  <T>(key: (item: T) => string | number) =>
  (a: T, b: T) =>
    key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;

/**
 * Replays records onto a base image and tells what changed. It keeps only the keys the records
 * name, so `build()` costs what the records touched, not the size of the image.
 */
export class MetadataDeltaBuilder {
  #image: MetadataImage;
  readonly #topics = new Set<string>();
  readonly #partitions = new Map<string, Set<number>>();
  readonly #brokers = new Set<number>();
  readonly #configs = new Map<string, ConfigResource>();
  readonly #ignored: IgnoredRecord[] = [];

  constructor(readonly base: MetadataImage) {
    this.#image = base;
  }

  get image(): MetadataImage {
    return this.#image;
  }

  replay(record: MetadataRecord, offset: number): void {
    const before = this.#image;
    const { image, ignored } = replayRecord(before, record, offset);
    this.#image = image;
    if (ignored) {
      this.#ignored.push({ offset, record, reason: ignored });
      return;
    }
    switch (record.type) {
      case 'registerBroker':
      case 'unregisterBroker':
      case 'fenceBroker':
      case 'unfenceBroker':
        this.#brokers.add(record.brokerId);
        break;
      case 'topic':
        this.#topics.add(record.topicId);
        this.#configs.set(`topic:${record.name}`, { type: 'topic', name: record.name });
        break;
      case 'removeTopic': {
        const name = before.topicById(record.topicId)!.name;
        this.#topics.add(record.topicId);
        this.#configs.set(`topic:${name}`, { type: 'topic', name });
        break;
      }
      case 'partition':
      case 'partitionChange': {
        let set = this.#partitions.get(record.topicId);
        if (!set) this.#partitions.set(record.topicId, (set = new Set()));
        set.add(record.partition);
        break;
      }
      case 'config': {
        const r = record.resource;
        this.#configs.set(r.type === 'topic' ? `topic:${r.name}` : 'brokerDefaults', r);
        break;
      }
      case 'clusterId':
      case 'featureLevel':
      case 'producerIdBlock':
        break;
    }
  }

  build(): MetadataDelta {
    const before = this.base;
    const after = this.#image;
    const topicsCreated: TopicImage[] = [];
    const topicsRemoved: TopicImage[] = [];
    const partitionsChanged: PartitionDelta[] = [];
    for (const topicId of [...this.#topics].sort()) {
      const old = before.topicById(topicId);
      const now = after.topicById(topicId);
      if (!old && now) topicsCreated.push(now);
      if (old && !now) {
        topicsRemoved.push(old);
        for (const [partition, p] of old.partitions.sorted())
          partitionsChanged.push({ topicId, topicName: old.name, partition, before: p, after: undefined });
      }
    }
    for (const [topicId, partitions] of [...this.#partitions].sort(byKey(([id]) => id))) {
      const old = before.topicById(topicId);
      const now = after.topicById(topicId);
      if (!now) continue; // removed: listed above with its partitions, if it existed before
      for (const partition of [...partitions].sort((a, b) => a - b)) {
        const was = old?.partitions.get(partition);
        const is = now.partitions.get(partition);
        if (was !== is)
          partitionsChanged.push({ topicId, topicName: now.name, partition, before: was, after: is });
      }
    }
    partitionsChanged.sort(
      (a, b) => byKey<PartitionDelta>((d) => d.topicId)(a, b) || a.partition - b.partition,
    );
    const brokersRegistered: BrokerImage[] = [];
    const brokersUnregistered: BrokerImage[] = [];
    const brokersFenced: number[] = [];
    const brokersUnfenced: number[] = [];
    for (const id of [...this.#brokers].sort((a, b) => a - b)) {
      const was = before.broker(id);
      const is = after.broker(id);
      if (is && was?.brokerEpoch !== is.brokerEpoch) brokersRegistered.push(is);
      if (was && was.brokerEpoch !== is?.brokerEpoch) brokersUnregistered.push(was);
      if (is?.fenced && was && !was.fenced) brokersFenced.push(id);
      if (is && !is.fenced && (!was || was.fenced)) brokersUnfenced.push(id);
    }
    const configsChanged = [...this.#configs.values()].filter(
      (r) => before.configs(r) !== after.configs(r) && (before.configs(r)?.size || after.configs(r)?.size),
    );
    return {
      before,
      after,
      topicsCreated,
      topicsRemoved,
      partitionsChanged,
      brokersRegistered,
      brokersUnregistered,
      brokersFenced,
      brokersUnfenced,
      configsChanged,
      clusterIdChanged: before.clusterId !== after.clusterId,
      metadataVersionChanged: before.metadataVersion !== after.metadataVersion,
      ignored: [...this.#ignored],
    };
  }
}

/** Replays records in order onto `image` and tells what changed. */
export function replayAll(
  image: MetadataImage,
  records: Iterable<{ readonly record: MetadataRecord; readonly offset: number }>,
): MetadataDelta {
  const builder = new MetadataDeltaBuilder(image);
  for (const { record, offset } of records) builder.replay(record, offset);
  return builder.build();
}

// ---------------------------------------------------------------------------------------------
// Snapshot: the image as one msgpack value.
//
//   [formatVersion 0, lastOffset, clusterId str|nil, metadataVersion, nextProducerId,
//    brokers [[brokerId, incarnationId, brokerEpoch, fenced bool, rack str|nil,
//              [[name, host, port]...]]...]                                     sorted by brokerId
//    topics [[topicId, name, [[replicas, isr, leader, leaderEpoch, partitionEpoch]...] (partition 0..n-1),
//             [[configName, value]...] (sorted by name)]...]                    sorted by topicId
//    brokerDefaultConfigs [[name, value]...]]                                   sorted by name
//
// Format version 1 (an image at metadata.version 2) adds to each partition its reassignment:
// [replicas, isr, leader, leaderEpoch, partitionEpoch, addingReplicas, removingReplicas]. Format
// version 2 (metadata.version 3 and above) adds the eligible leader replicas after them. An image
// is written in the format of its level, so that a node of the release before reads an image that
// holds nothing it does not know.
//
// Everything sorted, so that equal images give equal bytes (a test compares images that way).

export const SNAPSHOT_FORMAT_VERSION = 2;

/** The snapshot format an image at `metadataVersion` is written in. */
function snapshotFormatOf(metadataVersion: number): number {
  if (metadataVersion >= METADATA_VERSION_ELR) return 2;
  return metadataVersion >= METADATA_VERSION_REASSIGNMENT ? 1 : 0;
}

/** Fields of a partition in each snapshot format. */
const PARTITION_FIELDS = [5, 7, 8];

const sortedPairs = (map: PersistentMap<string, string>) => map.sorted();

export function encodeImage(image: MetadataImage): Uint8Array {
  const format = snapshotFormatOf(image.metadataVersion);
  const partitionOfImage = (p: PartitionImage) => {
    const fields: unknown[] = [p.replicas, p.isr, p.leader, p.leaderEpoch, p.partitionEpoch];
    if (format >= 1) fields.push(p.addingReplicas, p.removingReplicas);
    if (format >= 2) fields.push(p.elr);
    return fields;
  };
  return packr.pack([
    format,
    image.lastOffset,
    image.clusterId,
    image.metadataVersion,
    image.nextProducerId,
    image.brokers
      .sorted()
      .map(([, b]) => [
        b.brokerId,
        b.incarnationId,
        b.brokerEpoch,
        b.fenced,
        b.rack,
        b.endpoints.map((e) => [e.name, e.host, e.port]),
      ]),
    image.topicsById
      .sorted()
      .map(([, t]) => [
        t.topicId,
        t.name,
        t.partitions.sorted().map(([, p]) => partitionOfImage(p)),
        sortedPairs(t.configs),
      ]),
    sortedPairs(image.brokerDefaultConfigs),
  ]);
}

function corrupt(message: string, cause?: unknown): SluiceError {
  return new SluiceError('CORRUPT_MESSAGE', `metadata snapshot: ${message}`, {
    details: { reason: 'snapshot' },
    cause,
  });
}

function arrayOf(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw corrupt(`${what} is not an array`);
  return value;
}

function tuple(value: unknown, length: number, what: string): unknown[] {
  const items = arrayOf(value, what);
  if (items.length !== length) throw corrupt(`${what} has ${items.length} fields, not ${length}`);
  return items;
}

function configPairs(value: unknown, resource: ConfigResource): PersistentMap<string, string> {
  let map = PersistentMap.empty<string, string>();
  for (const pair of arrayOf(value, 'configs')) {
    const [name, v] = tuple(pair, 2, 'a config');
    const checked = checkRecord({ type: 'config', version: 0, resource, name, value: v } as MetadataRecord);
    if (checked.type !== 'config' || checked.value === null) throw corrupt('a config has no value');
    if (map.has(checked.name)) throw corrupt(`config ${checked.name} appears twice`);
    map = map.set(checked.name, checked.value);
  }
  return map;
}

function decodeBroker(value: unknown): BrokerImage {
  const [brokerId, incarnationId, brokerEpoch, fenced, rack, endpoints] = tuple(value, 6, 'a broker');
  const checked = checkRecord({
    type: 'registerBroker',
    version: 0,
    brokerId,
    incarnationId,
    rack,
    endpoints: arrayOf(endpoints, 'endpoints').map((e) => {
      const [name, host, port] = tuple(e, 3, 'an endpoint');
      return { name, host, port };
    }),
  } as MetadataRecord);
  if (checked.type !== 'registerBroker') throw corrupt('not a broker');
  if (typeof fenced !== 'boolean') throw corrupt('fenced is not a boolean');
  if (typeof brokerEpoch !== 'number' || !Number.isSafeInteger(brokerEpoch) || brokerEpoch < 1)
    throw corrupt('a broker epoch is not a Raft index');
  return Object.freeze({
    brokerId: checked.brokerId,
    incarnationId: checked.incarnationId,
    brokerEpoch,
    fenced,
    rack: checked.rack,
    endpoints: checked.endpoints,
  });
}

function decodeTopic(value: unknown, format: number): TopicImage {
  const [topicId, name, partitions, configs] = tuple(value, 4, 'a topic');
  const topic = checkRecord({ type: 'topic', version: 0, name, topicId } as MetadataRecord);
  if (topic.type !== 'topic') throw corrupt('not a topic');
  let map = PersistentMap.empty<number, PartitionImage>();
  arrayOf(partitions, 'partitions').forEach((p, partition) => {
    const [replicas, isr, leader, leaderEpoch, partitionEpoch, addingReplicas, removingReplicas, elr] = tuple(
      p,
      PARTITION_FIELDS[format]!,
      'a partition',
    );
    const record = checkRecord({
      type: 'partition',
      version: format === 0 ? 0 : 1,
      ...(format === 0 ? {} : { addingReplicas, removingReplicas }),
      topicId: topic.topicId,
      partition,
      replicas,
      isr,
      leader,
      leaderEpoch,
      partitionEpoch,
    } as MetadataRecord);
    if (record.type !== 'partition') throw corrupt('not a partition');
    const problem = partitionStateProblem(
      record.replicas,
      record.isr,
      record.leader,
      record.addingReplicas,
      record.removingReplicas,
    );
    if (problem) throw corrupt(`partition ${topic.name}/${partition}: ${problem}`);
    let image = partitionOf(record);
    if (format >= 2) {
      const eligible = checkRecord({
        type: 'partitionChange',
        version: 2,
        topicId: topic.topicId,
        partition,
        elr,
      } as MetadataRecord);
      const ids = eligible.type === 'partitionChange' ? (eligible.elr ?? NONE) : NONE;
      if (ids.some((id) => record.isr.includes(id) || !record.replicas.includes(id)))
        throw corrupt(
          `partition ${topic.name}/${partition}: an eligible leader replica is in sync or not a replica`,
        );
      if (ids.length > 0) image = Object.freeze({ ...image, elr: ids });
    }
    map = map.set(partition, image);
  });
  return Object.freeze({
    topicId: topic.topicId,
    name: topic.name,
    partitions: map,
    configs: configPairs(configs, { type: 'topic', name: topic.name }),
  });
}

function natural(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw corrupt(`${what} is not a non-negative integer`);
  return value;
}

/** The image a snapshot holds; CORRUPT_MESSAGE (its cause the field's error) for anything else. */
export function decodeImage(bytes: Uint8Array): MetadataImage {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch (error) {
    throw corrupt('not one msgpack value', error);
  }
  const fields = arrayOf(value, 'the snapshot');
  const format = fields[0];
  if (format !== 0 && format !== 1 && format !== SNAPSHOT_FORMAT_VERSION)
    throw corrupt(`unknown format version ${String(format)}`);
  const [, lastOffset, clusterId, metadataVersion, nextProducerId, brokers, topics, defaults] = tuple(
    fields,
    8,
    'the snapshot',
  );
  try {
    if (clusterId !== null) checkRecord({ type: 'clusterId', version: 0, clusterId } as MetadataRecord);
    let brokerMap = PersistentMap.empty<number, BrokerImage>();
    for (const b of arrayOf(brokers, 'brokers')) {
      const broker = decodeBroker(b);
      if (brokerMap.has(broker.brokerId)) throw corrupt(`broker ${broker.brokerId} appears twice`);
      brokerMap = brokerMap.set(broker.brokerId, broker);
    }
    let byId = PersistentMap.empty<string, TopicImage>();
    let byName = PersistentMap.empty<string, string>();
    for (const t of arrayOf(topics, 'topics')) {
      const topic = decodeTopic(t, format);
      if (byId.has(topic.topicId) || byName.has(topic.name))
        throw corrupt(`topic ${topic.name} (${topic.topicId}) appears twice`);
      byId = byId.set(topic.topicId, topic);
      byName = byName.set(topic.name, topic.topicId);
    }
    const version = natural(metadataVersion, 'metadataVersion');
    if (format !== snapshotFormatOf(version))
      throw corrupt(`format version ${format} does not go with metadata.version ${version}`);
    if (version !== 0)
      checkRecord({ type: 'featureLevel', version: 0, name: 'metadata.version', level: version });
    return MetadataImage.EMPTY.with({
      lastOffset: natural(lastOffset, 'lastOffset'),
      clusterId: clusterId as string | null,
      metadataVersion: version,
      nextProducerId: natural(nextProducerId, 'nextProducerId'),
      brokers: brokerMap,
      topicsById: byId,
      topicIdsByName: byName,
      brokerDefaultConfigs: configPairs(defaults, { type: 'brokerDefaults' }),
    });
  } catch (error) {
    if (isSluiceError(error, 'CORRUPT_MESSAGE')) throw error;
    throw corrupt(error instanceof Error ? error.message : String(error), error);
  }
}
