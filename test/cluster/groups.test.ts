import { afterAll, describe, expect, it } from 'vitest';
import { Consumer } from '../../src/client/consumer.js';
import { isSluiceError } from '../../src/common/errors.js';
import { OFFSETS_TOPIC, offsetsPartitionFor } from '../../src/groups/offsets-store.js';
import { eventually, TestCluster } from './cluster.js';

/**
 * A consumer group across the death of its coordinator, with node processes: the group's state and
 * committed offsets are in `__consumer_offsets` (replicated to 3 nodes, written with acks=all), so
 * when the coordinator's node is killed with SIGKILL the partition's new leader loads them and
 * becomes the coordinator; the member, which reaches the group through another node, carries on
 * under the same member id from the committed offsets.
 */
const SESSION_TIMEOUT_MS = 2000;
let cluster: TestCluster | undefined;

afterAll(async () => {
  await cluster?.close();
});

describe('a consumer group whose coordinator is killed', () => {
  it('keeps the group and its offsets on the new coordinator, and the member carries on', async () => {
    cluster = await TestCluster.start(3, {
      sessionTimeoutMs: SESSION_TIMEOUT_MS,
      replicaLagTimeMaxMs: 2000,
      configs: { 'offsets.topic.num.partitions': 3 },
    });
    const c = cluster;
    const created = await c.post(1, '/v1/topics', {
      name: 'gc',
      partitions: 4,
      replicationFactor: 3,
      configs: { 'min.insync.replicas': '2' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    for (let p = 0; p < 4; p++) {
      const records = Array.from({ length: 10 }, (_, i) => ({ value: `${p}-${i}` }));
      const produced = await c.post(1, `/v1/topics/gc/partitions/${p}/records?acks=all`, { records });
      expect(produced.status, JSON.stringify(produced.body)).toBe(200);
    }
    // The offsets topic comes with the first group; then pick a group node 1 does not coordinate.
    // The node that creates the offsets topic may not lead the group's partition: NOT_COORDINATOR
    // (retriable) until its metadata names the leader to forward to.
    await eventually('a first commit', async () => {
      const probe = await c.post(1, '/v1/groups/probe/offsets', {
        offsets: [{ topic: 'gc', partition: 0, offset: 0 }],
      });
      if (probe.status !== 200 && !probe.body.retriable) throw new Error(JSON.stringify(probe.body));
      return probe.status === 200 ? true : undefined;
    });
    const leaders = await eventually('the offsets topic leaders', async () => {
      const m = (await c.get(1, `/v1/metadata?topics=${OFFSETS_TOPIC}`)).body;
      const partitions = m.topics[0]?.partitions as { partition: number; leader: number }[] | undefined;
      return partitions && partitions.length === 3 && partitions.every((p) => p.leader > 0)
        ? partitions
        : undefined;
    });
    const group = Array.from({ length: 100 }, (_, i) => `g${i}`).find(
      (g) => leaders.find((p) => p.partition === offsetsPartitionFor(g, 3))!.leader !== 1,
    )!;
    const coordinator = leaders.find((p) => p.partition === offsetsPartitionFor(group, 3))!.leader;

    const consumer = new Consumer({
      bootstrap: c.url(1),
      group,
      topics: ['gc'],
      maxWaitMs: 200,
      autoCommit: false,
    });
    const seen: string[] = [];
    const pollOnce = async () => {
      try {
        for (const r of await consumer.poll()) seen.push(Buffer.from(r.value!).toString());
      } catch (error) {
        if (!isSluiceError(error) || !error.retriable) throw error;
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    try {
      await eventually('20 records', async () => {
        await pollOnce();
        return seen.length >= 20 ? true : undefined;
      });
      const memberId = consumer.memberId;
      await consumer.commit();
      const before = (await c.get(1, `/v1/groups/${group}`)).body;
      expect(before.coordinator).toBe(coordinator);
      const committed = before.partitions.map((p: { committed: number | null }) => p.committed);
      expect(committed.some((o: number | null) => o !== null && o > 0)).toBe(true);

      await c.kill(coordinator);
      // The new coordinator answers with the same group, member and offsets.
      const after = await eventually(
        'the group on its new coordinator',
        async () => {
          const d = await c.get(1, `/v1/groups/${group}`);
          return d.status === 200 && d.body.coordinator !== coordinator ? d.body : undefined;
        },
        30_000,
      );
      expect(after.members.map((m: { memberId: string }) => m.memberId)).toEqual([memberId]);
      expect(after.partitions.map((p: { committed: number | null }) => p.committed)).toEqual(committed);
      // The member carries on: every record reaches it (those after the commit perhaps twice).
      await eventually(
        'all 40 records',
        async () => {
          await pollOnce();
          return new Set(seen).size >= 40 ? true : undefined;
        },
        30_000,
      );
      expect(consumer.memberId).toBe(memberId);
      await consumer.commit();
      const final = (await c.get(1, `/v1/groups/${group}`)).body;
      expect(final.partitions.map((p: { committed: number }) => p.committed)).toEqual([10, 10, 10, 10]);
    } finally {
      await consumer.close().catch(() => {});
    }
  }, 90_000);
});
