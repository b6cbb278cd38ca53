import type { Clock, TimerHandle } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Controller } from '../metadata/controller.js';
import type { MetadataLog } from '../metadata/metadata-log.js';
import type { MetadataRecord } from '../metadata/records.js';
import { MEDIA } from '../protocol/api.js';
import {
  CONTROLLER_COMMANDS_PATH,
  type ControllerCommand,
  type ControllerCommandResult,
} from '../protocol/internal-api.js';
import { packr, unpackr } from '../protocol/msgpack.js';
import type { RaftStatus } from '../raft/driver.js';
import type { ClusterMetrics } from './cluster-metrics.js';
import { errorOf, type PeerClient } from './peer-client.js';

/** What the controller service needs of the metadata quorum's Raft driver (`RaftDriver`). */
export interface MetadataQuorum {
  status(): RaftStatus;
  addVoter(node: number): Promise<unknown>;
  removeVoter(node: number): Promise<unknown>;
  addLearner(node: number): Promise<unknown>;
}

export interface ControllerServiceOptions {
  nodeId: number;
  /** A node's base URL: where a command goes when that node leads the metadata quorum. */
  urlOf: (nodeId: number) => string | undefined;
  /**
   * The voters' URLs as the node was started with (`--controller-quorum`): asked in turn while this
   * node knows no leader (a broker-only node before it is a learner).
   */
  seeds?: readonly string[];
  /** How often the active controller fences expired sessions and elects leaders for leaderless partitions. */
  tickMs: number;
  /** How long `submit` keeps trying (no leader, a leader change, an unreachable leader). */
  submitTimeoutMs: number;
  /** The records that start a cluster (cluster id, metadata.version), committed by its first leader. */
  bootstrapRecords: () => MetadataRecord[];
  /** How often leadership goes back to preferred replicas (0: never); 60 s when absent. */
  preferredLeaderCheckMs?: number;
}

/** Errors after which a command is sent again: no controller yet, or one that just lost the role. */
const RETRIED = new Set(['NOT_CONTROLLER', 'NOT_LEADER', 'NETWORK_EXCEPTION', 'LEADER_NOT_AVAILABLE']);

/**
 * The active controller's service on every node of the metadata quorum. On the node that leads the
 * quorum it carries out commands one at a time (each reads the image the one before it left, so
 * that two creates of one name cannot both pass), commits the cluster's first records, fences
 * brokers whose sessions expired and elects leaders for leaderless partitions. On any node,
 * `submit` takes a command to wherever the controller is and resolves once this node's image shows
 * the decision.
 */
export class ControllerService {
  readonly #options: ControllerServiceOptions;
  readonly #log: MetadataLog;
  readonly #controller: Controller;
  readonly #quorum: MetadataQuorum;
  readonly #peers: PeerClient | undefined;
  readonly #clock: Clock;
  readonly #logger: Logger;
  #serial: Promise<unknown> = Promise.resolve();
  #timer: TimerHandle | undefined;
  /** The term this node last became the active controller in, once its barrier committed. */
  #activeTerm = -1;
  #ticking = false;
  #closed = false;
  #metrics: ClusterMetrics | undefined;
  #seed = 0;
  #preferredCheckedMs = 0;

  constructor(
    options: ControllerServiceOptions,
    deps: {
      log: MetadataLog;
      controller: Controller;
      quorum: MetadataQuorum;
      peers?: PeerClient;
      clock: Clock;
      logger: Logger;
    },
  ) {
    this.#options = options;
    this.#log = deps.log;
    this.#controller = deps.controller;
    this.#quorum = deps.quorum;
    this.#peers = deps.peers;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
  }

  /** Whether this node is the active controller (it leads the metadata quorum). */
  get active(): boolean {
    return this.#quorum.status().role === 'leader';
  }

  start(): void {
    this.#timer = this.#clock.setInterval(() => void this.#tick(), this.#options.tickMs);
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
  }

  /**
   * Runs the command on the active controller, here or on the node that leads, and resolves once
   * this node's image has applied the decision; rejects with the controller's refusal. Gives up
   * after `timeoutMs` (the service's submit timeout when absent): a heartbeat must give up well
   * within the session it refreshes, so that the next one is sent.
   */
  async submit(
    command: ControllerCommand,
    options: { timeoutMs?: number } = {},
  ): Promise<ControllerCommandResult> {
    const timeoutMs = options.timeoutMs ?? this.#options.submitTimeoutMs;
    const deadline = this.#clock.monotonicMs() + timeoutMs;
    let wait = 20;
    for (;;) {
      try {
        const result = await this.#route(command, Math.max(1, deadline - this.#clock.monotonicMs()));
        await this.#applied(result.offset, deadline, command.type);
        return result;
      } catch (error) {
        const code = error instanceof SluiceError ? error.code : undefined;
        if (this.#closed || code === undefined || !RETRIED.has(code)) throw error;
        if (this.#clock.monotonicMs() + wait > deadline) {
          throw new SluiceError(
            'NOT_CONTROLLER',
            `no active controller took the ${command.type} within ${timeoutMs} ms: ${(error as Error).message}`,
            { cause: error },
          );
        }
      }
      await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, wait));
      wait = Math.min(wait * 2, 500);
    }
  }

  /** Waits for this node's image to reach `offset`; REQUEST_TIMED_OUT (the decision stands) past `deadline`. */
  async #applied(offset: number, deadline: number, what: string): Promise<void> {
    const abort = new AbortController();
    const timer = this.#clock.setTimeout(
      () => abort.abort(),
      Math.max(0, deadline - this.#clock.monotonicMs()),
    );
    const applied = await this.#log.waitFor(offset, abort.signal);
    timer.cancel();
    if (!applied) {
      throw new SluiceError(
        'REQUEST_TIMED_OUT',
        `the ${what} was decided, but this node had not applied it in time (metadata offset ${offset})`,
      );
    }
  }

  /**
   * Waits until this node's image holds everything the active controller had decided when asked:
   * a topic created through any node is then known here. Gives up quietly after `timeoutMs` (the
   * caller answers from the image it has).
   */
  async catchUp(timeoutMs = 2000): Promise<void> {
    if (this.active) return;
    let timer: TimerHandle | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = this.#clock.setTimeout(resolve, timeoutMs);
    });
    try {
      await Promise.race([this.submit({ type: 'readIndex' }).catch(() => {}), timeout]);
    } finally {
      timer?.cancel();
    }
  }

  async #route(command: ControllerCommand, timeoutMs: number): Promise<ControllerCommandResult> {
    const status = this.#quorum.status();
    if (status.role === 'leader') return this.execute(command);
    const leader = status.leaderId;
    const seeds = this.#options.seeds ?? [];
    const url =
      leader !== null
        ? this.#options.urlOf(leader)
        : seeds.length > 0
          ? seeds[this.#seed++ % seeds.length]
          : undefined;
    if (url === undefined || !this.#peers) {
      throw new SluiceError('NOT_CONTROLLER', 'the metadata quorum has no leader right now');
    }
    const response = await this.#peers.request(url, {
      method: 'POST',
      path: CONTROLLER_COMMANDS_PATH,
      headers: { 'content-type': MEDIA.msgpack, accept: MEDIA.json },
      body: packr.pack(command),
      timeoutMs,
    });
    if (response.status !== 200) throw errorOf(response, `controller ${leader ?? url}`);
    const result = unpackr.unpack(response.body) as ControllerCommandResult;
    if (!Number.isSafeInteger(result?.offset))
      throw new SluiceError('UNKNOWN_SERVER_ERROR', `controller ${leader ?? url} answered without an offset`);
    return result;
  }

  /** Carries out the command as the active controller; NOT_CONTROLLER on any other node. */
  execute(command: ControllerCommand): Promise<ControllerCommandResult> {
    return this.#serially(async () => {
      this.#requireActive();
      await this.#ensureBarrier();
      const image = this.#log.image;
      if (command.type === 'addVoter' || command.type === 'removeVoter') {
        try {
          await this.#changeVoters(command);
        } catch (error) {
          this.#metrics?.command(
            command.type,
            error instanceof SluiceError ? error.code : 'UNKNOWN_SERVER_ERROR',
          );
          throw error;
        }
        this.#metrics?.command(command.type, 'ok');
        return { offset: this.#log.image.lastOffset };
      }
      let records: MetadataRecord[];
      try {
        records = this.#decide(command);
      } catch (error) {
        this.#metrics?.command(
          command.type,
          error instanceof SluiceError ? error.code : 'UNKNOWN_SERVER_ERROR',
        );
        throw error;
      }
      await this.#log.propose(records);
      this.#metrics?.command(command.type, 'ok');
      const offset = records.length === 0 ? image.lastOffset : this.#log.image.lastOffset;
      const block = records.find((r) => r.type === 'producerIdBlock');
      return block
        ? { offset, producerIds: { firstProducerId: block.firstProducerId, size: block.size } }
        : { offset };
    });
  }

  /** Counts the commands carried out here (set once by the node). */
  countWith(metrics: ClusterMetrics): void {
    this.#metrics = metrics;
  }

  /** Membership changes: carried out on the Raft log itself, not as metadata records. */
  async #changeVoters(command: { type: 'addVoter' | 'removeVoter'; nodeId: number }): Promise<void> {
    const status = this.#quorum.status();
    const { voters, learners } = status.membership;
    const id = command.nodeId;
    if (command.type === 'addVoter') {
      if (voters.includes(id)) return;
      if (!learners.includes(id)) {
        throw new SluiceError(
          'INVALID_REQUEST',
          `node ${id} is not a learner of the metadata quorum: start it with --controller-quorum naming the voters, and let it register first`,
          { details: { nodeId: id } },
        );
      }
      const match = status.followers.find((f) => f.id === id)?.matchIndex ?? 0;
      if (match < status.commitIndex) {
        throw new SluiceError(
          'NOT_ENOUGH_REPLICAS',
          `node ${id} has not caught up with the metadata log yet (at ${match} of ${status.commitIndex}); try again`,
          { details: { nodeId: id, matchIndex: match, commitIndex: status.commitIndex } },
        );
      }
      await this.#quorum.addVoter(id);
      this.#logger.info({ nodeId: id }, 'voter added to the metadata quorum');
      return;
    }
    if (!voters.includes(id))
      throw new SluiceError('INVALID_REQUEST', `node ${id} is not a voter`, { details: { nodeId: id } });
    if (voters.length === 1)
      throw new SluiceError('INVALID_REQUEST', 'the last voter of the metadata quorum cannot be removed');
    await this.#quorum.removeVoter(id);
    this.#logger.info({ nodeId: id }, 'voter removed from the metadata quorum');
  }

  #decide(command: ControllerCommand): MetadataRecord[] {
    const image = this.#log.image;
    const c = this.#controller;
    switch (command.type) {
      case 'createTopic':
        return c.createTopic(image, {
          name: command.name,
          partitions: command.partitions,
          replicationFactor: command.replicationFactor,
          configs: command.configs,
        });
      case 'deleteTopic':
        return c.deleteTopic(image, command.name);
      case 'alterConfigs':
        return c.alterConfigs(image, command.name, command.changes);
      case 'addPartitions':
        return c.addPartitions(image, command.name, command.partitions);
      case 'registerBroker':
        return c.registerBroker(image, {
          brokerId: command.brokerId,
          incarnationId: command.incarnationId,
          endpoints: command.endpoints,
          rack: command.rack,
          ...(command.shutdown ? { shutdown: command.shutdown } : {}),
        });
      case 'readIndex':
        return [];
      case 'addVoter':
      case 'removeVoter':
        return [];
      case 'offlineReplicas':
        return c.offlineReplicas(image, command);
      case 'shutdownBroker':
        return c.controlledShutdown(image, command.brokerId, command.brokerEpoch);
      case 'allocateProducerIds':
        return c.allocateProducerIds(image, command.brokerId, command.brokerEpoch);
      case 'alterPartition':
        return c.alterPartition(image, command);
      case 'reassignPartitions':
        return c.reassignPartitions(image, command.partitions);
      case 'decommissionBroker':
        return c.decommissionBroker(image, command.brokerId);
      case 'heartbeat':
        return c.heartbeat(image, {
          brokerId: command.brokerId,
          brokerEpoch: command.brokerEpoch,
          caughtUp: command.caughtUp,
        });
    }
  }

  #requireActive(): void {
    const status = this.#quorum.status();
    if (status.role !== 'leader') {
      throw new SluiceError(
        'NOT_CONTROLLER',
        `node ${this.#options.nodeId} is not the active controller${status.leaderId === null ? '' : `; node ${status.leaderId} is`}`,
        { details: { controllerId: status.leaderId } },
      );
    }
  }

  /**
   * A node that has just become the active controller first commits a barrier, so that it decides
   * on an image holding every record an earlier controller committed, and starts every broker's
   * session afresh; a new cluster gets its first records here.
   */
  async #ensureBarrier(): Promise<void> {
    const term = this.#quorum.status().term;
    if (this.#activeTerm === term) return;
    await this.#log.barrier();
    this.#controller.resetSessions();
    if (this.#log.image.clusterId === null) {
      await this.#log.propose(this.#options.bootstrapRecords());
      this.#logger.info({ clusterId: this.#log.image.clusterId }, 'cluster bootstrapped');
    }
    // Only now: a bootstrap that failed (its proposal refused or timed out) is tried again by the
    // next command, which must not decide on an image without a cluster id and metadata.version.
    this.#activeTerm = term;
    this.#logger.info({ nodeId: this.#options.nodeId, term }, 'active controller');
  }

  /** The active controller's periodic work: fencing and leaderless elections. */
  async #tick(): Promise<void> {
    if (this.#ticking || this.#closed || !this.active) return;
    this.#ticking = true;
    try {
      await this.#serially(async () => {
        this.#requireActive();
        await this.#ensureBarrier();
        const fence = this.#controller.fenceExpired(this.#log.image);
        if (fence.length > 0) {
          await this.#log.propose(fence);
          const fenced = fence
            .filter((r) => r.type === 'fenceBroker')
            .map((r) => (r as { brokerId: number }).brokerId);
          this.#logger.info({ brokers: fenced, records: fence.length }, 'brokers fenced: sessions expired');
        }
        const elect = this.#controller.electLeaderless(this.#log.image);
        if (elect.length > 0) {
          await this.#log.propose(elect);
          this.#logger.info({ partitions: elect.length }, 'leaders elected for leaderless partitions');
        }
        const complete = this.#controller.completeReassignments(this.#log.image);
        if (complete.length > 0) {
          await this.#log.propose(complete);
          this.#logger.info({ partitions: complete.length }, 'reassignments completed');
        }
        await this.#addLearners();
        const every = this.#options.preferredLeaderCheckMs ?? 60_000;
        const now = this.#clock.monotonicMs();
        if (every > 0 && now - this.#preferredCheckedMs >= every) {
          this.#preferredCheckedMs = now;
          const moves = this.#controller.preferredLeaders(this.#log.image);
          if (moves.length > 0) {
            await this.#log.propose(moves);
            this.#logger.info({ partitions: moves.length }, 'leadership restored to preferred replicas');
          }
        }
      });
    } catch (error) {
      const code = error instanceof SluiceError ? error.code : undefined;
      if (code !== 'NOT_CONTROLLER' && code !== 'NOT_LEADER' && !this.#closed)
        this.#logger.warn({ err: error }, 'the controller tick failed');
    } finally {
      this.#ticking = false;
    }
  }

  /**
   * A registered broker that is not a member of the metadata quorum (a broker-only node) becomes a
   * learner: it then receives the log and follows the image without voting. One at a time, as
   * Raft's single-server changes require.
   */
  async #addLearners(): Promise<void> {
    const { voters, learners } = this.#quorum.status().membership;
    for (const broker of this.#log.image.brokers.values()) {
      const id = broker.brokerId;
      if (id === this.#options.nodeId || voters.includes(id) || learners.includes(id)) continue;
      if (this.#options.urlOf(id) === undefined) continue;
      await this.#quorum.addLearner(id);
      this.#logger.info({ nodeId: id }, 'learner added to the metadata quorum');
      return;
    }
  }

  #serially<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#serial.then(operation);
    this.#serial = result.catch(() => {});
    return result;
  }
}
