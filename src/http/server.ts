import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { FastifyServerFactory } from 'fastify';

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
}

export function dualProtocolServerFactory(options: DualProtocolOptions = {}): FastifyServerFactory {
  const shutdownGraceMs = options.shutdownGraceMs ?? 5_000;
  const firstBytesTimeoutMs = options.firstBytesTimeoutMs ?? 10_000;
  const headersTimeoutMs = options.headersTimeoutMs ?? 60_000;
  return (handler) => {
    const h1 = http.createServer(
      {
        headersTimeout: headersTimeoutMs,
        // How often Node looks for clients over headersTimeout or requestTimeout.
        connectionsCheckingInterval: Math.max(10, Math.min(30_000, Math.floor(headersTimeoutMs / 4))),
      },
      handler as http.RequestListener,
    );
    h1.keepAliveTimeout = 65_000;
    // An http.Server that is handed sockets never listens itself, and Node starts its checks of
    // headersTimeout and requestTimeout (slow or stalled clients) on 'listening': start them here.
    h1.emit('listening');
    // Requests in flight per HTTP/1.1 socket: a shutdown closes the idle ones at once and each
    // busy one as soon as its last answer is sent.
    const inFlight = new Map<net.Socket, number>();
    let closing = false;
    h1.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => {
      const socket = request.socket;
      inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
      response.once('close', () => {
        const left = (inFlight.get(socket) ?? 1) - 1;
        inFlight.set(socket, left);
        if (closing && left === 0) socket.destroySoon();
      });
    });
    const h2 = http2.createServer(
      { settings: { maxConcurrentStreams: 256 } },
      handler as unknown as (request: http2.Http2ServerRequest, response: http2.Http2ServerResponse) => void,
    );
    const sockets = new Set<net.Socket>();
    /** Sockets handed to the HTTP/2 server; their sessions drain by GOAWAY on close. */
    const h2Sockets = new WeakSet<net.Socket>();
    const sessions = new Set<http2.ServerHttp2Session>();
    h2.on('session', (session) => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
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
    // Nagle's algorithm off, as http.Server does for its own sockets: otherwise the last part of
    // a response waits for the client's delayed ACK of the part before it.
    const server = net.createServer({ noDelay: true }, (socket) => {
      sockets.add(socket);
      socket.once('close', () => {
        sockets.delete(socket);
        inFlight.delete(socket);
      });
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
        if (isH2) h2Sockets.add(socket);
        (isH2 ? h2 : h1).emit('connection', socket);
        process.nextTick(() => socket.resume());
      };
      socket.on('data', onData);
      socket.on('error', () => socket.destroy());
    });
    const close = server.close.bind(server);
    server.close = ((callback?: (error?: Error) => void) => {
      // Stop accepting; requests in flight may finish within the grace period (HTTP/2 sessions
      // get a GOAWAY, idle HTTP/1.1 sockets close now, busy ones after their answer), then
      // whatever is left is cut, so that a stuck client cannot hold the node open.
      close(callback);
      closing = true;
      // Stops the HTTP/1.1 server's connection checks; it never listened, so the error it reports
      // for that is expected.
      h1.close(() => {});
      for (const session of sessions) session.close();
      for (const socket of sockets) {
        // HTTP/1.1 sockets with nothing in flight, and sockets that never sent a first byte.
        if (!h2Sockets.has(socket) && !inFlight.get(socket)) socket.destroy();
      }
      const cut = setTimeout(() => {
        h1.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      }, shutdownGraceMs);
      cut.unref();
      server.once('close', () => clearTimeout(cut));
      return server;
    }) as typeof server.close;
    return server as unknown as http.Server;
  };
}
