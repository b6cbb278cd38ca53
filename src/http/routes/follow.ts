import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FetchApi, FetchOffset, NodeApi } from '../../broker/api.js';
import { MEDIA, NODE_ID_HEADER } from '../../protocol/api.js';
import { ACCEPT_COMPRESSION_HEADER, parseAcceptCompression } from '../../protocol/compression.js';
import { encodeFetchResponse, FETCH_FRAME_RESERVE } from '../../protocol/fetch-response.js';
import { recordToJson } from '../../protocol/json-record.js';
import { packr } from '../../protocol/msgpack.js';
import { problemFor } from '../problem.js';
import { decodeStoredRecords } from './stored-records.js';

export interface FollowOptions {
  topic: string;
  partition: number;
  offset: FetchOffset;
  maxBytes: number;
  base64: boolean;
  format: string;
}

/** How long one wait for new records lasts before an SSE keep-alive comment goes out. */
const FOLLOW_WAIT_MS = 15_000;
/**
 * The most one read of a follow stream takes: with one read held per stream at most, this bounds
 * the memory of all streams together (streams are bounded by the broker's waiting-fetch limit).
 */
const FOLLOW_READ_BYTES_MAX = 1024 * 1024;

/**
 * Keeps the response open and streams records as they are appended, until the client goes away:
 * NDJSON for JSON, a stream of msgpack fetch responses for msgpack, and server-sent events (the
 * offset as event id, so `Last-Event-ID` resumes) for text/event-stream. Backpressure: the loop
 * waits for the socket to drain before it reads more, so at most one read is buffered.
 */
export async function streamPartition(
  request: FastifyRequest,
  reply: FastifyReply,
  broker: { fetch: FetchApi; node: NodeApi },
  options: FollowOptions,
): Promise<void> {
  const contentType =
    options.format === MEDIA.eventStream
      ? MEDIA.eventStream
      : options.format === 'msgpack'
        ? MEDIA.msgpack
        : MEDIA.ndjson;
  reply.hijack();
  const raw = reply.raw;
  const metrics = request.server.httpMetrics;
  const closed = metrics.streamOpened(request);
  raw.writeHead(200, {
    'content-type': contentType,
    'cache-control': 'no-cache',
    'x-request-id': request.id,
    [NODE_ID_HEADER]: String(broker.node.nodeId),
  });
  const controller = new AbortController();
  const stop = () => controller.abort();
  request.raw.once('close', stop);
  raw.once('close', stop);
  let offset = options.offset;
  const write = async (chunk: string | Buffer) => {
    if (!raw.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          raw.off('drain', done);
          controller.signal.removeEventListener('abort', done);
          resolve();
        };
        raw.once('drain', done);
        controller.signal.addEventListener('abort', done, { once: true });
      });
    }
  };
  try {
    while (!controller.signal.aborted) {
      const result = await broker.fetch.read(options.topic, options.partition, {
        offset,
        maxBytes: Math.min(options.maxBytes, FOLLOW_READ_BYTES_MAX),
        maxWaitMs: FOLLOW_WAIT_MS,
        minBytes: 1,
        signal: controller.signal,
        ...(options.format === 'msgpack'
          ? {
              reserve: FETCH_FRAME_RESERVE,
              acceptCodecs: parseAcceptCompression(request.headers[ACCEPT_COMPRESSION_HEADER]),
            }
          : {}),
      });
      if (controller.signal.aborted || broker.node.shuttingDown) break;
      if (result.batchCount === 0) {
        if (options.format === MEDIA.eventStream) await write(': keep-alive\n\n');
        offset = result.offset;
        continue;
      }
      if (options.format === 'msgpack') {
        await write(encodeFetchResponse(result.data, result.batchCount, result, result.reserved));
        offset = result.nextOffset;
        continue;
      }
      // A batch that fails its CRC or cannot be decoded ends the stream with its error, after the
      // good records before it.
      const run = decodeStoredRecords(request, options, result.data, result.offset, metrics.corruptDecoded);
      if (run.problem && run.records.length === 0) throw run.problem.error;
      const records = run.records.map((r) => recordToJson(r, options.base64));
      if (options.format === MEDIA.eventStream) {
        await write(
          records.map((r) => `id: ${r.offset}\nevent: record\ndata: ${JSON.stringify(r)}\n\n`).join(''),
        );
      } else {
        await write(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
      }
      offset = run.problem ? run.nextOffset : result.nextOffset;
    }
  } catch (error) {
    // The stream has started; the error can only be told in-band before closing, as the problem
    // every other answer would carry (which names no file or path of the node).
    const problem = problemFor(error, request.url).body;
    if (problem.status === 500)
      request.log.error({ err: error, topic: options.topic }, 'follow stream failed');
    if (!raw.destroyed) {
      if (options.format === MEDIA.eventStream)
        raw.write(`event: error\ndata: ${JSON.stringify(problem)}\n\n`);
      else if (options.format === 'msgpack') raw.write(packr.pack({ error: problem }));
      else raw.write(`${JSON.stringify({ error: problem })}\n`);
    }
  } finally {
    closed();
    request.raw.off('close', stop);
    if (!raw.destroyed) raw.end();
  }
}
