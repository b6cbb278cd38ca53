import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, TestCluster } from './cluster.js';

/**
 * Partition reassignment and broker decommission with real node processes: a partition on nodes
 * 1-2 moves to 2-3 while a producer writes numbered records with acks=all (throttled copy traffic,
 * so the move takes a while under load); every acknowledged record is then on the new replica (read
 * from node 3 once it leads), and node 1 has deleted its log. A decommission of node 2 then leaves
 * it holding no replica.
 */
const TOPIC = 'moving';

describe('partition reassignment', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await TestCluster.start(3, {
      sessionTimeoutMs: 2000,
      // The in-sync set is checked every quarter of this: followers that caught up join quickly.
      replicaLagTimeMaxMs: 2000,
      replicationThrottleBytesPerSecond: 256 * 1024,
    });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  const describeTopic = async (via: number) => {
    const answer = await cluster.get(via, `/v1/topics/${TOPIC}`);
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.partitions[0] as { replicas: number[]; isr: number[]; leader: number };
  };
  const settled = async (via: number, replicas: number[]) => {
    const list = await cluster.get(via, '/v1/reassignments');
    if (list.status !== 200 || list.body.reassignments.length > 0) return undefined;
    const p = await describeTopic(via);
    return p.replicas.join(',') === replicas.join(',') && p.isr.length === replicas.length ? p : undefined;
  };

  it('moves a partition from nodes 1-2 to 2-3 under acks=all load; no acknowledged record is lost', async () => {
    const created = await cluster.post(1, '/v1/topics', { name: TOPIC, partitions: 1, replicationFactor: 2 });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const first = await cluster.post(1, '/v1/reassignments', {
      partitions: [{ topic: TOPIC, partition: 0, replicas: [1, 2] }],
    });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    await eventually('the partition to sit on nodes 1 and 2', () => settled(1, [1, 2]));

    // Numbered records, 100 bytes each, acks=all, through node 2 (a replica both before and after).
    const acked: number[] = [];
    let producing = true;
    let next = 0;
    const padding = 'x'.repeat(100);
    const producer = (async () => {
      while (producing) {
        const n = next++;
        const answer = await cluster
          .post(2, `/v1/topics/${TOPIC}/partitions/0/records?acks=all`, {
            records: [{ value: `${n} ${padding}` }],
          })
          .catch(() => undefined);
        if (answer?.status === 200) acked.push(n);
      }
    })();
    await eventually('some records acknowledged', async () => (acked.length >= 50 ? true : undefined));

    const started = await cluster.post(3, '/v1/reassignments', {
      partitions: [{ topic: TOPIC, partition: 0, replicas: [2, 3] }],
    });
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    expect(started.body.reassignments).toEqual([
      expect.objectContaining({
        topic: TOPIC,
        partition: 0,
        targetReplicas: [2, 3],
        addingReplicas: [3],
        removingReplicas: [1],
      }),
    ]);
    // A second reassignment while one runs is refused; the list shows the one in progress.
    const second = await cluster.post(1, '/v1/reassignments', {
      partitions: [{ topic: TOPIC, partition: 0, replicas: [1, 3] }],
    });
    expect([second.status, second.body.code]).toEqual([409, 'REASSIGNMENT_IN_PROGRESS']);

    await eventually('the reassignment to complete', () => settled(2, [2, 3]), 25_000);
    producing = false;
    await producer;
    expect(acked.length).toBeGreaterThan(50);
    // The leader took node 3 into the in-sync set through the controller, and counted it. It
    // counts when the controller's answer arrives, which may come after the committed change has
    // reached the node the test asked: the count is waited for, not read once.
    const expansions = async () => {
      let count = 0;
      for (const id of [1, 2]) {
        const text = await (await fetch(`${cluster.url(id)}/metrics`)).text();
        count += Number(/^sluice_isr_changes_total\{change="expand"\} (\d+)$/m.exec(text)?.[1] ?? 0);
      }
      return count >= 1 ? count : undefined;
    };
    expect(await eventually('the leader to count the expansion', expansions, 10_000)).toBeGreaterThanOrEqual(
      1,
    );

    // Node 1 no longer holds the partition: its log directory is gone.
    await eventually('node 1 to delete its log', async () =>
      existsSync(join(cluster.dir, 'node-1', `${TOPIC}-0`)) ? undefined : true,
    );
    // Node 3 holds every acknowledged record: stop node 2 (a controlled shutdown moves its
    // leadership at once) so that node 3 leads, and read from it.
    await cluster.kill(2, 'SIGTERM');
    const led = await eventually('node 3 to lead', async () => {
      const p = await describeTopic(3);
      return p.leader === 3 ? p : undefined;
    });
    expect(led.replicas).toEqual([2, 3]);
    const read = await eventually('node 3 to serve the partition', async () => {
      const answer = await cluster.get(
        3,
        `/v1/topics/${TOPIC}/partitions/0/records?offset=earliest&maxBytes=8388608`,
      );
      return answer.status === 200 ? answer.body : undefined;
    });
    const values = new Set((read.records as { value: string }[]).map((r) => Number(r.value.split(' ')[0])));
    const lost = acked.filter((n) => !values.has(n));
    expect(lost).toEqual([]);
    await cluster.startNode(2);
  }, 60_000);

  it('refuses bad reassignments with their codes, and a decommission the others cannot hold', async () => {
    const refusals = await Promise.all(
      [
        [{ topic: TOPIC, partition: 0, replicas: [] }, 'INVALID_REPLICA_ASSIGNMENT'],
        [{ topic: TOPIC, partition: 0, replicas: [2, 2] }, 'INVALID_REPLICA_ASSIGNMENT'],
        [{ topic: TOPIC, partition: 0, replicas: [2, 7] }, 'INVALID_REPLICA_ASSIGNMENT'],
        [{ topic: TOPIC, partition: 5, replicas: [2] }, 'UNKNOWN_TOPIC_OR_PARTITION'],
        [{ topic: TOPIC, partition: 0, replicas: null }, 'NO_REASSIGNMENT_IN_PROGRESS'],
      ].map(async ([partition, code]) => {
        const answer = await cluster.post(1, '/v1/reassignments', { partitions: [partition] });
        return [answer.body.code, code];
      }),
    );
    for (const [got, want] of refusals) expect(got).toBe(want);
    const wide = await cluster.post(1, '/v1/topics', { name: 'wide', partitions: 1, replicationFactor: 3 });
    expect(wide.status, JSON.stringify(wide.body)).toBe(201);
    const refused = await cluster.request(1, 'POST', '/v1/brokers/1/decommission');
    expect([refused.status, refused.body.code]).toEqual([400, 'INVALID_REPLICATION_FACTOR']);
    expect((await cluster.request(1, 'DELETE', '/v1/topics/wide')).status).toBe(200);
  }, 30_000);

  it('decommissions a broker: every replica moves off it', async () => {
    await eventually('three unfenced brokers', async () => {
      const answer = await cluster.get(1, '/v1/cluster');
      return answer.body.nodes?.filter((n: { fenced: boolean }) => !n.fenced).length === 3 ? true : undefined;
    });
    const created = await cluster.post(1, '/v1/topics', {
      name: 'spread',
      partitions: 4,
      replicationFactor: 2,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const answer = await cluster.request(3, 'POST', '/v1/brokers/2/decommission');
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    await eventually(
      'broker 2 to hold no replica',
      async () => {
        const metadata = await cluster.get(1, '/v1/metadata');
        const held = (
          metadata.body.topics as { partitions: { replicas: number[]; isr: number[] }[] }[]
        ).flatMap((t) => t.partitions.filter((p) => p.replicas.includes(2)));
        const list = await cluster.get(1, '/v1/reassignments');
        return held.length === 0 && list.body.reassignments.length === 0 ? metadata.body : undefined;
      },
      25_000,
    );
    const again = await cluster.request(1, 'POST', '/v1/brokers/2/decommission');
    expect(again.body).toMatchObject({ brokerId: 2, partitionsHeld: 0, reassignments: [] });
  }, 40_000);
});
