import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { pack } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { Http2RaftTransport } from '../../src/broker/raft-transport.js';
import { systemClock } from '../../src/common/clock.js';
import { SeededRandom } from '../../src/common/random.js';
import { internalRaftRoutes } from '../../src/http/routes/internal-raft.js';
import { RAFT_MESSAGES_PATH } from '../../src/protocol/internal-api.js';
import { RaftDriver, type StateMachine } from '../../src/raft/driver.js';
import { LevelRaftStorage } from '../../src/raft/storage.js';
import type { Entry, Message } from '../../src/raft/types.js';

/** Three Raft nodes over the HTTP/2 transport on loopback, with LevelDB storage and real time. */
const apps: FastifyInstance[] = [];
const drivers: RaftDriver[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const d of drivers) await d.close();
  for (const a of apps) await a.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

class Log implements StateMachine {
  items: string[] = [];
  apply(e: Entry) {
    this.items.push(Buffer.from(e.data).toString());
  }
  snapshot() {
    return Buffer.from(JSON.stringify(this.items));
  }
  restore(data: Uint8Array) {
    this.items = JSON.parse(Buffer.from(data).toString());
  }
}

describe('Raft over HTTP/2', () => {
  it('elects a leader and commits on every node; a peer without the cluster secret is refused', async () => {
    const secret = 'test-secret-123';
    const servers = [1, 2, 3].map(() => Fastify({ http2: true }));
    for (const s of servers) await s.listen({ host: '127.0.0.1', port: 0 });
    const urls: Record<number, string> = {};
    servers.forEach((s, i) => {
      urls[i + 1] = `http://127.0.0.1:${(s.server.address() as { port: number }).port}`;
    });
    for (const s of servers) await s.close();
    const machines = [new Log(), new Log(), new Log()];
    for (const id of [1, 2, 3]) {
      const dir = await mkdtemp(join(tmpdir(), 'sluice-raft-h2-'));
      dirs.push(dir);
      const transport = new Http2RaftTransport(
        { id, peers: urls, clusterSecret: secret, electionTimeoutMs: 200 },
        { clock: systemClock, random: new SeededRandom(id) },
      );
      const app = Fastify({ http2: true });
      const box: { driver?: RaftDriver } = {};
      await app.register(internalRaftRoutes, {
        clusterSecret: secret,
        ...transport.receiver(),
        driver: { status: () => box.driver!.status() },
      });
      await app.listen({ host: '127.0.0.1', port: Number(new URL(urls[id]!).port) });
      apps.push(app as unknown as FastifyInstance);
      const driver = new RaftDriver(
        {
          id,
          membership: { voters: [1, 2, 3], learners: [] },
          tickMs: 20,
          electionTicks: 10,
          heartbeatTicks: 2,
        },
        {
          storage: await LevelRaftStorage.open(dir),
          transport,
          clock: systemClock,
          random: new SeededRandom(id),
          stateMachine: machines[id - 1]!,
        },
      );
      box.driver = driver;
      drivers.push(driver);
      await driver.start();
    }
    let leader: RaftDriver | undefined;
    for (let i = 0; i < 100 && !leader; i++) {
      await new Promise((r) => setTimeout(r, 50));
      leader = drivers.find((d) => d.status().role === 'leader');
    }
    expect(leader).toBeDefined();
    await Promise.all(['x', 'y', 'z'].map((v) => leader!.propose(Buffer.from(v))));
    for (let i = 0; i < 50 && machines.some((m) => m.items.length < 3); i++)
      await new Promise((r) => setTimeout(r, 20));
    for (const m of machines) expect(m.items).toEqual(['x', 'y', 'z']);

    const refused = await apps[0]!.inject({
      method: 'POST',
      url: RAFT_MESSAGES_PATH,
      headers: { 'content-type': 'application/vnd.msgpack', 'sluice-cluster-secret': 'wrong' },
      payload: Buffer.from([0x90]),
    });
    expect(refused.statusCode).toBe(401);
    expect(JSON.parse(refused.body).code).toBe('CLUSTER_AUTHORIZATION_FAILED');

    const leaderIndex = drivers.indexOf(leader!);
    const status = await apps[leaderIndex]!.inject({
      method: 'GET',
      url: '/internal/raft/status',
      headers: { 'sluice-cluster-secret': secret },
    });
    expect(status.statusCode).toBe(200);
    expect(JSON.parse(status.body)).toMatchObject({ id: leaderIndex + 1, role: 'leader', commitIndex: 4 });
    const noSecret = await apps[leaderIndex]!.inject({ method: 'GET', url: '/internal/raft/status' });
    expect(noSecret.statusCode).toBe(401);
  });

  it('refuses bodies that are not msgpack arrays of Raft messages', async () => {
    const got: Message[] = [];
    const app = Fastify({ http2: true });
    await app.register(internalRaftRoutes, {
      clusterSecret: 's',
      nodeId: 2,
      isKnownMember: (id) => id === 1,
      deliver: (m) => got.push(...m),
    });
    const post = (payload: Buffer) =>
      app.inject({
        method: 'POST',
        url: RAFT_MESSAGES_PATH,
        headers: { 'content-type': 'application/vnd.msgpack', 'sluice-cluster-secret': 's' },
        payload,
      });
    for (const bad of [
      Buffer.from([0xc1]),
      pack({ type: 'vote' }),
      pack([{ type: 'bogus', from: 1, to: 2, term: 1 }]),
      pack([{ type: 'vote', from: '1', to: 2, term: 1 }]),
    ]) {
      const answer = await post(bad);
      expect(answer.statusCode).toBe(400);
      expect(JSON.parse(answer.body).code).toBe('INVALID_REQUEST');
    }
    expect(got).toEqual([]);
    const ok = await post(pack([{ type: 'heartbeat', from: 1, to: 2, term: 3, commit: 0, context: 0 }]));
    expect(ok.statusCode).toBe(204);
    expect(got).toEqual([{ type: 'heartbeat', from: 1, to: 2, term: 3, commit: 0, context: 0 }]);
    await app.close();
  });

  it('reconnects with backoff after the peer goes away and comes back on the same port', async () => {
    const got: Message[] = [];
    const serve = async (port: number) => {
      const app = Fastify({ http2: true });
      await app.register(internalRaftRoutes, {
        clusterSecret: 's',
        nodeId: 2,
        isKnownMember: (id) => id === 1,
        deliver: (m) => got.push(...m),
      });
      // The peer "crashes": its sessions are torn down rather than drained.
      const sessions = new Set<{ destroy(): void }>();
      app.addHook('preClose', async () => {
        for (const session of sessions) session.destroy();
      });
      await app.listen({ host: '127.0.0.1', port });
      app.server.on('session', (session: { destroy(): void; on(e: 'close', f: () => void): void }) => {
        sessions.add(session);
        session.on('close', () => sessions.delete(session));
      });
      return app;
    };
    let peer = await serve(0);
    const port = (peer.server.address() as { port: number }).port;
    const transport = new Http2RaftTransport(
      { id: 1, peers: { 2: `http://127.0.0.1:${port}` }, clusterSecret: 's', requestTimeoutMs: 500 },
      { clock: systemClock, random: new SeededRandom(1) },
    );
    const heartbeat = (term: number): Message => ({
      type: 'heartbeat',
      from: 1,
      to: 2,
      term,
      commit: 0,
      context: 0,
    });
    const waitFor = async (term: number) => {
      for (let i = 0; i < 200 && !got.some((m) => m.term === term); i++) {
        transport.send(heartbeat(term));
        await new Promise((r) => setTimeout(r, 25));
      }
      return got.some((m) => m.term === term);
    };
    expect(await waitFor(1)).toBe(true);
    await peer.close();
    transport.send(heartbeat(2));
    await new Promise((r) => setTimeout(r, 100));
    peer = await serve(port);
    expect(await waitFor(3)).toBe(true);
    await transport.close();
    await peer.close();
  });
});
