import type { Clock, TimerHandle } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
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

/** What replication needs of the cluster: this broker's epoch, who is live, where nodes are, the controller. */
export interface ReplicationCluster {
  /** This broker's current broker epoch; undefined until it is registered. */
  brokerEpoch(): number | undefined;
  isLive(brokerId: number): boolean;
  urlOf(brokerId: number): string | undefined;
  submit(command: ControllerCommand): Promise<void>;
}

export interface ReplicationOptions {
  nodeId: number;
  /** A follower not caught up with its leader for this long leaves the in-sync set. */
  replicaLagTimeMaxMs: number;
  /** How long a follower's fetch waits at the leader for new batches. */
  fetchMaxWaitMs: number;
  fetchMaxBytes: number;
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
  readonly #peers: PeerClient;
  readonly #clock: Clock;
  readonly #logger: Logger;
  /** Partitions this node follows, by `topic\0partition`. */
  readonly #followed = new Map<string, Followed>();
  /** One running fetch loop per leader node. */
  readonly #loops = new Map<number, Promise<void>>();
  #isrTimer: TimerHandle | undefined;
  #closed = false;

  constructor(
    options: ReplicationOptions,
    deps: { topics: Topics; cluster: ReplicationCluster; peers: PeerClient; clock: Clock; logger: Logger },
  ) {
    this.#options = options;
    this.#topics = deps.topics;
    this.#cluster = deps.cluster;
    this.#peers = deps.peers;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
  }

  start(): void {
    this.#isrTimer = this.#clock.setInterval(
      () => void this.#maintainIsr(),
      Math.max(100, Math.floor(this.#options.replicaLagTimeMaxMs / 4)),
    );
  }

  close(): void {
    this.#closed = true;
    this.#isrTimer?.cancel();
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
      const loop = this.#fetchLoop(leader).finally(() => this.#loops.delete(leader));
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
    let answers = await this.#answerOnce(request);
    if (request.maxWaitMs === 0 || answers.some((a) => a.records.length > 0 || a.error || a.divergingEpoch))
      return answers;
    // Nothing yet: wait for an append or a high watermark move on any of them, or the deadline.
    const replicas = request.partitions
      .map((p) => this.#topics.replicas.get(p.topic, p.partition))
      .filter((r): r is PartitionReplica => r !== undefined);
    await new Promise<void>((resolve) => {
      const offs: (() => void)[] = [];
      const done = () => {
        for (const off of offs) off();
        timer.cancel();
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.#clock.setTimeout(done, request.maxWaitMs);
      for (const r of replicas) {
        offs.push(r.log.onAppend(done));
        offs.push(r.onHighWatermarkAdvance(done));
      }
      signal?.addEventListener('abort', done, { once: true });
    });
    answers = await this.#answerOnce(request);
    return answers;
  }

  async #answerOnce(request: ReplicaFetchRequest): Promise<ReplicaFetchPartitionAnswer[]> {
    const now = this.#clock.monotonicMs();
    const perPartitionBytes = Math.max(
      64 * 1024,
      Math.floor(request.maxBytes / Math.max(1, request.partitions.length)),
    );
    return Promise.all(
      request.partitions.map((p) => this.#answerPartition(request.replicaId, p, now, perPartitionBytes)),
    );
  }

  async #answerPartition(
    follower: number,
    p: ReplicaFetchPartition,
    now: number,
    maxBytes: number,
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
    replica.followerFetched(follower, p.fetchOffset, now);
    const read = await log.read(p.fetchOffset, { maxBytes });
    return answer({ records: read.data });
  }

  // ---- follower side ----

  async #fetchLoop(leader: number): Promise<void> {
    let backoff = 50;
    while (!this.#closed) {
      const partitions = [...this.#followed.values()].filter((f) => f.leader === leader);
      if (partitions.length === 0) return;
      const url = this.#cluster.urlOf(leader);
      const brokerEpoch = this.#cluster.brokerEpoch();
      try {
        if (url === undefined || brokerEpoch === undefined)
          throw new SluiceError('NETWORK_EXCEPTION', `node ${leader} is not reachable yet`);
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
        const response = await this.#peers.request(url, {
          method: 'POST',
          path: REPLICA_FETCH_PATH,
          headers: { 'content-type': MEDIA.msgpack, accept: MEDIA.msgpack },
          body: packr.pack(request),
          timeoutMs: this.#options.fetchMaxWaitMs + 10_000,
        });
        if (response.status !== 200) throw errorOf(response, `leader ${leader}`);
        const answers = unpackr.unpack(response.body) as { partitions: ReplicaFetchPartitionAnswer[] };
        let progressed = false;
        for (const answer of answers.partitions) {
          const followed = this.#followed.get(`${answer.topic}\u0000${answer.partition}`);
          if (!followed || followed.leader !== leader) continue;
          progressed = (await this.#apply(followed.replica, answer)) || progressed;
        }
        backoff = 50;
        // Every partition refused (a leadership in flux): wait a little instead of spinning.
        if (!progressed && answers.partitions.every((a) => a.error)) await this.#sleep(100);
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
      const isr = replica.isrChange(now, this.#options.replicaLagTimeMaxMs, (id) => this.#cluster.isLive(id));
      if (!isr) continue;
      const topicId = this.#topics.topicId(replica.topic);
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
          this.#logger.info(
            { topic: replica.topic, partition: replica.partition, isr, was: replica.inSyncReplicas },
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
            return this.#dropProposalOnceCaughtUp(replica, isr);
          },
        );
    }
  }

  /** Committed: the metadata change has replaced the proposal already; refused for sure: drop it. */
  #dropProposal(replica: PartitionReplica, isr: readonly number[]): void {
    if (replica.proposedIsr && sameMembers(replica.proposedIsr, isr)) replica.proposeIsr(undefined);
  }

  async #dropProposalOnceCaughtUp(replica: PartitionReplica, isr: readonly number[]): Promise<void> {
    const epoch = replica.leaderEpoch;
    let backoffMs = 100;
    while (!this.#closed && replica.isLeader && replica.leaderEpoch === epoch && replica.proposedIsr) {
      try {
        await this.#cluster.submit({ type: 'readIndex' });
        this.#dropProposal(replica, isr);
        return;
      } catch {
        await this.#sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 1000);
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.setTimeout(resolve, ms));
  }
}

function sameMembers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}
