import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/common/errors.js';
import { buildApp } from '../../src/http/app.js';
import { type DualProtocolServer, dualProtocolServerFactory } from '../../src/http/server.js';
import { type Harness, makeHarness } from './harness.js';

/**
 * What the router and Node's HTTP parsers refuse, before any route runs, reaches the client as a
 * problem+json over a real socket, and refused bytes append nothing. Also: the HTTP/1.1 side
 * forgets a socket whose client left before its answer, and what HTTP/2 does with streams over
 * the advertised limit.
 */
let h: Harness;
let app: ReturnType<typeof buildApp>;
let port: number;
beforeAll(async () => {
  h = await makeHarness();
  await h.broker.admin.createTopic({ name: 'wire', partitions: 1 });
  app = buildApp({ serverFactory: dualProtocolServerFactory({}) }, { broker: h.broker });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as net.AddressInfo).port;
});
afterAll(async () => {
  await app.close();
  await h.close();
});

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Writes raw bytes and returns everything the server sends until it closes the connection. */
async function exchange(bytes: string | Buffer): Promise<{ head: string; body: string }> {
  const socket = await connect();
  const received: Buffer[] = [];
  const closed = new Promise<void>((resolve) => {
    socket.on('data', (chunk) => received.push(chunk));
    socket.on('error', () => {});
    socket.once('close', () => resolve());
  });
  socket.write(bytes);
  await closed;
  const text = Buffer.concat(received).toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  return { head: text.slice(0, split), body: text.slice(split + 4) };
}

function expectProblem(
  answer: { head: string; body: string },
  status: number,
  code: keyof typeof ERROR_CODES,
) {
  expect(answer.head, answer.head + answer.body).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
  expect(answer.head.toLowerCase()).toContain('content-type: application/problem+json');
  const problem = JSON.parse(answer.body);
  expect(problem).toMatchObject({ status, code, retriable: ERROR_CODES[code].retriable });
  expect(typeof problem.detail).toBe('string');
  return problem;
}

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; !condition(); i++) {
    if (i > 300) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const logEnd = async () => (await h.broker.admin.describeTopic('wire')).partitions[0]!.logEndOffset;
const produceHead =
  'POST /v1/topics/wire/records?acks=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n';
const body = '{"records":[{"value":"x"}]}';

describe('router refusals are problems', () => {
  it('answers a path parameter longer than the router takes with INVALID_TOPIC_EXCEPTION', async () => {
    const answer = await exchange(
      `GET /v1/topics/${'n'.repeat(2000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    expect(expectProblem(answer, 400, 'INVALID_TOPIC_EXCEPTION').field).toBe('params/topic');
  });

  it('answers a path that is not valid percent-encoding with INVALID_REQUEST', async () => {
    const answer = await exchange('GET /v1/topics/%FF HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expectProblem(answer, 400, 'INVALID_REQUEST');
  });
});

describe("Node's HTTP/1.1 parser refusals are problems, and close the connection", () => {
  it('answers 64 KiB of headers with 431 REQUEST_HEADERS_TOO_LARGE', async () => {
    const answer = await exchange(
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
    );
    expectProblem(answer, 431, 'REQUEST_HEADERS_TOO_LARGE');
    expect(answer.head.toLowerCase()).toContain('connection: close');
  });

  it('answers two different Content-Length headers with 400, appending nothing', async () => {
    const before = await logEnd();
    const answer = await exchange(
      `${produceHead}Content-Length: ${body.length}\r\nContent-Length: ${body.length + 1}\r\n\r\n${body}`,
    );
    expectProblem(answer, 400, 'INVALID_REQUEST');
    expect(await logEnd()).toBe(before);
  });

  it('answers Content-Length with Transfer-Encoding with 400, appending nothing', async () => {
    const before = await logEnd();
    const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const answer = await exchange(
      `${produceHead}Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`,
    );
    expectProblem(answer, 400, 'INVALID_REQUEST');
    expect(await logEnd()).toBe(before);
  });

  it('answers a malformed request after a served one on the same connection', async () => {
    const socket = await connect();
    let data = '';
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const served = new Promise<void>((resolve) =>
      socket.on('data', (chunk) => {
        data += chunk;
        if (data.includes('"status":"ok"')) resolve();
      }),
    );
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await served;
    const first = data.length;
    socket.write('NOT HTTP AT ALL\r\n\r\n');
    await closed;
    const rest = data.slice(first);
    const split = rest.indexOf('\r\n\r\n');
    expectProblem({ head: rest.slice(0, split), body: rest.slice(split + 4) }, 400, 'INVALID_REQUEST');
  });

  it('answers two Content-Type headers with 400, appending nothing (Node keeps only the first)', async () => {
    const before = await logEnd();
    const answer = await exchange(
      `${produceHead}Content-Type: application/vnd.msgpack\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expectProblem(answer, 400, 'INVALID_REQUEST');
    expect(await logEnd()).toBe(before);
  });
});

describe('HTTP/1.1 requests in flight', () => {
  it('forgets a socket whose client left before its answer', async () => {
    const server = app.server as unknown as DualProtocolServer;
    const socket = await connect();
    socket.on('error', () => {});
    socket.write(
      'GET /v1/topics/wire/partitions/0/records?offset=latest&maxWaitMs=30000 HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    await waitFor(() => h.broker.fetch.waiting === 1);
    expect(server.http1SocketsTracked).toBe(1);
    socket.destroy();
    await waitFor(() => h.broker.fetch.waiting === 0);
    await waitFor(() => server.http1SocketsTracked === 0);
  });

  it('holds no entry for a keep-alive socket between requests', async () => {
    const server = app.server as unknown as DualProtocolServer;
    const socket = await connect();
    const answered = new Promise<void>((resolve) => {
      let data = '';
      socket.on('data', (c) => {
        data += c;
        if (data.includes('"status":"ok"')) resolve();
      });
    });
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await answered;
    await waitFor(() => server.http1SocketsTracked === 0);
    socket.destroy();
  });
});

/** A minimal HTTP/2 client that ignores the server's stream limit, to see what the server does. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/** HPACK: :method GET, :scheme http (static table), :path and :authority as literals (under 127). */
function getHeaders(path: string): Buffer {
  const literal = (index: number, value: string) =>
    Buffer.concat([Buffer.from([index, value.length]), Buffer.from(value, 'latin1')]);
  return Buffer.concat([Buffer.from([0x82, 0x86]), literal(0x04, path), literal(0x01, 'localhost')]);
}

async function openStreams(count: number, acknowledgeSettingsFirst: boolean) {
  const socket = await connect();
  const seen = { answered: 0, resets: new Map<number, number>(), goaway: undefined as number | undefined };
  const block = getHeaders('/v1/topics/wire/partitions/0/records?offset=latest&maxWaitMs=300');
  const sendAll = () => {
    const frames: Buffer[] = [];
    for (let i = 0; i < count; i++) frames.push(frame(0x1, 0x5, 1 + 2 * i, block));
    socket.write(Buffer.concat(frames));
  };
  let pending = Buffer.alloc(0);
  const done = new Promise<void>((resolve) => {
    socket.on('error', () => {});
    socket.once('close', () => resolve());
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 9) {
        const length = pending.readUIntBE(0, 3);
        if (pending.length < 9 + length) break;
        const type = pending[3]!;
        const flags = pending[4]!;
        const payload = pending.subarray(9, 9 + length);
        if (type === 0x4 && (flags & 0x1) === 0) {
          socket.write(frame(0x4, 0x1, 0, Buffer.alloc(0)));
          if (acknowledgeSettingsFirst) sendAll();
        } else if (type === 0x1) seen.answered++;
        else if (type === 0x3) {
          const code = payload.readUInt32BE(0);
          seen.resets.set(code, (seen.resets.get(code) ?? 0) + 1);
        } else if (type === 0x7) seen.goaway = payload.readUInt32BE(4);
        pending = pending.subarray(9 + length);
      }
      if (seen.answered + [...seen.resets.values()].reduce((a, b) => a + b, 0) >= count) socket.end();
    });
  });
  socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  socket.write(frame(0x4, 0, 0, Buffer.alloc(0)));
  if (!acknowledgeSettingsFirst) sendAll();
  await done;
  return seen;
}

describe('HTTP/2 streams over the limit of 256', () => {
  const { NGHTTP2_REFUSED_STREAM, NGHTTP2_INTERNAL_ERROR } = http2.constants;

  it('serves a conforming client that wants more: it waits for streams to free up', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const statuses = await Promise.all(
        Array.from(
          { length: 300 },
          () =>
            new Promise<number>((resolve, reject) => {
              const stream = session.request({
                ':path': '/v1/topics/wire/partitions/0/records?offset=latest&maxWaitMs=200',
              });
              stream.on('response', (headers) => resolve(Number(headers[':status'])));
              stream.on('error', reject);
              stream.resume();
            }),
        ),
      );
      expect(statuses.every((s) => s === 200)).toBe(true);
    } finally {
      session.close();
    }
  });

  it('refuses the streams over the limit with REFUSED_STREAM before the client acknowledges it', async () => {
    const seen = await openStreams(300, false);
    expect(seen.answered).toBe(256);
    expect(seen.resets.get(NGHTTP2_REFUSED_STREAM)).toBe(44);
  });

  // Node's HTTP/2 library (nghttp2) treats a stream over the acknowledged limit as a connection
  // error, and Node then destroys the session: GOAWAY and every open stream reset with
  // INTERNAL_ERROR. No option of Node's http2 module changes this (docs/api.md).
  it('ends the session of a client that exceeds the limit it acknowledged', async () => {
    const seen = await openStreams(257, true);
    expect(seen.goaway).toBe(NGHTTP2_INTERNAL_ERROR);
    expect(seen.answered).toBe(0);
  });
});
