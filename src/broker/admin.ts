import type { Clock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import type { Logger } from '../common/logger.js';
import type {
  ClusterResponse,
  DecommissionResponse,
  MetadataResponse,
  PartitionInfo,
  QuorumStatus,
  ReassignmentInfo,
  ReassignmentsResponse,
  ReassignRequest,
  TopicDescription,
} from '../protocol/api.js';
import { TOPIC_NAME_PATTERN } from '../protocol/api.js';
import type { ConfigValue } from '../protocol/topic-config.js';
import type { PartitionReplica } from '../replication/replica.js';
import type { AdminApi, CreateTopicRequest, QuorumMembers, TopicSummary } from './api.js';
import type { BrokerMetrics } from './metrics.js';
import type { PartitionReconciler } from './reconciler.js';
import type { RemotePartitions } from './remote-partitions.js';
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
  /** Each voter's status, asked of the voters; absent on a node alone. */
  quorumStatus?: () => Promise<{
    quorum: QuorumStatus;
    /** The active controller's followers (learners too), when it answered. */
    followers?: { id: number; matchIndex: number; lag: number }[];
  }>;
  /** Changes the metadata quorum's voters (through the active controller); absent on a node alone. */
  quorum?: {
    addVoter(nodeId: number): Promise<QuorumMembers>;
    removeVoter(nodeId: number): Promise<QuorumMembers>;
  };
  /** Partition reassignment and broker decommission; absent: refused. */
  reassignment?: ReassignmentControl;
}

/** Reassignments through the active controller, and the state this node's image shows of them. */
export interface ReassignmentControl {
  /** Resolves once this node's image shows the decision; rejects with the controller's refusal. */
  reassign(partitions: ReassignRequest['partitions']): Promise<void>;
  decommission(brokerId: number): Promise<void>;
  /** Partitions with a reassignment in progress, by topic and partition. */
  inProgress(): Omit<ReassignmentInfo, 'progress'>[];
  /** How many partitions have a replica on the broker. */
  partitionsHeld(brokerId: number): number;
}

/**
 * Topic admin on one node: create, describe, delete, configs, partitions, and the cluster view.
 * Operations run one at a time, so that two creates of one name cannot interleave.
 */
export class AdminService implements AdminApi {
  readonly #options: AdminOptions;
  readonly #topics: Topics;
  readonly #reconciler: PartitionReconciler;
  readonly #remote: RemotePartitions | undefined;
  readonly #clock: Clock;
  readonly #metrics: BrokerMetrics;
  readonly #logger: Logger;
  #serial: Promise<unknown> = Promise.resolve();

  constructor(
    options: AdminOptions,
    deps: {
      topics: Topics;
      reconciler: PartitionReconciler;
      remote?: RemotePartitions;
      clock: Clock;
      metrics: BrokerMetrics;
      logger: Logger;
    },
  ) {
    this.#options = options;
    this.#topics = deps.topics;
    this.#reconciler = deps.reconciler;
    this.#remote = deps.remote;
    this.#clock = deps.clock;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  /**
   * Opens the logs of every partition placed on this node (at start). Partition directories that no
   * topic owns here (a crash between deleting a topic's definition and its data, a topic created
   * again under its name) are removed, so that a topic never shows another one's records.
   */
  async start(): Promise<void> {
    await this.#reconciler.start();
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

  async describeCluster(): Promise<ClusterResponse> {
    const quorumStatus = this.#options.quorumStatus;
    const status = quorumStatus ? await quorumStatus() : undefined;
    const cluster = this.cluster();
    if (!status || !cluster.metadata) return cluster;
    // The followers' match indexes are the controller's wherever it answered, on any node.
    const followers = status.followers ?? cluster.metadata.followers;
    return { ...cluster, metadata: { ...cluster.metadata, followers, quorum: status.quorum } };
  }

  /**
   * Each topic's partitions and leaders. A name this node does not know makes it catch up with the
   * controller first (the topic may have been created through another node a moment ago), so that
   * a client is not told a topic it has just created does not exist.
   */
  async metadata(names?: readonly string[]): Promise<MetadataResponse> {
    if (names) await this.#topics.catchUpUnless(names);
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
          const role = this.#topics.role(name, p) ?? this.#topics.replica(topic, p).describe();
          return {
            partition: p,
            leader: role.leader,
            leaderEpoch: role.leaderEpoch,
            replicas: [...role.replicas],
            isr: [...role.isr],
          };
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

  addVoter(nodeId: number): Promise<QuorumMembers> {
    return this.#quorum().addVoter(nodeId);
  }

  removeVoter(nodeId: number): Promise<QuorumMembers> {
    return this.#quorum().removeVoter(nodeId);
  }

  #quorum(): NonNullable<AdminOptions['quorum']> {
    const quorum = this.#options.quorum;
    if (!quorum)
      throw new SluiceError(
        'INVALID_REQUEST',
        'this node runs alone: start the nodes with --controller-quorum',
      );
    return quorum;
  }

  async listReassignments(): Promise<ReassignmentsResponse> {
    const control = this.#reassignment();
    return { reassignments: await this.#withProgress(control.inProgress()) };
  }

  async reassignPartitions(request: ReassignRequest): Promise<ReassignmentsResponse> {
    const control = this.#reassignment();
    await control.reassign(request.partitions);
    // A removed replica's log goes with this node's next pass; answer once it has run.
    await this.#reconciler.sync();
    this.#logger.info(
      { partitions: request.partitions.map((p) => `${p.topic}/${p.partition}`).slice(0, 20) },
      'partition reassignments changed',
    );
    return this.listReassignments();
  }

  async decommissionBroker(brokerId: number): Promise<DecommissionResponse> {
    const control = this.#reassignment();
    await control.decommission(brokerId);
    await this.#reconciler.sync();
    this.#logger.info({ brokerId }, 'broker decommission started');
    const moving = control.inProgress().filter((r) => r.removingReplicas.includes(brokerId));
    return {
      brokerId,
      partitionsHeld: control.partitionsHeld(brokerId),
      reassignments: await this.#withProgress(moving),
    };
  }

  /** Each adding replica's position, from the partition's leader (through its describe). */
  async #withProgress(list: Omit<ReassignmentInfo, 'progress'>[]): Promise<ReassignmentInfo[]> {
    const described = new Map<string, TopicDescription | undefined>();
    for (const topic of new Set(list.map((r) => r.topic))) {
      described.set(topic, await this.describeTopic(topic).catch(() => undefined));
    }
    return list.map((r) => {
      const states = described.get(r.topic)?.partitions[r.partition]?.replicaStates ?? [];
      return {
        ...r,
        progress: r.addingReplicas.map((id) => {
          const state = states.find((s) => s.id === id);
          const known = state !== undefined && state.logEndOffset >= 0;
          return {
            id,
            logEndOffset: known ? state.logEndOffset : -1,
            lag: known ? state.lag : -1,
            inSync: r.isr.includes(id),
          };
        }),
      };
    });
  }

  #reassignment(): ReassignmentControl {
    const control = this.#options.reassignment;
    if (!control) throw new SluiceError('INVALID_REQUEST', 'this node does not take reassignments');
    return control;
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
    // A node alone has one broker; in a cluster the controller refuses more than the live brokers.
    if (replicationFactor !== 1 && !this.#remote) {
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
    await this.#topics.put(topic, config);
    await this.#reconciler.sync();
    this.#logger.info({ topic: topic.name, partitions, configs: Object.keys(configs) }, 'topic created');
    return this.#describe(this.#topics.get(topic.name), { askLeaders: false });
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    return this.#describe(await this.#topics.resolve(name), { askLeaders: true });
  }

  /**
   * Partitions this node leads describe themselves. Another node's offsets come from it, one
   * request per leader (`askLeaders`); a topic just created skips that, its logs being empty.
   */
  async #describe(topic: TopicRecord, options: { askLeaders: boolean }): Promise<TopicDescription> {
    const partitions: PartitionInfo[] = [];
    const remote = new Map<number, { target: { nodeId: number; url: string }; infos: PartitionInfo[] }>();
    for (let p = 0; p < topic.partitions; p++) {
      const target = this.#remote?.forwardTarget(topic.name, p);
      const local = this.#topics.replicas.get(topic.name, p);
      if (!target && local) {
        partitions.push(this.#withStats(local));
        continue;
      }
      const role = this.#topics.role(topic.name, p);
      const created = !options.askLeaders;
      const info: PartitionInfo = {
        partition: p,
        leader: role?.leader ?? -1,
        leaderEpoch: role?.leaderEpoch ?? 0,
        replicas: [...(role?.replicas ?? [])],
        isr: [...(role?.isr ?? [])],
        // -1: not known here (the leader is unreachable or there is none).
        logStartOffset: created ? 0 : -1,
        logEndOffset: created ? 0 : -1,
        highWatermark: created ? 0 : -1,
      };
      partitions.push(info);
      if (target && options.askLeaders) {
        let group = remote.get(target.nodeId);
        if (!group) remote.set(target.nodeId, (group = { target, infos: [] }));
        group.infos.push(info);
      }
    }
    await Promise.all(
      [...remote.values()].map(async ({ target, infos }) => {
        try {
          const offsets = await this.#remote!.topicOffsets(target, topic.name);
          for (const info of infos) {
            const o = offsets.get(info.partition);
            if (!o) continue;
            info.logStartOffset = o.logStartOffset;
            info.logEndOffset = o.logEndOffset;
            info.highWatermark = o.highWatermark;
            if (o.replicaStates) info.replicaStates = o.replicaStates;
            if (o.stats) info.stats = o.stats;
          }
        } catch (error) {
          this.#logger.warn(
            { err: error, topic: topic.name, leader: target.nodeId },
            'a leader did not say its offsets',
          );
        }
      }),
    );
    for (const info of partitions) {
      const elr = this.#topics.role(topic.name, info.partition)?.elr;
      if (elr && elr.length > 0) info.elr = [...elr];
    }
    return {
      name: topic.name,
      partitions,
      replicationFactor: topic.replicationFactor,
      configs: { ...topic.configs },
    };
  }

  /** The offsets of the topic's partitions this node leads (what another node's describe asks for). */
  leaderOffsets(
    name: string,
  ): Pick<
    PartitionInfo,
    'partition' | 'logStartOffset' | 'logEndOffset' | 'highWatermark' | 'replicaStates' | 'stats'
  >[] {
    const topic = this.#topics.find(name);
    if (!topic) return [];
    const out = [];
    for (let p = 0; p < topic.partitions; p++) {
      const replica = this.#topics.replicas.get(name, p);
      if (!replica?.isLeader) continue;
      const { logStartOffset, logEndOffset, highWatermark, replicaStates, stats } = this.#withStats(replica);
      out.push({
        partition: p,
        logStartOffset,
        logEndOffset,
        highWatermark,
        ...(replicaStates ? { replicaStates } : {}),
        ...(stats ? { stats } : {}),
      });
    }
    return out;
  }

  /** A partition this node holds, with its figures when this node leads it. */
  #withStats(replica: PartitionReplica): PartitionInfo {
    const info = replica.describe();
    if (!replica.isLeader) return info;
    const { log } = replica;
    info.stats = {
      segments: log.segmentCount,
      sizeBytes: log.sizeBytes,
      ...this.#metrics.totals(replica),
      producers: log.producers.size,
    };
    return info;
  }

  deleteTopic(name: string): Promise<{ name: string; deleted: true }> {
    return this.#serially(() => this.#deleteTopic(name));
  }

  async #deleteTopic(name: string): Promise<{ name: string; deleted: true }> {
    const topic = await this.#topics.resolve(name);
    await this.#topics.remove(name);
    // Deletes this node's logs of the topic and answers the fetches waiting on them.
    await this.#reconciler.sync();
    this.#logger.info({ topic: name, partitions: topic.partitions }, 'topic deleted');
    return { name, deleted: true };
  }

  alterConfigs(name: string, changes: Record<string, ConfigValue | null>): Promise<TopicDescription> {
    return this.#serially(() => this.#alterConfigs(name, changes));
  }

  async #alterConfigs(name: string, changes: Record<string, ConfigValue | null>): Promise<TopicDescription> {
    const topic = await this.#topics.resolve(name);
    const configs = { ...topic.configs };
    for (const [key, value] of Object.entries(changes)) {
      if (value === null) delete configs[key];
      else configs[key] = value;
    }
    const config = this.#topics.parse(configs);
    await this.#topics.put({ ...topic, configs }, config);
    await this.#reconciler.sync();
    // The names only: a config value may be anything a client sent.
    this.#logger.info({ topic: name, configs: Object.keys(changes) }, 'topic configs changed');
    return this.describeTopic(name);
  }

  addPartitions(name: string, partitions: number): Promise<TopicDescription> {
    return this.#serially(() => this.#addPartitions(name, partitions));
  }

  async #addPartitions(name: string, partitions: number): Promise<TopicDescription> {
    const topic = await this.#topics.resolve(name);
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
    await this.#topics.put({ ...topic, partitions }, this.#topics.config(topic));
    await this.#reconciler.sync();
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
