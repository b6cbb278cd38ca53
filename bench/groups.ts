/**
 * Consumer groups, against one `sluice start` process:
 * - rebalance time: N members (10, then 100) join a group over a topic of N partitions, each
 *   heartbeating in turn (one round: every member heartbeats once, as each would once per
 *   heartbeat interval); then one more member joins. The members read nothing, so a partition
 *   they give up is free at once; a member with records handed out beyond its commit holds its
 *   partition one round longer, until it acknowledges. Counted: the heartbeat rounds and the time
 *   until the group is stable again (every partition held by its target owner). Target: within
 *   two heartbeat intervals at 100 members.
 * - group poll against partition fetch, in the same run: the same records (PARTITIONS partitions
 *   of RECORDS records of 100 bytes) read to the end once by partition fetches (one partition
 *   after the other, msgpack, 1 MiB per fetch) and once by one group member's polls (msgpack,
 *   1 MiB per partition per poll), in alternating rounds; the figure is the ratio of the medians
 *   (target: at least 0.7x).
 * - commits/s: CONCURRENCY members each committing its own partition, back to back, for SECONDS.
 *
 * The client is this Node process on both sides (HTTP/1.1 through fetch, the same code reading
 * the answers' offsets), so the ratio compares the broker's two read paths under one client.
 *
 *   npm run bench:groups
 *   ROUNDS=5 RECORDS=200000 npm run bench:groups
 *
 * Prints the figures and appends a dated row to bench/RESULTS.md.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeBatch } from '../src/protocol/batch.js';
import { decodeGroupPoll, splitFetchResponse } from '../src/protocol/group-poll.js';
import { median } from './h2load.js';
import { freePort } from './ports.js';
import { sluiceStart } from './processes.js';

const ROOT = join(import.meta.dirname, '..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const RECORDS = Number(process.env.RECORDS ?? 100_000);
const PARTITIONS = Number(process.env.PARTITIONS ?? 4);
const SECONDS = Number(process.env.SECONDS ?? 3);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8);
const MSGPACK = 'application/vnd.msgpack';

let base = '';

async function call(method: string, path: string, body?: unknown, accept = 'application/json') {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { accept, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  if (response.status >= 400) throw new Error(`${method} ${path}: ${response.status} ${bytes.toString()}`);
  // biome-ignore lint/suspicious/noExplicitAny: the bench reads a few known fields
  return accept === 'application/json' ? (JSON.parse(bytes.toString()) as any) : bytes;
}

async function startBroker(dataDir: string): Promise<ChildProcess> {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const child = spawn(
    process.execPath,
    [...sluiceStart(ROOT, port, dataDir), '--topic-config', 'offsets.topic.num.partitions=10'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  for (let i = 0; ; i++) {
    const ready = await fetch(`${base}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) return child;
    if (i > 300) throw new Error('the node did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * N members stable over N partitions, then one more: heartbeat rounds and ms until stable again.
 * With `uncommitted`, every member first polls a record of its partition without committing it,
 * so that a partition it must give up moves only once it acknowledges. With `earlyAck`, a member
 * told of a revocation acknowledges at once (a heartbeat naming what it still holds), as the SDK
 * consumer does; without, on its next turn.
 */
async function rebalance(
  members: number,
  mode: { uncommitted: boolean; earlyAck: boolean } = { uncommitted: false, earlyAck: true },
): Promise<{ rounds: number; ms: number; joinRounds: number }> {
  const name = `rb-${members}-${mode.uncommitted ? 'u' : 'c'}${mode.earlyAck ? 'e' : 'n'}`;
  const topic = name;
  const group = name;
  await call('POST', '/v1/topics', { name: topic, partitions: members });
  if (mode.uncommitted)
    for (let p = 0; p < members; p++) {
      const response = await fetch(`${base}/v1/topics/${topic}/partitions/${p}/records?acks=1`, {
        method: 'POST',
        headers: { 'content-type': 'application/vnd.sluice.batches' },
        body: encodeBatch([{ value: Buffer.from('x'), timestamp: Date.now() }]),
      });
      if (response.status !== 200) throw new Error(`produce: ${response.status}`);
      await response.arrayBuffer();
    }
  const ids: string[] = [];
  for (let i = 0; i < members; i++)
    ids.push(
      (await call('POST', `/v1/groups/${group}/members`, { topics: [topic], sessionTimeoutMs: 60_000 }))
        .memberId,
    );
  const held = new Map<string, string>();
  const beat = async (id: string) => {
    const view = await call('POST', `/v1/groups/${group}/members/${id}/heartbeat`, {});
    const now = view.assignment.map((tp: { partition: number }) => tp.partition).join(',');
    const before = held.get(id);
    held.set(id, now);
    const lost = (before ?? '').split(',').some((p) => p !== '' && !now.split(',').includes(p));
    if (lost && mode.earlyAck)
      held.set(
        id,
        (
          await call('POST', `/v1/groups/${group}/members/${id}/heartbeat`, { owned: view.assignment })
        ).assignment
          .map((tp: { partition: number }) => tp.partition)
          .join(','),
      );
  };
  const settle = async (): Promise<number> => {
    for (let round = 1; round <= 50; round++) {
      for (const id of ids) await beat(id);
      const d = await call('GET', `/v1/groups/${group}`);
      if (d.state === 'stable') return round;
    }
    throw new Error(`group ${group} did not settle`);
  };
  const joinRounds = await settle();
  if (mode.uncommitted)
    for (const id of ids) {
      const body = (await call(
        'GET',
        `/v1/groups/${group}/members/${id}/records?maxWaitMs=0&autoCommit=false`,
        undefined,
        MSGPACK,
      )) as Buffer;
      const got = decodeGroupPoll(body).partitions.filter((p) => splitFetchResponse(p.fetch).batchCount > 0);
      if (got.length !== 1) throw new Error(`member ${id} polled ${got.length} partitions with records`);
    }
  const started = performance.now();
  ids.push(
    (await call('POST', `/v1/groups/${group}/members`, { topics: [topic], sessionTimeoutMs: 60_000 }))
      .memberId,
  );
  const rounds = await settle();
  const ms = performance.now() - started;
  for (const id of ids) await call('DELETE', `/v1/groups/${group}/members/${id}`);
  return { rounds, ms, joinRounds };
}

async function load(topic: string): Promise<void> {
  await call('POST', '/v1/topics', { name: topic, partitions: PARTITIONS });
  const value = Buffer.alloc(100, 'x');
  const perPartition = Math.ceil(RECORDS / PARTITIONS);
  for (let p = 0; p < PARTITIONS; p++) {
    for (let done = 0; done < perPartition; done += 1000) {
      const n = Math.min(1000, perPartition - done);
      const batch = encodeBatch(Array.from({ length: n }, () => ({ value, timestamp: Date.now() })));
      const response = await fetch(`${base}/v1/topics/${topic}/partitions/${p}/records?acks=1`, {
        method: 'POST',
        headers: { 'content-type': 'application/vnd.sluice.batches' },
        body: batch,
      });
      if (response.status !== 200) throw new Error(`produce: ${response.status}`);
      await response.arrayBuffer();
    }
  }
}

/** Reads every partition to its end with partition fetches: records/s. */
async function fetchAll(topic: string): Promise<number> {
  const started = performance.now();
  let records = 0;
  for (let p = 0; p < PARTITIONS; p++) {
    let offset = 0;
    for (;;) {
      const body = (await call(
        'GET',
        `/v1/topics/${topic}/partitions/${p}/records?offset=${offset}&maxBytes=1048576`,
        undefined,
        MSGPACK,
      )) as Buffer;
      const part = splitFetchResponse(body);
      if (part.batchCount === 0) break;
      records += part.nextOffset - offset;
      offset = part.nextOffset;
    }
  }
  return records / ((performance.now() - started) / 1000);
}

/** Reads every partition to its end as one group member's polls: records/s. */
async function pollAll(topic: string, group: string): Promise<number> {
  const member = await call('POST', `/v1/groups/${group}/members`, {
    topics: [topic],
    sessionTimeoutMs: 60_000,
  });
  const started = performance.now();
  let records = 0;
  for (;;) {
    const body = (await call(
      'GET',
      `/v1/groups/${group}/members/${member.memberId}/records?maxBytes=${PARTITIONS * 1048576}`,
      undefined,
      MSGPACK,
    )) as Buffer;
    const poll = decodeGroupPoll(body);
    let got = 0;
    for (const p of poll.partitions) {
      const part = splitFetchResponse(p.fetch);
      if (part.batchCount > 0) got += part.nextOffset - p.offset;
    }
    if (got === 0) break;
    records += got;
  }
  const rate = records / ((performance.now() - started) / 1000);
  await call('DELETE', `/v1/groups/${group}/members/${member.memberId}`);
  return rate;
}

/** CONCURRENCY members, each committing its own partition back to back: commits/s. */
async function commits(): Promise<number> {
  const topic = 'commits';
  await call('POST', '/v1/topics', { name: topic, partitions: CONCURRENCY });
  const members = [];
  for (let i = 0; i < CONCURRENCY; i++)
    members.push(
      await call('POST', '/v1/groups/committers/members', { topics: [topic], sessionTimeoutMs: 60_000 }),
    );
  // Settle: every member holds one partition at the group's epoch.
  for (let round = 0; round < 10; round++)
    for (const m of members)
      Object.assign(m, await call('POST', `/v1/groups/committers/members/${m.memberId}/heartbeat`, {}));
  const deadline = performance.now() + SECONDS * 1000;
  let count = 0;
  const started = performance.now();
  await Promise.all(
    members.map(async (m) => {
      const partition = m.assignment[0].partition;
      for (let offset = 1; performance.now() < deadline; offset++) {
        await call('POST', '/v1/groups/committers/offsets', {
          memberId: m.memberId,
          memberEpoch: m.memberEpoch,
          offsets: [{ topic, partition, offset }],
        });
        count++;
      }
    }),
  );
  return count / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-bench-groups-'));
  const child = await startBroker(dataDir);
  try {
    const rb10 = await rebalance(10);
    const rb100 = await rebalance(100);
    console.log(`rebalance 10 members: ${rb10.rounds} heartbeat round(s), ${rb10.ms.toFixed(0)} ms`);
    console.log(`rebalance 100 members: ${rb100.rounds} heartbeat round(s), ${rb100.ms.toFixed(0)} ms`);
    const late10 = await rebalance(10, { uncommitted: true, earlyAck: false });
    const late100 = await rebalance(100, { uncommitted: true, earlyAck: false });
    const early10 = await rebalance(10, { uncommitted: true, earlyAck: true });
    const early100 = await rebalance(100, { uncommitted: true, earlyAck: true });
    for (const [what, r] of [
      ['10 members, uncommitted reads, acknowledging on the next turn', late10],
      ['100 members, uncommitted reads, acknowledging on the next turn', late100],
      ['10 members, uncommitted reads, acknowledging at once', early10],
      ['100 members, uncommitted reads, acknowledging at once', early100],
    ] as const)
      console.log(`rebalance ${what}: ${r.rounds} heartbeat round(s), ${r.ms.toFixed(0)} ms`);
    await load('reads');
    const fetchRates: number[] = [];
    const pollRates: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      fetchRates.push(await fetchAll('reads'));
      pollRates.push(await pollAll('reads', `reader-${round}`));
      console.log(
        `round ${round + 1}: fetch ${fetchRates.at(-1)!.toFixed(0)} rec/s, group poll ${pollRates.at(-1)!.toFixed(0)} rec/s`,
      );
    }
    const fetchRate = median(fetchRates);
    const pollRate = median(pollRates);
    const commitRate = await commits();
    const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
    const summary = [
      `rebalance (one member joins a stable group of members holding nothing uncommitted, every member heartbeating in turn): 10 members ${rb10.rounds} heartbeat round(s), ${rb10.ms.toFixed(0)} ms; 100 members ${rb100.rounds} round(s), ${rb100.ms.toFixed(0)} ms; members holding uncommitted reads, each acknowledging a revocation at once (as the SDK does): 10 members ${early10.rounds} round(s), ${early10.ms.toFixed(0)} ms, 100 members ${early100.rounds} round(s), ${early100.ms.toFixed(0)} ms; acknowledging on their next turn instead: 10 members ${late10.rounds}, 100 members ${late100.rounds} round(s), ${late100.ms.toFixed(0)} ms (target: within 2 heartbeat intervals at 100)`,
      `group poll ${fmt(pollRate)} rec/s = ${(pollRate / fetchRate).toFixed(2)}x partition fetch ${fmt(fetchRate)} rec/s (target 0.7x; ${RECORDS} records of 100 B over ${PARTITIONS} partitions, msgpack, 1 MiB per partition per request, medians of ${ROUNDS} alternating rounds)`,
      `commits ${fmt(commitRate)} req/s (${CONCURRENCY} members committing back to back for ${SECONDS} s, acks=all to __consumer_offsets)`,
      `load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after on 2 cores`,
    ].join('; ');
    console.log(summary);
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
    const date = new Date().toISOString().slice(0, 10);
    appendFileSync(
      join(ROOT, 'bench', 'RESULTS.md'),
      `| groups (1 node; Node fetch client on HTTP/1.1 for both reads, baseline partition fetch in the same run) | ${date} | ${commit} | ${summary} |\n`,
    );
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
