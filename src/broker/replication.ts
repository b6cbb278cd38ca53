import type { Clock, TimerHandle } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { TokenBucket } from '../common/token-bucket.js';
import { MEDIA } from '../protocol/api.js';
import {
  type ControllerCommand,
  REPLICA_FETCH_PATH,
  type ReplicaFetchPartition,
  type ReplicaFetchPartitionAnswer,
  type ReplicaFetchRequest,
} from '../protocol/internal-api.js';
import { packr, unpackr } from '../protocol/msgpack.js';
import { divergingEpoch, truncationOffset } from '../replication/divergence.js';
import type { PartitionReplica } from '../replication/replica.js';
import { errorOf, type PeerClient } from './peer-client.js';
import type { Topics } from './topics.js';

/** What replication needs of the cluster: this broker's epoch, who is live, the controller. */
export interface ReplicationCluster {
  /** This broker's current broker epoch; undefined until it is registered. */
  brokerEpoch(): number | undefined;
  /** Whether the broker is registered and not fenced, and (given `brokerEpoch`) registered with that epoch. */
  isLive(brokerId: number, brokerEpoch?: number): boolean;
  submit(command: ControllerCommand): Promise<unknown>;
  /** Whether the broker is a replica a reassignment of the partition is adding (copy traffic, throttled). */
  isReassignmentTarget?(topicId: string, partition: number, brokerId: number): boolean;
}

/**
 * How a follower's fetch reaches its leader and the answer comes back: HTTP/2 between nodes
 * (`HttpReplicaFetchTransport`), or a simulated network in the cluster simulation.
 */
export interface ReplicaFetchTransport {
  /**
   * Sends `request` to node `leader`; resolves with its answer, rejects with the leader's error,
   * or NETWORK_EXCEPTION when the node cannot be reached or does not answer within `timeoutMs`.
   */
  fetch(
    leader: number,
    request: ReplicaFetchRequest,
    timeoutMs: number,
  ): Promise<ReplicaFetchPartitionAnswer[]>;
}

/** Replica fetches over the internal HTTP API (msgpack bodies), one HTTP/2 session per node. */
export class HttpReplicaFetchTransport implements ReplicaFetchTransport {
  readonly #peers: PeerClient;
  readonly #urlOf: (brokerId: number) => string | undefined;

  constructor(deps: { peers: PeerClient; urlOf: (brokerId: number) => string | undefined }) {
    this.#peers = deps.peers;
    this.#urlOf = deps.urlOf;
  }

  async fetch(
    leader: number,
    request: ReplicaFetchRequest,
    timeoutMs: number,
  ): Promise<ReplicaFetchPartitionAnswer[]> {
    const url = this.#urlOf(leader);
    if (url === undefined) throw new SluiceError('NETWORK_EXCEPTION', `node ${leader} is not reachable yet`);
    const response = await this.#peers.request(url, {
      method: 'POST',
      path: REPLICA_FETCH_PATH,
      headers: { 'content-type': MEDIA.msgpack, accept: MEDIA.msgpack },
      body: packr.pack(request),
      timeoutMs,
    });
    if (response.status !== 200) throw errorOf(response, `leader ${leader}`);
    return (unpackr.unpack(response.body) as { partitions: ReplicaFetchPartitionAnswer[] }).partitions;
  }
}

export interface ReplicationOptions {
  nodeId: number;
  /** A follower not caught up with its leader for this long leaves the in-sync set. */
  replicaLagTimeMaxMs: number;
  /** How often logs gone offline are looked for and reported to the controller (1000 ms when absent). */
  offlineCheckMs?: number;
  /** How long a follower's fetch waits at the leader for new batches. */
  fetchMaxWaitMs: number;
  fetchMaxBytes: number;
  /** How long a follower waits for a fetch's answer before it tries again; `fetchMaxWaitMs` + 10 s when absent. */
  fetchTimeoutMs?: number;
  /**
   * Bytes per second this leader sends, in all, to replicas that a reassignment is adding and that
   * are not in sync yet (`replication.throttle.bytes.per.second`); in-sync followers are never
   * throttled. Absent or 0: no throttle.
   */
  throttleBytesPerSecond?: number;
}

interface Followed {
  replica: PartitionReplica;
  topicId: string;
  leader: number;
}

/**
 * ISR replication of this node's partitions. As leader it answers followers' fetches (batches past
 * the high watermark, the high watermark, or the epoch where a follower's log diverges), tracks
 * each follower's log end, and asks the controller to shrink or expand the in-sync set. As
 * follower it runs one fetch loop per leader node, many partitions per request, appending batches
 * as they are stored and truncating where its log diverges from the leader's (KIP-101, KIP-279).
 */
export class ReplicationService {
  readonly #options: ReplicationOptions;
  readonly #topics: Topics;
  readonly #cluster: ReplicationCluster;
  readonly #transport: ReplicaFetchTransport;
  readonly #clock: Clock;
  readonly #logger: Logger;
  /** Partitions this node follows, by `topic\0partition`. */
  readonly #followed = new Map<string, Followed>();
  /** One running fetch loop per leader node. */
  readonly #loops = new Map<number, Promise<void>>();
  #isrTimer: TimerHandle | undefined;
  #offlineTimer: TimerHandle | undefined;
  /** Offline partitions reported, by `topic\0partition@partitionEpoch`. */
  readonly #reportedOffline = new Set<string>();
  #closed = false;
  /** The reassignment copy throttle (see `throttleBytesPerSecond`). */
  readonly #throttle: TokenBucket | undefined;
  readonly #countIsrChange: ((change: 'shrink' | 'expand') => void) | undefined;

  constructor(
    options: ReplicationOptions,
    deps: {
      topics: Topics;
      cluster: ReplicationCluster;
      transport: ReplicaFetchTransport;
      clock: Clock;
      logger: Logger;
      /** Counts the in-sync set changes the controller committed, by kind. */
      countIsrChange?: (change: 'shrink' | 'expand') => void;
    },
  ) {
    this.#countIsrChange = deps.countIsrChange;
    this.#options = options;
    this.#topics = deps.topics;
    this.#cluster = deps.cluster;
    this.#transport = deps.transport;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    const rate = options.throttleBytesPerSecond ?? 0;
    this.#throttle =
      rate > 0 ? new TokenBucket({ ratePerSecond: rate }, deps.clock.monotonicMs()) : undefined;
  }

  start(): void {
    this.#isrTimer = this.#clock.setInterval(
      () => void this.#maintainIsr(),
      Math.max(100, Math.floor(this.#options.replicaLagTimeMaxMs / 4)),
    );
    this.#offlineTimer = this.#clock.setInterval(
      () => void this.#reportOffline(),
      this.#options.offlineCheckMs ?? 1000,
    );
  }

  close(): void {
    this.#closed = true;
    this.#isrTimer?.cancel();
    this.#offlineTimer?.cancel();
    this.#followed.clear();
  }

  /**
   * The partitions this node follows now (after a metadata change): each with its leader. Fetch
   * loops start for new leaders and end by themselves when nothing is left to fetch from them.
   */
  follow(partitions: readonly { replica: PartitionReplica; topicId: string; leader: number }[]): void {
    this.#followed.clear();
    for (const p of partitions) {
      if (p.leader < 0 || p.leader === this.#options.nodeId) continue;
      this.#followed.set(`${p.replica.topic}\u0000${p.replica.partition}`, p);
    }
    for (const leader of new Set([...this.#followed.values()].map((f) => f.leader))) {
      if (this.#loops.has(leader)) continue;
      const loop = this.#fetchLoop(leader);
      this.#loops.set(leader, loop);
    }
  }

  // ---- leader side ----

  /** Answers a follower's fetch; long-polls up to `maxWaitMs` while no partition has batches for it. */
  async answerFetch(
    request: ReplicaFetchRequest,
    signal?: AbortSignal,
  ): Promise<ReplicaFetchPartitionAnswer[]> {
    if (!this.#cluster.isLive(request.replicaId))
      throw new SluiceError(
        'INVALID_REQUEST',
        `broker ${request.replicaId} is not a live, registered broker`,
      );
    const throttled = new Set<string>();
    let answers = await this.#answerOnce(request, throttled);
    if (request.maxWaitMs === 0 || answers.some((a) => a.records.length > 0 || a.error || a.divergingEpoch))
      return answers;
    // Nothing yet: wait for an append or a high watermark move on any of them, or the deadline.
    // A throttled partition's appends do not wake the wait: it waits for the bucket instead.
    const replicas = request.partitions
      .filter((p) => !throttled.has(`${p.topicId}\u0000${p.partition}`))
      .map((p) => this.#topics.replicas.get(p.topic, p.partition))
      .filter((r): r is PartitionReplica => r !== undefined);
    const waitMs =
      throttled.size > 0 && this.#throttle
        ? Math.min(request.maxWaitMs, Math.max(1, this.#throttle.waitMs(this.#clock.monotonicMs())))
        : request.maxWaitMs;
    await new Promise<void>((resolve) => {
      const offs: (() => void)[] = [];
      const done = () => {
        for (const off of offs) off();
        timer.cancel();
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.#clock.setTimeout(done, waitMs);
      for (const r of replicas) {
        offs.push(r.log.onAppend(done));
        offs.push(r.onHighWatermarkAdvance(done));
      }
      signal?.addEventListener('abort', done, { once: true });
    });
    answers = await this.#answerOnce(request, throttled);
    return answers;
  }

  async #answerOnce(
    request: ReplicaFetchRequest,
    throttled: Set<string>,
  ): Promise<ReplicaFetchPartitionAnswer[]> {
    const now = this.#clock.monotonicMs();
    const perPartitionBytes = Math.max(
      64 * 1024,
      Math.floor(request.maxBytes / Math.max(1, request.partitions.length)),
    );
    return Promise.all(
      request.partitions.map((p) =>
        this.#answerPartition(request.replicaId, request.brokerEpoch, p, now, perPartitionBytes, throttled),
      ),
    );
  }

  async #answerPartition(
    follower: number,
    brokerEpoch: number,
    p: ReplicaFetchPartition,
    now: number,
    maxBytes: number,
    throttled: Set<string>,
  ): Promise<ReplicaFetchPartitionAnswer> {
    const replica = this.#topics.replicas.get(p.topic, p.partition);
    const base = { topic: p.topic, partition: p.partition, records: new Uint8Array(0) };
    const fail = (error: string, extra: Partial<ReplicaFetchPartitionAnswer> = {}) => ({
      ...base,
      error,
      highWatermark: replica?.highWatermark ?? -1,
      logStartOffset: replica?.logStartOffset ?? -1,
      logEndOffset: replica?.logEndOffset ?? -1,
      ...extra,
    });
    if (!replica || this.#topics.topicId(p.topic) !== p.topicId) return fail('UNKNOWN_TOPIC_OR_PARTITION');
    if (!replica.isLeader) return fail('NOT_LEADER_OR_FOLLOWER');
    if (p.leaderEpoch < replica.leaderEpoch) return fail('FENCED_LEADER_EPOCH');
    if (p.leaderEpoch > replica.leaderEpoch) return fail('UNKNOWN_LEADER_EPOCH');
    if (!replica.replicas.includes(follower)) return fail('NOT_LEADER_OR_FOLLOWER');
    const log = replica.log;
    const answer = (extra: Partial<ReplicaFetchPartitionAnswer>) => ({
      ...base,
      highWatermark: replica.highWatermark,
      logStartOffset: log.logStartOffset,
      logEndOffset: log.logEndOffset,
      ...extra,
    });
    // The follower's last batch is of `lastFetchedEpoch`: where does that epoch end here? Where
    // the follower's log goes past it, or the epoch is not ours, the logs diverge there.
    const diverging = divergingEpoch(
      (epoch) => log.endOffsetForEpoch(epoch),
      p.lastFetchedEpoch,
      p.fetchOffset,
    );
    if (diverging) return answer({ divergingEpoch: diverging });
    if (p.fetchOffset < log.logStartOffset || p.fetchOffset > log.logEndOffset)
      return fail('OFFSET_OUT_OF_RANGE');
    replica.followerFetched(follower, p.fetchOffset, now, brokerEpoch);
    const throttle = this.#throttleOf(replica, p.topicId, follower);
    if (throttle) {
      // Copy traffic to a replica being added: within the bucket, whole batches, paying off any debt.
      const available = throttle.available(now);
      if (available < 1) {
        throttled.add(`${p.topicId}\u0000${p.partition}`);
        return answer({});
      }
      maxBytes = Math.min(maxBytes, Math.floor(available));
    }
    const read = await log.read(p.fetchOffset, { maxBytes });
    throttle?.take(read.data.length, now);
    return answer({ records: read.data });
  }

  /** The bucket a follower's fetch of the partition draws on: only a reassignment's replica not in sync yet. */
  #throttleOf(replica: PartitionReplica, topicId: string, follower: number): TokenBucket | undefined {
    if (!this.#throttle || replica.inSyncReplicas.includes(follower)) return undefined;
    return this.#cluster.isReassignmentTarget?.(topicId, replica.partition, follower)
      ? this.#throttle
      : undefined;
  }

  // ---- follower side ----

  async #fetchLoop(leader: number): Promise<void> {
    let backoff = 50;
    while (!this.#closed) {
      const partitions = [...this.#followed.values()].filter((f) => f.leader === leader);
      if (partitions.length === 0) {
        // Leaves the map in the same turn as it finds nothing to fetch: a `follow` after it starts
        // a new loop (removed a turn later, the loop was still listed and the new partitions of
        // this leader had no loop at all).
        this.#loops.delete(leader);
        return;
      }
      const brokerEpoch = this.#cluster.brokerEpoch();
      try {
        if (brokerEpoch === undefined)
          throw new SluiceError('NETWORK_EXCEPTION', 'this node is not registered yet');
        const request: ReplicaFetchRequest = {
          replicaId: this.#options.nodeId,
          brokerEpoch,
          maxWaitMs: this.#options.fetchMaxWaitMs,
          maxBytes: this.#options.fetchMaxBytes,
          partitions: partitions.map(({ replica, topicId }) => ({
            topicId,
            topic: replica.topic,
            partition: replica.partition,
            fetchOffset: replica.log.logEndOffset,
            lastFetchedEpoch: replica.log.leaderEpochs.latestEpoch() ?? -1,
            leaderEpoch: replica.leaderEpoch,
          })),
        };
        const answers = await this.#transport.fetch(
          leader,
          request,
          this.#options.fetchTimeoutMs ?? this.#options.fetchMaxWaitMs + 10_000,
        );
        let progressed = false;
        for (const answer of answers) {
          const followed = this.#followed.get(`${answer.topic}\u0000${answer.partition}`);
          if (!followed || followed.leader !== leader) continue;
          progressed = (await this.#apply(followed.replica, answer)) || progressed;
        }
        backoff = 50;
        // Every partition refused (a leadership in flux): wait a little instead of spinning.
        if (!progressed && answers.every((a) => a.error)) await this.#sleep(100);
      } catch (error) {
        if (this.#closed) return;
        this.#logger.debug({ err: error, leader }, 'a replica fetch failed');
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  /** Applies one partition's answer; whether it moved the follower's log. */
  async #apply(replica: PartitionReplica, answer: ReplicaFetchPartitionAnswer): Promise<boolean> {
    const log = replica.log;
    if (answer.divergingEpoch) {
      const epoch = answer.divergingEpoch.epoch;
      const target = truncationOffset(
        answer.divergingEpoch,
        (e) => log.leaderEpochs.endOffsetFor(e, log.logEndOffset),
        {
          logStartOffset: log.logStartOffset,
          logEndOffset: log.logEndOffset,
          highWatermark: replica.highWatermark,
        },
      );
      if (target < log.logEndOffset) {
        await log.truncateTo(target);
        replica.truncatedTo(target);
        this.#logger.info(
          { topic: replica.topic, partition: replica.partition, to: target, epoch },
          'follower log truncated where it diverged from the leader',
        );
      }
      return true;
    }
    if (answer.error === 'OFFSET_OUT_OF_RANGE') {
      if (log.logEndOffset > answer.logEndOffset && answer.logEndOffset >= log.logStartOffset) {
        await log.truncateTo(answer.logEndOffset);
        replica.truncatedTo(answer.logEndOffset);
        return true;
      }
      if (log.logEndOffset < answer.logStartOffset) {
        // The leader's log starts past this follower's end: start afresh where the leader's starts.
        await log.truncateFullyAndStartAt(answer.logStartOffset);
        replica.truncatedTo(answer.logStartOffset);
        return true;
      }
      return false;
    }
    if (answer.error) return false;
    if (answer.records.length > 0) {
      const data = Buffer.from(answer.records.buffer, answer.records.byteOffset, answer.records.byteLength);
      await log.append(data, { assignOffsets: false });
    }
    replica.setFollowerHighWatermark(answer.highWatermark);
    return answer.records.length > 0;
  }

  // ---- offline logs ----

  /**
   * Partitions whose log here went offline on a storage error while this node leads them or is in
   * their in-sync set (but for the last in-sync place of a follower, which it keeps): the
   * controller moves their leaderships to other in-sync or eligible replicas and takes this node
   * out of their sets. Each is reported once per partition epoch.
   */
  async #reportOffline(): Promise<void> {
    if (this.#closed) return;
    const brokerEpoch = this.#cluster.brokerEpoch();
    if (brokerEpoch === undefined) return;
    const nodeId = this.#options.nodeId;
    const partitions: { topicId: string; partition: number }[] = [];
    for (const { replica } of this.#topics.replicas.all()) {
      if (replica.log.offlineReason === undefined || replica.replicas.length < 2) continue;
      const inSync = replica.inSyncReplicas;
      const holds = replica.isLeader || (inSync.includes(nodeId) && inSync.length > 1);
      if (!holds) continue;
      const key = `${replica.topic}\u0000${replica.partition}@${replica.partitionEpoch}`;
      if (this.#reportedOffline.has(key)) continue;
      this.#reportedOffline.add(key);
      partitions.push({ topicId: this.#topics.topicId(replica.topic), partition: replica.partition });
      this.#logger.warn(
        { topic: replica.topic, partition: replica.partition, reason: replica.log.offlineReason },
        'the partition log is offline here: asking the controller to move its leadership',
      );
    }
    if (partitions.length === 0) return;
    await this.#cluster
      .submit({ type: 'offlineReplicas', brokerId: nodeId, brokerEpoch, partitions })
      .catch((error) => {
        this.#logger.warn({ err: error }, 'reporting offline partitions to the controller failed');
        // Try again at the next check.
        for (const { replica } of this.#topics.replicas.all())
          this.#reportedOffline.delete(
            `${replica.topic}\u0000${replica.partition}@${replica.partitionEpoch}`,
          );
      });
  }

  // ---- the in-sync set ----

  /** Writes each replicated partition's high watermark where it moved (periodically and at shutdown). */
  async checkpoint(): Promise<void> {
    for (const { replica } of this.#topics.replicas.all()) {
      if (replica.replicas.length < 2 || replica.log.offlineReason !== undefined) continue;
      if (replica.highWatermark <= replica.log.highWatermarkCheckpoint) continue;
      await replica.log.checkpointHighWatermark(replica.highWatermark).catch((error) => {
        this.#logger.warn(
          { err: error, topic: replica.topic, partition: replica.partition },
          'the high watermark checkpoint failed',
        );
      });
    }
  }

  async #maintainIsr(): Promise<void> {
    if (this.#closed) return;
    void this.checkpoint();
    const brokerEpoch = this.#cluster.brokerEpoch();
    if (brokerEpoch === undefined) return;
    const now = this.#clock.monotonicMs();
    for (const { replica } of this.#topics.replicas.all()) {
      // A follower joins only with the broker epoch it fetched with: a restarted broker's new
      // incarnation is not brought in on what its previous one had (KIP-903).
      const isr = replica.isrChange(
        now,
        this.#options.replicaLagTimeMaxMs,
        (id, epoch) => epoch !== undefined && this.#cluster.isLive(id, epoch),
      );
      if (!isr) continue;
      const topicId = this.#topics.topicId(replica.topic);
      // The set before the change, for telling a shrink from an expansion once it is in force.
      const was = replica.inSyncReplicas;
      replica.proposeIsr(isr);
      const command: ControllerCommand = {
        type: 'alterPartition',
        brokerId: this.#options.nodeId,
        brokerEpoch,
        topicId,
        partition: replica.partition,
        leaderEpoch: replica.leaderEpoch,
        partitionEpoch: replica.partitionEpoch,
        isr,
      };
      this.#cluster
        .submit(command)
        .then(() => {
          this.#counted(isr, was);
          this.#logger.info(
            { topic: replica.topic, partition: replica.partition, isr, was },
            'in-sync set changed',
          );
        })
        .then(
          () => this.#dropProposal(replica, isr),
          (error) => {
            this.#logger.warn(
              { err: error, topic: replica.topic, partition: replica.partition },
              'the in-sync set change was refused',
            );
            // A refusal may come after the controller decided (its answer lost, a retried request
            // then refused as stale): the proposal counts until this node's metadata holds all the
            // controller had decided, which shows the set in force.
            return this.#dropProposalOnceCaughtUp(replica, isr, was);
          },
        );
    }
  }

  /** Committed: the metadata change has replaced the proposal already; refused for sure: drop it. */
  #dropProposal(replica: PartitionReplica, isr: readonly number[]): void {
    if (replica.proposedIsr && sameMembers(replica.proposedIsr, isr)) replica.proposeIsr(undefined);
  }

  async #dropProposalOnceCaughtUp(
    replica: PartitionReplica,
    isr: readonly number[],
    was: readonly number[],
  ): Promise<void> {
    const epoch = replica.leaderEpoch;
    let backoffMs = 100;
    while (!this.#closed && replica.isLeader && replica.leaderEpoch === epoch && replica.proposedIsr) {
      try {
        await this.#cluster.submit({ type: 'readIndex' });
        this.#dropProposal(replica, isr);
        break;
      } catch {
        await this.#sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 1000);
      }
    }
    // The set in force is the one proposed: the controller did commit it, only its answer was
    // lost; counted as one whose answer came.
    if (
      replica.isLeader &&
      replica.leaderEpoch === epoch &&
      sameMembers(replica.inSyncReplicas, isr) &&
      !sameMembers(was, isr)
    )
      this.#counted(isr, was);
  }

  /** Counts a committed in-sync set change: `was` the set before it, `isr` the set after. */
  #counted(isr: readonly number[], was: readonly number[]): void {
    this.#countIsrChange?.(isr.length < was.length ? 'shrink' : 'expand');
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.setTimeout(resolve, ms));
  }
}

function sameMembers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}
