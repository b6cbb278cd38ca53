import type { FastifyInstance, FastifyReply } from 'fastify';
import type { FetchApi, FetchOffset, FetchResult, NodeApi } from '../../broker/api.js';
import { type BufferLease, BufferPool } from '../../common/buffer-pool.js';
import { SluiceError } from '../../common/errors.js';
import { ENDPOINTS, MEDIA } from '../../protocol/api.js';
import { ACCEPT_COMPRESSION_HEADER, parseAcceptCompression } from '../../protocol/compression.js';
import { encodeFetchResponse, FETCH_FRAME_RESERVE } from '../../protocol/fetch-response.js';
import { recordToJson } from '../../protocol/json-record.js';
import { type Format, negotiate, sendNegotiated } from '../content.js';
import { streamPartition } from './follow.js';
import { addRoute, type EndpointFastifyRequest } from './route.js';
import { decodeStoredRecords } from './stored-records.js';

type FetchRequest = EndpointFastifyRequest<typeof ENDPOINTS.fetch>;

/** Fetch (one answer, long-polling, or a follow stream) and offsets of one partition. */
export async function fetchRoutes(
  app: FastifyInstance,
  options: { fetch: FetchApi; node: NodeApi },
): Promise<void> {
  const { fetch, node } = options;
  // The msgpack answer is a view of the read's buffer (framed in place): a buffer from this pool,
  // given back when the response closes, saves an allocation of fresh pages per fetch.
  const pool = new BufferPool();
  addRoute(app, ENDPOINTS.fetch, async (request, reply) => {
    const { topic, partition } = request.params;
    const { query } = request;
    const offset = fetchOffset(request);
    const format = negotiate(request.headers.accept, [MEDIA.eventStream, MEDIA.ndjson]);
    if (format === undefined)
      throw new SluiceError('NOT_ACCEPTABLE', `none of ${request.headers.accept} can be produced`);
    const base64 = query.valueEncoding === 'base64';
    const maxBytes = query.maxBytes ?? 1024 * 1024;
    if (query.follow || format === MEDIA.eventStream) {
      // Validate the partition and offset before the response is committed to a stream.
      await fetch.read(topic, partition, {
        offset,
        maxBytes: 1,
        maxWaitMs: 0,
        minBytes: 0,
        probe: true,
        ...(query.leaderEpoch !== undefined ? { leaderEpoch: query.leaderEpoch } : {}),
      });
      if (fetch.waiting >= fetch.waitingMax) {
        throw new SluiceError(
          'LIMIT_EXCEEDED',
          `too many waiting fetches and follow streams (limit ${fetch.waitingMax})`,
        );
      }
      return streamPartition(
        request,
        reply,
        { fetch, node },
        { topic, partition, offset, maxBytes, base64, format },
      );
    }
    const lease = format === 'msgpack' ? leaseUntilClosed(pool, reply) : undefined;
    const result = await readOnce(request, fetch, offset, format, lease);
    return sendFetch(request, reply, result, format as Format | string, base64);
  });

  addRoute(app, ENDPOINTS.offsets, async (request, reply) => {
    const { topic, partition } = request.params;
    return sendNegotiated(
      request,
      reply,
      200,
      await fetch.offsets(topic, partition, request.query.timestamp, request.query.leaderEpoch),
    );
  });
}

/** The offset asked for; `Last-Event-ID` (an SSE reconnect) resumes after the last record seen. */
function fetchOffset(request: FetchRequest): FetchOffset {
  const asked = request.query.offset;
  let offset: FetchOffset =
    asked === undefined ? 'earliest' : asked === 'earliest' || asked === 'latest' ? asked : Number(asked);
  const lastEventId = request.headers['last-event-id'];
  if (typeof lastEventId === 'string' && /^\d+$/.test(lastEventId)) offset = Number(lastEventId) + 1;
  return offset;
}

/**
 * A lease of read buffers released when the response closes: after its last write completed (Node
 * emits `close` after `finish`) or once the connection is gone, so never while a write still
 * references the bytes. An error answer releases them the same way.
 */
function leaseUntilClosed(pool: BufferPool, reply: FastifyReply): BufferLease {
  const lease = pool.lease();
  reply.raw.once('close', () => lease.release());
  return lease;
}

/**
 * One read, long-polling up to `maxWaitMs`. Only a long-poll needs to hear that its client went
 * away; a plain fetch skips the AbortController (and the abort it would raise on every close).
 */
async function readOnce(
  request: FetchRequest,
  fetch: FetchApi,
  offset: FetchOffset,
  format: string,
  lease: BufferLease | undefined,
): Promise<FetchResult> {
  const { topic, partition } = request.params;
  const { query } = request;
  const maxWaitMs = query.maxWaitMs ?? 0;
  const controller = maxWaitMs > 0 ? new AbortController() : undefined;
  const onClose = () => controller?.abort();
  if (controller) request.raw.once('close', onClose);
  try {
    return await fetch.read(topic, partition, {
      offset,
      maxBytes: query.maxBytes ?? 1024 * 1024,
      maxWaitMs,
      minBytes: query.minBytes ?? 1,
      ...(query.leaderEpoch !== undefined ? { leaderEpoch: query.leaderEpoch } : {}),
      ...(controller ? { signal: controller.signal } : {}),
      ...(format === 'msgpack'
        ? {
            reserve: FETCH_FRAME_RESERVE,
            acceptCodecs: parseAcceptCompression(request.headers[ACCEPT_COMPRESSION_HEADER]),
          }
        : {}),
      ...(lease ? { allocate: lease.allocate } : {}),
    });
  } finally {
    if (controller) request.raw.off('close', onClose);
  }
}

/** msgpack: the stored batches framed in place; JSON and NDJSON: decoded records. */
function sendFetch(
  request: FetchRequest,
  reply: FastifyReply,
  result: FetchResult,
  format: string,
  base64: boolean,
): FastifyReply {
  if (format === 'msgpack') {
    reply.code(200).type(MEDIA.msgpack);
    return reply.send(encodeFetchResponse(result.data, result.batchCount, result, result.reserved));
  }
  const { topic, partition } = request.params;
  const run = decodeStoredRecords(
    request,
    { topic, partition },
    result.data,
    result.offset,
    request.server.httpMetrics.corruptDecoded,
  );
  // The good records before a bad batch are served, up to it; the next fetch, from the bad batch,
  // gets its error.
  if (run.problem && run.records.length === 0) throw run.problem.error;
  const records = run.records.map((r) => recordToJson(r, base64));
  if (format === MEDIA.ndjson) {
    reply.code(200).type(MEDIA.ndjson);
    return reply.send(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
  }
  return sendNegotiated(request, reply, 200, {
    records,
    nextOffset: run.problem ? run.nextOffset : result.nextOffset,
    highWatermark: result.highWatermark,
    logStartOffset: result.logStartOffset,
  });
}
