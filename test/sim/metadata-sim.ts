import { ControllerService } from '../../src/broker/controller-service.js';
import { type ErrorCode, isSluiceError, SluiceError } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import { type BrokerRegistration, Controller, type ShutdownKind } from '../../src/metadata/controller.js';
import {
  encodeImage,
  type MetadataDelta,
  type MetadataImage,
  reassigning,
  targetReplicas,
} from '../../src/metadata/image.js';
import { MetadataLog, type MetadataRaft } from '../../src/metadata/metadata-log.js';
import {
  METADATA_VERSION_FEATURE,
  METADATA_VERSION_MAX,
  type MetadataRecord,
} from '../../src/metadata/records.js';
import type { ControllerCommand } from '../../src/protocol/internal-api.js';
import type { SnapshotHooks, StateMachine } from '../../src/raft/driver.js';
import type { Entry, NodeId } from '../../src/raft/types.js';
import { type Incarnation, nodesFor, type SimApplication, SimCluster, type SimNode } from './cluster.js';

/**
 * A seeded simulation of the metadata layer on the Raft simulation of cluster.ts: every node runs
 * a MetadataLog over its real RaftDriver, a Controller and a ControllerService (its tick on the
 * node's clock, its placement and topic ids from the seed), and one broker. The broker registers
 * with a new incarnation in each process lifetime and heartbeats through the node its own node
 * believes leads, as the router does; a client creates, deletes and grows topics through random
 * nodes. Under them run the Raft simulation's faults (crashes losing unsynced writes, restarts,
 * pauses, partitions, loss, clock rates, failed saves, a lost disk) and leadership transfers; a
 * partition or loss that cuts a node from the controller cuts its broker's and the client's
 * requests too, and a request to a crashed node fails at once.
 *
 * Invariants, on every image a node applies (each entry's, and each snapshot restored):
 * - replay ignores no record: the controller writes only records that apply;
 * - two nodes' images at one offset are the same image;
 * - within a process lifetime the offset never goes back, nor does any partition's leader epoch
 *   or partition epoch (keyed by topic id: a re-created topic is another topic);
 * - one leader per (topic id, partition, leader epoch) across all nodes;
 * - a leader is -1 or in the ISR and the replicas; the ISR is a non-empty subset of the replicas;
 * - a fenced broker leads no partition;
 * - no two topics share a name or an id.
 * A command's error is one of the refusals its type allows (not UNKNOWN_SERVER_ERROR, not a bug).
 *
 * At the end, after a heal without faults: every live node holds the leader's image, every live
 * broker is unfenced, a dead one fenced, and every partition with a live in-sync replica has a
 * leader. Then one broker is cut off from the controller (its node crashed, isolated or paused, or
 * its requests alone dropped): it must be fenced within the session timeout and a bound, its
 * leaderships moved or left at -1; back, it is unfenced and leads again what it held alone.
 */
export interface MetadataSimOptions {
  seed: number;
  nodes: number;
  /** Simulated milliseconds of faults and workload before the heal. */
  faultMs?: number;
  /** Simulated milliseconds allowed for each convergence after the heal. */
  settleMs?: number;
  transcript?: boolean;
  /**
   * For the simulation's own tests, controllers the checks must catch: `fenceKeepsLeaders` fences
   * without moving the fenced broker's leaderships; `registerKeepsLeaders` lets a broker that
   * restarted within its session register (fenced) and keep leading, the bug this simulation found.
   */
  unsafe?: 'fenceKeepsLeaders' | 'registerKeepsLeaders';
  /**
   * For simulations built on this one (cluster-sim.ts): called as each process lifetime starts,
   * once its metadata log and controller service exist, to run more of the node over them.
   */
  onProcess?: (process: MetadataProcess) => void;
}

export interface MetadataSeedResult {
  traceHash: string;
  steps: number;
  /** Counted once per entry, over the whole run. */
  topicsCreated: number;
  topicsDeleted: number;
  partitionsAdded: number;
  registrations: number;
  /** Brokers fenced because their sessions expired. */
  fences: number;
  /** Registrations that replaced an unfenced one (a restart within the session). */
  liveRestarts: number;
  unfences: number;
  /** Leaderships moved from one broker to another, set to -1, and given to a leaderless partition. */
  leadersMoved: number;
  leadersLost: number;
  leaderlessElected: number;
  /** Refusals the client got for asking more replicas than there were live brokers. */
  replicationRefused: number;
  /** Reassignments the client asked for, and those completed and cancelled (entries replayed). */
  reassignmentsAsked: number;
  reassignmentsCompleted: number;
  reassignmentsCancelled: number;
  /** Producer id blocks handed out (each checked against every other for overlap). */
  producerIdBlocks: number;
  /** The same counts up to the heal: what the faulty phase itself exercised. */
  underFaults: {
    topicsCreated: number;
    fences: number;
    liveRestarts: number;
    leaderlessElected: number;
    registrations: number;
  };
  /** How the final fence check cut its broker off, and how long the fence took (ms). */
  finalCut: CutKind;
  finalFenceMs: number;
}

type CutKind = 'crash' | 'isolate' | 'pause' | 'requests';

/**
 * A broker unheard of for longer than this is fenced: four election timeouts, so that faults that
 * last a few hundred milliseconds fence brokers while the leader holds.
 */
const SESSION_TIMEOUT_MS = 400;
/**
 * The broker's heartbeat interval, on its node's clock: 30-120 ms of simulated time, so that even
 * the slowest clock beats three times per session.
 */
const HEARTBEAT_MS = 60;
const CONTROLLER_TICK_MS = 50;
/**
 * A request to the controller that gets no answer in this long (on the sender's clock: 50-200 ms)
 * failed. With the heartbeat interval it stays under the session: a lost answer costs a broker
 * one beat, not its session.
 */
const REQUEST_TIMEOUT_MS = 100;
/** Client commands in flight at once; more are not sent. */
const CLIENT_INFLIGHT_MAX = 8;
/** Few names, so that creates collide and deleted topics come back under new ids. */
const TOPIC_NAMES = ['a', 'b', 'c', 'd', 'e'];
/**
 * From a cut to the fence in the leader's image: a heartbeat already in flight (up to 15 ms), the
 * session, the next tick at half speed, the commit; with room to spare (the fences measured take
 * 360-540 ms).
 */
const FENCE_BOUND_MS = SESSION_TIMEOUT_MS + 2 * CONTROLLER_TICK_MS + 300;

/** Refusals a command may get under faults; anything else is a bug. */
const ROUTING_ERRORS: readonly string[] = [
  'NOT_CONTROLLER',
  'NOT_LEADER',
  'NETWORK_EXCEPTION',
  'REQUEST_TIMED_OUT',
  'KAFKA_STORAGE_ERROR',
  'LIMIT_EXCEEDED',
];
const ALLOWED_ERRORS: Readonly<Record<ControllerCommand['type'], readonly string[]>> = {
  createTopic: ['TOPIC_ALREADY_EXISTS', 'INVALID_REPLICATION_FACTOR'],
  deleteTopic: ['UNKNOWN_TOPIC_OR_PARTITION'],
  addPartitions: ['UNKNOWN_TOPIC_OR_PARTITION', 'INVALID_REPLICATION_FACTOR', 'INVALID_PARTITIONS'],
  alterConfigs: ['UNKNOWN_TOPIC_OR_PARTITION'],
  // A heartbeat at an epoch a newer registration replaced.
  heartbeat: ['INVALID_REQUEST'],
  registerBroker: [],
  readIndex: [],
  // Not sent by this simulation.
  addVoter: [],
  removeVoter: [],
  shutdownBroker: [],
  offlineReplicas: [],
  // The simulated leader's catch-up report, computed from an image that may be stale by the time
  // it arrives, from a broker fenced meanwhile, or for a topic deleted meanwhile.
  alterPartition: [
    'FENCED_LEADER_EPOCH',
    'INVALID_UPDATE_VERSION',
    'INVALID_REQUEST',
    'UNKNOWN_TOPIC_OR_PARTITION',
  ],
  // Targets drawn from a stale image: a partition or topic gone, one already moving, nothing to cancel.
  reassignPartitions: [
    'UNKNOWN_TOPIC_OR_PARTITION',
    'REASSIGNMENT_IN_PROGRESS',
    'NO_REASSIGNMENT_IN_PROGRESS',
    'INVALID_REPLICA_ASSIGNMENT',
    'INVALID_UPDATE_VERSION',
    // A cancel whose original replicas all fell out of sync.
    'INVALID_REQUEST',
  ],
  decommissionBroker: [
    'INVALID_REPLICATION_FACTOR',
    'REASSIGNMENT_IN_PROGRESS',
    'INVALID_REPLICA_ASSIGNMENT',
  ],
  // Asked at an epoch a newer registration replaced.
  allocateProducerIds: ['INVALID_REQUEST'],
};

type Outcome =
  | { offset: number; producerIds?: { firstProducerId: number; size: number } }
  | { error: unknown };

/** One process lifetime of a node: its metadata log, controller service and broker. */
export interface MetadataProcess {
  node: SimNode;
  life: Incarnation;
  log: MetadataLog;
  service: ControllerService;
  incarnationId: string;
  /** A registration or heartbeat is in flight (one at a time, as the broker sends them). */
  beating: boolean;
  /** `topicId/partition` → the highest [leaderEpoch, partitionEpoch] this process's images showed. */
  epochs: Map<string, [number, number]>;
  lastOffset: number;
  /**
   * When (on this process's clock) the last heartbeat the controller answered was sent: a leader
   * silent for longer than its session must not take writes (`canLead`).
   */
  lastBeatMs: number;
  /** How the node's last run ended, as its registrations say (absent: clean). */
  shutdown?: ShutdownKind;
}

/** Fences that leave leaderships in place: the checks must catch them. */
class FenceKeepsLeadersController extends Controller {
  override fenceExpired(image: MetadataImage): MetadataRecord[] {
    return super.fenceExpired(image).filter((r) => r.type === 'fenceBroker');
  }
}

/** Registrations that leave leaderships in place, as before the fix: the checks must catch them. */
class RegisterKeepsLeadersController extends Controller {
  override registerBroker(image: MetadataImage, registration: BrokerRegistration): MetadataRecord[] {
    return super.registerBroker(image, registration).filter((r) => r.type === 'registerBroker');
  }
}

const CONTROLLERS = {
  fenceKeepsLeaders: FenceKeepsLeadersController,
  registerKeepsLeaders: RegisterKeepsLeadersController,
};

export class MetadataSim {
  readonly cluster: SimCluster;
  readonly #processes = new Map<NodeId, MetadataProcess>();
  /** offset → the image every node must hold at that offset (its encoding). */
  readonly #imageAt = new Map<number, string>();
  /** `topicId/partition/leaderEpoch` → the leader. */
  readonly #leaderAt = new Map<string, number>();
  /** Entries (by their last offset) already counted in the stats. */
  readonly #counted = new Set<number>();
  /** Brokers whose requests are dropped (the final check's `requests` cut). */
  readonly #cutBrokers = new Set<NodeId>();
  /** broker id → when the leader of the moment was last handed a heartbeat of it. */
  readonly #lastHeartbeatAt = new Map<NodeId, number>();
  #clientInflight = 0;
  /** [first, size] of every producer id block handed out. */
  readonly #producerBlocks: [number, number][] = [];
  readonly stats = {
    topicsCreated: 0,
    topicsDeleted: 0,
    partitionsAdded: 0,
    registrations: 0,
    fences: 0,
    liveRestarts: 0,
    unfences: 0,
    leadersMoved: 0,
    leadersLost: 0,
    leaderlessElected: 0,
    replicationRefused: 0,
    reassignmentsAsked: 0,
    reassignmentsCompleted: 0,
    reassignmentsCancelled: 0,
    producerIdBlocks: 0,
  };

  constructor(readonly options: MetadataSimOptions) {
    const application: SimApplication = {
      start: (sim, node, life) => this.#startProcess(sim, node, life),
    };
    this.cluster = new SimCluster({
      seed: options.seed,
      nodes: options.nodes,
      transcript: options.transcript ?? false,
      // Membership changes would need brokers that are not voters: not modelled here.
      admin: false,
      staleTail: false,
      application,
    });
  }

  get transcript(): string[] {
    return this.cluster.transcript;
  }

  // ---- processes ----

  #startProcess(sim: SimCluster, node: SimNode, life: Incarnation): StateMachine {
    const hooks: { apply?: (entry: Entry) => void | Promise<void>; snapshot?: SnapshotHooks } = {};
    const raft: MetadataRaft = {
      onApply: (handler) => {
        hooks.apply = handler;
      },
      onSnapshot: (snapshot) => {
        hooks.snapshot = snapshot;
      },
      propose: (data) => life.driver.propose(data),
    };
    const log = new MetadataLog({ raft });
    const ControllerClass = this.options.unsafe ? CONTROLLERS[this.options.unsafe] : Controller;
    const controller = new ControllerClass(
      { sessionTimeoutMs: SESSION_TIMEOUT_MS },
      { clock: life.clock, random: sim.random.fork() },
    );
    const service = new ControllerService(
      {
        nodeId: node.id,
        // Commands are routed by the simulation itself (`execute` on the node believed to lead).
        urlOf: () => undefined,
        tickMs: CONTROLLER_TICK_MS,
        submitTimeoutMs: REQUEST_TIMEOUT_MS,
        bootstrapRecords: () => [
          { type: 'clusterId', version: 0, clusterId: `sim-${this.options.seed}` },
          { type: 'featureLevel', version: 0, name: METADATA_VERSION_FEATURE, level: METADATA_VERSION_MAX },
        ],
      },
      { log, controller, quorum: life.driver, clock: life.clock, logger: this.#logger(sim, node) },
    );
    const process: MetadataProcess = {
      node,
      life,
      log,
      service,
      incarnationId: `broker-${node.id}-${life.number}`,
      beating: false,
      epochs: new Map(),
      lastOffset: 0,
      lastBeatMs: Number.NEGATIVE_INFINITY,
    };
    log.onChange((delta) => this.#observe(sim, process, delta));
    this.#processes.set(node.id, process);
    this.options.onProcess?.(process);
    // Both on the node's clock: they run at its rate, wait while it is paused, die with it.
    service.start();
    life.clock.setInterval(() => this.#beat(process), HEARTBEAT_MS);
    return {
      apply: (entry) => hooks.apply?.(entry),
      snapshot: () => hooks.snapshot!.take(),
      restore: (data, index) => hooks.snapshot!.restore(data, index),
    };
  }

  /** The controller service logs a failed tick at warn: only a storage failure or closing may cause one. */
  #logger(sim: SimCluster, node: SimNode): Logger {
    const warn = (fields: Record<string, unknown>, message: string) => {
      const code = isSluiceError(fields.err) ? fields.err.code : undefined;
      if (code === 'KAFKA_STORAGE_ERROR' || code === 'SHUTTING_DOWN' || code === 'LIMIT_EXCEEDED') return;
      sim.fail(
        `node ${node.id} logged "${message}": ${(fields.err as Error)?.stack ?? JSON.stringify(fields)}`,
      );
    };
    return {
      error: warn,
      warn,
      info: (_fields, message) => sim.trace(`${node.id}: ${message}`),
      debug: () => {},
    };
  }

  #alive(process: MetadataProcess): boolean {
    return !process.life.dead && this.#processes.get(process.node.id) === process;
  }

  // ---- the broker ----

  /** Registers this process's incarnation until the local image shows it, then heartbeats. */
  #beat(process: MetadataProcess): void {
    if (process.beating || !this.#alive(process)) return;
    const id = process.node.id;
    const me = process.log.image.broker(id);
    const command: ControllerCommand =
      me?.incarnationId === process.incarnationId
        ? { type: 'heartbeat', brokerId: id, brokerEpoch: me.brokerEpoch, caughtUp: true }
        : {
            type: 'registerBroker',
            brokerId: id,
            incarnationId: process.incarnationId,
            endpoints: [{ name: 'public', host: `node-${id}`, port: 9092 }],
            rack: null,
            ...(process.shutdown && process.shutdown !== 'clean' ? { shutdown: process.shutdown } : {}),
          };
    process.beating = true;
    if (command.type === 'registerBroker') this.cluster.trace(`register ${process.incarnationId}`);
    const sentMs = process.life.clock.monotonicMs();
    this.#submit(process, command, (outcome) => {
      process.beating = false;
      if (command.type === 'heartbeat' && !('error' in outcome)) process.lastBeatMs = sentMs;
      this.#checkOutcome(command, outcome);
    });
  }

  // ---- requests to the controller ----

  /**
   * `command` from node `from`'s current process, routed as every request of this simulation is;
   * resolves with its offset once `from`'s image shows it, rejects with the refusal or timeout.
   */
  submitFrom(from: MetadataProcess, command: ControllerCommand): Promise<number> {
    return new Promise((resolve, reject) =>
      this.#submit(from, command, (outcome) => {
        if ('error' in outcome) reject(outcome.error);
        else resolve(outcome.offset);
      }),
    );
  }

  /**
   * `command` from `from` to the node it believes leads (itself when it leads), carried out there
   * by `execute`; the answer comes back, then `from` waits until its own image shows the decision,
   * as `ControllerService.submit` does. `done` gets the offset or the error, at most once, within
   * REQUEST_TIMEOUT_MS on `from`'s clock, and never after `from` dies.
   */
  #submit(from: MetadataProcess, command: ControllerCommand, done: (outcome: Outcome) => void): void {
    let settled = false;
    const settle = (outcome: Outcome) => {
      if (settled || from.life.dead) return;
      settled = true;
      timer.cancel();
      done(outcome);
    };
    const timer = from.life.clock.setTimeout(
      () => settle({ error: new SluiceError('REQUEST_TIMED_OUT', 'no answer from the controller') }),
      REQUEST_TIMEOUT_MS,
    );
    const answered = (outcome: Outcome) => {
      if ('error' in outcome) return settle(outcome);
      from.log.waitFor(outcome.offset).then(
        () => settle(outcome),
        (error: unknown) => settle({ error }),
      );
    };
    const status = from.life.driver.status();
    const target = status.role === 'leader' ? from.node.id : status.leaderId;
    const to = target === null ? undefined : this.#processes.get(target);
    if (target === null) {
      settle({ error: new SluiceError('NOT_CONTROLLER', 'the metadata quorum has no leader') });
      return;
    }
    if (to?.node.state !== 'up' || to.life.dead) {
      settle({ error: new SluiceError('NETWORK_EXCEPTION', `node ${target} refuses connections`) });
      return;
    }
    const isBroker = command.type === 'heartbeat' || command.type === 'registerBroker';
    if (isBroker && this.#cutBrokers.has(from.node.id)) return;
    const execute = (reply: (outcome: Outcome) => void) => {
      if (command.type === 'heartbeat' && this.cluster.leader()?.id === to.node.id)
        this.#lastHeartbeatAt.set(command.brokerId, this.cluster.now);
      return to.service.execute(command).then(
        (result) => reply(result),
        (error: unknown) => reply({ error }),
      );
    };
    if (to === from) {
      void execute(answered);
      return;
    }
    this.#send(
      from.node.id,
      to,
      () => void execute((outcome) => this.#send(to.node.id, from, () => answered(outcome))),
    );
  }

  /** One message over the simulated network: blocked links and loss drop it, 1-15 ms of delay. */
  #send(from: NodeId, to: MetadataProcess, deliver: () => void): void {
    const c = this.cluster;
    const link = `${from}->${to.node.id}`;
    if (c.blocked.has(link) || c.random.chance(c.dropRate)) return;
    c.at(to.node, 1 + c.random.int(15), () => {
      if (!to.life.dead && !c.blocked.has(link)) deliver();
    });
  }

  /** Producer id blocks handed out never overlap, whichever controller gave them. */
  #checkProducerIds(outcome: { producerIds?: { firstProducerId: number; size: number } }): void {
    const block = outcome.producerIds;
    if (!block) {
      this.cluster.fail('allocateProducerIds answered without a block');
      return;
    }
    const end = block.firstProducerId + block.size;
    for (const [first, size] of this.#producerBlocks) {
      if (block.firstProducerId < first + size && first < end)
        this.cluster.fail(
          `producer id block [${block.firstProducerId}, ${end}) overlaps [${first}, ${first + size})`,
        );
    }
    this.#producerBlocks.push([block.firstProducerId, block.size]);
    this.stats.producerIdBlocks++;
  }

  #checkOutcome(command: ControllerCommand, outcome: Outcome): void {
    if (!('error' in outcome)) return;
    const error = outcome.error;
    const code: ErrorCode | undefined = isSluiceError(error) ? error.code : undefined;
    if (code === 'INVALID_REPLICATION_FACTOR') this.stats.replicationRefused++;
    if (code !== undefined && (ROUTING_ERRORS.includes(code) || ALLOWED_ERRORS[command.type].includes(code)))
      return;
    this.cluster.fail(
      `${command.type} failed with ${code ?? 'a non-Sluice error'}: ${(error as Error)?.stack ?? String(error)}`,
    );
  }

  // ---- the client ----

  #clientCommand(): void {
    if (this.#clientInflight >= CLIENT_INFLIGHT_MAX) return;
    const r = this.cluster.random;
    const up = [...this.#processes.values()].filter((p) => this.#alive(p) && p.node.state === 'up');
    if (up.length === 0) return;
    const via = r.pick(up);
    const image = via.log.image;
    const topics = [...image.topicIdsByName.keys()].sort();
    const choice = r.int(14);
    let command: ControllerCommand;
    if (choice >= 10 && topics.length > 0) {
      command = this.#reassignmentCommand(image, r.pick(topics), choice - 10);
    } else if (choice < 5 || topics.length === 0) {
      command = {
        type: 'createTopic',
        name: r.pick(TOPIC_NAMES),
        partitions: 1 + r.int(4),
        replicationFactor: 1 + r.int(3),
        configs: {},
      };
    } else if (choice < 7) {
      command = { type: 'deleteTopic', name: r.pick(topics) };
    } else if (choice === 9 && image.broker(via.node.id)) {
      command = {
        type: 'allocateProducerIds',
        brokerId: via.node.id,
        brokerEpoch: image.broker(via.node.id)!.brokerEpoch,
      };
    } else {
      const name = r.pick(topics);
      command = {
        type: 'addPartitions',
        name,
        partitions: image.topic(name)!.partitions.size + 1 + r.int(2),
      };
    }
    this.#clientInflight++;
    this.cluster.trace(`client ${JSON.stringify(command)} via ${via.node.id}`);
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      this.#clientInflight--;
    };
    this.#submit(via, command, (outcome) => {
      finish();
      this.cluster.trace(
        `client ${command.type} ${'error' in outcome ? ((outcome.error as SluiceError).code ?? 'error') : `at ${outcome.offset}`}`,
      );
      this.#checkOutcome(command, outcome);
      if (command.type === 'allocateProducerIds' && !('error' in outcome)) this.#checkProducerIds(outcome);
    });
    // A request whose sender died is never answered: it stops counting against the limit.
    const life = via.life;
    this.cluster.schedule(4 * REQUEST_TIMEOUT_MS, () => {
      if (life.dead) finish();
    });
  }

  /**
   * A reassignment (0), its cancellation (1), a decommission (2), or the report a partition's leader
   * sends once the replicas being added have caught up (3): the ISR change that completes a
   * reassignment, computed from the image of the node the command goes through.
   */
  #reassignmentCommand(image: MetadataImage, name: string, kind: number): ControllerCommand {
    const r = this.cluster.random;
    const topic = image.topic(name)!;
    const p = topic.partitions.get(r.int(topic.partitions.size))!;
    const brokers = [...image.brokers.keys()].sort((a, b) => a - b);
    if (kind === 0) {
      const target = brokers.filter(() => r.int(2) === 0).slice(0, 3);
      if (target.length === 0) target.push(r.pick(brokers));
      this.stats.reassignmentsAsked++;
      return {
        type: 'reassignPartitions',
        partitions: [{ topic: name, partition: p.partition, replicas: target }],
      };
    }
    if (kind === 1)
      return {
        type: 'reassignPartitions',
        partitions: [{ topic: name, partition: p.partition, replicas: null }],
      };
    if (kind === 2) return { type: 'decommissionBroker', brokerId: r.pick(brokers) };
    const live = p.addingReplicas.filter((id) => image.broker(id)?.fenced === false);
    const leader = image.broker(p.leader);
    return {
      type: 'alterPartition',
      brokerId: p.leader < 0 ? 0 : p.leader,
      brokerEpoch: leader?.brokerEpoch ?? 0,
      topicId: p.topicId,
      partition: p.partition,
      leaderEpoch: p.leaderEpoch,
      partitionEpoch: p.partitionEpoch,
      isr: p.replicas.filter((id) => p.isr.includes(id) || live.includes(id)),
    };
  }

  #transfer(): void {
    const c = this.cluster;
    if (!c.faultsOn) return;
    const leader = c.leader();
    if (!leader) return;
    const voters = leader.life.driver.status().membership.voters.filter((id) => id !== leader.id);
    if (voters.length === 0) return;
    const to = c.random.pick(voters);
    try {
      leader.life.driver.transferLeadership(to);
      c.trace(`transfer ${leader.id}->${to}`);
    } catch {
      // Refused: a transfer under way, or the driver stopped.
    }
  }

  // ---- invariants ----

  #observe(sim: SimCluster, process: MetadataProcess, delta: MetadataDelta): void {
    const image = delta.after;
    const where = `node ${process.node.id}#${process.life.number} at offset ${image.lastOffset}`;
    const fail = (message: string) => sim.fail(`${where}: ${message}`);
    for (const ignored of delta.ignored)
      fail(`replay ignored a ${ignored.record.type} the controller wrote: ${ignored.reason.message}`);
    if (image.lastOffset < process.lastOffset)
      fail(`the image went back from offset ${process.lastOffset}${delta.restored ? ' (a snapshot)' : ''}`);
    process.lastOffset = image.lastOffset;
    const bytes = Buffer.from(encodeImage(image)).toString('latin1');
    const known = this.#imageAt.get(image.lastOffset);
    if (known === undefined) this.#imageAt.set(image.lastOffset, bytes);
    else if (known !== bytes) fail('another node holds a different image at this offset');

    if (image.topicsById.size !== image.topicIdsByName.size)
      fail(`${image.topicsById.size} topic ids but ${image.topicIdsByName.size} names`);
    for (const [name, topicId] of image.topicIdsByName.entries())
      if (image.topicById(topicId)?.name !== name)
        fail(`name ${name} maps to topic id ${topicId} of another`);
    for (const topic of image.topicsById.values()) {
      for (const p of topic.partitions.values()) {
        const at = `${topic.name}/${p.partition} (${p.topicId})`;
        // Empty only while offline: its last in-sync replica restarted unclean (KIP-966).
        if (p.isr.length === 0 && p.leader !== -1) fail(`${at} has an empty ISR and leader ${p.leader}`);
        if (!p.elr.every((id) => p.replicas.includes(id) && !p.isr.includes(id)))
          fail(`${at}: eligible replicas ${p.elr} not within replicas ${p.replicas} outside ISR ${p.isr}`);
        if (new Set(p.replicas).size !== p.replicas.length) fail(`${at} lists a replica twice`);
        if (!p.isr.every((id) => p.replicas.includes(id)))
          fail(`${at}: ISR ${p.isr} is not within replicas ${p.replicas}`);
        if (![...p.addingReplicas, ...p.removingReplicas].every((id) => p.replicas.includes(id)))
          fail(
            `${at}: adding ${p.addingReplicas} or removing ${p.removingReplicas} not within replicas ${p.replicas}`,
          );
        if (p.addingReplicas.some((id) => p.removingReplicas.includes(id)))
          fail(`${at}: a replica both adding and removing`);
        if (p.removingReplicas.length >= p.replicas.length)
          fail(`${at}: the reassignment removes every replica`);
        if (p.leader !== -1) {
          if (!p.isr.includes(p.leader) || !p.replicas.includes(p.leader))
            fail(`${at}: leader ${p.leader} is not in ISR ${p.isr} and replicas ${p.replicas}`);
          const broker = image.broker(p.leader);
          if (!broker || broker.fenced)
            fail(`${at} is led by broker ${p.leader}, which is ${broker ? 'fenced' : 'not registered'}`);
        }
        const key = `${p.topicId}/${p.partition}`;
        const seen = process.epochs.get(key);
        if (seen && (p.leaderEpoch < seen[0] || p.partitionEpoch < seen[1]))
          fail(
            `${at}: epochs went back from leader epoch ${seen[0]}, partition epoch ${seen[1]} to ${p.leaderEpoch}, ${p.partitionEpoch}`,
          );
        process.epochs.set(key, [p.leaderEpoch, p.partitionEpoch]);
        const epochKey = `${key}/${p.leaderEpoch}`;
        const leader = this.#leaderAt.get(epochKey);
        if (leader === undefined) this.#leaderAt.set(epochKey, p.leader);
        else if (leader !== p.leader)
          fail(`${at}: leader epoch ${p.leaderEpoch} has leader ${p.leader} here, ${leader} elsewhere`);
      }
    }
    if (!delta.restored) this.#count(sim, delta);
  }

  #count(sim: SimCluster, delta: MetadataDelta): void {
    const offset = delta.after.lastOffset;
    if (this.#counted.has(offset)) return;
    this.#counted.add(offset);
    const s = this.stats;
    s.topicsCreated += delta.topicsCreated.length;
    s.topicsDeleted += delta.topicsRemoved.length;
    s.registrations += delta.brokersRegistered.length;
    // A registration replacing a live one fences the broker too; a fence proper keeps the epoch.
    const registered = new Set(delta.brokersRegistered.map((b) => b.brokerId));
    for (const id of delta.brokersFenced) {
      if (registered.has(id)) s.liveRestarts++;
      else s.fences++;
    }
    s.unfences += delta.brokersUnfenced.length;
    for (const change of delta.partitionsChanged) {
      const { before, after } = change;
      if (before && after && reassigning(before) && !reassigning(after)) {
        const target = targetReplicas(before);
        const completed =
          after.replicas.length === target.length && after.replicas.every((id, i) => target[i] === id);
        if (completed) {
          s.reassignmentsCompleted++;
          // The safety rule: a reassignment completes only once every replica it adds is in sync.
          const missing = before.addingReplicas.filter((id) => !after.isr.includes(id));
          if (missing.length > 0)
            sim.fail(
              `${change.topicName}/${change.partition} completed with ${missing} not in sync (offset ${offset})`,
            );
        } else s.reassignmentsCancelled++;
      }
      if (!before && after && delta.before.topicById(change.topicId)) s.partitionsAdded++;
      if (!before || !after || before.leader === after.leader) continue;
      if (after.leader === -1) s.leadersLost++;
      else if (before.leader === -1) s.leaderlessElected++;
      else s.leadersMoved++;
    }
    if (delta.brokersFenced.length > 0) sim.trace(`fenced ${delta.brokersFenced} at ${offset}`);
    if (delta.brokersUnfenced.length > 0) sim.trace(`unfenced ${delta.brokersUnfenced} at ${offset}`);
  }

  // ---- the scenario ----

  async run(): Promise<MetadataSeedResult> {
    const c = this.cluster;
    const r = c.random;
    const faultMs = this.options.faultMs ?? 3000;
    const settleMs = this.options.settleMs ?? 8000;
    for (let t = 50; t < faultMs; t += 30 + r.int(150)) c.schedule(t, () => c.randomFault());
    for (let t = 20; t < faultMs; t += 10 + r.int(60)) c.schedule(t, () => this.#clientCommand());
    for (let t = 300; t < faultMs; t += 400 + r.int(1200)) c.schedule(t, () => this.#transfer());
    for (let t = 0; t < faultMs; t++) await c.step();
    const s = this.stats;
    const underFaults = {
      topicsCreated: s.topicsCreated,
      fences: s.fences,
      liveRestarts: s.liveRestarts,
      leaderlessElected: s.leaderlessElected,
      registrations: s.registrations,
    };

    c.heal();
    await this.#settle('after the heal', settleMs);
    const { cut, fenceMs } = await this.#finalFence(settleMs);
    c.trace('done');
    return {
      traceHash: c.traceHash,
      steps: c.steps,
      ...s,
      underFaults,
      finalCut: cut,
      finalFenceMs: fenceMs,
    };
  }

  /** Steps until `done()` holds (polled every 20 ms), or fails the run after `timeoutMs`. */
  async #until(what: string, timeoutMs: number, done: () => boolean): Promise<void> {
    const c = this.cluster;
    const deadline = c.now + timeoutMs;
    for (;;) {
      if (c.now % 20 === 0) {
        // A save that was failing as the heal began stopped its node: the operator restarts it.
        for (const node of c.nodes) if (node.state === 'up' && node.life.saveFailed) c.restart(node);
        if (done()) return;
      }
      if (c.now >= deadline) c.fail(`liveness: ${what} within ${timeoutMs} ms (${this.#report()})`);
      await c.step();
    }
  }

  #settle(what: string, timeoutMs: number): Promise<void> {
    return this.#until(`no convergence ${what}`, timeoutMs, () => this.#converged());
  }

  #leaderProcess(): MetadataProcess | undefined {
    const leader = this.cluster.leader();
    const process = leader && this.#processes.get(leader.id);
    return process && this.#alive(process) ? process : undefined;
  }

  /**
   * The leader has applied everything it committed; every live node holds its image; every live
   * broker is registered in its current incarnation and unfenced, every dead one fenced; every
   * partition with a live in-sync replica has a leader.
   */
  #converged(): boolean {
    const leader = this.#leaderProcess();
    if (!leader) return false;
    const status = leader.life.driver.status();
    if (status.commitIndex !== status.appliedIndex) return false;
    const image = leader.log.image;
    if (image.clusterId === null) return false;
    for (const node of this.cluster.nodes) {
      const broker = image.broker(node.id);
      const process = this.#processes.get(node.id)!;
      if (node.state !== 'up') {
        if (broker && !broker.fenced) return false;
        continue;
      }
      if (!broker || broker.incarnationId !== process.incarnationId || broker.fenced) return false;
    }
    for (const topic of image.topicsById.values())
      for (const p of topic.partitions.values())
        if (p.leader === -1 && p.isr.some((id) => image.broker(id)?.fenced === false)) return false;
    const bytes = Buffer.from(encodeImage(image));
    for (const node of this.cluster.nodes) {
      if (node.state !== 'up') continue;
      const process = this.#processes.get(node.id)!;
      if (!bytes.equals(encodeImage(process.log.image))) return false;
    }
    return true;
  }

  #report(): string {
    const leader = this.#leaderProcess();
    const image = leader?.log.image;
    const nodes = this.cluster.nodes
      .map((n) => {
        if (n.state !== 'up') return `${n.id}:${n.state}`;
        const s = n.life.driver.status();
        const p = this.#processes.get(n.id)!;
        const b = image?.broker(n.id);
        return `${n.id}:${s.role[0]} t${s.term} a${s.appliedIndex} o${p.log.image.lastOffset} broker ${b ? `${b.incarnationId}${b.fenced ? ' fenced' : ''}` : 'absent'}`;
      })
      .join(', ');
    const leaderless =
      image &&
      [...image.topicsById.values()]
        .flatMap((t) =>
          [...t.partitions.values()]
            .filter((p) => p.leader === -1)
            .map((p) => `${t.name}/${p.partition} isr ${p.isr}`),
        )
        .join(' ');
    return `leader ${leader?.node.id ?? 'none'}; ${nodes}; leaderless: ${leaderless || 'none'}`;
  }

  /**
   * Creates a topic through the leader, again until the leader's image shows it (an attempt that
   * timed out may have committed: the next one is then refused as TOPIC_ALREADY_EXISTS).
   */
  async #createTopic(name: string, partitions: number, replicationFactor: number, timeoutMs: number) {
    const command: ControllerCommand = {
      type: 'createTopic',
      name,
      partitions,
      replicationFactor,
      configs: {},
    };
    let sent = false;
    await this.#until(`the leader did not create topic ${name}`, timeoutMs, () => {
      const leader = this.#leaderProcess();
      if (leader?.log.image.topic(name)) return true;
      if (!sent && leader) {
        sent = true;
        this.#submit(leader, command, (outcome) => {
          sent = false;
          this.#checkOutcome(command, outcome);
        });
      }
      return false;
    });
  }

  /**
   * After convergence, two topics that every broker has a part in (one of a single replica per
   * partition, one over every live broker); one broker other than the leader's is cut off from the
   * controller. It must be fenced within FENCE_BOUND_MS, its leaderships moved or left at -1;
   * reconnected, the cluster converges again (it leads again what it held alone).
   */
  async #finalFence(settleMs: number): Promise<{ cut: CutKind; fenceMs: number }> {
    const c = this.cluster;
    const r = c.random;
    const live = c.nodes.filter((n) => n.state === 'up').length;
    await this.#createTopic('final-solo', 2 * live, 1, settleMs);
    await this.#createTopic('final-all', live, live, settleMs);
    await this.#settle('after the final topics', settleMs);
    const leader = this.#leaderProcess()!;
    const victim = r.pick(c.nodes.filter((n) => n.state === 'up' && n.id !== leader.node.id));
    // Cutting a whole node must leave the rest a quorum; otherwise only its requests are cut.
    const quorumWithout = 2 * (live - 1) > c.nodes.length;
    const cut: CutKind = quorumWithout
      ? r.pick(['crash', 'isolate', 'pause', 'requests'] as const)
      : 'requests';
    const cutAt = c.now;
    c.trace(`final: cut broker ${victim.id} (${cut})`);
    if (cut === 'crash') c.crash(victim);
    else if (cut === 'isolate') this.#isolate(victim.id);
    else if (cut === 'pause') c.pause(victim, FENCE_BOUND_MS + 500);
    else this.#cutBrokers.add(victim.id);
    await this.#until(`broker ${victim.id} was not fenced after its ${cut} cut`, FENCE_BOUND_MS, () => {
      const image = this.#leaderProcess()?.log.image;
      return image?.broker(victim.id)?.fenced === true;
    });
    const fenceMs = c.now - cutAt;
    // The controller reads its clock after it is handed a heartbeat, and commits the fence after
    // it decides: from the last heartbeat handed to it, a whole session must have passed.
    const silentMs = c.now - (this.#lastHeartbeatAt.get(victim.id) ?? Number.NEGATIVE_INFINITY);
    if (silentMs <= SESSION_TIMEOUT_MS)
      c.fail(`broker ${victim.id} was fenced ${silentMs} ms after its last heartbeat, within its session`);
    const image = this.#leaderProcess()!.log.image;
    for (const topic of image.topicsById.values())
      for (const p of topic.partitions.values())
        if (p.isr.includes(victim.id) && (p.isr.length > 1 || p.leader !== -1))
          c.fail(
            `fenced broker ${victim.id} stays in ${topic.name}/${p.partition}: isr ${p.isr}, leader ${p.leader}`,
          );
    if (cut === 'crash') c.restart(victim);
    else if (cut === 'isolate') c.blocked.clear();
    else if (cut === 'requests') this.#cutBrokers.clear();
    // A paused node resumes by itself.
    c.trace(`final: broker ${victim.id} back`);
    await this.#settle(`after broker ${victim.id} came back`, settleMs);
    return { cut, fenceMs };
  }

  #isolate(id: NodeId): void {
    for (const other of this.cluster.nodes) {
      if (other.id === id) continue;
      this.cluster.blocked.add(`${id}->${other.id}`);
      this.cluster.blocked.add(`${other.id}->${id}`);
    }
  }
}

export async function runMetadataSeed(
  seed: number,
  options: Partial<MetadataSimOptions> = {},
): Promise<MetadataSeedResult> {
  return new MetadataSim({ seed, nodes: nodesFor(seed), ...options }).run();
}

export function metadataReplayCommand(seed: number): string {
  return `SEED=${seed} npm run sim:metadata`;
}
