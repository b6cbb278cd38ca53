import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import * as http2 from 'node:http2';
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type { NodeApi, RoutingApi } from '../broker/api.js';
import { SluiceError } from '../common/errors.js';
import { connectPeer } from '../common/http2-peer.js';
import { ENDPOINTS, type Endpoint, GROUP_ID_PATTERN, MEDIA, NODE_ID_HEADER } from '../protocol/api.js';
import { CLUSTER_SECRET_HEADER, FORWARDED_BY_HEADER } from '../protocol/internal-api.js';
import type { ForwardOutcome, HttpMetrics } from './metrics.js';
import { problemFor } from './problem.js';
import { requestCheck } from './routes/route.js';
import { type Http2StreamInterceptor, interceptHttp2Streams } from './server.js';

/**
 * Forwarding: a node answers every partition-addressed request (produce to a partition, fetch,
 * offsets), and one for a partition another node leads it passes to that leader as it came: the
 * request's path, query, headers and body stream to the leader over HTTP/2, and the leader's
 * status, headers and body stream back. Nothing is parsed on the way (the body is not even read
 * into memory), so a forwarded request is answered exactly as the leader would answer it directly.
 *
 * A forwarded request carries `sluice-forwarded-by: <node id>` and the cluster secret. The leader
 * answers such a request itself, whatever its own routing says (a routing view that lags behind
 * says NOT_LEADER_OR_FOLLOWER there rather than sending the request round a loop), and refuses a
 * marker without the right secret with CLUSTER_AUTHORIZATION_FAILED: only a node may claim to have
 * forwarded.
 *
 * When the leader cannot be reached, or the exchange breaks before its answer's headers, the client
 * gets LEADER_NOT_AVAILABLE (retriable). A fetch or offsets request (a GET, no body) is tried once
 * more on a fresh session first; a produce is not, since its body has been streamed and the leader
 * may have appended it. After the headers have gone out a break can only cut the answer short.
 */

/** The request header a forwarding node names itself in. */
export { FORWARDED_BY_HEADER };

/** The routes that name one partition: they are answered by that partition's leader. */
const FORWARDED_ENDPOINTS = [ENDPOINTS.producePartition, ENDPOINTS.fetch, ENDPOINTS.offsets] as const;
type ForwardedRoute = (typeof FORWARDED_ENDPOINTS)[number]['id'];

/** The forwarded endpoint a route serves (fastify adds a HEAD route beside each GET one). */
function forwardedRoute(url: string, method: string | readonly string[]): ForwardedRoute | undefined {
  const methods = typeof method === 'string' ? [method] : method;
  return FORWARDED_ENDPOINTS.find(
    (e) => e.path === url && methods.some((m) => m === e.method || (m === 'HEAD' && e.method === 'GET')),
  )?.id;
}

/**
 * The consumer group routes: answered by the group's coordinator (the leader of the group's
 * partition of `__consumer_offsets`), to which any other node forwards them the same way.
 */
const GROUP_ENDPOINTS: readonly Endpoint[] = [
  ENDPOINTS.joinGroup,
  ENDPOINTS.heartbeatGroup,
  ENDPOINTS.leaveGroup,
  ENDPOINTS.pollGroup,
  ENDPOINTS.commitOffsets,
  ENDPOINTS.listGroups,
  ENDPOINTS.describeGroup,
  ENDPOINTS.resetGroupOffsets,
  ENDPOINTS.deleteGroup,
];

function isGroupRoute(url: string, method: string | readonly string[]): boolean {
  const methods = typeof method === 'string' ? [method] : method;
  return GROUP_ENDPOINTS.some(
    (e) => e.path === url && methods.some((m) => m === e.method || (m === 'HEAD' && e.method === 'GET')),
  );
}

/** A partition parameter the route's schema would take (it refuses anything else itself). */
const PARTITION_PARAMETER = /^[0-9]{1,4}$/;

/**
 * Streams one upstream session carries before another is opened to the same node. Sluice's server
 * advertises 256 concurrent streams; staying below it means no request waits in a session behind
 * long follow streams.
 */
const STREAMS_PER_SESSION_MAX = 128;
/** Sessions to one node: with the streams of each, the most requests forwarded to it at once. */
const SESSIONS_PER_TARGET_MAX = 64;
/** How long connecting to a leader may take before the request is answered LEADER_NOT_AVAILABLE. */
const CONNECT_TIMEOUT_MS_DEFAULT = 5_000;

/**
 * Request and response headers that belong to one connection, not to the request (RFC 9110
 * §7.6.1), and those HTTP/2 forbids: never copied. `host` becomes the session's `:authority`.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'http2-settings',
  'expect',
  'host',
]);

export interface ForwardingOptions {
  connectTimeoutMs?: number;
}

export interface ForwardingDeps {
  node: NodeApi;
  /** Absent on a single node: nothing is forwarded, and a forwarded marker is refused. */
  routing: RoutingApi | undefined;
  metrics: HttpMetrics;
  /** The id of a request taken before fastify (the app's own generator, so that ids never repeat). */
  requestId?: (request: { headers: IncomingHttpHeaders }) => string;
}

/**
 * Adds forwarding to the partition-addressed routes registered after this call: an onRequest hook
 * after the route's own Accept and Content-Type checks (so that a request the leader would refuse
 * for its form is refused here without a hop), and the upstream sessions, closed with the app.
 */
export function addForwarding(app: FastifyInstance, options: ForwardingOptions, deps: ForwardingDeps): void {
  const upstreams = new Upstreams(options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT);
  // HTTP/2 produce requests to a partition another node leads skip fastify altogether.
  if (deps.routing && deps.requestId)
    interceptHttp2Streams(app.server, produceFastPath(app, deps, upstreams));
  app.addHook('onRoute', (route) => {
    const id = forwardedRoute(route.url ?? '', route.method);
    const group = id === undefined && isGroupRoute(route.url ?? '', route.method);
    if (id === undefined && !group) return;
    const hook = id === undefined ? groupForwardHook(deps, upstreams) : forwardHook(deps, upstreams, id);
    const own = route.onRequest;
    route.onRequest = own === undefined ? [hook] : [...(Array.isArray(own) ? own : [own]), hook];
  });
  // onClose hooks run after the server has closed and its requests drained or were cut, so no
  // forwarded request is left with a client to answer.
  app.addHook('onClose', (_app, done) => {
    upstreams.close();
    done();
  });
}

function forwardHook(
  deps: ForwardingDeps,
  upstreams: Upstreams,
  route: ForwardedRoute,
): (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void {
  const { node, routing, metrics } = deps;
  const secret = routing ? Buffer.from(routing.clusterSecret) : undefined;
  const nodeId = String(node.nodeId);
  return (request, reply, done) => {
    // Forwarded to this node: answered here, never forwarded again.
    if (request.headers[FORWARDED_BY_HEADER] !== undefined) return done(forwardedRefusal(secret, request));
    if (!routing) return done();
    const params = request.params as { topic: string; partition: string };
    if (!PARTITION_PARAMETER.test(params.partition)) return done();
    const partition = Number(params.partition);
    const forward = (target: { nodeId: number; url: string }) => {
      forwardFastify(request, reply, routing.clusterSecret, {
        target,
        upstreams,
        nodeId,
        where: { topic: params.topic, partition },
        count: (outcome) => metrics.forwarded(route, outcome),
      });
    };
    const target = routing.forwardTarget(params.topic, partition);
    if (target !== undefined) {
      forward(target);
      return done();
    }
    if (!routing.catchUp || routing.knows?.(params.topic, partition) !== false) return done();
    // A partition this node has not heard of may have been created through another node a moment
    // ago: catch up with the controller, then forward it if another node leads it.
    routing.catchUp().then(
      () => {
        const caughtUp = routing.forwardTarget(params.topic, partition);
        if (caughtUp !== undefined) forward(caughtUp);
        done();
      },
      () => done(),
    );
  };
}

/** `/v1/topics/{topic}/partitions/{partition}/records`, with or without a query. */
const PRODUCE_PARTITION_PATH = /^\/v1\/topics\/([^/?#]+)\/partitions\/([0-9]{1,4})\/records(?:\?|$)/;

/**
 * The forwarding of HTTP/2 produce requests to one partition, before the compatibility layer and
 * fastify: routing and hooks cost a forwarding node as much CPU per request as its HTTP/2 streams
 * (bench:cluster, STEPS=forward). A stream is taken only when it is a POST to a partition another
 * node leads, not forwarded to this node, this node is ready, and the route's Accept and
 * Content-Type checks pass; anything else goes to fastify, which answers (or refuses) it as
 * before. What the hooks did is done here: the request id, the in-flight gauge, the route's
 * latency histogram and the forwarded counter.
 */
function produceFastPath(
  app: FastifyInstance,
  deps: ForwardingDeps,
  upstreams: Upstreams,
): Http2StreamInterceptor {
  const { node, routing, metrics } = deps;
  const requestId = deps.requestId!;
  const check = requestCheck(ENDPOINTS.producePartition);
  const observe = metrics.observer(ENDPOINTS.producePartition);
  const nodeId = String(node.nodeId);
  return (stream, headers, rawHeaders) => {
    if (headers[':method'] !== 'POST' || !node.ready || headers[FORWARDED_BY_HEADER] !== undefined)
      return false;
    const path = headers[':path'];
    const match = typeof path === 'string' ? PRODUCE_PARTITION_PATH.exec(path) : null;
    if (!match) return false;
    let topic: string;
    try {
      topic = decodeURIComponent(match[1]!);
    } catch {
      return false;
    }
    const partition = Number(match[2]);
    const target = routing!.forwardTarget(topic, partition);
    if (target === undefined || check({ headers, raw: { rawHeaders } }) !== undefined) return false;
    const started = performance.now();
    const id = requestId({ headers });
    // Made only when something is logged: most requests never are.
    const log = {
      error: (fields: object, message: string) => app.log.error({ reqId: id, ...fields }, message),
      debug: (fields: object, message: string) => app.log.debug({ reqId: id, ...fields }, message),
      info: (fields: object, message: string) => app.log.info({ reqId: id, ...fields }, message),
    };
    let status = 0;
    metrics.inFlight.inc();
    stream.once('close', () => {
      metrics.inFlight.dec();
      if (status === 0) return;
      const query = path!.indexOf('?');
      const acks =
        query < 0 ? undefined : (new URLSearchParams(path!.slice(query + 1)).get('acks') ?? undefined);
      observe({ query: { acks }, log }, { elapsedTime: performance.now() - started, statusCode: status });
    });
    const answer: AnswerSink = {
      once: (event, listener) => stream.once(event, listener),
      writeHead: (code, out) => {
        stream.respond({ ...out, ':status': code });
        status = code;
      },
      write: (chunk) => stream.write(chunk),
      end: (data) => stream.end(data),
      destroy: () => stream.destroy(),
    };
    new Forward(
      { url: path!, id, hasBody: true, log, body: stream, answer },
      {
        target,
        upstreams,
        upstreamHeaders: upstreamHeaders('POST', path!, headers, id, nodeId, routing!.clusterSecret),
        nodeId,
        where: { topic, partition },
        count: (outcome) => metrics.forwarded('producePartition', outcome),
      },
    ).start();
    return true;
  };
}

const GROUP_PARAMETER = new RegExp(GROUP_ID_PATTERN);

/** Forwards a group request to the group's coordinator, as `forwardHook` does for partitions. */
function groupForwardHook(
  deps: ForwardingDeps,
  upstreams: Upstreams,
): (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void {
  const { node, routing, metrics } = deps;
  const secret = routing ? Buffer.from(routing.clusterSecret) : undefined;
  const nodeId = String(node.nodeId);
  return (request, reply, done) => {
    // Forwarded to this node: answered here, never forwarded again.
    if (request.headers[FORWARDED_BY_HEADER] !== undefined) return done(forwardedRefusal(secret, request));
    const group = (request.params as { group?: string }).group;
    if (!routing?.groupTarget || group === undefined || !GROUP_PARAMETER.test(group)) return done();
    const target = routing.groupTarget(group);
    if (target === undefined) return done();
    forwardFastify(request, reply, routing.clusterSecret, {
      target,
      upstreams,
      nodeId,
      where: { topic: '__consumer_offsets', partition: -1 },
      count: (outcome) => metrics.forwarded('group', outcome),
    });
    done();
  };
}

/** Takes a fastify request over from fastify and forwards it. */
function forwardFastify(
  request: FastifyRequest,
  reply: FastifyReply,
  clusterSecret: string,
  parts: Omit<ForwardParts, 'upstreamHeaders'>,
): void {
  reply.hijack();
  const headers = upstreamHeaders(
    request.method,
    request.url,
    request.headers,
    request.id,
    parts.nodeId,
    clusterSecret,
  );
  new Forward(fastifyEnd(request, reply), { ...parts, upstreamHeaders: headers }).start();
}

/** A request another node says it forwarded: refused unless it carries the cluster secret. */
function forwardedRefusal(secret: Buffer | undefined, request: FastifyRequest): SluiceError | undefined {
  return secretMatches(secret, request.headers[CLUSTER_SECRET_HEADER])
    ? undefined
    : new SluiceError('CLUSTER_AUTHORIZATION_FAILED', 'a forwarded request needs the cluster secret');
}

function secretMatches(expected: Buffer | undefined, presented: string | string[] | undefined): boolean {
  if (expected === undefined || typeof presented !== 'string') return false;
  const given = Buffer.from(presented);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The request's method, path with query and own headers for the leader, with the forwarding marker
 * and the request's id.
 */
function upstreamHeaders(
  method: string,
  url: string,
  headers: IncomingHttpHeaders,
  requestId: string,
  nodeId: string,
  clusterSecret: string,
): OutgoingHttpHeaders {
  const connectionTokens = connectionOptions(headers.connection);
  const out: OutgoingHttpHeaders = { ':method': method, ':path': url };
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ':' */ || HOP_BY_HOP.has(name) || connectionTokens?.has(name)) continue;
    out[name] = headers[name];
  }
  out[FORWARDED_BY_HEADER] = nodeId;
  out[CLUSTER_SECRET_HEADER] = clusterSecret;
  // The leader logs the request under the id this node gave it.
  out['x-request-id'] = requestId;
  return out;
}

/** The header names an HTTP/1.1 `Connection` header lists as hop-by-hop (RFC 9110 §7.6.1). */
function connectionOptions(connection: string | string[] | undefined): Set<string> | undefined {
  if (typeof connection !== 'string') return undefined;
  return new Set(connection.split(',').map((token) => token.trim().toLowerCase()));
}

/** The leader's answer headers for the client: all but the pseudo-headers and hop-by-hop ones. */
function downstreamHeaders(headers: http2.IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 || HOP_BY_HOP.has(name)) continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/**
 * The client's side of a forwarded exchange: the request's form, where its body comes from, and
 * where the answer goes (Node's response API, as http.ServerResponse, Http2ServerResponse and the
 * raw-stream answer below have it).
 */
interface ClientEnd {
  readonly url: string;
  readonly id: string;
  readonly hasBody: boolean;
  readonly log: {
    error(fields: object, message: string): void;
    debug(fields: object, message: string): void;
  };
  readonly body: NodeJS.ReadableStream;
  readonly answer: AnswerSink;
}

interface AnswerSink {
  once(event: 'close' | 'drain', listener: () => void): unknown;
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown;
  write(chunk: Buffer): boolean;
  end(data?: string): unknown;
  destroy(): unknown;
}

function fastifyEnd(request: FastifyRequest, reply: FastifyReply): ClientEnd {
  return {
    url: request.url,
    id: request.id,
    hasBody: request.method === 'POST',
    log: request.log,
    body: request.raw,
    answer: reply.raw,
  };
}

interface ForwardParts {
  target: { nodeId: number; url: string };
  upstreams: Upstreams;
  upstreamHeaders: OutgoingHttpHeaders;
  nodeId: string;
  where: { topic: string; partition: number };
  count: (outcome: ForwardOutcome) => void;
}

/**
 * One request on its way to the leader and its answer on the way back. The client's answer
 * (`reply.raw`, an HTTP/1.1 or an HTTP/2 compatibility response) is written directly: status and
 * headers as the leader sent them, then the body with backpressure (the upstream stream pauses
 * while the client's socket is full), so a follow stream through this node holds no more than
 * the leader's.
 */
class Forward {
  readonly #client: ClientEnd;
  readonly #raw: AnswerSink;
  readonly #parts: ForwardParts;
  readonly #hasBody: boolean;
  #stream: http2.ClientHttp2Stream | undefined;
  /** The leader's headers have been passed on: from here a failure can only cut the answer. */
  #responded = false;
  #finished = false;
  #clientGone = false;

  constructor(client: ClientEnd, parts: ForwardParts) {
    this.#client = client;
    this.#raw = client.answer;
    this.#parts = parts;
    this.#hasBody = client.hasBody;
  }

  start(): void {
    this.#raw.once('close', () => {
      if (this.#finished) return;
      // The client went away (or its answer was cut): the leader stops too, so that a follow
      // stream or a long-poll does not go on for nobody.
      this.#clientGone = true;
      if (!this.#responded) this.#parts.count('abandoned');
      this.#stream?.close(http2.constants.NGHTTP2_CANCEL);
    });
    this.#attempt(this.#hasBody ? 0 : 1);
  }

  #attempt(retriesLeft: number): void {
    const { target, upstreams, upstreamHeaders } = this.#parts;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = upstreams.request(target.url, upstreamHeaders, !this.#hasBody);
    } catch (error) {
      this.#fail(error);
      return;
    }
    this.#stream = stream;
    let failure: unknown;
    stream.on('error', (error) => {
      failure = error;
    });
    stream.once('response', (headers) => this.#respond(stream, headers));
    stream.once('end', () => this.#end());
    stream.once('close', () => {
      if (this.#finished || this.#clientGone) return;
      if (this.#responded) {
        // Cut after the headers: the client sees a truncated answer, never a made-up one.
        this.#raw.destroy();
        return;
      }
      if (retriesLeft > 0) {
        this.#attempt(retriesLeft - 1);
        return;
      }
      this.#fail(
        failure ?? new Error(`the stream closed before an answer (code ${stream.rstCode ?? 'none'})`),
      );
    });
    if (this.#hasBody) this.#client.body.pipe(stream);
  }

  #respond(stream: http2.ClientHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    if (this.#clientGone) return;
    this.#responded = true;
    this.#parts.count('answered');
    const raw = this.#raw;
    try {
      raw.writeHead(Number(headers[':status']), downstreamHeaders(headers));
    } catch (error) {
      // A header the client's protocol cannot carry: nothing can be answered in good faith.
      this.#client.log.error({ err: error, leader: this.#parts.target.nodeId }, 'request forwarding failed');
      stream.close(http2.constants.NGHTTP2_CANCEL);
      raw.destroy();
      return;
    }
    stream.on('data', (chunk: Buffer) => {
      if (this.#clientGone || raw.write(chunk)) return;
      stream.pause();
      raw.once('drain', () => stream.resume());
    });
  }

  #end(): void {
    if (this.#clientGone || !this.#responded) return;
    this.#finished = true;
    this.#raw.end();
  }

  /** No answer from the leader: LEADER_NOT_AVAILABLE (or the limit that kept it from being asked). */
  #fail(cause: unknown): void {
    if (this.#clientGone) return;
    this.#finished = true;
    const { target, where, nodeId } = this.#parts;
    const error =
      cause instanceof SluiceError
        ? cause
        : new SluiceError(
            'LEADER_NOT_AVAILABLE',
            `node ${target.nodeId} leads ${where.topic} partition ${where.partition} and could not be reached`,
            { details: { topic: where.topic, partition: where.partition, leader: target.nodeId }, cause },
          );
    const { status, body } = problemFor(error, this.#client.url);
    this.#parts.count(error.code === 'LEADER_NOT_AVAILABLE' ? 'unreachable' : 'refused');
    const fields = { err: cause, leader: target.nodeId, topic: where.topic, partition: where.partition };
    if (status >= 500) this.#client.log.error(fields, 'request forwarding failed');
    else this.#client.log.debug({ ...fields, code: body.code }, 'request forwarding refused');
    const json = JSON.stringify(body);
    this.#raw.writeHead(status, {
      'content-type': `${MEDIA.problem}; charset=utf-8`,
      'content-length': Buffer.byteLength(json),
      'x-request-id': this.#client.id,
      [NODE_ID_HEADER]: nodeId,
    });
    this.#raw.end(json);
  }
}

interface Upstream {
  session: http2.ClientHttp2Session;
  streams: number;
}

/**
 * The HTTP/2 sessions to the other nodes, by base URL: opened on first use, dropped when they
 * close, fail or receive GOAWAY (the next request opens a new one), and unreferenced so that they
 * never hold the process open. A node gets another session only when every one it has carries
 * `STREAMS_PER_SESSION_MAX` streams.
 */
class Upstreams {
  readonly #byUrl = new Map<string, Upstream[]>();
  readonly #connectTimeoutMs: number;
  #closed = false;

  constructor(connectTimeoutMs: number) {
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  request(url: string, headers: OutgoingHttpHeaders, endStream: boolean): http2.ClientHttp2Stream {
    const upstream = this.#upstream(url);
    const stream = upstream.session.request(headers, { endStream });
    upstream.streams++;
    stream.once('close', () => upstream.streams--);
    return stream;
  }

  #upstream(url: string): Upstream {
    if (this.#closed) throw new SluiceError('SHUTTING_DOWN', 'the node is shutting down');
    let pool = this.#byUrl.get(url);
    if (!pool) this.#byUrl.set(url, (pool = []));
    for (const upstream of pool) if (upstream.streams < STREAMS_PER_SESSION_MAX) return upstream;
    if (pool.length >= SESSIONS_PER_TARGET_MAX)
      throw new SluiceError(
        'LIMIT_EXCEEDED',
        `more than ${SESSIONS_PER_TARGET_MAX * STREAMS_PER_SESSION_MAX} requests are being forwarded to one node`,
      );
    const upstream = this.#connect(url, pool);
    pool.push(upstream);
    return upstream;
  }

  #connect(url: string, pool: Upstream[]): Upstream {
    const session = connectPeer(url, { settings: { enablePush: false } });
    const upstream: Upstream = { session, streams: 0 };
    const drop = () => {
      const at = pool.indexOf(upstream);
      if (at >= 0) pool.splice(at, 1);
      if (pool.length === 0 && this.#byUrl.get(url) === pool) this.#byUrl.delete(url);
    };
    const timer = setTimeout(() => session.destroy(), this.#connectTimeoutMs);
    timer.unref();
    session.once('connect', () => clearTimeout(timer));
    // A session's errors reach its streams, which answer for them.
    session.on('error', () => {});
    session.once('goaway', () => {
      drop();
      session.close();
    });
    session.once('close', () => {
      clearTimeout(timer);
      drop();
    });
    session.unref();
    return upstream;
  }

  close(): void {
    this.#closed = true;
    for (const pool of this.#byUrl.values()) for (const { session } of pool) session.destroy();
    this.#byUrl.clear();
  }
}
