import { type Clock, ManualClock, type TimerHandle } from '../../src/common/clock.js';
import { SeededRandom } from '../../src/common/random.js';
import { RaftDriver, type RaftTransport, type StateMachine } from '../../src/raft/driver.js';
import { MemoryRaftStorage, type RaftUpdate } from '../../src/raft/storage.js';
import type { Entry, Message, NodeId } from '../../src/raft/types.js';

/**
 * A seeded simulation of a Sluice metadata quorum: real `RaftDriver`s over a simulated network and
 * disk, on one `ManualClock` that the simulator advances a millisecond at a time. After each
 * millisecond in which anything ran, the drivers' promise chains are drained (they touch nothing
 * but simulated objects, so the order is a pure function of the seed) and the invariants are
 * checked.
 *
 * Network: drop, duplicate, delay (1-15 ms, and a long tail: about 1% of messages held 0.2-3 s,
 * far past an election timeout), reorder (by the delays), symmetric and one-way partitions, and a
 * scheduled stale-tail pattern (the leader cut off with a minority, written to there, healed).
 * Processes: crash (power loss: a prefix of the unsynced saves lands, each whole), restart, pause
 * (timers and messages wait, as under SIGSTOP), per-node clock rates between 0.5x and 2x, failed
 * saves (the driver must stop), and restart with empty storage (the driver must refuse it).
 *
 * Invariants: one leader per term; when a leader makes commit index c visible (the save that
 * carries it, with the messages that announce it), a quorum of its voters' durable logs hold its
 * entry at c; every durable commit index covers the same entries everywhere; log matching on
 * durable logs; durable terms never go back; every state machine applies a prefix of one sequence;
 * an acknowledged proposal is applied at its index; a read point covers everything applied before
 * the read; a node that failed a save sends nothing more. At the end, after a heal without faults,
 * every live member applies the same sequence within a bounded time (liveness).
 */

export interface SimOptions {
  seed: number;
  nodes: number;
  /** Simulated milliseconds of faults before the final heal. */
  faultMs?: number;
  /** Simulated milliseconds allowed after healing for every live member to catch up. */
  healMs?: number;
  /** Keep every trace line (for TRACE=1); otherwise only a hash and the last lines. */
  transcript?: boolean;
  /** Leadership transfers and membership changes with a spare node. Default: most seeds. */
  admin?: boolean;
  /**
   * For the simulation's own tests, deliberately unsafe set-ups that the checks must catch:
   * `lyingDisk` resolves saves before they are durable (so acknowledgements leave before the
   * fsync); `wipeRejoins` restarts a node that lost its storage as if it were a new member.
   */
  unsafe?: 'lyingDisk' | 'wipeRejoins';
  /** The scheduled stale-tail pattern; default: on five nodes, two profiles of five. */
  staleTail?: boolean;
  /**
   * What runs over each node's driver instead of the simulation's own state machine, for the
   * simulations built on this one (metadata-sim.ts). The Raft checks stay on; entries are traced by a
   * digest of their bytes, which need not be text.
   */
  application?: SimApplication;
}

/** A state machine for each process lifetime, built over its driver, clock and timers. */
export interface SimApplication {
  /** Called as `life` starts, before its driver loads its storage (a stored snapshot restores into it). */
  start(sim: SimCluster, node: SimNode, life: Incarnation): StateMachine;
}

const TICK_MS = 10;
const ELECTION_TICKS = 10;
/** Lines of trace kept for a failure report when the whole transcript is not collected. */
const TRACE_TAIL_LINES = 200;
const LONG_TAIL_RATE = 0.01;

export class SimulationFailure extends Error {
  override name = 'SimulationFailure';
}

type NodeState = 'up' | 'down' | 'refused';

/** One process lifetime of a node: its driver, state machine and views of clock, disk and network. */
export interface Incarnation {
  number: number;
  dead: boolean;
  driver: RaftDriver;
  storage: SimStorage;
  machine: SimMachine;
  handler: ((m: Message) => void) | undefined;
  /** A save of this incarnation failed: from then on it must send nothing. */
  saveFailed: boolean;
  /** The timers of everything in this process (the driver's, the application's), cancelled when it dies. */
  timers: TimerHandle[];
  /** The node's view of time, which every timer of this process is started on. */
  clock: Clock;
}

export interface SimNode {
  id: NodeId;
  /** Clock rate: timers of this node run `rate` times as fast as simulated time. */
  rate: number;
  state: NodeState;
  life: Incarnation;
  paused: boolean;
  /** Pauses so far: a pause's resume timer ends that pause only, not a later one. */
  pauseCount: number;
  /** Work that arrived while paused, run in order on resume; ticks are coalesced into one. */
  deferred: (() => void)[];
  tickDeferred: (() => void) | undefined;
  /** The node's next save fails (armed by a fault). */
  failNextSave: boolean;
  /** The highest durable term of this node's storage lineage; reset when storage is wiped. */
  durableTerm: number;
  /** Highest commit this node made visible as leader, already checked. */
  checkedCommit: number;
  /** The voters this node had, as leader, since it last made a commit index visible. */
  configsSince: NodeId[][];
  /** This node's storage was wiped at least once. */
  wiped: boolean;
  /** The durable state it had when its disk was lost. */
  lostDisk: MemoryRaftStorage['durable'] | undefined;
}

/**
 * What each node's state machine applied: index → data, and the list itself as its snapshot (with
 * the application's beside it when one runs).
 */
class SimMachine implements StateMachine {
  applied: [number, string][] = [];
  /** The application's state machine, when one runs here: it gets every entry after the checks. */
  app: StateMachine | undefined;
  constructor(
    private readonly sim: SimCluster,
    private readonly node: SimNode,
  ) {}
  get lastIndex(): number {
    return this.applied.at(-1)?.[0] ?? 0;
  }
  apply(entry: Entry): void | Promise<void> {
    const data = this.app ? digest(entry.data) : Buffer.from(entry.data).toString();
    if (entry.index <= this.lastIndex)
      this.sim.fail(`node ${this.node.id} applies ${entry.index} after ${this.lastIndex}`);
    this.sim.recordApply(this.node, entry.index, `${entry.term}:${data}`);
    this.sim.committed(this.node, entry.index, entry.term);
    this.applied.push([entry.index, `${entry.term}:${data}`]);
    if (!this.app) return;
    try {
      return this.app.apply(entry);
    } catch (error) {
      this.sim.fail(
        `node ${this.node.id} failed to apply ${entry.index}: ${(error as Error).stack ?? error}`,
      );
      throw error;
    }
  }
  snapshot(): Uint8Array {
    if (!this.app) return Buffer.from(JSON.stringify(this.applied));
    return Buffer.from(JSON.stringify([this.applied, Buffer.from(this.app.snapshot()).toString('base64')]));
  }
  restore(data: Uint8Array, index: number): void | Promise<void> {
    const parsed = JSON.parse(Buffer.from(data).toString()) as unknown;
    const [applied, app] = this.app
      ? (parsed as [[number, string][], string])
      : [parsed as [number, string][], undefined];
    for (const [i, shape] of applied) this.sim.recordApply(this.node, i, shape);
    if ((applied.at(-1)?.[0] ?? 0) > index)
      this.sim.fail(`node ${this.node.id} restores a snapshot at ${index} holding later entries`);
    this.applied = applied;
    this.sim.trace(`restore ${this.node.id} ${index}`);
    if (app !== undefined) return this.app!.restore(Buffer.from(app, 'base64'), index);
  }
}

/** A short, stable name for an entry's bytes (FNV-1a and the length). */
function digest(data: Uint8Array): string {
  let hash = 0x811c9dc5;
  for (const byte of data) hash = Math.imul(hash ^ byte, 0x01000193);
  return `${(hash >>> 0).toString(16).padStart(8, '0')}/${data.length}`;
}

/**
 * MemoryRaftStorage whose saves become durable when the simulated disk gets to them, that can fail
 * a save, and that reports what becomes durable to the checks.
 */
class SimStorage extends MemoryRaftStorage {
  constructor(
    private readonly sim: SimCluster,
    private readonly node: SimNode,
    private readonly life: () => Incarnation,
  ) {
    super({ autoSync: false });
  }

  override save(update: RaftUpdate): Promise<void> {
    const life = this.life();
    if (life.dead) return new Promise(() => {});
    if (this.node.failNextSave) {
      this.node.failNextSave = false;
      // The driver learns of the failure when its promise chain gets the rejection, within this
      // millisecond; from the next one on, nothing may leave the node.
      this.sim.schedule(0, () => {
        life.saveFailed = true;
      });
      this.sim.trace(
        `save fails ${this.node.id}: ${update.snapshot ? `snapshot ${update.snapshot.index} ` : ''}${update.entries?.length ?? 0} entries${update.hardState ? ' hard state' : ''}`,
      );
      return Promise.reject(new Error('simulated disk failure'));
    }
    this.sim.checkVisibleCommit(this.node, update.hardState?.commit);
    const saved = super.save(update);
    const diskMs = this.sim.random.chance(0.1) ? 5 + this.sim.random.int(20) : 1 + this.sim.random.int(4);
    this.sim.at(this.node, diskMs, () => {
      if (life.dead) return;
      // A synced write makes every earlier batch durable too, as LevelDB's log does.
      this.sync();
      this.sim.checkDurable(this.node, this);
    });
    if (this.sim.options.unsafe === 'lyingDisk') return Promise.resolve();
    return saved;
  }
}

export class SimCluster {
  readonly random: SeededRandom;
  readonly clock = new ManualClock(0);
  readonly nodes: SimNode[] = [];
  /** Blocked directed links `from->to`. */
  readonly blocked = new Set<string>();
  /** `${type} ${from}->${to}`: messages of one type dropped on one directed link. */
  readonly blockedTypes = new Set<string>();
  /** A scheduled pattern runs: no random proposals or administrative operations meanwhile. */
  #patternRunning = false;
  dropRate = 0;
  duplicateRate = 0;
  longTailRate = 0;
  faultsOn = true;
  #hash = 0x811c9dc5;
  readonly transcript: string[] = [];
  readonly #collect: boolean;
  /** Something ran during the current millisecond: drain the promise chains and check. */
  #fired = false;
  #failure: string | undefined;
  /** term → leader */
  readonly leaders = new Map<number, NodeId>();
  /** `${index}:${term}` → `${prevTerm}:${type}:${data}`: what Log Matching allows at that place. */
  readonly #entryShape = new Map<string, string>();
  readonly #shapeChecked = new WeakSet<Entry>();
  /** index → term of the entry committed there (from durable commit indexes and leaders). */
  readonly #committedTerm = new Map<number, number>();
  /** index → `${term}:${data}` of the normal entry every state machine applies there. */
  readonly applied = new Map<number, string>();
  #maxApplied = 0;
  /** Proposals a leader acknowledged: index → `${term}:${data}`. */
  readonly #acked = new Map<number, string>();
  readonly #bootstrap: NodeId[];
  readonly #admin: boolean;
  readonly #snapshotEntries: number;
  /** Which mix of faults this seed runs (0: a calm run), drawn from the seed. */
  readonly profile: number;
  readonly #staleTailPattern: boolean;
  #proposals = 0;
  #readsPending = 0;
  steps = 0;
  stats = {
    reads: 0,
    adminOps: 0,
    pauses: 0,
    wipes: 0,
    refused: 0,
    failedSaves: 0,
    staleTail: 0,
    longTail: 0,
  };

  constructor(readonly options: SimOptions) {
    this.random = new SeededRandom(options.seed);
    this.#collect = options.transcript ?? false;
    const r = this.random;
    this.#bootstrap = Array.from({ length: options.nodes }, (_, i) => i + 1);
    this.#admin = options.admin ?? r.int(4) !== 0;
    this.profile = r.int(5);
    // The stale-tail pattern needs a new leader that compacted right at its commit index.
    this.#staleTailPattern =
      options.staleTail ?? (options.nodes === 5 && (this.profile === 1 || this.profile === 2));
    this.#snapshotEntries = this.#staleTailPattern ? 1 : r.pick([3, 8, 25]);
    // The spare node starts outside the configuration: it must not campaign until added.
    const ids = this.#admin ? [...this.#bootstrap, options.nodes + 1] : this.#bootstrap;
    for (const id of ids) {
      const node = {
        id,
        rate: 0.5 + r.next() * 1.5,
        state: 'down',
        paused: false,
        pauseCount: 0,
        deferred: [],
        tickDeferred: undefined,
        failNextSave: false,
        durableTerm: 0,
        checkedCommit: 0,
        wiped: false,
      } as unknown as SimNode;
      this.nodes.push(node);
      this.#start(node, undefined);
    }
  }

  // ---- time ----

  /** Runs `fn` on `node` after `delayMs` of simulated time, unless the node is paused (then on resume). */
  at(node: SimNode, delayMs: number, fn: () => void): TimerHandle {
    return this.clock.setTimeout(() => this.#run(node, fn), delayMs);
  }

  #run(node: SimNode, fn: () => void): void {
    this.#fired = true;
    if (node.paused) node.deferred.push(fn);
    else this.#guard(fn);
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.fail(`${(error as Error).stack ?? error}`);
    }
  }

  /** A global event of the simulator itself. */
  schedule(delayMs: number, fn: () => void): void {
    this.clock.setTimeout(() => {
      this.#fired = true;
      this.#guard(fn);
    }, delayMs);
  }

  /** The node's view of time: its timers run at its own rate, and wait while it is paused. */
  #clockFor(node: SimNode, life: () => Incarnation, timers: TimerHandle[]): Clock {
    const scale = (ms: number) => Math.max(1, Math.round(ms / node.rate));
    const wrap = (fn: () => void, interval: boolean) => () => {
      if (life().dead) return;
      this.#fired = true;
      if (!node.paused) return this.#guard(fn);
      // A stopped process sees one late timer, not every tick it missed.
      if (interval) node.tickDeferred = fn;
      else node.deferred.push(fn);
    };
    const keep = (handle: TimerHandle) => {
      timers.push(handle);
      return handle;
    };
    return {
      nowMs: () => this.clock.nowMs(),
      monotonicMs: () => this.clock.monotonicMs(),
      setTimeout: (fn, ms) => keep(this.clock.setTimeout(wrap(fn, false), scale(ms))),
      setInterval: (fn, ms) => keep(this.clock.setInterval(wrap(fn, true), scale(ms))),
    };
  }

  /** One simulated millisecond; throws the first invariant broken so far. */
  async step(): Promise<void> {
    this.clock.advance(1);
    this.steps++;
    if (this.#fired) {
      this.#fired = false;
      // Every driver continuation is a microtask on simulated objects: one turn runs them all.
      await new Promise((resolve) => setImmediate(resolve));
      this.#checkStep();
    }
    if (this.#failure !== undefined) throw new SimulationFailure(this.#failure);
  }

  get now(): number {
    return this.clock.nowMs();
  }

  // ---- trace ----

  trace(line: string): void {
    for (let i = 0; i < line.length; i++)
      this.#hash = Math.imul(this.#hash ^ line.charCodeAt(i), 0x01000193) >>> 0;
    this.transcript.push(`${this.now} ${line}`);
    if (!this.#collect && this.transcript.length > 2 * TRACE_TAIL_LINES)
      this.transcript.splice(0, TRACE_TAIL_LINES);
  }

  get traceHash(): string {
    return this.#hash.toString(16).padStart(8, '0');
  }

  fail(message: string): void {
    if (this.#failure !== undefined) return;
    this.#failure = `seed ${this.options.seed} at ${this.now} ms: ${message}`;
    this.trace(`FAIL ${message}`);
  }

  // ---- nodes ----

  #start(node: SimNode, durableFrom: MemoryRaftStorage | undefined): void {
    let life: Incarnation;
    const current = () => life;
    const storage = new SimStorage(this, node, current);
    if (durableFrom) storage.durable = structuredClone(durableFrom.durable);
    const machine = new SimMachine(this, node);
    const transport: RaftTransport = {
      send: (m) => {
        if (life.dead) return;
        if (life.saveFailed) this.fail(`node ${node.id} sent ${m.type} to ${m.to} after a failed save`);
        this.#send(m);
      },
      onMessage: (handler) => {
        life.handler = handler;
      },
      close: async () => {},
    };
    const timers: TimerHandle[] = [];
    const clock = this.#clockFor(node, current, timers);
    const driver = new RaftDriver(
      {
        id: node.id,
        membership: { voters: this.#bootstrap, learners: [] },
        tickMs: TICK_MS,
        electionTicks: ELECTION_TICKS,
        // Below election/4: a leader at half speed still heartbeats before a follower at twice.
        heartbeatTicks: 1,
        inflightMax: 8,
        entriesPerAppendMax: 16,
        snapshotEntries: this.#snapshotEntries,
        // The node's operator knows it lost a disk that had taken part; the driver must refuse it.
        storedStateRequired: node.wiped && this.options.unsafe !== 'wipeRejoins',
      },
      {
        storage,
        transport,
        clock,
        random: this.random.fork(),
        stateMachine: machine,
      },
    );
    life = {
      number: (node.life?.number ?? -1) + 1,
      dead: false,
      driver,
      storage,
      machine,
      handler: undefined,
      saveFailed: false,
      timers,
      clock,
    };
    node.life = life;
    node.state = 'up';
    node.checkedCommit = 0;
    node.configsSince = [];
    if (this.options.application) machine.app = this.options.application.start(this, node, life);
    driver.start().then(
      () => this.trace(`start ${node.id}#${life.number}`),
      (error: Error) => {
        if (life.dead) return;
        if (node.wiped && /storage is empty/.test(error.message)) {
          node.state = 'refused';
          life.dead = true;
          this.stats.refused++;
          this.trace(`refused ${node.id}: ${error.message.slice(0, 60)}`);
        } else this.fail(`node ${node.id} failed to start: ${error.message}`);
      },
    );
  }

  crash(node: SimNode): void {
    if (node.state !== 'up') return;
    node.life.dead = true;
    for (const timer of node.life.timers) timer.cancel();
    node.life.storage.crash(this.random);
    this.checkDurable(node, node.life.storage);
    node.state = 'down';
    node.paused = false;
    node.deferred = [];
    node.tickDeferred = undefined;
    this.trace(`crash ${node.id}`);
  }

  restart(node: SimNode): void {
    // A node stopped by a failed save is restarted like a crashed one.
    if (node.state === 'up' && node.life.saveFailed) this.crash(node);
    if (node.state !== 'down') return;
    this.trace(`restart ${node.id}`);
    this.#start(node, node.life.storage);
  }

  /** The disk is lost with the crash: the node comes back with the same id and empty storage. */
  wipe(node: SimNode): void {
    if (node.state !== 'up') return;
    this.crash(node);
    // A node that never made anything durable promised nothing: it may start as new.
    const d = node.life.storage.durable;
    if (d.hardState.term === 0 && d.entries.length === 0 && !d.snapshot) {
      this.restart(node);
      return;
    }
    node.wiped = true;
    node.lostDisk = d;
    node.durableTerm = 0;
    this.stats.wipes++;
    this.trace(`wipe ${node.id}`);
    this.#start(node, undefined);
  }

  pause(node: SimNode, ms: number): void {
    if (node.state !== 'up' || node.paused) return;
    node.paused = true;
    this.stats.pauses++;
    this.trace(`pause ${node.id} ${ms}`);
    const life = node.life;
    const pause = ++node.pauseCount;
    this.schedule(ms, () => {
      if (life.dead || !node.paused || node.pauseCount !== pause) return;
      this.#resume(node);
    });
  }

  #resume(node: SimNode): void {
    node.paused = false;
    this.trace(`resume ${node.id}`);
    const work = node.deferred.splice(0);
    if (node.tickDeferred) work.push(node.tickDeferred);
    node.tickDeferred = undefined;
    for (const fn of work) this.#guard(fn);
  }

  // ---- network ----

  #send(message: Message): void {
    const link = `${message.from}->${message.to}`;
    if (this.blocked.has(link) || this.random.chance(this.dropRate)) return;
    if (this.blockedTypes.size > 0 && this.blockedTypes.has(`${message.type} ${link}`)) return;
    const copies = this.random.chance(this.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      let delayMs = 1 + this.random.int(15);
      if (this.random.chance(this.longTailRate)) {
        delayMs = 200 + this.random.int(2801);
        this.stats.longTail++;
      }
      this.clock.setTimeout(() => this.#deliver(message), delayMs);
    }
  }

  #deliver(message: Message): void {
    this.#fired = true;
    const to = this.nodes[message.to - 1];
    if (to?.state !== 'up') return;
    if (this.blocked.has(`${message.from}->${message.to}`)) return;
    const life = to.life;
    this.#run(to, () => {
      if (life.dead) return;
      try {
        life.handler?.(message);
      } catch (error) {
        this.fail(`node ${to.id} threw on ${message.type} from ${message.from}: ${(error as Error).message}`);
      }
    });
  }

  // ---- client operations ----

  leader(): SimNode | undefined {
    let best: SimNode | undefined;
    let bestTerm = -1;
    for (const n of this.nodes) {
      if (n.state !== 'up' || n.paused || n.life.saveFailed) continue;
      const s = n.life.driver.status();
      if (s.role === 'leader' && s.term > bestTerm) {
        best = n;
        bestTerm = s.term;
      }
    }
    return best;
  }

  /** Proposes at the leader; an acknowledgement is checked against what every node applies. */
  propose(at = this.leader(), data = `p${++this.#proposals}`): Promise<number | undefined> {
    if (!at) return Promise.resolve(undefined);
    const id = at.id;
    this.trace(`propose ${id} ${data}`);
    return at.life.driver.propose(Buffer.from(data)).then(
      ({ index, term }) => {
        const shape = `${term}:${data}`;
        this.#acked.set(index, shape);
        const known = this.applied.get(index);
        if (known !== shape)
          this.fail(`node ${id} acknowledged ${shape} at ${index}, but ${known} was applied there`);
        this.trace(`acked ${id} ${index} ${data}`);
        return index;
      },
      () => undefined,
    );
  }

  /** A ReadIndex read at the leader: its point must cover everything applied before it was asked. */
  read(node: SimNode | undefined): void {
    if (node?.state !== 'up' || this.#readsPending > 50) return;
    const known = this.#maxApplied;
    const id = node.id;
    this.#readsPending++;
    node.life.driver.readIndex().then(
      (index) => {
        this.#readsPending--;
        if (index < known)
          this.fail(
            `stale read: node ${id} answered at ${index}, but ${known} was applied before it was asked`,
          );
        this.stats.reads++;
      },
      () => this.#readsPending--,
    );
  }

  #adminOp(): void {
    const r = this.random;
    const leader = this.leader();
    if (!leader) return;
    const driver = leader.life.driver;
    const { voters, learners } = driver.status().membership;
    const spare = this.options.nodes + 1;
    const outside = this.nodes.map((n) => n.id).filter((id) => !voters.includes(id));
    const choice = r.int(4);
    const done = (what: string) => (p: Promise<unknown>) =>
      p.then(
        () => this.trace(`committed ${what}`),
        () => {},
      );
    try {
      if (choice === 0) {
        const to = r.pick(voters);
        driver.transferLeadership(to);
        this.trace(`transfer ${leader.id}->${to}`);
      } else if (choice === 1 && voters.length > 2) {
        const node = r.pick(voters);
        this.trace(`removeVoter ${node} at ${leader.id}`);
        void done(`removeVoter ${node}`)(driver.removeVoter(node));
      } else if (choice === 2 && outside.length > 0) {
        const node = r.pick(outside);
        const learner = node === spare && !learners.includes(node);
        this.trace(`${learner ? 'addLearner' : 'addVoter'} ${node} at ${leader.id}`);
        void done(`add ${node}`)(learner ? driver.addLearner(node) : driver.addVoter(node));
      } else {
        this.read(leader);
        return;
      }
      this.stats.adminOps++;
    } catch {
      // Refused (a transfer to a node that is not a voter, the node closed).
    }
  }

  // ---- invariants ----

  recordApply(node: SimNode, index: number, shape: string): void {
    const known = this.applied.get(index);
    if (known === undefined) {
      this.applied.set(index, shape);
      if (index > this.#maxApplied) this.#maxApplied = index;
    } else if (known !== shape) {
      this.fail(
        `state machine safety: node ${node.id} applies ${shape} at ${index}, another applied ${known}`,
      );
    }
  }

  /**
   * The leader is about to save (and its messages announce) commit index c: a quorum of its voters'
   * durable logs must hold its entry at c. Its own entry is durable already: entries reach the
   * storage in an earlier Ready than the commit that covers them.
   */
  checkVisibleCommit(node: SimNode, commit: number | undefined): void {
    const status = node.life.driver.status();
    if (status.role !== 'leader') return;
    // The commit index was reached after the previous save that carried a commit index, under one
    // of the configurations this leader has had since.
    node.configsSince.push(status.membership.voters);
    if (commit === undefined || commit <= node.checkedCommit) return;
    node.checkedCommit = commit;
    const configs = node.configsSince;
    node.configsSince = [status.membership.voters];
    const own = node.life.storage.durable;
    const term = termIn(own, commit);
    if (term === undefined) {
      if ((own.snapshot?.index ?? 0) > commit) return;
      this.fail(
        `node ${node.id}, leader of term ${status.term}, commits ${commit} that its durable log lacks`,
      );
      return;
    }
    // A disk that was lost counts with what it held: its acknowledgements were honest, and the
    // node it belonged to is refused from then on, as if down for good with its disk intact.
    const inState = (d: MemoryRaftStorage['durable'] | undefined) =>
      d !== undefined && ((d.snapshot?.index ?? 0) > commit || termIn(d, commit) === term);
    const holds = (v: NodeId) => {
      const n = this.nodes[v - 1];
      return n !== undefined && (inState(n.life.storage.durable) || inState(n.lostDisk));
    };
    const quorate = (voters: NodeId[]) => 2 * voters.filter(holds).length > voters.length;
    if (!configs.some(quorate))
      this.fail(
        `commit durability: node ${node.id}, leader of term ${status.term}, commits ${commit} (term ${term}) but only ${status.membership.voters.filter(holds).join(',') || 'none'} of voters ${status.membership.voters.join(',')} hold it durably`,
      );
    for (const entry of own.entries) if (entry.index <= commit) this.committed(node, entry.index, entry.term);
  }

  committed(node: SimNode, index: number, term: number): void {
    const known = this.#committedTerm.get(index);
    if (known === undefined) this.#committedTerm.set(index, term);
    else if (known !== term)
      this.fail(
        `committed entries differ: node ${node.id} has term ${term} committed at ${index}, another ${known}`,
      );
  }

  /** After a write lands: log matching, committed prefixes and terms, on the durable state. */
  checkDurable(node: SimNode, storage: MemoryRaftStorage): void {
    const d = storage.durable;
    if (d.hardState.term < node.durableTerm)
      this.fail(`node ${node.id} persisted term ${d.hardState.term} after ${node.durableTerm}`);
    node.durableTerm = d.hardState.term;
    const commit = d.hardState.commit;
    let prevTerm = d.snapshot?.term ?? 0;
    for (const entry of d.entries) {
      if (!this.#shapeChecked.has(entry)) {
        this.#shapeChecked.add(entry);
        const key = `${entry.index}:${entry.term}`;
        const shape = `${prevTerm}:${entry.type}:${Buffer.from(entry.data).toString()}`;
        const known = this.#entryShape.get(key);
        if (known === undefined) this.#entryShape.set(key, shape);
        else if (known !== shape)
          this.fail(`log matching: node ${node.id} durably holds ${shape} at ${key}, another node ${known}`);
      }
      if (entry.index <= commit) this.committed(node, entry.index, entry.term);
      prevTerm = entry.term;
    }
    this.trace(
      `durable ${node.id} t${d.hardState.term} c${commit} last${d.entries.at(-1)?.index ?? d.snapshot?.index ?? 0}`,
    );
  }

  #checkStep(): void {
    for (const node of this.nodes) {
      if (node.state !== 'up') continue;
      const s = node.life.driver.status();
      if (s.role !== 'leader') continue;
      const last = node.configsSince.at(-1);
      if (last?.join() !== s.membership.voters.join()) node.configsSince.push(s.membership.voters);
      const known = this.leaders.get(s.term);
      if (known === undefined) {
        this.leaders.set(s.term, node.id);
        this.trace(`leader ${node.id} t${s.term}`);
      } else if (known !== node.id) {
        this.fail(`election safety: nodes ${known} and ${node.id} both lead term ${s.term}`);
      }
    }
  }

  // ---- the scenario ----

  async run(): Promise<SeedResult> {
    const faultMs = this.options.faultMs ?? 2500;
    const healMs = this.options.healMs ?? 6000;
    const r = this.random;
    const profile = this.profile;
    this.longTailRate = profile === 0 ? 0 : LONG_TAIL_RATE;
    for (let t = 50; t < faultMs; t += 30 + r.int(150)) this.schedule(t, () => this.randomFault(profile));
    const unlessPattern = (fn: () => void) => () => {
      if (!this.#patternRunning) fn();
    };
    for (let t = 20; t < faultMs; t += 5 + r.int(40))
      this.schedule(
        t,
        unlessPattern(() => void this.propose()),
      );
    for (let t = 30; t < faultMs; t += 40 + r.int(120)) {
      if (this.#admin)
        this.schedule(
          t,
          unlessPattern(() => this.#adminOp()),
        );
      else
        this.schedule(
          t,
          unlessPattern(() => this.read(this.leader())),
        );
    }
    if (this.#staleTailPattern) this.schedule(300 + r.int(faultMs - 1500), () => this.#staleTail());
    for (let t = 0; t < faultMs; t++) await this.step();

    this.heal();
    const deadline = this.now + healMs;
    let final: number | undefined;
    let proposing = false;
    let done = false;
    while (!done) {
      if (this.now >= deadline) {
        this.fail(
          `liveness: the live members did not all apply the same sequence within ${healMs} ms of healing (${this.#lagReport()})`,
        );
        await this.step();
      }
      if (this.now % 20 === 0) {
        // A save already failing as the heal began stops its node: the operator restarts it.
        for (const node of this.nodes) if (node.state === 'up' && node.life.saveFailed) this.restart(node);
        const leader = this.leader();
        if (final === undefined && !proposing && leader) {
          proposing = true;
          void this.propose(leader, 'final').then((index) => {
            proposing = false;
            final = index;
          });
        }
        if (final !== undefined) done = this.#caughtUp(final);
      }
      await this.step();
    }
    this.trace('caught up');
    for (const [index, shape] of this.#acked)
      if (this.applied.get(index) !== shape) this.fail(`acknowledged ${shape} at ${index} was lost`);
    if (this.#failure !== undefined) throw new SimulationFailure(this.#failure);
    return {
      traceHash: this.traceHash,
      steps: this.steps,
      committed: this.applied.size,
      ...this.stats,
    };
  }

  /** Ends every fault: links, loss, pauses, failed saves; every node that can start is started. */
  heal(): void {
    this.faultsOn = false;
    this.blocked.clear();
    this.dropRate = 0;
    this.duplicateRate = 0;
    this.longTailRate = 0;
    for (const node of this.nodes) node.failNextSave = false;
    for (const node of this.nodes) {
      if (node.paused) this.#resume(node);
      this.restart(node);
    }
    this.trace('heal');
  }

  /** Every live member of the leader's configuration has applied the same sequence, `final` included. */
  #caughtUp(final: number): boolean {
    const leader = this.leader();
    if (!leader) return false;
    const s = leader.life.driver.status();
    if (s.appliedIndex < final || s.commitIndex !== s.appliedIndex) return false;
    const expected = JSON.stringify(leader.life.machine.applied);
    for (const id of [...s.membership.voters, ...s.membership.learners]) {
      const n = this.nodes[id - 1];
      if (n?.state !== 'up') continue;
      if (n.life.driver.status().appliedIndex !== s.appliedIndex) return false;
      if (JSON.stringify(n.life.machine.applied) !== expected)
        this.fail(`node ${id} applied a different sequence from the leader ${leader.id}`);
    }
    return true;
  }

  #lagReport(): string {
    return this.nodes
      .map((n) => {
        if (n.state !== 'up') return `${n.id}:${n.state}`;
        const s = n.life.driver.status();
        return `${n.id}:${s.role[0]} t${s.term} c${s.commitIndex} a${s.appliedIndex}`;
      })
      .join(' ');
  }

  #partition(side: Set<NodeId>, oneWay: boolean): void {
    this.blocked.clear();
    for (const a of side)
      for (const b of this.nodes) {
        if (side.has(b.id)) continue;
        this.blocked.add(`${a}->${b.id}`);
        if (!oneWay) this.blocked.add(`${b.id}->${a}`);
      }
    this.trace(`partition ${[...side].join(',')}${oneWay ? ' one-way' : ''}`);
  }

  /** Polls `condition` every millisecond for up to `timeoutMs`, then runs `then` or `otherwise`. */
  #waitFor(condition: () => boolean, timeoutMs: number, then: () => void, otherwise: () => void): void {
    const deadline = this.now + timeoutMs;
    const poll = () => {
      if (condition()) then();
      else if (this.now >= deadline) otherwise();
      else this.schedule(1, poll);
    };
    this.schedule(1, poll);
  }

  #durablyHolds(node: SimNode, data: string): number | undefined {
    return node.life.storage.durable.entries.find((e) => Buffer.from(e.data).toString() === data)?.index;
  }

  #isolate(...ids: NodeId[]): void {
    for (const a of ids)
      for (const b of this.nodes) {
        if (a === b.id) continue;
        this.blocked.add(`${a}->${b.id}`);
        this.blocked.add(`${b.id}->${a}`);
      }
  }

  /**
   * The history behind the stale-tail bug, on five nodes: the leader L writes s and it commits;
   * L's appends to three nodes R are cut, so its next write x reaches one follower F only; F is cut
   * off before it learns that s committed; L is cut off once R knows; R elects N, which has
   * compacted at s (snapshot interval 1) and whose no-op reaches only one other node of R. Then the
   * links heal and F, holding s and a stale x after it, gets N's snapshot at s: it must acknowledge
   * s, not x.
   */
  #staleTail(): void {
    // Start from a healthy cluster: every node up, no partition, no loss.
    this.faultsOn = false;
    this.blocked.clear();
    this.dropRate = 0;
    for (const n of this.nodes) {
      n.failNextSave = false;
      if (n.paused) this.#resume(n);
      this.restart(n);
    }
    this.trace('stale-tail: waiting for a healthy cluster');
    // The same leader for 150 ms: no transfer or election under way.
    let stable: { id: NodeId; since: number } | undefined;
    const ready = () => {
      const leader = this.leader();
      if (leader?.id !== stable?.id) stable = leader && { id: leader.id, since: this.now };
      return (
        leader !== undefined &&
        this.now - stable!.since >= 150 &&
        this.#bootstrap.every((id) => {
          const n = this.nodes[id - 1]!;
          const st = n.state === 'up' ? n.life.driver.status() : undefined;
          return st !== undefined && st.membership.voters.length === 5 && st.leaderId === leader.id;
        })
      );
    };
    this.#waitFor(
      ready,
      1500,
      () => this.#staleTailFrom(this.leader()!),
      () => {
        this.trace('stale-tail: gave up (no healthy cluster)');
        this.faultsOn = true;
      },
    );
  }

  #staleTailFrom(leader: SimNode): void {
    const r = this.random;
    const L = leader.id;
    const followers = this.#bootstrap.filter((id) => id !== L);
    const F = r.pick(followers);
    const R = followers.filter((id) => id !== F);
    const node = (id: NodeId) => this.nodes[id - 1]!;
    const tag = ++this.stats.staleTail;
    const x = `stale-x${tag}`;
    this.#patternRunning = true;
    this.trace(`stale-tail: leader ${L}, follower ${F}`);
    const give = (why: string) => {
      this.trace(`stale-tail: gave up (${why})`);
      this.blockedTypes.clear();
      this.blocked.clear();
      this.faultsOn = true;
      this.#patternRunning = false;
    };
    let sIndex: number | undefined;
    void this.propose(leader, `stale-s${tag}`).then((index) => {
      sIndex = index;
    });
    // F must not learn that s commits: no heartbeat reaches it, and x leaves before s commits.
    this.blockedTypes.add(`heartbeat ${L}->${F}`);
    this.schedule(1, () => {
      for (const id of R) this.blockedTypes.add(`append ${L}->${id}`);
      void this.propose(leader, x);
      void this.propose(leader, `${x}b`);
    });
    const holdsS = (id: NodeId) => {
      const d = node(id).life.storage.durable;
      return sIndex !== undefined && ((d.snapshot?.index ?? 0) >= sIndex || termIn(d, sIndex) !== undefined);
    };
    this.#waitFor(
      () => sIndex !== undefined && this.#durablyHolds(node(F), `${x}b`) !== undefined && R.every(holdsS),
      300,
      () => {
        if (node(F).life.driver.status().commitIndex >= sIndex!) return give('F learned the commit');
        this.#isolate(F);
        this.#waitFor(
          () => R.every((id) => node(id).life.driver.status().commitIndex >= sIndex!),
          300,
          () => {
            this.#isolate(L);
            this.trace('stale-tail: F and L cut off');
            this.#waitFor(
              () => {
                const n = this.leader();
                return n !== undefined && R.includes(n.id);
              },
              2000,
              () => this.#staleTailSecondLeader(L, F, R, sIndex!, give),
              () => give('no new leader'),
            );
          },
          () => give('R did not learn the commit'),
        );
      },
      () => give('x did not reach F'),
    );
  }

  /**
   * R's first leader N1 writes its no-op to N2 only, then hands leadership to N2, whose no-op
   * likewise reaches N1 only: N2's log now has an entry after s that F lacks, so its first append
   * to F conflicts and F is sent N2's snapshot at s. F, holding s and the stale x1, x2 after it,
   * is let back in (L stays cut off): its answer must not count x1, x2 as N2's entries.
   */
  #staleTailSecondLeader(
    L: NodeId,
    F: NodeId,
    R: NodeId[],
    sIndex: number,
    give: (why: string) => void,
  ): void {
    const n1 = this.leader()!;
    const [n2, b] = R.filter((id) => id !== n1.id) as [NodeId, NodeId];
    const node = (id: NodeId) => this.nodes[id - 1]!;
    const t1 = n1.life.driver.status().term;
    this.blockedTypes.add(`append ${n1.id}->${b}`);
    this.trace(`stale-tail: first leader ${n1.id}, then ${n2}; ${b} gets no entries`);
    this.#waitFor(
      () => termIn(node(n2).life.storage.durable, sIndex + 1) === t1,
      300,
      () => {
        try {
          n1.life.driver.transferLeadership(n2);
        } catch {
          return give('transfer refused');
        }
        this.blockedTypes.add(`append ${n2}->${b}`);
        this.#waitFor(
          () => this.leader()?.id === n2,
          300,
          () => {
            this.blocked.clear();
            this.#isolate(L);
            this.trace(`stale-tail: ${F} back, snapshot at ${node(n2).life.storage.durable.snapshot?.index}`);
            this.schedule(150, () => {
              this.blockedTypes.clear();
              this.blocked.clear();
              this.faultsOn = true;
              this.#patternRunning = false;
              this.trace('stale-tail: healed');
            });
          },
          () => give('no second leader'),
        );
      },
      () => give('the first no-op did not reach the second leader'),
    );
  }

  /** One fault drawn from the seed for `profile` (most are no-ops in the calm profile 0). */
  randomFault(profile = this.profile): void {
    if (!this.faultsOn) return;
    const r = this.random;
    const choice = r.int(20);
    if (profile === 0 && choice < 16) return; // a calm run: few faults
    const up = this.nodes.filter((x) => x.state === 'up');
    if (choice < 3) {
      // Crashes aim at nodes in the middle of a write most of the time: that is where the order
      // of persisting and sending matters.
      const node = r.pick(this.nodes);
      if (node.state === 'up' && up.length > 1) this.crash(node);
      else this.restart(node);
    } else if (choice < 7) {
      const side = new Set<NodeId>();
      const size = 1 + r.int(Math.floor(this.nodes.length / 2));
      while (side.size < size) side.add(1 + r.int(this.nodes.length));
      this.#partition(side, r.chance(0.3));
    } else if (choice < 10) {
      this.blocked.clear();
      this.trace('links healed');
    } else if (choice < 11) {
      this.dropRate = r.chance(0.5) ? 0 : r.next() * 0.3;
      this.duplicateRate = r.next() * 0.1;
      this.trace(`loss ${this.dropRate.toFixed(2)} dup ${this.duplicateRate.toFixed(2)}`);
    } else if (choice < 13) {
      this.pause(r.pick(this.nodes), 50 + r.int(1500));
    } else if (choice < 14) {
      const node = r.pick(this.nodes);
      if (node.state === 'up') {
        node.failNextSave = true;
        this.stats.failedSaves++;
        this.trace(`arm failed save ${node.id}`);
      }
    } else if (choice < 15 && !this.#admin && !this.nodes.some((n) => n.wiped)) {
      // At most one lost disk per run: losing a majority's disks loses data in any Raft.
      const node = r.pick(this.nodes);
      this.wipe(node);
    } else {
      for (const node of this.nodes) if (node.state !== 'up' && r.chance(0.5)) this.restart(node);
    }
  }
}

function termIn(state: MemoryRaftStorage['durable'], index: number): number | undefined {
  if (state.snapshot?.index === index) return state.snapshot.term;
  const first = state.entries[0]?.index;
  if (first === undefined || index < first) return undefined;
  return state.entries[index - first]?.term;
}

export interface SeedResult {
  traceHash: string;
  steps: number;
  committed: number;
  reads: number;
  adminOps: number;
  pauses: number;
  wipes: number;
  refused: number;
  failedSaves: number;
  staleTail: number;
  longTail: number;
}

export function nodesFor(seed: number): number {
  return seed % 2 === 0 ? 5 : 3;
}

export async function runSeed(seed: number, options: Partial<SimOptions> = {}): Promise<SeedResult> {
  return new SimCluster({ seed, nodes: nodesFor(seed), ...options }).run();
}

/** Runs one seed twice and checks that both runs produce the same trace. */
export async function runSeedTwice(seed: number, options: Partial<SimOptions> = {}): Promise<SeedResult> {
  const first = await runSeed(seed, options);
  const second = await runSeed(seed, options);
  if (first.traceHash !== second.traceHash)
    throw new SimulationFailure(
      `seed ${seed}: two runs of the same seed differ (trace ${first.traceHash} vs ${second.traceHash}): hidden nondeterminism`,
    );
  return first;
}

export function replayCommand(seed: number): string {
  return `SEED=${seed} npm run sim`;
}
