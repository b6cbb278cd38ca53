import { SluiceError } from '../common/errors.js';
import { type Acks, ENDPOINTS, endpointUrl, MEDIA, type PartitionStats } from '../protocol/api.js';
import { FORWARDED_BY_HEADER, LEADER_OFFSETS_PATH } from '../protocol/internal-api.js';
import type { AppendedBatches } from './api.js';
import { errorOf, type PeerClient } from './peer-client.js';

/** Who leads what and where each node is, as this node's metadata image says. */
export interface ClusterDirectory {
  /** The partition's leader (-1: none); undefined when the topic or partition does not exist. */
  leaderOf(topic: string, partition: number): number | undefined;
  /** A node's base URL (`http://host:port`) from its registration; undefined when unknown. */
  urlOf(nodeId: number): string | undefined;
}

const REMOTE_TIMEOUT_MS = 30_000;

/**
 * Partitions this node does not lead, reached through the nodes that do: the share of a topic
 * produce that belongs to another node's partition goes there as a pre-built batch, and a describe
 * asks the leader for offsets.
 */
export class RemotePartitions {
  readonly #nodeId: number;
  readonly #directory: ClusterDirectory;
  readonly #peers: PeerClient;
  readonly clusterSecret: string;

  readonly #catchUp: (() => Promise<void>) | undefined;

  constructor(
    options: { nodeId: number; clusterSecret: string },
    deps: { directory: ClusterDirectory; peers: PeerClient; catchUp?: () => Promise<void> },
  ) {
    this.#catchUp = deps.catchUp;
    this.#nodeId = options.nodeId;
    this.clusterSecret = options.clusterSecret;
    this.#directory = deps.directory;
    this.#peers = deps.peers;
  }

  knows(topic: string, partition: number): boolean {
    return this.#directory.leaderOf(topic, partition) !== undefined;
  }

  /** Waits until this node's metadata holds what the controller had decided (gives up quietly). */
  catchUp(): Promise<void> {
    return this.#catchUp ? this.#catchUp() : Promise.resolve();
  }

  /** The other node that leads the partition, with its URL; undefined when this node answers itself. */
  forwardTarget(topic: string, partition: number): { nodeId: number; url: string } | undefined {
    const leader = this.#directory.leaderOf(topic, partition);
    if (leader === undefined || leader < 0 || leader === this.#nodeId) return undefined;
    const url = this.#directory.urlOf(leader);
    return url === undefined ? undefined : { nodeId: leader, url };
  }

  /** Set by the broker: the other node that coordinates a group (RoutingApi.groupTarget). */
  groupTarget?: (group: string) => { nodeId: number; url: string } | undefined;

  /**
   * A public API request to another node, marked as forwarded so that it answers it itself (the
   * group coordinator reading a partition another node leads, or asking a node for its groups).
   */
  async request(
    target: { nodeId: number; url: string },
    method: string,
    path: string,
    accept: string = MEDIA.json,
  ): Promise<Buffer> {
    const response = await this.#peers.request(target.url, {
      method,
      path,
      headers: { accept, [FORWARDED_BY_HEADER]: String(this.#nodeId) },
      timeoutMs: REMOTE_TIMEOUT_MS,
    });
    if (response.status !== 200) throw errorOf(response, `node ${target.nodeId}`);
    return response.body;
  }

  /** Appends one pre-built batch on the leader; undefined with acks=0 (sent, not awaited). */
  async append(
    target: { nodeId: number; url: string },
    topic: string,
    partition: number,
    batch: Buffer,
    acks: Acks,
    /** How long the leader may wait for its in-sync replicas (acks=all), as the client asked. */
    timeoutMs?: number,
  ): Promise<AppendedBatches | undefined> {
    const query: Record<string, string> = { acks: String(acks) };
    if (timeoutMs !== undefined) query.timeoutMs = String(timeoutMs);
    const path = endpointUrl(ENDPOINTS.producePartition, { topic, partition }, query);
    const response = await this.#peers.request(target.url, {
      method: 'POST',
      path,
      headers: {
        'content-type': MEDIA.batches,
        accept: MEDIA.json,
        [FORWARDED_BY_HEADER]: String(this.#nodeId),
      },
      body: batch,
      // The leader answers REQUEST_TIMED_OUT itself once its wait ends; this only covers a leader
      // that does not answer at all.
      timeoutMs: Math.max(REMOTE_TIMEOUT_MS, (timeoutMs ?? 0) + 5000),
    });
    if (response.status !== 200) throw errorOf(response, `node ${target.nodeId}`);
    if (acks === 0) return undefined;
    const answer = JSON.parse(response.body.toString('utf8')) as AppendedBatches;
    if (!Number.isSafeInteger(answer.baseOffset))
      throw new SluiceError(
        'UNKNOWN_SERVER_ERROR',
        `node ${target.nodeId} answered a produce without offsets`,
      );
    return answer;
  }

  /** The offsets of every partition of `topic` the target leads, by partition. */
  async topicOffsets(
    target: { nodeId: number; url: string },
    topic: string,
  ): Promise<
    Map<
      number,
      {
        logStartOffset: number;
        logEndOffset: number;
        highWatermark: number;
        replicaStates?: { id: number; logEndOffset: number; lag: number }[];
        stats?: PartitionStats;
      }
    >
  > {
    const response = await this.#peers.request(target.url, {
      method: 'GET',
      path: `${LEADER_OFFSETS_PATH}?topic=${encodeURIComponent(topic)}`,
      headers: { accept: MEDIA.json },
      timeoutMs: REMOTE_TIMEOUT_MS,
    });
    if (response.status !== 200) throw errorOf(response, `node ${target.nodeId}`);
    const answer = JSON.parse(response.body.toString('utf8')) as {
      partitions: {
        partition: number;
        logStartOffset: number;
        logEndOffset: number;
        highWatermark: number;
        replicaStates?: { id: number; logEndOffset: number; lag: number }[];
        stats?: PartitionStats;
      }[];
    };
    return new Map(answer.partitions.map((p) => [p.partition, p]));
  }
}
