import { assert } from '../common/assert.js';
import { SluiceError } from '../common/errors.js';
import type { Random } from '../common/random.js';
import {
  applyConfigChange,
  type ConfigChange,
  decodeConfigChange,
  type Entry,
  encodeConfigChange,
  type HardState,
  type Membership,
  type Message,
  type NodeId,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
} from './types.js';

export interface RaftCoreOptions {
  id: NodeId;
  /** Ticks without a leader before an election; the actual timeout is drawn from [t, 2t). */
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Appends in flight to one follower in the replicate state. */
  inflightMax?: number;
  /** Entries in one append message. */
  entriesPerAppendMax?: number;
  /** Proposals waiting in the leader's log that are not yet committed. */
  uncommittedMax?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
}

/** State restored from durable storage at start. */
export interface RaftInitialState {
  hardState: HardState;
  /** The membership when the log is empty and there is no snapshot (a new cluster). */
  membership: Membership;
  snapshot?: Snapshot | undefined;
  /** Entries after the snapshot, in order. */
  entries: Entry[];
}

interface Progress {
  match: number;
  next: number;
  state: 'probe' | 'replicate' | 'snapshot';
  inflight: number;
  /** In probe state, whether an append is outstanding. */
  paused: boolean;
  recentActive: boolean;
  pendingSnapshot: number;
  /** Ticks since the snapshot was sent: a lost one is sent again after an election timeout. */
  snapshotTicks: number;
}

interface PendingRead {
  index: number;
  context: number;
  acks: Set<NodeId>;
}

/**
 * A Raft node as a pure, synchronous state machine (after etcd-io/raft): it takes ticks, messages
 * and proposals, and returns what to persist, send and apply as a `Ready`. It reads no clock,
 * starts no timer, does no I/O; chance comes from the injected Random. Implemented: leader election
 * with PreVote and CheckQuorum, leadership transfer, log replication with fast conflict
 * backtracking and a bounded pipeline, commit only by counting replicas of an entry of the
 * leader's own term (§5.4.2), snapshots, ReadIndex, learners, single-server membership changes.
 */
export class RaftCore {
  readonly id: NodeId;
  #term = 0;
  #vote: NodeId | null = null;
  #commit = 0;
  #applied = 0;
  #role: Role = 'follower';
  #leader: NodeId | null = null;
  /** Entries after the snapshot: entries[i] has index snapshotIndex + 1 + i. */
  #entries: Entry[] = [];
  #snapshot: Snapshot;
  /** Entries at or below this index are durable. */
  #stableIndex = 0;
  #unstableSnapshot: Snapshot | undefined;
  #membership: Membership;
  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTicks = 0;
  readonly #electionTicks: number;
  readonly #heartbeatTicks: number;
  readonly #inflightMax: number;
  readonly #entriesPerAppendMax: number;
  readonly #uncommittedMax: number;
  readonly #preVote: boolean;
  readonly #checkQuorum: boolean;
  #progress = new Map<NodeId, Progress>();
  #votes = new Map<NodeId, boolean>();
  #messages: Message[] = [];
  #lastHardState: HardState;
  #transferee: NodeId | null = null;
  #transferElapsed = 0;
  #pendingConfigIndex = 0;
  #reads: PendingRead[] = [];
  #readStates: ReadState[] = [];
  #readsRejected: number[] = [];
  /** Reads asked before this leader committed an entry of its term: served once it has. */
  #readsBeforeCommit: number[] = [];

  constructor(
    options: RaftCoreOptions,
    initial: RaftInitialState,
    private readonly random: Random,
  ) {
    this.id = options.id;
    this.#electionTicks = options.electionTicks ?? 10;
    this.#heartbeatTicks = options.heartbeatTicks ?? 1;
    this.#inflightMax = options.inflightMax ?? 64;
    this.#entriesPerAppendMax = options.entriesPerAppendMax ?? 256;
    this.#uncommittedMax = options.uncommittedMax ?? 10_000;
    this.#preVote = options.preVote ?? true;
    this.#checkQuorum = options.checkQuorum ?? true;
    assert(this.#heartbeatTicks < this.#electionTicks, 'heartbeat ticks must be below election ticks');
    this.#snapshot = initial.snapshot ?? {
      index: 0,
      term: 0,
      membership: initial.membership,
      data: new Uint8Array(),
    };
    this.#entries = [...initial.entries];
    for (let i = 0; i < this.#entries.length; i++) {
      assert(
        this.#entries[i]!.index === this.#snapshot.index + 1 + i,
        'restored entries must follow the snapshot without gaps',
      );
    }
    this.#term = initial.hardState.term;
    this.#vote = initial.hardState.vote;
    this.#commit = Math.max(initial.hardState.commit, this.#snapshot.index);
    assert(this.#commit <= this.lastIndex(), `commit ${this.#commit} beyond the log ${this.lastIndex()}`);
    this.#applied = this.#snapshot.index;
    this.#stableIndex = this.lastIndex();
    this.#membership = this.#membershipFromLog();
    this.#lastHardState = this.hardState();
    this.#resetElectionTimer();
  }

  // ---- reading state ----

  get term(): number {
    return this.#term;
  }
  get role(): Role {
    return this.#role;
  }
  get leaderId(): NodeId | null {
    return this.#leader;
  }
  /** On a leader, how far each other member's log is known to match this one's; empty elsewhere. */
  replicationProgress(): { id: NodeId; matchIndex: number }[] {
    if (this.role !== 'leader') return [];
    return [...this.#progress]
      .filter(([id]) => id !== this.id)
      .map(([id, p]) => ({ id, matchIndex: p.match }))
      .sort((a, b) => a.id - b.id);
  }

  get commitIndex(): number {
    return this.#commit;
  }
  get appliedIndex(): number {
    return this.#applied;
  }
  get membership(): Membership {
    return { voters: [...this.#membership.voters], learners: [...this.#membership.learners] };
  }
  get snapshotIndex(): number {
    return this.#snapshot.index;
  }
  get transferee(): NodeId | null {
    return this.#transferee;
  }

  hardState(): HardState {
    return { term: this.#term, vote: this.#vote, commit: this.#commit };
  }

  lastIndex(): number {
    return this.#snapshot.index + this.#entries.length;
  }

  lastTerm(): number {
    return this.termAt(this.lastIndex()) ?? 0;
  }

  /** The term of the entry at `index`, or undefined when it is compacted away or beyond the log. */
  termAt(index: number): number | undefined {
    if (index === this.#snapshot.index) return this.#snapshot.term;
    if (index < this.#snapshot.index || index > this.lastIndex()) return undefined;
    return this.#entries[index - this.#snapshot.index - 1]!.term;
  }

  entriesFrom(from: number, to = this.lastIndex()): Entry[] {
    const start = Math.max(from, this.#snapshot.index + 1) - this.#snapshot.index - 1;
    return this.#entries.slice(start, to - this.#snapshot.index);
  }

  isVoter(id: NodeId = this.id): boolean {
    return this.#membership.voters.includes(id);
  }

  // ---- inputs ----

  tick(): void {
    if (this.#role === 'leader') this.#tickLeader();
    else this.#tickElection();
  }

  /** Appends a command; only the leader accepts. Returns the entry's index and term. */
  propose(data: Uint8Array): { index: number; term: number } {
    return this.#proposeEntry('normal', data);
  }

  proposeConfigChange(change: ConfigChange): { index: number; term: number } {
    // Only a leader takes changes; a follower names it rather than reporting the leader's limits.
    this.#requireLeader();
    if (this.termAt(this.#commit) !== this.#term) {
      // A change from an earlier leader may sit on a minority outside this log; two single-server
      // changes from different terms could then commit with disjoint quorums. Committing an entry
      // of this term first rules that out (the known fix to single-server changes).
      throw new SluiceError('LIMIT_EXCEEDED', 'the new leader has not committed an entry of its term yet');
    }
    if (this.#pendingConfigIndex > this.#applied || this.#hasUncommittedConfig()) {
      throw new SluiceError(
        'LIMIT_EXCEEDED',
        'a membership change is already in progress; one server at a time',
      );
    }
    const result = this.#proposeEntry('config', encodeConfigChange(change));
    this.#pendingConfigIndex = result.index;
    return result;
  }

  /** Asks for a linearizable read point; the answer comes as a ReadState (or a rejection) in a Ready. */
  readIndex(context: number): void {
    if (this.#role !== 'leader') {
      this.#readsRejected.push(context);
      return;
    }
    if (this.termAt(this.#commit) !== this.#term) {
      // §6.4: a new leader does not know the commit index until an entry of its term commits.
      this.#readsBeforeCommit.push(context);
      return;
    }
    this.#startRead(context);
  }

  /** Hands leadership to `to` (a caught-up voter): used for rolling restarts. */
  transferLeadership(to: NodeId): void {
    if (this.#role !== 'leader')
      throw new SluiceError('NOT_LEADER', 'only the leader can transfer leadership', {
        details: { leaderId: this.#leader },
      });
    if (to === this.id) return;
    if (!this.isVoter(to)) throw new SluiceError('INVALID_REQUEST', `node ${to} is not a voter`);
    this.#transferee = to;
    this.#transferElapsed = 0;
    const progress = this.#progress.get(to)!;
    if (progress.match === this.lastIndex())
      this.#send({ type: 'timeoutNow', from: this.id, to, term: this.#term });
    else this.#sendAppend(to);
  }

  /** The state machine has captured everything up to `index` in `data`: drop the log before it. */
  /** Returns the snapshot to persist (the membership is the one in force at `index`), or undefined if not newer. */
  compact(index: number, data: Uint8Array): Snapshot | undefined {
    assert(index <= this.#applied, `cannot snapshot at ${index}, applied only ${this.#applied}`);
    if (index <= this.#snapshot.index) return undefined;
    const term = this.termAt(index)!;
    const membership = this.#membershipAt(index);
    this.#entries = this.entriesFrom(index + 1);
    this.#snapshot = { index, term, membership, data };
    return this.#snapshot;
  }

  step(message: Message): void {
    if (message.to !== this.id) return;
    // Term rules (§5.1), with PreVote's exception: pre-votes do not change terms.
    if (message.term > this.#term) {
      if (message.type === 'preVote') {
        // handled below without changing the term
      } else if (message.type === 'preVoteResponse') {
        if (!message.granted) {
          this.#becomeFollower(message.term, null);
        }
      } else if (message.type === 'vote' && !message.transfer && this.#inLease()) {
        // CheckQuorum lease: a node that heard from a live leader lately ignores a disruptive vote.
        return;
      } else {
        const leader =
          message.type === 'append' || message.type === 'heartbeat' || message.type === 'snapshot'
            ? message.from
            : null;
        this.#becomeFollower(message.term, leader);
      }
    } else if (message.term < this.#term) {
      if (message.type === 'append' || message.type === 'heartbeat') {
        // A stale leader learns of the newer term (needed with CheckQuorum, as etcd does).
        this.#send({
          type: 'appendResponse',
          from: this.id,
          to: message.from,
          term: this.#term,
          success: false,
          index: 0,
          conflictTerm: 0,
        });
      } else if (message.type === 'preVote') {
        this.#send({
          type: 'preVoteResponse',
          from: this.id,
          to: message.from,
          term: this.#term,
          granted: false,
        });
      }
      return;
    }
    switch (message.type) {
      case 'preVote':
      case 'vote':
        this.#handleVoteRequest(message);
        return;
      case 'preVoteResponse':
      case 'voteResponse':
        this.#handleVoteResponse(message);
        return;
      case 'append':
        this.#handleAppend(message);
        return;
      case 'heartbeat':
        this.#handleHeartbeat(message);
        return;
      case 'snapshot':
        this.#handleSnapshot(message);
        return;
      case 'appendResponse':
        this.#handleAppendResponse(message);
        return;
      case 'heartbeatResponse':
        this.#handleHeartbeatResponse(message);
        return;
      case 'timeoutNow':
        if (this.isVoter() && this.#role !== 'leader') this.#campaign(true);
        return;
    }
  }

  // ---- output ----

  hasReady(): boolean {
    return (
      this.#messages.length > 0 ||
      this.lastIndex() > this.#stableIndex ||
      this.#unstableSnapshot !== undefined ||
      this.#commit > this.#applied ||
      this.#readStates.length > 0 ||
      this.#readsRejected.length > 0 ||
      !sameHardState(this.hardState(), this.#lastHardState)
    );
  }

  /** Takes the pending output; call `advance(ready)` once it is persisted, sent and applied. */
  ready(): Ready {
    const hardState = this.hardState();
    const ready: Ready = {
      hardState: sameHardState(hardState, this.#lastHardState) ? undefined : hardState,
      snapshot: this.#unstableSnapshot,
      entries: this.entriesFrom(this.#stableIndex + 1),
      messages: this.#messages,
      committed: this.entriesFrom(this.#applied + 1, this.#commit),
      readStates: this.#readStates,
      readsRejected: this.#readsRejected,
    };
    this.#messages = [];
    this.#readStates = [];
    this.#readsRejected = [];
    return ready;
  }

  advance(ready: Ready): void {
    if (ready.hardState) this.#lastHardState = ready.hardState;
    if (ready.snapshot) {
      this.#applied = Math.max(this.#applied, ready.snapshot.index);
      if (this.#unstableSnapshot === ready.snapshot) this.#unstableSnapshot = undefined;
    }
    const lastPersisted = ready.entries.at(-1);
    if (lastPersisted && this.termAt(lastPersisted.index) === lastPersisted.term) {
      this.#stableIndex = Math.max(this.#stableIndex, lastPersisted.index);
    } else if (ready.snapshot) {
      this.#stableIndex = Math.max(this.#stableIndex, ready.snapshot.index);
    }
    const lastApplied = ready.committed.at(-1);
    if (lastApplied) this.#applied = Math.max(this.#applied, lastApplied.index);
    // Membership removal of the leader itself takes effect when committed: it steps down.
    if (this.#role === 'leader' && !this.isVoter() && this.#applied >= this.#lastConfigIndex()) {
      this.#becomeFollower(this.#term, null);
    }
  }

  // ---- roles ----

  #resetElectionTimer(): void {
    this.#electionElapsed = 0;
    this.#randomizedElectionTicks = this.#electionTicks + this.random.int(this.#electionTicks);
  }

  #becomeFollower(term: number, leader: NodeId | null): void {
    if (term > this.#term) {
      this.#term = term;
      this.#vote = null;
    }
    this.#role = 'follower';
    this.#leader = leader;
    this.#transferee = null;
    this.#failPendingReads();
    this.#resetElectionTimer();
  }

  #becomePreCandidate(): void {
    this.#role = 'preCandidate';
    this.#leader = null;
    this.#votes = new Map([[this.id, true]]);
    this.#resetElectionTimer();
  }

  #becomeCandidate(): void {
    this.#term += 1;
    this.#vote = this.id;
    this.#role = 'candidate';
    this.#leader = null;
    this.#votes = new Map([[this.id, true]]);
    this.#resetElectionTimer();
  }

  #becomeLeader(): void {
    this.#role = 'leader';
    this.#leader = this.id;
    this.#transferee = null;
    this.#heartbeatElapsed = 0;
    this.#electionElapsed = 0;
    this.#progress = new Map();
    for (const peer of this.#peers()) {
      this.#progress.set(peer, {
        match: 0,
        next: this.lastIndex() + 1,
        state: 'probe',
        inflight: 0,
        paused: false,
        recentActive: true,
        pendingSnapshot: 0,
        snapshotTicks: 0,
      });
    }
    this.#pendingConfigIndex = this.#lastConfigIndex();
    // §5.4.2: an empty entry of the new term, so that earlier entries commit through it.
    this.#appendLocal([
      { term: this.#term, index: this.lastIndex() + 1, type: 'normal', data: new Uint8Array() },
    ]);
    this.#broadcastAppend();
    this.#maybeCommit();
  }

  #campaign(transfer: boolean): void {
    if (!this.isVoter()) return;
    if (this.#preVote && !transfer) {
      this.#becomePreCandidate();
      if (this.#tallyAndMaybeWin()) return;
      for (const peer of this.#membership.voters) {
        if (peer !== this.id) {
          this.#send({
            type: 'preVote',
            from: this.id,
            to: peer,
            term: this.#term + 1,
            lastIndex: this.lastIndex(),
            lastTerm: this.lastTerm(),
          });
        }
      }
      return;
    }
    this.#startElection(transfer);
  }

  #startElection(transfer: boolean): void {
    this.#becomeCandidate();
    if (this.#tallyAndMaybeWin()) return;
    for (const peer of this.#membership.voters) {
      if (peer !== this.id) {
        this.#send({
          type: 'vote',
          from: this.id,
          to: peer,
          term: this.#term,
          lastIndex: this.lastIndex(),
          lastTerm: this.lastTerm(),
          transfer,
        });
      }
    }
  }

  /** Counts votes; acts on a win. Returns true when the round is decided by a win. */
  #tallyAndMaybeWin(): boolean {
    const granted = this.#membership.voters.filter((v) => this.#votes.get(v) === true).length;
    if (granted >= this.#quorum()) {
      if (this.#role === 'preCandidate') {
        this.#startElection(false);
      } else if (this.#role === 'candidate') {
        this.#becomeLeader();
      }
      return true;
    }
    const rejected = this.#membership.voters.filter((v) => this.#votes.get(v) === false).length;
    if (rejected >= this.#quorum()) this.#becomeFollower(this.#term, null);
    return false;
  }

  #tickElection(): void {
    this.#electionElapsed++;
    if (this.#electionElapsed >= this.#randomizedElectionTicks && this.isVoter()) {
      this.#campaign(false);
    }
  }

  #tickLeader(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    if (this.#transferee !== null && ++this.#transferElapsed >= this.#electionTicks) this.#transferee = null;
    for (const [peer, progress] of this.#progress) {
      // A snapshot message (or its answer) can be lost, and nothing else would ever move the
      // follower on: after an election timeout without an answer, probe again (and so resend).
      if (progress.state === 'snapshot' && ++progress.snapshotTicks >= this.#electionTicks) {
        progress.state = 'probe';
        progress.paused = false;
        this.#sendAppend(peer);
      }
    }
    if (this.#electionElapsed >= this.#electionTicks) {
      this.#electionElapsed = 0;
      if (this.#checkQuorum) {
        const active = this.#membership.voters.filter(
          (v) => v === this.id || this.#progress.get(v)?.recentActive,
        ).length;
        for (const p of this.#progress.values()) p.recentActive = false;
        if (active < this.#quorum()) {
          this.#becomeFollower(this.#term, null);
          return;
        }
      }
    }
    if (this.#heartbeatElapsed >= this.#heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat(this.#reads.at(-1)?.context ?? 0);
    }
  }

  // ---- handlers ----

  #inLease(): boolean {
    return this.#checkQuorum && this.#leader !== null && this.#electionElapsed < this.#electionTicks;
  }

  #handleVoteRequest(m: Extract<Message, { type: 'preVote' | 'vote' }>): void {
    const upToDate =
      m.lastTerm > this.lastTerm() || (m.lastTerm === this.lastTerm() && m.lastIndex >= this.lastIndex());
    if (m.type === 'preVote') {
      // Grant a pre-vote only if an election could be won and no live leader is known.
      const granted =
        upToDate &&
        m.term > this.#term &&
        !(this.#leader !== null && this.#electionElapsed < this.#electionTicks);
      this.#send({
        type: 'preVoteResponse',
        from: this.id,
        to: m.from,
        term: granted ? m.term : this.#term,
        granted,
      });
      return;
    }
    const canVote = this.#vote === m.from || (this.#vote === null && this.#leader === null);
    // Membership is not checked: a voter whose log lacks the change that added the candidate must
    // still be able to elect it (or a two-voter configuration could never elect anyone). Removed
    // servers are kept from disrupting by PreVote and the leader lease, not by this check.
    const granted = canVote && upToDate;
    if (granted) {
      this.#vote = m.from;
      this.#resetElectionTimer();
    }
    this.#send({ type: 'voteResponse', from: this.id, to: m.from, term: this.#term, granted });
  }

  #handleVoteResponse(m: Extract<Message, { type: 'preVoteResponse' | 'voteResponse' }>): void {
    if (m.type === 'preVoteResponse' && this.#role !== 'preCandidate') return;
    if (m.type === 'voteResponse' && this.#role !== 'candidate') return;
    if (m.type === 'preVoteResponse' && m.granted && m.term !== this.#term + 1) return;
    this.#votes.set(m.from, m.granted);
    this.#tallyAndMaybeWin();
  }

  #handleAppend(m: Extract<Message, { type: 'append' }>): void {
    this.#becomeFollowerOf(m.from);
    if (m.prevIndex < this.#commit) {
      // Already committed here: acknowledge what matches without touching committed entries.
      this.#send({
        type: 'appendResponse',
        from: this.id,
        to: m.from,
        term: this.#term,
        success: true,
        index: this.#commit,
        conflictTerm: 0,
      });
      return;
    }
    const localTerm = this.termAt(m.prevIndex);
    if (localTerm !== m.prevTerm) {
      // Fast backtracking: tell the leader where our log diverges.
      let hint: number;
      let conflictTerm = 0;
      if (localTerm === undefined) {
        hint = this.lastIndex() + 1;
      } else {
        conflictTerm = localTerm;
        hint = m.prevIndex;
        while (hint - 1 > this.#snapshot.index && this.termAt(hint - 1) === conflictTerm) hint--;
      }
      this.#send({
        type: 'appendResponse',
        from: this.id,
        to: m.from,
        term: this.#term,
        success: false,
        index: hint,
        conflictTerm,
      });
      return;
    }
    // Append, truncating a conflicting suffix (never a committed entry).
    const toAppend: Entry[] = [];
    for (const entry of m.entries) {
      const existing = this.termAt(entry.index);
      if (toAppend.length === 0 && existing === entry.term) continue;
      if (toAppend.length === 0 && existing !== undefined) {
        assert(
          entry.index > this.#commit,
          `leader ${m.from} asks to overwrite committed entry ${entry.index}`,
        );
      }
      toAppend.push(entry);
    }
    if (toAppend.length > 0) this.#appendLocal(toAppend);
    const lastNew = m.prevIndex + m.entries.length;
    const commit = Math.min(m.commit, lastNew);
    if (commit > this.#commit) this.#commit = commit;
    this.#send({
      type: 'appendResponse',
      from: this.id,
      to: m.from,
      term: this.#term,
      success: true,
      index: lastNew,
      conflictTerm: 0,
    });
  }

  #handleHeartbeat(m: Extract<Message, { type: 'heartbeat' }>): void {
    this.#becomeFollowerOf(m.from);
    const commit = Math.min(m.commit, this.lastIndex());
    // A heartbeat does not prove the log matches the leader's up to its commit; only appends do.
    // etcd sends min(match, commit) per follower; here the leader sends exactly that.
    if (commit > this.#commit) this.#commit = commit;
    this.#send({
      type: 'heartbeatResponse',
      from: this.id,
      to: m.from,
      term: this.#term,
      context: m.context,
    });
  }

  #handleSnapshot(m: Extract<Message, { type: 'snapshot' }>): void {
    this.#becomeFollowerOf(m.from);
    const s = m.snapshot;
    if (s.index <= this.#commit) {
      this.#send({
        type: 'appendResponse',
        from: this.id,
        to: m.from,
        term: this.#term,
        success: true,
        index: this.#commit,
        conflictTerm: 0,
      });
      return;
    }
    if (this.termAt(s.index) === s.term) {
      // Our log already has the snapshot's last entry: it is committed, and what follows it is
      // kept. That suffix may be a stale tail no quorum holds, so only the snapshot's index is
      // acknowledged: the leader then sends what follows and replaces the tail where it differs.
      // Acknowledging the whole log would let the leader count the tail as replicated, commit
      // over it, and this node apply entries no quorum has.
      this.#commit = s.index;
    } else {
      this.#entries = [];
      this.#snapshot = s;
      this.#unstableSnapshot = s;
      this.#stableIndex = s.index;
      this.#commit = s.index;
      this.#membership = this.#membershipFromLog();
    }
    this.#send({
      type: 'appendResponse',
      from: this.id,
      to: m.from,
      term: this.#term,
      success: true,
      index: s.index,
      conflictTerm: 0,
    });
  }

  #becomeFollowerOf(leader: NodeId): void {
    if (this.#role !== 'follower') this.#becomeFollower(this.#term, leader);
    this.#leader = leader;
    this.#electionElapsed = 0;
  }

  #handleAppendResponse(m: Extract<Message, { type: 'appendResponse' }>): void {
    if (this.#role !== 'leader') return;
    const progress = this.#progress.get(m.from);
    if (!progress) return;
    progress.recentActive = true;
    if (!m.success) {
      if (m.index === 0 && m.conflictTerm === 0) return;
      // Fast backtracking: skip the whole conflicting term at once. The hint is the follower's
      // first index of its conflicting term (or its log end); if this log has entries of that
      // term, resume right after the last of them.
      let next = m.index;
      if (m.conflictTerm > 0) {
        for (let i = Math.min(m.index, this.lastIndex()); i > this.#snapshot.index; i--) {
          const term = this.termAt(i) ?? 0;
          if (term === m.conflictTerm) {
            next = i + 1;
            break;
          }
          if (term < m.conflictTerm) break;
        }
      }
      progress.next = Math.max(progress.match + 1, Math.min(next, this.lastIndex() + 1));
      progress.state = 'probe';
      progress.inflight = 0;
      progress.paused = false;
      this.#sendAppend(m.from);
      return;
    }
    if (m.index > progress.match) progress.match = m.index;
    progress.next = Math.max(progress.next, progress.match + 1);
    if (progress.state === 'snapshot' && progress.match >= progress.pendingSnapshot) progress.state = 'probe';
    if (progress.state === 'probe') {
      progress.state = 'replicate';
      progress.next = progress.match + 1;
      progress.inflight = 0;
    } else if (progress.inflight > 0) {
      progress.inflight--;
    }
    progress.paused = false;
    this.#maybeCommit();
    if (this.#transferee === m.from && progress.match === this.lastIndex()) {
      this.#send({ type: 'timeoutNow', from: this.id, to: m.from, term: this.#term });
    }
    // Keep the pipeline full.
    while (progress.next <= this.lastIndex() && this.#canSend(progress)) {
      if (!this.#sendAppend(m.from)) break;
    }
  }

  #handleHeartbeatResponse(m: Extract<Message, { type: 'heartbeatResponse' }>): void {
    if (this.#role !== 'leader') return;
    const progress = this.#progress.get(m.from);
    if (!progress) return;
    progress.recentActive = true;
    progress.paused = false;
    // Appends lost on the way never free their slot; a heartbeat answer frees one so that the
    // pipeline cannot stall for good (the follower then rejects the gap and probing resumes).
    if (progress.state === 'replicate' && progress.inflight >= this.#inflightMax) progress.inflight--;
    if (progress.match < this.lastIndex()) this.#sendAppend(m.from);
    if (m.context > 0) {
      for (const read of this.#reads) if (read.context <= m.context) read.acks.add(m.from);
      this.#releaseReads();
    }
  }

  // ---- replication ----

  #canSend(progress: Progress): boolean {
    if (progress.state === 'snapshot') return false;
    if (progress.state === 'probe') return !progress.paused;
    return progress.inflight < this.#inflightMax;
  }

  /** Sends the next append (or a snapshot) to `peer`; false when nothing was sent. */
  #sendAppend(peer: NodeId): boolean {
    const progress = this.#progress.get(peer);
    if (!progress || !this.#canSend(progress)) return false;
    const prevIndex = progress.next - 1;
    const prevTerm = this.termAt(prevIndex);
    if (prevTerm === undefined) {
      // The entries it needs are compacted away: send the snapshot.
      progress.state = 'snapshot';
      progress.pendingSnapshot = this.#snapshot.index;
      progress.snapshotTicks = 0;
      this.#send({ type: 'snapshot', from: this.id, to: peer, term: this.#term, snapshot: this.#snapshot });
      return true;
    }
    const entries = this.entriesFrom(
      progress.next,
      Math.min(this.lastIndex(), progress.next + this.#entriesPerAppendMax - 1),
    );
    this.#send({
      type: 'append',
      from: this.id,
      to: peer,
      term: this.#term,
      prevIndex,
      prevTerm,
      entries,
      commit: Math.min(this.#commit, prevIndex + entries.length),
    });
    if (progress.state === 'replicate') {
      if (entries.length > 0) {
        progress.next = entries.at(-1)!.index + 1;
        progress.inflight++;
      }
    } else {
      progress.paused = true;
    }
    return entries.length > 0 || progress.state === 'probe';
  }

  #broadcastAppend(): void {
    for (const peer of this.#progress.keys()) this.#sendAppend(peer);
  }

  #broadcastHeartbeat(context: number): void {
    for (const [peer, progress] of this.#progress) {
      this.#send({
        type: 'heartbeat',
        from: this.id,
        to: peer,
        term: this.#term,
        commit: Math.min(progress.match, this.#commit),
        context,
      });
    }
  }

  #maybeCommit(): void {
    const matches = this.#membership.voters
      .map((v) => (v === this.id ? this.lastIndex() : (this.#progress.get(v)?.match ?? 0)))
      .sort((a, b) => b - a);
    if (matches.length === 0) return;
    const candidate = matches[this.#quorum() - 1]!;
    // §5.4.2: only an entry of the current term commits by counting replicas.
    if (candidate > this.#commit && this.termAt(candidate) === this.#term) {
      const firstOfTerm = this.termAt(this.#commit) !== this.#term;
      this.#commit = candidate;
      this.#broadcastAppendCommit();
      if (firstOfTerm) {
        const waiting = this.#readsBeforeCommit;
        this.#readsBeforeCommit = [];
        for (const context of waiting) this.#startRead(context);
      }
    }
  }

  /** Followers learn the new commit index with the next append or heartbeat; send appends now. */
  #broadcastAppendCommit(): void {
    for (const [peer, progress] of this.#progress) {
      if (
        progress.state === 'replicate' &&
        progress.next > this.lastIndex() &&
        progress.match === this.lastIndex()
      ) {
        this.#send({
          type: 'heartbeat',
          from: this.id,
          to: peer,
          term: this.#term,
          commit: Math.min(progress.match, this.#commit),
          context: 0,
        });
      }
    }
  }

  #requireLeader(): void {
    if (this.#role !== 'leader') {
      throw new SluiceError('NOT_LEADER', `node ${this.id} is not the leader`, {
        details: { leaderId: this.#leader },
      });
    }
  }

  #proposeEntry(type: Entry['type'], data: Uint8Array): { index: number; term: number } {
    this.#requireLeader();
    if (this.#transferee !== null) {
      throw new SluiceError('NOT_LEADER', `leadership is moving to node ${this.#transferee}`, {
        details: { leaderId: this.#transferee },
      });
    }
    if (this.lastIndex() - this.#commit >= this.#uncommittedMax) {
      throw new SluiceError('LIMIT_EXCEEDED', `${this.#uncommittedMax} entries are waiting to commit`);
    }
    const entry: Entry = { term: this.#term, index: this.lastIndex() + 1, type, data };
    this.#appendLocal([entry]);
    for (const [peer, progress] of this.#progress) {
      if (progress.state === 'replicate' ? progress.next === entry.index : true) this.#sendAppend(peer);
    }
    this.#maybeCommit();
    return { index: entry.index, term: entry.term };
  }

  /** Appends entries, replacing any suffix from the first one's index. */
  #appendLocal(entries: Entry[]): void {
    const first = entries[0]!.index;
    assert(
      first > this.#snapshot.index && first <= this.lastIndex() + 1,
      `append at ${first} leaves a gap or rewrites the snapshot`,
    );
    assert(
      first > this.#commit || this.termAt(first) === entries[0]!.term,
      'a committed entry is never replaced',
    );
    this.#entries.length = first - this.#snapshot.index - 1;
    this.#entries.push(...entries);
    if (first <= this.#stableIndex) this.#stableIndex = first - 1;
    if (entries.some((e) => e.type === 'config') || first <= this.#lastConfigIndexCached) {
      const before = this.#membership;
      this.#membership = this.#membershipFromLog();
      if (this.#role === 'leader') this.#syncProgress(before);
    }
  }

  #lastConfigIndexCached = 0;

  #syncProgress(_before: Membership): void {
    const peers = new Set(this.#peers());
    for (const peer of peers) {
      if (!this.#progress.has(peer)) {
        this.#progress.set(peer, {
          match: 0,
          next: this.lastIndex() + 1,
          state: 'probe',
          inflight: 0,
          paused: false,
          recentActive: true,
          pendingSnapshot: 0,
          snapshotTicks: 0,
        });
      }
    }
    for (const peer of [...this.#progress.keys()]) if (!peers.has(peer)) this.#progress.delete(peer);
  }

  #membershipFromLog(): Membership {
    let membership = this.#snapshot.membership;
    this.#lastConfigIndexCached = 0;
    for (const entry of this.#entries) {
      if (entry.type === 'config') {
        membership = applyConfigChange(membership, decodeConfigChange(entry.data));
        this.#lastConfigIndexCached = entry.index;
      }
    }
    return membership;
  }

  #membershipAt(index: number): Membership {
    let membership = this.#snapshot.membership;
    for (const entry of this.#entries) {
      if (entry.index > index) break;
      if (entry.type === 'config') membership = applyConfigChange(membership, decodeConfigChange(entry.data));
    }
    return membership;
  }

  #lastConfigIndex(): number {
    return this.#lastConfigIndexCached;
  }

  #hasUncommittedConfig(): boolean {
    return this.#lastConfigIndexCached > this.#commit;
  }

  #peers(): NodeId[] {
    return [...this.#membership.voters, ...this.#membership.learners].filter((id) => id !== this.id);
  }

  #quorum(): number {
    return Math.floor(this.#membership.voters.length / 2) + 1;
  }

  // ---- reads ----

  #startRead(context: number): void {
    const read: PendingRead = { index: this.#commit, context, acks: new Set([this.id]) };
    this.#reads.push(read);
    if (!this.#releaseReads()) this.#broadcastHeartbeat(context);
  }

  /** Releases reads confirmed by a quorum, in order; true when the newest was released. */
  #releaseReads(): boolean {
    let released = false;
    while (this.#reads.length > 0) {
      const read = this.#reads[0]!;
      const confirmed = this.#membership.voters.filter((v) => read.acks.has(v)).length >= this.#quorum();
      if (!confirmed) break;
      this.#reads.shift();
      this.#readStates.push({ index: read.index, context: read.context });
      released = true;
    }
    return released && this.#reads.length === 0;
  }

  #failPendingReads(): void {
    for (const read of this.#reads) this.#readsRejected.push(read.context);
    this.#readsRejected.push(...this.#readsBeforeCommit);
    this.#reads = [];
    this.#readsBeforeCommit = [];
  }

  #send(message: Message): void {
    this.#messages.push(message);
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
