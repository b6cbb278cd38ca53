import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { FastifyServerFactory } from 'fastify';
import { type ErrorCode, SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { type Gauge, type Metrics, noopMetrics } from '../common/metrics.js';
import { MEDIA } from '../protocol/api.js';
import { problemFor } from './problem.js';

/** The first bytes of every HTTP/2 connection with prior knowledge. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** How long an HTTP/2 session without open streams may stay idle (fastify's default is 72 s). */
const H2_IDLE_TIMEOUT_MS = 72_000;

/**
 * One port for HTTP/1.1 and cleartext HTTP/2 (prior knowledge): each new connection's first bytes
 * are peeked; the HTTP/2 preface goes to an HTTP/2 server, anything else to an HTTP/1.1 server.
 * Both hand requests to the same fastify handler. `close()` stops accepting, lets requests in
 * flight finish for up to `shutdownGraceMs`, then ends every connection still open, so that
 * keep-alive and HTTP/2 sessions do not hold the port.
 */
export interface DualProtocolOptions {
  /** How long requests in flight may take to finish once close() is called. */
  shutdownGraceMs?: number;
  /** How long a new connection may stay silent before its first bytes. */
  firstBytesTimeoutMs?: number;
  /** How long an HTTP/1.1 client may take to send a request's headers. */
  headersTimeoutMs?: number;
  /** Where the open connections are counted, by protocol. */
  metrics?: Metrics;
}

/**
 * Takes an HTTP/2 stream before the compatibility layer and fastify see it: true when it has
 * answered (or is answering) the stream itself, false to let it go to fastify as usual.
 */
export type Http2StreamInterceptor = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  rawHeaders: readonly string[],
) => boolean;

const interceptors = new WeakMap<object, (interceptor: Http2StreamInterceptor) => void>();

/**
 * Gives `server` (one `dualProtocolServerFactory` made) an HTTP/2 stream interceptor; false for any
 * other server, which keeps answering every request through fastify.
 */
export function interceptHttp2Streams(server: object, interceptor: Http2StreamInterceptor): boolean {
  const set = interceptors.get(server);
  if (!set) return false;
  set(interceptor);
  return true;
}

export function dualProtocolServerFactory(options: DualProtocolOptions = {}): FastifyServerFactory {
  const connections = (options.metrics ?? noopMetrics).gauge({
    name: 'sluice_http_connections',
    help: 'Client connections open now, by protocol (h1: HTTP/1.1, h2: HTTP/2)',
    labelNames: ['protocol'],
  });
  const open = { h1: connections.labels('h1'), h2: connections.labels('h2') };
  const shutdownGraceMs = options.shutdownGraceMs ?? 5_000;
  const firstBytesTimeoutMs = options.firstBytesTimeoutMs ?? 10_000;
  const headersTimeoutMs = options.headersTimeoutMs ?? 60_000;
  return (handler) => {
    const h1 = new Http1Side(handler as http.RequestListener, headersTimeoutMs);
    const h2 = new Http2Side(
      handler as unknown as (request: http2.Http2ServerRequest, response: http2.Http2ServerResponse) => void,
    );
    const sockets = new Set<net.Socket>();
    // Nagle's algorithm off, as http.Server does for its own sockets: otherwise the last part of
    // a response waits for the client's delayed ACK of the part before it.
    const server = net.createServer({ noDelay: true }, (socket) => {
      sockets.add(socket);
      let counted: Gauge | undefined;
      socket.once('close', () => {
        sockets.delete(socket);
        h1.forget(socket);
        counted?.dec();
      });
      sniffPreface(socket, firstBytesTimeoutMs, (isH2) => {
        counted = isH2 ? open.h2 : open.h1;
        counted.inc();
        (isH2 ? h2 : h1).accept(socket);
      });
      socket.on('error', () => socket.destroy());
    });
    server.close = gracefulClose(server, { h1, h2, sockets, shutdownGraceMs });
    Object.defineProperty(server, 'http1SocketsTracked', { get: () => h1.socketsTracked });
    interceptors.set(server, (interceptor) => h2.intercept(interceptor));
    return server as unknown as http.Server;
  };
}

/** The server the factory returns, with what it tracks (for tests and diagnostics). */
export interface DualProtocolServer extends net.Server {
  /** HTTP/1.1 sockets with requests in flight: a socket that is gone or idle is not held. */
  readonly http1SocketsTracked: number;
}

/** The HTTP/1.1 server, handed sockets rather than listening, and the requests in flight on each. */
class Http1Side {
  readonly #server: http.Server;
  // Requests in flight per open HTTP/1.1 socket, only while there are some: a shutdown closes
  // the idle ones at once and each busy one as soon as its last answer is sent.
  readonly #inFlight = new Map<net.Socket, number>();
  #closing = false;

  constructor(handler: http.RequestListener, headersTimeoutMs: number) {
    this.#server = http.createServer(
      {
        headersTimeout: headersTimeoutMs,
        // How often Node looks for clients over headersTimeout or requestTimeout.
        connectionsCheckingInterval: Math.max(10, Math.min(30_000, Math.floor(headersTimeoutMs / 4))),
      },
      handler,
    );
    this.#server.keepAliveTimeout = 65_000;
    // An http.Server that is handed sockets never listens itself, and Node starts its checks of
    // headersTimeout and requestTimeout (slow or stalled clients) on 'listening': start them here.
    this.#server.emit('listening');
    this.#server.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => {
      const socket = request.socket;
      this.#inFlight.set(socket, (this.#inFlight.get(socket) ?? 0) + 1);
      response.once('close', () => {
        const busy = this.#inFlight.get(socket);
        // Forgotten: the socket closed first (the client went away before its answer).
        if (busy === undefined) return;
        if (busy > 1) return void this.#inFlight.set(socket, busy - 1);
        this.#inFlight.delete(socket);
        if (this.#closing) socket.destroySoon();
      });
    });
    this.#server.on('clientError', (error: NodeJS.ErrnoException, socket: net.Socket) =>
      this.#refuse(error, socket),
    );
  }

  /**
   * A request Node's parser refuses before fastify sees it (headers too large, conflicting
   * Content-Length, Content-Length with Transfer-Encoding, a timeout) is answered with a problem
   * and the connection closed. Nothing is written while an answer is in flight on the socket,
   * which the bytes would corrupt.
   */
  #refuse(error: NodeJS.ErrnoException, socket: net.Socket): void {
    if (error.code === 'ECONNRESET' || !socket.writable || this.#inFlight.has(socket)) {
      socket.destroy();
      return;
    }
    socket.end(clientErrorResponse(error), () => socket.destroy());
  }

  get socketsTracked(): number {
    return this.#inFlight.size;
  }

  accept(socket: net.Socket): void {
    this.#server.emit('connection', socket);
  }

  isIdle(socket: net.Socket): boolean {
    return !this.#inFlight.get(socket);
  }

  forget(socket: net.Socket): void {
    this.#inFlight.delete(socket);
  }

  /** From now on each busy socket closes once its last answer is sent. */
  close(): void {
    this.#closing = true;
    // Stops the HTTP/1.1 server's connection checks; it never listened, so the error it reports
    // for that is expected.
    this.#server.close(() => {});
  }

  closeAllConnections(): void {
    this.#server.closeAllConnections();
  }
}

/** What a refusal of Node's HTTP/1.1 parser means to a client. */
const CLIENT_ERROR_CODES: Readonly<Record<string, ErrorCode>> = {
  HPE_HEADER_OVERFLOW: 'REQUEST_HEADERS_TOO_LARGE',
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 'REQUEST_TOO_LARGE',
  ERR_HTTP_REQUEST_TIMEOUT: 'CLIENT_TIMEOUT',
};

/** A whole HTTP/1.1 response carrying the problem for a parser refusal, closing the connection. */
function clientErrorResponse(error: NodeJS.ErrnoException): string {
  const known = error.code !== undefined && Object.hasOwn(CLIENT_ERROR_CODES, error.code);
  const code = known ? CLIENT_ERROR_CODES[error.code!]! : 'INVALID_REQUEST';
  const detail = known
    ? error.message
    : `the request could not be parsed: ${error.code ?? 'HTTP error'} (${error.message})`;
  const { status, body } = problemFor(new SluiceError(code, detail));
  const json = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n` +
    `content-type: ${MEDIA.problem}; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(json)}\r\n` +
    `connection: close\r\n\r\n${json}`
  );
}

/** The HTTP/2 server, handed sockets rather than listening, and its sessions. */
class Http2Side {
  readonly #server: http2.Http2Server;
  /** Sockets handed to the HTTP/2 server; their sessions drain by GOAWAY on close. */
  readonly #sockets = new WeakSet<net.Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();

  #interceptor: Http2StreamInterceptor | undefined;

  constructor(handler: (request: http2.Http2ServerRequest, response: http2.Http2ServerResponse) => void) {
    this.#server = http2.createServer(
      { settings: { maxConcurrentStreams: 256, initialWindowSize: LIMITS.http2ServerStreamWindowBytes } },
      handler,
    );
    // The compatibility layer is the server's own 'stream' listener (it makes the request and
    // response objects fastify's handler takes): streams reach it through the interceptor.
    const compat = this.#server.listeners('stream') as ((...args: unknown[]) => void)[];
    if (compat.length === 1) {
      const toCompat = compat[0]!;
      this.#server.removeListener('stream', toCompat);
      this.#server.on(
        'stream',
        (
          stream: http2.ServerHttp2Stream,
          headers: http2.IncomingHttpHeaders,
          flags: number,
          rawHeaders: string[],
        ) => {
          if (this.#interceptor?.(stream, headers, rawHeaders)) return;
          toCompat.call(this.#server, stream, headers, flags, rawHeaders);
        },
      );
    }
    this.#server.on('session', (session) => {
      this.#sessions.add(session);
      session.setLocalWindowSize(LIMITS.http2ServerSessionWindowBytes);
      session.once('close', () => this.#sessions.delete(session));
      // An idle session is closed after a while, unless it carries an open stream (a follow
      // stream may be quiet for a long time).
      let open = 0;
      session.on('stream', (stream) => {
        open++;
        stream.once('close', () => open--);
      });
      session.setTimeout(H2_IDLE_TIMEOUT_MS, () => {
        if (open === 0) session.close();
      });
    });
  }

  intercept(interceptor: Http2StreamInterceptor): void {
    this.#interceptor = interceptor;
  }

  accept(socket: net.Socket): void {
    this.#sockets.add(socket);
    this.#server.emit('connection', socket);
  }

  owns(socket: net.Socket): boolean {
    return this.#sockets.has(socket);
  }

  /** Sends every session a GOAWAY: streams open now may finish, no new ones start. */
  close(): void {
    for (const session of this.#sessions) session.close();
  }
}

/**
 * Reads a new connection's first bytes until they match or leave the HTTP/2 preface, puts them
 * back, and hands the socket over with `isH2`, so the chosen server parses it from its first byte.
 */
function sniffPreface(
  socket: net.Socket,
  firstBytesTimeoutMs: number,
  handOver: (isH2: boolean) => void,
): void {
  let seen = Buffer.alloc(0);
  // A connection that says nothing is dropped instead of being held open forever.
  socket.setTimeout(firstBytesTimeoutMs, () => socket.destroy());
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isH2 && n < H2_PREFACE.length) return;
    socket.off('data', onData);
    socket.setTimeout(0);
    socket.pause();
    socket.unshift(seen);
    handOver(isH2);
    process.nextTick(() => socket.resume());
  };
  socket.on('data', onData);
}

interface GracefulCloseParts {
  h1: Http1Side;
  h2: Http2Side;
  /** Every socket the listener accepted and that is not yet closed. */
  sockets: ReadonlySet<net.Socket>;
  shutdownGraceMs: number;
}

/** A replacement for `server.close` that also drains and then ends the connections it handed out. */
function gracefulClose(server: net.Server, parts: GracefulCloseParts): typeof server.close {
  const { h1, h2, sockets, shutdownGraceMs } = parts;
  const close = server.close.bind(server);
  return ((callback?: (error?: Error) => void) => {
    // Stop accepting; requests in flight may finish within the grace period (HTTP/2 sessions
    // get a GOAWAY, idle HTTP/1.1 sockets close now, busy ones after their answer), then
    // whatever is left is cut, so that a stuck client cannot hold the node open.
    close(callback);
    h1.close();
    h2.close();
    for (const socket of sockets) {
      // HTTP/1.1 sockets with nothing in flight, and sockets that never sent a first byte.
      if (!h2.owns(socket) && h1.isIdle(socket)) socket.destroy();
    }
    const cut = setTimeout(() => {
      h1.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    }, shutdownGraceMs);
    cut.unref();
    server.once('close', () => clearTimeout(cut));
    return server;
  }) as typeof server.close;
}
