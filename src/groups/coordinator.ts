import { assert } from '../common/assert.js';
import type { Clock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import {
  type AssignorName,
  assign,
  compareStrings,
  compareTopicPartitions,
  type TopicPartition,
} from './assignors.js';

/**
 * The group coordinator's state machine, after Kafka's KIP-848: members join, heartbeat and leave;
 * the coordinator computes each group's target assignment itself and moves members towards it.
 *
 * Epochs: the group epoch counts changes of membership, subscriptions and the subscribed topics'
 * partition counts; the target assignment is computed for a group epoch (its assignment epoch). A
 * member epoch is the assignment epoch the member has reached: it moves up once the member holds
 * nothing outside its target (its revocations acknowledged).
 *
 * The safety rule: a partition is held (assigned or being revoked) by at most one member. A
 * partition a member must give up is first taken out of its assignment and marked revoking; it is
 * released only when the member acknowledges (a heartbeat whose `owned` leaves it out, or without
 * `owned`, the heartbeat after the one that told it), or when the member leaves or its session
 * expires. Only then may its new owner get it. A commit must come from the member that holds the
 * partition, at its current member epoch.
 *
 * Every change the coordinator makes that must survive it (membership and assignment, committed
 * offsets) is queued as a `GroupRecord`, drained by `drainWrites` and written to the offsets topic
 * (offsets-store.ts) before the request is answered. Session deadlines and read positions are soft
 * state: a new coordinator starts every session afresh and reads again from the committed offsets.
 */

export type OffsetReset = 'earliest' | 'latest';

export interface CommittedOffset {
  offset: number;
  metadata: string;
  commitTimestampMs: number;
}

/** A member as persisted (and as replayed by a new coordinator). */
export interface MemberSnapshot {
  memberId: string;
  instanceId: string | null;
  topics: string[];
  pattern: string | null;
  sessionTimeoutMs: number;
  autoOffsetReset: OffsetReset;
  memberEpoch: number;
  assigned: TopicPartition[];
  revoking: TopicPartition[];
}

export interface GroupSnapshot {
  groupEpoch: number;
  assignor: AssignorName;
  members: MemberSnapshot[];
  /** When the group last became empty (ms since the epoch); null while it has members. */
  emptySinceMs: number | null;
}

/** What the coordinator writes to the offsets topic; a null value deletes (a tombstone). */
export type GroupRecord =
  | { kind: 'group'; group: string; value: GroupSnapshot | null }
  | { kind: 'offset'; group: string; topic: string; partition: number; value: CommittedOffset | null };

/** The topics of the cluster, as the coordinator needs them. */
export interface TopicView {
  /** The partition count of a topic; undefined when it does not exist. */
  partitionCount(topic: string): number | undefined;
  /** Every topic name (for pattern subscriptions); internal topics are left out. */
  topicNames(): readonly string[];
}

export interface CoordinatorOptions {
  heartbeatIntervalMs?: number;
  sessionTimeoutMsDefault?: number;
  sessionTimeoutMsMin?: number;
  sessionTimeoutMsMax?: number;
  /** How long a group stays after its last member left before its offsets expire. */
  offsetsRetentionMs?: number;
  /** The most members one group may have (LIMIT_EXCEEDED past it). */
  membersPerGroupMax?: number;
  /** The most groups one coordinator holds. */
  groupsMax?: number;
  assignorDefault?: AssignorName;
  /**
   * For the simulation's own tests only, rules broken on purpose so that its checks must fail:
   * `assignBeforeRevoked` hands a partition to its new owner while the old one still holds it;
   * `staleCommits` accepts a commit naming any member id, whatever its epoch, whether it holds
   * the partition and whether its session expired.
   */
  unsafe?: 'assignBeforeRevoked' | 'staleCommits';
}

export interface CoordinatorDeps {
  clock: Clock;
  topics: TopicView;
  /** A new member id, unique within the cluster (a UUID in production, a counter in tests). */
  newMemberId: () => string;
}

export interface JoinRequest {
  topics?: readonly string[];
  pattern?: string;
  sessionTimeoutMs?: number;
  instanceId?: string;
  assignor?: AssignorName;
  autoOffsetReset?: OffsetReset;
}

export interface HeartbeatRequest {
  memberEpoch?: number;
  /** The partitions the member still holds; absent: what the coordinator last told it. */
  owned?: readonly TopicPartition[];
  /** Read positions to move to (a seek): the next poll of those partitions starts there. */
  seek?: readonly { topic: string; partition: number; offset: number }[];
  /** Partitions the member's polls skip until it resumes them (replaces the paused set when given). */
  paused?: readonly TopicPartition[];
}

/** What a member is told: its id and epoch and the partitions it holds now. */
export interface MemberView {
  group: string;
  memberId: string;
  memberEpoch: number;
  groupEpoch: number;
  heartbeatIntervalMs: number;
  sessionTimeoutMs: number;
  assignment: TopicPartition[];
  /** Partitions its target gives it that another member has not released yet. */
  pending: TopicPartition[];
}

export interface CommitRequest {
  memberId?: string;
  memberEpoch?: number;
  offsets: readonly { topic: string; partition: number; offset: number; metadata?: string }[];
}

/** The partitions a member's poll reads, each from its position (undefined: committed or reset). */
export interface PollPlan {
  view: MemberView;
  partitions: {
    topic: string;
    partition: number;
    position: number | undefined;
    committed: number | undefined;
  }[];
  autoOffsetReset: OffsetReset;
}

export type GroupState = 'empty' | 'reconciling' | 'stable';

export interface GroupDescription {
  group: string;
  state: GroupState;
  groupEpoch: number;
  assignmentEpoch: number;
  assignor: AssignorName;
  members: {
    memberId: string;
    instanceId: string | null;
    memberEpoch: number;
    topics: string[];
    pattern: string | null;
    sessionTimeoutMs: number;
    assignment: TopicPartition[];
    revoking: TopicPartition[];
    target: TopicPartition[];
  }[];
  offsets: {
    topic: string;
    partition: number;
    offset: number;
    metadata: string;
    commitTimestampMs: number;
  }[];
}

interface Member {
  memberId: string;
  instanceId: string | null;
  topics: string[];
  pattern: RegExp | null;
  sessionTimeoutMs: number;
  autoOffsetReset: OffsetReset;
  memberEpoch: number;
  previousEpoch: number;
  assigned: Set<string>;
  revoking: Set<string>;
  /** The member was sent a view while it had revocations pending: its next heartbeat acknowledges them. */
  revocationSent: boolean;
  /** Its polls auto-commit: a revoked partition's position is committed when it acknowledges. */
  autoCommit: boolean;
  deadlineMs: number;
  positions: Map<string, number>;
  paused: Set<string>;
}

interface Group {
  id: string;
  groupEpoch: number;
  assignmentEpoch: number;
  assignor: AssignorName;
  members: Map<string, Member>;
  /** Partition key → the member holding it (assigned or revoking). */
  owners: Map<string, string>;
  target: Map<string, Set<string>>;
  /** The subscribed topics' partition counts the target was computed from. */
  topicsSignature: string;
  offsets: Map<string, CommittedOffset>;
  emptySinceMs: number | null;
}

export const key = (topic: string, partition: number): string => `${topic}\u0000${partition}`;
export function parseKey(k: string): TopicPartition {
  const at = k.lastIndexOf('\u0000');
  return { topic: k.slice(0, at), partition: Number(k.slice(at + 1)) };
}
const sortedPartitions = (keys: Iterable<string>): TopicPartition[] =>
  [...keys].map(parseKey).sort(compareTopicPartitions);

/** Patterns are anchored, as Kafka's: `orders-.*` matches `orders-eu`, not `old-orders-eu`. */
export function compilePattern(pattern: string): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`, 'u');
  } catch (error) {
    throw new SluiceError(
      'INVALID_REQUEST',
      `pattern ${JSON.stringify(pattern)} is not a valid regular expression`,
      {
        cause: error,
        details: { field: 'pattern' },
      },
    );
  }
}

/** The checks of a join that need no group: INVALID_REQUEST when it subscribes to nothing or a bad pattern. */
export function checkJoin(request: JoinRequest): void {
  if (((request.topics ?? []).length === 0) === (request.pattern === undefined))
    throw new SluiceError(
      'INVALID_REQUEST',
      'a member subscribes to topics or to a pattern: give exactly one',
      {
        details: { field: 'topics' },
      },
    );
  if (request.pattern !== undefined) compilePattern(request.pattern);
}

export class GroupCoordinator {
  readonly #groups = new Map<string, Group>();
  readonly #writes: GroupRecord[] = [];
  readonly #dirty = new Set<string>();
  readonly #clock: Clock;
  readonly #topics: TopicView;
  readonly #newMemberId: () => string;
  readonly heartbeatIntervalMs: number;
  readonly #sessionDefault: number;
  readonly #sessionMin: number;
  readonly #sessionMax: number;
  readonly #retentionMs: number;
  readonly #membersMax: number;
  readonly #groupsMax: number;
  readonly #assignorDefault: AssignorName;
  readonly #unsafe: CoordinatorOptions['unsafe'];
  /** Counted for the metrics: target assignments computed, commits accepted. */
  rebalances = 0;
  commits = 0;

  constructor(options: CoordinatorOptions, deps: CoordinatorDeps) {
    this.#clock = deps.clock;
    this.#topics = deps.topics;
    this.#newMemberId = deps.newMemberId;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 3_000;
    this.#sessionDefault = options.sessionTimeoutMsDefault ?? 45_000;
    this.#sessionMin = options.sessionTimeoutMsMin ?? 1_000;
    this.#sessionMax = options.sessionTimeoutMsMax ?? 300_000;
    this.#retentionMs = options.offsetsRetentionMs ?? 7 * 24 * 3_600_000;
    this.#membersMax = options.membersPerGroupMax ?? 1_000;
    this.#groupsMax = options.groupsMax ?? 100_000;
    this.#assignorDefault = options.assignorDefault ?? 'range';
    this.#unsafe = options.unsafe;
  }

  // ---- membership ----

  join(groupId: string, request: JoinRequest): MemberView {
    const topics = [...new Set(request.topics ?? [])].sort(compareStrings);
    if ((topics.length === 0) === (request.pattern === undefined))
      throw new SluiceError(
        'INVALID_REQUEST',
        'a member subscribes to topics or to a pattern: give exactly one',
        {
          details: { field: 'topics' },
        },
      );
    const pattern = request.pattern === undefined ? null : compilePattern(request.pattern);
    const sessionTimeoutMs = request.sessionTimeoutMs ?? this.#sessionDefault;
    if (sessionTimeoutMs < this.#sessionMin || sessionTimeoutMs > this.#sessionMax)
      throw new SluiceError(
        'INVALID_REQUEST',
        `sessionTimeoutMs must be between ${this.#sessionMin} and ${this.#sessionMax}`,
        { details: { field: 'sessionTimeoutMs' } },
      );
    const group = this.#groupForJoin(groupId, request.assignor);
    const now = this.#clock.nowMs();
    const previous =
      request.instanceId === undefined
        ? undefined
        : [...group.members.values()].find((m) => m.instanceId === request.instanceId);
    if (previous === undefined && group.members.size >= this.#membersMax)
      throw new SluiceError(
        'LIMIT_EXCEEDED',
        `group ${groupId} has ${this.#membersMax} members, the most it may have`,
      );
    const member: Member = {
      memberId: this.#newMemberId(),
      instanceId: request.instanceId ?? null,
      topics,
      pattern,
      sessionTimeoutMs,
      autoOffsetReset: request.autoOffsetReset ?? 'earliest',
      memberEpoch: 0,
      previousEpoch: 0,
      assigned: new Set(),
      revoking: new Set(),
      revocationSent: false,
      autoCommit: false,
      deadlineMs: now + sessionTimeoutMs,
      positions: new Map(),
      paused: new Set(),
    };
    assert(!group.members.has(member.memberId), 'member ids are unique');
    if (previous) {
      // A static member back with a new member id takes over its slot: its partitions, epoch and
      // positions, with no rebalance unless its subscription changed.
      this.#replaceMember(group, previous, member);
      if (previous.topics.join(',') !== topics.join(',') || String(previous.pattern) !== String(pattern))
        this.#bump(group);
    } else {
      group.members.set(member.memberId, member);
      this.#bump(group);
    }
    group.emptySinceMs = null;
    this.#dirty.add(group.id);
    return this.#reconcileAndView(group, member);
  }

  heartbeat(groupId: string, memberId: string, request: HeartbeatRequest = {}): MemberView {
    const { group, member } = this.#member(groupId, memberId, request.memberEpoch);
    // Refused before anything changes: a seek of a partition the member does not hold.
    for (const s of request.seek ?? [])
      if (!member.assigned.has(key(s.topic, s.partition)))
        throw new SluiceError(
          'STALE_MEMBER_EPOCH',
          `${s.topic}/${s.partition} is not assigned to member ${memberId}`,
          { details: { topic: s.topic, partition: s.partition } },
        );
    this.#touch(member);
    this.#acknowledge(group, member, request.owned);
    if (request.paused) member.paused = new Set(request.paused.map((tp) => key(tp.topic, tp.partition)));
    for (const s of request.seek ?? []) member.positions.set(key(s.topic, s.partition), s.offset);
    return this.#reconcileAndView(group, member);
  }

  leave(groupId: string, memberId: string): void {
    const { group, member } = this.#member(groupId, memberId, undefined);
    this.#removeMember(group, member);
  }

  /** Expires sessions, empty groups past retention and offsets of deleted topics. */
  tick(): void {
    const now = this.#clock.nowMs();
    for (const group of [...this.#groups.values()]) {
      for (const member of [...group.members.values()])
        if (member.deadlineMs < now) this.#removeMember(group, member);
      for (const [k, _] of group.offsets) {
        const { topic, partition } = parseKey(k);
        const count = this.#topics.partitionCount(topic);
        if (count === undefined || partition >= count) this.#dropOffset(group, topic, partition);
      }
      if (group.members.size > 0 && this.#signature(group) !== group.topicsSignature) this.#bump(group);
      if (
        group.members.size === 0 &&
        group.emptySinceMs !== null &&
        now - group.emptySinceMs >= this.#retentionMs
      )
        this.#deleteGroup(group);
    }
  }

  // ---- reads and positions ----

  /** UNKNOWN_MEMBER_ID or FENCED_MEMBER_EPOCH, as a heartbeat would answer, and nothing else. */
  checkMember(groupId: string, memberId: string, memberEpoch: number | undefined): void {
    this.#member(groupId, memberId, memberEpoch);
  }

  /** A poll is a heartbeat too: it refreshes the session and moves the member towards its target. */
  pollPlan(groupId: string, memberId: string, memberEpoch: number | undefined): PollPlan {
    const view = this.heartbeat(groupId, memberId, memberEpoch === undefined ? {} : { memberEpoch });
    const { group, member } = this.#member(groupId, memberId, undefined);
    const partitions: PollPlan['partitions'] = [];
    for (const tp of view.assignment) {
      const k = key(tp.topic, tp.partition);
      if (member.paused.has(k)) continue;
      partitions.push({
        ...tp,
        position: member.positions.get(k),
        committed: group.offsets.get(k)?.offset,
      });
    }
    return { view, partitions, autoOffsetReset: member.autoOffsetReset };
  }

  /**
   * After a poll: the next offsets of what it returned, for the partitions the member still
   * holds. Returns those partitions: a partition taken from the member while the poll waited is
   * left out of its answer (its next owner reads from the committed offset).
   */
  advance(
    groupId: string,
    memberId: string,
    positions: readonly { topic: string; partition: number; offset: number }[],
  ): Set<string> {
    const held = new Set<string>();
    const member = this.#groups.get(groupId)?.members.get(memberId);
    if (!member) return held;
    for (const p of positions) {
      const k = key(p.topic, p.partition);
      if (!member.assigned.has(k)) continue;
      member.positions.set(k, p.offset);
      held.add(k);
    }
    return held;
  }

  /** Auto-commit: commits the member's positions (what its previous poll returned) where they moved. */
  commitPositions(groupId: string, memberId: string): number {
    const { group, member } = this.#member(groupId, memberId, undefined);
    member.autoCommit = true;
    const offsets: CommitRequest['offsets'][number][] = [];
    for (const [k, offset] of member.positions) {
      if (!member.assigned.has(k) || group.offsets.get(k)?.offset === offset) continue;
      offsets.push({ ...parseKey(k), offset });
    }
    if (offsets.length > 0) this.commit(groupId, { memberId, memberEpoch: member.memberEpoch, offsets });
    return offsets.length;
  }

  // ---- offsets ----

  commit(groupId: string, request: CommitRequest): void {
    for (const o of request.offsets) {
      const count = this.#topics.partitionCount(o.topic);
      if (count === undefined || o.partition >= count)
        throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `${o.topic}/${o.partition} does not exist`, {
          details: { topic: o.topic, partition: o.partition },
        });
    }
    let group = this.#groups.get(groupId);
    if (request.memberId === undefined) {
      // A commit outside membership (an admin tool, a consumer that assigns itself): empty groups only.
      if (group && group.members.size > 0)
        throw new SluiceError('NON_EMPTY_GROUP', `group ${groupId} has members: commit as one of them`);
      group ??= this.#groupForJoin(groupId, undefined);
      if (group.emptySinceMs === null) group.emptySinceMs = this.#clock.nowMs();
      this.#dirty.add(group.id);
    } else if (this.#unsafe === 'staleCommits' && group) {
      // For the simulation's own tests: a member's commit taken whatever its epoch, whether it
      // holds the partition, and whether its session expired.
    } else {
      const { member } = this.#member(groupId, request.memberId, undefined);
      group = this.#groups.get(groupId)!;
      const epoch = request.memberEpoch;
      if (epoch === undefined)
        throw new SluiceError('INVALID_REQUEST', 'a member commit names its memberEpoch', {
          details: { field: 'memberEpoch' },
        });
      if (epoch > member.memberEpoch)
        throw new SluiceError(
          'FENCED_MEMBER_EPOCH',
          `member epoch ${epoch} is newer than ${member.memberEpoch}`,
          {
            details: { memberEpoch: member.memberEpoch },
          },
        );
      if (epoch < member.memberEpoch)
        throw new SluiceError(
          'STALE_MEMBER_EPOCH',
          `member epoch ${epoch} is older than ${member.memberEpoch}`,
          {
            details: { memberEpoch: member.memberEpoch },
          },
        );
      for (const o of request.offsets) {
        const k = key(o.topic, o.partition);
        if (!member.assigned.has(k) && !member.revoking.has(k))
          throw new SluiceError(
            'STALE_MEMBER_EPOCH',
            `${o.topic}/${o.partition} is not assigned to member ${member.memberId}`,
            {
              details: { topic: o.topic, partition: o.partition, memberEpoch: member.memberEpoch },
            },
          );
      }
    }
    const now = this.#clock.nowMs();
    for (const o of request.offsets)
      this.#setOffset(group, o.topic, o.partition, {
        offset: o.offset,
        metadata: o.metadata ?? '',
        commitTimestampMs: now,
      });
    this.commits++;
  }

  /** Sets committed offsets of an empty group (the reset tool); GROUP_ID_NOT_FOUND or NON_EMPTY_GROUP. */
  resetOffsets(
    groupId: string,
    offsets: readonly { topic: string; partition: number; offset: number }[],
  ): void {
    const group = this.#groups.get(groupId);
    if (!group) throw new SluiceError('GROUP_ID_NOT_FOUND', `group ${groupId} does not exist`);
    if (group.members.size > 0)
      throw new SluiceError(
        'NON_EMPTY_GROUP',
        `group ${groupId} has ${group.members.size} members: stop them first`,
      );
    this.commit(groupId, { offsets });
  }

  deleteGroup(groupId: string): void {
    const group = this.#groups.get(groupId);
    if (!group) throw new SluiceError('GROUP_ID_NOT_FOUND', `group ${groupId} does not exist`);
    if (group.members.size > 0)
      throw new SluiceError(
        'NON_EMPTY_GROUP',
        `group ${groupId} has ${group.members.size} members: stop them first`,
      );
    this.#deleteGroup(group);
  }

  // ---- views ----

  has(groupId: string): boolean {
    return this.#groups.has(groupId);
  }

  list(): { group: string; state: GroupState; members: number }[] {
    return [...this.#groups.values()]
      .map((g) => ({ group: g.id, state: this.#state(g), members: g.members.size }))
      .sort((a, b) => compareStrings(a.group, b.group));
  }

  describe(groupId: string): GroupDescription {
    const group = this.#groups.get(groupId);
    if (!group) throw new SluiceError('GROUP_ID_NOT_FOUND', `group ${groupId} does not exist`);
    return {
      group: group.id,
      state: this.#state(group),
      groupEpoch: group.groupEpoch,
      assignmentEpoch: group.assignmentEpoch,
      assignor: group.assignor,
      members: [...group.members.values()]
        .sort((a, b) => compareStrings(a.memberId, b.memberId))
        .map((m) => ({
          memberId: m.memberId,
          instanceId: m.instanceId,
          memberEpoch: m.memberEpoch,
          topics: m.topics,
          pattern: m.pattern === null ? null : patternSource(m.pattern),
          sessionTimeoutMs: m.sessionTimeoutMs,
          assignment: sortedPartitions(m.assigned),
          revoking: sortedPartitions(m.revoking),
          target: sortedPartitions(group.target.get(m.memberId) ?? []),
        })),
      offsets: [...group.offsets].map(([k, v]) => ({ ...parseKey(k), ...v })).sort(compareTopicPartitions),
    };
  }

  /** Which member holds each partition (assigned or revoking), for invariant checks. */
  owners(groupId: string): ReadonlyMap<string, string> {
    return this.#groups.get(groupId)?.owners ?? new Map();
  }

  memberCount(): number {
    let n = 0;
    for (const g of this.#groups.values()) n += g.members.size;
    return n;
  }

  // ---- persistence ----

  /** The records to write since the last drain: offsets as committed, then each changed group's snapshot. */
  drainWrites(): GroupRecord[] {
    const out = this.#writes.splice(0);
    for (const id of this.#dirty) {
      const group = this.#groups.get(id);
      out.push({ kind: 'group', group: id, value: group ? this.#snapshot(group) : null });
    }
    this.#dirty.clear();
    return out;
  }

  /** Replays one record of the offsets topic (a new coordinator loading its partition). */
  apply(record: GroupRecord): void {
    if (record.kind === 'offset') {
      const k = key(record.topic, record.partition);
      if (record.value === null) this.#groups.get(record.group)?.offsets.delete(k);
      else this.#loadedGroup(record.group).offsets.set(k, record.value);
      return;
    }
    if (record.value === null) {
      this.#groups.delete(record.group);
      return;
    }
    const group = this.#loadedGroup(record.group);
    const snapshot = record.value;
    group.groupEpoch = snapshot.groupEpoch;
    group.assignmentEpoch = -1;
    group.assignor = snapshot.assignor;
    group.emptySinceMs = snapshot.emptySinceMs;
    group.members.clear();
    group.owners.clear();
    const now = this.#clock.nowMs();
    for (const m of snapshot.members) {
      const member: Member = {
        memberId: m.memberId,
        instanceId: m.instanceId,
        topics: m.topics,
        pattern: m.pattern === null ? null : compilePattern(m.pattern),
        sessionTimeoutMs: m.sessionTimeoutMs,
        autoOffsetReset: m.autoOffsetReset,
        memberEpoch: m.memberEpoch,
        previousEpoch: m.memberEpoch,
        assigned: new Set(m.assigned.map((tp) => key(tp.topic, tp.partition))),
        revoking: new Set(m.revoking.map((tp) => key(tp.topic, tp.partition))),
        // The member may have been told of its revocations before the old coordinator stopped.
        revocationSent: m.revoking.length > 0,
        autoCommit: false,
        deadlineMs: now + m.sessionTimeoutMs,
        positions: new Map(),
        paused: new Set(),
      };
      group.members.set(member.memberId, member);
      for (const k of [...member.assigned, ...member.revoking]) group.owners.set(k, member.memberId);
    }
  }

  // ---- internals ----

  #groupForJoin(groupId: string, assignor: AssignorName | undefined): Group {
    let group = this.#groups.get(groupId);
    if (!group) {
      if (this.#groups.size >= this.#groupsMax)
        throw new SluiceError(
          'LIMIT_EXCEEDED',
          `this coordinator holds ${this.#groupsMax} groups, the most it may`,
        );
      group = this.#newGroup(groupId, assignor ?? this.#assignorDefault);
      this.#groups.set(groupId, group);
    } else if (assignor !== undefined && assignor !== group.assignor) {
      if (group.members.size > 0)
        throw new SluiceError('INVALID_REQUEST', `group ${groupId} uses the ${group.assignor} assignor`, {
          details: { field: 'assignor' },
        });
      group.assignor = assignor;
    }
    return group;
  }

  #loadedGroup(groupId: string): Group {
    let group = this.#groups.get(groupId);
    if (!group) {
      group = this.#newGroup(groupId, this.#assignorDefault);
      this.#groups.set(groupId, group);
    }
    return group;
  }

  #newGroup(id: string, assignor: AssignorName): Group {
    return {
      id,
      groupEpoch: 0,
      assignmentEpoch: 0,
      assignor,
      members: new Map(),
      owners: new Map(),
      target: new Map(),
      topicsSignature: '',
      offsets: new Map(),
      emptySinceMs: null,
    };
  }

  #member(
    groupId: string,
    memberId: string,
    memberEpoch: number | undefined,
  ): { group: Group; member: Member } {
    const group = this.#groups.get(groupId);
    const member = group?.members.get(memberId);
    if (!group || !member)
      throw new SluiceError('UNKNOWN_MEMBER_ID', `group ${groupId} has no member ${memberId}`, {
        details: { memberId },
      });
    if (
      memberEpoch !== undefined &&
      memberEpoch !== member.memberEpoch &&
      memberEpoch !== member.previousEpoch
    )
      throw new SluiceError(
        'FENCED_MEMBER_EPOCH',
        `member epoch ${memberEpoch} is not ${member.memberEpoch}, the member's current epoch`,
        { details: { memberEpoch: member.memberEpoch } },
      );
    return { group, member };
  }

  #touch(member: Member): void {
    member.deadlineMs = this.#clock.nowMs() + member.sessionTimeoutMs;
  }

  /** Releases the revoking partitions the member no longer holds. */
  #acknowledge(group: Group, member: Member, owned: readonly TopicPartition[] | undefined): void {
    if (member.revoking.size === 0) return;
    const still = owned === undefined ? undefined : new Set(owned.map((tp) => key(tp.topic, tp.partition)));
    if (still === undefined && !member.revocationSent) return;
    const now = this.#clock.nowMs();
    for (const k of [...member.revoking]) {
      if (still?.has(k)) continue;
      // Auto-commit: the member is done with what its polls returned, this partition's included.
      // A member that names what it owns (the SDK) commits what it processed itself.
      const position = member.positions.get(k);
      if (
        member.autoCommit &&
        still === undefined &&
        position !== undefined &&
        group.offsets.get(k)?.offset !== position
      ) {
        const { topic, partition } = parseKey(k);
        this.#setOffset(group, topic, partition, { offset: position, metadata: '', commitTimestampMs: now });
        this.commits++;
      }
      member.positions.delete(k);
      member.revoking.delete(k);
      group.owners.delete(k);
    }
    if (member.revoking.size === 0) this.#dirty.add(group.id);
  }

  #removeMember(group: Group, member: Member): void {
    for (const k of [...member.assigned, ...member.revoking]) group.owners.delete(k);
    group.members.delete(member.memberId);
    group.target.delete(member.memberId);
    if (group.members.size === 0) group.emptySinceMs = this.#clock.nowMs();
    this.#bump(group);
    this.#dirty.add(group.id);
  }

  #replaceMember(group: Group, previous: Member, member: Member): void {
    member.memberEpoch = previous.memberEpoch;
    member.previousEpoch = previous.memberEpoch;
    member.assigned = previous.assigned;
    member.revoking = previous.revoking;
    member.revocationSent = previous.revocationSent;
    member.positions = previous.positions;
    group.members.delete(previous.memberId);
    group.members.set(member.memberId, member);
    for (const k of [...member.assigned, ...member.revoking]) group.owners.set(k, member.memberId);
    const target = group.target.get(previous.memberId);
    group.target.delete(previous.memberId);
    if (target) group.target.set(member.memberId, target);
  }

  #bump(group: Group): void {
    group.groupEpoch++;
  }

  #subscribed(member: Member): string[] {
    if (member.pattern === null) return member.topics;
    const pattern = member.pattern;
    return this.#topics
      .topicNames()
      .filter((t) => pattern.test(t))
      .sort(compareStrings);
  }

  /** The subscribed topics and their partition counts: a change bumps the group epoch. */
  #signature(group: Group): string {
    const topics = new Set<string>();
    for (const m of group.members.values()) for (const t of this.#subscribed(m)) topics.add(t);
    return [...topics]
      .sort(compareStrings)
      .map((t) => `${t}:${this.#topics.partitionCount(t) ?? 0}`)
      .join(',');
  }

  /** Computes the target assignment when the group epoch moved past it. */
  #refreshTarget(group: Group): void {
    const signature = this.#signature(group);
    if (signature !== group.topicsSignature && group.assignmentEpoch === group.groupEpoch) this.#bump(group);
    if (group.assignmentEpoch === group.groupEpoch) return;
    const counts = new Map<string, number>();
    const assignorIds = new Map<string, string>();
    const members = [...group.members.values()].map((m) => {
      const topics = this.#subscribed(m);
      for (const t of topics) counts.set(t, this.#topics.partitionCount(t) ?? 0);
      // Static members order by instance id ahead of the others, as Kafka's assignors order them.
      const id = m.instanceId === null ? `m:${m.memberId}` : `i:${m.instanceId}`;
      assignorIds.set(id, m.memberId);
      return { memberId: id, topics, current: sortedPartitions([...m.assigned, ...m.revoking]) };
    });
    const result = assign(group.assignor, members, counts);
    group.target.clear();
    for (const [id, list] of result)
      group.target.set(assignorIds.get(id)!, new Set(list.map((tp) => key(tp.topic, tp.partition))));
    group.assignmentEpoch = group.groupEpoch;
    group.topicsSignature = signature;
    this.rebalances++;
    this.#dirty.add(group.id);
  }

  /**
   * Moves the member towards its target: first it gives up what its target no longer holds (those
   * partitions become revoking, and its epoch waits); once it holds nothing outside its target, its
   * epoch becomes the assignment epoch and it takes the partitions of its target no one holds.
   */
  #reconcileAndView(group: Group, member: Member): MemberView {
    this.#refreshTarget(group);
    const desired = group.target.get(member.memberId) ?? new Set<string>();
    if (member.revoking.size === 0) {
      const revoke = [...member.assigned].filter((k) => !desired.has(k));
      for (const k of revoke) {
        member.assigned.delete(k);
        this.#dirty.add(group.id);
        // Nothing of it handed out beyond the committed offset (it was never read, or all that
        // was read is committed): the member has nothing to give up, and the partition is free
        // now. (A poll of it still in flight returns none of its records: see `advance`.)
        const position = member.positions.get(k);
        if (position === undefined || position === group.offsets.get(k)?.offset) {
          member.positions.delete(k);
          group.owners.delete(k);
        } else {
          member.revoking.add(k);
          member.revocationSent = false;
        }
      }
      if (member.revoking.size === 0) {
        for (const k of desired) {
          if (member.assigned.has(k)) continue;
          if (group.owners.has(k) && this.#unsafe !== 'assignBeforeRevoked') continue;
          member.assigned.add(k);
          group.owners.set(k, member.memberId);
          this.#dirty.add(group.id);
        }
        if (member.memberEpoch !== group.assignmentEpoch) {
          member.previousEpoch = member.memberEpoch;
          member.memberEpoch = group.assignmentEpoch;
          this.#dirty.add(group.id);
        }
      }
    }
    if (member.revoking.size > 0) member.revocationSent = true;
    return {
      group: group.id,
      memberId: member.memberId,
      memberEpoch: member.memberEpoch,
      groupEpoch: group.groupEpoch,
      heartbeatIntervalMs: this.heartbeatIntervalMs,
      sessionTimeoutMs: member.sessionTimeoutMs,
      assignment: sortedPartitions(member.assigned),
      pending: sortedPartitions([...desired].filter((k) => !member.assigned.has(k))),
    };
  }

  #state(group: Group): GroupState {
    if (group.members.size === 0) return 'empty';
    if (group.assignmentEpoch !== group.groupEpoch) return 'reconciling';
    for (const m of group.members.values()) {
      const target = group.target.get(m.memberId) ?? new Set();
      if (m.revoking.size > 0 || m.memberEpoch !== group.assignmentEpoch || m.assigned.size !== target.size)
        return 'reconciling';
    }
    return 'stable';
  }

  #setOffset(group: Group, topic: string, partition: number, value: CommittedOffset): void {
    group.offsets.set(key(topic, partition), value);
    this.#writes.push({ kind: 'offset', group: group.id, topic, partition, value });
  }

  #dropOffset(group: Group, topic: string, partition: number): void {
    if (!group.offsets.delete(key(topic, partition))) return;
    this.#writes.push({ kind: 'offset', group: group.id, topic, partition, value: null });
  }

  #deleteGroup(group: Group): void {
    for (const k of [...group.offsets.keys()]) {
      const { topic, partition } = parseKey(k);
      this.#dropOffset(group, topic, partition);
    }
    this.#groups.delete(group.id);
    this.#dirty.add(group.id);
  }

  #snapshot(group: Group): GroupSnapshot {
    return {
      groupEpoch: group.groupEpoch,
      assignor: group.assignor,
      emptySinceMs: group.emptySinceMs,
      members: [...group.members.values()].map((m) => ({
        memberId: m.memberId,
        instanceId: m.instanceId,
        topics: m.topics,
        pattern: m.pattern === null ? null : patternSource(m.pattern),
        sessionTimeoutMs: m.sessionTimeoutMs,
        autoOffsetReset: m.autoOffsetReset,
        memberEpoch: m.memberEpoch,
        assigned: sortedPartitions(m.assigned),
        revoking: sortedPartitions(m.revoking),
      })),
    };
  }
}

/** The pattern as the member gave it (without the anchors `compilePattern` added). */
function patternSource(pattern: RegExp): string {
  return pattern.source.slice(4, -2);
}
