import * as http2 from 'node:http2';
import * as net from 'node:net';
import { LIMITS } from './limits.js';

/**
 * An HTTP/2 session to another node: without Nagle's algorithm (a small request written behind an
 * unacknowledged segment would wait for the delayed ACK, 40 ms), and with windows that take a whole
 * fetch answer without a WINDOW_UPDATE round trip per 64 KiB.
 */
export function connectPeer(
  base: string,
  options: http2.ClientSessionOptions = {},
): http2.ClientHttp2Session {
  const url = new URL(base);
  const session = http2.connect(base, {
    ...options,
    settings: { ...options.settings, initialWindowSize: LIMITS.http2ClientStreamWindowBytes },
    createConnection: () => net.connect({ host: url.hostname, port: Number(url.port || 80), noDelay: true }),
  });
  session.once('connect', () => {
    if (!session.destroyed) session.setLocalWindowSize(LIMITS.http2ClientSessionWindowBytes);
  });
  return session;
}
