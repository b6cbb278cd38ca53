import { LIMITS } from '../common/limits.js';

/**
 * The public HTTP API, defined once. The fastify routes (src/http) and the SDK calls (src/client)
 * are both derived from this table; a table test runs every endpoint in JSON and msgpack.
 *
 * Wire conventions (docs/api.md):
 * - Bodies: `application/vnd.msgpack` (or `application/msgpack`) or `application/json`; responses
 *   follow `Accept`. In JSON, keys, values and header values are UTF-8 strings unless
 *   `valueEncoding=base64` is asked; in msgpack they are bin.
 * - Errors: `application/problem+json` with `type`, `title`, `status`, `detail`, `code`, `retriable`
 *   and optional typed details (src/common/errors.ts holds the codes).
 * - Fetch in msgpack carries stored batches as stored (see src/protocol/batch.ts and
 *   docs/storage-format.md): `{batches: [batch, ...], nextOffset, highWatermark, logStartOffset}`.
 * - Produce of pre-built batches: `Content-Type: application/vnd.sluice.batches`, the body is one
 *   or more stored-layout batches back to back; the broker checks header, sizes and CRC, assigns
 *   offsets and appends without decoding a record.
 */

export const MEDIA = {
  json: 'application/json',
  msgpack: 'application/vnd.msgpack',
  msgpackAlt: 'application/msgpack',
  problem: 'application/problem+json',
  ndjson: 'application/x-ndjson',
  octetStream: 'application/octet-stream',
  eventStream: 'text/event-stream',
  batches: 'application/vnd.sluice.batches',
} as const;

/**
 * The response header that names the node that served a request (`sluice-node-id: 2`). Every
 * answer carries it; a forwarded answer carries the leader's, passed through by the node that
 * forwarded it.
 */
export const NODE_ID_HEADER = 'sluice-node-id';

export type Acks = 0 | 1 | -1;

/** `acks=all` is -1, as in Kafka. */
export function parseAcks(value: string | number | undefined): Acks | undefined {
  if (value === undefined) return undefined;
  const s = String(value);
  if (s === 'all' || s === '-1') return -1;
  if (s === '0') return 0;
  if (s === '1') return 1;
  return undefined;
}

/** Kafka's rule: 1 to 249 of `[a-zA-Z0-9._-]`; the same limit for create and for every path. */
export const TOPIC_NAME_PATTERN = `^[a-zA-Z0-9._-]{1,${LIMITS.topicNameLengthMax}}$`;

/** `topics=` of `GET /v1/metadata`: topic names, comma-separated; empty for none. */
const METADATA_TOPICS_PATTERN = '^([a-zA-Z0-9._-]+(,[a-zA-Z0-9._-]+)*)?$';

// ---- request and response shapes (JSON view; msgpack carries the same fields) ----

export interface TopicCreateRequest {
  name: string;
  partitions?: number;
  replicationFactor?: number;
  configs?: Record<string, string | number | boolean>;
}

export interface PartitionInfo {
  partition: number;
  leader: number;
  leaderEpoch: number;
  replicas: number[];
  isr: number[];
  /**
   * The eligible leader replicas, when there are any: out of the in-sync set, but sure to hold
   * every committed record (they left it while it was smaller than `min.insync.replicas`).
   */
  elr?: number[];
  logStartOffset: number;
  logEndOffset: number;
  highWatermark: number;
  /**
   * On a replicated partition, as its leader sees them: each follower's log end (-1 before its
   * first fetch in this leadership) and how many records it is behind the leader's log end.
   */
  replicaStates?: { id: number; logEndOffset: number; lag: number }[];
  /** The leader's figures for the partition; absent when the leader did not answer or there is none. */
  stats?: PartitionStats;
}

/**
 * A partition as its leader holds and counts it: segments and bytes on its disk, and the records
 * and bytes appended (in) and read by consumers (out) since the leader's node started. The counts
 * start again from 0 on a new leader or a restart; a rate is the difference of two samples.
 */
export interface PartitionStats {
  segments: number;
  sizeBytes: number;
  recordsIn: number;
  bytesIn: number;
  recordsOut: number;
  bytesOut: number;
  /** Idempotent producers the partition keeps state of (their last batches, until they expire). */
  producers: number;
}

export interface TopicDescription {
  name: string;
  partitions: PartitionInfo[];
  replicationFactor: number;
  configs: Record<string, string | number | boolean>;
}

export interface ProduceRecord<V = Uint8Array | string> {
  key?: V | null;
  value?: V | null;
  headers?: Record<string, V | null> | [string, V | null][];
  partition?: number;
  timestamp?: number;
}

export interface ProduceResponse {
  offsets: { partition: number; offset: number }[];
  /** The node that led the partition(s) and served the request. */
  servedBy?: number;
}

export interface FetchedRecord<V = Uint8Array | string> {
  offset: number;
  timestamp: number;
  key: V | null;
  value: V | null;
  headers: Record<string, V | null>;
}

export interface FetchResponse<V = Uint8Array | string> {
  records: FetchedRecord<V>[];
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

/** The msgpack form of a fetch: stored batches as stored. */
export interface FetchBatchesResponse {
  batches: unknown[];
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

export interface OffsetsResponse {
  partition: number;
  earliest: number;
  latest: number;
  highWatermark: number;
  /** Present when `timestamp` was asked: first offset whose timestamp is at or after it, or null. */
  offset?: number | null;
  timestamp?: number;
}

export interface ClusterResponse {
  clusterId: string;
  nodeId: number;
  version: string;
  /** The active controller: the leader of the metadata quorum, null while there is none. */
  controllerId: number | null;
  nodes: {
    id: number;
    host: string;
    port: number;
    rack?: string | null;
    /** A fenced broker leads nothing until its heartbeats unfence it. */
    fenced?: boolean;
    /** The offset of the broker's registration in the metadata log; new at every restart. */
    brokerEpoch?: number;
    /** `controller` (a voter of the metadata quorum), `broker` (registered, holds partitions), or both. */
    roles?: NodeRole[];
  }[];
  /** The metadata quorum as this node sees it. */
  metadata?: {
    role: string;
    term: number;
    commitIndex: number;
    appliedIndex: number;
    voters: number[];
    /** The offset of the last metadata record this node has applied. */
    lastOffset: number;
    /** This node's last Raft log index. */
    lastIndex: number;
    /**
     * On the active controller: each other voter's match index and how many entries it is behind
     * (`lastIndex - matchIndex`); empty on the other nodes.
     */
    followers: { id: number; matchIndex: number; lag: number }[];
    /** Each voter's own Raft status, as the voters answered this node (any node answers it). */
    quorum?: QuorumStatus;
  };
}

export type NodeRole = 'controller' | 'broker';

/**
 * Every voter of the metadata quorum: its term, commit and applied index as it reports them (asked
 * with a short timeout; `reachable: false` when it did not answer), and its match index and lag as
 * the active controller counts them. `source` says whose counts those are: `controller` (the
 * active controller answered, or this node is it) or `local` (no controller answered: lag is then
 * behind the longest log this node heard of, and no match index is known).
 */
export interface QuorumStatus {
  source: 'controller' | 'local';
  controllerId: number | null;
  voters: {
    id: number;
    reachable: boolean;
    role?: string;
    term?: number;
    commitIndex?: number;
    appliedIndex?: number;
    lastIndex?: number;
    matchIndex?: number;
    lag?: number;
  }[];
}

/** `GET /v1/metadata`: where each partition is led, and how to reach every node. */
export interface MetadataResponse {
  clusterId: string;
  /** The active controller, null while the metadata quorum has no leader. */
  controllerId: number | null;
  /** Every registered broker with the endpoint clients use (its advertised address). */
  nodes: { id: number; host: string; port: number; rack: string | null; fenced: boolean }[];
  topics: {
    name: string;
    topicId: string;
    partitions: {
      partition: number;
      /** The node that leads the partition; -1 while it has none (every in-sync replica is down). */
      leader: number;
      leaderEpoch: number;
      replicas: number[];
      isr: number[];
    }[];
  }[];
  /** Topics asked for by `topics=` that do not exist. */
  unknownTopics: string[];
}

/** A partition's reassignment in progress, and how far each replica it adds has caught up. */
export interface ReassignmentInfo {
  topic: string;
  partition: number;
  /** Every replica while it runs: the target first, then those being removed. */
  replicas: number[];
  /** What the replicas are once it completes. */
  targetReplicas: number[];
  addingReplicas: number[];
  removingReplicas: number[];
  isr: number[];
  leader: number;
  /**
   * Each adding replica's log end and lag behind the leader's log end as the leader sees them (-1:
   * it has not fetched yet, or the leader did not answer).
   */
  progress: { id: number; logEndOffset: number; lag: number; inSync: boolean }[];
}

export interface ReassignmentsResponse {
  reassignments: ReassignmentInfo[];
}

/** `POST /v1/reassignments`: a target per partition, or null to cancel its reassignment. */
export interface ReassignRequest {
  partitions: { topic: string; partition: number; replicas: number[] | null }[];
}

export interface DecommissionResponse {
  brokerId: number;
  /** The partitions that still have a replica on the broker (0: it holds none any more). */
  partitionsHeld: number;
  /** The reassignments moving replicas off it, in progress. */
  reassignments: ReassignmentInfo[];
}

export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  retriable: boolean;
  instance?: string;
  [detail: string]: unknown;
}

// ---- the endpoint table ----

export interface Endpoint {
  id: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** fastify path syntax. */
  path: string;
  summary: string;
  params?: object;
  querystring?: object;
  /** JSON schema of the JSON/msgpack body; absent when the route takes no body. */
  body?: object;
  /**
   * The media types of the request bodies the endpoint takes; absent when it takes no body. Any
   * other Content-Type is UNSUPPORTED_MEDIA_TYPE, checked before the body is read.
   */
  consumes?: readonly string[];
  /**
   * The media types the endpoint can answer in (problems are always problem+json). An Accept
   * that lists none of them is NOT_ACCEPTABLE, checked before the body is read or anything runs.
   */
  produces: readonly string[];
  successStatus: number;
  /** JSON schema of the success answer in JSON (msgpack carries the same fields, bytes as bin). */
  response?: object;
}

/** Every endpoint answers in JSON and msgpack; fetch also streams. */
const ANSWERS = [MEDIA.json, MEDIA.msgpack] as const;
const FETCH_ANSWERS = [MEDIA.json, MEDIA.msgpack, MEDIA.ndjson, MEDIA.eventStream] as const;
/** Admin bodies are one JSON or msgpack document. */
const DOCUMENT_BODIES = [MEDIA.json, MEDIA.msgpack, MEDIA.msgpackAlt] as const;
/**
 * Both produce routes take pre-built batches (compressed or not): the partition route appends them
 * as sent; the topic route reads their records (decompressing) to partition them by key, and
 * appends them as sent when every record goes to one partition.
 */
const RECORD_BODIES = [...DOCUMENT_BODIES, MEDIA.ndjson, MEDIA.octetStream, MEDIA.batches] as const;
const PARTITION_RECORD_BODIES = RECORD_BODIES;

const topicParam = { type: 'string', pattern: TOPIC_NAME_PATTERN } as const;
const partitionParam = { type: 'integer', minimum: 0, maximum: 9999 } as const;
const topicParams = { type: 'object', required: ['topic'], properties: { topic: topicParam } } as const;
const partitionParams = {
  type: 'object',
  required: ['topic', 'partition'],
  properties: { topic: topicParam, partition: partitionParam },
} as const;
const produceQuery = {
  type: 'object',
  properties: {
    acks: { type: 'string', enum: ['0', '1', 'all', '-1'], default: 'all' },
    timeoutMs: { type: 'integer', minimum: 0, maximum: 300000 },
  },
} as const;
/** The leader epoch a client knows of the partition it names (KIP-320); see FENCED_LEADER_EPOCH. */
const leaderEpochQuery = { type: 'integer', minimum: 0, maximum: 2147483647 } as const;
const partitionProduceQuery = {
  type: 'object',
  properties: { ...produceQuery.properties, leaderEpoch: leaderEpochQuery },
} as const;
/** The metadata quorum's members after a voter change, as the node that answered applied them. */
const nodeIdParam = { type: 'integer', minimum: 0, maximum: 2147483647 } as const;
const votersSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['voters', 'learners'],
  properties: {
    voters: { type: 'array', items: { type: 'integer', minimum: 0 } },
    learners: { type: 'array', items: { type: 'integer', minimum: 0 } },
  },
} as const;
/** A reassignment, in the responses of the reassignment endpoints. */
const brokerIds = { type: 'array', items: { type: 'integer', minimum: 0 } } as const;
const reassignmentSchema = {
  type: 'object',
  additionalProperties: false,
  required: [
    'topic',
    'partition',
    'replicas',
    'targetReplicas',
    'addingReplicas',
    'removingReplicas',
    'isr',
    'leader',
    'progress',
  ],
  properties: {
    topic: { type: 'string' },
    partition: { type: 'integer' },
    replicas: brokerIds,
    targetReplicas: brokerIds,
    addingReplicas: brokerIds,
    removingReplicas: brokerIds,
    isr: brokerIds,
    leader: { type: 'integer', minimum: -1 },
    progress: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'logEndOffset', 'lag', 'inSync'],
        properties: {
          id: { type: 'integer', minimum: 0 },
          logEndOffset: { type: 'integer', minimum: -1 },
          lag: { type: 'integer', minimum: -1 },
          inSync: { type: 'boolean' },
        },
      },
    },
  },
} as const;
const reassignmentsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['reassignments'],
  properties: { reassignments: { type: 'array', items: reassignmentSchema } },
} as const;
const configValue = { anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }] } as const;
const configsSchema = { type: 'object', additionalProperties: configValue, maxProperties: 100 } as const;

// ---- response schemas (JSON view), for /openapi.json and the contract tests ----

const int = { type: 'integer' };
const offsetSchema = { type: 'integer', minimum: 0 };
const nodeIdSchema = { type: 'integer', minimum: 0 };
const count = { type: 'integer', minimum: 0 };
const closed = (properties: Record<string, object>, optional: string[] = []) => ({
  type: 'object',
  additionalProperties: false,
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
  properties,
});
const topicDescriptionSchema = closed({
  name: { type: 'string' },
  partitions: {
    type: 'array',
    items: closed(
      {
        partition: int,
        // -1: no leader; offsets -1: the leader did not answer.
        leader: { type: 'integer', minimum: -1 },
        leaderEpoch: int,
        replicas: { type: 'array', items: nodeIdSchema },
        isr: { type: 'array', items: nodeIdSchema },
        elr: { type: 'array', items: nodeIdSchema },
        logStartOffset: { type: 'integer', minimum: -1 },
        logEndOffset: { type: 'integer', minimum: -1 },
        highWatermark: { type: 'integer', minimum: -1 },
        replicaStates: {
          type: 'array',
          items: closed({ id: nodeIdSchema, logEndOffset: { type: 'integer', minimum: -1 }, lag: int }),
        },
        stats: closed(
          {
            segments: count,
            sizeBytes: count,
            recordsIn: count,
            bytesIn: count,
            recordsOut: count,
            bytesOut: count,
            producers: count,
          },
          ['producers'],
        ),
      },
      ['replicaStates', 'stats', 'elr'],
    ),
  },
  replicationFactor: int,
  configs: configsSchema,
});
const offsetsListSchema = closed(
  {
    offsets: { type: 'array', items: closed({ partition: int, offset: offsetSchema }) },
    servedBy: nodeIdSchema,
    // An idempotent producer's retry: the offsets are those of the first try, nothing was appended.
    duplicate: { type: 'boolean' },
  },
  ['servedBy', 'duplicate'],
);
const batchesAppendedSchema = closed(
  {
    partition: int,
    baseOffset: offsetSchema,
    lastOffset: offsetSchema,
    batchCount: int,
    duplicate: { type: 'boolean' },
  },
  ['duplicate'],
);
const textOrNull = { type: ['string', 'null'] };
const fetchedRecordSchema = closed(
  {
    offset: offsetSchema,
    timestamp: int,
    key: textOrNull,
    value: textOrNull,
    headers: { type: 'object', additionalProperties: textOrNull },
    keyEncoding: { const: 'base64' },
    valueEncoding: { const: 'base64' },
  },
  ['keyEncoding', 'valueEncoding'],
);

// ---- consumer groups (docs/groups.md) ----

/** Group ids: 1 to 249 of `[a-zA-Z0-9._:-]`, so that every id is also a safe path segment. */
export const GROUP_ID_PATTERN = `^[a-zA-Z0-9._:-]{1,${LIMITS.topicNameLengthMax}}$`;
export const MEMBER_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';
const groupParams = {
  type: 'object',
  required: ['group'],
  properties: { group: { type: 'string', pattern: GROUP_ID_PATTERN } },
} as const;
const memberParams = {
  type: 'object',
  required: ['group', 'member'],
  properties: {
    group: { type: 'string', pattern: GROUP_ID_PATTERN },
    member: { type: 'string', pattern: MEMBER_ID_PATTERN },
  },
} as const;
const topicPartitionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['topic', 'partition'],
  properties: { topic: topicParam, partition: partitionParam },
} as const;
const topicPartitionList = { type: 'array', maxItems: 10000, items: topicPartitionSchema } as const;
const memberEpochSchema = { type: 'integer', minimum: 0, maximum: 2147483647 } as const;
const memberViewSchema = closed({
  group: { type: 'string' },
  memberId: { type: 'string' },
  memberEpoch: int,
  groupEpoch: int,
  heartbeatIntervalMs: int,
  sessionTimeoutMs: int,
  assignment: topicPartitionList,
  pending: topicPartitionList,
});
const groupStateSchema = { enum: ['empty', 'reconciling', 'stable'] };

export interface GroupMemberView {
  group: string;
  memberId: string;
  memberEpoch: number;
  groupEpoch: number;
  heartbeatIntervalMs: number;
  sessionTimeoutMs: number;
  assignment: { topic: string; partition: number }[];
  pending: { topic: string; partition: number }[];
}

/** `GET /v1/groups/{group}`: the group, its members and each partition's committed offset and lag. */
export interface GroupDescriptionResponse {
  group: string;
  state: 'empty' | 'reconciling' | 'stable';
  groupEpoch: number;
  assignmentEpoch: number;
  assignor: string;
  coordinator: number;
  members: {
    memberId: string;
    instanceId: string | null;
    memberEpoch: number;
    topics: string[];
    pattern: string | null;
    sessionTimeoutMs: number;
    assignment: { topic: string; partition: number }[];
    revoking: { topic: string; partition: number }[];
  }[];
  partitions: {
    topic: string;
    partition: number;
    /** The member holding it, or null. */
    owner: string | null;
    /** Null when nothing is committed. */
    committed: number | null;
    metadata: string | null;
    logEndOffset: number;
    /** Records between the committed offset (the log start when none) and the high watermark; -1 unknown. */
    lag: number;
  }[];
}

/** A poll in JSON: the records of every assigned partition, then each partition's next offset. */
export interface GroupPollResponse<V = string> {
  memberEpoch: number;
  assignment: { topic: string; partition: number }[];
  records: (FetchedRecord<V> & { topic: string; partition: number })[];
  partitions: { topic: string; partition: number; nextOffset: number; highWatermark: number }[];
}

export const ENDPOINTS = {
  health: {
    id: 'health',
    produces: ANSWERS,
    method: 'GET',
    path: '/healthz',
    summary: 'Liveness and readiness',
    successStatus: 200,
    response: closed({ status: { const: 'ok' }, nodeId: nodeIdSchema }),
  },
  livez: {
    id: 'livez',
    produces: ANSWERS,
    method: 'GET',
    path: '/livez',
    summary: 'Liveness: the process answers (also while it shuts down)',
    successStatus: 200,
    response: closed({ status: { const: 'alive' }, nodeId: nodeIdSchema }),
  },
  readyz: {
    id: 'readyz',
    produces: ANSWERS,
    method: 'GET',
    path: '/readyz',
    summary: 'Readiness: the logs are recovered and open, and the node is not shutting down (else 503)',
    successStatus: 200,
    response: closed({ status: { const: 'ready' }, nodeId: nodeIdSchema }),
  },
  cluster: {
    id: 'cluster',
    produces: ANSWERS,
    method: 'GET',
    path: '/v1/cluster',
    summary: 'Nodes, this node and its version',
    successStatus: 200,
    response: closed(
      {
        clusterId: { type: 'string' },
        nodeId: nodeIdSchema,
        version: { type: 'string' },
        controllerId: { type: ['integer', 'null'] },
        nodes: {
          type: 'array',
          items: closed(
            {
              id: nodeIdSchema,
              host: { type: 'string' },
              port: int,
              rack: { type: ['string', 'null'] },
              fenced: { type: 'boolean' },
              brokerEpoch: int,
              roles: { type: 'array', items: { enum: ['controller', 'broker'] } },
            },
            ['rack', 'fenced', 'brokerEpoch', 'roles'],
          ),
        },
        metadata: closed(
          {
            role: { type: 'string' },
            term: int,
            commitIndex: int,
            appliedIndex: int,
            voters: { type: 'array', items: nodeIdSchema },
            lastOffset: int,
            lastIndex: int,
            followers: {
              type: 'array',
              items: closed({ id: nodeIdSchema, matchIndex: int, lag: int }),
            },
            quorum: closed({
              source: { enum: ['controller', 'local'] },
              controllerId: { type: ['integer', 'null'] },
              voters: {
                type: 'array',
                items: closed(
                  {
                    id: nodeIdSchema,
                    reachable: { type: 'boolean' },
                    role: { type: 'string' },
                    term: int,
                    commitIndex: int,
                    appliedIndex: int,
                    lastIndex: int,
                    matchIndex: int,
                    lag: int,
                  },
                  ['role', 'term', 'commitIndex', 'appliedIndex', 'lastIndex', 'matchIndex', 'lag'],
                ),
              },
            }),
          },
          ['quorum'],
        ),
      },
      ['metadata'],
    ),
  },
  metadata: {
    id: 'metadata',
    produces: ANSWERS,
    method: 'GET',
    path: '/v1/metadata',
    summary:
      'Where each partition is led and how to reach every node: the topics named by topics=a,b (all when absent)',
    querystring: {
      type: 'object',
      properties: {
        // Comma-separated topic names, none when empty; more than a request line can hold (the
        // server refuses headers over 16 KiB) is refused here too.
        topics: { type: 'string', pattern: METADATA_TOPICS_PATTERN, maxLength: 16384 },
      },
    },
    successStatus: 200,
    response: closed({
      clusterId: { type: 'string' },
      controllerId: { type: ['integer', 'null'] },
      nodes: {
        type: 'array',
        items: closed({
          id: nodeIdSchema,
          host: { type: 'string' },
          port: int,
          rack: { type: ['string', 'null'] },
          fenced: { type: 'boolean' },
        }),
      },
      topics: {
        type: 'array',
        items: closed({
          name: { type: 'string' },
          topicId: { type: 'string' },
          partitions: {
            type: 'array',
            items: closed({
              partition: int,
              leader: { type: 'integer', minimum: -1 },
              leaderEpoch: int,
              replicas: { type: 'array', items: nodeIdSchema },
              isr: { type: 'array', items: nodeIdSchema },
            }),
          },
        }),
      },
      unknownTopics: { type: 'array', items: { type: 'string' } },
    }),
  },
  addVoter: {
    id: 'addVoter',
    produces: ANSWERS,
    consumes: DOCUMENT_BODIES,
    method: 'POST',
    path: '/v1/cluster/voters',
    summary: 'Make a broker-only node (a learner of the metadata log) a voter of the metadata quorum',
    body: {
      type: 'object',
      required: ['nodeId'],
      additionalProperties: false,
      properties: { nodeId: nodeIdParam },
    },
    successStatus: 200,
    response: votersSchema,
  },
  removeVoter: {
    id: 'removeVoter',
    produces: ANSWERS,
    method: 'DELETE',
    path: '/v1/cluster/voters/:nodeId',
    summary: 'Take a voter out of the metadata quorum; it follows the log as a learner',
    params: {
      type: 'object',
      required: ['nodeId'],
      properties: { nodeId: nodeIdParam },
    },
    successStatus: 200,
    response: votersSchema,
  },
  listReassignments: {
    id: 'listReassignments',
    produces: ANSWERS,
    method: 'GET',
    path: '/v1/reassignments',
    summary: 'Partition reassignments in progress, with how far each replica being added has caught up',
    successStatus: 200,
    response: reassignmentsSchema,
  },
  reassignPartitions: {
    id: 'reassignPartitions',
    produces: ANSWERS,
    consumes: DOCUMENT_BODIES,
    method: 'POST',
    path: '/v1/reassignments',
    summary:
      'Start (target replicas) or cancel (null) partition reassignments, all or none; answers those in progress',
    body: {
      type: 'object',
      required: ['partitions'],
      additionalProperties: false,
      properties: {
        partitions: {
          type: 'array',
          minItems: 1,
          maxItems: 1000,
          items: {
            type: 'object',
            required: ['topic', 'partition', 'replicas'],
            additionalProperties: false,
            properties: {
              topic: topicParam,
              partition: partitionParam,
              replicas: {
                anyOf: [
                  { type: 'null' },
                  {
                    type: 'array',
                    maxItems: 64,
                    items: { type: 'integer', minimum: 0, maximum: 2147483647 },
                  },
                ],
              },
            },
          },
        },
      },
    },
    successStatus: 200,
    response: reassignmentsSchema,
  },
  decommissionBroker: {
    id: 'decommissionBroker',
    produces: ANSWERS,
    method: 'POST',
    path: '/v1/brokers/:brokerId/decommission',
    summary: 'Reassign every partition replica the broker holds to other brokers',
    params: {
      type: 'object',
      required: ['brokerId'],
      properties: { brokerId: nodeIdParam },
    },
    successStatus: 200,
    response: {
      type: 'object',
      additionalProperties: false,
      required: ['brokerId', 'partitionsHeld', 'reassignments'],
      properties: {
        brokerId: { type: 'integer', minimum: 0 },
        partitionsHeld: { type: 'integer', minimum: 0 },
        reassignments: { type: 'array', items: reassignmentSchema },
      },
    },
  },
  listTopics: {
    id: 'listTopics',
    produces: ANSWERS,
    method: 'GET',
    path: '/v1/topics',
    summary: 'List topics',
    successStatus: 200,
    response: closed({
      topics: {
        type: 'array',
        items: closed({ name: { type: 'string' }, partitions: int, replicationFactor: int }),
      },
    }),
  },
  createTopic: {
    id: 'createTopic',
    produces: ANSWERS,
    consumes: DOCUMENT_BODIES,
    method: 'POST',
    path: '/v1/topics',
    summary: 'Create a topic',
    body: {
      type: 'object',
      required: ['name'],
      additionalProperties: false,
      properties: {
        name: { type: 'string', maxLength: LIMITS.topicNameLengthMax },
        partitions: { type: 'integer', minimum: 1, maximum: 10000 },
        replicationFactor: { type: 'integer', minimum: 1, maximum: 16 },
        configs: configsSchema,
      },
    },
    successStatus: 201,
    response: topicDescriptionSchema,
  },
  describeTopic: {
    id: 'describeTopic',
    produces: ANSWERS,
    method: 'GET',
    path: '/v1/topics/:topic',
    summary: 'Describe a topic: partitions, leaders, replicas, ISR, offsets, configs',
    params: topicParams,
    successStatus: 200,
    response: topicDescriptionSchema,
  },
  deleteTopic: {
    id: 'deleteTopic',
    produces: ANSWERS,
    method: 'DELETE',
    path: '/v1/topics/:topic',
    summary: 'Delete a topic and its data',
    params: topicParams,
    successStatus: 200,
    response: closed({ name: { type: 'string' }, deleted: { const: true } }),
  },
  alterTopicConfigs: {
    id: 'alterTopicConfigs',
    produces: ANSWERS,
    consumes: DOCUMENT_BODIES,
    method: 'PATCH',
    path: '/v1/topics/:topic/configs',
    summary: 'Set (or with null, reset) topic configs',
    params: topicParams,
    body: {
      type: 'object',
      additionalProperties: { anyOf: [{ type: 'null' }, configValue] },
      maxProperties: 100,
    },
    successStatus: 200,
    response: topicDescriptionSchema,
  },
  addPartitions: {
    id: 'addPartitions',
    produces: ANSWERS,
    consumes: DOCUMENT_BODIES,
    method: 'POST',
    path: '/v1/topics/:topic/partitions',
    summary: 'Grow a topic to a larger partition count',
    params: topicParams,
    body: {
      type: 'object',
      required: ['partitions'],
      additionalProperties: false,
      properties: { partitions: { type: 'integer', minimum: 1, maximum: 10000 } },
    },
    successStatus: 200,
    response: topicDescriptionSchema,
  },
  produce: {
    id: 'produce',
    produces: ANSWERS,
    consumes: RECORD_BODIES,
    method: 'POST',
    path: '/v1/topics/:topic/records',
    summary: 'Append records; partition by explicit partition, else murmur2(key), else sticky round-robin',
    params: topicParams,
    querystring: produceQuery,
    successStatus: 200,
    response: offsetsListSchema,
  },
  producePartition: {
    id: 'producePartition',
    produces: ANSWERS,
    consumes: PARTITION_RECORD_BODIES,
    method: 'POST',
    path: '/v1/topics/:topic/partitions/:partition/records',
    summary: 'Append records (or pre-built batches) to one partition',
    params: partitionParams,
    querystring: partitionProduceQuery,
    successStatus: 200,
    // Records: their offsets; pre-built batches: the appended range; acks=0 with batches: {}.
    response: { anyOf: [offsetsListSchema, batchesAppendedSchema, closed({})] },
  },
  initProducer: {
    id: 'initProducer',
    produces: ANSWERS,
    method: 'POST',
    path: '/v1/producers',
    summary:
      'A new idempotent producer: its id and epoch, sent with per-partition sequence numbers as Sluice-Producer-Id, Sluice-Producer-Epoch and Sluice-Sequence',
    successStatus: 201,
    response: closed({
      producerId: { type: 'integer', minimum: 0 },
      producerEpoch: { type: 'integer', minimum: 0, maximum: 32767 },
    }),
  },
  fetch: {
    id: 'fetch',
    produces: FETCH_ANSWERS,
    method: 'GET',
    path: '/v1/topics/:topic/partitions/:partition/records',
    summary: 'Read records from an offset; long-polls; follow=true streams',
    params: partitionParams,
    querystring: {
      type: 'object',
      properties: {
        offset: { type: 'string', pattern: '^(earliest|latest|[0-9]{1,16})$' },
        maxBytes: { type: 'integer', minimum: 1, maximum: 8388608, default: 1048576 },
        maxWaitMs: { type: 'integer', minimum: 0, maximum: 30000, default: 0 },
        minBytes: { type: 'integer', minimum: 0, maximum: 8388608, default: 1 },
        follow: { type: 'boolean' },
        valueEncoding: { type: 'string', enum: ['utf8', 'base64'] },
        leaderEpoch: leaderEpochQuery,
      },
    },
    successStatus: 200,
    response: closed({
      records: { type: 'array', items: fetchedRecordSchema },
      nextOffset: offsetSchema,
      highWatermark: offsetSchema,
      logStartOffset: offsetSchema,
    }),
  },
  offsets: {
    id: 'offsets',
    produces: ANSWERS,
    method: 'GET',
    path: '/v1/topics/:topic/partitions/:partition/offsets',
    summary: 'Earliest and latest offsets, or the first offset at or after a timestamp',
    params: partitionParams,
    // -1 asks for the latest offset and -2 for the earliest, as Kafka's ListOffsets.
    querystring: {
      type: 'object',
      properties: { timestamp: { type: 'integer', minimum: -2 }, leaderEpoch: leaderEpochQuery },
    },
    successStatus: 200,
    response: closed(
      {
        partition: int,
        earliest: offsetSchema,
        latest: offsetSchema,
        highWatermark: offsetSchema,
        offset: { type: ['integer', 'null'] },
        timestamp: int,
      },
      ['offset', 'timestamp'],
    ),
  },
  // ---- consumer groups: all answered by the group's coordinator (any node forwards there) ----
  joinGroup: {
    id: 'joinGroup',
    produces: ANSWERS,
    consumes: DOCUMENT_BODIES,
    method: 'POST',
    path: '/v1/groups/:group/members',
    summary: 'Join a consumer group: a member id and epoch, and the partitions assigned to it',
    params: groupParams,
    body: {
      type: 'object',
      additionalProperties: false,
      properties: {
        topics: { type: 'array', minItems: 1, maxItems: 1000, items: topicParam },
        pattern: { type: 'string', minLength: 1, maxLength: 1000 },
        sessionTimeoutMs: { type: 'integer', minimum: 1000, maximum: 300000 },
        instanceId: { type: 'string', pattern: MEMBER_ID_PATTERN },
        assignor: { enum: ['range', 'roundrobin', 'sticky'] },
        autoOffsetReset: { enum: ['earliest', 'latest'] },
      },
    },
    successStatus: 201,
    response: memberViewSchema,
  },
  heartbeatGroup: {
    id: 'heartbeatGroup',
    produces: ANSWERS,
    consumes: DOCUMENT_BODIES,
    method: 'POST',
    path: '/v1/groups/:group/members/:member/heartbeat',
    summary: 'Keep a member alive; answers its current assignment (and acknowledges revocations)',
    params: memberParams,
    body: {
      type: 'object',
      additionalProperties: false,
      properties: {
        memberEpoch: memberEpochSchema,
        owned: topicPartitionList,
        paused: topicPartitionList,
        seek: {
          type: 'array',
          maxItems: 10000,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['topic', 'partition', 'offset'],
            properties: {
              topic: topicParam,
              partition: partitionParam,
              offset: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
            },
          },
        },
      },
    },
    successStatus: 200,
    response: memberViewSchema,
  },
  leaveGroup: {
    id: 'leaveGroup',
    produces: ANSWERS,
    method: 'DELETE',
    path: '/v1/groups/:group/members/:member',
    summary: 'Leave the group: its partitions go to the other members at once',
    params: memberParams,
    successStatus: 200,
    response: closed({ group: { type: 'string' }, memberId: { type: 'string' }, left: { const: true } }),
  },
  pollGroup: {
    id: 'pollGroup',
    produces: FETCH_ANSWERS,
    method: 'GET',
    path: '/v1/groups/:group/members/:member/records',
    summary:
      'Read the records of every partition assigned to the member from its positions; long-polls; follow=true streams; a poll is also a heartbeat',
    params: memberParams,
    querystring: {
      type: 'object',
      properties: {
        memberEpoch: memberEpochSchema,
        maxBytes: { type: 'integer', minimum: 1, maximum: 8388608, default: 1048576 },
        maxWaitMs: { type: 'integer', minimum: 0, maximum: 30000, default: 0 },
        autoCommit: { type: 'boolean', default: false },
        follow: { type: 'boolean' },
        valueEncoding: { type: 'string', enum: ['utf8', 'base64'] },
      },
    },
    successStatus: 200,
    response: closed({
      memberEpoch: int,
      assignment: topicPartitionList,
      records: {
        type: 'array',
        items: {
          ...fetchedRecordSchema,
          required: [...fetchedRecordSchema.required, 'topic', 'partition'],
          properties: { ...fetchedRecordSchema.properties, topic: { type: 'string' }, partition: int },
        },
      },
      partitions: {
        type: 'array',
        items: closed({
          topic: { type: 'string' },
          partition: int,
          nextOffset: offsetSchema,
          highWatermark: offsetSchema,
        }),
      },
    }),
  },
  commitOffsets: {
    id: 'commitOffsets',
    produces: ANSWERS,
    consumes: DOCUMENT_BODIES,
    method: 'POST',
    path: '/v1/groups/:group/offsets',
    summary: 'Commit offsets (the next offset to read), as a member at its epoch or for an empty group',
    params: groupParams,
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['offsets'],
      properties: {
        memberId: { type: 'string', pattern: MEMBER_ID_PATTERN },
        memberEpoch: memberEpochSchema,
        offsets: {
          type: 'array',
          minItems: 1,
          maxItems: 10000,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['topic', 'partition', 'offset'],
            properties: {
              topic: topicParam,
              partition: partitionParam,
              offset: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
              metadata: { type: 'string', maxLength: 4096 },
            },
          },
        },
      },
    },
    successStatus: 200,
    response: closed({ group: { type: 'string' }, committed: count }),
  },
  listGroups: {
    id: 'listGroups',
    produces: ANSWERS,
    method: 'GET',
    path: '/v1/groups',
    summary: 'Every consumer group of the cluster, with its state, members and coordinator',
    successStatus: 200,
    response: closed({
      groups: {
        type: 'array',
        items: closed({
          group: { type: 'string' },
          state: groupStateSchema,
          members: count,
          coordinator: nodeIdSchema,
        }),
      },
    }),
  },
  describeGroup: {
    id: 'describeGroup',
    produces: ANSWERS,
    method: 'GET',
    path: '/v1/groups/:group',
    summary:
      'A group: state, epochs, members and assignments, committed offset, log end and lag per partition',
    params: groupParams,
    successStatus: 200,
    response: closed({
      group: { type: 'string' },
      state: groupStateSchema,
      groupEpoch: int,
      assignmentEpoch: int,
      assignor: { type: 'string' },
      coordinator: nodeIdSchema,
      members: {
        type: 'array',
        items: closed({
          memberId: { type: 'string' },
          instanceId: { type: ['string', 'null'] },
          memberEpoch: int,
          topics: { type: 'array', items: { type: 'string' } },
          pattern: { type: ['string', 'null'] },
          sessionTimeoutMs: int,
          assignment: topicPartitionList,
          revoking: topicPartitionList,
        }),
      },
      partitions: {
        type: 'array',
        items: closed({
          topic: { type: 'string' },
          partition: int,
          owner: { type: ['string', 'null'] },
          committed: { type: ['integer', 'null'] },
          metadata: { type: ['string', 'null'] },
          logEndOffset: { type: 'integer', minimum: -1 },
          lag: { type: 'integer', minimum: -1 },
        }),
      },
    }),
  },
  resetGroupOffsets: {
    id: 'resetGroupOffsets',
    produces: ANSWERS,
    consumes: DOCUMENT_BODIES,
    method: 'POST',
    path: '/v1/groups/:group/offsets/reset',
    summary: 'Set the committed offsets of an empty group: earliest, latest, by timestamp, or shifted',
    params: groupParams,
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['topic', 'to'],
      properties: {
        topic: topicParam,
        partitions: { type: 'array', minItems: 1, maxItems: 10000, items: partitionParam },
        to: { enum: ['earliest', 'latest', 'timestamp', 'shift', 'offset'] },
        timestamp: { type: 'integer', minimum: 0 },
        shift: { type: 'integer', minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER },
        offset: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
      },
    },
    successStatus: 200,
    response: closed({
      group: { type: 'string' },
      offsets: {
        type: 'array',
        items: closed({ topic: { type: 'string' }, partition: int, offset: offsetSchema }),
      },
    }),
  },
  deleteGroup: {
    id: 'deleteGroup',
    produces: ANSWERS,
    method: 'DELETE',
    path: '/v1/groups/:group',
    summary: 'Delete an empty group and its committed offsets',
    params: groupParams,
    successStatus: 200,
    response: closed({ group: { type: 'string' }, deleted: { const: true } }),
  },
} as const satisfies Record<string, Endpoint>;

export type EndpointId = keyof typeof ENDPOINTS;

// ---- request types derived from the schemas above ----

/** The TypeScript type a JSON schema of this table describes (the subset the table uses). */
export type SchemaType<S> = S extends { const: infer C }
  ? C
  : S extends { enum: readonly (infer E)[] }
    ? E
    : S extends { anyOf: readonly (infer A)[] }
      ? SchemaType<A>
      : S extends { type: 'array'; items: infer I }
        ? SchemaType<I>[]
        : S extends { type: 'object'; properties: infer P }
          ? ObjectType<P, S extends { required: readonly (infer R)[] } ? R : never>
          : S extends { type: 'object'; additionalProperties: infer V }
            ? Record<string, SchemaType<V>>
            : S extends { type: 'integer' | 'number' }
              ? number
              : S extends { type: 'string' }
                ? string
                : S extends { type: 'boolean' }
                  ? boolean
                  : S extends { type: 'null' }
                    ? null
                    : unknown;

type ObjectType<P, R> = { [K in keyof P as K extends R ? K : never]: SchemaType<P[K]> } & {
  [K in keyof P as K extends R ? never : K]?: SchemaType<P[K]>;
};

/** Path parameters, query and body of an endpoint, as its schemas describe them. */
export interface EndpointRequest<E extends Endpoint> {
  Params: E extends { params: infer S } ? SchemaType<S> : Record<string, never>;
  Querystring: E extends { querystring: infer S } ? SchemaType<S> : Record<string, never>;
  Body: E extends { body: infer S } ? SchemaType<S> : unknown;
}

/** The server's default for one query parameter of an endpoint, from its schema. */
export function queryDefault<E extends Endpoint, K extends keyof SchemaType<NonNullable<E['querystring']>>>(
  endpoint: E,
  name: K,
): SchemaType<NonNullable<E['querystring']>>[K] {
  const properties = (
    endpoint.querystring as { properties?: Record<string, { default?: unknown }> } | undefined
  )?.properties;
  const value = properties?.[name as string]?.default;
  if (value === undefined) throw new Error(`${endpoint.id} has no default for ${String(name)}`);
  return value as SchemaType<NonNullable<E['querystring']>>[K];
}

/**
 * How long a client that loops over fetches (the SDK consumer, `sluice consume`) waits at the log
 * end per fetch unless told otherwise. A single fetch takes the endpoint's own default of 0 and
 * answers at once, which is what curl wants; a consumer loop long-polls instead of spinning.
 */
export const CONSUMER_FETCH_WAIT_MS = 1000;

/** A path with its query: `endpointUrl(ENDPOINTS.fetch, {topic, partition}, {offset: 0})`. */
export function endpointUrl(
  endpoint: Endpoint,
  params: Record<string, string | number> = {},
  query: Record<string, string | number | boolean | undefined> = {},
): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(query))
    if (value !== undefined) parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`);
  return parts.length === 0
    ? endpointPath(endpoint, params)
    : `${endpointPath(endpoint, params)}?${parts.join('&')}`;
}

/** Fills a fastify-style path: `/v1/topics/:topic` with `{topic: 'a'}` → `/v1/topics/a`. */
export function endpointPath(endpoint: Endpoint, params: Record<string, string | number> = {}): string {
  return endpoint.path.replace(/:([a-zA-Z]+)/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`missing path parameter ${name} for ${endpoint.id}`);
    return encodeURIComponent(String(value));
  });
}
