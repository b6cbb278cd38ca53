import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { electionTimeoutMs, Http2RaftTransport } from '../../src/broker/raft-transport.js';
import { systemClock } from '../../src/common/clock.js';
import { SeededRandom } from '../../src/common/random.js';
import { internalRaftRoutes } from '../../src/http/routes/internal-raft.js';
import { SNAPSHOT_CHUNKED_BYTES_MIN } from '../../src/protocol/internal-api.js';
import { RaftDriver, type StateMachine } from '../../src/raft/driver.js';
import { LevelRaftStorage } from '../../src/raft/storage.js';
import type { Entry } from '../../src/raft/types.js';

/**
 * A follower that joins after the leader has compacted its log behind a state larger than one
 * message catches up: the snapshot goes as chunks, the driver gets it whole and restores it.
 */
const apps: FastifyInstance[] = [];
const drivers: RaftDriver[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const d of drivers) await d.close();
  for (const a of apps) await a.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Applied commands, and a snapshot padded to `padBytes` so that it must travel in chunks. */
class PaddedLog implements StateMachine {
  items: string[] = [];
  restores = 0;
  constructor(readonly padBytes: number) {}
  apply(e: Entry) {
    this.items.push(Buffer.from(e.data).toString());
  }
  snapshot() {
    const json = Buffer.from(JSON.stringify(this.items));
    const out = Buffer.alloc(4 + json.length + this.padBytes, 0x5a);
    out.writeUInt32BE(json.length, 0);
    json.copy(out, 4);
    return out;
  }
  restore(data: Uint8Array) {
    const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.items = JSON.parse(b.subarray(4, 4 + b.readUInt32BE(0)).toString());
    this.restores++;
  }
}

async function freeUrls(n: number): Promise<Record<number, string>> {
  const servers = Array.from({ length: n }, () => Fastify({ http2: true }));
  const urls: Record<number, string> = {};
  for (const [i, s] of servers.entries()) {
    await s.listen({ host: '127.0.0.1', port: 0 });
    urls[i + 1] = `http://127.0.0.1:${(s.server.address() as { port: number }).port}`;
  }
  for (const s of servers) await s.close();
  return urls;
}

describe('catching up behind a large snapshot', () => {
  it('a new follower receives a 6 MiB snapshot in chunks and then the entries after it', async () => {
    const secret = 'catch-up';
    const urls = await freeUrls(3);
    const timing = { tickMs: 20, electionTicks: 10 };
    const machines = [1, 2, 3].map(() => new PaddedLog(6 * 1024 * 1024));
    const start = async (id: number) => {
      const dir = await mkdtemp(join(tmpdir(), 'sluice-raft-catchup-'));
      dirs.push(dir);
      const transport = new Http2RaftTransport(
        { id, peers: urls, clusterSecret: secret, electionTimeoutMs: electionTimeoutMs(timing) },
        { clock: systemClock, random: new SeededRandom(id) },
      );
      const app = Fastify({ http2: true });
      await app.register(internalRaftRoutes, { clusterSecret: secret, ...transport.receiver() });
      await app.listen({ host: '127.0.0.1', port: Number(new URL(urls[id]!).port) });
      apps.push(app as unknown as FastifyInstance);
      const driver = new RaftDriver(
        {
          id,
          membership: { voters: [1, 2, 3], learners: [] },
          ...timing,
          heartbeatTicks: 2,
          snapshotEntries: 5,
        },
        {
          storage: await LevelRaftStorage.open(dir),
          transport,
          clock: systemClock,
          random: new SeededRandom(id),
          stateMachine: machines[id - 1]!,
        },
      );
      drivers.push(driver);
      await driver.start();
      return driver;
    };
    const running = [await start(1), await start(2)];
    let leader: RaftDriver | undefined;
    for (let i = 0; i < 200 && !leader; i++) {
      await new Promise((r) => setTimeout(r, 25));
      leader = running.find((d) => d.status().role === 'leader');
    }
    expect(leader).toBeDefined();
    const first = Array.from({ length: 12 }, (_, i) => `a${i}`);
    for (const v of first) await leader!.propose(Buffer.from(v));
    expect(machines[0]!.snapshot().length).toBeGreaterThan(SNAPSHOT_CHUNKED_BYTES_MIN);

    await start(3);
    const late = machines[2]!;
    for (let i = 0; i < 600 && late.items.length < first.length; i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(late.restores).toBeGreaterThan(0);
    expect(late.items).toEqual(first);
    await leader!.propose(Buffer.from('after'));
    for (let i = 0; i < 200 && late.items.length <= first.length; i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(late.items).toEqual([...first, 'after']);
  });
});
