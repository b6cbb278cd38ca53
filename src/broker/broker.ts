import type { Clock } from '../common/clock.js';
import { type Logger, noopLogger } from '../common/logger.js';
import { type Metrics, noopMetrics } from '../common/metrics.js';
import type { ConfigValue } from '../protocol/topic-config.js';
import { ReplicaManager } from '../replication/replica-manager.js';
import type { LogManager } from '../storage/log-manager.js';
import { type AdminOptions, AdminService } from './admin.js';
import type { BrokerApi, NodeApi } from './api.js';
import { FetchService } from './fetch.js';
import { FetchWaiters } from './fetch-waiters.js';
import { BrokerMetrics } from './metrics.js';
import { ProduceService } from './produce.js';
import type { TopicRegistry } from './topic-registry.js';
import { Topics } from './topics.js';

export interface BrokerOptions {
  nodeId: number;
  version: string;
  /** Where clients reach this node; read when asked, since the port is known only once bound. */
  address: () => { host: string; port: number };
  /** The cluster as the metadata quorum sees it; without it, this node alone. */
  clusterView?: AdminOptions['clusterView'];
  /** Defaults for topics, in Kafka config names (e.g. `flush.policy`, `num.partitions`). */
  defaultConfigs?: Record<string, ConfigValue>;
  fetchWaitersMax?: number;
  /** Partitions with metric series of their own; later ones are added up (see `BrokerMetrics`). */
  partitionSeriesMax?: number;
}

export interface BrokerDeps {
  registry: TopicRegistry;
  logs: LogManager;
  clock: Clock;
  metrics?: Metrics;
  logger?: Logger;
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
  readonly #waiters: FetchWaiters;
  #shuttingDown = false;
  #started = false;

  constructor(options: BrokerOptions, deps: BrokerDeps) {
    const replicas = new ReplicaManager({ nodeId: options.nodeId }, { logs: deps.logs });
    const topics = new Topics(
      { defaultConfigs: options.defaultConfigs ?? {} },
      { registry: deps.registry, replicas },
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
    this.admin = new AdminService(
      {
        nodeId: options.nodeId,
        version: options.version,
        address: options.address,
        ...(options.clusterView ? { clusterView: options.clusterView } : {}),
      },
      { topics, waiters: this.#waiters, clock: deps.clock, metrics, logger: deps.logger ?? noopLogger },
    );
    this.produce = new ProduceService({ topics, clock: deps.clock, metrics });
    this.fetch = new FetchService({ topics, waiters: this.#waiters, metrics });
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
    await this.admin.start();
    this.#started = true;
  }

  /**
   * Starts a clean shutdown: every waiting fetch is answered now with what it has, later fetches
   * do not wait, follow streams end, and the HTTP layer refuses new requests with SHUTTING_DOWN.
   */
  beginShutdown(): void {
    this.#shuttingDown = true;
    this.#waiters.close();
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }
}
