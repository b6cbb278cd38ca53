import { Ajv } from 'ajv';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerFactory,
  LogController,
} from 'fastify';
import type { BrokerApi } from '../broker/api.js';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { ENDPOINTS, type Endpoint } from '../protocol/api.js';
import { addBodyParsers } from './body.js';
import { problemFor, sendProblem } from './problem.js';
import { clusterRoutes } from './routes/cluster.js';
import { fetchRoutes } from './routes/fetch.js';
import { produceRoutes } from './routes/produce.js';
import { topicRoutes } from './routes/topics.js';

export interface AppOptions {
  logger?: boolean | { level: string };
  bodyLimitBytes?: number;
  serverFactory?: FastifyServerFactory;
}

export interface AppDeps {
  broker: BrokerApi;
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
  const app = Fastify({
    logger: options.logger ?? false,
    // One line per request is too much at info on a hot produce path; debug and trace keep it.
    logController: new LogController({ disableRequestLogging: level !== 'debug' && level !== 'trace' }),
    bodyLimit: options.bodyLimitBytes ?? LIMITS.requestBodyBytesMax,
    ...(options.serverFactory ? { serverFactory: options.serverFactory } : {}),
    // Requests that arrive while the node shuts down get a SHUTTING_DOWN problem (below) instead.
    return503OnClosing: false,
  }) as unknown as FastifyInstance;

  addShutdownHooks(app, broker);
  setValidators(app);
  addBodyParsers(app);
  app.setErrorHandler((error, request, reply) => {
    const problem = problemFor(error, request.url);
    if (problem.status >= 500)
      request.log.error({ err: error, route: request.routeOptions.url }, 'request failed');
    else request.log.debug({ code: problem.body.code, route: request.routeOptions.url }, 'request refused');
    return sendProblem(reply, error, request.url);
  });
  setNotFoundHandler(app);

  app.register(clusterRoutes, { node: broker.node, admin: broker.admin });
  app.register(topicRoutes, { admin: broker.admin });
  app.register(produceRoutes, { produce: broker.produce });
  app.register(fetchRoutes, { fetch: broker.fetch, node: broker.node });
  return app;
}

/**
 * During a shutdown, requests are refused with SHUTTING_DOWN, and HTTP/1.1 answers close their
 * connection so that keep-alive sockets do not hold the node open (HTTP/2 sessions get a GOAWAY
 * from the server instead).
 */
function addShutdownHooks(app: FastifyInstance, broker: BrokerApi): void {
  const closeIfShuttingDown = (request: FastifyRequest, reply: FastifyReply) => {
    if (broker.node.shuttingDown && request.raw.httpVersionMajor === 1) reply.header('connection', 'close');
  };
  // Callback-style hooks: they run on every request, and an async hook costs a promise each time.
  app.addHook('onRequest', (request, reply, done) => {
    if (!broker.node.shuttingDown) return done();
    closeIfShuttingDown(request, reply);
    done(new SluiceError('SHUTTING_DOWN', 'the node is shutting down; retry on another node or later'));
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    closeIfShuttingDown(request, reply);
    done(null, payload);
  });
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
    (httpPart === 'body' ? strict : coercing).compile(schema as object),
  );
}

/** An unknown path is NOT_FOUND; a known path with another method is METHOD_NOT_ALLOWED with `Allow`. */
function setNotFoundHandler(app: FastifyInstance): void {
  const routePatterns = [
    ...Object.values(ENDPOINTS).map((e: Endpoint) => ({
      regex: new RegExp(`^${e.path.replace(/:[a-zA-Z]+/g, '[^/]+')}$`),
      method: e.method as string,
    })),
    { regex: /^\/openapi\.json$/, method: 'GET' },
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
