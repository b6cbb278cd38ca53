import { ERROR_CODES, type ErrorCode } from '../common/errors.js';
import { ENDPOINTS, type Endpoint, MEDIA } from '../protocol/api.js';

/**
 * The OpenAPI 3.1 document, generated from the endpoint table (`protocol/api.ts`): every
 * endpoint's parameters, request bodies in each media type it takes, its success answer (and the
 * 202 of `acks=0` for produce), and the problem+json errors it can answer with, by status. Every
 * body and answer schema is a named component, so that generated clients get named types
 * (`components["schemas"]["TopicDescription"]`). The schemas are those the server's answers are
 * tested against (test/http/harness.ts), so the document and the server cannot drift apart.
 */

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

const FETCH_BATCHES_SCHEMA = {
  type: 'object',
  description: 'The zero-copy msgpack fetch answer: stored record batches as stored (docs/storage-format.md)',
  required: ['batches', 'nextOffset', 'highWatermark', 'logStartOffset'],
  properties: {
    batches: {
      type: 'array',
      description: 'stored record batches, each a msgpack array as on disk',
      items: { type: 'array' },
    },
    nextOffset: { type: 'integer' },
    highWatermark: { type: 'integer' },
    logStartOffset: { type: 'integer' },
  },
};

const textOrNull = { type: ['string', 'null'] };

/** A record of a JSON or msgpack produce body (docs/api.md, "Produce"). */
const PRODUCE_RECORD_SCHEMA = {
  type: 'object',
  description:
    'One record. In JSON, key, value and header values are UTF-8 text (base64 with valueEncoding); in msgpack also bin.',
  additionalProperties: false,
  properties: {
    key: textOrNull,
    value: textOrNull,
    headers: {
      description: 'an object of name to value, or [name, value] pairs (order and repeated names kept)',
      anyOf: [
        { type: 'object', additionalProperties: textOrNull },
        {
          type: 'array',
          items: { type: 'array', prefixItems: [{ type: 'string' }, textOrNull], minItems: 2, maxItems: 2 },
        },
      ],
    },
    partition: {
      type: 'integer',
      minimum: 0,
      description: 'the topic route only: this partition, else murmur2(key), else sticky',
    },
    timestamp: { type: 'integer', minimum: 0, description: 'ms since the epoch; default the broker’s time' },
  },
};

const PRODUCE_REQUEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['records'],
  properties: {
    records: { type: 'array', minItems: 1, items: ref('ProduceRecord') },
    valueEncoding: {
      type: 'string',
      enum: ['utf8', 'base64'],
      description: 'how keys, values and header values of the JSON body are written (default utf8)',
    },
  },
};

const PROBLEM_SCHEMA = {
  type: 'object',
  description: 'RFC 9457 problem details with a stable code (docs/errors.md); typed details beside',
  required: ['type', 'title', 'status', 'detail', 'code', 'retriable'],
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string', enum: Object.keys(ERROR_CODES) },
    retriable: { type: 'boolean' },
    instance: { type: 'string' },
  },
};

const binary = (description: string) => ({
  type: 'string',
  contentMediaType: 'application/octet-stream',
  description,
});

/** The request bodies of the produce routes, by media type. */
function produceBodies(endpoint: Endpoint): Record<string, { schema: unknown }> {
  const bodies: Record<string, { schema: unknown }> = {};
  for (const media of endpoint.consumes ?? []) {
    if (media === MEDIA.json || media === MEDIA.msgpack || media === MEDIA.msgpackAlt)
      bodies[media] = { schema: ref('ProduceRequest') };
    else if (media === MEDIA.ndjson)
      bodies[media] = {
        schema: { type: 'string', description: 'one ProduceRecord JSON object per line' },
      };
    else if (media === MEDIA.octetStream)
      bodies[media] = {
        schema: binary(
          'one record’s value as sent; its key from Sluice-Key, its headers from Sluice-Header-<name>, its timestamp from Sluice-Timestamp',
        ),
      };
    else if (media === MEDIA.batches)
      bodies[media] = {
        schema: binary(
          'one or more record batches in the stored layout (docs/storage-format.md), uncompressed or compressed',
        ),
      };
  }
  return bodies;
}

/** The headers an `application/octet-stream` produce body takes its record's key and timestamp from. */
const RAW_RECORD_HEADERS = [
  {
    name: 'Sluice-Key',
    in: 'header',
    required: false,
    description: 'application/octet-stream bodies: the record key (ASCII text)',
    schema: { type: 'string' },
  },
  {
    name: 'Sluice-Timestamp',
    in: 'header',
    required: false,
    description: 'application/octet-stream bodies: the record timestamp, ms since the epoch',
    schema: { type: 'string', pattern: '^[0-9]{1,16}$' },
  },
];

/** Names of answer schemas shared by several endpoints, or worth a name of their own. */
const RESPONSE_NAMES: Partial<Record<string, string>> = {
  createTopic: 'TopicDescription',
  describeTopic: 'TopicDescription',
  alterTopicConfigs: 'TopicDescription',
  addPartitions: 'TopicDescription',
  listTopics: 'TopicList',
  produce: 'ProduceOffsets',
  producePartition: 'PartitionProduceResponse',
  fetch: 'FetchResponse',
  offsets: 'PartitionOffsets',
  cluster: 'Cluster',
  metadata: 'Metadata',
  listReassignments: 'Reassignments',
  reassignPartitions: 'Reassignments',
  addVoter: 'Voters',
  removeVoter: 'Voters',
  joinGroup: 'GroupMember',
  heartbeatGroup: 'GroupMember',
};

const BODY_NAMES: Partial<Record<string, string>> = {
  createTopic: 'TopicCreateRequest',
  alterTopicConfigs: 'TopicConfigs',
};

const pascal = (id: string) => id[0]!.toUpperCase() + id.slice(1);

/** Codes every route can answer with: the request's framing and the node's state. */
const COMMON_CODES: readonly ErrorCode[] = [
  'INVALID_REQUEST',
  'NOT_ACCEPTABLE',
  'CLIENT_TIMEOUT',
  'REQUEST_HEADERS_TOO_LARGE',
  'LIMIT_EXCEEDED',
  'UNKNOWN_SERVER_ERROR',
  'SHUTTING_DOWN',
];
const BODY_CODES: readonly ErrorCode[] = ['UNSUPPORTED_MEDIA_TYPE', 'REQUEST_TOO_LARGE'];
const TOPIC_CODES: readonly ErrorCode[] = ['INVALID_TOPIC_EXCEPTION', 'UNKNOWN_TOPIC_OR_PARTITION'];
const LEADER_CODES: readonly ErrorCode[] = [
  'NOT_LEADER_OR_FOLLOWER',
  'LEADER_NOT_AVAILABLE',
  'FENCED_LEADER_EPOCH',
  'UNKNOWN_LEADER_EPOCH',
  'KAFKA_STORAGE_ERROR',
  'NETWORK_EXCEPTION',
  'REQUEST_TIMED_OUT',
];
const PRODUCE_CODES: readonly ErrorCode[] = [
  'CORRUPT_MESSAGE',
  'INVALID_RECORD',
  'INVALID_TIMESTAMP',
  'UNSUPPORTED_COMPRESSION_TYPE',
  'RECORD_TOO_LARGE',
  'MESSAGE_TOO_LARGE',
  'DECOMPRESSED_TOO_LARGE',
  'TOO_MANY_RECORDS',
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'PRODUCER_FENCED',
  'UNKNOWN_PRODUCER_ID',
  'NOT_ENOUGH_REPLICAS',
  'NOT_ENOUGH_REPLICAS_AFTER_APPEND',
];
const READ_CODES: readonly ErrorCode[] = ['INVALID_OFFSET', 'OFFSET_OUT_OF_RANGE', 'OFFSET_NOT_AVAILABLE'];
const CONTROLLER_CODES: readonly ErrorCode[] = [
  'NOT_CONTROLLER',
  'NOT_LEADER',
  'REQUEST_TIMED_OUT',
  'UNSUPPORTED_VERSION',
  'INVALID_UPDATE_VERSION',
];
const TOPIC_ADMIN_CODES: readonly ErrorCode[] = [
  'TOPIC_ALREADY_EXISTS',
  'INVALID_PARTITIONS',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_CONFIG',
  'INVALID_REPLICA_ASSIGNMENT',
];
const REASSIGN_CODES: readonly ErrorCode[] = [
  'REASSIGNMENT_IN_PROGRESS',
  'NO_REASSIGNMENT_IN_PROGRESS',
  'INVALID_REPLICA_ASSIGNMENT',
];
const GROUP_CODES: readonly ErrorCode[] = [
  'GROUP_ID_NOT_FOUND',
  'UNKNOWN_MEMBER_ID',
  'FENCED_MEMBER_EPOCH',
  'STALE_MEMBER_EPOCH',
  'NON_EMPTY_GROUP',
  'COORDINATOR_LOAD_IN_PROGRESS',
  'NOT_COORDINATOR',
  'INVALID_OFFSET',
  'NETWORK_EXCEPTION',
];

/** The error codes an endpoint can answer with, from what it takes and what it does. */
export function endpointErrorCodes(endpoint: Endpoint): ErrorCode[] {
  const codes = new Set<ErrorCode>(COMMON_CODES);
  const add = (list: readonly ErrorCode[]) => {
    for (const code of list) codes.add(code);
  };
  if (endpoint.consumes) add(BODY_CODES);
  if (endpoint.path.includes(':topic')) add(TOPIC_CODES);
  if (endpoint.id === 'produce' || endpoint.id === 'producePartition')
    add([...LEADER_CODES, ...PRODUCE_CODES]);
  if (endpoint.id === 'fetch' || endpoint.id === 'offsets') add([...LEADER_CODES, ...READ_CODES]);
  if (endpoint.id === 'initProducer') add(CONTROLLER_CODES);
  if (['createTopic', 'deleteTopic', 'alterTopicConfigs', 'addPartitions'].includes(endpoint.id))
    add([...CONTROLLER_CODES, ...TOPIC_ADMIN_CODES]);
  if (['listReassignments', 'reassignPartitions', 'decommissionBroker'].includes(endpoint.id))
    add([...CONTROLLER_CODES, ...REASSIGN_CODES, 'UNKNOWN_TOPIC_OR_PARTITION']);
  if (endpoint.id === 'addVoter' || endpoint.id === 'removeVoter') add(CONTROLLER_CODES);
  if (endpoint.path.startsWith('/v1/groups')) add([...GROUP_CODES, 'UNKNOWN_TOPIC_OR_PARTITION']);
  return [...codes];
}

/** One response per error status the endpoint can answer, each listing its codes. */
function problemResponses(endpoint: Endpoint): Record<string, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of endpointErrorCodes(endpoint)) {
    const status = ERROR_CODES[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Record<string, unknown> = {};
  for (const status of [...byStatus.keys()].sort((a, b) => a - b))
    responses[String(status)] = {
      description: byStatus
        .get(status)!
        .map((code) => `${code}: ${ERROR_CODES[code].title}`)
        .join('; '),
      content: { [MEDIA.problem]: { schema: ref('Problem') } },
    };
  return responses;
}

/** Registers `schema` as a component named `name` (or the fallback when the name holds another). */
function named(
  schemas: Record<string, unknown>,
  name: string,
  fallback: string,
  schema: unknown,
): { $ref: string } {
  const existing = schemas[name];
  if (existing === undefined || JSON.stringify(existing) === JSON.stringify(schema)) {
    schemas[name] = schema;
    return ref(name);
  }
  schemas[fallback] = schema;
  return ref(fallback);
}

function successContent(endpoint: Endpoint, schemas: Record<string, unknown>): Record<string, unknown> {
  const id = endpoint.id;
  const response = named(
    schemas,
    RESPONSE_NAMES[id] ?? `${pascal(id)}Response`,
    `${pascal(id)}Response`,
    endpoint.response ?? { type: 'object' },
  );
  const content: Record<string, unknown> = {};
  for (const media of endpoint.produces) {
    if (id === 'fetch' && media === MEDIA.msgpack) content[media] = { schema: ref('FetchBatches') };
    else if (media === MEDIA.ndjson)
      content[media] = { schema: { type: 'string', description: 'one JSON record per line' } };
    else if (media === MEDIA.eventStream)
      content[media] = { schema: { type: 'string', description: 'server-sent events, one record each' } };
    else content[media] = { schema: response };
  }
  return content;
}

function operation(endpoint: Endpoint, schemas: Record<string, unknown>): Record<string, unknown> {
  const parameters: unknown[] = [];
  const params = endpoint.params as { properties?: Record<string, unknown> } | undefined;
  for (const [name, schema] of Object.entries(params?.properties ?? {}))
    parameters.push({ name, in: 'path', required: true, schema });
  const query = endpoint.querystring as
    | { properties?: Record<string, unknown>; required?: string[] }
    | undefined;
  for (const [name, schema] of Object.entries(query?.properties ?? {}))
    parameters.push({ name, in: 'query', required: query?.required?.includes(name) ?? false, schema });
  const produce = endpoint.id === 'produce' || endpoint.id === 'producePartition';
  if (produce) parameters.push(...RAW_RECORD_HEADERS);
  let requestBody: unknown;
  if (produce) requestBody = { required: true, content: produceBodies(endpoint) };
  else if (endpoint.body) {
    const body = named(
      schemas,
      BODY_NAMES[endpoint.id] ?? `${pascal(endpoint.id)}Request`,
      `${pascal(endpoint.id)}Request`,
      endpoint.body,
    );
    const content: Record<string, unknown> = {};
    for (const media of endpoint.consumes ?? [MEDIA.json, MEDIA.msgpack]) content[media] = { schema: body };
    requestBody = { required: true, content };
  }
  const success = successContent(endpoint, schemas);
  return {
    operationId: endpoint.id,
    summary: endpoint.summary,
    parameters,
    ...(requestBody ? { requestBody } : {}),
    responses: {
      [String(endpoint.successStatus)]: { description: 'success', content: success },
      // acks=0 is answered at once, before the append, without offsets.
      ...(produce
        ? { '202': { description: 'acks=0: accepted, not yet appended; no offsets', content: success } }
        : {}),
      ...problemResponses(endpoint),
      default: {
        description: 'problem details (RFC 9457)',
        content: { [MEDIA.problem]: { schema: ref('Problem') } },
      },
    },
  };
}

/** An OpenAPI 3.1 document generated from the endpoint table. */
export function openApiDocument(version: string): Record<string, unknown> {
  const schemas: Record<string, unknown> = {
    Problem: PROBLEM_SCHEMA,
    ProduceRecord: PRODUCE_RECORD_SCHEMA,
    ProduceRequest: PRODUCE_REQUEST_SCHEMA,
    FetchBatches: FETCH_BATCHES_SCHEMA,
  };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const endpoint of Object.values(ENDPOINTS) as Endpoint[]) {
    const path = endpoint.path.replace(/:([a-zA-Z]+)/g, '{$1}');
    paths[path] ??= {};
    paths[path]![endpoint.method.toLowerCase()] = operation(endpoint, schemas);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Sluice',
      version,
      description:
        'A replicated log broker over HTTP/2 and HTTP/1.1 with JSON or msgpack bodies (docs/api.md).',
    },
    paths,
    components: { schemas },
  };
}
