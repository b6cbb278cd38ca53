import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { Http2RaftTransport } from '../../src/broker/raft-transport.js';
import { systemClock } from '../../src/common/clock.js';
import { SeededRandom } from '../../src/common/random.js';
import { internalRaftRoutes } from '../../src/http/routes/internal-raft.js';
import { RAFT_MESSAGES_BYTES_MAX, RAFT_MESSAGES_PATH } from '../../src/protocol/internal-api.js';
import type { Message } from '../../src/raft/types.js';

/**
 * The data lane cuts batches by bytes as well as by count, so that every request fits the
 * receiver's body limit; a message that fits no request is dropped and counted, not sent.
 */
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const append = (index: number, bytes: number): Message => ({
  type: 'append',
  from: 1,
  to: 2,
  term: 1,
  prevIndex: index - 1,
  prevTerm: index === 1 ? 0 : 1,
  entries: [{ index, term: 1, type: 'normal', data: Buffer.alloc(bytes, index & 0xff) }],
  commit: 0,
});

describe('batches on the data lane', () => {
  it('splits by bytes, keeps the order, and drops only the message no request could carry', async () => {
    const got: Message[] = [];
    const requests: number[] = [];
    const app = Fastify({ http2: true });
    app.addHook('onRequest', async (request) => {
      if (request.url === RAFT_MESSAGES_PATH) requests.push(Number(request.headers['content-length'] ?? 0));
    });
    await app.register(internalRaftRoutes, {
      clusterSecret: 's',
      nodeId: 2,
      isKnownMember: (id) => id === 1,
      deliver: (m) => got.push(...m),
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    closers.push(() => app.close());
    const transport = new Http2RaftTransport(
      {
        id: 1,
        peers: { 2: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` },
        clusterSecret: 's',
      },
      { clock: systemClock, random: new SeededRandom(1) },
    );
    closers.push(() => transport.close());
    // 24 appends of 300 KiB (about 7 MiB, more than one request may carry) around one too large for any.
    for (let i = 1; i <= 12; i++) transport.send(append(i, 300 * 1024));
    transport.send(append(13, RAFT_MESSAGES_BYTES_MAX));
    for (let i = 14; i <= 25; i++) transport.send(append(i, 300 * 1024));
    for (let i = 0; i < 600 && got.length < 24; i++) await new Promise((r) => setTimeout(r, 25));
    expect(got.map((m) => (m as { prevIndex: number }).prevIndex + 1)).toEqual([
      ...Array.from({ length: 12 }, (_, i) => i + 1),
      ...Array.from({ length: 12 }, (_, i) => i + 14),
    ]);
    expect(transport.stats()[2]).toMatchObject({ dataDropped: 1, controlDropped: 0 });
    expect(requests.length).toBeGreaterThan(1);
  });
});
