import { timingSafeEqual } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import * as http2 from 'node:http2';
import { PassThrough } from 'node:stream';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { SluiceError } from '../common/errors.js';
import { MEDIA } from '../protocol/api.js';
import {
  CLUSTER_SECRET_HEADER,
  checkForwardedProduce,
  encodeForwardedAnswer,
  FieldError,
  FORWARDED_ANSWERS_MEDIA,
  FORWARDED_BY_HEADER,
  FORWARDED_PRODUCE_BYTES_MAX,
  FORWARDED_PRODUCE_MEDIA,
  FORWARDED_PRODUCE_PATH,
  FORWARDED_PRODUCE_REQUESTS_MAX,
  type ForwardedAnswer,
  ForwardedAnswerReader,
} from '../protocol/internal-api.js';
import { packr, unpackr } from '../protocol/msgpack.js';
import { problemFor, sendProblem } from './problem.js';

/**
 * Coalesced forwarding of produce requests. Produce requests to partitions another node leads,
 * arriving at this node in the same turn of the event loop, go to that leader as one internal
 * request (`POST /internal/forwarded/produce`) instead of one HTTP/2 stream each: a forwarded
 * produce then costs the forwarding node its client's stream and a share of one upstream stream,
 * and the leader a share of one stream and its produce route. Nothing waits to be coalesced: a
 * request goes at the end of the turn it arrived in, alone when it arrived alone, so a batch grows
 * only with the load.
 *
 * The leader runs each request through its own public produce route (`inject`: the same hooks,
 * validation, produce and answer encoding as a request sent to it directly) and streams each
 * answer back as soon as it has it, so an `acks=all` request waiting for its followers holds back
 * no other request of the batch. The forwarding node passes each answer on as it came: status,
 * headers and body.
 */

/** A body larger than this is forwarded on a stream of its own, as it arrives, not buffered. */
export const COALESCED_BODY_BYTES_MAX = 256 * 1024;
/** Bodies in one coalesced request, at most (a larger backlog goes as several). */
const COALESCED_BYTES_MAX = 4 * 1024 * 1024;

/** A leader's whole answer to one forwarded request. */
export interface LeaderAnswer {
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

export interface CoalescedRequest {
  /** The public path with its query, as the client sent it. */
  path: string;
  /** The request's own headers (no pseudo-headers, no hop-by-hop ones), its id among them. */
  headers: [string, string][];
  body: Buffer;
  answered(answer: LeaderAnswer): void;
  /** No answer came for it: the leader could not be reached, or the exchange broke before it. */
  failed(cause: unknown): void;
  /**
   * The leader does not know coalesced forwarding (an older release answers 404): the request
   * goes on a stream of its own, with its body as buffered.
   */
  alone(): void;
}

export interface ProduceCoalescerOptions {
  /** Opens a stream to the node at `url` (the forwarding node's upstream sessions). */
  request(url: string, headers: OutgoingHttpHeaders): http2.ClientHttp2Stream;
  clusterSecret: string;
  nodeId: string;
  /** Told the number of requests of each coalesced request sent. */
  sent?(requests: number): void;
}

/** Response headers that belong to one connection and are not passed on. */
const HOP_BY_HOP_ANSWER: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'trailer',
]);

/** The queue of requests to each leader, sent at the end of the turn they arrived in. */
export class ProduceCoalescer {
  readonly #options: ProduceCoalescerOptions;
  readonly #queues = new Map<string, CoalescedRequest[]>();
  #scheduled = false;

  constructor(options: ProduceCoalescerOptions) {
    this.#options = options;
  }

  submit(url: string, request: CoalescedRequest): void {
    let queue = this.#queues.get(url);
    if (!queue) this.#queues.set(url, (queue = []));
    queue.push(request);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#scheduled = false;
    for (const [url, queue] of this.#queues) {
      this.#queues.delete(url);
      let from = 0;
      while (from < queue.length) {
        let to = from;
        let bytes = 0;
        while (
          to < queue.length &&
          to - from < FORWARDED_PRODUCE_REQUESTS_MAX &&
          (to === from || bytes + queue[to]!.body.length <= COALESCED_BYTES_MAX)
        )
          bytes += queue[to++]!.body.length;
        this.#send(url, queue.slice(from, to));
        from = to;
      }
    }
  }

  #send(url: string, requests: CoalescedRequest[]): void {
    const { clusterSecret, nodeId } = this.#options;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.#options.request(url, {
        ':method': 'POST',
        ':path': FORWARDED_PRODUCE_PATH,
        'content-type': FORWARDED_PRODUCE_MEDIA,
        [CLUSTER_SECRET_HEADER]: clusterSecret,
        [FORWARDED_BY_HEADER]: nodeId,
      });
    } catch (error) {
      for (const request of requests) request.failed(error);
      return;
    }
    this.#options.sent?.(requests.length);
    new CoalescedExchange(stream, requests).start(
      packr.pack(requests.map((r) => [r.path, r.headers, r.body])),
    );
  }
}

/** One coalesced request and the answers coming back for it. */
class CoalescedExchange {
  readonly #stream: http2.ClientHttp2Stream;
  readonly #requests: CoalescedRequest[];
  readonly #done: boolean[];
  #left: number;
  #failure: unknown;

  constructor(stream: http2.ClientHttp2Stream, requests: CoalescedRequest[]) {
    this.#stream = stream;
    this.#requests = requests;
    this.#done = requests.map(() => false);
    this.#left = requests.length;
  }

  start(body: Buffer): void {
    const stream = this.#stream;
    stream.on('error', (error) => {
      this.#failure ??= error;
    });
    stream.once('response', (headers) => {
      const status = Number(headers[':status']);
      const type = String(headers['content-type'] ?? '');
      if (status === 200 && type.startsWith(FORWARDED_ANSWERS_MEDIA)) this.#readFrames();
      else this.#readWhole(status, headers);
    });
    stream.once('close', () => {
      if (this.#left === 0) return;
      const cause =
        this.#failure ??
        new Error(`the coalesced exchange closed before every answer (code ${stream.rstCode ?? 'none'})`);
      this.#finish((request) => request.failed(cause));
    });
    stream.end(body);
  }

  #readFrames(): void {
    const reader = new ForwardedAnswerReader(this.#requests.length);
    this.#stream.on('data', (chunk: Buffer) => {
      let answers: ForwardedAnswer[];
      try {
        answers = reader.push(chunk);
      } catch (error) {
        this.#failure = error instanceof FieldError ? new Error(`a bad answer frame: ${error.field}`) : error;
        this.#stream.close(http2.constants.NGHTTP2_CANCEL);
        return;
      }
      for (const answer of answers) {
        if (this.#done[answer.index]) continue;
        this.#done[answer.index] = true;
        this.#left--;
        this.#requests[answer.index]!.answered({
          status: answer.status,
          headers: headersOf(answer.headers),
          body: Buffer.from(answer.body.buffer, answer.body.byteOffset, answer.body.byteLength),
        });
      }
    });
  }

  /** The leader refused the coalesced request as a whole: every request gets that answer. */
  #readWhole(status: number, headers: http2.IncomingHttpHeaders): void {
    const chunks: Buffer[] = [];
    this.#stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    this.#stream.once('end', () => {
      if (status === 404) {
        this.#finish((request) => request.alone());
        return;
      }
      const body = Buffer.concat(chunks);
      const out: OutgoingHttpHeaders = {};
      for (const name in headers) {
        if (name.charCodeAt(0) === 58 || HOP_BY_HOP_ANSWER.has(name)) continue;
        out[name] = headers[name];
      }
      this.#finish((request) => request.answered({ status, headers: { ...out }, body }));
    });
  }

  #finish(each: (request: CoalescedRequest) => void): void {
    this.#requests.forEach((request, i) => {
      if (this.#done[i]) return;
      this.#done[i] = true;
      each(request);
    });
    this.#left = 0;
  }
}

function headersOf(pairs: [string, string][]): OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of pairs) {
    if (HOP_BY_HOP_ANSWER.has(name)) continue;
    const had = out[name];
    out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  return out;
}

function pairsOf(headers: Record<string, string | string[] | number | undefined>): [string, string][] {
  const pairs: [string, string][] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) pairs.push([name, v]);
    else pairs.push([name, String(value)]);
  }
  return pairs;
}

/** Request headers a coalesced request does not carry over: the leader sets its own. */
const NOT_CARRIED: ReadonlySet<string> = new Set([
  'content-length',
  CLUSTER_SECRET_HEADER,
  FORWARDED_BY_HEADER,
]);

/** A forwarded request's headers as pairs for a coalesced request. */
export function carriedHeaders(headers: OutgoingHttpHeaders): [string, string][] {
  const pairs: [string, string][] = [];
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 || NOT_CARRIED.has(name)) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) pairs.push([name, String(v)]);
    else pairs.push([name, String(value)]);
  }
  return pairs;
}

export interface ForwardedProduceRouteOptions {
  clusterSecret: string;
  /** Whether a path is a produce to one partition (`POST /v1/topics/{topic}/partitions/{p}/records`). */
  isProducePath(path: string): boolean;
  /** Runs one request through the node's public routes (the root app's `inject`). */
  inject(options: InjectOptions): Promise<{
    statusCode: number;
    headers: Record<string, string | string[] | number | undefined>;
    rawPayload: Buffer;
  }>;
}

/**
 * The leader's side: `POST /internal/forwarded/produce`, behind the cluster secret. Each request
 * of the body goes through the public produce route as a request forwarded by the sender (it is
 * answered here, never forwarded again); each answer is streamed back as a frame when it is done.
 */
export async function forwardedProduceRoutes(
  app: FastifyInstance,
  options: ForwardedProduceRouteOptions,
): Promise<void> {
  const expected = Buffer.from(options.clusterSecret);
  app.setErrorHandler((error, request, reply) => sendProblem(reply, error, request.url));
  app.addContentTypeParser(FORWARDED_PRODUCE_MEDIA, { parseAs: 'buffer' }, (_r, body, done) =>
    done(null, body),
  );
  app.post(FORWARDED_PRODUCE_PATH, { bodyLimit: FORWARDED_PRODUCE_BYTES_MAX }, async (request, reply) => {
    const presented = Buffer.from(String(request.headers[CLUSTER_SECRET_HEADER] ?? ''));
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected))
      throw new SluiceError('CLUSTER_AUTHORIZATION_FAILED', 'the cluster secret is missing or wrong');
    const sender = request.headers[FORWARDED_BY_HEADER];
    if (typeof sender !== 'string' || !/^[0-9]{1,10}$/.test(sender))
      throw new SluiceError('INVALID_REQUEST', `${FORWARDED_BY_HEADER} must name the node that forwards`, {
        details: { field: `headers/${FORWARDED_BY_HEADER}` },
      });
    if (!Buffer.isBuffer(request.body))
      throw new SluiceError('UNSUPPORTED_MEDIA_TYPE', `the body must be ${FORWARDED_PRODUCE_MEDIA}`);
    let requests: ReturnType<typeof checkForwardedProduce>;
    try {
      requests = checkForwardedProduce(unpackr.unpack(request.body), options.isProducePath);
    } catch (error) {
      const field = error instanceof FieldError ? error.field : '/';
      const expectedForm = error instanceof FieldError ? error.expected : 'msgpack';
      throw new SluiceError('INVALID_REQUEST', `${field} must be ${expectedForm}`, { details: { field } });
    }
    const answers = new PassThrough();
    let left = requests.length;
    const write = (answer: ForwardedAnswer) => {
      answers.write(encodeForwardedAnswer(answer));
      if (--left === 0) answers.end();
    };
    requests.forEach((forwarded, index) => {
      const headers: Record<string, string> = {};
      for (const [name, value] of forwarded.headers) {
        const lower = name.toLowerCase();
        if (NOT_CARRIED.has(lower)) continue;
        headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`;
      }
      headers[FORWARDED_BY_HEADER] = sender;
      headers[CLUSTER_SECRET_HEADER] = options.clusterSecret;
      const body = forwarded.body;
      options
        .inject({
          method: 'POST',
          url: forwarded.path,
          headers,
          payload: Buffer.from(body.buffer, body.byteOffset, body.byteLength),
        })
        .then(
          (answer) =>
            write({
              index,
              status: answer.statusCode,
              headers: pairsOf(answer.headers),
              body: answer.rawPayload,
            }),
          (error: unknown) => {
            request.log.error({ err: error }, 'a coalesced produce request failed');
            const problem = problemFor(error, forwarded.path);
            write({
              index,
              status: problem.status,
              headers: [['content-type', `${MEDIA.problem}; charset=utf-8`]],
              body: Buffer.from(JSON.stringify(problem.body)),
            });
          },
        );
    });
    return reply.code(200).type(FORWARDED_ANSWERS_MEDIA).send(answers);
  });
}
