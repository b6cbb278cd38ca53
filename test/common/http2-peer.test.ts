import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectPeer } from '../../src/common/http2-peer.js';
import { LIMITS } from '../../src/common/limits.js';

/** Sessions between nodes take a whole fetch answer without waiting for WINDOW_UPDATE round trips. */
describe('connectPeer', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const close of closers.splice(0)) close();
  });

  it('offers the other node a stream window past a whole fetch answer and a connection window of 32 MiB', async () => {
    const server = http2.createServer();
    const sessions: http2.ServerHttp2Session[] = [];
    server.on('session', (s) => sessions.push(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => server.close());
    const { port } = server.address() as AddressInfo;
    const session = connectPeer(`http://127.0.0.1:${port}`);
    closers.push(() => session.destroy());
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    const deadline = Date.now() + 5_000;
    while (
      (sessions[0]?.remoteSettings.initialWindowSize !== LIMITS.http2ClientStreamWindowBytes ||
        sessions[0]?.state.remoteWindowSize !== LIMITS.http2ClientSessionWindowBytes) &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 10));
    // What the server may send before it must wait: the client's settings and its WINDOW_UPDATE.
    expect(sessions[0]!.remoteSettings.initialWindowSize).toBe(LIMITS.http2ClientStreamWindowBytes);
    expect(sessions[0]!.state.remoteWindowSize).toBe(LIMITS.http2ClientSessionWindowBytes);
    expect(LIMITS.http2ClientStreamWindowBytes).toBeGreaterThan(LIMITS.fetchBytesMax);
  });

  it('answers a request like http2.connect does', async () => {
    const server = http2.createServer((_req, res) => res.end('pong'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => server.close());
    const { port } = server.address() as AddressInfo;
    const session = connectPeer(`http://127.0.0.1:${port}`);
    closers.push(() => session.destroy());
    const body = await new Promise<string>((resolve) => {
      const stream = session.request({ ':path': '/' });
      let text = '';
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => {
        text += c;
      });
      stream.on('end', () => resolve(text));
      stream.end();
    });
    expect(body).toBe('pong');
  });
});
