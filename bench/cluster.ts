/**
 * The cluster benchmark: a 3-node cluster of `sluice start` processes on loopback (every node a
 * voter and a broker), and what an operator waits for.
 *
 *   npm run bench:cluster
 *   TOPICS=1000 PARTITIONS=1,100,1000 SESSION_MS=3000 ROUNDS=5 STEP_SECONDS=3 npm run bench:cluster
 *
 * - creating TOPICS topics (one partition each) through a node that is not the controller;
 * - from kill -9 of a broker to the controller fencing it and every partition it led marked
 *   leaderless (replication factor 1: no replica takes over; the figure is the detection, compared
 *   with the session timeout), then from its restart to it leading them all again. Before each
 *   kill a topic of 3 × PARTITIONS partitions is added, so the broker leads its third of those plus
 *   its share of the TOPICS topics (every partition it leads is counted and waited for);
 * - controller failover: from kill -9 of the active controller to a topic created through a
 *   survivor;
 * - produce through a node that does not lead the partition (forwarded over HTTP/2) against one
 *   sent to the leader, interleaved rounds of h2load in the same run: the ratio is forwarded/direct;
 * - a partition with three in-sync replicas: acks=all against acks=1, interleaved rounds;
 * - failover of replicated partitions: for each of REPLICATED_PARTITIONS (1,100,1000), a topic of
 *   3 × that many partitions with three replicas (in topics of at most 300), every one in sync; kill -9 of a broker (not the
 *   controller) that leads about that many of them, then the time until every partition it led
 *   has a new leader in the metadata, and until an acks=all produce to each, sent to that new
 *   leader, has succeeded (the new leader serves). The killed broker is started again after.
 *
 * STEPS picks some of them (topics,fence,failover,forward,acks,replicated-failover; all when
 * absent), e.g. `STEPS=replicated-failover REPLICATED_PARTITIONS=1,100 npm run bench:cluster`.
 * The failover probes (one acks=all produce per partition) go PROBES_IN_FLIGHT at a time (64 when
 * absent; as many as there are partitions measures when the new leaders serve rather than how
 * fast one client gets through 1,000 acks=all round trips 64 at a time). BENCH_TRACE=1 prints the
 * in-sync wait and, per probe round, what is pending and why it was refused.
 * Prints the figures and appends a dated row to bench/RESULTS.md, with the load average.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { packr } from '../src/protocol/msgpack.js';
import { cpuDuring, cpuSeconds } from './cpu.js';
import { ensureH2load, type Figure, h2load, h2loadAtRate, median } from './h2load.js';
import { freePort } from './ports.js';

const ROOT = join(import.meta.dirname, '..');
const TOPICS = Number(process.env.TOPICS ?? 1000);
const PARTITION_COUNTS = (process.env.PARTITIONS ?? '1,100,1000').split(',').map(Number);
const SESSION_MS = Number(process.env.SESSION_MS ?? 3000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const STEP_SECONDS = Number(process.env.STEP_SECONDS ?? 3);
const REPLICATED_COUNTS = (process.env.REPLICATED_PARTITIONS ?? '1,100,1000').split(',').map(Number);
const ALL_STEPS = [
  'topics',
  'fence',
  'failover',
  'forward',
  'acks',
  'replicated-failover',
  'catchup',
] as const;
/** Bytes a stopped follower falls behind before it restarts and catches up (`catchup` step). */
const CATCHUP_MB = Number(process.env.CATCHUP_MB ?? 1024);
/** Fixed rate of the latency runs (1000-record requests per second, over 4 clients). */
const LATENCY_RPS = Number(process.env.LATENCY_RPS ?? 40);
const STEPS = new Set(process.env.STEPS ? process.env.STEPS.split(',') : ALL_STEPS);
for (const step of STEPS)
  if (!(ALL_STEPS as readonly string[]).includes(step))
    throw new Error(`STEPS: ${step} is not one of ${ALL_STEPS.join(',')}`);
/** Produce requests in flight at once while probing the new leaders. */
const PROBES_IN_FLIGHT_MAX = Number(process.env.PROBES_IN_FLIGHT ?? 64);
/** BENCH_TRACE=1: the failover steps print, per probe round, what is pending and why. */
const TRACE = process.env.BENCH_TRACE === '1';
/** Refusals of the probes since the last trace line, by code. */
const refusals = new Map<string, number>();
/** The most partitions one topic of the replicated failover step has (several topics beyond). */
const TOPIC_PARTITIONS_MAX = 300;
const SECRET = 'bench-cluster-secret-0123456789';
const NODES = 3;

const children = new Map<number, ChildProcess>();
const ports = new Map<number, number>();
let dataRoot = '';

function quorum(): string {
  return [...ports].map(([id, port]) => `${id}@127.0.0.1:${port}`).join(',');
}

const url = (id: number) => `http://127.0.0.1:${ports.get(id)}`;

async function call(id: number, method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(url(id) + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (response.status >= 300) throw new Error(`${method} ${path} on node ${id}: ${response.status} ${text}`);
  return text === '' ? undefined : JSON.parse(text);
}

async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  pollMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

async function startNode(id: number, readyTimeoutMs = 60_000): Promise<void> {
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'bin', 'sluice.js'),
      'start',
      '--node-id',
      String(id),
      '--port',
      String(ports.get(id)),
      '--data-dir',
      join(dataRoot, `node-${id}`),
      '--controller-quorum',
      quorum(),
      '--session-timeout-ms',
      String(SESSION_MS),
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, SLUICE_CLUSTER_SECRET: SECRET } },
  );
  children.set(id, child);
  await until(
    `node ${id} ready`,
    async () => ((await fetch(`${url(id)}/readyz`)).status === 200 ? true : undefined),
    readyTimeoutMs,
  );
}

async function kill(id: number): Promise<void> {
  const child = children.get(id)!;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  children.delete(id);
}

async function controllerId(): Promise<number> {
  return until('a controller', async () => {
    for (const id of children.keys()) {
      const view = await call(id, 'GET', '/v1/cluster').catch(() => undefined);
      if (view?.controllerId != null && children.has(view.controllerId)) return view.controllerId as number;
    }
    return undefined;
  });
}

/** Every partition's leader, as `topic/partition` → node. */
async function leadersOfAll(via: number): Promise<Map<string, number>> {
  const meta = await call(via, 'GET', '/v1/metadata');
  const out = new Map<string, number>();
  for (const t of meta.topics) for (const p of t.partitions) out.set(`${t.name}/${p.partition}`, p.leader);
  return out;
}

async function ledBy(via: number, node: number): Promise<string[]> {
  return [...(await leadersOfAll(via))].filter(([, leader]) => leader === node).map(([key]) => key);
}

async function leaders(via: number, topic: string): Promise<number[]> {
  const meta = await call(via, 'GET', `/v1/metadata?topics=${topic}`).catch(async () => {
    // A node without /v1/metadata: the topic description has the leaders too (and offsets).
    const d = await call(via, 'GET', `/v1/topics/${topic}`);
    return { topics: [d] };
  });
  return meta.topics[0].partitions.map((p: { leader: number }) => p.leader);
}

async function main(): Promise<void> {
  ensureH2load();
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
    cwd: ROOT,
    encoding: 'utf8',
  }).trim();
  dataRoot = await mkdtemp(join(tmpdir(), 'sluice-bench-cluster-'));
  for (let id = 1; id <= NODES; id++) ports.set(id, await freePort());
  await Promise.all([...ports.keys()].map((id) => startNode(id)));
  const lines: string[] = [];
  const say = (line: string) => {
    process.stdout.write(`${line}\n`);
    lines.push(line);
  };

  const loadBefore = loadavg()[0]!;
  if (STEPS.has('topics')) await createTopics(say);
  if (STEPS.has('fence')) await fence(say);
  if (STEPS.has('failover')) await controllerFailover(say);
  if (STEPS.has('forward')) await forwardedProduce(say);
  if (STEPS.has('acks')) await acksAllProduce(say);
  if (STEPS.has('replicated-failover')) await replicatedFailover(say);
  if (STEPS.has('catchup')) await followerCatchUp(say);
  const load = `load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after on ${cpus().length} cores`;
  say(load);

  const steps = STEPS.size === ALL_STEPS.length ? '' : `; steps ${[...STEPS].join(',')}`;
  const row = `| cluster (3 nodes, loopback; h2load for produce, baselines direct produce and acks=1 in the same run; admin and kill timings by the Node script${steps}) | ${new Date().toISOString().slice(0, 10)} | ${commit} | ${lines.join('; ')} |\n`;
  appendFileSync(join(ROOT, 'bench', 'RESULTS.md'), row);
}

type Say = (line: string) => void;

/** Topic creation through a node that is not the controller (each create goes to it and back). */
async function createTopics(say: Say): Promise<void> {
  const controller = await controllerId();
  const via = [...ports.keys()].find((id) => id !== controller)!;
  const started = performance.now();
  for (let i = 0; i < TOPICS; i++) await call(via, 'POST', '/v1/topics', { name: `t${i}`, partitions: 1 });
  const ms = performance.now() - started;
  say(
    `create ${TOPICS} topics (serially, via a non-controller): ${(ms / 1000).toFixed(2)} s, ${Math.round((TOPICS / ms) * 1000)} topics/s`,
  );
}

/** Fencing of a killed broker, by the number of partitions it holds. */
async function fence(say: Say): Promise<void> {
  let controller: number;
  let started: number;
  for (const count of PARTITION_COUNTS) {
    controller = await controllerId();
    const victim = [...ports.keys()].find((id) => id !== controller)!;
    const topic = `fence-${count}`;
    // Partitions are spread evenly: three times the count puts about `count` on the victim.
    await call(controller, 'POST', '/v1/topics', { name: topic, partitions: count * NODES });
    // Every partition the victim leads, of every topic (the topics created above included).
    const held = await ledBy(controller, victim);
    started = performance.now();
    await kill(victim);
    await until(
      'the victim fenced and its partitions leaderless',
      async () => {
        const now = await leadersOfAll(controller);
        return held.every((key) => now.get(key) === -1) ? true : undefined;
      },
      SESSION_MS + 30_000,
    );
    const fencedMs = performance.now() - started;
    started = performance.now();
    await startNode(victim);
    await until('the victim leading again', async () => {
      const now = await leadersOfAll(controller);
      return held.every((key) => now.get(key) === victim) ? true : undefined;
    });
    const backMs = performance.now() - started;
    say(
      `kill -9 of a broker with ${held.length} partitions: fenced, all leaderless after ${(fencedMs / 1000).toFixed(2)} s (session timeout ${SESSION_MS / 1000} s, target ${(SESSION_MS + 2000) / 1000} s); restarted, leading all again after ${(backMs / 1000).toFixed(2)} s`,
    );
  }
}

/** Controller failover: from kill -9 of the active controller to a topic created through a survivor. */
async function controllerFailover(say: Say): Promise<void> {
  const controller = await controllerId();
  const started = performance.now();
  await kill(controller);
  const survivor = [...ports.keys()].find((id) => id !== controller)!;
  await until('a topic created after the controller died', async () => {
    await call(survivor, 'POST', '/v1/topics', { name: `after-failover-${Date.now()}`, partitions: 1 });
    return true;
  });
  const ms = performance.now() - started;
  say(
    `controller failover (kill -9 to a topic created through a survivor): ${(ms / 1000).toFixed(2)} s (election timeout 1 s)`,
  );
  await startNode(controller);
}

/** Forwarded produce against direct. */
async function forwardedProduce(say: Say): Promise<void> {
  await call(1, 'POST', '/v1/topics', { name: 'forward', partitions: 1 });
  const leader = (await leaders(1, 'forward'))[0]!;
  const other = [...ports.keys()].find((id) => id !== leader)!;
  const work = await mkdtemp(join(tmpdir(), 'sluice-bench-bodies-'));
  const body = join(work, 'batched.msgpack');
  const value = Buffer.alloc(100, 0x61);
  writeFileSync(body, packr.pack({ records: Array.from({ length: 100 }, () => ({ value })) }));
  const step = {
    path: '/v1/topics/forward/partitions/0/records?acks=1',
    body,
    h1: false,
    clients: 16,
    seconds: STEP_SECONDS,
  };
  const direct: Figure[] = [];
  const forwarded: Figure[] = [];
  /** CPU ms per request of the leader and of the forwarding node, in the forwarded rounds. */
  const leaderMs: number[] = [];
  const forwarderMs: number[] = [];
  const directMs: number[] = [];
  const pids = new Map([
    ['leader', children.get(leader)!.pid!],
    ['forwarder', children.get(other)!.pid!],
  ]);
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ['direct', 'forwarded'] : ['forwarded', 'direct'];
    for (const which of order) {
      const { result, cpu } = cpuDuring(pids, () => h2load(url(which === 'direct' ? leader : other), step));
      const requests = result.requestsPerSecond * STEP_SECONDS;
      if (which === 'direct') {
        direct.push(result);
        directMs.push((cpu.get('leader')! * 1000) / requests);
      } else {
        forwarded.push(result);
        leaderMs.push((cpu.get('leader')! * 1000) / requests);
        forwarderMs.push((cpu.get('forwarder')! * 1000) / requests);
      }
    }
  }
  await rm(work, { recursive: true, force: true });
  const d = median(direct.map((f) => f.requestsPerSecond)) * 100;
  const f = median(forwarded.map((x) => x.requestsPerSecond)) * 100;
  const failed = [...direct, ...forwarded].reduce((n, x) => n + x.failed, 0);
  say(
    `produce 100x100B (h2c, 16 clients, ${ROUNDS}x${STEP_SECONDS}s): forwarded ${Math.round(f).toLocaleString('en-US')} rec/s = ${(f / d).toFixed(2)}x direct ${Math.round(d).toLocaleString('en-US')} rec/s (target 0.7x); mean latency ${median(forwarded.map((x) => x.meanMs)).toFixed(2)} ms vs ${median(direct.map((x) => x.meanMs)).toFixed(2)} ms; CPU per request: forwarding node ${median(forwarderMs).toFixed(3)} ms + leader ${median(leaderMs).toFixed(3)} ms, leader alone when sent directly ${median(directMs).toFixed(3)} ms${failed ? `; ${failed} failed requests` : ''}`,
  );
}

/** Replicated produce: acks=1 against acks=all on a partition with three in-sync replicas. */
async function acksAllProduce(say: Say): Promise<void> {
  const value = Buffer.alloc(100, 0x61);
  await call(1, 'POST', '/v1/topics', {
    name: 'replicated',
    partitions: 1,
    replicationFactor: 3,
    configs: { 'min.insync.replicas': 2 },
  });
  const replicatedLeader = (await leaders(1, 'replicated'))[0]!;
  const work2 = await mkdtemp(join(tmpdir(), 'sluice-bench-bodies-'));
  const batch1000 = join(work2, 'batch1000.msgpack');
  writeFileSync(batch1000, packr.pack({ records: Array.from({ length: 1000 }, () => ({ value })) }));
  const byAcks: Record<string, Figure[]> = { '1': [], all: [] };
  /** Each follower's lag (records) as the leader saw it right after each acks=1 step. */
  const lags: number[] = [];
  /** CPU ms per acks=all request (1000 records) of the leader and of each follower. */
  const leaderCpu: number[] = [];
  const followerCpu: number[] = [];
  const pids = new Map([...children].map(([id, child]) => [id, child.pid!]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ['1', 'all'] : ['all', '1'];
    for (const acks of order) {
      // Each step starts with the followers caught up, so that one step's backlog is not the next one's.
      await until('the followers caught up', async () => {
        const p = (await call(replicatedLeader, 'GET', '/v1/topics/replicated')).partitions[0];
        return p.highWatermark === p.logEndOffset ? true : undefined;
      });
      const { result, cpu } = cpuDuring(pids, () =>
        h2load(url(replicatedLeader), {
          path: `/v1/topics/replicated/partitions/0/records?acks=${acks}`,
          body: batch1000,
          h1: false,
          clients: 8,
          seconds: STEP_SECONDS,
        }),
      );
      byAcks[acks]!.push(result);
      if (acks === 'all') {
        // Every request's records reached both followers within the step (acks=all waits for them).
        const requests = result.requestsPerSecond * STEP_SECONDS;
        for (const [id, seconds] of cpu)
          (id === replicatedLeader ? leaderCpu : followerCpu).push((seconds * 1000) / requests);
      }
      if (acks === '1') {
        const p = (await call(replicatedLeader, 'GET', '/v1/topics/replicated')).partitions[0];
        for (const r of (p.replicaStates ?? []) as { lag: number }[]) lags.push(r.lag);
      }
    }
  }
  // At a fixed rate, open loop: what a steady producer waits, acks=1 against acks=all, and the
  // round trip of a fetch that returns at once (what a follower's fetch costs at the least).
  const latency: Record<string, { p50Ms: number; p99Ms: number; failed: number }[]> = { '1': [], all: [] };
  const fetchTrips: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const acks of round % 2 === 0 ? ['1', 'all'] : ['all', '1']) {
      latency[acks]!.push(
        h2loadAtRate(url(replicatedLeader), {
          path: `/v1/topics/replicated/partitions/0/records?acks=${acks}`,
          body: batch1000,
          h1: false,
          clients: 4,
          seconds: STEP_SECONDS,
          rps: Math.max(1, Math.round(LATENCY_RPS / 4)),
          logFile: join(work2, `latency-${acks}-${round}.tsv`),
        }),
      );
    }
    const end = (await call(replicatedLeader, 'GET', '/v1/topics/replicated')).partitions[0].highWatermark;
    fetchTrips.push(
      h2loadAtRate(url(replicatedLeader), {
        path: `/v1/topics/replicated/partitions/0/records?offset=${end}&maxWaitMs=0`,
        h1: false,
        clients: 1,
        seconds: 2,
        rps: 50,
        logFile: join(work2, `fetch-${round}.tsv`),
      }).p50Ms,
    );
  }
  await rm(work2, { recursive: true, force: true });
  const one = median(byAcks['1']!.map((x) => x.requestsPerSecond)) * 1000;
  const all = median(byAcks.all!.map((x) => x.requestsPerSecond)) * 1000;
  const replicatedFailed = [...byAcks['1']!, ...byAcks.all!].reduce((n, x) => n + x.failed, 0);
  say(
    `replication factor 3, 1000x100B batches (h2c, 8 clients, ${ROUNDS}x${STEP_SECONDS}s): acks=all ${Math.round(all).toLocaleString('en-US')} rec/s = ${(all / one).toFixed(2)}x acks=1 ${Math.round(one).toLocaleString('en-US')} rec/s (target 0.8x); mean latency ${median(byAcks.all!.map((x) => x.meanMs)).toFixed(2)} ms vs ${median(byAcks['1']!.map((x) => x.meanMs)).toFixed(2)} ms${replicatedFailed ? `; ${replicatedFailed} failed requests` : ''}`,
  );
  const p99 = (acks: string) => median(latency[acks]!.map((x) => x.p99Ms));
  const p50 = (acks: string) => median(latency[acks]!.map((x) => x.p50Ms));
  const trip = median(fetchTrips);
  const latencyFailed = [...latency['1']!, ...latency.all!].reduce((n, x) => n + x.failed, 0);
  say(
    `at ${LATENCY_RPS} req/s of 1000x100B (h2load --rps, 4 clients, open loop, ${ROUNDS}x${STEP_SECONDS}s): acks=all p50 ${p50('all').toFixed(2)} ms p99 ${p99('all').toFixed(2)} ms, acks=1 p50 ${p50('1').toFixed(2)} ms p99 ${p99('1').toFixed(2)} ms; a fetch round trip ${trip.toFixed(2)} ms (p50); acks=all p99 = acks=1 p99 + ${((p99('all') - p99('1')) / trip).toFixed(1)} round trips (target at most 2)${latencyFailed ? `; ${latencyFailed} failed requests` : ''}`,
  );
  say(
    `CPU per acks=all request of 1000x100B: leader ${median(leaderCpu).toFixed(2)} ms, each follower ${median(followerCpu).toFixed(2)} ms (replicating costs the followers ${((2 * median(followerCpu)) / median(leaderCpu)).toFixed(2)}x the leader's work, on the same ${cpus().length} cores)`,
  );
  const sortedLags = [...lags].sort((a, b) => a - b);
  say(
    `follower lag right after each saturated acks=1 step: median ${median(sortedLags).toLocaleString('en-US')} records, max ${(sortedLags.at(-1) ?? 0).toLocaleString('en-US')} records (${lags.length} samples)`,
  );
  const replicatedEnds = (await call(1, 'GET', '/v1/topics/replicated')).partitions[0];
  say(
    `after it: leader log end ${replicatedEnds.logEndOffset}, high watermark ${replicatedEnds.highWatermark}, in-sync ${replicatedEnds.isr.join(',')}`,
  );
}

/**
 * A follower stopped (kill -9) while CATCHUP_MB of 100-byte records arrive, then restarted: the
 * time until it holds the leader's whole log again, against reading the same segment files from
 * disk with O_DIRECT (dd, no page cache) in the same run.
 */
async function followerCatchUp(say: Say): Promise<void> {
  const controller = await controllerId();
  await call(controller, 'POST', '/v1/topics', {
    name: 'catchup',
    partitions: 1,
    replicationFactor: NODES,
    configs: { 'min.insync.replicas': 1, 'segment.bytes': 256 * 1024 * 1024 },
  });
  const leader = (await leaders(controller, 'catchup'))[0]!;
  const follower =
    [...ports.keys()].find((id) => id !== leader && id !== controller) ??
    [...ports.keys()].find((id) => id !== leader)!;
  await kill(follower);
  const work = await mkdtemp(join(tmpdir(), 'sluice-bench-catchup-'));
  const body = join(work, 'batch.msgpack');
  const value = Buffer.alloc(100, 0x62);
  writeFileSync(body, packr.pack({ records: Array.from({ length: 1000 }, () => ({ value })) }));
  const requests = Math.ceil((CATCHUP_MB * 1024 * 1024) / (1000 * 100));
  const produceStart = performance.now();
  execFileSync(
    'h2load',
    [
      '-n',
      String(requests),
      '-c',
      '8',
      '-m',
      '1',
      '-H',
      'content-type: application/vnd.msgpack',
      '-d',
      body,
      `${url(leader)}/v1/topics/catchup/partitions/0/records?acks=1`,
    ],
    { encoding: 'utf8', maxBuffer: 16 << 20 },
  );
  const produceS = (performance.now() - produceStart) / 1000;
  const end = (await call(leader, 'GET', '/v1/topics/catchup')).partitions[0].logEndOffset as number;
  // The baseline: the leader's segment files read from disk, bypassing the page cache.
  const dir = join(dataRoot, `node-${leader}`, 'catchup-0');
  const files = execFileSync('sh', ['-c', `ls ${dir}/*.log`], { encoding: 'utf8' })
    .trim()
    .split('\n');
  const bytes = files.reduce(
    (n, f) => n + Number(execFileSync('stat', ['-c', '%s', f], { encoding: 'utf8' })),
    0,
  );
  const readStart = performance.now();
  for (const f of files)
    execFileSync('dd', [`if=${f}`, 'of=/dev/null', 'bs=4M', 'iflag=direct'], { stdio: 'ignore' });
  const readS = (performance.now() - readStart) / 1000;
  const started = performance.now();
  await startNode(follower, 600_000);
  const readyS = (performance.now() - started) / 1000;
  const cpuBefore = {
    follower: cpuSeconds(children.get(follower)!.pid!),
    leader: cpuSeconds(children.get(leader)!.pid!),
  };
  await until(
    'the follower caught up',
    async () => {
      const p = (await call(leader, 'GET', '/v1/topics/catchup')).partitions[0];
      const state = (p.replicaStates as { id: number; logEndOffset: number }[] | undefined)?.find(
        (r) => r.id === follower,
      );
      return state && state.logEndOffset >= end && p.isr.includes(follower) ? true : undefined;
    },
    1_800_000,
    100,
  );
  const catchUpS = (performance.now() - started) / 1000 - readyS;
  const cpuMs = {
    follower: (cpuSeconds(children.get(follower)!.pid!) - cpuBefore.follower) * 1000,
    leader: (cpuSeconds(children.get(leader)!.pid!) - cpuBefore.leader) * 1000,
  };
  await rm(work, { recursive: true, force: true });
  const mb = bytes / (1024 * 1024);
  say(
    `follower catch-up: ${mb.toFixed(0)} MiB (${end.toLocaleString('en-US')} records of 100 B, produced in ${produceS.toFixed(1)} s) behind, restarted (ready after ${readyS.toFixed(1)} s) and in sync ${catchUpS.toFixed(1)} s later (${(mb / catchUpS).toFixed(0)} MiB/s) = ${(catchUpS / readS).toFixed(1)}x the time of reading the same files from disk with O_DIRECT (${readS.toFixed(1)} s, ${(mb / readS).toFixed(0)} MiB/s); CPU while catching up: follower ${(cpuMs.follower / mb).toFixed(1)} ms/MiB, leader ${(cpuMs.leader / mb).toFixed(1)} ms/MiB (one core at that cost: ${(1000 / ((cpuMs.follower + cpuMs.leader) / mb)).toFixed(0)} MiB/s)`,
  );
}

/** The last refusal a probe met, to say why a wait timed out. */
let lastRefusal = '';

/** One acks=all record to a partition, sent to the node given; whether it was taken. */
async function produceAll(node: number, key: string): Promise<boolean> {
  const [topic, partition] = key.split('/') as [string, string];
  const response = await fetch(`${url(node)}/v1/topics/${topic}/partitions/${partition}/records?acks=all`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ records: [{ value: 'after the failover' }] }),
    signal: AbortSignal.timeout(10_000),
  }).catch((error: unknown) => {
    lastRefusal = `${key} via node ${node}: ${String(error)}`;
    return undefined;
  });
  if (!response) {
    refusals.set('no answer', (refusals.get('no answer') ?? 0) + 1);
    return false;
  }
  const text = await response.text();
  if (response.status !== 200) {
    lastRefusal = `${key} via node ${node}: ${response.status} ${text}`;
    const code = /"code":"([A-Z_]+)"/.exec(text)?.[1] ?? String(response.status);
    refusals.set(code, (refusals.get(code) ?? 0) + 1);
  }
  return response.status === 200;
}

/**
 * Failover of replicated partitions: kill -9 of a broker leading about `count` partitions of
 * three in-sync replicas each, to new leaders in the metadata and to an acks=all produce to each
 * of them succeeding through its new leader.
 */
async function replicatedFailover(say: Say): Promise<void> {
  for (const count of REPLICATED_COUNTS) {
    const controller = await controllerId();
    const victim = [...ports.keys()].find((id) => id !== controller)!;
    // Topics of at most TOPIC_PARTITIONS_MAX partitions: one create request stays bounded.
    const topics: string[] = [];
    for (let left = count * NODES, i = 0; left > 0; left -= TOPIC_PARTITIONS_MAX, i++) {
      const topic = `replicated-failover-${count}-${i}`;
      await call(controller, 'POST', '/v1/topics', {
        name: topic,
        partitions: Math.min(left, TOPIC_PARTITIONS_MAX),
        replicationFactor: NODES,
        configs: { 'min.insync.replicas': 2 },
      });
      topics.push(topic);
    }
    // Every replica in sync and every partition writable before the kill.
    await until(
      'every replica in sync',
      async () => {
        let inSync = 0;
        for (const topic of topics) {
          const d = await call(controller, 'GET', `/v1/topics/${topic}`);
          inSync += (d.partitions as { isr: number[] }[]).filter((p) => p.isr.length === NODES).length;
        }
        if (TRACE)
          process.stderr.write(`${inSync} of ${count * NODES} partitions with every replica in sync\n`);
        return inSync === count * NODES ? true : undefined;
      },
      600_000,
      500,
    );
    const held = [...(await leadersOfTopics(controller, topics))]
      .filter(([, leader]) => leader === victim)
      .map(([key]) => key);
    await probeAll(held, () => controller, 'before the kill');
    const started = performance.now();
    await kill(victim);
    let electedMs: number | undefined;
    const pending = new Set(held);
    /** When each probe succeeded, ms after the kill. */
    const servedAt: number[] = [];
    while (pending.size > 0) {
      if (performance.now() - started > SESSION_MS + 120_000)
        throw new Error(
          `${pending.size} partitions not served by a new leader in time; last: ${lastRefusal}`,
        );
      const now = await leadersOfTopics(controller, topics).catch(() => undefined);
      if (!now) continue;
      const led = (key: string) => now.get(key) !== victim && now.get(key) !== -1;
      if (electedMs === undefined && held.every(led)) electedMs = performance.now() - started;
      await inBatches([...pending].filter(led), async (key) => {
        if (await produceAll(now.get(key)!, key)) {
          pending.delete(key);
          servedAt.push(performance.now() - started);
        }
      });
      if (TRACE) {
        const at = ((performance.now() - started) / 1000).toFixed(2);
        const led = [...pending].filter((key) => now.get(key) !== victim && now.get(key) !== -1).length;
        process.stderr.write(
          `${at} s: ${pending.size} not served (${led} of them with a new leader); refused ${JSON.stringify(Object.fromEntries(refusals))}\n`,
        );
        refusals.clear();
      }
      if (pending.size > 0) await new Promise((r) => setTimeout(r, 20));
    }
    const servedMs = performance.now() - started;
    if (TRACE) {
      servedAt.sort((x, y) => x - y);
      const at = (q: number) =>
        (servedAt[Math.min(servedAt.length - 1, Math.floor(q * servedAt.length))]! / 1000).toFixed(2);
      process.stderr.write(
        `probes served from ${at(0)} s: 10% by ${at(0.1)} s, half by ${at(0.5)} s, 90% by ${at(0.9)} s, all by ${at(1)} s\n`,
      );
    }
    // Back for the next count, which needs three brokers; it holds a replica of every partition.
    const restarted = performance.now();
    await startNode(victim, 300_000);
    const readyMs = performance.now() - restarted;
    say(
      `kill -9 of a broker leading ${held.length} partitions of replication factor 3 (${count * NODES} partitions): new leaders for all after ${((electedMs ?? servedMs) / 1000).toFixed(2)} s, an acks=all produce to each (${Math.min(PROBES_IN_FLIGHT_MAX, held.length)} in flight) served by its new leader after ${(servedMs / 1000).toFixed(2)} s (session timeout ${SESSION_MS / 1000} s, target ${(SESSION_MS + 2000) / 1000} s); restarted, ready after ${(readyMs / 1000).toFixed(2)} s`,
    );
  }
}

/** Each partition's leader, as `topic/partition` → node, of the topics named. */
async function leadersOfTopics(via: number, topics: string[]): Promise<Map<string, number>> {
  const meta = await call(via, 'GET', `/v1/metadata?topics=${topics.join(',')}`);
  const out = new Map<string, number>();
  for (const t of meta.topics) for (const p of t.partitions) out.set(`${t.name}/${p.partition}`, p.leader);
  return out;
}

/** Runs `each` over `items`, at most PROBES_IN_FLIGHT_MAX at once. */
async function inBatches<T>(items: readonly T[], each: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await each(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(PROBES_IN_FLIGHT_MAX, items.length) }, worker));
}

/** Waits until an acks=all produce to each partition succeeds (through `via`, forwarded). */
async function probeAll(partitions: string[], via: () => number, what: string): Promise<void> {
  const pending = new Set(partitions);
  await until(
    `every partition writable ${what}`,
    async () => {
      await inBatches([...pending], async (p) => {
        if (await produceAll(via(), p)) pending.delete(p);
      });
      if (pending.size > 0)
        process.stderr.write(`${pending.size} not writable ${what}; last: ${lastRefusal}\n`);
      return pending.size === 0 ? true : undefined;
    },
    120_000,
    100,
  );
}

async function shutdown(): Promise<void> {
  for (const child of children.values()) child.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  if (dataRoot) await rm(dataRoot, { recursive: true, force: true });
}

main()
  .then(shutdown)
  .catch(async (error) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    await shutdown();
    process.exit(1);
  });
