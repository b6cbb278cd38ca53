import type {
  Acks,
  ClusterResponse,
  DecommissionResponse,
  GroupDescriptionResponse,
  GroupMemberView,
  MetadataResponse,
  OffsetsResponse,
  ReassignmentsResponse,
  ReassignRequest,
  TopicDescription,
} from '../protocol/api.js';
import type { ProducerFields, RecordInput } from '../protocol/batch.js';
import type { ProduceRecordSource } from '../protocol/produce-body.js';
import type { ConfigValue } from '../protocol/topic-config.js';

export type { RaftStatus } from '../raft/driver.js';
export type { Message as RaftMessage } from '../raft/types.js';

/**
 * The interfaces the HTTP layer sees of a node's broker, one per job. `http/` imports these types
 * and nothing else of `broker/`, so that routes can be tested against any implementation.
 */

export interface ProduceInput extends Omit<RecordInput, 'timestamp' | 'offsetDelta'> {
  /** Milliseconds since the epoch; the broker's clock when absent. */
  timestamp?: number;
  partition?: number;
}

/** Where each record of a produce request landed, in request order. */
export interface ProducedOffsets {
  count: number;
  partitions: Int32Array;
  offsets: Float64Array;
  /** The request was an idempotent producer's retry: the offsets are those of its first try. */
  duplicate?: boolean;
}

export interface ProduceOptions {
  /** The leader epoch the client knows of the partition it names (KIP-320); checked where it is led. */
  leaderEpoch?: number;
  /** How long an acks=all produce waits for the in-sync set (REQUEST_TIMED_OUT after); 30 s when absent. */
  timeoutMs?: number;
  /**
   * An idempotent producer's id, epoch and the sequence of the request's first record: the records
   * become one batch with these fields, which the leader checks (a retry is answered with the
   * offsets of its first try). Only for records sent to one partition.
   */
  producer?: ProducerFields;
}

export interface QuorumMembers {
  voters: number[];
  learners: number[];
}

export interface AppendedBatches {
  partition: number;
  baseOffset: number;
  lastOffset: number;
  batchCount: number;
  /** The batches were an idempotent producer's retry: nothing was appended, these are the first try's. */
  duplicate?: boolean;
}

export interface CreateTopicRequest {
  name: string;
  partitions?: number;
  replicationFactor?: number;
  configs?: Record<string, ConfigValue>;
}

export interface TopicSummary {
  name: string;
  partitions: number;
  replicationFactor: number;
}

export type FetchOffset = number | 'earliest' | 'latest';

export interface FetchOptions {
  offset: FetchOffset;
  maxBytes: number;
  maxWaitMs: number;
  minBytes: number;
  signal?: AbortSignal;
  /** Bytes to leave free around the returned batches, for framing them without a copy. */
  reserve?: { before: number; after: number };
  /**
   * Where the read's buffer comes from (a `BufferLease` of the caller's, released once the answer
   * is written); a fresh allocation when absent.
   */
  allocate?: (bytes: number) => Buffer;
  /** A check whose data is not sent to the consumer: not counted in the records and bytes out. */
  probe?: boolean;
  /** The leader epoch the client knows (KIP-320): a stale or unknown one is refused. */
  leaderEpoch?: number;
  /**
   * The codec numbers the client reads (a msgpack fetch): stored batches in other codecs come back
   * decompressed. Absent: the batches as stored (the decoding paths decompress as they decode).
   */
  acceptCodecs?: ReadonlySet<number>;
}

export interface FetchResult {
  /** Whole stored batches back to back. */
  data: Buffer;
  /** Set when the bytes asked for by `reserve` are free around `data` in its own buffer. */
  reserved?: { before: number; after: number };
  batchCount: number;
  /** The offset the read started from (after resolving earliest/latest). */
  offset: number;
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

/** The node itself: who it is and whether it is shutting down. */
export interface NodeApi {
  readonly nodeId: number;
  readonly version: string;
  /** Set once a clean shutdown began: new requests are refused with SHUTTING_DOWN. */
  readonly shuttingDown: boolean;
  /** Whether the node serves: its logs are open (recovered) and it is not shutting down. */
  readonly ready: boolean;
}

export interface AdminApi {
  cluster(): ClusterResponse;
  /** `cluster()` with each voter's status, asked of the voters (`GET /v1/cluster`). */
  describeCluster(): Promise<ClusterResponse>;
  listTopics(): TopicSummary[];
  createTopic(request: CreateTopicRequest): Promise<TopicDescription>;
  describeTopic(name: string): Promise<TopicDescription>;
  deleteTopic(name: string): Promise<{ name: string; deleted: true }>;
  /** Sets configs; a null value resets that config to the default. */
  alterConfigs(name: string, changes: Record<string, ConfigValue | null>): Promise<TopicDescription>;
  addPartitions(name: string, partitions: number): Promise<TopicDescription>;
  /** Makes a learner of the metadata quorum a voter; resolves with the members. */
  addVoter(nodeId: number): Promise<QuorumMembers>;
  /** Takes a voter out of the metadata quorum (it stays a learner); resolves with the members. */
  removeVoter(nodeId: number): Promise<QuorumMembers>;
  /** Leaders, epochs, replicas and node endpoints of the topics named (all when absent). */
  metadata(topics?: readonly string[]): Promise<MetadataResponse>;
  /** Reassignments in progress, with each adding replica's lag. */
  listReassignments(): Promise<ReassignmentsResponse>;
  /** Starts or cancels reassignments (all or none); resolves with those in progress after. */
  reassignPartitions(request: ReassignRequest): Promise<ReassignmentsResponse>;
  /** Moves every replica off the broker; resolves with what it still holds and the moves in progress. */
  decommissionBroker(brokerId: number): Promise<DecommissionResponse>;
}

/**
 * Where a partition's requests go in a cluster. The HTTP layer forwards a produce, fetch or offsets
 * request for a partition that another node leads to that node, and answers the rest itself.
 */
export interface RoutingApi {
  /**
   * The node that leads the partition, when that is another node, with its base URL
   * (`http://host:port`); undefined when this node answers itself: it leads the partition, the
   * topic or partition does not exist (the local handler says so), or the partition has no leader.
   */
  forwardTarget(topic: string, partition: number): { nodeId: number; url: string } | undefined;
  /**
   * Whether this node's metadata has the partition at all; when not, `catchUp` (waiting until the
   * metadata holds what the controller has decided) may show it: it was created a moment ago.
   */
  knows?(topic: string, partition: number): boolean;
  catchUp?(): Promise<void>;
  /**
   * The node that coordinates the group (the leader of its partition of `__consumer_offsets`),
   * when that is another node; undefined when this node answers itself.
   */
  groupTarget?(group: string): { nodeId: number; url: string } | undefined;
  /** The cluster secret a forwarded request presents, so that the leader knows it was forwarded. */
  readonly clusterSecret: string;
}

export interface ProduceApi {
  /** Partitions and appends records given as objects; each record's partition and offset in order. */
  records(
    topic: string,
    records: readonly ProduceInput[],
    acks: Acks,
  ): Promise<{ partition: number; offset: number }[]>;
  /** Partitions and appends the records of a request body; with acks=0 the result holds none. */
  from(
    topic: string,
    records: ProduceRecordSource,
    acks: Acks,
    options?: ProduceOptions,
  ): Promise<ProducedOffsets>;
  /**
   * A new idempotent producer: a producer id no other producer of the cluster has, at epoch 0.
   * Its batches carry the id, the epoch and per-partition sequence numbers from 0.
   */
  initProducer(): Promise<{ producerId: number; producerEpoch: number }>;
  /**
   * Partitions the records of pre-built batches (compressed or not) as `from` does, reading them
   * through decompression: the batches are appended as sent when every record goes to one
   * partition this node leads, else each partition's share is encoded again in the batches' codec.
   */
  topicBatches(topic: string, data: Buffer, acks: Acks, options?: ProduceOptions): Promise<ProducedOffsets>;
  /** Appends pre-built batches to one partition; undefined with acks=0. */
  batches(
    topic: string,
    partition: number,
    data: Buffer,
    acks: Acks,
    options?: ProduceOptions,
  ): Promise<AppendedBatches | undefined>;
}

export interface FetchApi {
  /** Reads whole batches; waits up to maxWaitMs for at least minBytes (at least one batch). */
  read(topic: string, partition: number, options: FetchOptions): Promise<FetchResult>;
  offsets(
    topic: string,
    partition: number,
    timestamp?: number,
    leaderEpoch?: number,
  ): Promise<OffsetsResponse>;
  /** Long-poll fetches and follow streams waiting for records now. */
  readonly waiting: number;
  /** The most waiting fetches the broker holds at once; more are refused with LIMIT_EXCEEDED. */
  readonly waitingMax: number;
}

// ---- consumer groups (docs/groups.md) ----

export interface TopicPartitionRef {
  topic: string;
  partition: number;
}

export interface GroupJoinInput {
  topics?: string[];
  pattern?: string;
  sessionTimeoutMs?: number;
  instanceId?: string;
  assignor?: 'range' | 'roundrobin' | 'sticky';
  autoOffsetReset?: 'earliest' | 'latest';
}

export interface GroupHeartbeatInput {
  memberEpoch?: number;
  owned?: TopicPartitionRef[];
  paused?: TopicPartitionRef[];
  seek?: { topic: string; partition: number; offset: number }[];
}

export interface GroupPollOptions {
  memberEpoch?: number;
  maxBytes: number;
  maxWaitMs: number;
  /** Commit what the previous poll returned before reading. */
  autoCommit: boolean;
  signal?: AbortSignal;
  /** Bytes to leave free around each partition's batches (msgpack framing). */
  reserve?: { before: number; after: number };
}

/** One poll: the member's epoch and assignment, and a read of each partition it polled. */
export interface GroupPollResult {
  memberEpoch: number;
  assignment: TopicPartitionRef[];
  partitions: (TopicPartitionRef & FetchResult)[];
}

export interface GroupCommitInput {
  memberId?: string;
  memberEpoch?: number;
  offsets: { topic: string; partition: number; offset: number; metadata?: string }[];
}

export interface GroupResetInput {
  topic: string;
  partitions?: number[];
  to: 'earliest' | 'latest' | 'timestamp' | 'shift' | 'offset';
  timestamp?: number;
  shift?: number;
  offset?: number;
}

export interface GroupsApi {
  join(group: string, input: GroupJoinInput): Promise<GroupMemberView>;
  heartbeat(group: string, member: string, input: GroupHeartbeatInput): Promise<GroupMemberView>;
  leave(group: string, member: string): Promise<void>;
  poll(group: string, member: string, options: GroupPollOptions): Promise<GroupPollResult>;
  commit(group: string, input: GroupCommitInput): Promise<number>;
  /** Groups of this node's coordinators, or (`cluster`) of every node. */
  list(
    scope: 'local' | 'cluster',
  ): Promise<{ group: string; state: string; members: number; coordinator: number }[]>;
  describe(group: string): Promise<GroupDescriptionResponse>;
  resetOffsets(group: string, input: GroupResetInput): Promise<(TopicPartitionRef & { offset: number })[]>;
  delete(group: string): Promise<void>;
}

/** Everything the HTTP layer may ask of a node. */
export interface BrokerApi {
  readonly node: NodeApi;
  readonly admin: AdminApi;
  readonly produce: ProduceApi;
  readonly fetch: FetchApi;
  /** Consumer groups, where this node coordinates them (or forwards to where they are). */
  readonly groups?: GroupsApi;
  /** Present in a cluster: which requests another node must answer. */
  readonly routing?: RoutingApi;
}
