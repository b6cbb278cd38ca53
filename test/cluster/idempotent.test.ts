import { afterAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { FaultyProxy } from '../producers/faulty-proxy.js';
import { eventually, TestCluster } from './cluster.js';

/**
 * Idempotent producers across a leader's death (issue 12), with node processes: the SDK producer
 * reaches each node through a faulty proxy (answers dropped after the append, requests duplicated
 * and delayed, seeded) that the node advertises to clients, while nodes reach each other directly.
 * Halfway, the partition's leader is killed with SIGKILL and later restarted. Every record is
 * acknowledged and the partition holds each exactly once, in the order sent.
 */
const SEED = Number(process.env.PROXY_SEED ?? 29);
const RECORDS = 600;
const SESSION_TIMEOUT_MS = 2000;

let cluster: TestCluster | undefined;
const proxies = new Map<number, FaultyProxy>();

afterAll(async () => {
  for (const proxy of proxies.values()) await proxy.close();
  await cluster?.close();
});

describe('an idempotent producer through faults and a leader killed', () => {
  it(`lands every record once, in order (seed ${SEED}; PROXY_SEED=n to vary)`, async () => {
    for (const id of [1, 2, 3]) proxies.set(id, await FaultyProxy.start(SEED + id));
    const created = await TestCluster.create(
      3,
      { sessionTimeoutMs: SESSION_TIMEOUT_MS, replicaLagTimeMaxMs: 2000 },
      {
        nodeOptions: (id) => ({
          // Clients are told the proxy's address; peers go to each other's real ports.
          advertise: `127.0.0.1:${proxies.get(id)!.port}`,
          peerAddressOverrides: Object.fromEntries(
            [1, 2, 3]
              .filter((p) => p !== id)
              .map((p) => [p, { host: '127.0.0.1', port: created.ports.get(p)! }]),
          ),
        }),
      },
    );
    cluster = created;
    for (const [id, proxy] of proxies) proxy.target(created.url(id));
    await created.startAll();
    const topic = await created.post(1, '/v1/topics', {
      name: 'exactly-once',
      partitions: 1,
      replicationFactor: 3,
      configs: { 'min.insync.replicas': '2' },
    });
    expect(topic.status, JSON.stringify(topic.body)).toBe(201);

    const producer = new Producer({
      bootstrap: `http://127.0.0.1:${proxies.get(1)!.port}`,
      lingerMs: 1,
      batchBytes: 300,
      retries: 200,
      retryBackoffMs: 20,
      requestTimeoutMs: 3000,
    });
    const failed: string[] = [];
    let acked = 0;
    const sends: Promise<void>[] = [];
    let killed: number | undefined;
    for (let i = 0; i < RECORDS; i++) {
      sends.push(
        producer.send({ topic: 'exactly-once', partition: 0, value: `r${i}` }).then(
          () => {
            acked++;
          },
          (error: unknown) => {
            failed.push(`r${i}: ${(error as Error).message}`);
          },
        ),
      );
      if (i === RECORDS / 2) {
        const leader = (await created.get(2, '/v1/metadata?topics=exactly-once')).body.topics[0].partitions[0]
          .leader as number;
        killed = leader;
        await created.kill(leader);
      }
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(sends);
    await producer.close();
    if (failed.length > 0) {
      for (const id of [1, 2, 3]) console.error(`--- node ${id}\n${created.logOf(id)}`);
    }
    expect(failed, `seed ${SEED}`).toEqual([]);
    expect(acked).toBe(RECORDS);
    await created.startNode(killed!);
    for (const proxy of proxies.values()) proxy.heal();

    const values = await eventually('every replica to hold the records', async () => {
      const read = await created.get(
        killed === 1 ? 2 : 1,
        '/v1/topics/exactly-once/partitions/0/records?offset=earliest&maxBytes=8388608',
      );
      return read.status === 200 && read.body.records.length >= RECORDS
        ? (read.body.records as { value: string }[]).map((r) => r.value)
        : undefined;
    });
    expect(values, `seed ${SEED}`).toEqual(Array.from({ length: RECORDS }, (_, i) => `r${i}`));
    const counts = [...proxies.values()].reduce(
      (n, p) => ({
        dropped: n.dropped + p.counts.answersDropped,
        duplicated: n.duplicated + p.counts.duplicated,
      }),
      { dropped: 0, duplicated: 0 },
    );
    expect(counts.dropped).toBeGreaterThan(0);
    expect(counts.duplicated).toBeGreaterThan(0);
  }, 120_000);
});
