import { randomUUID } from 'node:crypto';
import type { Clock, TimerHandle } from '../common/clock.js';
import { isSluiceError, SluiceError } from '../common/errors.js';
import { type Logger, noopLogger } from '../common/logger.js';
import type { Gauge, Metrics } from '../common/metrics.js';
import {
  type CoordinatorOptions,
  checkJoin,
  GroupCoordinator,
  key,
  type OffsetReset,
  type TopicView,
} from '../groups/coordinator.js';
import {
  encodeGroupRecord,
  OFFSETS_TOPIC,
  OFFSETS_TOPIC_PARTITIONS_DEFAULT,
  offsetsPartitionFor,
  replayInto,
} from '../groups/offsets-store.js';
import type { GroupDescriptionResponse, GroupMemberView } from '../protocol/api.js';
import { ENDPOINTS, endpointUrl, MEDIA } from '../protocol/api.js';
import { decodeBatchRun } from '../protocol/batch.js';
import { splitFetchResponse } from '../protocol/group-poll.js';
import type { AdminService } from './admin.js';
import type {
  FetchOffset,
  FetchResult,
  GroupCommitInput,
  GroupHeartbeatInput,
  GroupJoinInput,
  GroupPollOptions,
  GroupPollResult,
  GroupResetInput,
  GroupsApi,
  TopicPartitionRef,
} from './api.js';
import type { FetchService } from './fetch.js';
import type { ProduceService } from './produce.js';
import type { RemotePartitions } from './remote-partitions.js';
import type { Topics } from './topics.js';

export interface GroupsOptions {
  nodeId: number;
  /** `offsets.topic.num.partitions`: the partitions of `__consumer_offsets` when this node creates it. */
  offsetsPartitions?: number;
  /** `offsets.retention.minutes`, in ms: how long an empty group's offsets are kept. */
  offsetsRetentionMs?: number;
  coordinator?: Omit<CoordinatorOptions, 'offsetsRetentionMs'>;
  /** How often sessions are checked for expiry (and deleted topics' offsets dropped). */
  tickMs?: number;
  /** How long a request waits for its coordinator to load before COORDINATOR_LOAD_IN_PROGRESS. */
  loadWaitMs?: number;
  /** New member ids (a UUID each by default; a simulation passes a deterministic source). */
  newMemberId?: () => string;
}

export interface GroupsDeps {
  topics: Topics;
  admin: AdminService;
  produce: ProduceService;
  fetch: FetchService;
  clock: Clock;
  remote?: RemotePartitions;
  metrics: Metrics;
  logger?: Logger;
  newMemberId?: () => string;
}

/** One partition of `__consumer_offsets` this node leads: the coordinator of its groups. */
interface Shard {
  partition: number;
  leaderEpoch: number;
  coordinator: GroupCoordinator;
  loaded: boolean;
  ready: Promise<void>;
  /** Writes to the partition, one after the other: the last one started (settled either way). */
  writing: Promise<void>;
  /** The last write itself: a request that wrote nothing but answers from state it holds waits for it. */
  lastWrite: Promise<void>;
  /** The write that takes the records queued now, when one is waiting for `writing`. */
  next: Promise<void> | undefined;
  queued: { partition: number; key: Buffer; value: Buffer | null }[];
}

const REMOTE_WAIT_MS_MAX = 1_000;
/** The most a remote read of one partition takes in one group poll. */
const POLL_PARTITION_BYTES_MAX = 1024 * 1024;

/**
 * Consumer groups on one node: the coordinators of the `__consumer_offsets` partitions this node
 * leads, loaded from their partition when it becomes their leader, with every change written back
 * (acks=all) before it is answered. Requests for a group coordinated elsewhere are forwarded by
 * the HTTP layer (RoutingApi.groupTarget); one that reaches a node that does not lead the group's
 * partition is NOT_COORDINATOR.
 */
export class GroupsService implements GroupsApi {
  readonly #options: Required<Omit<GroupsOptions, 'coordinator' | 'newMemberId'>> & {
    coordinator: GroupsOptions['coordinator'];
  };
  readonly #deps: GroupsDeps;
  readonly #shards = new Map<number, Shard>();
  readonly #newMemberId: () => string;
  readonly #logger: Logger;
  readonly #view: TopicView;
  #timer: TimerHandle | undefined;
  #creating: Promise<void> | undefined;
  readonly #counters: { rebalances: { inc(n?: number): void }; commits: { inc(n?: number): void } };
  readonly #membersGauge: Gauge;

  constructor(options: GroupsOptions, deps: GroupsDeps) {
    this.#options = {
      nodeId: options.nodeId,
      offsetsPartitions: options.offsetsPartitions ?? OFFSETS_TOPIC_PARTITIONS_DEFAULT,
      offsetsRetentionMs: options.offsetsRetentionMs ?? 7 * 24 * 60 * 60_000,
      coordinator: options.coordinator,
      tickMs: options.tickMs ?? 250,
      loadWaitMs: options.loadWaitMs ?? 5_000,
    };
    this.#deps = deps;
    this.#logger = deps.logger ?? noopLogger;
    this.#newMemberId = options.newMemberId ?? deps.newMemberId ?? (() => randomUUID().replaceAll('-', ''));
    this.#view = {
      partitionCount: (topic) => (topic === OFFSETS_TOPIC ? undefined : deps.topics.find(topic)?.partitions),
      topicNames: () =>
        deps.topics
          .list()
          .map((t) => t.name)
          .filter((name) => name !== OFFSETS_TOPIC),
    };
    const m = deps.metrics;
    this.#counters = {
      rebalances: m
        .counter({
          name: 'sluice_group_rebalances_total',
          help: 'Target assignments computed by the group coordinators on this node',
        })
        .labels(),
      commits: m
        .counter({
          name: 'sluice_group_commits_total',
          help: 'Offset commits accepted by the group coordinators on this node',
        })
        .labels(),
    };
    this.#membersGauge = m
      .gauge({ name: 'sluice_group_members', help: 'Members of the groups this node coordinates' })
      .labels();
    m.collectedGauge(
      {
        name: 'sluice_group_lag',
        help: 'Records between a group’s committed offset and the high watermark, per group, for partitions this node leads',
        labelNames: ['group', 'topic', 'partition'],
      },
      (sample) => this.#sampleLag(sample),
    );
  }

  start(): void {
    this.#timer = this.#deps.clock.setInterval(() => this.#tick(), this.#options.tickMs);
  }

  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  /** The other node that coordinates the group, by this node's metadata; undefined: this node answers. */
  target(group: string): { nodeId: number; url: string } | undefined {
    const topic = this.#deps.topics.find(OFFSETS_TOPIC);
    if (!topic || !this.#deps.remote) return undefined;
    return this.#deps.remote.forwardTarget(OFFSETS_TOPIC, offsetsPartitionFor(group, topic.partitions));
  }

  /**
   * The coordinators this node holds (for invariant checks): each `__consumer_offsets` partition's
   * coordinator with the leader epoch it was created for, whether it has loaded, and whether this
   * node still leads that partition at that epoch.
   */
  coordinators(): {
    partition: number;
    leaderEpoch: number;
    loaded: boolean;
    leads: boolean;
    coordinator: GroupCoordinator;
  }[] {
    return [...this.#shards.values()].map((s) => ({
      partition: s.partition,
      leaderEpoch: s.leaderEpoch,
      loaded: s.loaded,
      leads: this.#leads(s),
      coordinator: s.coordinator,
    }));
  }

  // ---- membership ----

  async join(group: string, input: GroupJoinInput): Promise<GroupMemberView> {
    // Refused before anything is created (the offsets topic included).
    checkJoin(input);
    return this.#mutate(group, (c) => c.join(group, input), 'create');
  }

  async heartbeat(group: string, member: string, input: GroupHeartbeatInput): Promise<GroupMemberView> {
    return this.#mutate(group, (c) => c.heartbeat(group, member, input), unknownMember(group, member));
  }

  async leave(group: string, member: string): Promise<void> {
    await this.#mutate(group, (c) => c.leave(group, member), unknownMember(group, member));
  }

  async commit(group: string, input: GroupCommitInput): Promise<number> {
    for (const o of input.offsets) {
      const count = this.#view.partitionCount(o.topic);
      if (count === undefined || o.partition >= count) await this.#deps.topics.resolve(o.topic, o.partition);
    }
    await this.#mutate(
      group,
      (c) => c.commit(group, input),
      input.memberId === undefined ? 'create' : unknownMember(group, input.memberId),
    );
    return input.offsets.length;
  }

  // ---- polls ----

  async poll(group: string, member: string, options: GroupPollOptions): Promise<GroupPollResult> {
    const shard = await this.#shard(group, unknownMember(group, member));
    const c = shard.coordinator;
    // A fenced or unknown member's poll commits nothing.
    c.checkMember(group, member, options.memberEpoch);
    if (options.autoCommit) c.commitPositions(group, member);
    const plan = c.pollPlan(group, member, options.memberEpoch);
    await this.#persist(shard);
    const session = plan.view.sessionTimeoutMs;
    const deadline = this.#deps.clock.monotonicMs() + Math.min(options.maxWaitMs, session / 2);
    const share = Math.max(1024, Math.floor(options.maxBytes / Math.max(1, plan.partitions.length)));
    const maxBytes = Math.min(share, POLL_PARTITION_BYTES_MAX);
    let waitMs = 0;
    let results: (TopicPartitionRef & FetchResult)[] = [];
    for (;;) {
      const round = new AbortController();
      const abort = () => round.abort();
      options.signal?.addEventListener('abort', abort, { once: true });
      try {
        results = await Promise.all(
          plan.partitions.map(async (p) => {
            const offset: FetchOffset = p.position ?? p.committed ?? plan.autoOffsetReset;
            const result = await this.#read(p, offset, plan.autoOffsetReset, maxBytes, waitMs, round.signal);
            if (result.batchCount > 0) round.abort();
            return { topic: p.topic, partition: p.partition, ...result };
          }),
        );
      } finally {
        options.signal?.removeEventListener('abort', abort);
      }
      const left = deadline - this.#deps.clock.monotonicMs();
      if (
        results.some((r) => r.batchCount > 0) ||
        left <= 0 ||
        options.signal?.aborted ||
        plan.partitions.length === 0
      )
        break;
      waitMs = Math.min(left, REMOTE_WAIT_MS_MAX);
    }
    // The poll's positions: the next offset of what it returned, or where it resolved to start.
    const held = c.advance(
      group,
      member,
      results.map((r) => ({ topic: r.topic, partition: r.partition, offset: r.nextOffset })),
    );
    return {
      memberEpoch: plan.view.memberEpoch,
      assignment: plan.view.assignment,
      partitions: results.filter((r) => held.has(key(r.topic, r.partition))),
    };
  }

  /** One partition's read: here when this node leads it, else asked of its leader. */
  async #read(
    p: TopicPartitionRef,
    offset: FetchOffset,
    reset: OffsetReset,
    maxBytes: number,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<FetchResult> {
    const empty = (at: number): FetchResult => ({
      data: Buffer.alloc(0),
      batchCount: 0,
      offset: at,
      nextOffset: at,
      highWatermark: -1,
      logStartOffset: -1,
    });
    try {
      const target = this.#deps.remote?.forwardTarget(p.topic, p.partition);
      if (target) {
        const path = endpointUrl(
          ENDPOINTS.fetch,
          { topic: p.topic, partition: p.partition },
          { offset: String(offset), maxBytes, maxWaitMs: Math.min(waitMs, REMOTE_WAIT_MS_MAX) },
        );
        const body = await this.#deps.remote!.request(target, 'GET', path, MEDIA.msgpack);
        const split = splitFetchResponse(body);
        const from =
          typeof offset === 'number'
            ? offset
            : offset === 'earliest'
              ? split.logStartOffset
              : split.highWatermark;
        return { ...split, offset: from };
      }
      return await this.#deps.fetch.read(p.topic, p.partition, {
        offset,
        maxBytes,
        maxWaitMs: waitMs,
        minBytes: 1,
        signal,
      });
    } catch (error) {
      if (isSluiceError(error, 'OFFSET_OUT_OF_RANGE') && offset !== reset)
        return this.#read(p, reset, reset, maxBytes, waitMs, signal);
      if (!isSluiceError(error)) throw error;
      // A partition that cannot be read now (no leader, deleted) leaves the others to be served.
      this.#logger.debug(
        { topic: p.topic, partition: p.partition, code: error.code },
        'group poll skipped a partition',
      );
      return empty(typeof offset === 'number' ? offset : 0);
    }
  }

  // ---- admin ----

  async list(
    scope: 'local' | 'cluster',
  ): Promise<{ group: string; state: string; members: number; coordinator: number }[]> {
    const out: { group: string; state: string; members: number; coordinator: number }[] = [];
    for (const shard of this.#shards.values()) {
      if (!shard.loaded || !this.#leads(shard)) continue;
      for (const g of shard.coordinator.list()) out.push({ ...g, coordinator: this.#options.nodeId });
    }
    const remote = this.#deps.remote;
    if (scope === 'cluster' && remote) {
      const nodes = this.#deps.admin
        .cluster()
        .nodes.filter((n) => n.id !== this.#options.nodeId && !n.fenced);
      const answers = await Promise.allSettled(
        nodes.map(async (n) => {
          const url = `http://${n.host}:${n.port}`;
          const body = await remote.request({ nodeId: n.id, url }, 'GET', ENDPOINTS.listGroups.path);
          return (JSON.parse(body.toString('utf8')) as { groups: typeof out }).groups;
        }),
      );
      for (const a of answers) if (a.status === 'fulfilled') out.push(...a.value);
    }
    return out.sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
  }

  async describe(group: string): Promise<GroupDescriptionResponse> {
    const shard = await this.#shard(group, groupNotFound(group));
    const d = shard.coordinator.describe(group);
    // The state described may hold changes still being written (a commit, an auto-commit): they
    // are answered only once written, so that no reader sees a committed offset a failover loses.
    await this.#persist(shard);
    const owners = new Map<string, string>();
    for (const m of d.members)
      for (const tp of [...m.assignment, ...m.revoking])
        owners.set(`${tp.topic}/${tp.partition}`, m.memberId);
    const committed = new Map(d.offsets.map((o) => [`${o.topic}/${o.partition}`, o]));
    const topics = new Set<string>([...d.offsets.map((o) => o.topic)]);
    for (const m of d.members)
      for (const tp of [...m.assignment, ...m.revoking, ...m.target]) topics.add(tp.topic);
    for (const m of d.members)
      for (const t of m.topics) if (this.#view.partitionCount(t) !== undefined) topics.add(t);
    const partitions: GroupDescriptionResponse['partitions'] = [];
    for (const topic of [...topics].sort()) {
      let described: Awaited<ReturnType<AdminService['describeTopic']>> | undefined;
      try {
        described = await this.#deps.admin.describeTopic(topic);
      } catch {
        described = undefined;
      }
      const count = described?.partitions.length ?? 0;
      for (let partition = 0; partition < count; partition++) {
        const info = described!.partitions[partition]!;
        const c = committed.get(`${topic}/${partition}`);
        const end = info.highWatermark;
        const from = c?.offset ?? info.logStartOffset;
        partitions.push({
          topic,
          partition,
          owner: owners.get(`${topic}/${partition}`) ?? null,
          committed: c?.offset ?? null,
          metadata: c?.metadata ?? null,
          logEndOffset: end,
          lag: end < 0 || from < 0 ? -1 : Math.max(0, end - from),
        });
      }
    }
    return {
      group: d.group,
      state: d.state,
      groupEpoch: d.groupEpoch,
      assignmentEpoch: d.assignmentEpoch,
      assignor: d.assignor,
      coordinator: this.#options.nodeId,
      members: d.members.map(({ target: _, ...m }) => m),
      partitions,
    };
  }

  async resetOffsets(
    group: string,
    input: GroupResetInput,
  ): Promise<(TopicPartitionRef & { offset: number })[]> {
    const described = await this.#deps.admin.describeTopic(input.topic);
    if (input.to === 'offset' || input.to === 'shift' || input.to === 'timestamp')
      required(input[input.to], input.to);
    const shard = await this.#shard(group, 'create');
    const current = shard.coordinator.has(group)
      ? new Map(
          shard.coordinator
            .describe(group)
            .offsets.filter((o) => o.topic === input.topic)
            .map((o) => [o.partition, o.offset]),
        )
      : new Map<number, number>();
    const partitions = input.partitions ?? described.partitions.map((p) => p.partition);
    const offsets: (TopicPartitionRef & { offset: number })[] = [];
    for (const partition of partitions) {
      const info = described.partitions[partition];
      if (!info)
        throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `${input.topic}/${partition} does not exist`, {
          details: { topic: input.topic, partition },
        });
      const clamp = (n: number) => Math.max(info.logStartOffset, Math.min(info.highWatermark, n));
      let offset: number;
      switch (input.to) {
        case 'earliest':
          offset = info.logStartOffset;
          break;
        case 'latest':
          offset = info.highWatermark;
          break;
        case 'offset':
          offset = clamp(required(input.offset, 'offset'));
          break;
        case 'shift':
          offset = clamp((current.get(partition) ?? info.logStartOffset) + required(input.shift, 'shift'));
          break;
        case 'timestamp':
          offset = await this.#offsetForTime(
            input.topic,
            partition,
            required(input.timestamp, 'timestamp'),
            info.highWatermark,
          );
          break;
      }
      offsets.push({ topic: input.topic, partition, offset });
    }
    await this.#mutate(
      group,
      (c) => {
        if (c.has(group)) c.resetOffsets(group, offsets);
        else c.commit(group, { offsets });
      },
      'create',
    );
    return offsets;
  }

  async delete(group: string): Promise<void> {
    await this.#mutate(group, (c) => c.deleteGroup(group), groupNotFound(group));
  }

  async #offsetForTime(topic: string, partition: number, timestamp: number, end: number): Promise<number> {
    const target = this.#deps.remote?.forwardTarget(topic, partition);
    if (target) {
      const path = endpointUrl(ENDPOINTS.offsets, { topic, partition }, { timestamp });
      const body = await this.#deps.remote!.request(target, 'GET', path);
      return (JSON.parse(body.toString('utf8')) as { offset?: number | null }).offset ?? end;
    }
    return (await this.#deps.fetch.offsets(topic, partition, timestamp)).offset ?? end;
  }

  // ---- coordinators ----

  /** Runs a change on the group's coordinator and writes what it changed before answering. */
  async #mutate<T>(group: string, change: (c: GroupCoordinator) => T, absent: Absent): Promise<T> {
    const shard = await this.#shard(group, absent);
    const before = { rebalances: shard.coordinator.rebalances, commits: shard.coordinator.commits };
    let result: T;
    try {
      result = change(shard.coordinator);
    } finally {
      // A refused change may still have moved the group along (a bumped epoch): write that too.
      this.#count(shard, before);
    }
    await this.#persist(shard);
    return result;
  }

  #count(shard: Shard, before: { rebalances: number; commits: number }): void {
    this.#counters.rebalances.inc(shard.coordinator.rebalances - before.rebalances);
    this.#counters.commits.inc(shard.coordinator.commits - before.commits);
  }

  /**
   * Writes what the coordinator changed. Writes to a partition go one at a time, in order (a
   * group's newest snapshot must be the last one in the log), and the changes that come while one
   * is in flight go together in the next: concurrent commits share an append.
   */
  async #persist(shard: Shard): Promise<void> {
    const writes = shard.coordinator.drainWrites();
    // Nothing new to write, but the state answered from may hold changes still being written: the
    // answer waits for them, and fails with them.
    if (writes.length === 0) return shard.lastWrite;
    for (const w of writes) shard.queued.push({ partition: shard.partition, ...encodeGroupRecord(w) });
    shard.next ??= shard.writing.then(() => {
      shard.next = undefined;
      const records = shard.queued.splice(0);
      return this.#deps.produce.records(OFFSETS_TOPIC, records, -1).then(() => undefined);
    });
    const write = shard.next;
    shard.lastWrite = write;
    shard.writing = write.then(
      () => undefined,
      () => undefined,
    );
    try {
      await write;
    } catch (error) {
      // The coordinator's memory is ahead of its log now: forget it, so that the next request
      // loads the partition again (from this node or its new leader).
      if (this.#shards.get(shard.partition) === shard) this.#shards.delete(shard.partition);
      this.#logger.warn(
        { partition: shard.partition, err: error },
        'group state write failed; coordinator unloaded',
      );
      throw error;
    }
  }

  /**
   * The loaded coordinator of the group, when this node leads its partition. Before the first
   * group exists there is no offsets topic: `absent` says whether to create it or which error
   * answers (the group cannot exist yet).
   */
  async #shard(group: string, absent: Absent): Promise<Shard> {
    const partitions = await this.#offsetsTopic(absent);
    const partition = offsetsPartitionFor(group, partitions);
    let replica: Awaited<ReturnType<Topics['localReplica']>>['replica'];
    try {
      replica = (await this.#deps.topics.localReplica(OFFSETS_TOPIC, partition)).replica;
    } catch (error) {
      if (
        isSluiceError(error) &&
        (error.code === 'NOT_LEADER_OR_FOLLOWER' || error.code === 'LEADER_NOT_AVAILABLE')
      )
        throw new SluiceError(
          'NOT_COORDINATOR',
          `node ${this.#options.nodeId} does not coordinate group ${group}`,
          {
            details: {
              group,
              ...(typeof error.details.leader === 'number' ? { coordinator: error.details.leader } : {}),
            },
          },
        );
      throw error;
    }
    if (!replica.isLeader)
      throw new SluiceError(
        'NOT_COORDINATOR',
        `node ${this.#options.nodeId} does not coordinate group ${group}`,
        {
          details: { group },
        },
      );
    try {
      // A leader that has not reached the controller for longer than its session may have been
      // replaced without knowing it: it answers for no group (as it takes no produce or fetch).
      replica.requireLeader();
    } catch (error) {
      throw new SluiceError(
        'NOT_COORDINATOR',
        `node ${this.#options.nodeId} may no longer coordinate group ${group}`,
        { cause: error, details: { group } },
      );
    }
    let shard = this.#shards.get(partition);
    if (!shard || shard.leaderEpoch !== replica.leaderEpoch) {
      shard = this.#newShard(partition, replica.leaderEpoch);
      this.#shards.set(partition, shard);
    }
    if (!shard.loaded) await this.#waitLoaded(shard, group);
    return shard;
  }

  #newShard(partition: number, leaderEpoch: number): Shard {
    const coordinator = new GroupCoordinator(
      { ...this.#options.coordinator, offsetsRetentionMs: this.#options.offsetsRetentionMs },
      { clock: this.#deps.clock, topics: this.#view, newMemberId: this.#newMemberId },
    );
    const shard: Shard = {
      partition,
      leaderEpoch,
      coordinator,
      loaded: false,
      ready: Promise.resolve(),
      writing: Promise.resolve(),
      lastWrite: Promise.resolve(),
      next: undefined,
      queued: [],
    };
    shard.ready = this.#load(shard).then(
      () => {
        shard.loaded = true;
      },
      (error: unknown) => {
        if (this.#shards.get(partition) === shard) this.#shards.delete(partition);
        this.#logger.warn({ partition, err: error }, 'group coordinator load failed');
      },
    );
    return shard;
  }

  async #waitLoaded(shard: Shard, group: string): Promise<void> {
    let timer: TimerHandle | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = this.#deps.clock.setTimeout(() => resolve('late'), this.#options.loadWaitMs);
    });
    const outcome = await Promise.race([shard.ready.then(() => 'ready' as const), late]);
    timer?.cancel();
    if (outcome === 'late' || !shard.loaded)
      throw new SluiceError('COORDINATOR_LOAD_IN_PROGRESS', `the coordinator of group ${group} is loading`, {
        details: { group },
      });
  }

  /**
   * Replays the partition into the shard's coordinator, once the new leader's high watermark has
   * reached its log end (every write a previous coordinator had acknowledged is then below it).
   */
  async #load(shard: Shard): Promise<void> {
    const started = this.#deps.clock.monotonicMs();
    const { replica } = await this.#deps.topics.localReplica(OFFSETS_TOPIC, shard.partition);
    while (replica.highWatermark < replica.logEndOffset) {
      if (!replica.isLeader || replica.leaderEpoch !== shard.leaderEpoch)
        throw new SluiceError('NOT_COORDINATOR', 'leadership moved while loading');
      await new Promise<void>((resolve) => this.#deps.clock.setTimeout(resolve, 20));
    }
    const end = replica.highWatermark;
    let offset = replica.logStartOffset;
    let applied = 0;
    while (offset < end) {
      const read = await this.#deps.fetch.read(OFFSETS_TOPIC, shard.partition, {
        offset,
        maxBytes: 4 * 1024 * 1024,
        maxWaitMs: 0,
        minBytes: 0,
        probe: true,
      });
      if (read.batchCount === 0) break;
      const run = decodeBatchRun(read.data, offset);
      if (run.problem) throw run.problem.error;
      applied += replayInto(
        shard.coordinator,
        run.records.filter((r) => r.offset < end),
      );
      offset = Math.max(offset + 1, read.nextOffset);
    }
    this.#logger.info(
      {
        partition: shard.partition,
        leaderEpoch: shard.leaderEpoch,
        records: applied,
        groups: shard.coordinator.list().length,
        ms: Math.round(this.#deps.clock.monotonicMs() - started),
      },
      'group coordinator loaded',
    );
  }

  /** Creates `__consumer_offsets` (compacted, replication factor min(3, brokers)) on first use. */
  async #offsetsTopic(absent: Absent): Promise<number> {
    const known = this.#deps.topics.find(OFFSETS_TOPIC);
    if (known) return known.partitions;
    await this.#deps.topics.catchUpUnless([OFFSETS_TOPIC]);
    const caughtUp = this.#deps.topics.find(OFFSETS_TOPIC);
    if (caughtUp) return caughtUp.partitions;
    if (absent !== 'create') throw absent;
    this.#creating ??= this.#createOffsetsTopic().finally(() => {
      this.#creating = undefined;
    });
    await this.#creating;
    return this.#deps.topics.get(OFFSETS_TOPIC).partitions;
  }

  async #createOffsetsTopic(): Promise<void> {
    const brokers = this.#deps.remote
      ? this.#deps.admin.cluster().nodes.filter((n) => !n.roles || n.roles.includes('broker')).length
      : 1;
    try {
      await this.#deps.admin.createInternalTopic({
        name: OFFSETS_TOPIC,
        partitions: this.#options.offsetsPartitions,
        replicationFactor: Math.max(1, Math.min(3, brokers)),
        configs: {
          'cleanup.policy': 'compact',
          'min.insync.replicas': Math.min(2, Math.max(1, brokers - 1)),
        },
      });
      this.#logger.info({ partitions: this.#options.offsetsPartitions }, `${OFFSETS_TOPIC} created`);
    } catch (error) {
      if (!isSluiceError(error, 'TOPIC_ALREADY_EXISTS')) throw error;
    }
  }

  #leads(shard: Shard): boolean {
    const replica = this.#deps.topics.replicas.get(OFFSETS_TOPIC, shard.partition);
    return replica?.isLeader === true && replica.leaderEpoch === shard.leaderEpoch;
  }

  #tick(): void {
    this.#loadLedPartitions();
    let members = 0;
    for (const shard of [...this.#shards.values()]) {
      if (!shard.loaded) continue;
      if (!this.#leads(shard)) {
        this.#shards.delete(shard.partition);
        this.#logger.info({ partition: shard.partition }, 'group coordinator unloaded: no longer the leader');
        continue;
      }
      const before = { rebalances: shard.coordinator.rebalances, commits: shard.coordinator.commits };
      shard.coordinator.tick();
      this.#count(shard, before);
      members += shard.coordinator.memberCount();
      this.#persist(shard).catch(() => {});
    }
    this.#membersGauge.set(members);
  }

  /**
   * Starts loading every partition of the offsets topic this node has become the leader of, so
   * that its groups' sessions are checked (and the groups listed) before any request for them.
   */
  #loadLedPartitions(): void {
    const topic = this.#deps.topics.find(OFFSETS_TOPIC);
    if (!topic) return;
    for (let partition = 0; partition < topic.partitions; partition++) {
      const replica = this.#deps.topics.replicas.get(OFFSETS_TOPIC, partition);
      if (!replica?.isLeader) continue;
      const shard = this.#shards.get(partition);
      if (shard && shard.leaderEpoch === replica.leaderEpoch) continue;
      this.#shards.set(partition, this.#newShard(partition, replica.leaderEpoch));
    }
  }

  #sampleLag(sample: (labels: readonly string[], value: number) => void): void {
    for (const shard of this.#shards.values()) {
      if (!shard.loaded) continue;
      for (const { group } of shard.coordinator.list()) {
        for (const o of shard.coordinator.describe(group).offsets) {
          const replica = this.#deps.topics.replicas.get(o.topic, o.partition);
          if (!replica?.isLeader) continue;
          sample([group, o.topic, String(o.partition)], Math.max(0, replica.highWatermark - o.offset));
        }
      }
    }
  }
}

/** What a request does when no group exists yet: create the offsets topic, or answer this error. */
type Absent = 'create' | SluiceError;

const unknownMember = (group: string, member: string) =>
  new SluiceError('UNKNOWN_MEMBER_ID', `group ${group} has no member ${member}`, {
    details: { memberId: member },
  });
const groupNotFound = (group: string) =>
  new SluiceError('GROUP_ID_NOT_FOUND', `group ${group} does not exist`);

function required(value: number | undefined, field: string): number {
  if (value === undefined)
    throw new SluiceError('INVALID_REQUEST', `this reset needs ${field}`, { details: { field } });
  return value;
}
