import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIMITS } from '../../src/common/limits.js';
import { buildApp } from '../../src/http/app.js';
import { dualProtocolServerFactory, interceptHttp2Streams } from '../../src/http/server.js';
import { type Harness, makeHarness } from './harness.js';

/**
 * The one-port server's guards against clients that hold connections: silence before the first
 * bytes, stalled HTTP/1.1 headers, and idle keep-alive sockets at shutdown.
 */
let h: Harness;
beforeAll(async () => {
  h = await makeHarness();
});
afterAll(() => h.close());

async function listening(options: Parameters<typeof dualProtocolServerFactory>[0]) {
  const app = buildApp({ serverFactory: dualProtocolServerFactory(options) }, { broker: h.broker });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as net.AddressInfo).port;
  return { app, port };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Everything the server sends until it closes the connection. */
function untilClosed(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    socket.on('data', (c) => {
      data += c;
    });
    socket.on('error', () => {});
    socket.once('close', () => resolve(data));
  });
}

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; !condition(); i++) {
    if (i > 500) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('connection guards', () => {
  it("turns Nagle's algorithm off on the sockets it accepts, as http.Server does", async () => {
    const { app } = await listening({});
    // net.Server applies noDelay to every socket it accepts; without it a response's last part
    // waits for the client's delayed ACK of the part before.
    expect((app.server as unknown as net.Server & { noDelay: boolean }).noDelay).toBe(true);
    await app.close();
  });

  it('offers HTTP/2 clients a stream window of 1 MiB and a connection window of 8 MiB', async () => {
    // With the protocol's 64 KiB windows, a produce body of 100 KiB waits a round trip for a
    // WINDOW_UPDATE halfway through.
    const { app, port } = await listening({});
    const session = http2.connect(`http://127.0.0.1:${port}`);
    await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
    expect(session.remoteSettings.initialWindowSize).toBe(LIMITS.http2ServerStreamWindowBytes);
    // The connection window grows by a WINDOW_UPDATE on stream 0 after the settings.
    await waitFor(() => session.state.remoteWindowSize === LIMITS.http2ServerSessionWindowBytes);
    session.destroy();
    await app.close();
  });

  it('drops a connection that never sends a byte, and one that stalls in its headers', async () => {
    const { app, port } = await listening({ firstBytesTimeoutMs: 150, headersTimeoutMs: 300 });
    try {
      const silent = await connect(port);
      expect(await untilClosed(silent)).toBe('');

      const slow = await connect(port);
      const closed = untilClosed(slow);
      slow.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n');
      expect(await closed).toMatch(/^HTTP\/1\.1 408|^$/);

      // Clients that behave are still served on both protocols.
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(ok.status).toBe(200);
      const session = http2.connect(`http://127.0.0.1:${port}`);
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ':path': '/healthz' });
        stream.on('response', (headers) => resolve(Number(headers[':status'])));
        stream.on('error', reject);
        stream.resume();
      });
      expect(status).toBe(200);
      session.close();
    } finally {
      await app.close();
    }
  });

  it('releases a long-poll when its HTTP/1.1 client goes away', async () => {
    await h.broker.admin.createTopic({ name: 'abandoned', partitions: 1 });
    const { app, port } = await listening({});
    try {
      const socket = await connect(port);
      socket.on('error', () => {});
      socket.write(
        'GET /v1/topics/abandoned/partitions/0/records?offset=0&maxWaitMs=30000 HTTP/1.1\r\nHost: localhost\r\n\r\n',
      );
      await waitFor(() => h.broker.fetch.waiting === 1);
      socket.destroy();
      await waitFor(() => h.broker.fetch.waiting === 0);
    } finally {
      await app.close();
    }
  });

  it('refuses a follow stream with LIMIT_EXCEEDED before streaming when the waiters are full', async () => {
    const small = await makeHarness({}, { fetchWaitersMax: 1 });
    const app = buildApp({ serverFactory: dualProtocolServerFactory({}) }, { broker: small.broker });
    try {
      await small.broker.admin.createTopic({ name: 'full', partitions: 1 });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const base = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`;
      const controller = new AbortController();
      const first = fetch(`${base}/v1/topics/full/partitions/0/records?offset=0&follow=true`, {
        signal: controller.signal,
      }).catch(() => undefined);
      await waitFor(() => small.broker.fetch.waiting === 1);
      const second = await fetch(`${base}/v1/topics/full/partitions/0/records?offset=0&follow=true`);
      expect(second.status).toBe(429);
      expect(second.headers.get('content-type')).toContain('application/problem+json');
      expect(await second.json()).toMatchObject({ code: 'LIMIT_EXCEEDED', retriable: true });
      controller.abort();
      await first;
      await waitFor(() => small.broker.fetch.waiting === 0);
    } finally {
      await app.close();
      await small.close();
    }
  });

  it('closes idle keep-alive sockets at once on close', async () => {
    const { app, port } = await listening({ shutdownGraceMs: 60_000 });
    const socket = await connect(port);
    const response = new Promise<string>((resolve) => {
      let data = '';
      socket.on('data', (c) => {
        data += c;
        if (data.includes('"status":"ok"')) resolve(data);
      });
    });
    socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n');
    expect(await response).toMatch(/^HTTP\/1\.1 200/);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // With a grace period of a minute, close() only returns in time if the idle socket is cut.
    await app.close();
    await closed;
  });
});

describe('the HTTP/2 stream interceptor', () => {
  it('answers the streams it takes without the handler, and hands every other stream to it', async () => {
    const seen: string[] = [];
    const server = dualProtocolServerFactory({ shutdownGraceMs: 100 })((request, response) => {
      seen.push(`handler ${request.url}`);
      response.end('from the handler');
    }, {});
    expect(
      interceptHttp2Streams(server, (stream, headers) => {
        if (headers[':path'] !== '/taken') return false;
        seen.push('interceptor /taken');
        stream.respond({ ':status': 201 });
        stream.end('from the interceptor');
        return true;
      }),
    ).toBe(true);
    expect(interceptHttp2Streams({}, () => false)).toBe(false);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    const get = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const stream = session.request({ ':path': path });
        let status = 0;
        let text = '';
        stream.on('response', (h) => {
          status = Number(h[':status']);
        });
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => {
          text += chunk;
        });
        stream.on('end', () => resolve(`${status} ${text}`));
        stream.on('error', reject);
      });
    expect(await get('/taken')).toBe('201 from the interceptor');
    expect(await get('/other')).toBe('200 from the handler');
    session.close();
    await new Promise((resolve) => server.close(resolve));
    expect(seen).toEqual(['interceptor /taken', 'handler /other']);
  });
});
