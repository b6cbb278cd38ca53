/**
 * The one error family of Sluice. Every error that can reach a client carries a stable `code` in
 * Kafka's vocabulary, whether retrying can help, and typed details. `ERROR_CODES` is the single
 * table of codes: the HTTP layer maps it to statuses, and a test keeps `docs/errors.md` equal to it.
 */
export const ERROR_CODES = {
  INVALID_REQUEST: {
    status: 400,
    retriable: false,
    title: 'The request is malformed or violates the API contract',
  },
  CORRUPT_MESSAGE: {
    status: 400,
    retriable: false,
    title: 'A record batch is damaged: its framing, CRC-32C or records do not check out',
  },
  INVALID_RECORD: {
    status: 400,
    retriable: false,
    title: 'A record is not valid (bad field type or encoding)',
  },
  INVALID_TIMESTAMP: { status: 400, retriable: false, title: 'A timestamp is outside the accepted range' },
  INVALID_TOPIC_EXCEPTION: { status: 400, retriable: false, title: 'The topic name is not valid' },
  INVALID_PARTITIONS: { status: 400, retriable: false, title: 'The partition count is not valid' },
  INVALID_REPLICATION_FACTOR: { status: 400, retriable: false, title: 'The replication factor is not valid' },
  INVALID_CONFIG: { status: 400, retriable: false, title: 'A configuration name or value is not valid' },
  INVALID_OFFSET: { status: 400, retriable: false, title: 'The offset parameter is not a valid offset' },
  UNSUPPORTED_COMPRESSION_TYPE: {
    status: 400,
    retriable: false,
    title: 'The compression codec is not supported',
  },
  CLUSTER_AUTHORIZATION_FAILED: {
    status: 401,
    retriable: false,
    title: 'The cluster secret is missing or wrong',
  },
  NOT_FOUND: { status: 404, retriable: false, title: 'No such route' },
  UNKNOWN_TOPIC_OR_PARTITION: {
    status: 404,
    retriable: false,
    title: 'The topic or partition does not exist',
  },
  METHOD_NOT_ALLOWED: { status: 405, retriable: false, title: 'The method is not allowed on this route' },
  NOT_ACCEPTABLE: { status: 406, retriable: false, title: 'No response format in Accept is supported' },
  CLIENT_TIMEOUT: {
    status: 408,
    retriable: true,
    title: 'The client did not send its request in time',
  },
  TOPIC_ALREADY_EXISTS: { status: 409, retriable: false, title: 'A topic of that name exists' },
  OUT_OF_ORDER_SEQUENCE_NUMBER: {
    status: 409,
    retriable: false,
    title: 'A producer batch is not the next in its sequence (a gap, or an old batch no longer retained)',
  },
  PRODUCER_FENCED: {
    status: 409,
    retriable: false,
    title: 'A newer epoch of this producer id has written: this one is fenced',
  },
  UNKNOWN_PRODUCER_ID: {
    status: 409,
    retriable: false,
    title: 'The partition has no state of the producer (expired) and its batch does not start at sequence 0',
  },
  RECORD_TOO_LARGE: {
    status: 413,
    retriable: false,
    title: 'A record is larger than the maximum record size',
  },
  MESSAGE_TOO_LARGE: {
    status: 413,
    retriable: false,
    title: 'A batch is larger than the maximum batch size',
  },
  DECOMPRESSED_TOO_LARGE: {
    status: 413,
    retriable: false,
    title: 'Compressed data decompresses to more than the limit (a decompression bomb)',
  },
  REQUEST_TOO_LARGE: { status: 413, retriable: false, title: 'The request body is larger than the limit' },
  TOO_MANY_RECORDS: { status: 413, retriable: false, title: 'The request holds more records than the limit' },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    retriable: false,
    title: 'The request body format is not supported',
  },
  OFFSET_OUT_OF_RANGE: { status: 416, retriable: false, title: 'The offset is outside the log' },
  // 503, not 421 Misdirected Request: fetch (the Fetch standard) sends a request answered 421 again
  // by itself, whatever its method, and these refusals may follow an append (test/http/no-replay).
  NOT_LEADER_OR_FOLLOWER: { status: 503, retriable: true, title: 'This node does not lead the partition' },
  NOT_LEADER: { status: 503, retriable: true, title: 'This node is not the Raft leader' },
  NOT_CONTROLLER: { status: 503, retriable: true, title: 'This node is not the active controller' },
  LIMIT_EXCEEDED: { status: 429, retriable: true, title: 'A bounded queue or in-flight window is full' },
  REQUEST_HEADERS_TOO_LARGE: {
    status: 431,
    retriable: false,
    title: 'The request headers are larger than the limit',
  },
  UNKNOWN_SERVER_ERROR: { status: 500, retriable: false, title: 'An unexpected server error' },
  KAFKA_STORAGE_ERROR: { status: 500, retriable: true, title: 'The log could not be read or written' },
  LEADER_NOT_AVAILABLE: { status: 503, retriable: true, title: 'The partition has no leader right now' },
  NOT_ENOUGH_REPLICAS: {
    status: 503,
    retriable: true,
    title: 'Fewer in-sync replicas than min.insync.replicas; nothing was appended',
  },
  NOT_ENOUGH_REPLICAS_AFTER_APPEND: {
    status: 503,
    retriable: true,
    title: 'Appended, but the in-sync replicas fell below the minimum before acknowledging',
  },
  SHUTTING_DOWN: { status: 503, retriable: true, title: 'The node is shutting down' },
  REQUEST_TIMED_OUT: { status: 504, retriable: true, title: 'The request did not complete in time' },
  FENCED_LEADER_EPOCH: {
    status: 412,
    retriable: true,
    title: 'The leader epoch given is older than the partition leader’s: refresh the metadata',
  },
  UNKNOWN_LEADER_EPOCH: {
    status: 412,
    retriable: true,
    title: 'The leader epoch given is newer than this node knows: retry',
  },
  INVALID_UPDATE_VERSION: {
    status: 409,
    retriable: true,
    title: 'The change was computed from a partition state that has changed since',
  },
  OFFSET_NOT_AVAILABLE: {
    status: 503,
    retriable: true,
    title: 'A new leader has not yet confirmed what its followers hold; retry',
  },
  NETWORK_EXCEPTION: {
    status: 503,
    retriable: true,
    title: 'Another node of the cluster could not be reached',
  },
  INVALID_REPLICA_ASSIGNMENT: {
    status: 400,
    retriable: false,
    title: 'The replicas asked for are not valid: empty, repeated or unknown brokers',
  },
  UNSUPPORTED_VERSION: {
    status: 400,
    retriable: false,
    title: "The cluster's metadata.version does not support this request yet",
  },
  REASSIGNMENT_IN_PROGRESS: {
    status: 409,
    retriable: false,
    title: 'A reassignment of the partition is in progress: let it finish or cancel it first',
  },
  NO_REASSIGNMENT_IN_PROGRESS: {
    status: 409,
    retriable: false,
    title: 'No reassignment of the partition is in progress',
  },
  // Consumer groups (docs/groups.md).
  GROUP_ID_NOT_FOUND: { status: 404, retriable: false, title: 'The consumer group does not exist' },
  UNKNOWN_MEMBER_ID: {
    status: 404,
    retriable: false,
    title: 'The group has no member of that id (it left, or its session expired): join again',
  },
  FENCED_MEMBER_EPOCH: {
    status: 409,
    retriable: false,
    title: 'The member epoch is not one the coordinator gave this member: join again',
  },
  STALE_MEMBER_EPOCH: {
    status: 409,
    retriable: false,
    title:
      'The member epoch is older than the member’s current one, or the partition is no longer its own: heartbeat, then commit again',
  },
  NON_EMPTY_GROUP: {
    status: 409,
    retriable: false,
    title: 'The group has members: this needs an empty group',
  },
  COORDINATOR_LOAD_IN_PROGRESS: {
    status: 503,
    retriable: true,
    title: 'The group coordinator is loading the group’s state; retry',
  },
  NOT_COORDINATOR: { status: 503, retriable: true, title: 'This node is not the group’s coordinator' },
} as const satisfies Record<string, { status: number; retriable: boolean; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface SluiceErrorOptions {
  details?: Record<string, unknown>;
  cause?: unknown;
  /** Overrides the table's retriable flag where a case differs. */
  retriable?: boolean;
}

export class SluiceError extends Error {
  override name = 'SluiceError';
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options.retriable ?? ERROR_CODES[code].retriable;
    this.details = options.details ?? {};
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

export function isSluiceError(error: unknown, code?: ErrorCode): error is SluiceError {
  return error instanceof SluiceError && (code === undefined || error.code === code);
}
