import type { Clock } from '../common/clock.js';
import { type Logger, noopLogger } from '../common/logger.js';
import { type Metrics, noopMetrics } from '../common/metrics.js';
import type { ConfigValue } from '../protocol/topic-config.js';
import { ReplicaManager } from '../replication/replica-manager.js';
import type { LogManager } from '../storage/log-manager.js';
import { type AdminOptions, AdminService } from './admin.js';
import type { BrokerApi, NodeApi, RoutingApi } from './api.js';
import { CompressionMetrics } from './compression.js';
import { FetchService } from './fetch.js';
import { FetchWaiters } from './fetch-waiters.js';
import { type GroupsOptions, GroupsService } from './groups.js';
import { BrokerMetrics } from './metrics.js';
import { ProduceService } from './produce.js';
import { type ProducerIdBlock, ProducerIds } from './producer-ids.js';
import { PartitionReconciler } from './reconciler.js';
import type { RemotePartitions } from './remote-partitions.js';
import {
  type ReplicaFetchTransport,
  type ReplicationCluster,
  type ReplicationOptions,
  ReplicationService,
} from './replication.js';
import type { TopicRegistry } from './topic-registry.js';
import { Topics } from './topics.js';

export interface BrokerOptions {
  nodeId: number;
  version: string;
  /** Where clients reach this node; read when asked, since the port is known only once bound. */
  address: () => { host: string; port: number };
  /** The cluster as the metadata quorum sees it; without it, this node alone. */
  clusterView?: AdminOptions['clusterView'];
  /** Voter changes of the metadata quorum; absent on a node alone. */
  quorum?: AdminOptions['quorum'];
  /** Partition reassignment through the controller. */
  reassignment?: AdminOptions['reassignment'];
  /** Each voter's status, asked of the voters; absent on a node alone. */
  quorumStatus?: AdminOptions['quorumStatus'];
  /** Defaults for topics, in Kafka config names (e.g. `flush.policy`, `num.partitions`). */
  defaultConfigs?: Record<string, ConfigValue>;
  fetchWaitersMax?: number;
  /** Partitions with metric series of their own; later ones are added up (see `BrokerMetrics`). */
  partitionSeriesMax?: number;
  /** Consumer group settings beyond the `offsets.*` configs (tests: short ticks and sessions). */
  groups?: Omit<GroupsOptions, 'nodeId'>;
}

export interface BrokerDeps {
  registry: TopicRegistry;
  logs: LogManager;
  clock: Clock;
  metrics?: Metrics;
  logger?: Logger;
  /** In a cluster: the partitions other nodes lead, reached through them. */
  remote?: RemotePartitions;
  /** In a cluster: waits until this node's metadata holds what the controller has decided. */
  catchUp?: () => Promise<void>;
  /** In a cluster: whether this node may lead now (false once cut off from the controller past its session). */
  canLead?: () => boolean;
  /** Asks the controller for a block of producer ids (idempotent producers). */
  allocateProducerIds?: () => Promise<ProducerIdBlock>;
  /** In a cluster: partition replication between the nodes. */
  replication?: {
    cluster: ReplicationCluster;
    /** How follower fetches reach the leaders (HTTP between nodes). */
    transport: ReplicaFetchTransport;
    options: Omit<ReplicationOptions, 'nodeId'>;
  };
}

/**
 * One node's broker, assembled from its services: admin, produce and fetch over the partitions'
 * replicas, and the waiting fetches. The HTTP layer sees it as a `BrokerApi`.
 */
export class Broker implements BrokerApi {
  readonly node: NodeApi;
  readonly admin: AdminService;
  readonly produce: ProduceService;
  readonly fetch: FetchService;
  readonly groups: GroupsService;
  readonly routing: RoutingApi | undefined;
  /** In a cluster: partition replication; absent on a node alone. */
  readonly replication: ReplicationService | undefined;
  /** The partitions this node holds, each a replica over its log. */
  readonly replicas: ReplicaManager;
  readonly #waiters: FetchWaiters;
  readonly #reconciler: PartitionReconciler;
  #shuttingDown = false;
  #started = false;

  constructor(options: BrokerOptions, deps: BrokerDeps) {
    const replicas = new ReplicaManager(
      { nodeId: options.nodeId, ...(deps.canLead ? { canLead: deps.canLead } : {}) },
      { logs: deps.logs },
    );
    this.replicas = replicas;
    const topics = new Topics(
      { defaultConfigs: options.defaultConfigs ?? {} },
      { registry: deps.registry, replicas, ...(deps.catchUp ? { catchUp: deps.catchUp } : {}) },
    );
    this.#waiters = new FetchWaiters(
      { waitersMax: options.fetchWaitersMax ?? 10_000 },
      { clock: deps.clock },
    );
    const metrics = new BrokerMetrics(
      {
        ...(options.partitionSeriesMax !== undefined
          ? { partitionSeriesMax: options.partitionSeriesMax }
          : {}),
      },
      { metrics: deps.metrics ?? noopMetrics, topics, waiters: this.#waiters },
    );
    this.replication = deps.replication
      ? new ReplicationService(
          { nodeId: options.nodeId, ...deps.replication.options },
          {
            topics,
            cluster: deps.replication.cluster,
            transport: deps.replication.transport,
            clock: deps.clock,
            logger: deps.logger ?? noopLogger,
            countIsrChange: (change) => metrics.isrChange(change),
          },
        )
      : undefined;
    this.#reconciler = new PartitionReconciler(
      { nodeId: options.nodeId },
      {
        registry: deps.registry,
        topics,
        ids: deps.logs,
        waiters: this.#waiters,
        metrics,
        logger: deps.logger ?? noopLogger,
        clock: deps.clock,
        ...(this.replication ? { onPartitions: (held) => this.replication!.follow(held) } : {}),
      },
    );
    topics.settleWith(() => this.#reconciler.sync());
    this.admin = new AdminService(
      {
        nodeId: options.nodeId,
        version: options.version,
        address: options.address,
        ...(options.clusterView ? { clusterView: options.clusterView } : {}),
        ...(options.quorum ? { quorum: options.quorum } : {}),
        ...(options.reassignment ? { reassignment: options.reassignment } : {}),
        ...(options.quorumStatus ? { quorumStatus: options.quorumStatus } : {}),
      },
      {
        topics,
        reconciler: this.#reconciler,
        ...(deps.remote ? { remote: deps.remote } : {}),
        clock: deps.clock,
        metrics,
        logger: deps.logger ?? noopLogger,
      },
    );
    this.routing = deps.remote;
    const compression = new CompressionMetrics(deps.metrics ?? noopMetrics);
    this.produce = new ProduceService({
      topics,
      clock: deps.clock,
      metrics,
      compression,
      ...(deps.remote ? { remote: deps.remote } : {}),
      ...(deps.allocateProducerIds
        ? { producerIds: new ProducerIds({ allocate: deps.allocateProducerIds }) }
        : {}),
    });
    this.fetch = new FetchService({ topics, waiters: this.#waiters, metrics, compression });
    const configs = options.defaultConfigs ?? {};
    this.groups = new GroupsService(
      {
        nodeId: options.nodeId,
        ...(configs['offsets.topic.num.partitions'] !== undefined
          ? { offsetsPartitions: Number(configs['offsets.topic.num.partitions']) }
          : {}),
        ...(configs['offsets.retention.minutes'] !== undefined
          ? { offsetsRetentionMs: Number(configs['offsets.retention.minutes']) * 60_000 }
          : {}),
        ...options.groups,
      },
      {
        topics,
        admin: this.admin,
        produce: this.produce,
        fetch: this.fetch,
        clock: deps.clock,
        metrics: deps.metrics ?? noopMetrics,
        ...(deps.remote ? { remote: deps.remote } : {}),
        ...(deps.logger ? { logger: deps.logger } : {}),
      },
    );
    if (deps.remote) deps.remote.groupTarget = (group) => this.groups.target(group);
    const broker = this;
    this.node = {
      nodeId: options.nodeId,
      version: options.version,
      get shuttingDown() {
        return broker.#shuttingDown;
      },
      get ready() {
        return broker.#started && !broker.#shuttingDown;
      },
    };
  }

  /** Opens every known topic's partitions; the node is ready once they are open. */
  async start(): Promise<void> {
    this.replication?.start();
    await this.admin.start();
    this.groups.start();
    this.#started = true;
  }

  /**
   * Starts a clean shutdown: every waiting fetch is answered now with what it has, later fetches
   * do not wait, follow streams end, and the HTTP layer refuses new requests with SHUTTING_DOWN.
   */
  beginShutdown(): void {
    this.#shuttingDown = true;
    this.#reconciler.close();
    this.groups.close();
    this.replication?.close();
    this.#waiters.close();
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }
}
