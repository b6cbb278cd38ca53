import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { packr, unpackr } from '../protocol/msgpack.js';

/**
 * The records of the `__cluster_metadata` log: every fact of the cluster is one of these, and the
 * metadata image is what replaying them in order gives (see image.ts and docs/metadata.md).
 *
 * A record is one msgpack array, positional, through the one encoder of protocol/msgpack.ts:
 *
 *   [typeCode uint, version uint, field0, field1, ...]
 *
 * Fields follow in the order of the table below, each in the shortest msgpack form msgpackr writes
 * (integers beyond 32 bits come out as float64 `0xcb`, which decodes to the same safe integer).
 * `null` is msgpack nil. A version fixes the exact field count: a newer version of a record may add
 * fields at the end, and a node that does not know that version refuses the record rather than
 * guess (the `metadata.version` feature level is what keeps the controller from writing a version
 * some node cannot read).
 *
 *   code type             v  fields
 *   1    clusterId        0  clusterId str
 *   2    featureLevel     0  name str ("metadata.version"), level uint
 *   3    registerBroker   0  brokerId uint, incarnationId str, endpoints [[name str, host str, port uint]...],
 *                            rack str|nil
 *   4    unregisterBroker 0  brokerId uint, brokerEpoch uint
 *   5    fenceBroker      0  brokerId uint, brokerEpoch uint
 *   6    unfenceBroker    0  brokerId uint, brokerEpoch uint
 *   7    topic            0  name str, topicId str (22 chars of base64url: 16 bytes)
 *   8    partition        0  topicId str, partition uint, replicas [uint...], isr [uint...], leader int
 *                            (-1: none), leaderEpoch uint, partitionEpoch uint
 *                         1  v0's fields, then addingReplicas [uint...], removingReplicas [uint...]
 *   9    partitionChange  0  topicId str, partition uint, leader int|nil, isr [uint...]|nil,
 *                            replicas [uint...]|nil (nil: unchanged)
 *                         1  v0's fields, then addingReplicas [uint...]|nil, removingReplicas
 *                            [uint...]|nil (nil: unchanged, [] clears; at least one of them set)
 *                         2  v1's fields, then elr [uint...]|nil (the eligible leader replicas; every
 *                            field may be nil, at least one is set)
 *   10   config           0  resourceType uint (1 topic, 2 broker defaults), resourceName str ("" for the
 *                            broker defaults), name str, value str|nil (nil: delete)
 *   11   producerIdBlock  0  brokerId uint, firstProducerId uint, size uint
 *   12   removeTopic      0  topicId str
 *
 * Decoding is strict: bytes that are not exactly one msgpack value, an unknown code or version, a
 * wrong field count, a field of the wrong type or out of its range, and bytes that are not the
 * canonical encoding of what they decode to (invalid UTF-8, a longer integer form) all give
 * INVALID_RECORD with `details.reason`. Encoding runs the same checks, so that no invalid record reaches the log from
 * this side. Whether a valid record makes sense against the image (a topic that exists, a current
 * broker epoch) is replay's question, not the codec's.
 */

/**
 * The highest `metadata.version` this code reads and writes. Level 2 adds version 1 of `partition`
 * and `partitionChange` (the replicas a reassignment adds and removes); level 3 adds version 2 of
 * `partitionChange` (the eligible leader replicas) and the snapshot format that holds them. Replay
 * refuses those records on an image below their level, so that no node is handed a record it
 * cannot read.
 */
export const METADATA_VERSION_MAX = 3;
/** The first `metadata.version` whose partition records carry a reassignment. */
export const METADATA_VERSION_REASSIGNMENT = 2;
/** The first `metadata.version` whose partitions carry eligible leader replicas (ELR). */
export const METADATA_VERSION_ELR = 3;
export const METADATA_VERSION_FEATURE = 'metadata.version';

/** Named maxima for the fields of a record: a record past them is refused, never stored. */
export const RECORD_LIMITS = {
  /** A broker id, partition index and leader are int32 in Kafka's protocol; Sluice keeps that range. */
  int32Max: 2 ** 31 - 1,
  /** Epochs, offsets and producer ids: anything a JavaScript number holds exactly. */
  uintMax: LIMITS.offsetMax,
  /** Replicas of one partition (and so members of its ISR). */
  replicasMax: 64,
  /** Listeners of one broker. */
  endpointsMax: 16,
  /** Host names, listener names, racks, incarnation ids, config names. */
  labelLengthMax: 255,
  /** A config value, in UTF-16 code units. */
  configValueLengthMax: 64 * 1024,
  topicNameLengthMax: LIMITS.topicNameLengthMax,
  /** A producer-id block: a broker asks for a thousand at a time; a million is far past that. */
  producerIdBlockSizeMax: 1_000_000,
} as const;

export interface Endpoint {
  readonly name: string;
  readonly host: string;
  readonly port: number;
}

/** A topic's configs, or the defaults every broker applies to topics that do not set a config. */
export type ConfigResource =
  | { readonly type: 'topic'; readonly name: string }
  | { readonly type: 'brokerDefaults' };

export interface ClusterIdRecord {
  readonly type: 'clusterId';
  readonly version: 0;
  readonly clusterId: string;
}
export interface FeatureLevelRecord {
  readonly type: 'featureLevel';
  readonly version: 0;
  readonly name: typeof METADATA_VERSION_FEATURE;
  readonly level: number;
}
/** The broker epoch is not a field: it is the log offset of this record, assigned at replay. */
export interface RegisterBrokerRecord {
  readonly type: 'registerBroker';
  readonly version: 0;
  readonly brokerId: number;
  /** Different on every start of the broker process: tells a restart from a repeated request. */
  readonly incarnationId: string;
  readonly endpoints: readonly Endpoint[];
  readonly rack: string | null;
}
export interface UnregisterBrokerRecord {
  readonly type: 'unregisterBroker';
  readonly version: 0;
  readonly brokerId: number;
  readonly brokerEpoch: number;
}
export interface FenceBrokerRecord {
  readonly type: 'fenceBroker';
  readonly version: 0;
  readonly brokerId: number;
  readonly brokerEpoch: number;
}
export interface UnfenceBrokerRecord {
  readonly type: 'unfenceBroker';
  readonly version: 0;
  readonly brokerId: number;
  readonly brokerEpoch: number;
}
export interface TopicRecord {
  readonly type: 'topic';
  readonly version: 0;
  readonly name: string;
  readonly topicId: string;
}
export interface PartitionRecord {
  readonly type: 'partition';
  /** 1: with the reassignment fields (both present); 0: without (both absent). */
  readonly version: 0 | 1;
  readonly topicId: string;
  readonly partition: number;
  /** The first replica is the preferred leader. */
  readonly replicas: readonly number[];
  readonly isr: readonly number[];
  /** -1: no leader. */
  readonly leader: number;
  readonly leaderEpoch: number;
  readonly partitionEpoch: number;
  /** Replicas a reassignment in progress adds (catching up, not yet counted as its target's own). */
  readonly addingReplicas?: readonly number[];
  /** Replicas a reassignment in progress takes away once the adding ones are in sync. */
  readonly removingReplicas?: readonly number[];
}
/**
 * Absent fields are unchanged. Replay bumps partitionEpoch, and leaderEpoch when the leader changes.
 * Version 1 may set the reassignment fields (an empty list clears one); version 0 never carries them.
 */
export interface PartitionChangeRecord {
  readonly type: 'partitionChange';
  /** 2: may also set `elr`, and any field may be absent (at least one is set). */
  readonly version: 0 | 1 | 2;
  readonly topicId: string;
  readonly partition: number;
  readonly leader?: number;
  readonly isr?: readonly number[];
  readonly replicas?: readonly number[];
  readonly addingReplicas?: readonly number[];
  readonly removingReplicas?: readonly number[];
  /**
   * The eligible leader replicas: replicas that left the in-sync set while it was smaller than
   * `min.insync.replicas` (the high watermark stood still from then on, so each holds every
   * committed record), and may lead when no in-sync replica can. Replay drops from it any broker
   * that is in the in-sync set or no longer a replica.
   */
  readonly elr?: readonly number[];
}
export interface ConfigRecord {
  readonly type: 'config';
  readonly version: 0;
  readonly resource: ConfigResource;
  readonly name: string;
  /** null deletes the config. */
  readonly value: string | null;
}
export interface ProducerIdBlockRecord {
  readonly type: 'producerIdBlock';
  readonly version: 0;
  readonly brokerId: number;
  readonly firstProducerId: number;
  readonly size: number;
}
export interface RemoveTopicRecord {
  readonly type: 'removeTopic';
  readonly version: 0;
  readonly topicId: string;
}

export type MetadataRecord =
  | ClusterIdRecord
  | FeatureLevelRecord
  | RegisterBrokerRecord
  | UnregisterBrokerRecord
  | FenceBrokerRecord
  | UnfenceBrokerRecord
  | TopicRecord
  | PartitionRecord
  | PartitionChangeRecord
  | ConfigRecord
  | ProducerIdBlockRecord
  | RemoveTopicRecord;

export type MetadataRecordType = MetadataRecord['type'];

/** The wire codes; never reuse a code, even for a record that is retired. */
export const RECORD_TYPE_CODES: Readonly<Record<MetadataRecordType, number>> = Object.freeze({
  clusterId: 1,
  featureLevel: 2,
  registerBroker: 3,
  unregisterBroker: 4,
  fenceBroker: 5,
  unfenceBroker: 6,
  topic: 7,
  partition: 8,
  partitionChange: 9,
  config: 10,
  producerIdBlock: 11,
  removeTopic: 12,
});

const TYPE_BY_CODE = new Map<number, MetadataRecordType>(
  Object.entries(RECORD_TYPE_CODES).map(([type, code]) => [code, type as MetadataRecordType]),
);

/** The config resource types on the wire. */
const RESOURCE_TOPIC = 1;
const RESOURCE_BROKER_DEFAULTS = 2;

/** The id no topic has: 16 zero bytes, kept free to mean "none" wherever an id is optional. */
export const ZERO_TOPIC_ID = 'AAAAAAAAAAAAAAAAAAAAAA';

/**
 * 16 bytes as 22 characters of unpadded base64url. The last character carries 2 bits of data and 4
 * zero bits, so only A, Q, g and w may end it: one spelling per id, so that ids compare as strings.
 */
const TOPIC_ID = /^[A-Za-z0-9_-]{21}[AQgw]$/;

export function isTopicId(value: unknown): value is string {
  return typeof value === 'string' && TOPIC_ID.test(value) && value !== ZERO_TOPIC_ID;
}

/** The caller's 16 random bytes as a topic id (they come from its seeded Random, never from here). */
export function topicIdFromBytes(bytes: Uint8Array): string {
  if (bytes.length !== 16)
    throw new SluiceError('INVALID_REQUEST', `a topic id is 16 bytes, got ${bytes.length}`);
  const id = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
  if (id === ZERO_TOPIC_ID) throw new SluiceError('INVALID_REQUEST', 'the all-zero topic id is reserved');
  return id;
}

export function topicIdToBytes(topicId: string): Uint8Array {
  if (!isTopicId(topicId)) throw new SluiceError('INVALID_REQUEST', `not a topic id: ${topicId}`);
  return new Uint8Array(Buffer.from(topicId, 'base64url'));
}

// ---------------------------------------------------------------------------------------------
// Field checks. Each returns the value typed, or throws INVALID_RECORD naming the field.

type Reason = 'encoding' | 'unknownType' | 'unknownVersion' | 'shape' | 'field';

function invalid(reason: Reason, message: string, details: Record<string, unknown> = {}): SluiceError {
  return new SluiceError('INVALID_RECORD', `metadata record: ${message}`, {
    details: { reason, ...details },
  });
}

function fieldError(field: string, value: unknown, want: string): SluiceError {
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : describe(value);
  return invalid('field', `${field} must be ${want}, got ${shown}`, { field });
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'number') return String(value);
  return typeof value;
}

/** No lone surrogate: UTF-8 cannot hold one, and msgpack strings are UTF-8. */
function isWellFormed(text: string): boolean {
  // ES2024's String.prototype.isWellFormed, present in Node 20 but not in the ES2023 lib types.
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

function int(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)
    throw fieldError(field, value, `an integer in [${min}, ${max}]`);
  return value;
}

const brokerIdOf = (field: string, value: unknown) => int(field, value, 0, RECORD_LIMITS.int32Max);
const uintOf = (field: string, value: unknown) => int(field, value, 0, RECORD_LIMITS.uintMax);

function label(field: string, value: unknown, allowEmpty = false): string {
  if (
    typeof value !== 'string' ||
    (!allowEmpty && value.length === 0) ||
    value.length > RECORD_LIMITS.labelLengthMax ||
    !isWellFormed(value)
  )
    throw fieldError(field, value, `a well-formed string of ${allowEmpty ? 0 : 1} to 255 characters`);
  return value;
}

function topicName(field: string, value: unknown): string {
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > RECORD_LIMITS.topicNameLengthMax ||
    !isWellFormed(value)
  )
    throw fieldError(field, value, 'a topic name of 1 to 249 characters');
  return value;
}

function topicIdOf(field: string, value: unknown): string {
  if (!isTopicId(value)) throw fieldError(field, value, 'a topic id (22 characters of base64url, not zero)');
  return value;
}

/** Broker ids, distinct; `min` 1 for replicas (a partition lives somewhere), 0 for an ISR. */
function brokerList(field: string, value: unknown, minLength: number): readonly number[] {
  if (!Array.isArray(value) || value.length < minLength || value.length > RECORD_LIMITS.replicasMax)
    throw fieldError(field, value, `an array of ${minLength} to ${RECORD_LIMITS.replicasMax} broker ids`);
  const seen = new Set<number>();
  for (const id of value) {
    brokerIdOf(`${field}[]`, id);
    if (seen.has(id)) throw fieldError(field, value, 'an array of distinct broker ids');
    seen.add(id);
  }
  return Object.freeze([...value]);
}

function endpointList(value: unknown): readonly Endpoint[] {
  if (!Array.isArray(value) || value.length > RECORD_LIMITS.endpointsMax)
    throw fieldError('endpoints', value, `an array of at most ${RECORD_LIMITS.endpointsMax} endpoints`);
  const names = new Set<string>();
  return Object.freeze(
    value.map((endpoint) => {
      const e = endpoint as Partial<Endpoint> | null;
      if (typeof e !== 'object' || e === null || Array.isArray(e))
        throw fieldError('endpoints[]', endpoint, 'an endpoint {name, host, port}');
      const name = label('endpoints[].name', e.name);
      if (names.has(name)) throw fieldError('endpoints[].name', name, 'a name no other endpoint has');
      names.add(name);
      return Object.freeze({
        name,
        host: label('endpoints[].host', e.host),
        port: int('endpoints[].port', e.port, 1, 65_535),
      });
    }),
  );
}

/** A version 0 partition record or change knows nothing of reassignments. */
function noReassignmentFields(record: PartitionRecord | PartitionChangeRecord): void {
  for (const field of ['addingReplicas', 'removingReplicas'] as const)
    if (record[field] !== undefined) throw fieldError(field, record[field], 'absent in version 0');
}

/** Only a version 2 change carries eligible leader replicas. */
function noElrField(record: PartitionRecord | PartitionChangeRecord): void {
  if ('elr' in record && record.elr !== undefined)
    throw fieldError('elr', record.elr, `absent in version ${record.version}`);
}

/** The versions each record type has (a newer version adds fields at the end). */
const VERSIONS: Readonly<Record<MetadataRecordType, readonly number[]>> = {
  clusterId: [0],
  featureLevel: [0],
  registerBroker: [0],
  unregisterBroker: [0],
  fenceBroker: [0],
  unfenceBroker: [0],
  topic: [0],
  partition: [0, 1],
  partitionChange: [0, 1, 2],
  config: [0],
  producerIdBlock: [0],
  removeTopic: [0],
};

// ---------------------------------------------------------------------------------------------
// One check per record: the object form, as the controller builds it and as decoding yields it.

function checkFields(record: MetadataRecord): MetadataRecord {
  switch (record.type) {
    case 'clusterId':
      return { type: record.type, version: 0, clusterId: label('clusterId', record.clusterId) };
    case 'featureLevel':
      if ((record.name as string) !== METADATA_VERSION_FEATURE)
        throw fieldError('name', record.name, `"${METADATA_VERSION_FEATURE}"`);
      return {
        type: record.type,
        version: 0,
        name: record.name,
        level: int('level', record.level, 1, METADATA_VERSION_MAX),
      };
    case 'registerBroker': {
      const rack = record.rack;
      return {
        type: record.type,
        version: 0,
        brokerId: brokerIdOf('brokerId', record.brokerId),
        incarnationId: label('incarnationId', record.incarnationId),
        endpoints: endpointList(record.endpoints),
        rack: rack === null ? null : label('rack', rack),
      };
    }
    case 'unregisterBroker':
    case 'fenceBroker':
    case 'unfenceBroker':
      return {
        type: record.type,
        version: 0,
        brokerId: brokerIdOf('brokerId', record.brokerId),
        brokerEpoch: uintOf('brokerEpoch', record.brokerEpoch),
      };
    case 'topic':
      return {
        type: record.type,
        version: 0,
        name: topicName('name', record.name),
        topicId: topicIdOf('topicId', record.topicId),
      };
    case 'partition': {
      const base = {
        type: record.type,
        topicId: topicIdOf('topicId', record.topicId),
        partition: int('partition', record.partition, 0, LIMITS.partitionsMax - 1),
        replicas: brokerList('replicas', record.replicas, 1),
        isr: brokerList('isr', record.isr, 0),
        leader: int('leader', record.leader, -1, RECORD_LIMITS.int32Max),
        leaderEpoch: uintOf('leaderEpoch', record.leaderEpoch),
        partitionEpoch: uintOf('partitionEpoch', record.partitionEpoch),
      };
      if (record.version === 0) {
        noReassignmentFields(record);
        return { ...base, version: 0 };
      }
      return {
        ...base,
        version: 1,
        addingReplicas: brokerList('addingReplicas', record.addingReplicas, 0),
        removingReplicas: brokerList('removingReplicas', record.removingReplicas, 0),
      };
    }
    case 'partitionChange': {
      const out: {
        -readonly [K in keyof PartitionChangeRecord]: PartitionChangeRecord[K];
      } = {
        type: record.type,
        version: record.version,
        topicId: topicIdOf('topicId', record.topicId),
        partition: int('partition', record.partition, 0, LIMITS.partitionsMax - 1),
      };
      if (record.leader !== undefined) out.leader = int('leader', record.leader, -1, RECORD_LIMITS.int32Max);
      if (record.isr !== undefined) out.isr = brokerList('isr', record.isr, 0);
      if (record.replicas !== undefined) out.replicas = brokerList('replicas', record.replicas, 1);
      if (record.version === 0) noReassignmentFields(record);
      if (record.version !== 2) noElrField(record);
      if (record.version === 2) {
        if (record.addingReplicas !== undefined)
          out.addingReplicas = brokerList('addingReplicas', record.addingReplicas, 0);
        if (record.removingReplicas !== undefined)
          out.removingReplicas = brokerList('removingReplicas', record.removingReplicas, 0);
        if (record.elr !== undefined) out.elr = brokerList('elr', record.elr, 0);
      } else if (record.version === 1) {
        if (record.addingReplicas === undefined && record.removingReplicas === undefined)
          throw fieldError(
            'addingReplicas',
            undefined,
            'set in a version 1 change (or the change is version 0)',
          );
        if (record.addingReplicas !== undefined)
          out.addingReplicas = brokerList('addingReplicas', record.addingReplicas, 0);
        if (record.removingReplicas !== undefined)
          out.removingReplicas = brokerList('removingReplicas', record.removingReplicas, 0);
      }
      return out;
    }
    case 'config': {
      const resource = record.resource as ConfigResource | null;
      let checked: ConfigResource;
      if (resource?.type === 'topic')
        checked = Object.freeze({ type: 'topic', name: topicName('resource.name', resource.name) });
      else if (resource?.type === 'brokerDefaults') checked = Object.freeze({ type: 'brokerDefaults' });
      else throw fieldError('resource', resource, 'a topic or the broker defaults');
      const value = record.value;
      if (
        value !== null &&
        (typeof value !== 'string' ||
          value.length > RECORD_LIMITS.configValueLengthMax ||
          !isWellFormed(value))
      )
        throw fieldError('value', value, 'a well-formed string of at most 65536 characters, or null');
      return { type: record.type, version: 0, resource: checked, name: label('name', record.name), value };
    }
    case 'producerIdBlock':
      return {
        type: record.type,
        version: 0,
        brokerId: brokerIdOf('brokerId', record.brokerId),
        firstProducerId: uintOf('firstProducerId', record.firstProducerId),
        size: int('size', record.size, 1, RECORD_LIMITS.producerIdBlockSizeMax),
      };
    case 'removeTopic':
      return { type: record.type, version: 0, topicId: topicIdOf('topicId', record.topicId) };
    default:
      throw invalid('unknownType', `unknown record type ${describe((record as { type: unknown }).type)}`);
  }
}

/**
 * The record with every field checked, frozen, and with nothing but its own fields: INVALID_RECORD
 * when any field is missing, of the wrong type or out of range.
 */
export function checkRecord(record: MetadataRecord): MetadataRecord {
  if (typeof record !== 'object' || record === null) throw invalid('shape', 'a record is an object');
  if (!Object.hasOwn(RECORD_TYPE_CODES, record.type))
    throw invalid('unknownType', `unknown record type ${describe(record.type)}`);
  if (!VERSIONS[record.type].includes(record.version as number))
    throw invalid('unknownVersion', `${record.type} has no version ${describe(record.version)}`, {
      recordType: record.type,
    });
  if (record.type === 'partitionChange') {
    // An empty change would still bump the partition epoch: never what a controller means.
    if (
      record.leader === undefined &&
      record.isr === undefined &&
      record.replicas === undefined &&
      record.addingReplicas === undefined &&
      record.removingReplicas === undefined &&
      record.elr === undefined
    )
      throw invalid('field', 'a partitionChange changes at least one of leader, isr, replicas', {
        field: 'leader',
      });
  }
  return Object.freeze(checkFields(record));
}

/** Positional fields of a record, as they go on the wire after `[code, version]`. */
function fieldsOf(record: MetadataRecord): unknown[] {
  switch (record.type) {
    case 'clusterId':
      return [record.clusterId];
    case 'featureLevel':
      return [record.name, record.level];
    case 'registerBroker':
      return [
        record.brokerId,
        record.incarnationId,
        record.endpoints.map((e) => [e.name, e.host, e.port]),
        record.rack,
      ];
    case 'unregisterBroker':
    case 'fenceBroker':
    case 'unfenceBroker':
      return [record.brokerId, record.brokerEpoch];
    case 'topic':
      return [record.name, record.topicId];
    case 'partition': {
      const fields: unknown[] = [
        record.topicId,
        record.partition,
        record.replicas,
        record.isr,
        record.leader,
        record.leaderEpoch,
        record.partitionEpoch,
      ];
      if (record.version === 1) fields.push(record.addingReplicas, record.removingReplicas);
      return fields;
    }
    case 'partitionChange': {
      const fields: unknown[] = [
        record.topicId,
        record.partition,
        record.leader ?? null,
        record.isr ?? null,
        record.replicas ?? null,
      ];
      if (record.version >= 1) fields.push(record.addingReplicas ?? null, record.removingReplicas ?? null);
      if (record.version === 2) fields.push(record.elr ?? null);
      return fields;
    }
    case 'config':
      return record.resource.type === 'topic'
        ? [RESOURCE_TOPIC, record.resource.name, record.name, record.value]
        : [RESOURCE_BROKER_DEFAULTS, '', record.name, record.value];
    case 'producerIdBlock':
      return [record.brokerId, record.firstProducerId, record.size];
    case 'removeTopic':
      return [record.topicId];
  }
}

/** Fields a version adds to version 0, by type (types with one version add none). */
const FIELDS_ADDED: Partial<Record<MetadataRecordType, readonly number[]>> = {
  partition: [0, 2],
  partitionChange: [0, 2, 3],
};

/** Field count of each record at version 0, after `[code, version]`. */
const FIELD_COUNTS: Readonly<Record<MetadataRecordType, number>> = {
  clusterId: 1,
  featureLevel: 2,
  registerBroker: 4,
  unregisterBroker: 2,
  fenceBroker: 2,
  unfenceBroker: 2,
  topic: 2,
  partition: 7,
  partitionChange: 5,
  config: 4,
  producerIdBlock: 3,
  removeTopic: 1,
};

/** The object form of a record from its positional fields; types are checked afterwards. */
function recordOf(type: MetadataRecordType, version: number, f: unknown[]): MetadataRecord {
  const any = f as never[];
  switch (type) {
    case 'clusterId':
      return { type, version: 0, clusterId: any[0]! };
    case 'featureLevel':
      return { type, version: 0, name: any[0]!, level: any[1]! };
    case 'registerBroker': {
      const endpoints = f[2];
      if (!Array.isArray(endpoints)) throw fieldError('endpoints', endpoints, 'an array of endpoints');
      return {
        type,
        version: 0,
        brokerId: any[0]!,
        incarnationId: any[1]!,
        endpoints: endpoints.map((e: unknown) => {
          if (!Array.isArray(e) || e.length !== 3)
            throw fieldError('endpoints[]', e, 'an endpoint [name, host, port]');
          return { name: e[0], host: e[1], port: e[2] };
        }),
        rack: any[3]!,
      };
    }
    case 'unregisterBroker':
    case 'fenceBroker':
    case 'unfenceBroker':
      return { type, version: 0, brokerId: any[0]!, brokerEpoch: any[1]! };
    case 'topic':
      return { type, version: 0, name: any[0]!, topicId: any[1]! };
    case 'partition':
      return {
        type,
        version: version as 0 | 1,
        topicId: any[0]!,
        partition: any[1]!,
        replicas: any[2]!,
        isr: any[3]!,
        leader: any[4]!,
        leaderEpoch: any[5]!,
        partitionEpoch: any[6]!,
        ...(version === 1 ? { addingReplicas: any[7]!, removingReplicas: any[8]! } : {}),
      };
    case 'partitionChange': {
      const out: { -readonly [K in keyof PartitionChangeRecord]: PartitionChangeRecord[K] } = {
        type,
        version: version as 0 | 1 | 2,
        topicId: any[0]!,
        partition: any[1]!,
      };
      // nil means unchanged; anything else is checked as the field.
      if (f[2] !== null) out.leader = any[2]!;
      if (f[3] !== null) out.isr = any[3]!;
      if (f[4] !== null) out.replicas = any[4]!;
      if (version >= 1) {
        if (f[5] !== null) out.addingReplicas = any[5]!;
        if (f[6] !== null) out.removingReplicas = any[6]!;
      }
      if (version === 2 && f[7] !== null) out.elr = any[7]!;
      return out;
    }
    case 'config': {
      const [resourceType, resourceName] = f;
      let resource: ConfigResource;
      if (resourceType === RESOURCE_TOPIC) resource = { type: 'topic', name: resourceName as string };
      else if (resourceType === RESOURCE_BROKER_DEFAULTS) {
        if (resourceName !== '')
          throw fieldError('resource.name', resourceName, '"" for the broker defaults');
        resource = { type: 'brokerDefaults' };
      } else throw fieldError('resourceType', resourceType, '1 (topic) or 2 (broker defaults)');
      return { type, version: 0, resource, name: any[2]!, value: any[3]! };
    }
    case 'producerIdBlock':
      return { type, version: 0, brokerId: any[0]!, firstProducerId: any[1]!, size: any[2]! };
    case 'removeTopic':
      return { type, version: 0, topicId: any[0]! };
  }
}

/** The record's bytes; INVALID_RECORD if the record does not pass checkRecord. */
export function encodeRecord(record: MetadataRecord): Uint8Array {
  const checked = checkRecord(record);
  return packr.pack([RECORD_TYPE_CODES[checked.type], checked.version, ...fieldsOf(checked)]);
}

/** A checked, frozen record from exactly one msgpack value; INVALID_RECORD for anything else. */
export function decodeRecord(bytes: Uint8Array): MetadataRecord {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch (error) {
    throw new SluiceError('INVALID_RECORD', 'metadata record: not one msgpack value', {
      details: { reason: 'encoding' },
      cause: error,
    });
  }
  if (!Array.isArray(value) || value.length < 2)
    throw invalid('shape', 'a record is an array [type code, version, fields...]');
  const [code, version, ...fields] = value as unknown[];
  const type = typeof code === 'number' ? TYPE_BY_CODE.get(code) : undefined;
  if (type === undefined) throw invalid('unknownType', `unknown record type code ${describe(code)}`);
  if (typeof version !== 'number' || !VERSIONS[type].includes(version))
    throw invalid('unknownVersion', `${type} has no version ${describe(version)}`, { recordType: type });
  const count = FIELD_COUNTS[type] + (FIELDS_ADDED[type]?.[version] ?? 0);
  if (fields.length !== count)
    throw invalid('shape', `${type} v${version} has ${count} fields, got ${fields.length}`, {
      recordType: type,
    });
  const record = checkRecord(recordOf(type, version, fields));
  // One spelling per record: msgpackr reads invalid UTF-8 as U+FFFD and accepts longer integer
  // forms, and a record that two nodes could read differently, or that re-encodes to other bytes,
  // has no place in a replicated log. The golden fixtures pin the canonical forms, so an encoder
  // upgrade that changed them fails those tests before it could make old logs unreadable.
  if (!Buffer.from(encodeRecord(record)).equals(bytes))
    throw invalid('encoding', `${type} is not in its canonical encoding`, { recordType: type });
  return record;
}
