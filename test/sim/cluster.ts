import { SeededRandom } from '../../src/common/random.js';
import { RaftCore } from '../../src/raft/core.js';
import { isReplication } from '../../src/raft/driver.js';
import { MemoryRaftStorage } from '../../src/raft/storage.js';
import type { Entry, Message, NodeId, Ready, Snapshot } from '../../src/raft/types.js';

/**
 * A seeded simulation of a Raft cluster: simulated clock, network (drop, delay, duplicate, reorder,
 * symmetric and one-way partitions) and disk: each node writes through a MemoryRaftStorage without
 * auto-sync, so a batch is durable only once a synced write covers it, and a crash (power loss)
 * keeps a random prefix of the unsynced batches, each whole. Invariants are checked after every
 * event; any violation throws with the seed.
 *
 * The simulated driver follows the real one's order: persist the Ready (synced), then send its
 * messages, then apply, then advance. Snapshots of compaction are written without waiting, as the
 * real driver does, so they may be lost on a crash.
 */

export interface SimOptions {
  seed: number;
  nodes: number;
  /** Simulated milliseconds of faults before the heal phase. */
  faultMs?: number;
  /** Simulated milliseconds allowed after healing for a leader and a new commit. */
  healMs?: number;
  /** Collect a readable transcript of events (slower). */
  transcript?: boolean;
  /**
   * Administrative operations during the faults: leadership transfers, and single-server
   * membership changes with one spare node (id nodes + 1) that joins as a learner, then a voter,
   * while voters are removed (the leader included) and added back. Default: on for most seeds.
   */
  admin?: boolean;
  /**
   * A deliberately broken driver for the simulation's own test: send every message before the
   * write it depends on (vote grants and acknowledgements included). The checks must catch it.
   */
  unsafeSendBeforePersist?: boolean;
}

interface SimNode {
  id: NodeId;
  core: RaftCore;
  alive: boolean;
  incarnation: number;
  busy: boolean;
  storage: MemoryRaftStorage;
  /** The highest term this node ever made durable: it must never go back. */
  durableTerm: number;
  /** Highest index this node's state machine has applied. */
  applied: number;
  lastTerm: number;
  lastCommit: number;
}

type Event = { at: number; seq: number; run: () => void };

const TICK_MS = 10;
const ELECTION_TICKS = 10;

export class SimulationFailure extends Error {
  override name = 'SimulationFailure';
}

export class SimCluster {
  readonly random: SeededRandom;
  now = 0;
  #seq = 0;
  #queue: Event[] = [];
  readonly nodes: SimNode[] = [];
  /** Blocked directed links `from->to`. */
  readonly blocked = new Set<string>();
  dropRate = 0;
  duplicateRate = 0;
  #hash = 0x811c9dc5;
  readonly transcript: string[] = [];
  readonly #collect: boolean;
  /** term → leader */
  readonly leaders = new Map<number, NodeId>();
  /** `${index}:${term}` → `${prevTerm}:${data}`: what Log Matching allows at that place. */
  readonly #entryShape = new Map<string, string>();
  /** index → `${term}:${data}` of the entry every state machine applies there. */
  readonly committed = new Map<number, string>();
  #proposals = 0;
  events = 0;

  constructor(readonly options: SimOptions) {
    this.random = new SeededRandom(options.seed);
    this.#collect = options.transcript ?? false;
    const voters = Array.from({ length: options.nodes }, (_, i) => i + 1);
    this.#bootstrap = voters;
    this.#admin = options.admin ?? this.random.int(4) !== 0;
    // The spare node starts outside the configuration: it must not campaign until added.
    const ids = this.#admin ? [...voters, options.nodes + 1] : voters;
    for (const id of ids) {
      const storage = new MemoryRaftStorage({ autoSync: false });
      this.nodes.push({
        id,
        core: this.#makeCore(id, storage, voters),
        alive: true,
        incarnation: 0,
        busy: false,
        storage,
        durableTerm: 0,
        applied: 0,
        lastTerm: 0,
        lastCommit: 0,
      });
    }
    for (const node of this.nodes) this.#scheduleTick(node, this.random.int(TICK_MS));
  }

  readonly #bootstrap: NodeId[];
  readonly #admin: boolean;
  /** Reads waiting at a node: `${node}:${context}` → the highest commit index known anywhere when asked. */
  readonly #reads = new Map<string, number>();
  #readContext = 0;
  reads = 0;
  adminOps = 0;

  #voters(): NodeId[] {
    return this.#bootstrap;
  }

  #makeCore(id: NodeId, storage: MemoryRaftStorage, voters: NodeId[]): RaftCore {
    // What load() would return, read synchronously: the simulation runs without an event loop.
    const durable = structuredClone(storage.durable);
    return new RaftCore(
      { id, electionTicks: ELECTION_TICKS, heartbeatTicks: 3, inflightMax: 8, entriesPerAppendMax: 16 },
      {
        hardState: durable.hardState,
        membership: { voters, learners: [] },
        snapshot: durable.snapshot,
        entries: durable.entries,
      },
      this.random.fork(),
    );
  }

  // ---- event loop ----

  schedule(delayMs: number, run: () => void): void {
    this.#queue.push({ at: this.now + delayMs, seq: this.#seq++, run });
  }

  #next(): Event | undefined {
    let best = -1;
    for (let i = 0; i < this.#queue.length; i++) {
      const e = this.#queue[i]!;
      const b = this.#queue[best];
      if (!b || e.at < b.at || (e.at === b.at && e.seq < b.seq)) best = i;
    }
    if (best < 0) return undefined;
    const [event] = this.#queue.splice(best, 1);
    return event;
  }

  /** Runs events until `untilMs` or until `stop` says so. */
  runUntil(untilMs: number, stop?: () => boolean): void {
    for (;;) {
      if (stop?.()) return;
      const event = this.#next();
      if (!event) return;
      if (event.at > untilMs) {
        this.#queue.push(event);
        this.now = untilMs;
        return;
      }
      this.now = event.at;
      this.events++;
      event.run();
      this.#checkAll();
    }
  }

  trace(line: string): void {
    for (let i = 0; i < line.length; i++) {
      this.#hash ^= line.charCodeAt(i);
      this.#hash = Math.imul(this.#hash, 0x01000193) >>> 0;
    }
    if (this.#collect) this.transcript.push(`${this.now} ${line}`);
  }

  get traceHash(): string {
    return this.#hash.toString(16).padStart(8, '0');
  }

  // ---- nodes ----

  #scheduleTick(node: SimNode, delayMs = TICK_MS): void {
    const incarnation = node.incarnation;
    this.schedule(delayMs, () => {
      if (!node.alive || node.incarnation !== incarnation) return;
      node.core.tick();
      this.#process(node);
      this.#scheduleTick(node);
    });
  }

  #deliver(message: Message): void {
    const to = this.nodes[message.to - 1];
    if (!to?.alive) return;
    if (this.blocked.has(`${message.from}->${message.to}`)) return;
    to.core.step(message);
    this.#process(to);
  }

  #send(message: Message): void {
    if (this.blocked.has(`${message.from}->${message.to}`) || this.random.chance(this.dropRate)) {
      this.trace(`drop ${message.type} ${message.from}->${message.to}`);
      return;
    }
    const copies = this.random.chance(this.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) this.schedule(1 + this.random.int(15), () => this.#deliver(message));
  }

  /** Takes a Ready if the node is free: persist (takes disk time), then send, apply, advance. */
  #process(node: SimNode): void {
    if (!node.alive || node.busy || !node.core.hasReady()) return;
    const ready = node.core.ready();
    this.#checkReady(node, ready);
    node.busy = true;
    const incarnation = node.incarnation;
    // As the driver: a leader's replication messages leave while its write runs.
    const unsafe = this.options.unsafeSendBeforePersist ?? false;
    const leading = node.core.role === 'leader' || unsafe;
    const early = unsafe ? () => true : isReplication;
    if (leading) for (const m of ready.messages) if (early(m)) this.#send(m);
    // Disk time: usually short, sometimes a slow fsync.
    const diskMs = this.random.chance(0.1) ? 5 + this.random.int(20) : 1 + this.random.int(4);
    this.schedule(diskMs, () => {
      // A crash before this point lost the write, and nothing else of this Ready was sent.
      if (!node.alive || node.incarnation !== incarnation) return;
      this.#persist(node, ready);
      for (const m of ready.messages) if (!(leading && early(m))) this.#send(m);
      if (ready.snapshot) this.#applySnapshot(node, ready.snapshot);
      for (const entry of ready.committed) this.#apply(node, entry);
      this.#answerReads(node, ready);
      node.core.advance(ready);
      node.busy = false;
      this.#maybeCompact(node);
      this.#process(node);
    });
  }

  #persist(node: SimNode, ready: Ready): void {
    void node.storage.save({ hardState: ready.hardState, snapshot: ready.snapshot, entries: ready.entries });
    try {
      // A synced write makes every earlier batch durable too, as LevelDB's log does.
      node.storage.sync();
    } catch (error) {
      throw this.#fail(`node ${node.id} storage refused a save: ${(error as Error).message}`);
    }
    const d = node.storage.durable;
    if (d.hardState.term < node.durableTerm)
      throw this.#fail(`node ${node.id} persisted term ${d.hardState.term} after ${node.durableTerm}`);
    node.durableTerm = d.hardState.term;
    this.trace(
      `persist ${node.id} t${d.hardState.term} v${d.hardState.vote} c${d.hardState.commit} +${ready.entries.length}`,
    );
  }

  #apply(node: SimNode, entry: Entry): void {
    if (entry.index <= node.applied) return;
    if (entry.index !== node.applied + 1)
      throw this.#fail(`node ${node.id} applies ${entry.index} after ${node.applied}`);
    const shape = `${entry.term}:${Buffer.from(entry.data).toString()}`;
    const known = this.committed.get(entry.index);
    if (known === undefined) this.committed.set(entry.index, shape);
    else if (known !== shape)
      throw this.#fail(
        `state machine safety: node ${node.id} applies ${shape} at ${entry.index}, another applied ${known}`,
      );
    node.applied = entry.index;
    this.trace(`apply ${node.id} ${entry.index}`);
  }

  #applySnapshot(node: SimNode, snapshot: Snapshot): void {
    const claimed = Buffer.from(snapshot.data).toString();
    if (claimed !== this.#prefixDigest(snapshot.index))
      throw this.#fail(
        `node ${node.id} installed a snapshot at ${snapshot.index} that differs from the committed prefix`,
      );
    node.applied = Math.max(node.applied, snapshot.index);
    this.trace(`install ${node.id} ${snapshot.index}`);
  }

  #prefixDigest(index: number): string {
    let h = 0x811c9dc5;
    for (let i = 1; i <= index; i++) {
      const s = this.committed.get(i) ?? '?';
      for (let c = 0; c < s.length; c++) h = Math.imul(h ^ s.charCodeAt(c), 0x01000193) >>> 0;
    }
    return `${index}:${h.toString(16)}`;
  }

  #maybeCompact(node: SimNode): void {
    const applied = node.core.appliedIndex;
    if (applied - node.core.snapshotIndex < 12 || !this.random.chance(0.3)) return;
    const data = Buffer.from(this.#prefixDigest(applied));
    const snapshot = node.core.compact(applied, data);
    if (!snapshot) return;
    // As the driver: written without waiting, durable with the next synced write (or lost in a crash).
    void node.storage.save({ snapshot });
    this.trace(`compact ${node.id} ${applied}`);
  }

  crash(node: SimNode): void {
    if (!node.alive) return;
    node.alive = false;
    node.incarnation++;
    node.busy = false;
    node.storage.crash(this.random);
    this.trace(`crash ${node.id}`);
  }

  restart(node: SimNode): void {
    if (node.alive) return;
    node.alive = true;
    node.core = this.#makeCore(node.id, node.storage, this.#voters());
    node.applied = node.storage.durable.snapshot?.index ?? 0;
    // What was not persisted is gone with the crash; the invariants continue from the durable state.
    node.lastCommit = node.core.commitIndex;
    node.lastTerm = node.core.term;
    this.trace(`restart ${node.id}`);
    this.#scheduleTick(node, this.random.int(TICK_MS));
  }

  leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes)
      if (n.alive && n.core.role === 'leader' && (!best || n.core.term > best.core.term)) best = n;
    return best;
  }

  propose(): { node: NodeId; index: number; data: string } | undefined {
    const leader = this.leader();
    if (!leader) return undefined;
    const data = `p${++this.#proposals}`;
    try {
      const { index } = leader.core.propose(Buffer.from(data));
      this.trace(`propose ${leader.id} ${index} ${data}`);
      this.#process(leader);
      return { node: leader.id, index, data };
    } catch {
      return undefined;
    }
  }

  /** Asks a node (usually the leader) for a read point, remembering what was committed before. */
  read(node: SimNode): void {
    if (!node.alive) return;
    const context = ++this.#readContext;
    let known = 0;
    for (const n of this.nodes) if (n.alive) known = Math.max(known, n.core.commitIndex);
    for (const index of this.committed.keys()) known = Math.max(known, index);
    this.#reads.set(`${node.id}:${context}`, known);
    node.core.readIndex(context);
    this.trace(`read ${node.id} #${context}`);
    this.#process(node);
  }

  /** Linearizability of ReadIndex: a read point covers every entry committed before the read began. */
  #answerReads(node: SimNode, ready: Ready): void {
    for (const state of ready.readStates) {
      const key = `${node.id}:${state.context}`;
      const known = this.#reads.get(key);
      if (known === undefined) continue;
      this.#reads.delete(key);
      if (state.index < known)
        throw this.#fail(
          `stale read: node ${node.id} answered read #${state.context} at ${state.index}, but ${known} was committed before it was asked`,
        );
      this.reads++;
      this.trace(`read ${node.id} #${state.context} at ${state.index}`);
    }
    for (const context of ready.readsRejected) this.#reads.delete(`${node.id}:${context}`);
  }

  /** A leadership transfer or a single-server membership change, proposed at the leader. */
  #adminOp(): void {
    const r = this.random;
    const leader = this.leader();
    if (!leader) return;
    const core = leader.core;
    const { voters, learners } = core.membership;
    const spare = this.options.nodes + 1;
    const outside = this.nodes.map((n) => n.id).filter((id) => !voters.includes(id));
    const choice = r.int(4);
    try {
      if (choice === 0) {
        const to = r.pick(voters);
        core.transferLeadership(to);
        this.trace(`transfer ${leader.id}->${to}`);
      } else if (choice === 1 && voters.length > 2) {
        // Any voter, the leader included.
        const node = r.pick(voters);
        const { index } = core.proposeConfigChange({ kind: 'removeVoter', node });
        this.trace(`propose ${leader.id} ${index} removeVoter ${node}`);
      } else if (choice === 2 && outside.length > 0) {
        const node = r.pick(outside);
        const kind = node === spare && !learners.includes(node) ? 'addLearner' : 'addVoter';
        const { index } = core.proposeConfigChange({ kind, node });
        this.trace(`propose ${leader.id} ${index} ${kind} ${node}`);
      } else {
        this.read(leader);
        return;
      }
      this.adminOps++;
    } catch {
      // Refused (a change already pending, no entry of this term committed yet, a transfer running).
      return;
    }
    this.#process(leader);
  }

  // ---- invariants ----

  #fail(message: string): SimulationFailure {
    return new SimulationFailure(`seed ${this.options.seed} at ${this.now} ms: ${message}`);
  }

  #checkReady(node: SimNode, ready: Ready): void {
    for (const entry of ready.entries) {
      const prevTerm = entry.index === 1 ? 0 : node.core.termAt(entry.index - 1);
      if (prevTerm === undefined) continue;
      const key = `${entry.index}:${entry.term}`;
      const shape = `${prevTerm}:${Buffer.from(entry.data).toString()}:${entry.type}`;
      const known = this.#entryShape.get(key);
      if (known === undefined) this.#entryShape.set(key, shape);
      else if (known !== shape)
        throw this.#fail(`log matching: node ${node.id} holds ${shape} at ${key}, another node ${known}`);
    }
  }

  #checkAll(): void {
    for (const node of this.nodes) {
      if (!node.alive) continue;
      const core = node.core;
      if (core.term < node.lastTerm)
        throw this.#fail(`node ${node.id} term went back from ${node.lastTerm} to ${core.term}`);
      node.lastTerm = core.term;
      if (core.role === 'leader') {
        const known = this.leaders.get(core.term);
        if (known === undefined) {
          this.leaders.set(core.term, node.id);
          this.trace(`leader ${node.id} t${core.term}`);
          // Leader completeness: every committed entry is in the new leader's log.
          for (const [index, shape] of this.committed) {
            if (index <= core.snapshotIndex) continue;
            const term = core.termAt(index);
            if (term === undefined || `${term}` !== shape.split(':')[0])
              throw this.#fail(
                `leader completeness: leader ${node.id} of term ${core.term} lacks committed entry ${index}`,
              );
          }
        } else if (known !== node.id) {
          throw this.#fail(`election safety: nodes ${known} and ${node.id} both lead term ${core.term}`);
        }
      }
      if (core.commitIndex > core.lastIndex())
        throw this.#fail(`node ${node.id} commit ${core.commitIndex} beyond its log ${core.lastIndex()}`);
      if (core.commitIndex < node.lastCommit)
        throw this.#fail(`node ${node.id} commit went back from ${node.lastCommit} to ${core.commitIndex}`);
      node.lastCommit = core.commitIndex;
    }
  }

  // ---- the scenario ----

  /** Faults for `faultMs`, then heal and require a leader and a new commit within `healMs`. */
  run(): SeedResult {
    const faultMs = this.options.faultMs ?? 1500;
    const healMs = this.options.healMs ?? 3000;
    const r = this.random;
    const faultProfile = r.int(4);
    for (let t = 50; t < faultMs; t += 30 + r.int(120)) {
      this.schedule(t, () => this.#randomFault(faultProfile));
    }
    for (let t = 20; t < faultMs; t += 5 + r.int(40)) this.schedule(t, () => void this.propose());
    for (let t = 30; t < faultMs; t += 40 + r.int(120)) {
      if (this.#admin) this.schedule(t, () => this.#adminOp());
      else this.schedule(t, () => this.read(r.pick(this.nodes)));
    }
    this.runUntil(faultMs);
    // Heal: every node up, every link open, no loss.
    this.blocked.clear();
    this.dropRate = 0;
    this.duplicateRate = 0;
    for (const node of this.nodes) this.restart(node);
    this.trace('heal');
    const deadline = this.now + healMs;
    let pending: { node: NodeId; index: number; data: string } | undefined;
    let done = false;
    const tryCommit = () => {
      const leader = this.leader();
      if (leader && pending && leader.applied >= pending.index) {
        const applied = this.committed.get(pending.index);
        if (applied?.endsWith(`:${pending.data}`)) done = true;
        else pending = undefined;
      }
      if (!done && leader && (!pending || pending.node !== leader.id)) pending = this.propose();
      if (!done) this.schedule(20, tryCommit);
    };
    this.schedule(0, tryCommit);
    this.runUntil(deadline, () => done);
    if (!done) throw this.#fail(`no leader committed a new proposal within ${healMs} ms after healing`);
    return {
      traceHash: this.traceHash,
      events: this.events,
      committed: this.committed.size,
      reads: this.reads,
      adminOps: this.adminOps,
    };
  }

  #randomFault(profile: number): void {
    const r = this.random;
    const n = this.nodes.length;
    const choice = r.int(10);
    if (profile === 0 && choice < 8) return; // a calm run: few faults
    if (choice < 2) {
      // Crashes aim at nodes in the middle of a write most of the time: that is where the order
      // of persisting and sending matters.
      const writing = this.nodes.filter((x) => x.alive && x.busy);
      const node = writing.length > 0 && r.chance(0.7) ? r.pick(writing) : r.pick(this.nodes);
      if (node.alive && this.nodes.filter((x) => x.alive).length > 1) this.crash(node);
      else this.restart(node);
    } else if (choice < 4) {
      // Partition: a random minority side, symmetric or one-way.
      this.blocked.clear();
      const side = new Set<number>();
      const size = 1 + r.int(Math.floor(n / 2));
      while (side.size < size) side.add(1 + r.int(n));
      const oneWay = r.chance(0.3);
      for (const a of side) {
        for (let b = 1; b <= n; b++) {
          if (side.has(b)) continue;
          this.blocked.add(`${a}->${b}`);
          if (!oneWay) this.blocked.add(`${b}->${a}`);
        }
      }
      this.trace(`partition ${[...side].join(',')}${oneWay ? ' one-way' : ''}`);
    } else if (choice < 6) {
      this.blocked.clear();
      this.trace('links healed');
    } else if (choice < 7) {
      this.dropRate = r.chance(0.5) ? 0 : r.next() * 0.3;
      this.duplicateRate = r.next() * 0.1;
      this.trace(`loss ${this.dropRate.toFixed(2)} dup ${this.duplicateRate.toFixed(2)}`);
    } else {
      for (const node of this.nodes) if (!node.alive && r.chance(0.5)) this.restart(node);
    }
  }
}

export interface SeedResult {
  traceHash: string;
  events: number;
  committed: number;
  /** Linearizable reads answered (each checked against what was committed before it began). */
  reads: number;
  /** Leadership transfers and membership changes the leader accepted. */
  adminOps: number;
}

/** Runs one seed twice and checks that both runs produce the same trace. */
export function runSeed(seed: number, options: Partial<SimOptions> = {}): SeedResult {
  const nodes = options.nodes ?? (seed % 3 === 0 ? 5 : 3);
  const first = new SimCluster({ seed, nodes, ...options }).run();
  const second = new SimCluster({ seed, nodes, ...options }).run();
  if (first.traceHash !== second.traceHash) {
    throw new SimulationFailure(
      `seed ${seed}: two runs of the same seed differ (trace ${first.traceHash} vs ${second.traceHash}): hidden nondeterminism`,
    );
  }
  return first;
}

export function replayCommand(seed: number): string {
  return `SEED=${seed} npm run sim`;
}
