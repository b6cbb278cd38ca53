import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { isSluiceError } from '../../src/common/errors.js';
import { SeededRandom } from '../../src/common/random.js';
import { RaftDriver, type RaftTransport, type StateMachine } from '../../src/raft/driver.js';
import { LevelRaftStorage, MemoryRaftStorage, type RaftStorage } from '../../src/raft/storage.js';
import type { Entry, Message } from '../../src/raft/types.js';

/** The driver with real storage and an in-memory network, on a manual clock. */
class LocalNetwork {
  handlers = new Map<number, (m: Message) => void>();
  down = new Set<number>();
  transport(id: number): RaftTransport {
    return {
      send: (m) => {
        if (this.down.has(m.from) || this.down.has(m.to)) return;
        queueMicrotask(() => this.handlers.get(m.to)?.(m));
      },
      onMessage: (handler) => {
        this.handlers.set(id, handler);
      },
      close: async () => {
        this.handlers.delete(id);
      },
    };
  }
}

class ListMachine implements StateMachine {
  items: string[] = [];
  apply(entry: Entry): void {
    this.items.push(Buffer.from(entry.data).toString());
  }
  snapshot(): Uint8Array {
    return Buffer.from(JSON.stringify(this.items));
  }
  restore(data: Uint8Array): void {
    this.items = JSON.parse(Buffer.from(data).toString());
  }
}

const settle = () => new Promise((r) => setImmediate(r));
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function cluster(storages: RaftStorage[], options: { snapshotEntries?: number } = {}) {
  const clock = new ManualClock();
  const network = new LocalNetwork();
  const machines = storages.map(() => new ListMachine());
  const voters = storages.map((_, i) => i + 1);
  const drivers = storages.map(
    (storage, i) =>
      new RaftDriver(
        {
          id: i + 1,
          membership: { voters, learners: [] },
          tickMs: 10,
          electionTicks: 10,
          heartbeatTicks: 2,
          ...options,
        },
        {
          storage,
          transport: network.transport(i + 1),
          clock,
          random: new SeededRandom(i + 7),
          stateMachine: machines[i]!,
        },
      ),
  );
  for (const d of drivers) await d.start();
  // LevelDB writes finish on the thread pool: give each simulated tick a little real time.
  const wait = storages[0] instanceof LevelRaftStorage ? () => new Promise((r) => setTimeout(r, 2)) : settle;
  const run = async (ms: number) => {
    for (let t = 0; t < ms; t += 10) {
      clock.advance(10);
      await wait();
    }
  };
  const leader = () => drivers.find((d) => d.status().role === 'leader');
  /**
   * Runs until `done` holds, in steps of 10 simulated ms, for at most `maxMs` simulated ms: LevelDB
   * writes take real time, which a loaded machine stretches, so a fixed number of steps can end
   * before an election or the applies have happened.
   */
  const runUntil = async (done: () => boolean, maxMs = 20_000) => {
    for (let t = 0; t < maxMs && !done(); t += 10) {
      clock.advance(10);
      await wait();
    }
    expect(done()).toBe(true);
  };
  return { clock, network, machines, drivers, run, runUntil, leader };
}

describe('RaftDriver', () => {
  it('elects a leader, commits proposals on every node, and refuses proposals on followers with the leader id', async () => {
    const c = await cluster([new MemoryRaftStorage(), new MemoryRaftStorage(), new MemoryRaftStorage()]);
    await c.run(500);
    const leader = c.leader()!;
    expect(leader).toBeDefined();
    const results = await Promise.all(['a', 'b', 'c'].map((v) => leader.propose(Buffer.from(v))));
    expect(results.map((r) => r.index)).toEqual([2, 3, 4]);
    await c.run(100);
    for (const m of c.machines) expect(m.items).toEqual(['a', 'b', 'c']);
    const follower = c.drivers.find((d) => d !== leader)!;
    const refused = await follower.propose(Buffer.from('x')).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(isSluiceError(refused, 'NOT_LEADER')).toBe(true);
    expect((refused as { details: { leaderId: number } }).details.leaderId).toBe(leader.status().id);
    expect(await leader.readIndex()).toBeGreaterThanOrEqual(4);
    await expect(follower.readIndex()).rejects.toMatchObject({ code: 'NOT_LEADER' });
    for (const d of c.drivers) await d.close();
  });

  it('proposals arriving together share one synced save', async () => {
    const storages = [new MemoryRaftStorage(), new MemoryRaftStorage(), new MemoryRaftStorage()];
    const c = await cluster(storages);
    await c.run(500);
    const leader = c.leader()!;
    const index = c.drivers.indexOf(leader);
    const before = storages[index]!.saves;
    await Promise.all(Array.from({ length: 50 }, (_, i) => leader.propose(Buffer.from(`p${i}`))));
    const saves = storages[index]!.saves - before;
    expect(saves).toBeLessThan(25);
    for (const d of c.drivers) await d.close();
  });

  it('a learner added through the driver follows the log with onApply hooks and never leads; a node not started refuses', async () => {
    const c = await cluster([new MemoryRaftStorage(), new MemoryRaftStorage(), new MemoryRaftStorage()]);
    await c.run(500);
    const leader = c.leader()!;
    const items: string[] = [];
    const learner = new RaftDriver(
      {
        id: 4,
        membership: { voters: [1, 2, 3], learners: [] },
        tickMs: 10,
        electionTicks: 10,
        heartbeatTicks: 2,
      },
      {
        storage: new MemoryRaftStorage(),
        transport: c.network.transport(4),
        clock: c.clock,
        random: new SeededRandom(4),
      },
    );
    expect(learner.status()).toMatchObject({ id: 4, role: 'follower', leaderId: null });
    await expect(learner.propose(Buffer.from('early'))).rejects.toMatchObject({ code: 'NOT_LEADER' });
    learner.onApply((entry) => void items.push(Buffer.from(entry.data).toString()));
    learner.onSnapshot({ take: () => Buffer.from(JSON.stringify(items)), restore: () => {} });
    await learner.start();
    await leader.propose(Buffer.from('a'));
    await leader.addLearner(4);
    await leader.propose(Buffer.from('b'));
    await c.run(200);
    expect(items).toEqual(['a', 'b']);
    expect(learner.status().membership).toEqual({ voters: [1, 2, 3], learners: [4] });
    // A learner never campaigns, even when the leader goes quiet.
    c.network.down.add(leader.status().id);
    await c.run(1000);
    expect(learner.status().role).toBe('follower');
    c.network.down.clear();
    await c.run(500);
    const next = c.leader()!;
    await next.removeLearner(4);
    expect(next.status().membership.learners).toEqual([]);
    for (const d of [...c.drivers, learner]) await d.close();
  });

  it('syncs every save of entries, terms and votes, but not one that only moves the commit index', async () => {
    const storages = [new MemoryRaftStorage(), new MemoryRaftStorage(), new MemoryRaftStorage()];
    const seen: {
      sync: boolean;
      entries: number;
      term?: number;
      vote?: number | null;
      commitOnly: boolean;
    }[] = [];
    for (const storage of storages) {
      const save = storage.save.bind(storage);
      let last: { term: number; vote: number | null } | undefined;
      storage.save = (update) => {
        const h = update.hardState;
        const commitOnly =
          (update.entries?.length ?? 0) === 0 &&
          !update.snapshot &&
          !!h &&
          h.term === last?.term &&
          h.vote === last?.vote;
        seen.push({ sync: update.sync !== false, entries: update.entries?.length ?? 0, commitOnly });
        if (h) last = { term: h.term, vote: h.vote };
        return save(update);
      };
    }
    const c = await cluster(storages);
    await c.run(500);
    const leader = c.leader()!;
    for (let i = 0; i < 5; i++) await leader.propose(Buffer.from(`p${i}`));
    await c.run(100);
    expect(seen.filter((s) => !s.commitOnly).every((s) => s.sync)).toBe(true);
    expect(seen.filter((s) => s.commitOnly).length).toBeGreaterThan(0);
    expect(seen.filter((s) => s.commitOnly).every((s) => !s.sync)).toBe(true);
    for (const d of c.drivers) await d.close();
  });

  it('restores its state exactly from LevelDB after a restart, snapshot included', async () => {
    const paths = await Promise.all([0, 1, 2].map(() => mkdtemp(join(tmpdir(), 'sluice-raft-'))));
    dirs.push(...paths);
    const c = await cluster(await Promise.all(paths.map((p) => LevelRaftStorage.open(p))), {
      snapshotEntries: 5,
    });
    await c.runUntil(() => c.leader() !== undefined);
    const leader = c.leader()!;
    for (let i = 0; i < 12; i++) await leader.propose(Buffer.from(`v${i}`));
    await c.runUntil(() => c.machines.every((m) => m.items.length === 12));
    const expected = c.machines[0]!.items;
    expect(expected).toHaveLength(12);
    const statuses = c.drivers.map((d) => d.status());
    for (const d of c.drivers) await d.close();
    const again = await cluster(await Promise.all(paths.map((p) => LevelRaftStorage.open(p))), {
      snapshotEntries: 5,
    });
    await again.runUntil(() => again.leader() !== undefined);
    const newLeader = again.leader()!;
    await newLeader.propose(Buffer.from('after'));
    await again.runUntil(() => again.machines.every((m) => m.items.at(-1) === 'after'));
    for (const m of again.machines) expect(m.items).toEqual([...expected, 'after']);
    for (const [i, d] of again.drivers.entries())
      expect(d.status().term).toBeGreaterThanOrEqual(statuses[i]!.term);
    for (const d of again.drivers) await d.close();
  });

  it('a leader cut off from the others steps down and its waiting proposal is refused', async () => {
    const c = await cluster([new MemoryRaftStorage(), new MemoryRaftStorage(), new MemoryRaftStorage()]);
    await c.run(500);
    const leader = c.leader()!;
    const others = c.drivers.filter((d) => d !== leader).map((d) => d.status().id);
    for (const id of others) c.network.down.add(id);
    const pending = leader.propose(Buffer.from('lost')).catch((e) => e);
    await c.run(600);
    expect(leader.status().role).not.toBe('leader');
    expect(isSluiceError(await pending, 'NOT_LEADER')).toBe(true);
    for (const d of c.drivers) await d.close();
  });

  // Found by the simulation (seed 477 and others): a failed compaction save only marked the driver
  // failed, and it went on voting and acknowledging. Every failed save now stops the node.
  it('a failed compaction save stops the node: nothing leaves it afterwards and proposals get KAFKA_STORAGE_ERROR', async () => {
    const storages = [new MemoryRaftStorage(), new MemoryRaftStorage(), new MemoryRaftStorage()];
    const c = await cluster(storages, { snapshotEntries: 3 });
    await c.run(500);
    const leader = c.leader()!;
    const follower = c.drivers.find((d) => d !== leader)!;
    const id = follower.status().id;
    const storage = storages[id - 1]!;
    const save = storage.save.bind(storage);
    let failed = false;
    storage.save = (update) => {
      if (update.snapshot && !failed) {
        failed = true;
        return Promise.reject(new Error('disk gone'));
      }
      return save(update);
    };
    for (let i = 0; i < 6; i++) await leader.propose(Buffer.from(`p${i}`));
    await c.run(100);
    expect(failed).toBe(true);
    const savesAfter = storage.saves;
    await c.run(300);
    // A stopped node persists nothing more: no vote, no acknowledgement is written or sent.
    expect(storage.saves).toBe(savesAfter);
    await expect(follower.propose(Buffer.from('x'))).rejects.toMatchObject({ code: 'KAFKA_STORAGE_ERROR' });
    await expect(follower.readIndex()).rejects.toMatchObject({ code: 'KAFKA_STORAGE_ERROR' });
    for (const d of c.drivers) await d.close();
  });

  it('refuses to start on empty storage when the node is known to have taken part', async () => {
    const driver = new RaftDriver(
      { id: 2, membership: { voters: [1, 2, 3], learners: [] }, storedStateRequired: true },
      {
        storage: new MemoryRaftStorage(),
        transport: new LocalNetwork().transport(2),
        clock: new ManualClock(),
        random: new SeededRandom(1),
      },
    );
    await expect(driver.start()).rejects.toMatchObject({
      code: 'KAFKA_STORAGE_ERROR',
      message: expect.stringMatching(/node 2 has taken part in the cluster but its Raft storage is empty/),
    });
    const storage = new MemoryRaftStorage();
    await storage.save({ hardState: { term: 3, vote: 1, commit: 0 } });
    const restarted = new RaftDriver(
      { id: 2, membership: { voters: [1, 2, 3], learners: [] }, storedStateRequired: true },
      {
        storage,
        transport: new LocalNetwork().transport(2),
        clock: new ManualClock(),
        random: new SeededRandom(1),
      },
    );
    await restarted.start();
    expect(restarted.status().term).toBe(3);
    await restarted.close();
  });
});
