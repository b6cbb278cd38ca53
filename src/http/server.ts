import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { FastifyServerFactory } from 'fastify';

/** The first bytes of every HTTP/2 connection with prior knowledge. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * One port for HTTP/1.1 and cleartext HTTP/2 (prior knowledge): each new connection's first bytes
 * are peeked; the HTTP/2 preface goes to an HTTP/2 server, anything else to an HTTP/1.1 server.
 * Both hand requests to the same fastify handler. `close()` stops accepting, lets requests in
 * flight finish for up to `shutdownGraceMs`, then ends every connection still open, so that
 * keep-alive and HTTP/2 sessions do not hold the port.
 */
export function dualProtocolServerFactory(options: { shutdownGraceMs?: number } = {}): FastifyServerFactory {
  const shutdownGraceMs = options.shutdownGraceMs ?? 5_000;
  return (handler) => {
    const h1 = http.createServer(handler as http.RequestListener);
    h1.keepAliveTimeout = 65_000;
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
    });
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => {
        sockets.delete(socket);
        inFlight.delete(socket);
      });
      let seen = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        seen = Buffer.concat([seen, chunk]);
        const n = Math.min(seen.length, H2_PREFACE.length);
        const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
        if (isH2 && n < H2_PREFACE.length) return;
        socket.off('data', onData);
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
