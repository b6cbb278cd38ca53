import { Ajv } from 'ajv';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerFactory,
  LogController,
} from 'fastify';
import type { BrokerService, ProduceInput } from '../broker/service.js';
import { ERROR_CODES, type ErrorCode, isErrorCode, SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { ENDPOINTS, type Endpoint, MEDIA, parseAcks } from '../protocol/api.js';
import { encodeFetchResponse, FETCH_FRAME_RESERVE } from '../protocol/fetch-response.js';
import { decodedRecords, parseRecord, recordToJson } from '../protocol/json-record.js';
import { packr, unpackr } from '../protocol/msgpack.js';
import { encodeOffsetsResponse } from '../protocol/offsets-response.js';
import {
  type ProduceRecordSource,
  recordArraySource,
  scanMsgpackProduceBody,
} from '../protocol/produce-body.js';
import { type Format, mediaTypeOf, negotiate } from './content.js';
import { streamPartition } from './follow.js';
import { openApiDocument } from './openapi.js';

export interface AppOptions {
  logger?: boolean | { level: string };
  bodyLimitBytes?: number;
  serverFactory?: FastifyServerFactory;
}

export interface AppDeps {
  service: BrokerService;
}

const INTERNAL_CODES = new Set<ErrorCode>(['UNKNOWN_SERVER_ERROR', 'KAFKA_STORAGE_ERROR']);

/** Serializes a problem (RFC 9457) for any error. */
export function problemFor(
  error: unknown,
  instance?: string,
): { status: number; body: Record<string, unknown> } {
  let code: ErrorCode = 'UNKNOWN_SERVER_ERROR';
  let detail = 'an unexpected error';
  let retriable = false;
  let details: Record<string, unknown> = {};
  if (error instanceof SluiceError) {
    code = error.code;
    retriable = error.retriable;
    if (INTERNAL_CODES.has(code)) {
      // Storage and internal failures name files and paths: those go to the log, not the client.
      detail = ERROR_CODES[code].title;
    } else {
      detail = error.message;
      details = error.details;
    }
  } else if (error && typeof error === 'object') {
    const e = error as {
      code?: string;
      validation?: { instancePath?: string; message?: string }[];
      validationContext?: string;
      message?: string;
      statusCode?: number;
    };
    if (e.validation) {
      code = 'INVALID_REQUEST';
      const first = e.validation[0];
      detail = `${e.validationContext ?? 'request'}${first?.instancePath ?? ''} ${first?.message ?? 'is not valid'}`;
      details = { field: `${e.validationContext ?? ''}${first?.instancePath ?? ''}` };
      // A bad fetch offset has its own code, as the CLI and SDK report it.
      if (details.field === 'querystring/offset') code = 'INVALID_OFFSET';
    } else if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      code = 'REQUEST_TOO_LARGE';
      detail = e.message ?? 'the request body is too large';
    } else if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      code = 'UNSUPPORTED_MEDIA_TYPE';
      detail = e.message ?? 'unsupported media type';
    } else if (
      e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
      e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
      error instanceof SyntaxError
    ) {
      code = 'INVALID_REQUEST';
      detail = `the body is not valid: ${e.message ?? ''}`.trim();
    } else if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      code = 'INVALID_REQUEST';
      detail = e.message ?? 'the request is not valid';
    }
    if (isErrorCode(e.code) && !(error instanceof SluiceError)) code = e.code;
  }
  const { status, title } = ERROR_CODES[code];
  return {
    status,
    body: {
      type: `https://sluice.dev/errors/${code}`,
      title,
      status,
      detail,
      code,
      retriable,
      ...(instance ? { instance } : {}),
      ...details,
    },
  };
}

/**
 * The public API as a fastify app that has not called listen. Routes come from ENDPOINTS; bodies
 * are JSON, msgpack, NDJSON, raw bytes or pre-built batches; responses follow Accept.
 */
export function buildApp(options: AppOptions, deps: AppDeps): FastifyInstance {
  const { service } = deps;
  const level = typeof options.logger === 'object' ? options.logger.level : undefined;
  const app = Fastify({
    logger: options.logger ?? false,
    // One line per request is too much at info on a hot produce path; debug and trace keep it.
    logController: new LogController({ disableRequestLogging: level !== 'debug' && level !== 'trace' }),
    bodyLimit: options.bodyLimitBytes ?? LIMITS.requestBodyBytesMax,
    ...(options.serverFactory ? { serverFactory: options.serverFactory } : {}),
    // Requests that arrive while the node shuts down get a SHUTTING_DOWN problem (below) instead.
    return503OnClosing: false,
  }) as unknown as FastifyInstance;

  // During a shutdown, HTTP/1.1 answers close their connection so that keep-alive sockets do not
  // hold the node open (HTTP/2 sessions get a GOAWAY from the server instead).
  const closeIfShuttingDown = (request: FastifyRequest, reply: FastifyReply) => {
    if (service.shuttingDown && request.raw.httpVersionMajor === 1) reply.header('connection', 'close');
  };
  // Callback-style hooks: they run on every request, and an async hook costs a promise each time.
  app.addHook('onRequest', (request, reply, done) => {
    if (!service.shuttingDown) return done();
    closeIfShuttingDown(request, reply);
    done(new SluiceError('SHUTTING_DOWN', 'the node is shutting down; retry on another node or later'));
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    closeIfShuttingDown(request, reply);
    done(null, payload);
  });

  // Path and query parameters arrive as text and are coerced to their schema's types; bodies are
  // typed already (JSON, msgpack) and a wrong type is refused rather than converted, so that
  // `{"partitions": "3"}` or a config of `0` does not silently become something else.
  const ajvOptions = { allErrors: false, removeAdditional: false, useDefaults: true, strict: false } as const;
  const coercing = new Ajv({ ...ajvOptions, coerceTypes: true });
  const strict = new Ajv({ ...ajvOptions, coerceTypes: false });
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? strict : coercing).compile(schema as object),
  );

  const produceRoutes = new Set<string>([ENDPOINTS.produce.path, ENDPOINTS.producePartition.path]);
  const decodeMsgpack = (
    request: FastifyRequest,
    body: Buffer,
    done: (error: Error | null, body?: unknown) => void,
  ) => {
    if (body.length === 0) return done(null, undefined);
    // A produce body stays bytes: its records are copied into a batch without being decoded.
    if (produceRoutes.has(request.routeOptions.url ?? '')) return done(null, new MsgpackBody(body));
    try {
      done(null, unpackr.unpack(body));
    } catch (error) {
      done(invalidMsgpack(error));
    }
  };
  app.addContentTypeParser([MEDIA.msgpack, MEDIA.msgpackAlt], { parseAs: 'buffer' }, decodeMsgpack);
  app.addContentTypeParser([MEDIA.octetStream, MEDIA.batches], { parseAs: 'buffer' }, (_r, body, done) =>
    done(null, body),
  );
  app.addContentTypeParser(MEDIA.ndjson, { parseAs: 'string' }, (_r, body, done) => {
    const records: unknown[] = [];
    const lines = (body as string).split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line === '') continue;
      try {
        records.push(JSON.parse(line));
      } catch {
        return done(
          new SluiceError('INVALID_REQUEST', `line ${i + 1} of the NDJSON body is not valid JSON`, {
            details: { line: i + 1 },
          }),
        );
      }
    }
    done(null, { records });
  });

  app.setErrorHandler((error, request, reply) => {
    const problem = problemFor(error, request.url);
    if (problem.status >= 500)
      request.log.error({ err: error, route: request.routeOptions.url }, 'request failed');
    else request.log.debug({ code: problem.body.code, route: request.routeOptions.url }, 'request refused');
    reply.code(problem.status).type(MEDIA.problem).send(JSON.stringify(problem.body));
  });

  const routePatterns = [
    ...Object.values(ENDPOINTS).map((e: Endpoint) => ({
      regex: new RegExp(`^${e.path.replace(/:[a-zA-Z]+/g, '[^/]+')}$`),
      method: e.method as string,
    })),
    { regex: /^\/openapi\.json$/, method: 'GET' },
  ];
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allowed = routePatterns.filter((r) => r.regex.test(path)).map((r) => r.method);
    const error =
      allowed.length > 0
        ? new SluiceError(
            'METHOD_NOT_ALLOWED',
            `${request.method} is not allowed on ${path}; use ${[...new Set(allowed)].join(', ')}`,
          )
        : new SluiceError('NOT_FOUND', `no route ${request.method} ${path}`);
    if (allowed.length > 0) reply.header('allow', [...new Set(allowed)].join(', '));
    const problem = problemFor(error, request.url);
    reply.code(problem.status).type(MEDIA.problem).send(JSON.stringify(problem.body));
  });

  /** Sends `payload` in the format Accept asks for. */
  const send = (request: FastifyRequest, reply: FastifyReply, status: number, payload: unknown) => {
    const format = negotiate(request.headers.accept);
    if (format === undefined)
      throw new SluiceError(
        'NOT_ACCEPTABLE',
        `none of ${request.headers.accept} can be produced; use JSON or msgpack`,
      );
    reply.code(status);
    if (format === 'msgpack') return reply.type(MEDIA.msgpack).send(Buffer.from(packr.pack(payload)));
    return reply.type(MEDIA.json).send(JSON.stringify(payload));
  };

  const route = (
    endpoint: Endpoint,
    handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
  ) => {
    app.route({
      method: endpoint.method,
      url: endpoint.path,
      schema: {
        ...(endpoint.params ? { params: endpoint.params } : {}),
        ...(endpoint.querystring ? { querystring: endpoint.querystring } : {}),
        ...(endpoint.body ? { body: endpoint.body } : {}),
      },
      handler,
    });
  };

  type Params = { topic: string; partition: number };

  route(ENDPOINTS.health, async (request, reply) =>
    send(request, reply, 200, { status: 'ok', nodeId: service.options.nodeId }),
  );
  route(ENDPOINTS.cluster, async (request, reply) => send(request, reply, 200, service.cluster()));
  route(ENDPOINTS.listTopics, async (request, reply) =>
    send(request, reply, 200, { topics: service.listTopics() }),
  );
  route(ENDPOINTS.createTopic, async (request, reply) => {
    const body = request.body as {
      name: string;
      partitions?: number;
      replicationFactor?: number;
      configs?: Record<string, string | number | boolean>;
    };
    return send(request, reply, 201, await service.createTopic(body));
  });
  route(ENDPOINTS.describeTopic, async (request, reply) =>
    send(request, reply, 200, service.describeTopic((request.params as Params).topic)),
  );
  route(ENDPOINTS.deleteTopic, async (request, reply) =>
    send(request, reply, 200, await service.deleteTopic((request.params as Params).topic)),
  );
  route(ENDPOINTS.alterTopicConfigs, async (request, reply) => {
    const body = (request.body ?? {}) as Record<string, string | number | boolean | null>;
    return send(request, reply, 200, await service.alterConfigs((request.params as Params).topic, body));
  });
  route(ENDPOINTS.addPartitions, async (request, reply) => {
    const body = request.body as { partitions: number };
    return send(
      request,
      reply,
      200,
      await service.addPartitions((request.params as Params).topic, body.partitions),
    );
  });

  const produce = async (request: FastifyRequest, reply: FastifyReply, partition: number | undefined) => {
    const { topic } = request.params as Params;
    const query = request.query as { acks?: string };
    const acks = parseAcks(query.acks) ?? -1;
    const mediaType = mediaTypeOf(request.headers['content-type']);
    if (mediaType === MEDIA.batches) {
      if (partition === undefined) {
        throw new SluiceError(
          'INVALID_REQUEST',
          `${MEDIA.batches} bodies go to /v1/topics/{topic}/partitions/{partition}/records`,
        );
      }
      const result = await service.produceBatches(topic, partition, request.body as Buffer, acks);
      return send(request, reply, acks === 0 ? 202 : 200, result ?? {});
    }
    const records = recordsFromBody(request, mediaType);
    const produced = await service.produceFrom(topic, withPartition(records, partition), acks);
    if (negotiate(request.headers.accept) === 'msgpack') {
      return reply
        .code(acks === 0 ? 202 : 200)
        .type(MEDIA.msgpack)
        .send(encodeOffsetsResponse(produced));
    }
    const offsets = Array.from({ length: produced.count }, (_, i) => ({
      partition: produced.partitions[i]!,
      offset: produced.offsets[i]!,
    }));
    return send(request, reply, acks === 0 ? 202 : 200, { offsets });
  };
  route(ENDPOINTS.produce, (request, reply) => produce(request, reply, undefined));
  route(ENDPOINTS.producePartition, (request, reply) =>
    produce(request, reply, (request.params as Params).partition),
  );

  route(ENDPOINTS.fetch, async (request, reply) => {
    const { topic, partition } = request.params as Params;
    const query = request.query as {
      offset?: string;
      maxBytes?: number;
      maxWaitMs?: number;
      minBytes?: number;
      follow?: boolean;
      valueEncoding?: 'utf8' | 'base64';
    };
    const lastEventId = request.headers['last-event-id'];
    let offset: number | 'earliest' | 'latest' =
      query.offset === undefined
        ? 'earliest'
        : query.offset === 'earliest' || query.offset === 'latest'
          ? query.offset
          : Number(query.offset);
    if (typeof lastEventId === 'string' && /^\d+$/.test(lastEventId)) offset = Number(lastEventId) + 1;
    const format = negotiate(request.headers.accept, [MEDIA.eventStream, MEDIA.ndjson]);
    if (format === undefined)
      throw new SluiceError('NOT_ACCEPTABLE', `none of ${request.headers.accept} can be produced`);
    const base64 = query.valueEncoding === 'base64';
    const maxBytes = query.maxBytes ?? 1024 * 1024;
    if (query.follow || format === MEDIA.eventStream) {
      // Validate the partition and offset before the response is committed to a stream.
      await service.fetch(topic, partition, { offset, maxBytes: 1, maxWaitMs: 0, minBytes: 0 });
      if (service.waitingFetches >= service.waitingFetchesMax) {
        throw new SluiceError(
          'LIMIT_EXCEEDED',
          `too many waiting fetches and follow streams (limit ${service.waitingFetchesMax})`,
        );
      }
      return streamPartition(request, reply, service, {
        topic,
        partition,
        offset,
        maxBytes,
        base64,
        format: format as Format | string,
      });
    }
    // Only a long-poll needs to hear that its client went away; a plain fetch skips the
    // AbortController (and the abort it would raise on every normal close).
    const maxWaitMs = query.maxWaitMs ?? 0;
    const controller = maxWaitMs > 0 ? new AbortController() : undefined;
    const onClose = () => controller?.abort();
    if (controller) request.raw.once('close', onClose);
    let result: Awaited<ReturnType<typeof service.fetch>>;
    try {
      result = await service.fetch(topic, partition, {
        offset,
        maxBytes,
        maxWaitMs,
        minBytes: query.minBytes ?? 1,
        ...(controller ? { signal: controller.signal } : {}),
        ...(format === 'msgpack' ? { reserve: FETCH_FRAME_RESERVE } : {}),
      });
    } finally {
      if (controller) request.raw.off('close', onClose);
    }
    if (format === 'msgpack') {
      reply.code(200).type(MEDIA.msgpack);
      return reply.send(encodeFetchResponse(result.data, result.batchCount, result, result.reserved));
    }
    const records = decodedRecords(result.data, result.offset).map((r) => recordToJson(r, base64));
    if (format === MEDIA.ndjson) {
      reply.code(200).type(MEDIA.ndjson);
      return reply.send(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
    }
    return send(request, reply, 200, {
      records,
      nextOffset: result.nextOffset,
      highWatermark: result.highWatermark,
      logStartOffset: result.logStartOffset,
    });
  });

  route(ENDPOINTS.offsets, async (request, reply) => {
    const { topic, partition } = request.params as Params;
    const { timestamp } = request.query as { timestamp?: number };
    return send(request, reply, 200, await service.offsets(topic, partition, timestamp));
  });

  app.get('/openapi.json', async (_request, reply) =>
    reply.type(MEDIA.json).send(JSON.stringify(openApiDocument(service.options.version))),
  );

  return app;
}

/** A msgpack produce body, kept as bytes until the handler reads it. */
class MsgpackBody {
  constructor(readonly bytes: Buffer) {}
}

function invalidMsgpack(error: unknown): SluiceError {
  return new SluiceError('INVALID_REQUEST', `the body is not valid msgpack: ${(error as Error).message}`);
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
    encodeBatch: (indexes, nowMs) => records.encodeBatch(indexes, nowMs),
  };
}

function recordsFromBody(request: FastifyRequest, mediaType: string): ProduceRecordSource {
  let body = request.body;
  if (body instanceof MsgpackBody) {
    const scanned = scanMsgpackProduceBody(body.bytes);
    if (scanned) return scanned;
    try {
      body = unpackr.unpack(body.bytes);
    } catch (error) {
      throw invalidMsgpack(error);
    }
  }
  return recordArraySource(recordObjectsFromBody(request, mediaType, body));
}

function recordObjectsFromBody(request: FastifyRequest, mediaType: string, decoded: unknown): ProduceInput[] {
  const now = Date.now();
  if (mediaType === MEDIA.octetStream) {
    const headers: [string, Uint8Array][] = [];
    for (const [name, value] of Object.entries(request.headers)) {
      if (name.startsWith('sluice-header-') && typeof value === 'string')
        headers.push([name.slice('sluice-header-'.length), Buffer.from(value)]);
    }
    const key = request.headers['sluice-key'];
    const timestampHeader = request.headers['sluice-timestamp'];
    const record = parseRecord(
      {
        value: request.body as Buffer,
        key: typeof key === 'string' ? key : null,
        headers,
        ...(typeof timestampHeader === 'string' ? { timestamp: Number(timestampHeader) } : {}),
      },
      0,
      now,
    );
    return [record];
  }
  const body = decoded as { records?: unknown; valueEncoding?: unknown } | undefined;
  if (!body || typeof body !== 'object' || !Array.isArray(body.records)) {
    throw new SluiceError('INVALID_REQUEST', 'the body must be an object with a "records" list');
  }
  if (body.records.length > LIMITS.requestRecordsMax) {
    throw new SluiceError('TOO_MANY_RECORDS', `a request holds at most ${LIMITS.requestRecordsMax} records`);
  }
  const encoding = body.valueEncoding === 'base64' ? 'base64' : 'utf8';
  return body.records.map((raw, i) => parseRecord(raw, i, now, encoding));
}

export type { FastifyBaseLogger };
