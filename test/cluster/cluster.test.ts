import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionConsumer, Producer } from '../../src/client/index.js';
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
    isr: number[];
    replicas: number[];
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

/** Requests each node has forwarded to another (sluice_forwarded_requests_total, every route and outcome). */
async function forwardedCounts(cluster: TestCluster): Promise<number[]> {
  return Promise.all(
    cluster.ids.map(async (id) => {
      const text = await (await fetch(`${cluster.url(id)}/metrics`)).text();
      return [...text.matchAll(/^sluice_forwarded_requests_total\{[^}]*\} (\d+)/gm)].reduce(
        (sum, m) => sum + Number(m[1]),
        0,
      );
    }),
  );
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

  it('serves the SDK: a producer given one node sends to each partition’s leader, and consumers read them back', async () => {
    const admin = new Admin({ bootstrap: cluster.url(3) });
    await admin.createTopic({ name: 'sdk', partitions: 6 });
    const forwardedBefore = await forwardedCounts(cluster);
    const producer = new Producer({ bootstrap: cluster.url(3), lingerMs: 1 });
    const sent = Array.from({ length: 120 }, (_, i) => ({ topic: 'sdk', key: `k${i}`, value: `v${i}` }));
    const acks = await producer.send(sent);
    await producer.close();
    const byPartition = new Map<number, string[]>();
    acks.forEach((a, i) => {
      byPartition.set(a.partition, [...(byPartition.get(a.partition) ?? []), sent[i]!.value]);
    });
    expect(byPartition.size).toBe(6);
    for (const [partition, values] of byPartition) {
      const consumer = new PartitionConsumer({
        bootstrap: cluster.url(1),
        topic: 'sdk',
        partition,
        offset: 'earliest',
        stopAtEnd: true,
      });
      const got: string[] = [];
      for await (const r of consumer) got.push(Buffer.from(r.value!).toString());
      consumer.close();
      expect(got).toEqual(values);
    }
    admin.close();
    // Every request went to a leader directly: no node forwarded one.
    expect(await forwardedCounts(cluster)).toEqual(forwardedBefore);
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
    // The node restarted by the test before leads its partitions again first.
    const parts = await eventually('every partition led', async () => {
      const now = await partitionsOf(cluster, controller, 'spread');
      return now.every((p) => p.leader !== -1) ? now : undefined;
    });
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
    // A client that names the leader epoch it knows (KIP-320): the old one is fenced, a newer
    // one unknown, the current one taken; through any node.
    const p = held[0]!.partition;
    const epoch = back[p]!.leaderEpoch;
    const produceAt = (leaderEpoch: number) =>
      cluster.post(controller, `/v1/topics/spread/partitions/${p}/records?leaderEpoch=${leaderEpoch}`, {
        records: [{ value: `epoch ${leaderEpoch}` }],
      });
    // The victim applies its new leadership a moment after the controller decided it.
    await eventually('the victim leading at the new epoch', async () =>
      (await produceAt(epoch)).status === 200 ? true : undefined,
    );
    expect((await produceAt(held[0]!.leaderEpoch)).body.code).toBe('FENCED_LEADER_EPOCH');
    expect((await produceAt(epoch + 1)).body.code).toBe('UNKNOWN_LEADER_EPOCH');
    const stale = await cluster.get(
      victim,
      `/v1/topics/spread/partitions/${p}/records?leaderEpoch=${epoch - 1}`,
    );
    expect(stale.status).toBe(412);
    expect(stale.body.code).toBe('FENCED_LEADER_EPOCH');
    recordsBefore[0]!.push(`epoch ${epoch}`);
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

describe('the metadata quorum’s membership', () => {
  it('takes a broker-only node as a learner, makes it a voter, and keeps working after a founding voter is removed and stopped', async () => {
    const cluster = await TestCluster.start(3, { sessionTimeoutMs: SESSION_TIMEOUT_MS });
    try {
      // Node 4 is named by no quorum: it registers, becomes a learner and a broker like the others.
      await cluster.addNode(4);
      const view = await eventually('node 4 an unfenced broker and a learner', async () => {
        const v = (await cluster.get(1, '/v1/cluster')).body;
        const four = v.nodes.find((n: { id: number }) => n.id === 4);
        return four && !four.fenced ? v : undefined;
      });
      expect(view.metadata.voters).toEqual([1, 2, 3]);
      const created = await cluster.post(4, '/v1/topics', { name: 'members', partitions: 8 });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(new Set(created.body.partitions.map((p: { leader: number }) => p.leader))).toEqual(
        new Set([1, 2, 3, 4]),
      );
      // A voter that is not a learner yet is refused, as is removing a node that is not a voter.
      expect((await cluster.post(1, '/v1/cluster/voters', { nodeId: 9 })).body.code).toBe('INVALID_REQUEST');
      expect((await cluster.request(1, 'DELETE', '/v1/cluster/voters/4')).body.code).toBe('INVALID_REQUEST');
      const added = await eventually('node 4 a voter', async () => {
        const a = await cluster.post(2, '/v1/cluster/voters', { nodeId: 4 });
        return a.status === 200 ? a.body : undefined;
      });
      expect(added.voters).toEqual([1, 2, 3, 4]);
      const removed = await cluster.request(4, 'DELETE', '/v1/cluster/voters/1');
      expect(removed.status, JSON.stringify(removed.body)).toBe(200);
      expect(removed.body.voters).toEqual([2, 3, 4]);
      // With voters 2, 3, 4, losing node 1 and then one more voter still leaves a majority.
      await cluster.kill(1);
      const controller = await eventually('a controller among 2, 3, 4', async () => {
        const id = await cluster.controllerId();
        return id !== null && id !== 1 ? id : undefined;
      });
      await cluster.kill([2, 3, 4].find((id) => id !== controller)!);
      const after = await eventually(
        'a topic created with two of three voters',
        async () => {
          const a = await cluster.post(controller, '/v1/topics', { name: 'after-change', partitions: 1 });
          return a.status === 201 ? a : undefined;
        },
        20_000,
      );
      expect(after.body.name).toBe('after-change');
    } finally {
      await cluster.close();
    }
  }, 120_000);
});

describe('replicated partitions', () => {
  it('replicates acks=all records to every in-sync replica, and a new leader has them all after the old one is killed', async () => {
    const cluster = await TestCluster.start(3, {
      sessionTimeoutMs: SESSION_TIMEOUT_MS,
      replicaLagTimeMaxMs: 2000,
    });
    try {
      const created = await cluster.post(1, '/v1/topics', {
        name: 'replicated',
        partitions: 3,
        replicationFactor: 3,
        configs: { 'min.insync.replicas': 2 },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      for (const p of created.body.partitions) {
        expect(p.replicas).toHaveLength(3);
        expect(p.isr).toHaveLength(3);
      }
      const acked: string[][] = [[], [], []];
      for (let round = 0; round < 5; round++) {
        for (let p = 0; p < 3; p++) {
          const values = Array.from({ length: 20 }, (_, i) => `p${p} r${round} #${i}`);
          const answer = await cluster.post(1, `/v1/topics/replicated/partitions/${p}/records?acks=all`, {
            records: values.map((value) => ({ value })),
          });
          expect(answer.status, JSON.stringify(answer.body)).toBe(200);
          acked[p]!.push(...values);
        }
      }
      const before = await partitionsOf(cluster, 2, 'replicated');
      for (const p of before) expect(p.logEndOffset).toBe(100);
      // Any node's description carries each leader's own figures (the console's sizes and rates).
      for (const p of (await cluster.get(2, '/v1/topics/replicated')).body.partitions) {
        expect(p.stats.recordsIn, `partition ${p.partition} led by ${p.leader}`).toBe(100);
        expect(p.stats.sizeBytes).toBeGreaterThan(0);
      }
      // Kill the leader of partition 0: another in-sync replica takes over with every acked record.
      const victim = before[0]!.leader;
      await cluster.kill(victim);
      const survivor = cluster.ids.find((id) => id !== victim)!;
      const after = await eventually(
        'partition 0 led by another replica',
        async () => {
          const now = await partitionsOf(cluster, survivor, 'replicated');
          return now[0]!.leader !== victim && now[0]!.leader !== -1 ? now : undefined;
        },
        SESSION_TIMEOUT_MS + 5000,
      );
      expect(after[0]!.leaderEpoch).toBeGreaterThan(before[0]!.leaderEpoch);
      expect(after[0]!.isr).not.toContain(victim);
      // Its description shows each follower's log end and lag, the killed one far behind.
      const described = (await cluster.get(survivor, '/v1/topics/replicated')).body.partitions[0];
      expect(described.replicaStates.map((r: { id: number }) => r.id).sort()).toEqual(
        cluster.ids.filter((id) => id !== after[0]!.leader),
      );
      // The new leader counts partition 0 among its under-replicated ones.
      const text = await (await fetch(`${cluster.url(after[0]!.leader)}/metrics`)).text();
      const under = /^sluice_partitions_led\{state="under_replicated"\} (\d+)/m.exec(text);
      expect(Number(under?.[1])).toBeGreaterThanOrEqual(1);
      for (let p = 0; p < 3; p++) {
        const values = await eventually(`partition ${p} readable`, async () => {
          const a = await cluster.get(
            survivor,
            `/v1/topics/replicated/partitions/${p}/records?offset=earliest&maxBytes=1048576`,
          );
          return a.status === 200 && a.body.records.length === 100
            ? a.body.records.map((r: { value: string }) => r.value)
            : undefined;
        });
        expect(values).toEqual(acked[p]);
      }
      // Still writable with acks=all: two in-sync replicas remain.
      const more = await cluster.post(survivor, '/v1/topics/replicated/partitions/0/records?acks=all', {
        records: [{ value: 'after failover' }],
      });
      expect(more.status, JSON.stringify(more.body)).toBe(200);
      expect(more.body.offsets[0].offset).toBe(100);
      // The old leader returns, truncates nothing acknowledged, catches up and rejoins the in-sync set.
      await cluster.startNode(victim);
      await eventually(
        'the old leader back in the in-sync set of partition 0',
        async () => {
          const now = await partitionsOf(cluster, survivor, 'replicated');
          return now[0]!.isr.includes(victim) ? true : undefined;
        },
        20_000,
      );
    } finally {
      await cluster.close();
    }
  }, 120_000);
});

describe('controlled shutdown', () => {
  it('moves a leader away on SIGTERM so that a producer streaming through it sees no error', async () => {
    const cluster = await TestCluster.start(3, {
      sessionTimeoutMs: SESSION_TIMEOUT_MS,
      replicaLagTimeMaxMs: 2000,
    });
    try {
      const created = await cluster.post(1, '/v1/topics', {
        name: 'stream',
        partitions: 1,
        replicationFactor: 3,
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const leader = created.body.partitions[0].leader as number;
      const bootstrap = cluster.ids.find((id) => id !== leader)!;
      const producer = new Producer({
        bootstrap: cluster.url(bootstrap),
        lingerMs: 1,
        retries: 20,
        retryBackoffMs: 50,
      });
      const sent: string[] = [];
      const errors: unknown[] = [];
      let stop = false;
      const streaming = (async () => {
        for (let i = 0; !stop; i++) {
          const value = `record ${i}`;
          try {
            await producer.send({ topic: 'stream', partition: 0, value });
            sent.push(value);
          } catch (error) {
            errors.push(error);
          }
        }
      })();
      await eventually('records flowing', async () => (sent.length >= 50 ? true : undefined));
      await cluster.kill(leader, 'SIGTERM');
      const before = sent.length;
      await eventually('records flowing through the new leader', async () =>
        sent.length >= before + 50 ? true : undefined,
      );
      stop = true;
      await streaming;
      await producer.close();
      expect(errors).toEqual([]);
      const now = await partitionsOf(cluster, bootstrap, 'stream');
      expect(now[0]!.leader).not.toBe(leader);
      // Every acknowledged record is there, in the order sent (a retried send may add a duplicate).
      const stored = await readAll(cluster, bootstrap, 'stream', 0);
      const firsts = stored.filter((v, i) => stored.indexOf(v) === i);
      expect(firsts).toEqual(sent);
    } finally {
      await cluster.close();
    }
  }, 120_000);
});
