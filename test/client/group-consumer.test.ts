import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Consumer, type RebalanceEvent } from '../../src/client/index.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';

/**
 * The SDK's group `Consumer` against a node: the async iterator over all its partitions, the
 * rebalance callback (told what it gets and what it gives up, awaited before the partition moves),
 * auto-commit on revocation and on close, manual commits, `seek`, `pause` and `resume`.
 */
let dir: string;
let node: SluiceNode;
let bootstrap: string;

async function post(path: string, body: unknown) {
  const r = await fetch(`${bootstrap}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return r.json();
}
// biome-ignore lint/suspicious/noExplicitAny: checked field by field
const get = async (path: string): Promise<any> => (await fetch(`${bootstrap}${path}`)).json();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-sdk-groups-'));
  node = await startNode({
    dataDir: dir,
    port: 0,
    logLevel: 'silent',
    configs: { 'offsets.topic.num.partitions': 2 },
  });
  bootstrap = `http://127.0.0.1:${node.address.port}`;
});
afterAll(async () => {
  await node.close();
  await rm(dir, { recursive: true, force: true });
});

async function topic(name: string, partitions: number, perPartition: number) {
  await post('/v1/topics', { name, partitions });
  for (let p = 0; p < partitions; p++)
    await post(`/v1/topics/${name}/partitions/${p}/records`, {
      records: Array.from({ length: perPartition }, (_, i) => ({ value: `${p}-${i}` })),
    });
}

const text = (v: Uint8Array | null) => Buffer.from(v!).toString();

describe('the group Consumer', () => {
  it('iterates every assigned partition and tells its rebalances; a joining member takes half after the first commits them', async () => {
    await topic('it', 2, 3);
    const events: RebalanceEvent[] = [];
    const a = new Consumer({
      bootstrap,
      group: 'it',
      topics: ['it'],
      maxWaitMs: 50,
      onRebalance: async (e) => {
        events.push(e);
      },
    });
    const seen: string[] = [];
    for await (const r of a) {
      seen.push(text(r.value));
      if (seen.length === 6) break;
    }
    expect(seen.sort()).toEqual(['0-0', '0-1', '0-2', '1-0', '1-1', '1-2']);
    expect(events[0]!.assigned.map((tp) => tp.partition).sort()).toEqual([0, 1]);
    const b = new Consumer({ bootstrap, group: 'it', topics: ['it'], maxWaitMs: 50 });
    await b.join();
    // a's heartbeats give one partition up (committing what it handed out of it), b takes it.
    for (let i = 0; i < 20 && b.assignment().length === 0; i++) {
      await a.heartbeat();
      await b.heartbeat();
    }
    expect(a.assignment()).toHaveLength(1);
    expect(b.assignment()).toHaveLength(1);
    expect(events.at(-1)!.revoked).toEqual(b.assignment());
    // b starts where a committed: nothing of its partition is read twice.
    expect(await b.poll()).toEqual([]);
    await a.close();
    await b.close();
    const d = await get('/v1/groups/it');
    expect(d.partitions.map((p: { committed: number }) => p.committed)).toEqual([3, 3]);
  });

  it('commits by hand, seeks, pauses and resumes', async () => {
    await topic('manual', 2, 4);
    const c = new Consumer({
      bootstrap,
      group: 'manual',
      topics: ['manual'],
      maxWaitMs: 50,
      autoCommit: false,
    });
    const first = await c.poll();
    expect(first).toHaveLength(8);
    await c.commit([{ topic: 'manual', partition: 0, offset: 2 }]);
    await c.seek({ topic: 'manual', partition: 1 }, 1);
    const again = (await c.poll()).map((r) => text(r.value));
    expect(again).toEqual(['1-1', '1-2', '1-3']);
    await c.pause([{ topic: 'manual', partition: 1 }]);
    await post('/v1/topics/manual/partitions/1/records', { records: [{ value: '1-4' }] });
    await post('/v1/topics/manual/partitions/0/records', { records: [{ value: '0-4' }] });
    expect((await c.poll()).map((r) => text(r.value))).toEqual(['0-4']);
    await c.resume([{ topic: 'manual', partition: 1 }]);
    expect((await c.poll()).map((r) => text(r.value))).toEqual(['1-4']);
    await c.close();
    // Without auto-commit, only the hand-made commit was made.
    const d = await get('/v1/groups/manual');
    expect(d.partitions.map((p: { committed: number | null }) => p.committed)).toEqual([2, null]);
  });

  it('acknowledges a revocation at once with a heartbeat of its own, not at its next interval', async () => {
    // Interval timers faked: the members' periodic heartbeats never fire, so the only heartbeats
    // of `a` are the one below and the one it sends by itself after giving a partition up.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      await topic('early', 2, 2);
      const a = new Consumer({
        bootstrap,
        group: 'early',
        topics: ['early'],
        maxWaitMs: 50,
        autoCommit: false,
      });
      // Records handed out and not committed: a partition `a` gives up moves only once it acknowledges.
      expect(await a.poll()).toHaveLength(4);
      const b = new Consumer({
        bootstrap,
        group: 'early',
        topics: ['early'],
        maxWaitMs: 50,
        autoCommit: false,
      });
      await b.join();
      expect(b.assignment()).toEqual([]);
      await a.heartbeat();
      expect(a.assignment()).toHaveLength(1);
      for (let i = 0; i < 100 && b.assignment().length === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        await b.heartbeat();
      }
      expect(b.assignment()).toHaveLength(1);
      expect([...a.assignment(), ...b.assignment()].map((tp) => tp.partition).sort()).toEqual([0, 1]);
      await a.close();
      await b.close();
    } finally {
      vi.useRealTimers();
    }
  });
});
