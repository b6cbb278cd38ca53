import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Ajv } from 'ajv';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchemaValidationError,
  type FastifyServerFactory,
  LogController,
} from 'fastify';
import type { BrokerApi } from '../broker/api.js';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { type MetricsRegistry, noopMetrics } from '../common/metrics.js';
import { ENDPOINTS, type Endpoint, NODE_ID_HEADER } from '../protocol/api.js';
import { FORWARDED_BY_HEADER } from '../protocol/internal-api.js';
import { addBodyParsers } from './body.js';
import { type ConsoleAsset, consoleRoutes } from './console/console.js';
import { addHttpEncoding } from './encoding.js';
import { addForwarding } from './forward.js';
import { HttpMetrics } from './metrics.js';
import { problemFor, sendProblem } from './problem.js';
import { clusterRoutes } from './routes/cluster.js';
import { fetchRoutes } from './routes/fetch.js';
import { groupRoutes } from './routes/groups.js';
import { metadataRoutes } from './routes/metadata.js';
import { metricsRoutes } from './routes/metrics.js';
import { produceRoutes } from './routes/produce.js';
import { reassignmentRoutes } from './routes/reassignments.js';
import { topicRoutes } from './routes/topics.js';

export interface AppOptions {
  /** pino's options: the level, and where the JSON lines go (stdout when absent). */
  logger?: boolean | { level: string; stream?: { write(line: string): void } };
  bodyLimitBytes?: number;
  serverFactory?: FastifyServerFactory;
  /** A request slower than this, past the wait a long-poll asked for, is logged at info. */
  slowRequestMs?: number;
  /** Starts the request ids this app makes; random when absent, so that two runs do not share ids. */
  requestIdPrefix?: string;
  /** How long connecting to a partition's leader may take when forwarding to it (forward.ts). */
  forwardConnectTimeoutMs?: number;
  /**
   * The cluster-internal API has a listener of its own (`--internal-listen`, served through
   * `internalListenerHandler`): the public port then refuses `/internal/*`, and the internal
   * listener serves only `/internal/*`, forwarded requests and the health checks.
   */
  internalListener?: boolean;
}

export interface AppDeps {
  broker: BrokerApi;
  /** The node's metrics, served at /metrics; nothing is counted and /metrics is 404 without it. */
  metrics?: MetricsRegistry;
  /** The web console's files; read from `console/assets/` when absent. */
  consoleAssets?: Map<string, ConsoleAsset>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The HTTP layer's metrics, for the route plugins (`addRoute`). */
    httpMetrics: HttpMetrics;
  }
}

/** The header that carries a request's id, in the request (honoured when safe) and the answer. */
export const REQUEST_ID_HEADER = 'x-request-id';
/** An incoming request id is kept when it is 1 to 128 of these characters; else one is made. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:/+=@-]{1,128}$/;

/**
 * Request ids: the client's `x-request-id` when it is short and of safe characters (so that it
 * cannot break a log line or a header), else `<prefix>-<counter in base 36>`.
 */
export function requestIdGenerator(prefix: string): (request: Pick<IncomingMessage, 'headers'>) => string {
  let next = 0;
  return (request) => {
    const given = request.headers[REQUEST_ID_HEADER];
    if (typeof given === 'string' && given.length <= 128 && REQUEST_ID_PATTERN.test(given)) return given;
    next++;
    return `${prefix}-${next.toString(36)}`;
  };
}

export { problemFor };

/**
 * The public API as a fastify app that has not called listen: body parsers, validation, the error
 * and not-found mapping, and one route plugin per resource (`routes/`), each route taken from the
 * endpoint table. Responses follow Accept.
 */
export function buildApp(options: AppOptions, deps: AppDeps): FastifyInstance {
  const { broker } = deps;
  const level = typeof options.logger === 'object' ? options.logger.level : undefined;
  const requestId = requestIdGenerator(options.requestIdPrefix ?? randomBytes(4).toString('hex'));
  const app = Fastify({
    logger: options.logger ?? false,
    genReqId: requestId,
    // One line per request is too much at info on a hot produce path; debug and trace keep it.
    logController: new LogController({ disableRequestLogging: level !== 'debug' && level !== 'trace' }),
    bodyLimit: options.bodyLimitBytes ?? LIMITS.requestBodyBytesMax,
    ...(options.serverFactory ? { serverFactory: options.serverFactory } : {}),
    // Requests that arrive while the node shuts down get a SHUTTING_DOWN problem (below) instead.
    return503OnClosing: false,
    // Long enough for the longest topic name with every character percent-encoded, so that every
    // name that can be created can be used; longer path parameters are refused by `frameworkErrors`.
    routerOptions: { maxParamLength: PATH_PARAM_LENGTH_MAX },
    // The router's own refusals (a bad percent-encoding, an over-long parameter) as problems too.
    frameworkErrors: (error, request, reply) => {
      sendProblem(reply, frameworkProblem(error, request.url), request.url);
    },
  }) as unknown as FastifyInstance;

  const httpMetrics = new HttpMetrics(
    { ...(options.slowRequestMs !== undefined ? { slowRequestMs: options.slowRequestMs } : {}) },
    deps.metrics ?? noopMetrics,
  );
  app.decorate('httpMetrics', httpMetrics);
  addRequestHooks(app, broker, httpMetrics);
  setValidators(app);
  addBodyParsers(app);
  addHttpEncoding(app, options.bodyLimitBytes ?? LIMITS.requestBodyBytesMax);
  app.setErrorHandler((error, request, reply) => {
    const problem = problemFor(error, request.url);
    // 503s are the refusals a client retries (a node starting or stopping, a leadership moving,
    // too few in-sync replicas): expected, counted by status in the latency histograms, and not
    // worth a stack trace each (a starting node under load answered thousands of them a second,
    // and formatting and logging their stacks took most of its CPU).
    if (problem.status >= 500 && problem.status !== 503)
      request.log.error({ err: error, route: request.routeOptions.url }, 'request failed');
    else request.log.debug({ code: problem.body.code, route: request.routeOptions.url }, 'request refused');
    return sendProblem(reply, error, request.url);
  });
  setNotFoundHandler(app, deps.metrics !== undefined);
  if (options.internalListener) separateInternalListener(app);
  addForwarding(
    app,
    options.forwardConnectTimeoutMs !== undefined
      ? { connectTimeoutMs: options.forwardConnectTimeoutMs }
      : {},
    { node: broker.node, routing: broker.routing, metrics: httpMetrics, requestId },
  );

  app.register(clusterRoutes, { node: broker.node, admin: broker.admin });
  app.register(reassignmentRoutes, { admin: broker.admin });
  app.register(topicRoutes, { admin: broker.admin });
  app.register(metadataRoutes, { admin: broker.admin });
  app.register(produceRoutes, { produce: broker.produce });
  app.register(fetchRoutes, { fetch: broker.fetch, node: broker.node });
  app.register(groupRoutes, { groups: broker.groups, node: broker.node });
  if (deps.metrics) app.register(metricsRoutes, { registry: deps.metrics });
  app.register(consoleRoutes, deps.consoleAssets ? { assets: deps.consoleAssets } : {});
  return app;
}

/** Set on a request that arrived on the internal listener, by `internalListenerHandler`. */
const ON_INTERNAL_LISTENER = Symbol('sluice.internalListener');

/**
 * The request handler of the internal listener: the app's own handler (routes, hooks, error
 * mapping), with each request marked as arriving there, so that one app serves both listeners and
 * `separateInternalListener` can tell them apart.
 */
export function internalListenerHandler(
  app: FastifyInstance,
): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    (request as unknown as Record<symbol, boolean>)[ON_INTERNAL_LISTENER] = true;
    app.routing(request, response);
  };
}

/** Paths both listeners answer: a load balancer or an orchestrator may probe either port. */
const HEALTH_PATHS = new Set<string>([ENDPOINTS.livez.path, ENDPOINTS.readyz.path]);

/**
 * With an internal listener, each port serves its own API and refuses the other's as a path it
 * does not have (404 NOT_FOUND), so that nothing reaches the internal API through the port
 * clients are given. Forwarded requests (`/v1/...` with `sluice-forwarded-by`, which the forward
 * hook checks for the cluster secret) are internal traffic.
 */
function separateInternalListener(app: FastifyInstance): void {
  app.addHook('onRequest', (request, _reply, done) => {
    const internal = (request.raw as unknown as Record<symbol, boolean>)[ON_INTERNAL_LISTENER] === true;
    const path = request.url.split('?')[0]!;
    const internalPath = path.startsWith('/internal/');
    if (!internal && internalPath)
      return done(
        new SluiceError(
          'NOT_FOUND',
          'the cluster-internal API is not served on this port: this node has an internal listener of its own',
        ),
      );
    if (
      internal &&
      !internalPath &&
      !HEALTH_PATHS.has(path) &&
      request.headers[FORWARDED_BY_HEADER] === undefined
    )
      return done(
        new SluiceError(
          'NOT_FOUND',
          'this is the cluster-internal listener: the public API is served on the public port',
        ),
      );
    done();
  });
}

/**
 * Every request is counted in flight until its response closes (answered or abandoned), and its
 * answer carries its id and this node's id (`sluice-node-id`; a forwarded answer carries the
 * leader's, which `forward.ts` passes on; a follow stream writes both itself). During a shutdown,
 * requests are refused with SHUTTING_DOWN (except /livez: the process is alive while it drains),
 * and HTTP/1.1 answers close their connection so that keep-alive sockets do not hold the node open
 * (HTTP/2 sessions get a GOAWAY from the server instead).
 */
function addRequestHooks(app: FastifyInstance, broker: BrokerApi, metrics: HttpMetrics): void {
  const closeIfShuttingDown = (request: FastifyRequest, reply: FastifyReply) => {
    if (broker.node.shuttingDown && request.raw.httpVersionMajor === 1) reply.header('connection', 'close');
  };
  const nodeId = String(broker.node.nodeId);
  // One listener for every response: no closure per request.
  const answered = () => metrics.inFlight.dec();
  // Callback-style hooks: they run on every request, and an async hook costs a promise each time.
  app.addHook('onRequest', (request, reply, done) => {
    metrics.inFlight.inc();
    reply.raw.on('close', answered);
    if (broker.node.ready) return done();
    const url = request.url;
    if (!broker.node.shuttingDown) {
      // Starting: the node has not caught up with the cluster metadata. Health checks and the
      // cluster-internal routes (which the start needs) answer; the public API waits.
      if (!url.startsWith('/v1/')) return done();
      return done(STARTING);
    }
    if (url === ENDPOINTS.livez.path || url.startsWith('/internal/')) return done();
    closeIfShuttingDown(request, reply);
    done(STOPPING);
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    reply.header(NODE_ID_HEADER, nodeId);
    closeIfShuttingDown(request, reply);
    done(null, payload);
  });
}

/**
 * The refusals of a node that is starting or stopping, made once: every request meanwhile gets the
 * same one (nothing in it is the request's), rather than an error with a stack trace of its own.
 */
const STARTING = new SluiceError(
  'LEADER_NOT_AVAILABLE',
  'the node is starting: it has not caught up with the cluster metadata yet',
);
const STOPPING = new SluiceError(
  'SHUTTING_DOWN',
  'the node is shutting down; retry on another node or later',
);

/** The longest path parameter the router takes: a topic name with every character as `%XX`. */
const PATH_PARAM_LENGTH_MAX = LIMITS.topicNameLengthMax * 3;

/** The path segments of every endpoint, `undefined` where a parameter goes, to name a parameter. */
const ENDPOINT_SEGMENTS = (Object.values(ENDPOINTS) as Endpoint[]).map((e) => e.path.split('/'));

/**
 * The problem for an error the router raises before any route runs: an over-long parameter is
 * refused as its schema would refuse it (a topic name as INVALID_TOPIC_EXCEPTION), a path that is
 * not valid percent-encoding as INVALID_REQUEST.
 */
function frameworkProblem(error: { code?: string; message: string }, url: string): SluiceError {
  if (error.code !== 'FST_ERR_MAX_PARAM_LENGTH')
    return new SluiceError('INVALID_REQUEST', `the path is not valid: ${error.message}`);
  const segments = url.split('?')[0]!.split('/');
  for (const pattern of ENDPOINT_SEGMENTS) {
    if (pattern.length !== segments.length) continue;
    const long = pattern.findIndex(
      (p, i) => p.startsWith(':') && segments[i]!.length > PATH_PARAM_LENGTH_MAX,
    );
    const matches = pattern.every((p, i) => p.startsWith(':') || p === segments[i]);
    if (long === -1 || !matches) continue;
    const name = pattern[long]!.slice(1);
    return new SluiceError(
      name === 'topic' ? 'INVALID_TOPIC_EXCEPTION' : 'INVALID_REQUEST',
      `params/${name} is longer than ${PATH_PARAM_LENGTH_MAX} characters`,
      { details: { field: `params/${name}` } },
    );
  }
  return new SluiceError(
    'INVALID_REQUEST',
    `a path segment is longer than ${PATH_PARAM_LENGTH_MAX} characters`,
  );
}

/**
 * Path and query parameters arrive as text and are coerced to their schema's types; bodies are
 * typed already (JSON, msgpack) and a wrong type is refused rather than converted, so that
 * `{"partitions": "3"}` or a config of `0` does not silently become something else.
 */
function setValidators(app: FastifyInstance): void {
  const ajvOptions = { allErrors: false, removeAdditional: false, useDefaults: true, strict: false } as const;
  const coercing = new Ajv({ ...ajvOptions, coerceTypes: true });
  const strict = new Ajv({ ...ajvOptions, coerceTypes: false });
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body'
      ? strict.compile(schema as object)
      : decimalIntegers(schema as object, coercing.compile(schema as object) as Validate),
  );
}

const DECIMAL = /^[0-9]+$/;
const SIGNED_DECIMAL = /^-?[0-9]+$/;

interface Validate {
  (data: unknown): boolean;
  errors?: FastifySchemaValidationError[] | null;
}

/**
 * Wraps the coercing validator of a path or query schema so that its integers are written in
 * decimal: ajv's coercion takes anything `Number()` does (`0x1`, `1e3`, ` 0`), which would let a
 * mistyped number through as another one. A leading `-` only where the schema's minimum is
 * negative; at most 2^53 - 1. The range is the schema's. Only a refusal allocates.
 */
function decimalIntegers(schema: object, validate: Validate): Validate {
  const properties = (schema as { properties?: Record<string, { type?: unknown; minimum?: number }> })
    .properties;
  const integers = Object.entries(properties ?? {})
    .filter(([, property]) => property.type === 'integer')
    .map(([name, property]) => ({
      name,
      pattern: (property.minimum ?? 0) < 0 ? SIGNED_DECIMAL : DECIMAL,
    }));
  if (integers.length === 0) return validate;
  const checked: Validate = (data) => {
    const values = data as Record<string, unknown> | null;
    for (const { name, pattern } of integers) {
      const value = values?.[name];
      if (typeof value !== 'string') continue;
      if (!pattern.test(value) || !Number.isSafeInteger(Number(value))) {
        checked.errors = [
          {
            instancePath: `/${name}`,
            schemaPath: `#/properties/${name}/type`,
            keyword: 'type',
            params: {},
            message: 'must be a decimal integer',
          },
        ];
        return false;
      }
    }
    const valid = validate(data);
    checked.errors = validate.errors;
    return valid;
  };
  return checked;
}

/** An unknown path is NOT_FOUND; a known path with another method is METHOD_NOT_ALLOWED with `Allow`. */
function setNotFoundHandler(app: FastifyInstance, servesMetrics: boolean): void {
  const routePatterns = [
    ...Object.values(ENDPOINTS).map((e: Endpoint) => ({
      regex: new RegExp(`^${e.path.replace(/:[a-zA-Z]+/g, '[^/]+')}$`),
      method: e.method as string,
    })),
    { regex: /^\/openapi\.json$/, method: 'GET' },
    { regex: /^\/(console(\/|\/assets\/[^/]+)?)?$/, method: 'GET' },
    ...(servesMetrics ? [{ regex: /^\/metrics$/, method: 'GET' }] : []),
  ];
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allowed = [...new Set(routePatterns.filter((r) => r.regex.test(path)).map((r) => r.method))];
    if (allowed.length > 0) reply.header('allow', allowed.join(', '));
    const error =
      allowed.length > 0
        ? new SluiceError(
            'METHOD_NOT_ALLOWED',
            `${request.method} is not allowed on ${path}; use ${allowed.join(', ')}`,
          )
        : new SluiceError('NOT_FOUND', `no route ${request.method} ${path}`);
    sendProblem(reply, error, request.url);
  });
}
