import { assert } from '../common/assert.js';
import { SluiceError } from '../common/errors.js';
import type { PartitionInfo } from '../protocol/api.js';
import type { AppendResult, PartitionLog, ReadResult } from '../storage/partition-log.js';
import { enoughInSync, highWatermarkOf } from './isr.js';

export interface PartitionReplicaOptions {
  topic: string;
  partition: number;
  /** This node's id. */
  nodeId: number;
  /** Every replica of the partition, this node first when it leads. */
  replicas: readonly number[];
  leaderEpoch: number;
  /** The node that leads the partition (-1: none); this node when absent. */
  leader?: number;
  /** The in-sync set as the metadata log records it; `[leader]` when absent. */
  isr?: readonly number[];
  /** The partition epoch the metadata log records (fences this leader's in-sync set changes); 0 when absent. */
  partitionEpoch?: number;
  /**
   * The high watermark known before a restart (its checkpoint). Absent: the log end for a partition
   * with one replica (everything in it was acknowledged), 0 for a replicated one (nothing is known
   * committed until the in-sync set says so).
   */
  highWatermark?: number;
  /** Now, on the clock the lag rules use: a new leader gives each follower a full lag window from here. */
  nowMs?: number;
  /**
   * Whether this node may act as a leader now: false once it has been cut off from the controller
   * for longer than its session (it has been, or is about to be, replaced). Always when absent.
   */
  canLead?: () => boolean;
}

/** A partition's leadership as the metadata log records it. */
export interface ReplicaRole {
  leader: number;
  leaderEpoch: number;
  /** Every change of the partition's state is a new partition epoch (what ISR changes are fenced by). */
  partitionEpoch?: number;
  replicas: readonly number[];
  isr: readonly number[];
  /** Replicas out of the in-sync set that may still lead (they hold every committed record). */
  elr?: readonly number[];
}

/**
 * One partition as this node holds it: its log, and the replica state around it (leader, leader
 * epoch, in-sync set, high watermark). The broker asks the replica, never the log, what may be
 * exposed to consumers and which epoch an append carries.
 *
 * A single node leads every partition with itself as the only replica and the only in-sync
 * replica, at leader epoch 0, so the high watermark follows the log end offset. Replication will
 * add followers' log end offsets to the in-sync set that `highWatermarkOf` takes.
 */
export class PartitionReplica {
  readonly topic: string;
  readonly partition: number;
  readonly log: PartitionLog;
  readonly #nodeId: number;
  #replicas: readonly number[];
  #leaderEpoch: number;
  #leader: number;
  #isr: readonly number[];
  #highWatermark: number;
  /** On the leader: what each follower's fetches said, by node id (this leadership only). */
  #followers = new Map<number, FollowerState>();
  /** On the leader: an in-sync set proposed to the controller and not yet committed. */
  #proposedIsr: readonly number[] | undefined;
  /** On the leader: where this leader epoch's records start (the log end when it took over). */
  #epochStartOffset = 0;
  #minInsync = 1;
  #partitionEpoch = 0;
  readonly #canLead: () => boolean;
  readonly #hwListeners = new Set<(logEndOffset: number) => void>();
  #waiters: HighWatermarkWaiter[] = [];

  constructor(options: PartitionReplicaOptions, deps: { log: PartitionLog }) {
    assert(options.replicas.includes(options.nodeId), 'a replica is one of its partition replicas');
    this.topic = options.topic;
    this.partition = options.partition;
    this.#nodeId = options.nodeId;
    this.#replicas = [...options.replicas];
    this.#leaderEpoch = options.leaderEpoch;
    this.#leader = options.leader ?? options.nodeId;
    this.#isr = [...(options.isr ?? [this.#leader])];
    this.#partitionEpoch = options.partitionEpoch ?? 0;
    this.log = deps.log;
    this.#canLead = options.canLead ?? (() => true);
    const known = options.highWatermark ?? (this.#replicas.length > 1 ? 0 : deps.log.logEndOffset);
    this.#highWatermark = Math.min(deps.log.logEndOffset, known);
    this.#epochStartOffset = deps.log.logEndOffset;
    if (this.isLeader) {
      const now = options.nowMs ?? 0;
      for (const id of this.#replicas)
        if (id !== this.#nodeId)
          this.#followers.set(id, {
            logEndOffset: -1,
            lastCaughtUpMs: now,
            lastFetchMs: now,
            lastFetchLeaderEnd: 0,
          });
    }
    // Appends move the high watermark of a leader alone; followers' fetches move it otherwise.
    deps.log.onAppend(() => this.#advance());
    // Retention and compaction never touch what a consumer may not see yet.
    deps.log.setRetentionLimit(() => this.#highWatermark);
  }

  /** The node that leads the partition, -1 when none does. */
  get leaderId(): number {
    return this.#leader;
  }

  /** Whether this node leads the partition: only then does it take appends and serve reads. */
  get isLeader(): boolean {
    return this.#leader === this.#nodeId;
  }

  /**
   * Takes the leadership the metadata log now records. An older leader epoch than the one held is
   * ignored (changes replayed again after a restart arrive in order, never backwards).
   */
  setRole(role: ReplicaRole, nowMs = 0): void {
    if (role.leaderEpoch < this.#leaderEpoch) return;
    const newLeadership = role.leaderEpoch !== this.#leaderEpoch || role.leader !== this.#leader;
    const wasLeader = this.isLeader;
    this.#leader = role.leader;
    this.#leaderEpoch = role.leaderEpoch;
    this.#replicas = [...role.replicas];
    this.#isr = [...role.isr];
    if (role.partitionEpoch !== undefined) this.#partitionEpoch = role.partitionEpoch;
    if (this.#proposedIsr && sameSet(this.#proposedIsr, this.#isr)) this.#proposedIsr = undefined;
    if (newLeadership) {
      this.#proposedIsr = undefined;
      this.#followers.clear();
      if (this.isLeader) {
        // A new leadership: followers' positions are unknown until they fetch, and each gets a
        // full lag window before it may be dropped from the in-sync set.
        this.#epochStartOffset = this.log.logEndOffset;
        for (const id of this.#replicas)
          if (id !== this.#nodeId)
            this.#followers.set(id, {
              logEndOffset: -1,
              lastCaughtUpMs: nowMs,
              lastFetchMs: nowMs,
              lastFetchLeaderEnd: 0,
            });
      } else if (wasLeader) {
        this.#failWaiters(
          new SluiceError(
            'NOT_LEADER_OR_FOLLOWER',
            `leadership of ${this.topic}/${this.partition} moved while waiting`,
            {
              details: { topic: this.topic, partition: this.partition, leader: this.#leader },
            },
          ),
        );
      }
    }
    this.#advance();
    if (this.isLeader) this.#checkWaitersInSync();
  }

  /** `min.insync.replicas` of the topic: the high watermark does not advance with a smaller in-sync set. */
  setMinInsync(minInsyncReplicas: number): void {
    this.#minInsync = minInsyncReplicas;
  }

  /**
   * The leader epoch a client knows, checked as Kafka's KIP-320 does: an older one is
   * FENCED_LEADER_EPOCH (the client's metadata is stale), a newer one UNKNOWN_LEADER_EPOCH (this
   * node has not caught up with the metadata yet). Absent: no check.
   */
  checkLeaderEpoch(epoch: number | undefined): void {
    if (epoch === undefined || epoch === this.#leaderEpoch) return;
    const details = { topic: this.topic, partition: this.partition, leaderEpoch: this.#leaderEpoch };
    if (epoch < this.#leaderEpoch)
      throw new SluiceError(
        'FENCED_LEADER_EPOCH',
        `leader epoch ${epoch} of ${this.topic}/${this.partition} is fenced; the current one is ${this.#leaderEpoch}`,
        { details },
      );
    throw new SluiceError(
      'UNKNOWN_LEADER_EPOCH',
      `leader epoch ${epoch} of ${this.topic}/${this.partition} is newer than ${this.#leaderEpoch}, the latest this node knows`,
      { details },
    );
  }

  /**
   * What a consumer read needs: this node leads, and, when it has just become leader of a
   * replicated partition, its high watermark has reached the start of its epoch. Until then it may
   * know less than the old leader exposed, and answering would move the high watermark readers see
   * backwards: OFFSET_NOT_AVAILABLE (retriable), as Kafka answers.
   */
  requireReadable(): void {
    this.requireLeader();
    if (this.#replicas.length > 1 && this.#highWatermark < this.#epochStartOffset) {
      throw new SluiceError(
        'OFFSET_NOT_AVAILABLE',
        `${this.topic}/${this.partition} has a new leader whose high watermark (${this.#highWatermark}) has not reached its epoch start (${this.#epochStartOffset}) yet`,
        { details: { topic: this.topic, partition: this.partition } },
      );
    }
  }

  /** NOT_LEADER_OR_FOLLOWER unless this node leads the partition; LEADER_NOT_AVAILABLE when none does. */
  requireLeader(): void {
    const details = { topic: this.topic, partition: this.partition, leader: this.#leader };
    if (this.isLeader) {
      if (this.#canLead()) return;
      throw new SluiceError(
        'NOT_LEADER_OR_FOLLOWER',
        `node ${this.#nodeId} has not reached the controller for longer than its session: another node may lead ${this.topic}/${this.partition} now`,
        { details },
      );
    }
    if (this.#leader < 0) {
      throw new SluiceError(
        'LEADER_NOT_AVAILABLE',
        `partition ${this.topic}/${this.partition} has no leader right now`,
        { details },
      );
    }
    throw new SluiceError(
      'NOT_LEADER_OR_FOLLOWER',
      `node ${this.#nodeId} does not lead ${this.topic}/${this.partition}; node ${this.#leader} does`,
      { details },
    );
  }

  get leaderEpoch(): number {
    return this.#leaderEpoch;
  }

  get replicas(): readonly number[] {
    return this.#replicas;
  }

  /** The in-sync set the metadata log records. */
  get inSyncReplicas(): readonly number[] {
    return this.#isr;
  }

  get partitionEpoch(): number {
    return this.#partitionEpoch;
  }

  /** Where this leader epoch's records start: a follower joins the in-sync set only past it. */
  get epochStartOffset(): number {
    return this.#epochStartOffset;
  }

  get logStartOffset(): number {
    return this.log.logStartOffset;
  }

  get logEndOffset(): number {
    return this.log.logEndOffset;
  }

  /** Offsets below it are on every in-sync replica; consumers see nothing at or above it. */
  get highWatermark(): number {
    return this.#highWatermark;
  }

  /**
   * The leader's high watermark rule: the lowest log end offset over the in-sync set, with a
   * proposed set counted while the controller has not committed it (the larger of the two, so that
   * neither a shrink nor an expansion lets it run ahead), never back, and not at all while the set
   * is smaller than `min.insync.replicas`. A follower's is set by its fetches (`followerFetched`).
   */
  #advance(): void {
    if (!this.isLeader) return;
    const members = new Set([...this.#isr, ...(this.#proposedIsr ?? [])]);
    // With fewer replicas than min.insync.replicas the rule could never be met: acks=all is
    // refused there, and the high watermark follows the in-sync set as before.
    if (this.#isr.length < this.#minInsync && this.#replicas.length >= this.#minInsync) return;
    const ends: number[] = [];
    for (const id of members) {
      if (id === this.#nodeId) ends.push(this.log.logEndOffset);
      else ends.push(Math.max(0, this.#followers.get(id)?.logEndOffset ?? 0));
    }
    const next = highWatermarkOf(this.#highWatermark, ends);
    assert(next <= this.log.logEndOffset, 'the high watermark never passes the log end');
    if (next === this.#highWatermark) return;
    this.#highWatermark = next;
    this.#highWatermarkMoved();
  }

  #highWatermarkMoved(): void {
    const end = this.log.logEndOffset;
    for (const listener of this.#hwListeners) listener(end);
    if (this.#waiters.length === 0) return;
    const still: HighWatermarkWaiter[] = [];
    for (const w of this.#waiters) {
      if (this.#highWatermark >= w.offset) {
        w.cancel();
        w.resolve();
      } else still.push(w);
    }
    this.#waiters = still;
  }

  /**
   * On the leader: a follower fetched from `fetchOffset`, so its log ends there. Kafka's caught-up
   * rule: it is caught up now if that reaches the leader's log end, and was at the previous fetch if
   * it reaches the log end the leader had then.
   */
  followerFetched(followerId: number, fetchOffset: number, nowMs: number, brokerEpoch?: number): void {
    let state = this.#followers.get(followerId);
    if (!state || (state.brokerEpoch !== undefined && state.brokerEpoch !== brokerEpoch)) {
      // First fetch, or the first of a new incarnation (a restart may have lost what the last one
      // had): nothing it said before counts.
      state = { logEndOffset: -1, lastCaughtUpMs: nowMs, lastFetchMs: nowMs, lastFetchLeaderEnd: 0 };
      this.#followers.set(followerId, state);
    }
    if (brokerEpoch !== undefined) state.brokerEpoch = brokerEpoch;
    const leaderEnd = this.log.logEndOffset;
    if (fetchOffset >= leaderEnd) state.lastCaughtUpMs = nowMs;
    else if (fetchOffset >= state.lastFetchLeaderEnd)
      state.lastCaughtUpMs = Math.max(state.lastCaughtUpMs, state.lastFetchMs);
    state.logEndOffset = Math.min(fetchOffset, leaderEnd);
    state.lastFetchMs = nowMs;
    state.lastFetchLeaderEnd = leaderEnd;
    this.#advance();
  }

  /** On a follower: the leader's high watermark as its last answer gave it, capped at this log's end. */
  setFollowerHighWatermark(leaderHighWatermark: number): void {
    if (this.isLeader) return;
    const next = Math.max(this.#highWatermark, Math.min(leaderHighWatermark, this.log.logEndOffset));
    if (next === this.#highWatermark) return;
    this.#highWatermark = next;
    this.#highWatermarkMoved();
  }

  /** After a follower truncated its log: its high watermark cannot stay above the log end. */
  truncatedTo(logEndOffset: number): void {
    if (this.#highWatermark > logEndOffset) this.#highWatermark = logEndOffset;
  }

  /**
   * On the leader: the in-sync set it should have now, when that differs from the committed one and
   * nothing is proposed yet: followers not caught up within `lagMaxMs` leave, and followers at or
   * past both the high watermark and this epoch's start (having fetched in this epoch) join, if
   * `live` says the broker is live with the broker epoch its fetches carried: a position that the
   * broker's previous incarnation reported (before a restart that may have lost records) never
   * brings the new one in.
   */
  isrChange(
    nowMs: number,
    lagMaxMs: number,
    live: (id: number, brokerEpoch: number | undefined) => boolean,
  ): number[] | undefined {
    if (!this.isLeader || this.#proposedIsr) return undefined;
    const next = new Set(this.#isr);
    for (const id of this.#isr) {
      if (id === this.#nodeId) continue;
      const state = this.#followers.get(id);
      if (!state || nowMs - state.lastCaughtUpMs > lagMaxMs) next.delete(id);
    }
    for (const id of this.#replicas) {
      // Only replicas outside the committed set join (one just dropped above stays out).
      if (id === this.#nodeId || this.#isr.includes(id)) continue;
      const state = this.#followers.get(id);
      if (!state || !live(id, state.brokerEpoch)) continue;
      if (state.logEndOffset >= this.#highWatermark && state.logEndOffset >= this.#epochStartOffset)
        next.add(id);
    }
    next.add(this.#nodeId);
    const proposed = this.#replicas.filter((id) => next.has(id));
    return sameSet(proposed, this.#isr) ? undefined : proposed;
  }

  /** On the leader: the in-sync set sent to the controller; counted for the high watermark until decided. */
  proposeIsr(isr: readonly number[] | undefined): void {
    this.#proposedIsr = isr ? [...isr] : undefined;
    this.#advance();
  }

  get proposedIsr(): readonly number[] | undefined {
    return this.#proposedIsr;
  }

  /** Each follower's log end offset as its fetches said (-1: not fetched in this leadership). */
  followerEnds(): { id: number; logEndOffset: number; lastCaughtUpMs: number }[] {
    return [...this.#followers].map(([id, f]) => ({
      id,
      logEndOffset: f.logEndOffset,
      lastCaughtUpMs: f.lastCaughtUpMs,
    }));
  }

  /**
   * An `acks=all` append: resolves once the high watermark reaches `offset` (the end of the
   * append). Rejects NOT_ENOUGH_REPLICAS_AFTER_APPEND when the in-sync set falls below
   * `min.insync.replicas` meanwhile, NOT_LEADER_OR_FOLLOWER when the leadership moves, and
   * REQUEST_TIMED_OUT after `timeoutMs`; in all three the records may still commit later.
   */
  waitForHighWatermark(
    offset: number,
    options: { timeoutMs: number; setTimeout: (fn: () => void, ms: number) => { cancel(): void } },
  ): Promise<void> {
    if (this.#highWatermark >= offset) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter: HighWatermarkWaiter = { offset, resolve, reject, cancel: () => timer.cancel() };
      const timer = options.setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(
          new SluiceError(
            'REQUEST_TIMED_OUT',
            `the append to ${this.topic}/${this.partition} was not replicated to the in-sync set within ${options.timeoutMs} ms; it may still be`,
            { details: { topic: this.topic, partition: this.partition } },
          ),
        );
      }, options.timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  #checkWaitersInSync(): void {
    if (this.#waiters.length === 0 || this.#isr.length >= this.#minInsync) return;
    this.#failWaiters(
      new SluiceError(
        'NOT_ENOUGH_REPLICAS_AFTER_APPEND',
        `the in-sync set of ${this.topic}/${this.partition} fell to ${this.#isr.length}, below min.insync.replicas ${this.#minInsync}, after the append; it may still be replicated`,
        { details: { topic: this.topic, partition: this.partition, isr: this.#isr.length } },
      ),
    );
  }

  #failWaiters(error: SluiceError): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      w.cancel();
      w.reject(error);
    }
  }

  /**
   * Refuses an `acks=all` produce before anything is appended when the in-sync set is smaller
   * than `min.insync.replicas`.
   */
  checkEnoughReplicas(minInsyncReplicas: number): void {
    const inSync = this.inSyncReplicas.length;
    if (enoughInSync(inSync, minInsyncReplicas)) return;
    throw new SluiceError(
      'NOT_ENOUGH_REPLICAS',
      `${inSync} in-sync replica, min.insync.replicas is ${minInsyncReplicas}; nothing was appended`,
      { details: { isr: inSync, minInSyncReplicas: minInsyncReplicas } },
    );
  }

  /** Appends as the leader: offsets assigned here, every batch stamped with the leader epoch. */
  appendAsLeader(data: Buffer, options: { crcChecked?: boolean } = {}): Promise<AppendResult> {
    this.requireLeader();
    return this.log.append(data, {
      assignOffsets: true,
      leaderEpoch: this.#leaderEpoch,
      ...(options.crcChecked ? { crcChecked: true } : {}),
    });
  }

  /**
   * Whole batches from `offset`, none at or above the high watermark, each CRC-checked (CRC-32C
   * runs at gigabytes per second): a damaged batch ends the read before it, and a read that starts
   * at one is refused with CORRUPT_MESSAGE naming the next readable offset. No path, zero-copy
   * msgpack included, serves a damaged stored batch.
   */
  read(
    offset: number,
    options: {
      maxBytes: number;
      reserve?: { before: number; after: number };
      allocate?: (bytes: number) => Buffer;
    },
  ): Promise<ReadResult> {
    this.requireReadable();
    return this.log.read(offset, { ...options, maxOffset: this.highWatermark, verify: true });
  }

  /**
   * Calls `listener` each time the high watermark may have advanced (with the log end offset);
   * returns the unsubscribe function.
   */
  onHighWatermarkAdvance(listener: (logEndOffset: number) => void): () => void {
    this.#hwListeners.add(listener);
    return () => this.#hwListeners.delete(listener);
  }

  describe(): PartitionInfo {
    return {
      partition: this.partition,
      leader: this.leaderId,
      leaderEpoch: this.leaderEpoch,
      replicas: [...this.replicas],
      isr: [...this.inSyncReplicas],
      logStartOffset: this.logStartOffset,
      logEndOffset: this.logEndOffset,
      highWatermark: this.highWatermark,
      ...(this.isLeader && this.#replicas.length > 1 ? { replicaStates: this.#replicaStates() } : {}),
    };
  }

  #replicaStates(): { id: number; logEndOffset: number; lag: number }[] {
    const end = this.log.logEndOffset;
    return [...this.#followers]
      .sort((a, b) => a[0] - b[0])
      .map(([id, f]) => ({
        id,
        logEndOffset: f.logEndOffset,
        lag: f.logEndOffset < 0 ? end : Math.max(0, end - f.logEndOffset),
      }));
  }
}

interface FollowerState {
  /** Where the follower's log ends, as its last fetch said; -1 before its first in this leadership. */
  logEndOffset: number;
  lastCaughtUpMs: number;
  lastFetchMs: number;
  /** The leader's log end at that fetch. */
  lastFetchLeaderEnd: number;
  /**
   * The broker epoch the follower's fetches carried (undefined before its first): a position
   * counts only for the incarnation that reported it.
   */
  brokerEpoch?: number;
}

interface HighWatermarkWaiter {
  offset: number;
  resolve: () => void;
  reject: (error: unknown) => void;
  cancel: () => void;
}

function sameSet(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}
