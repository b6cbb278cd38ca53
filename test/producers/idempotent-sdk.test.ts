import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';
import { FaultyProxy } from './faulty-proxy.js';

/**
 * The SDK producer is idempotent by default: through a proxy that drops answers after the append,
 * duplicates requests and lets requests overtake each other (seeded), every record lands exactly
 * once and in the order sent, with 5 batches in flight per partition. The same traffic without
 * idempotence shows duplicates, so the check can fail.
 */

const SEED = Number(process.env.PROXY_SEED ?? 17);
const RECORDS = 400;
const PARTITIONS = 2;

let dir: string;
let node: SluiceNode | undefined;
let proxy: FaultyProxy | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-idem-sdk-'));
});
afterEach(async () => {
  await proxy?.close();
  await node?.close();
  node = undefined;
  proxy = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** A node behind the faulty proxy: it advertises the proxy's address, so the SDK goes through it. */
async function faultyNode(seed: number): Promise<{ url: string; direct: string; proxy: FaultyProxy }> {
  proxy = await FaultyProxy.start(seed);
  node = await startNode({
    dataDir: dir,
    port: 0,
    logLevel: 'silent',
    advertise: `127.0.0.1:${proxy.port}`,
  });
  const direct = `http://127.0.0.1:${node.address.port}`;
  proxy.target(direct);
  const created = await fetch(`${direct}/v1/topics`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 't', partitions: PARTITIONS }),
  });
  expect(created.status).toBe(201);
  return { url: `http://127.0.0.1:${proxy.port}`, direct, proxy };
}

async function partitionValues(direct: string, partition: number): Promise<string[]> {
  const values: string[] = [];
  let offset = 0;
  for (;;) {
    const response = await fetch(
      `${direct}/v1/topics/t/partitions/${partition}/records?offset=${offset}&maxBytes=1000000`,
    );
    const body = (await response.json()) as { records: { offset: number; value: string }[] };
    if (body.records.length === 0) return values;
    for (const r of body.records) values.push(r.value);
    offset = body.records[body.records.length - 1]!.offset + 1;
  }
}

/** Sends RECORDS keyed records without waiting between them; what each partition was sent, in order. */
async function sendAll(producer: Producer): Promise<{ sent: Map<number, string[]>; failed: unknown[] }> {
  const sent = new Map<number, string[]>();
  const failed: unknown[] = [];
  const sends = Array.from({ length: RECORDS }, (_, i) => {
    const partition = i % PARTITIONS;
    const value = `r${i}`;
    const list = sent.get(partition) ?? [];
    list.push(value);
    sent.set(partition, list);
    return producer.send({ topic: 't', partition, value }).catch((error: unknown) => {
      failed.push(error);
    });
  });
  await Promise.all(sends);
  await producer.close();
  return { sent, failed };
}

describe('the idempotent SDK producer through a faulty proxy', () => {
  it(`lands every record once and in order (seed ${SEED}; PROXY_SEED=n to vary)`, async () => {
    const { url, direct } = await faultyNode(SEED);
    const producer = new Producer({
      bootstrap: url,
      lingerMs: 1,
      batchBytes: 200,
      retries: 50,
      retryBackoffMs: 5,
    });
    const { sent, failed } = await sendAll(producer);
    proxy!.heal();
    expect(
      failed.map((e) => (e as Error).message),
      `seed ${SEED}`,
    ).toEqual([]);
    for (let p = 0; p < PARTITIONS; p++)
      expect(await partitionValues(direct, p), `seed ${SEED}`).toEqual(sent.get(p));
    const { answersDropped, duplicated, delayed } = proxy!.counts;
    expect(answersDropped).toBeGreaterThan(0);
    expect(duplicated).toBeGreaterThan(0);
    expect(delayed).toBeGreaterThan(0);
  }, 60_000);

  it('without idempotence, the same faults store duplicates', async () => {
    const { url, direct } = await faultyNode(SEED);
    const producer = new Producer({
      bootstrap: url,
      idempotent: false,
      lingerMs: 1,
      batchBytes: 200,
      retries: 50,
      retryBackoffMs: 5,
    });
    const { sent } = await sendAll(producer);
    proxy!.heal();
    let stored = 0;
    for (let p = 0; p < PARTITIONS; p++) stored += (await partitionValues(direct, p)).length;
    const total = [...sent.values()].reduce((n, list) => n + list.length, 0);
    expect(stored).toBeGreaterThan(total);
  }, 60_000);

  it('refuses idempotence without acks all, and more than 5 batches in flight', () => {
    expect(() => new Producer({ bootstrap: 'http://127.0.0.1:1', acks: 1, idempotent: true })).toThrow(
      /acks/,
    );
    expect(() => new Producer({ bootstrap: 'http://127.0.0.1:1', maxInFlight: 6 })).toThrow(/at most 5/);
    // acks=1 alone is simply not idempotent.
    expect(() => new Producer({ bootstrap: 'http://127.0.0.1:1', acks: 1 })).not.toThrow();
  });
});
