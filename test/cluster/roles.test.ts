import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Answer, eventually, SECRET, TestCluster } from './cluster.js';

/**
 * Node roles and the internal listener on real processes: a controller-only node votes and leads
 * the metadata quorum but holds no partitions; a broker-only node follows the log without voting;
 * with `--internal-listen` peers talk on their own ports and the public ports refuse `/internal/*`;
 * any node answers every voter's Raft status.
 */
const SESSION_TIMEOUT_MS = 2000;

interface ClusterNode {
  id: number;
  roles?: string[];
  fenced?: boolean;
}
interface VoterState {
  id: number;
  reachable: boolean;
  term?: number;
  commitIndex?: number;
  appliedIndex?: number;
  matchIndex?: number;
  lag?: number;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers });
  const text = await response.text();
  let body: Answer['body'] = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, contentType: response.headers.get('content-type'), body };
}

describe('one controller-only node and two broker-only nodes, on internal listeners', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await TestCluster.start(
      1,
      { sessionTimeoutMs: SESSION_TIMEOUT_MS },
      {
        internalListen: true,
        nodeOptions: (id) => ({ roles: id === 1 ? 'controller' : 'broker' }),
      },
    );
    await Promise.all([cluster.addNode(2), cluster.addNode(3)]);
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it('shows each node’s roles; the controller-only node registers no broker and is never placed', async () => {
    const nodes = await eventually('two unfenced brokers seen by node 1', async () => {
      const answer = await cluster.get(1, '/v1/cluster');
      const list = answer.body.nodes as ClusterNode[];
      return list.filter((n) => n.fenced === false).length === 2 ? list : undefined;
    });
    expect(nodes.map((n) => [n.id, n.roles])).toEqual([
      [1, ['controller']],
      [2, ['broker']],
      [3, ['broker']],
    ]);
    expect(nodes[0]).not.toHaveProperty('brokerEpoch');
    expect((await cluster.get(2, '/v1/cluster')).body.controllerId).toBe(1);

    // Three replicas need three brokers: the controller-only node does not count.
    const three = await cluster.post(1, '/v1/topics', { name: 'rf3', partitions: 1, replicationFactor: 3 });
    expect(three.status).toBe(400);
    expect(three.body.code).toBe('INVALID_REPLICATION_FACTOR');
    const created = await cluster.post(1, '/v1/topics', {
      name: 'spread',
      partitions: 6,
      replicationFactor: 2,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const described = await cluster.get(2, '/v1/topics/spread');
    for (const p of described.body.partitions as { leader: number; replicas: number[] }[]) {
      expect(p.replicas.sort()).toEqual([2, 3]);
      expect([2, 3]).toContain(p.leader);
    }
    // acks=all needs the follower's fetches, which go to the leader's internal listener.
    await eventually('both replicas in sync', async () => {
      const answer = await cluster.get(3, '/v1/topics/spread');
      return (answer.body.partitions as { isr: number[] }[]).every((p) => p.isr.length === 2)
        ? true
        : undefined;
    });
    const all = await cluster.post(1, '/v1/topics/spread/partitions/0/records?acks=all', {
      records: [{ value: 'replicated' }],
    });
    expect(all.status, JSON.stringify(all.body)).toBe(200);
  });

  it('forwards produce and fetch that reach the controller-only node to the partitions’ leaders', async () => {
    await cluster.post(2, '/v1/topics', { name: 'through-controller', partitions: 2, replicationFactor: 1 });
    for (const partition of [0, 1]) {
      const produced = await cluster.post(
        1,
        `/v1/topics/through-controller/partitions/${partition}/records`,
        {
          records: [{ value: `via the controller ${partition}` }],
        },
      );
      expect(produced.status, JSON.stringify(produced.body)).toBe(200);
      expect(['2', '3']).toContain(produced.servedBy);
      const read = await cluster.get(
        1,
        `/v1/topics/through-controller/partitions/${partition}/records?offset=earliest`,
      );
      expect(read.status).toBe(200);
      expect(read.body.records.map((r: { value: string }) => r.value)).toEqual([
        `via the controller ${partition}`,
      ]);
    }
  });

  it('serves the internal API only on the internal ports, and the public API only on the public ones', async () => {
    const secret = { 'sluice-cluster-secret': SECRET };
    for (const id of [1, 2, 3]) {
      const publicInternal = await get(`${cluster.url(id)}/internal/raft/status`, secret);
      expect(publicInternal.status).toBe(404);
      expect(publicInternal.contentType).toMatch(/problem\+json/);
      expect(publicInternal.body.code).toBe('NOT_FOUND');
      const internal = await get(`${cluster.internalUrl(id)}/internal/raft/status`, secret);
      expect(internal.status).toBe(200);
      expect(internal.body.id).toBe(id);
      const internalPublic = await get(`${cluster.internalUrl(id)}/v1/cluster`);
      expect(internalPublic.status).toBe(404);
      expect(internalPublic.body.code).toBe('NOT_FOUND');
      // Health checks answer on both.
      expect((await get(`${cluster.internalUrl(id)}/livez`)).status).toBe(200);
    }
    // The internal listener still wants the secret.
    const noSecret = await get(`${cluster.internalUrl(2)}/internal/raft/status`);
    expect(noSecret.status).toBe(401);
  });

  it('answers every voter’s status on a broker-only node, and falls back to what it knows when the controller is gone', async () => {
    const quorum = (await cluster.get(3, '/v1/cluster')).body.metadata.quorum;
    expect(quorum.source).toBe('controller');
    expect(quorum.controllerId).toBe(1);
    const [voter] = quorum.voters as VoterState[];
    expect(voter).toMatchObject({ id: 1, reachable: true, lag: 0 });
    expect(voter!.term).toBeGreaterThan(0);
    expect(voter!.commitIndex).toBeGreaterThan(0);
    expect(voter!.matchIndex).toBeGreaterThanOrEqual(voter!.commitIndex!);

    await cluster.kill(1);
    const alone = await eventually('node 3 reporting voter 1 unreachable', async () => {
      const answer = await cluster.get(3, '/v1/cluster');
      return answer.body.metadata.quorum.voters[0].reachable === false
        ? answer.body.metadata.quorum
        : undefined;
    });
    expect(alone.source).toBe('local');
    expect(alone.voters).toEqual([{ id: 1, reachable: false }]);
  });
});

describe('three controllers and one broker-only node', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await TestCluster.start(
      3,
      { sessionTimeoutMs: SESSION_TIMEOUT_MS },
      {
        nodeOptions: (id) => (id === 4 ? { roles: 'broker' } : {}),
      },
    );
    await cluster.addNode(4);
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it('gives the broker-only node partitions but no vote, and it reports every voter’s term, indexes and lag', async () => {
    const view = await eventually('four unfenced brokers seen by node 4', async () => {
      const answer = await cluster.get(4, '/v1/cluster');
      const unfenced = (answer.body.nodes as ClusterNode[]).filter((n) => n.fenced === false);
      return unfenced.length === 4 && answer.body.metadata.quorum?.source === 'controller'
        ? answer.body
        : undefined;
    });
    expect((view.nodes as ClusterNode[]).map((n) => [n.id, n.roles])).toEqual([
      [1, ['controller', 'broker']],
      [2, ['controller', 'broker']],
      [3, ['controller', 'broker']],
      [4, ['broker']],
    ]);
    expect(view.metadata.voters.sort()).toEqual([1, 2, 3]);
    const voters = view.metadata.quorum.voters as VoterState[];
    expect(voters.map((v) => v.id)).toEqual([1, 2, 3]);
    for (const v of voters) {
      expect(v.reachable).toBe(true);
      expect(v.term).toBe(voters[0]!.term);
      expect(v.appliedIndex).toBeGreaterThan(0);
      expect(v.lag).toBeGreaterThanOrEqual(0);
      expect(v.matchIndex).toBeGreaterThan(0);
    }
    // The followers the controller counts, now on a node that is not the controller.
    const controllerId = view.controllerId as number;
    expect(view.metadata.followers.map((f: { id: number }) => f.id).sort()).toEqual(
      [1, 2, 3, 4].filter((id) => id !== controllerId),
    );

    const created = await cluster.post(4, '/v1/topics', {
      name: 'four',
      partitions: 8,
      replicationFactor: 1,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const leaders = new Set((created.body.partitions as { leader: number }[]).map((p) => p.leader));
    expect(leaders.has(4)).toBe(true);
  });
});
