import type { Clock, TimerHandle } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import type { Random } from '../common/random.js';
import { RaftCore, type RaftCoreOptions } from './core.js';
import type { RaftPersistentState, RaftStorage } from './storage.js';
import type { ConfigChange, Entry, HardState, Membership, Message, NodeId, Role } from './types.js';

/** Carries Raft messages between nodes. Delivery may drop, delay or reorder; Raft tolerates it. */
export interface RaftTransport {
  send(message: Message): void;
  onMessage(handler: (message: Message) => void): void;
  close(): Promise<void>;
}

/** The replicated state machine the driver applies committed entries to. */
export interface StateMachine {
  apply(entry: Entry): void | Promise<void>;
  /** Everything applied so far, for a snapshot. */
  snapshot(): Uint8Array;
  restore(data: Uint8Array, index: number): void | Promise<void>;
}

/** Snapshot hooks: `take` captures everything applied so far; `restore` replaces the state with one. */
export interface SnapshotHooks {
  take(): Uint8Array;
  restore(data: Uint8Array, index: number): void | Promise<void>;
}

export interface RaftDriverOptions extends Omit<RaftCoreOptions, 'id'> {
  id: NodeId;
  /** The bootstrap membership; changes in the log apply on top of it. */
  membership: Membership;
  tickMs?: number;
  /** Take a snapshot after this many applied entries beyond the last one. */
  snapshotEntries?: number;
  /** Proposals and reads waiting for an answer. */
  waitersMax?: number;
  /**
   * This node has taken part in the cluster before (the composition root knows it from outside the
   * Raft storage, as it knows the node's id). Empty storage is then refused at start: a member that
   * lost its storage may have voted in the current term or acknowledged entries it no longer holds,
   * so letting it vote or be counted again could elect two leaders in one term or lose committed
   * entries. Such a node comes back as a new server: removed, then added as a learner. Default
   * false: empty storage means a founding member of a new cluster.
   */
  storedStateRequired?: boolean;
}

export interface RaftDriverDeps {
  storage: RaftStorage;
  transport: RaftTransport;
  clock: Clock;
  random: Random;
  /** Optional: the same can be given with onApply and onSnapshot before start(). */
  stateMachine?: StateMachine;
}

export interface RaftStatus {
  id: NodeId;
  term: number;
  role: Role;
  leaderId: NodeId | null;
  commitIndex: number;
  appliedIndex: number;
  membership: Membership;
  /** This node's last log index. */
  lastIndex: number;
  /** On the leader: each other member's match index (how far its log is known to agree). */
  followers: { id: NodeId; matchIndex: number }[];
}

interface Waiter {
  term: number;
  resolve: (value: { index: number; term: number }) => void;
  reject: (error: unknown) => void;
}

/**
 * Runs a RaftCore with real time, storage and network. For each Ready, in this order: persist
 * (one synced batch: proposals that arrive while a save runs share the next one), send, apply,
 * advance. Proposals resolve when their entry is applied, and reject with NOT_LEADER (naming the
 * known leader) when this node cannot take them or their entry is replaced.
 */
export class RaftDriver {
  #core!: RaftCore;
  #timer: TimerHandle | undefined;
  #processing = false;
  #again = false;
  #closed = false;
  readonly #proposals = new Map<number, Waiter>();
  readonly #reads = new Map<number, { resolve: (index: number) => void; reject: (error: unknown) => void }>();
  readonly #readyReads: { index: number; resolve: (index: number) => void }[] = [];
  #readContext = 0;
  #failure: unknown;
  readonly #waitersMax: number;
  #apply: ((entry: Entry) => void | Promise<void>) | undefined;
  #savedHardState: HardState | undefined;
  #hooks: SnapshotHooks | undefined;

  constructor(
    readonly options: RaftDriverOptions,
    private readonly deps: RaftDriverDeps,
  ) {
    this.#waitersMax = options.waitersMax ?? 10_000;
    const machine = deps.stateMachine;
    if (machine) {
      this.#apply = (entry) => machine.apply(entry);
      this.#hooks = {
        take: () => machine.snapshot(),
        restore: (data, index) => machine.restore(data, index),
      };
    }
  }

  /**
   * Called with every committed normal entry, in log order, once per entry per process lifetime
   * (entries after the last snapshot are applied again after a restart). Set before start().
   */
  onApply(handler: (entry: Entry) => void | Promise<void>): void {
    this.#apply = handler;
  }

  /** Without hooks the node never compacts its log and cannot install a leader's snapshot. */
  onSnapshot(hooks: SnapshotHooks): void {
    this.#hooks = hooks;
  }

  async start(): Promise<void> {
    const state = await this.deps.storage.load();
    if (this.options.storedStateRequired && isEmptyState(state))
      throw new SluiceError(
        'KAFKA_STORAGE_ERROR',
        `node ${this.options.id} has taken part in the cluster but its Raft storage is empty: refusing to start, because it could vote again in a term it already voted in or be counted for entries it no longer holds; remove it from the membership and add it back as a new learner`,
      );
    this.#savedHardState = state.hardState;
    if (state.snapshot) {
      if (!this.#hooks)
        throw new SluiceError('INVALID_REQUEST', 'a snapshot is stored but no snapshot hooks are set');
      await this.#hooks.restore(state.snapshot.data, state.snapshot.index);
    }
    this.#core = new RaftCore(
      { ...this.options, id: this.options.id },
      {
        hardState: state.hardState,
        membership: this.options.membership,
        snapshot: state.snapshot,
        entries: state.entries,
      },
      this.deps.random,
    );
    this.deps.transport.onMessage((message) => {
      if (this.#closed) return;
      this.#core.step(message);
      this.#kick();
    });
    this.#timer = this.deps.clock.setInterval(() => {
      if (this.#closed) return;
      this.#core.tick();
      this.#kick();
    }, this.options.tickMs ?? 100);
    this.#kick();
  }

  status(): RaftStatus {
    const c = this.#core;
    if (!c) {
      const { id, membership } = this.options;
      return {
        id,
        term: 0,
        role: 'follower',
        leaderId: null,
        commitIndex: 0,
        appliedIndex: 0,
        membership,
        lastIndex: 0,
        followers: [],
      };
    }
    return {
      id: c.id,
      term: c.term,
      role: c.role,
      leaderId: c.leaderId,
      commitIndex: c.commitIndex,
      appliedIndex: c.appliedIndex,
      membership: c.membership,
      lastIndex: c.lastIndex(),
      followers: c.replicationProgress(),
    };
  }

  /**
   * Resolves once the entry is committed and applied here; rejects with NOT_LEADER (details
   * { leaderId }) when this node is not the leader or the entry is replaced.
   */
  propose(data: Uint8Array): Promise<{ index: number; term: number }> {
    return this.#submit(() => this.#core.propose(data));
  }

  /**
   * Resolves with an index once this node has applied it; a read of the state machine then is
   * linearizable. Rejects with NOT_LEADER on a node that cannot confirm its leadership.
   */
  readIndex(): Promise<number> {
    try {
      this.#checkOpen();
      if (this.#reads.size >= this.#waitersMax)
        throw new SluiceError('LIMIT_EXCEEDED', 'too many reads waiting');
    } catch (error) {
      return Promise.reject(error);
    }
    const context = ++this.#readContext;
    return new Promise((resolve, reject) => {
      this.#reads.set(context, { resolve, reject });
      this.#core.readIndex(context);
      this.#kick();
    });
  }

  transferLeadership(to: NodeId): void {
    this.#checkOpen();
    this.#core.transferLeadership(to);
    this.#kick();
  }

  addVoter(node: NodeId): Promise<{ index: number; term: number }> {
    return this.#changeMembership({ kind: 'addVoter', node });
  }
  removeVoter(node: NodeId): Promise<{ index: number; term: number }> {
    return this.#changeMembership({ kind: 'removeVoter', node });
  }
  addLearner(node: NodeId): Promise<{ index: number; term: number }> {
    return this.#changeMembership({ kind: 'addLearner', node });
  }
  removeLearner(node: NodeId): Promise<{ index: number; term: number }> {
    return this.#changeMembership({ kind: 'removeLearner', node });
  }

  #changeMembership(change: ConfigChange): Promise<{ index: number; term: number }> {
    return this.#submit(() => this.#core.proposeConfigChange(change));
  }

  #submit(propose: () => { index: number; term: number }): Promise<{ index: number; term: number }> {
    let placed: { index: number; term: number };
    try {
      this.#checkOpen();
      if (this.#proposals.size >= this.#waitersMax)
        throw new SluiceError('LIMIT_EXCEEDED', 'too many proposals waiting');
      placed = propose();
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.#proposals.set(placed.index, { term: placed.term, resolve, reject });
      this.#kick();
    });
  }

  #checkOpen(): void {
    if (this.#failure)
      throw new SluiceError('KAFKA_STORAGE_ERROR', 'the Raft node stopped after a storage failure', {
        cause: this.#failure,
      });
    if (this.#closed) throw new SluiceError('SHUTTING_DOWN', 'the Raft node is closed');
    if (!this.#core)
      throw new SluiceError('NOT_LEADER', 'the Raft node has not started', { details: { leaderId: null } });
  }

  #kick(): void {
    if (this.#processing) {
      this.#again = true;
      return;
    }
    this.#processing = true;
    queueMicrotask(() => void this.#process());
  }

  async #process(): Promise<void> {
    try {
      do {
        this.#again = false;
        while (!this.#closed && this.#core.hasReady()) {
          const ready = this.#core.ready();
          // A leader's replication messages may leave while its own write runs (Raft thesis
          // §10.2.1): they promise nothing about this node's disk. A commit index that counts the
          // leader's unsaved entries can only be sent in a later Ready, after this save.
          const leading = this.#core.role === 'leader';
          if (leading) for (const m of ready.messages) if (isReplication(m)) this.deps.transport.send(m);
          // Persist before anything that depends on it leaves this node. A change of the commit
          // index alone needs no sync: a node that forgets it learns it again from the leader.
          const hard = ready.hardState;
          const saved = this.#savedHardState;
          const commitOnly =
            ready.entries.length === 0 &&
            !ready.snapshot &&
            hard !== undefined &&
            saved !== undefined &&
            hard.term === saved.term &&
            hard.vote === saved.vote;
          await this.deps.storage.save({
            hardState: hard,
            snapshot: ready.snapshot,
            entries: ready.entries,
            sync: !commitOnly,
          });
          // Stopped meanwhile (a failed compaction save, or close): nothing more leaves this node.
          if (this.#closed) return;
          if (hard) this.#savedHardState = hard;
          for (const m of ready.messages) if (!(leading && isReplication(m))) this.deps.transport.send(m);
          if (ready.snapshot) {
            if (!this.#hooks)
              throw new SluiceError('INVALID_REQUEST', 'a snapshot arrived but no snapshot hooks are set');
            await this.#hooks.restore(ready.snapshot.data, ready.snapshot.index);
          }
          for (const entry of ready.committed) {
            if (entry.type === 'normal' && entry.data.length > 0) await this.#apply?.(entry);
            const waiter = this.#proposals.get(entry.index);
            if (waiter) {
              this.#proposals.delete(entry.index);
              if (waiter.term === entry.term) waiter.resolve({ index: entry.index, term: entry.term });
              else waiter.reject(this.#notLeader('the proposal was replaced by another leader'));
            }
          }
          for (const read of ready.readStates) {
            const waiter = this.#reads.get(read.context);
            if (waiter) {
              this.#reads.delete(read.context);
              this.#readyReads.push({ index: read.index, resolve: waiter.resolve });
            }
          }
          for (const context of ready.readsRejected) {
            const waiter = this.#reads.get(context);
            this.#reads.delete(context);
            waiter?.reject(this.#notLeader('this node cannot serve linearizable reads'));
          }
          this.#core.advance(ready);
          this.#releaseReads();
          this.#maybeSnapshot();
          this.#failStaleProposals();
        }
      } while (this.#again && !this.#closed);
    } catch (error) {
      this.#stop(error);
    } finally {
      this.#processing = false;
    }
  }

  #releaseReads(): void {
    const applied = this.#core.appliedIndex;
    for (let i = this.#readyReads.length - 1; i >= 0; i--) {
      const read = this.#readyReads[i]!;
      if (read.index <= applied) {
        this.#readyReads.splice(i, 1);
        read.resolve(read.index);
      }
    }
  }

  #maybeSnapshot(): void {
    const every = this.options.snapshotEntries;
    if (!every || !this.#hooks) return;
    const applied = this.#core.appliedIndex;
    if (applied - this.#core.snapshotIndex < every) return;
    const snapshot = this.#core.compact(applied, this.#hooks.take());
    if (!snapshot) return;
    // The storage orders saves, so this one never overtakes the entries it covers; it is not awaited
    // because nothing sent depends on it (a lost snapshot only means a longer log on restart).
    void this.deps.storage.save({ snapshot }).catch((error: unknown) => this.#stop(error));
  }

  /**
   * A storage failure leaves the node unable to promise durability: it stops taking part (no
   * message leaves it, no tick runs) rather than go on voting and acknowledging.
   */
  #stop(error: unknown): void {
    if (this.#failure === undefined) this.#failure = error;
    this.#closed = true;
    this.#timer?.cancel();
    this.#rejectAll(new SluiceError('KAFKA_STORAGE_ERROR', 'Raft storage failed', { cause: error }));
  }

  /**
   * A node that is no longer leader cannot tell how its uncommitted proposals end: they may still
   * commit under the next leader, or be replaced. They are refused with NOT_LEADER marked
   * `indeterminate`, so that the caller retries idempotently rather than assuming either outcome.
   */
  #failStaleProposals(): void {
    if (this.#core.role === 'leader' || this.#proposals.size === 0) return;
    for (const [index, waiter] of this.#proposals) {
      if (index <= this.#core.commitIndex && this.#core.termAt(index) === waiter.term) continue;
      this.#proposals.delete(index);
      waiter.reject(
        new SluiceError(
          'NOT_LEADER',
          'leadership changed before the proposal committed; it may still commit',
          {
            details: { leaderId: this.#core.leaderId, indeterminate: true },
          },
        ),
      );
    }
  }

  #notLeader(message: string): SluiceError {
    return new SluiceError('NOT_LEADER', message, { details: { leaderId: this.#core.leaderId } });
  }

  #rejectAll(error: unknown): void {
    for (const waiter of this.#proposals.values()) waiter.reject(error);
    for (const waiter of this.#reads.values()) waiter.reject(error);
    this.#proposals.clear();
    this.#reads.clear();
  }

  async close(): Promise<void> {
    if (this.#closed && !this.#timer) return;
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#rejectAll(new SluiceError('SHUTTING_DOWN', 'the Raft node is closing'));
    await this.deps.transport.close();
    await this.deps.storage.close();
  }
}

function isEmptyState(state: RaftPersistentState): boolean {
  return (
    state.hardState.term === 0 &&
    state.hardState.vote === null &&
    state.snapshot === undefined &&
    state.entries.length === 0
  );
}

/** Messages a leader sends about its own log: safe to send before its write of the same Ready. */
export function isReplication(message: Message): boolean {
  return (
    message.type === 'append' ||
    message.type === 'heartbeat' ||
    message.type === 'snapshot' ||
    message.type === 'timeoutNow'
  );
}
