import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { Http2RaftTransport, SnapshotAssembler } from '../../src/broker/raft-transport.js';
import { ManualClock, systemClock } from '../../src/common/clock.js';
import { crc32c } from '../../src/common/crc32c.js';
import { SeededRandom } from '../../src/common/random.js';
import { internalRaftRoutes } from '../../src/http/routes/internal-raft.js';
import {
  RAFT_MESSAGES_PATH,
  RAFT_SNAPSHOT_CHUNKS_PATH,
  SNAPSHOT_CHUNK_BYTES,
  type SnapshotChunk,
  type SnapshotChunkOutcome,
} from '../../src/protocol/internal-api.js';
import { unpackr } from '../../src/protocol/msgpack.js';
import type { Message } from '../../src/raft/types.js';

/**
 * Large snapshots travel as ordered chunks and reach Raft as one intact message; control messages
 * never wait behind an append or a snapshot in flight; a stuck control request is cut off well
 * under the election timeout.
 */

type SnapshotMessage = Extract<Message, { type: 'snapshot' }>;
const membership = { voters: [1, 2, 3], learners: [] };

function snapshotMessage(bytes: number, seed = 1): SnapshotMessage {
  // A fixed pattern that differs from byte to byte and from seed to seed.
  const data = Buffer.alloc(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
  }
  return { type: 'snapshot', from: 1, to: 2, term: 3, snapshot: { index: 500, term: 2, membership, data } };
}

function chunksOf(m: SnapshotMessage, chunkBytes = SNAPSHOT_CHUNK_BYTES): SnapshotChunk[] {
  const data = m.snapshot.data;
  const crc = crc32c(data);
  const chunks: SnapshotChunk[] = [];
  for (let offset = 0; offset < data.byteLength; offset += chunkBytes)
    chunks.push({
      from: m.from,
      to: m.to,
      term: m.term,
      snapshot: { index: m.snapshot.index, term: m.snapshot.term, membership },
      totalBytes: data.byteLength,
      crc32c: crc,
      offset,
      data: data.subarray(offset, offset + chunkBytes),
    });
  return chunks;
}

describe('SnapshotAssembler', () => {
  const setup = () => {
    const clock = new ManualClock();
    const delivered: SnapshotMessage[] = [];
    const assembler = new SnapshotAssembler(
      { timeoutMs: 1000 },
      { clock, deliver: (m) => delivered.push(m) },
    );
    return { clock, delivered, assembler };
  };

  it('delivers one message when the last chunk arrives, equal to what was sent', () => {
    const { delivered, assembler } = setup();
    const m = snapshotMessage(1000);
    const outcomes = chunksOf(m, 300).map((c) => assembler.receive(c));
    expect(outcomes).toEqual(['accepted', 'accepted', 'accepted', 'complete']);
    expect(delivered).toEqual([m]);
    expect(assembler.size).toBe(0);
  });

  it('ignores a duplicated chunk and refuses (and drops the assembly) past a lost one', () => {
    const { delivered, assembler } = setup();
    const m = snapshotMessage(1000);
    const [c0, c1, c2, c3] = chunksOf(m, 300);
    expect(assembler.receive(c0!)).toBe('accepted');
    expect(assembler.receive(c1!)).toBe('accepted');
    expect(assembler.receive(c1!)).toBe('duplicate');
    expect(assembler.receive(c0!)).toBe('duplicate');
    expect(assembler.receive(c3!)).toBe('outOfOrder');
    expect(assembler.size).toBe(0);
    // With the assembly gone, nothing but a first chunk starts again.
    expect(assembler.receive(c2!)).toBe('outOfOrder');
    expect(delivered).toEqual([]);
    for (const c of [c0, c1, c2]) expect(assembler.receive(c!)).toBe('accepted');
    expect(assembler.receive(c3!)).toBe('complete');
    expect(delivered).toHaveLength(1);
  });

  it('drops a whole that does not match its CRC-32C', () => {
    const { delivered, assembler } = setup();
    const chunks = chunksOf(snapshotMessage(600), 300);
    const bad = Buffer.from(chunks[1]!.data);
    bad[7] = bad[7]! ^ 1;
    expect(assembler.receive(chunks[0]!)).toBe('accepted');
    expect(assembler.receive({ ...chunks[1]!, data: bad })).toBe('corrupt');
    expect(delivered).toEqual([]);
    expect(assembler.size).toBe(0);
  });

  it('drops a half-received snapshot after the timeout; a new transfer replaces the old one', () => {
    const { clock, delivered, assembler } = setup();
    const a = chunksOf(snapshotMessage(600, 1), 300);
    const b = chunksOf(snapshotMessage(600, 2), 300);
    expect(assembler.receive(a[0]!)).toBe('accepted');
    clock.advance(999);
    expect(assembler.receive(b[0]!)).toBe('accepted');
    expect(assembler.receive(a[1]!)).toBe('outOfOrder');
    clock.advance(999);
    expect(assembler.size).toBe(1);
    clock.advance(1);
    expect(assembler.size).toBe(0);
    expect(assembler.receive(b[1]!)).toBe('outOfOrder');
    expect(delivered).toEqual([]);
  });

  it('holds one assembly per sender', () => {
    const { delivered, assembler } = setup();
    const from1 = chunksOf(snapshotMessage(600, 1), 300);
    const from3 = chunksOf({ ...snapshotMessage(600, 3), from: 3 }, 300);
    assembler.receive(from1[0]!);
    assembler.receive(from3[0]!);
    expect(assembler.size).toBe(2);
    expect(assembler.receive(from3[1]!)).toBe('complete');
    expect(assembler.receive(from1[1]!)).toBe('complete');
    expect(delivered.map((m) => m.from)).toEqual([3, 1]);
  });
});

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A receiving node 2 on loopback; `hooks` may wrap its chunk receiver and stall requests. */
async function receiver(
  hooks: {
    wrapChunk?: (
      inner: (c: SnapshotChunk) => SnapshotChunkOutcome,
    ) => (c: SnapshotChunk) => SnapshotChunkOutcome;
    preHandler?: (path: string, body: Buffer) => Promise<void>;
  } = {},
) {
  const got: Message[] = [];
  const transport = new Http2RaftTransport(
    { id: 2, peers: { 1: 'http://127.0.0.1:1' }, clusterSecret: 's' },
    { clock: systemClock, random: new SeededRandom(2) },
  );
  transport.onMessage((m) => got.push(m));
  const app = Fastify({ http2: true });
  const options = transport.receiver();
  if (hooks.wrapChunk) options.receiveSnapshotChunk = hooks.wrapChunk(options.receiveSnapshotChunk);
  await app.register(async (scope) => {
    if (hooks.preHandler) {
      const pre = hooks.preHandler;
      scope.addHook('preHandler', async (request) => pre(request.url, request.body as Buffer));
    }
    await scope.register(internalRaftRoutes, { clusterSecret: 's', ...options });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  closers.push(async () => {
    await transport.close();
    await app.close();
  });
  return { got, url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` };
}

function sender(
  url: string,
  options: { electionTimeoutMs?: number; requestTimeoutMs?: number; chunkTimeoutMs?: number } = {},
) {
  const transport = new Http2RaftTransport(
    { id: 1, peers: { 2: url }, clusterSecret: 's', ...options },
    { clock: systemClock, random: new SeededRandom(1) },
  );
  closers.push(() => transport.close());
  return transport;
}

async function waitFor(condition: () => boolean, tries = 600): Promise<boolean> {
  for (let i = 0; i < tries && !condition(); i++) await new Promise((r) => setTimeout(r, 25));
  return condition();
}

const heartbeat = (context: number): Message => ({
  type: 'heartbeat',
  from: 1,
  to: 2,
  term: 3,
  commit: 0,
  context,
});

describe('chunked snapshots between two transports over loopback', () => {
  it('a 20 MiB snapshot arrives whole, once', async () => {
    const node2 = await receiver();
    const node1 = sender(node2.url);
    const m = snapshotMessage(20 * 1024 * 1024);
    node1.send(m);
    expect(await waitFor(() => node2.got.length > 0)).toBe(true);
    expect(node2.got).toHaveLength(1);
    const got = node2.got[0] as SnapshotMessage;
    expect({ ...got, snapshot: { ...got.snapshot, data: null } }).toEqual({
      ...m,
      snapshot: { ...m.snapshot, data: null },
    });
    expect(Buffer.compare(Buffer.from(got.snapshot.data), m.snapshot.data as Buffer)).toBe(0);
    expect(node1.stats()[2]).toEqual({ controlDropped: 0, dataDropped: 0, snapshotsAbandoned: 0 });
  });

  it('survives a chunk lost on the way and a chunk whose answer is lost (sent again, a duplicate)', async () => {
    const outcomes: SnapshotChunkOutcome[] = [];
    let calls = 0;
    const node2 = await receiver({
      wrapChunk: (inner) => (chunk) => {
        calls++;
        if (calls === 3) throw new Error('lost before it was taken');
        const outcome = inner(chunk);
        outcomes.push(outcome);
        if (calls === 6) throw new Error('taken, but the answer is lost');
        return outcome;
      },
    });
    const node1 = sender(node2.url);
    const m = snapshotMessage(4 * 1024 * 1024);
    node1.send(m);
    expect(await waitFor(() => node2.got.length > 0)).toBe(true);
    expect(node2.got).toHaveLength(1);
    expect(
      Buffer.compare(Buffer.from((node2.got[0] as SnapshotMessage).snapshot.data), m.snapshot.data as Buffer),
    ).toBe(0);
    expect(outcomes.filter((o) => o === 'duplicate')).toHaveLength(1);
    expect(outcomes.at(-1)).toBe('complete');
  });

  it('sends the same snapshot once when Raft asks again while it is under way', async () => {
    let firsts = 0;
    const node2 = await receiver({
      wrapChunk: (inner) => (chunk) => {
        if (chunk.offset === 0) firsts++;
        return inner(chunk);
      },
    });
    const node1 = sender(node2.url);
    const m = snapshotMessage(4 * 1024 * 1024);
    node1.send(m);
    node1.send(m);
    expect(await waitFor(() => node2.got.length > 0)).toBe(true);
    expect(firsts).toBe(1);
  });
});

describe('control messages have a lane of their own', () => {
  /** A stall released when a heartbeat has been delivered (or after 10 s, so that nothing hangs). */
  const stallUntil = (seen: () => boolean) => waitFor(seen, 400).then(() => undefined);

  it('a heartbeat is delivered while an append request and a snapshot chunk are stuck in flight', async () => {
    let node2: Awaited<ReturnType<typeof receiver>>;
    const heartbeatSeen = () => node2.got.some((m) => m.type === 'heartbeat');
    let stalled = 0;
    node2 = await receiver({
      preHandler: async (path, body) => {
        const bulk =
          path === RAFT_SNAPSHOT_CHUNKS_PATH ||
          (path === RAFT_MESSAGES_PATH &&
            (unpackr.unpack(body) as Message[]).some((m) => m.type === 'append'));
        if (bulk) {
          stalled++;
          await stallUntil(heartbeatSeen);
        }
      },
    });
    // Bulk requests are never cut off here: only a lane of its own lets the heartbeat pass.
    const node1 = sender(node2.url, { requestTimeoutMs: 60_000, chunkTimeoutMs: 60_000 });
    node1.send({
      type: 'append',
      from: 1,
      to: 2,
      term: 3,
      prevIndex: 0,
      prevTerm: 0,
      entries: [],
      commit: 0,
    });
    node1.send(snapshotMessage(2 * 1024 * 1024));
    expect(await waitFor(() => stalled === 2)).toBe(true);
    node1.send(heartbeat(1));
    expect(await waitFor(() => node2.got.length >= 3)).toBe(true);
    expect(node2.got.map((m) => m.type)).toEqual(['heartbeat', expect.any(String), expect.any(String)]);
    expect(new Set(node2.got.map((m) => m.type))).toEqual(new Set(['heartbeat', 'append', 'snapshot']));
  });

  it('cuts off a stuck control request at half the election timeout and carries on', async () => {
    let first = true;
    let release = () => {};
    const node2 = await receiver({
      preHandler: async (path) => {
        if (path !== RAFT_MESSAGES_PATH || !first) return;
        first = false;
        await new Promise<void>((r) => {
          release = r;
        });
      },
    });
    const node1 = sender(node2.url, { electionTimeoutMs: 200 });
    expect(node1.controlTimeoutMs).toBe(100);
    expect(sender(node2.url).controlTimeoutMs).toBe(500);
    // Closed in reverse order: the stuck handler is let go first.
    closers.push(async () => release());
    node1.send(heartbeat(1));
    let context = 1;
    const delivered = await waitFor(() => {
      if (node2.got.length === 0) node1.send(heartbeat(++context));
      return node2.got.length > 0;
    });
    expect(delivered).toBe(true);
    expect(node2.got[0]).toMatchObject({ type: 'heartbeat' });
    expect((node2.got[0] as { context: number }).context).toBeGreaterThan(1);
  });
});
