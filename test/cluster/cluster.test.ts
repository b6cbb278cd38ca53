import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, TestCluster } from './cluster.js';

/**
 * Multi-process clusters on loopback: every node its own process, data directory and port, all
 * voters of the metadata quorum and brokers. Partitions have one replica each (data replication is
 * the next step), so a node that goes down takes its partitions offline until it returns.
 */
const SESSION_TIMEOUT_MS = 2000;

const keyed = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => ({ key: `${prefix}-${i}`, value: `${prefix} record ${i}` }));

async function partitionsOf(cluster: TestCluster, id: number, topic: string) {
  const answer = await cluster.get(id, `/v1/topics/${topic}`);
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  return answer.body.partitions as {
    partition: number;
    leader: number;
    leaderEpoch: number;
    logEndOffset: number;
  }[];
}

async function readAll(cluster: TestCluster, via: number, topic: string, partition: number) {
  const answer = await cluster.get(
    via,
    `/v1/topics/${topic}/partitions/${partition}/records?offset=earliest&maxBytes=1048576`,
  );
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  return (answer.body.records as { key: string; value: string }[]).map((r) => r.value);
}

describe('a three-node cluster', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await TestCluster.start(3, { sessionTimeoutMs: SESSION_TIMEOUT_MS });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it('forms: every node sees the same cluster id, controller and three unfenced brokers', async () => {
    const views = await eventually('every node to see three unfenced brokers', async () => {
      const answers = await Promise.all(cluster.ids.map((id) => cluster.get(id, '/v1/cluster')));
      const ok = answers.every(
        (a) =>
          a.status === 200 &&
          a.body.nodes.length === 3 &&
          a.body.nodes.every((n: { fenced: boolean }) => !n.fenced),
      );
      return ok ? answers.map((a) => a.body) : undefined;
    });
    expect(new Set(views.map((v) => v.clusterId)).size).toBe(1);
    expect(new Set(views.map((v) => v.controllerId)).size).toBe(1);
    expect(cluster.ids).toContain(views[0].controllerId);
    expect(views.map((v) => v.nodeId)).toEqual([1, 2, 3]);
    for (const v of views) expect(v.metadata.voters).toEqual([1, 2, 3]);
  });

  it('places partitions over every broker and serves any partition through any node', async () => {
    const created = await cluster.post(2, '/v1/topics', { name: 'spread', partitions: 6 });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const leaders = (created.body.partitions as { leader: number }[]).map((p) => p.leader);
    expect(new Set(leaders)).toEqual(new Set([1, 2, 3]));
    // A produce through each node: each splits its records over the partitions' leaders.
    const sent = new Map<number, string[]>();
    for (const via of cluster.ids) {
      const records = keyed(30, `via${via}`);
      const answer = await cluster.post(via, '/v1/topics/spread/records', { records });
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      (answer.body.offsets as { partition: number }[]).forEach((o, i) => {
        const list = sent.get(o.partition) ?? [];
        list.push(records[i]!.value);
        sent.set(o.partition, list);
      });
    }
    // Every partition read through every node gives the same records, in the order they were sent.
    for (let p = 0; p < 6; p++) {
      for (const via of cluster.ids)
        expect(await readAll(cluster, via, 'spread', p)).toEqual(sent.get(p) ?? []);
    }
    // The topic is described alike everywhere, offsets included (asked of each partition's leader).
    const described = await Promise.all(cluster.ids.map((id) => partitionsOf(cluster, id, 'spread')));
    for (const d of described) expect(d).toEqual(described[0]);
    expect(described[0]!.map((p) => p.logEndOffset)).toEqual(
      [0, 1, 2, 3, 4, 5].map((p) => sent.get(p)?.length ?? 0),
    );
  });

  it('answers a produce to one partition through a node that does not lead it', async () => {
    const parts = await partitionsOf(cluster, 1, 'spread');
    const remote = parts.find((p) => p.leader !== 1)!;
    const answer = await cluster.post(1, `/v1/topics/spread/partitions/${remote.partition}/records`, {
      records: [{ value: 'forwarded' }],
    });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.servedBy).toBe(String(remote.leader));
    expect((await readAll(cluster, remote.leader, 'spread', remote.partition)).at(-1)).toBe('forwarded');
  });

  it('never shows a deleted topic’s records in a topic created again under its name', async () => {
    expect((await cluster.post(1, '/v1/topics', { name: 'again', partitions: 3 })).status).toBe(201);
    expect((await cluster.post(2, '/v1/topics/again/records', { records: keyed(20, 'old') })).status).toBe(
      200,
    );
    expect((await cluster.request(3, 'DELETE', '/v1/topics/again')).status).toBe(200);
    expect((await cluster.post(3, '/v1/topics', { name: 'again', partitions: 3 })).status).toBe(201);
    for (let p = 0; p < 3; p++)
      for (const via of cluster.ids) expect(await readAll(cluster, via, 'again', p)).toEqual([]);
    expect(
      (await cluster.post(1, '/v1/topics/again/records', { records: [{ key: 'k', value: 'new' }] })).status,
    ).toBe(200);
    const all = (await Promise.all([0, 1, 2].map((p) => readAll(cluster, 2, 'again', p)))).flat();
    expect(all).toEqual(['new']);
  });

  it('elects another controller when the active one is killed, and loses no metadata', async () => {
    const before = await cluster.controllerId();
    expect(before).not.toBeNull();
    const topicsBefore = (await cluster.get(before!, '/v1/topics')).body;
    await cluster.kill(before!);
    const others = cluster.ids.filter((id) => id !== before);
    const after = await eventually('another controller', async () => {
      const id = await cluster.controllerId();
      return id !== null && id !== before ? id : undefined;
    });
    expect(others).toContain(after);
    for (const id of others) expect((await cluster.get(id, '/v1/topics')).body).toEqual(topicsBefore);
    // The new controller decides: a topic is created through the other survivor.
    const other = others.find((id) => id !== after)!;
    const created = await cluster.post(other, '/v1/topics', { name: 'after-failover', partitions: 2 });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await cluster.startNode(before!);
    const rejoined = await eventually('the old controller to rejoin unfenced', async () => {
      const view = (await cluster.get(before!, '/v1/cluster')).body;
      return view.nodes.every((n: { fenced: boolean }) => !n.fenced) ? view : undefined;
    });
    expect(rejoined.controllerId).not.toBeNull();
    expect(
      (await cluster.get(before!, '/v1/topics')).body.topics.map((t: { name: string }) => t.name),
    ).toContain('after-failover');
  }, 60_000);

  it('fences a killed broker within the session timeout plus 2 s, and it leads its partitions again when it returns', async () => {
    const controller = (await cluster.controllerId())!;
    const victim = cluster.ids.find((id) => id !== controller)!;
    const parts = await partitionsOf(cluster, controller, 'spread');
    const held = parts.filter((p) => p.leader === victim);
    expect(held.length).toBeGreaterThan(0);
    const recordsBefore = await Promise.all(held.map((p) => readAll(cluster, victim, 'spread', p.partition)));
    const killedAt = Date.now();
    await cluster.kill(victim);
    await eventually(
      'the victim fenced and its partitions leaderless',
      async () => {
        const view = (await cluster.get(controller, '/v1/cluster')).body;
        const fenced = view.nodes.find((n: { id: number }) => n.id === victim)?.fenced;
        const now = await partitionsOf(cluster, controller, 'spread');
        return fenced && held.every((h) => now[h.partition]!.leader === -1) ? true : undefined;
      },
      SESSION_TIMEOUT_MS + 2000 + 2000,
    );
    expect(Date.now() - killedAt).toBeLessThan(SESSION_TIMEOUT_MS + 2000 + 1000);
    // A leaderless partition is refused as retriable, through any node.
    const refused = await cluster.post(
      controller,
      `/v1/topics/spread/partitions/${held[0]!.partition}/records`,
      {
        records: [{ value: 'x' }],
      },
    );
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.body.retriable, JSON.stringify(refused.body)).toBe(true);
    await cluster.startNode(victim);
    const back = await eventually('the victim leading its partitions again', async () => {
      const now = await partitionsOf(cluster, controller, 'spread');
      return held.every((h) => now[h.partition]!.leader === victim) ? now : undefined;
    });
    for (const h of held) expect(back[h.partition]!.leaderEpoch).toBeGreaterThan(h.leaderEpoch);
    const recordsAfter = await Promise.all(
      held.map((p) => readAll(cluster, controller, 'spread', p.partition)),
    );
    expect(recordsAfter).toEqual(recordsBefore);
  }, 60_000);
});

describe('a five-node cluster', () => {
  it('keeps working with two nodes down', async () => {
    const cluster = await TestCluster.start(5, { sessionTimeoutMs: SESSION_TIMEOUT_MS });
    try {
      const controller = (await eventually('a controller', () =>
        cluster.controllerId().then((id) => id ?? undefined),
      ))!;
      const down = cluster.ids
        .filter((id) => id !== controller)
        .slice(0, 1)
        .concat([controller]);
      for (const id of down) await cluster.kill(id);
      const up = cluster.ids.filter((id) => !down.includes(id));
      await eventually('a new controller among the three left', async () => {
        const id = await cluster.controllerId();
        return id !== null && up.includes(id) ? id : undefined;
      });
      // Fenced brokers get no new partitions: a topic created now lives on the three left.
      await eventually(
        'the two down fenced',
        async () => {
          const view = (await cluster.get(up[0]!, '/v1/cluster')).body;
          const fenced = view.nodes
            .filter((n: { fenced: boolean }) => n.fenced)
            .map((n: { id: number }) => n.id);
          return fenced.length === 2 ? fenced : undefined;
        },
        SESSION_TIMEOUT_MS + 5000,
      );
      const created = await cluster.post(up[0]!, '/v1/topics', { name: 'five', partitions: 6 });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(new Set(created.body.partitions.map((p: { leader: number }) => p.leader))).toEqual(new Set(up));
      const answer = await cluster.post(up[1]!, '/v1/topics/five/records', { records: keyed(50, 'five') });
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      const total = (
        await Promise.all([0, 1, 2, 3, 4, 5].map((p) => readAll(cluster, up[2]!, 'five', p)))
      ).flat();
      expect(total.sort()).toEqual(
        keyed(50, 'five')
          .map((r) => r.value)
          .sort(),
      );
    } finally {
      await cluster.close();
    }
  }, 90_000);
});
