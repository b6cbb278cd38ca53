/**
 * The cluster-internal HTTP API, defined once for the node that serves it and the peers that call
 * it. Every request carries the shared cluster secret; bodies are msgpack.
 *
 * - `POST /internal/raft/messages`: a msgpack array of at most `RAFT_MESSAGES_MAX` Raft messages
 *   (at most `RAFT_MESSAGES_BYTES_MAX` bytes), all from one sender to this node, each checked
 *   field by field by `checkRaftMessage`; answered 204.
 * - `POST /internal/raft/snapshot-chunks`: one `SnapshotChunk` (a msgpack map, below), checked by
 *   `checkSnapshotChunk`; answered 204 when the chunk is taken (or is a duplicate of one taken).
 * - `GET /internal/raft/status`: the node's Raft driver status.
 */

export const CLUSTER_SECRET_HEADER = 'sluice-cluster-secret';
/** Marks a request one node sent on to another (it is answered there, never sent on again), naming the sender. */
export const FORWARDED_BY_HEADER = 'sluice-forwarded-by';
export const RAFT_MESSAGES_PATH = '/internal/raft/messages';
export const RAFT_SNAPSHOT_CHUNKS_PATH = '/internal/raft/snapshot-chunks';
export const RAFT_STATUS_PATH = '/internal/raft/status';
/** `GET ?topic=`: `{partitions: [{partition, logStartOffset, logEndOffset, highWatermark}]}` of those the node leads. */
export const LEADER_OFFSETS_PATH = '/internal/leader-offsets';
/** The most messages one request carries; a sender splits longer queues. */
export const RAFT_MESSAGES_MAX = 4096;
/**
 * The largest body of a messages request. A snapshot message goes whole only below
 * `SNAPSHOT_CHUNKED_BYTES_MIN`, so with the rest of a batch it fits with room to spare; larger
 * snapshots travel as chunks.
 */
export const RAFT_MESSAGES_BYTES_MAX = 4 * 1024 * 1024;
/** Entries in one append message (the core sends 256 by default). */
export const RAFT_ENTRIES_PER_MESSAGE_MAX = 10_000;
/** Voters plus learners in a snapshot's membership. */
export const RAFT_MEMBERS_MAX = 1024;
/** A snapshot whose data is at least this large is sent as chunks rather than as one message. */
export const SNAPSHOT_CHUNKED_BYTES_MIN = 1024 * 1024;
/** Data bytes in one chunk (the last one may be shorter). */
export const SNAPSHOT_CHUNK_BYTES = 256 * 1024;
/** The largest body of a chunk request: the data plus the header fields. */
export const SNAPSHOT_CHUNK_REQUEST_BYTES_MAX = SNAPSHOT_CHUNK_BYTES + 64 * 1024;
/** The largest snapshot a receiver assembles; a transfer that announces more is refused. */
export const SNAPSHOT_BYTES_MAX = 1024 * 1024 * 1024;

export const RAFT_MESSAGE_TYPES: ReadonlySet<string> = new Set([
  'preVote',
  'preVoteResponse',
  'vote',
  'voteResponse',
  'append',
  'appendResponse',
  'heartbeat',
  'heartbeatResponse',
  'snapshot',
  'timeoutNow',
]);

/**
 * The small messages that decide elections and leases. A sender gives them a lane of their own so
 * that they never wait behind an append batch or a snapshot.
 */
export const RAFT_CONTROL_MESSAGE_TYPES: ReadonlySet<string> = new Set([
  'preVote',
  'preVoteResponse',
  'vote',
  'voteResponse',
  'appendResponse',
  'heartbeat',
  'heartbeatResponse',
  'timeoutNow',
]);

/** Raft's message shapes as they travel (src/raft/types.ts is the source; a test keeps both equal). */
export interface WireMembership {
  voters: number[];
  learners: number[];
}
export interface WireEntry {
  term: number;
  index: number;
  type: 'normal' | 'config';
  data: Uint8Array;
}
export interface WireSnapshotHeader {
  index: number;
  term: number;
  membership: WireMembership;
}
interface Addressed {
  from: number;
  to: number;
  term: number;
}
export type WireRaftMessage =
  | (Addressed & { type: 'preVote'; lastIndex: number; lastTerm: number })
  | (Addressed & { type: 'preVoteResponse'; granted: boolean })
  | (Addressed & { type: 'vote'; lastIndex: number; lastTerm: number; transfer: boolean })
  | (Addressed & { type: 'voteResponse'; granted: boolean })
  | (Addressed & {
      type: 'append';
      prevIndex: number;
      prevTerm: number;
      entries: WireEntry[];
      commit: number;
    })
  | (Addressed & { type: 'appendResponse'; success: boolean; index: number; conflictTerm: number })
  | (Addressed & { type: 'heartbeat'; commit: number; context: number })
  | (Addressed & { type: 'heartbeatResponse'; context: number })
  | (Addressed & { type: 'snapshot'; snapshot: WireSnapshotHeader & { data: Uint8Array } })
  | (Addressed & { type: 'timeoutNow' });

/**
 * One piece of a snapshot too large for one message, as the body of
 * `POST /internal/raft/snapshot-chunks` (a msgpack map):
 *
 * | field | type | meaning |
 * | --- | --- | --- |
 * | `from`, `to`, `term` | uint | as in the `snapshot` message it carries |
 * | `snapshot` | map `{index, term, membership: {voters, learners}}` | the snapshot without its data |
 * | `totalBytes` | uint | the length of the whole data, at most `SNAPSHOT_BYTES_MAX` |
 * | `crc32c` | uint32 | CRC-32C of the whole data |
 * | `offset` | uint | where `data` starts in the whole; chunks are sent in order of offset |
 * | `data` | bin | at most `SNAPSHOT_CHUNK_BYTES`; non-empty unless `totalBytes` is 0 |
 *
 * A transfer is named by (`from`, `term`, `snapshot.index`, `snapshot.term`, `totalBytes`,
 * `crc32c`). The receiver holds one transfer in assembly per sender: a chunk at offset 0 of
 * another transfer replaces it, a chunk that repeats bytes already taken is a duplicate (answered
 * 204, ignored), a chunk past a gap drops the assembly and is refused. When the last byte arrives
 * the receiver checks the CRC-32C over the whole and hands Raft one `snapshot` message.
 */
export interface SnapshotChunk {
  from: number;
  to: number;
  term: number;
  snapshot: WireSnapshotHeader;
  totalBytes: number;
  crc32c: number;
  offset: number;
  data: Uint8Array;
}

/**
 * What a receiver made of a chunk: `accepted` (taken, more to come), `complete` (the last one:
 * the snapshot was delivered), `duplicate` (bytes already taken), `outOfOrder` (a gap or no
 * transfer under way: nothing taken), `corrupt` (the whole did not match its CRC-32C: dropped).
 */
export type SnapshotChunkOutcome = 'accepted' | 'complete' | 'duplicate' | 'outOfOrder' | 'corrupt';

/** A field that is wrong, named by its path (`entries/3/term`) and what was expected. */
export class FieldError {
  constructor(
    readonly field: string,
    readonly expected: string,
  ) {}
}

type Fields = Record<string, unknown>;

function isObject(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isBytes(value);
}

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

function uint(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

class Checker {
  constructor(
    readonly object: Fields,
    readonly path: string,
  ) {}

  #fail(name: string, expected: string): never {
    throw new FieldError(`${this.path}${name}`, expected);
  }

  uint(name: string): number {
    const value = this.object[name];
    if (!uint(value)) this.#fail(name, 'a non-negative safe integer');
    return value;
  }

  uint32(name: string): number {
    const value = this.uint(name);
    if (value > 0xffffffff) this.#fail(name, 'an unsigned 32-bit integer');
    return value;
  }

  boolean(name: string): boolean {
    const value = this.object[name];
    if (typeof value !== 'boolean') this.#fail(name, 'a boolean');
    return value;
  }

  bytes(name: string, maxBytes: number): Uint8Array {
    const value = this.object[name];
    if (!isBytes(value)) this.#fail(name, 'binary data');
    if (value.byteLength > maxBytes) this.#fail(name, `at most ${maxBytes} bytes`);
    return value;
  }

  array(name: string, maxLength: number): unknown[] {
    const value = this.object[name];
    if (!Array.isArray(value)) this.#fail(name, 'an array');
    if (value.length > maxLength) this.#fail(name, `at most ${maxLength} items`);
    return value;
  }

  object_(name: string): Checker {
    const value = this.object[name];
    if (!isObject(value)) this.#fail(name, 'a map');
    return new Checker(value, `${this.path}${name}/`);
  }

  /** Refuses fields the type does not have, so that nothing unchecked rides along. */
  only(names: readonly string[]): void {
    for (const key of Object.keys(this.object)) if (!names.includes(key)) this.#fail(key, 'no such field');
  }

  fail(name: string, expected: string): never {
    this.#fail(name, expected);
  }
}

const ADDRESSED = ['type', 'from', 'to', 'term'] as const;
const FIELDS: Readonly<Record<string, readonly string[]>> = {
  preVote: [...ADDRESSED, 'lastIndex', 'lastTerm'],
  preVoteResponse: [...ADDRESSED, 'granted'],
  vote: [...ADDRESSED, 'lastIndex', 'lastTerm', 'transfer'],
  voteResponse: [...ADDRESSED, 'granted'],
  append: [...ADDRESSED, 'prevIndex', 'prevTerm', 'entries', 'commit'],
  appendResponse: [...ADDRESSED, 'success', 'index', 'conflictTerm'],
  heartbeat: [...ADDRESSED, 'commit', 'context'],
  heartbeatResponse: [...ADDRESSED, 'context'],
  snapshot: [...ADDRESSED, 'snapshot'],
  timeoutNow: [...ADDRESSED],
};

const CONFIG_KINDS: ReadonlySet<string> = new Set(['addVoter', 'removeVoter', 'addLearner', 'removeLearner']);

/** A config entry's data is the JSON of one ConfigChange; the core parses it when it appends. */
function checkConfigData(data: Uint8Array, c: Checker): void {
  let change: unknown;
  try {
    change = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    c.fail('data', 'the JSON of a configuration change');
  }
  const r = change as Fields;
  if (!isObject(r) || typeof r.kind !== 'string' || !CONFIG_KINDS.has(r.kind) || !uint(r.node))
    c.fail('data', 'a configuration change {kind, node}');
}

function checkMembership(c: Checker): void {
  c.only(['voters', 'learners']);
  let members = 0;
  for (const name of ['voters', 'learners']) {
    const ids = c.array(name, RAFT_MEMBERS_MAX);
    members += ids.length;
    ids.forEach((id, i) => {
      if (!uint(id)) c.fail(`${name}/${i}`, 'a node id');
    });
  }
  if (members > RAFT_MEMBERS_MAX) c.fail('voters', `at most ${RAFT_MEMBERS_MAX} members in all`);
}

/** The snapshot's index, term and membership; `withData` also its data (a whole message). */
function checkSnapshotHeader(c: Checker, messageTerm: number, withData: boolean): void {
  c.only(withData ? ['index', 'term', 'membership', 'data'] : ['index', 'term', 'membership']);
  c.uint('index');
  // A leader holds no entry of a term later than its own.
  if (c.uint('term') > messageTerm) c.fail('term', 'at most the message term');
  checkMembership(c.object_('membership'));
  if (withData) c.bytes('data', RAFT_MESSAGES_BYTES_MAX);
}

/**
 * An append's entries follow `prevIndex` one by one, with terms that never fall, never below
 * `prevTerm` and never above the leader's term: the core counts on that (it acknowledges
 * `prevIndex + entries.length`).
 */
function checkEntries(c: Checker, prevIndex: number, prevTerm: number, term: number): void {
  const entries = c.array('entries', RAFT_ENTRIES_PER_MESSAGE_MAX);
  let lastTerm = prevTerm;
  entries.forEach((entry, i) => {
    if (!isObject(entry)) c.fail(`entries/${i}`, 'a map');
    const e = new Checker(entry, `${c.path}entries/${i}/`);
    e.only(['term', 'index', 'type', 'data']);
    if (e.uint('index') !== prevIndex + 1 + i) e.fail('index', `${prevIndex + 1 + i} (prevIndex + 1 + i)`);
    const entryTerm = e.uint('term');
    if (entryTerm < lastTerm || entryTerm > term)
      e.fail('term', `between the previous entry's term ${lastTerm} and the message term ${term}`);
    lastTerm = entryTerm;
    const data = e.bytes('data', RAFT_MESSAGES_BYTES_MAX);
    if (entry.type === 'config') checkConfigData(data, e);
    else if (entry.type !== 'normal') e.fail('type', "'normal' or 'config'");
  });
}

/**
 * Checks every field of one Raft message as it arrived from the wire and returns it typed, or
 * throws a `FieldError` naming the first wrong field. Unknown fields are refused too. Only
 * shape and the invariants any correct sender keeps are checked here; whether a message makes
 * sense in the receiver's state is Raft's business.
 */
export function checkRaftMessage(value: unknown, path = ''): WireRaftMessage {
  if (!isObject(value)) throw new FieldError(path || '/', 'a map');
  const c = new Checker(value, path);
  const type = value.type;
  if (typeof type !== 'string' || !Object.hasOwn(FIELDS, type))
    throw new FieldError(`${path}type`, `one of ${[...RAFT_MESSAGE_TYPES].join(', ')}`);
  c.only(FIELDS[type]!);
  c.uint('from');
  c.uint('to');
  const term = c.uint('term');
  switch (type) {
    case 'preVote':
    case 'vote':
      c.uint('lastIndex');
      if (c.uint('lastTerm') > term) c.fail('lastTerm', 'at most the message term');
      if (type === 'vote') c.boolean('transfer');
      break;
    case 'preVoteResponse':
    case 'voteResponse':
      c.boolean('granted');
      break;
    case 'append': {
      const prevIndex = c.uint('prevIndex');
      const prevTerm = c.uint('prevTerm');
      if (prevTerm > term) c.fail('prevTerm', 'at most the message term');
      checkEntries(c, prevIndex, prevTerm, term);
      c.uint('commit');
      break;
    }
    case 'appendResponse':
      c.boolean('success');
      c.uint('index');
      c.uint('conflictTerm');
      break;
    case 'heartbeat':
      c.uint('commit');
      c.uint('context');
      break;
    case 'heartbeatResponse':
      c.uint('context');
      break;
    case 'snapshot':
      checkSnapshotHeader(c.object_('snapshot'), term, true);
      break;
    case 'timeoutNow':
      break;
  }
  return value as unknown as WireRaftMessage;
}

/** Checks every field of a snapshot chunk (the table above `SnapshotChunk`). */
export function checkSnapshotChunk(value: unknown): SnapshotChunk {
  if (!isObject(value)) throw new FieldError('/', 'a map');
  const c = new Checker(value, '');
  c.only(['from', 'to', 'term', 'snapshot', 'totalBytes', 'crc32c', 'offset', 'data']);
  c.uint('from');
  c.uint('to');
  const term = c.uint('term');
  checkSnapshotHeader(c.object_('snapshot'), term, false);
  const totalBytes = c.uint('totalBytes');
  if (totalBytes > SNAPSHOT_BYTES_MAX) c.fail('totalBytes', `at most ${SNAPSHOT_BYTES_MAX}`);
  c.uint32('crc32c');
  const offset = c.uint('offset');
  const data = c.bytes('data', SNAPSHOT_CHUNK_BYTES);
  if (offset + data.byteLength > totalBytes) c.fail('offset', 'offset + data length at most totalBytes');
  if (data.byteLength === 0 && totalBytes > 0) c.fail('data', 'at least one byte');
  return value as unknown as SnapshotChunk;
}

/**
 * `POST /internal/controller/commands`: a broker asks the active controller to decide something.
 * The body is one msgpack command; the answer is `{ offset }`, the metadata offset at which the
 * decision is applied on the controller (the caller waits until its own image reaches it), or
 * problem+json with the controller's refusal (NOT_CONTROLLER when the node asked is not the
 * active controller).
 */
export const CONTROLLER_COMMANDS_PATH = '/internal/controller/commands';
export const CONTROLLER_COMMAND_BYTES_MAX = 4 * 1024 * 1024;

export type ControllerCommand =
  | {
      type: 'createTopic';
      name: string;
      partitions: number;
      replicationFactor: number;
      /** Config values as their JSON text. */
      configs: Record<string, string>;
    }
  | { type: 'deleteTopic'; name: string }
  | { type: 'alterConfigs'; name: string; changes: Record<string, string | null> }
  | { type: 'addPartitions'; name: string; partitions: number }
  | {
      type: 'registerBroker';
      brokerId: number;
      incarnationId: string;
      endpoints: { name: string; host: string; port: number }[];
      rack: string | null;
      /**
       * How the broker's last run ended (absent: `clean`): `unclean` when the machine went down
       * with it, `new` when its data directory is new. See docs/cluster.md.
       */
      shutdown?: 'clean' | 'unclean' | 'new';
    }
  | { type: 'heartbeat'; brokerId: number; brokerEpoch: number; caughtUp: boolean }
  /** Makes a registered broker (a learner of the metadata quorum) a voter. */
  | { type: 'addVoter'; nodeId: number }
  /** Takes a voter out of the metadata quorum; it follows the log as a learner from then on. */
  | { type: 'removeVoter'; nodeId: number }
  /**
   * A partition's leader asks for a new in-sync set (followers that fell behind leave, caught-up
   * ones join), fenced by its broker epoch, leader epoch and the partition epoch it last saw.
   */
  | {
      type: 'alterPartition';
      brokerId: number;
      brokerEpoch: number;
      topicId: string;
      partition: number;
      leaderEpoch: number;
      partitionEpoch: number;
      isr: number[];
    }
  /** A broker that is stopping: fenced now, its leaderships moved (controlled shutdown). */
  | { type: 'shutdownBroker'; brokerId: number; brokerEpoch: number }
  /**
   * A broker whose logs of these partitions went offline on a storage error: it leaves their
   * leaderships and in-sync sets (the last in-sync replica keeps its place, to lead again after a
   * restart with a healthy disk).
   */
  | {
      type: 'offlineReplicas';
      brokerId: number;
      brokerEpoch: number;
      partitions: { topicId: string; partition: number }[];
    }
  /**
   * Starts (a target list of replicas) or cancels (null) the reassignment of each partition named,
   * all or none; `partitionEpoch`, when given, fences a request computed from an older state.
   */
  | {
      type: 'reassignPartitions';
      partitions: { topic: string; partition: number; replicas: number[] | null; partitionEpoch?: number }[];
    }
  /** Reassigns every partition replica the broker holds to other brokers. */
  | { type: 'decommissionBroker'; brokerId: number }
  /** Decides nothing: answers the controller's last offset, which the caller waits for (a read barrier). */
  | { type: 'readIndex' }
  /** A block of producer ids for a broker to hand out to idempotent producers. */
  | { type: 'allocateProducerIds'; brokerId: number; brokerEpoch: number };

export interface ControllerCommandResult {
  /** The metadata offset the decision is applied at (the log's last offset on the controller then). */
  offset: number;
  /** allocateProducerIds: the block given to the broker. */
  producerIds?: { firstProducerId: number; size: number };
}

const STRING_MAX = 4096;
/** Partitions one reassignment command names (a plan file's worth). */
export const REASSIGN_PARTITIONS_MAX = 1000;
/** Replicas of one partition, as the metadata records allow. */
const REPLICAS_MAX = 64;

/** Checks every field of a command before the controller sees it; throws FieldError. */
export function checkControllerCommand(value: unknown): ControllerCommand {
  if (!isObject(value)) throw new FieldError('/', 'a map');
  const c = new Checker(value, '');
  const string = (name: string) => {
    const v = value[name];
    if (typeof v !== 'string' || v.length === 0 || v.length > STRING_MAX)
      throw new FieldError(name, `a string of 1 to ${STRING_MAX} characters`);
    return v;
  };
  const textMap = (name: string, nullable: boolean) => {
    const v = value[name];
    if (!isObject(v)) throw new FieldError(name, 'a map of strings');
    for (const [k, text] of Object.entries(v)) {
      if (k.length === 0 || k.length > STRING_MAX) throw new FieldError(`${name}/${k}`, 'a config name');
      if (!(typeof text === 'string' && text.length <= STRING_MAX) && !(nullable && text === null))
        throw new FieldError(`${name}/${k}`, nullable ? 'a string or null' : 'a string');
    }
  };
  switch (value.type) {
    case 'createTopic':
      c.only(['type', 'name', 'partitions', 'replicationFactor', 'configs']);
      string('name');
      c.uint('partitions');
      c.uint('replicationFactor');
      textMap('configs', false);
      break;
    case 'deleteTopic':
      c.only(['type', 'name']);
      string('name');
      break;
    case 'alterConfigs':
      c.only(['type', 'name', 'changes']);
      string('name');
      textMap('changes', true);
      break;
    case 'addPartitions':
      c.only(['type', 'name', 'partitions']);
      string('name');
      c.uint('partitions');
      break;
    case 'registerBroker': {
      c.only(['type', 'brokerId', 'incarnationId', 'endpoints', 'rack', 'shutdown']);
      if (value.shutdown !== undefined && !['clean', 'unclean', 'new'].includes(value.shutdown as string))
        throw new FieldError('shutdown', 'clean, unclean or new');
      c.uint('brokerId');
      string('incarnationId');
      const endpoints = value.endpoints;
      if (!Array.isArray(endpoints) || endpoints.length > 16)
        throw new FieldError('endpoints', 'a list of at most 16');
      endpoints.forEach((e, i) => {
        if (!isObject(e) || typeof e.name !== 'string' || typeof e.host !== 'string' || e.host.length > 255)
          throw new FieldError(`endpoints/${i}`, '{name, host, port}');
        if (!Number.isSafeInteger(e.port) || (e.port as number) < 0 || (e.port as number) > 65535)
          throw new FieldError(`endpoints/${i}/port`, 'a port');
      });
      if (value.rack !== null) string('rack');
      break;
    }
    case 'heartbeat':
      c.only(['type', 'brokerId', 'brokerEpoch', 'caughtUp']);
      c.uint('brokerId');
      c.uint('brokerEpoch');
      c.boolean('caughtUp');
      break;
    case 'addVoter':
    case 'removeVoter':
      c.only(['type', 'nodeId']);
      c.uint('nodeId');
      break;
    case 'alterPartition': {
      c.only([
        'type',
        'brokerId',
        'brokerEpoch',
        'topicId',
        'partition',
        'leaderEpoch',
        'partitionEpoch',
        'isr',
      ]);
      c.uint('brokerId');
      c.uint('brokerEpoch');
      string('topicId');
      c.uint('partition');
      c.uint('leaderEpoch');
      c.uint('partitionEpoch');
      const isr = c.array('isr', 64);
      isr.forEach((id, i) => {
        if (!uint(id)) throw new FieldError(`isr/${i}`, 'a node id');
      });
      break;
    }
    case 'offlineReplicas':
      c.only(['type', 'brokerId', 'brokerEpoch', 'partitions']);
      c.uint('brokerId');
      c.uint('brokerEpoch');
      c.array('partitions', REASSIGN_PARTITIONS_MAX).forEach((p, i) => {
        if (
          !isObject(p) ||
          typeof p.topicId !== 'string' ||
          p.topicId.length > STRING_MAX ||
          !uint(p.partition)
        )
          throw new FieldError(`partitions/${i}`, '{topicId, partition}');
        const keys = Object.keys(p);
        if (keys.length !== 2) throw new FieldError(`partitions/${i}`, 'only topicId and partition');
      });
      break;
    case 'shutdownBroker':
    case 'allocateProducerIds':
      c.only(['type', 'brokerId', 'brokerEpoch']);
      c.uint('brokerId');
      c.uint('brokerEpoch');
      break;
    case 'reassignPartitions':
      c.only(['type', 'partitions']);
      c.array('partitions', REASSIGN_PARTITIONS_MAX).forEach((p, i) => {
        if (!isObject(p)) throw new FieldError(`partitions/${i}`, 'a map');
        const pc = new Checker(p, `partitions/${i}/`);
        pc.only(['topic', 'partition', 'replicas', 'partitionEpoch']);
        if (typeof p.topic !== 'string' || p.topic.length === 0 || p.topic.length > 255)
          pc.fail('topic', 'a string of 1 to 255 characters');
        pc.uint('partition');
        if (p.replicas !== null) {
          pc.array('replicas', REPLICAS_MAX).forEach((id, j) => {
            if (!uint(id)) throw new FieldError(`partitions/${i}/replicas/${j}`, 'a node id');
          });
        }
        if (p.partitionEpoch !== undefined) pc.uint('partitionEpoch');
      });
      break;
    case 'decommissionBroker':
      c.only(['type', 'brokerId']);
      c.uint('brokerId');
      break;
    case 'readIndex':
      c.only(['type']);
      break;
    default:
      throw new FieldError('type', 'a controller command');
  }
  return value as unknown as ControllerCommand;
}

/**
 * `POST /internal/replica/fetch`: a follower pulls the batches of every partition it follows from
 * one leader, in one long-polling request (msgpack both ways). The leader answers per partition:
 * the batches from `fetchOffset` as stored (up to its log end, past the high watermark), its high
 * watermark and log start, or the epoch where the follower's log diverges from its own
 * (`divergingEpoch`: the follower truncates there), or an error code.
 */
export const REPLICA_FETCH_PATH = '/internal/replica/fetch';
export const REPLICA_FETCH_PARTITIONS_MAX = 10_000;

export interface ReplicaFetchPartition {
  topicId: string;
  topic: string;
  partition: number;
  /** The follower's log end: where its next batch starts. */
  fetchOffset: number;
  /** The epoch of the follower's last batch, -1 when its log is empty (KIP-595's divergence check). */
  lastFetchedEpoch: number;
  /** The leader epoch the follower follows; a stale or unknown one is refused (KIP-320). */
  leaderEpoch: number;
}

export interface ReplicaFetchRequest {
  replicaId: number;
  /** The follower's broker epoch: a leader answers only a registered, current incarnation. */
  brokerEpoch: number;
  maxWaitMs: number;
  maxBytes: number;
  partitions: ReplicaFetchPartition[];
}

export interface ReplicaFetchPartitionAnswer {
  topic: string;
  partition: number;
  /** An error code (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, OFFSET_OUT_OF_RANGE, ...). */
  error?: string;
  highWatermark: number;
  logStartOffset: number;
  logEndOffset: number;
  divergingEpoch?: { epoch: number; endOffset: number };
  /** Stored batches back to back, as the leader holds them. */
  records: Uint8Array;
}

export function checkReplicaFetchRequest(value: unknown): ReplicaFetchRequest {
  if (!isObject(value)) throw new FieldError('/', 'a map');
  const c = new Checker(value, '');
  c.only(['replicaId', 'brokerEpoch', 'maxWaitMs', 'maxBytes', 'partitions']);
  c.uint('replicaId');
  c.uint('brokerEpoch');
  if (c.uint('maxWaitMs') > 30_000) c.fail('maxWaitMs', 'at most 30000');
  if (c.uint('maxBytes') > 64 * 1024 * 1024) c.fail('maxBytes', 'at most 64 MiB');
  c.array('partitions', REPLICA_FETCH_PARTITIONS_MAX).forEach((p, i) => {
    if (!isObject(p)) throw new FieldError(`partitions/${i}`, 'a map');
    const pc = new Checker(p, `partitions/${i}/`);
    pc.only(['topicId', 'topic', 'partition', 'fetchOffset', 'lastFetchedEpoch', 'leaderEpoch']);
    for (const name of ['topicId', 'topic'] as const)
      if (typeof p[name] !== 'string' || (p[name] as string).length === 0 || (p[name] as string).length > 255)
        pc.fail(name, 'a string of 1 to 255 characters');
    pc.uint('partition');
    pc.uint('fetchOffset');
    if (!(p.lastFetchedEpoch === -1 || uint(p.lastFetchedEpoch)))
      pc.fail('lastFetchedEpoch', '-1 or an epoch');
    pc.uint('leaderEpoch');
  });
  return value as unknown as ReplicaFetchRequest;
}
