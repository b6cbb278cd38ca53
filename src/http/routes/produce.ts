import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ProduceApi, ProduceInput } from '../../broker/api.js';
import { SluiceError } from '../../common/errors.js';
import { ENDPOINTS, MEDIA, parseAcks } from '../../protocol/api.js';
import type { ProducerFields } from '../../protocol/batch.js';
import { parseProduceRecords, parseRecord } from '../../protocol/json-record.js';
import { encodeOffsetsResponse } from '../../protocol/offsets-response.js';
import {
  decodeMsgpackProduceBody,
  type ProduceRecordSource,
  recordArraySource,
  scanMsgpackProduceBody,
} from '../../protocol/produce-body.js';
import { MsgpackBody } from '../body.js';
import { mediaTypeOf, negotiate, sendNegotiated } from '../content.js';
import { addRoute } from './route.js';

/**
 * Produce, to a topic (partitioned by the broker) or to one partition: JSON, msgpack, NDJSON, raw
 * bytes as one record, or pre-built batches to a partition.
 */
export async function produceRoutes(app: FastifyInstance, options: { produce: ProduceApi }): Promise<void> {
  const { produce } = options;
  const handle = async (
    request: FastifyRequest,
    reply: FastifyReply,
    topic: string,
    partition: number | undefined,
    acksParameter: string | undefined,
    leaderEpoch?: number,
  ) => {
    const timeoutMs = (request.query as { timeoutMs?: number }).timeoutMs;
    const producer = producerHeaders(request);
    const options = {
      ...(leaderEpoch === undefined ? {} : { leaderEpoch }),
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(producer === undefined ? {} : { producer }),
    };
    if (producer && partition === undefined)
      throw new SluiceError(
        'INVALID_REQUEST',
        'sequence numbers are per partition: an idempotent producer sends to /v1/topics/{topic}/partitions/{partition}/records',
        { details: { field: 'headers/sluice-producer-id' } },
      );
    const acks = parseAcks(acksParameter) ?? -1;
    const status = acks === 0 ? 202 : 200;
    const mediaType = mediaTypeOf(request.headers['content-type']);
    if (mediaType === MEDIA.batches) {
      if (producer)
        throw new SluiceError(
          'INVALID_REQUEST',
          'a pre-built batch carries its producer id, epoch and sequence in its header, not in sluice-producer-* headers',
          { details: { field: 'headers/sluice-producer-id' } },
        );
      if (partition !== undefined) {
        const result = await produce.batches(topic, partition, request.body as Buffer, acks, options);
        if (result?.duplicate) reply.header(DUPLICATE_HEADER, 'true');
        return sendNegotiated(request, reply, status, result ?? {});
      }
    }
    const produced =
      mediaType === MEDIA.batches
        ? await produce.topicBatches(topic, request.body as Buffer, acks, options)
        : await produce.from(
            topic,
            withPartition(recordsFromBody(request, mediaType), partition),
            acks,
            options,
          );
    if (produced.duplicate) reply.header(DUPLICATE_HEADER, 'true');
    if (negotiate(request.headers.accept) === 'msgpack')
      return reply.code(status).type(MEDIA.msgpack).send(encodeOffsetsResponse(produced));
    const offsets = Array.from({ length: produced.count }, (_, i) => ({
      partition: produced.partitions[i]!,
      offset: produced.offsets[i]!,
    }));
    return sendNegotiated(request, reply, status, {
      offsets,
      ...(produced.duplicate ? { duplicate: true } : {}),
    });
  };
  addRoute(app, ENDPOINTS.initProducer, async (request, reply) =>
    sendNegotiated(request, reply, 201, await produce.initProducer()),
  );
  addRoute(app, ENDPOINTS.produce, (request, reply) =>
    handle(request, reply, request.params.topic, undefined, request.query.acks),
  );
  addRoute(app, ENDPOINTS.producePartition, (request, reply) =>
    handle(
      request,
      reply,
      request.params.topic,
      request.params.partition,
      request.query.acks,
      request.query.leaderEpoch,
    ),
  );
}

/**
 * The records, each sent to `partition` when the route names one; a record that names another
 * partition is refused.
 */
function withPartition(records: ProduceRecordSource, partition: number | undefined): ProduceRecordSource {
  if (partition === undefined) return records;
  for (let i = 0; i < records.count; i++) {
    const named = records.partitionAt(i);
    if (named !== -1 && named !== partition)
      throw new SluiceError('INVALID_REQUEST', `records name a partition other than ${partition}`);
  }
  return {
    count: records.count,
    partitionAt: () => partition,
    keyAt: (i) => records.keyAt(i),
    payloadBytesAt: (i) => records.payloadBytesAt(i),
    encodeBatch: (indexes, nowMs, producer) => records.encodeBatch(indexes, nowMs, producer),
  };
}

/** Set on the answer to an idempotent producer's retry: nothing was appended, the offsets are the first try's. */
const DUPLICATE_HEADER = 'sluice-duplicate';

const PRODUCER_HEADERS = {
  producerId: { name: 'sluice-producer-id', max: Number.MAX_SAFE_INTEGER },
  producerEpoch: { name: 'sluice-producer-epoch', max: 32767 },
  baseSequence: { name: 'sluice-sequence', max: 2 ** 31 - 1 },
} as const;

/**
 * `Sluice-Producer-Id`, `Sluice-Producer-Epoch` and `Sluice-Sequence` (the sequence number of the
 * request's first record): all three or none, each a decimal integer in its range.
 */
function producerHeaders(request: FastifyRequest): ProducerFields | undefined {
  const values: Partial<Record<keyof typeof PRODUCER_HEADERS, number>> = {};
  let given = 0;
  for (const [field, { name, max }] of Object.entries(PRODUCER_HEADERS) as [
    keyof typeof PRODUCER_HEADERS,
    { name: string; max: number },
  ][]) {
    const text = request.headers[name];
    if (text === undefined) continue;
    given++;
    const n = typeof text === 'string' && /^[0-9]{1,16}$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(n) || n > max)
      throw new SluiceError('INVALID_REQUEST', `${name} must be a decimal integer from 0 to ${max}`, {
        details: { field: `headers/${name}` },
      });
    values[field] = n;
  }
  if (given === 0) return undefined;
  if (given < 3)
    throw new SluiceError(
      'INVALID_REQUEST',
      'an idempotent produce names sluice-producer-id, sluice-producer-epoch and sluice-sequence together',
      { details: { field: 'headers/sluice-producer-id' } },
    );
  return values as ProducerFields;
}

function recordsFromBody(request: FastifyRequest, mediaType: string): ProduceRecordSource {
  const body = request.body;
  if (body instanceof MsgpackBody)
    return scanMsgpackProduceBody(body.bytes) ?? decodeMsgpackProduceBody(body.bytes, Date.now());
  if (mediaType === MEDIA.octetStream) return recordArraySource([rawBodyRecord(request, Date.now())]);
  return recordArraySource(parseProduceRecords(body, Date.now()));
}

/**
 * An octet-stream body is one record's value; key, headers and timestamp come from `sluice-*`
 * headers. HTTP header values are ASCII here: Node reads other bytes as Latin-1, so storing them
 * would store characters the client may not have meant; a JSON or msgpack body carries those.
 */
function rawBodyRecord(request: FastifyRequest, nowMs: number): ProduceInput {
  const headers: [string, Uint8Array][] = [];
  for (const [name, value] of Object.entries(request.headers)) {
    if (name.startsWith('sluice-header-') && typeof value === 'string') {
      const headerName = name.slice('sluice-header-'.length);
      headers.push([headerName, asciiHeader(value, `headers.${headerName}`)]);
    }
  }
  const key = request.headers['sluice-key'];
  const timestampHeader = request.headers['sluice-timestamp'];
  return parseRecord(
    {
      value: request.body as Buffer,
      key: typeof key === 'string' ? asciiHeader(key, 'key') : null,
      headers,
      ...(typeof timestampHeader === 'string' ? { timestamp: decimalTimestamp(timestampHeader) } : {}),
    },
    0,
    nowMs,
  );
}

function asciiHeader(value: string, field: string): Buffer {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the range is all of ASCII
  if (!/^[\x00-\x7f]*$/.test(value))
    throw new SluiceError('INVALID_RECORD', `the ${field} header is not ASCII`, { details: { field } });
  return Buffer.from(value, 'latin1');
}

/** `Sluice-Timestamp`: decimal digits only (`Number` would take `0x10`, `1e3` and `""`). */
function decimalTimestamp(text: string): number {
  const ms = /^[0-9]{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(ms)) {
    throw new SluiceError('INVALID_TIMESTAMP', 'Sluice-Timestamp must be a decimal integer of milliseconds', {
      details: { field: 'sluice-timestamp' },
    });
  }
  return ms;
}
