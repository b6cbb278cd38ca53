/**
 * The broker benchmark: Sluice against the HTTP ceiling and against the peers a user would
 * otherwise pick, every side driven by a native load generator in this one run on this machine,
 * with the same 100-byte records:
 *
 * - HTTP steps: h2load (Debian's nghttp2-client, installed when missing and running as root) over
 *   HTTP/1.1 (`--h1`) and cleartext HTTP/2 (h2c); the same requests to a bare fastify route with
 *   the same msgpack body parser (bench/http/bare-server.ts, one process per protocol), and for
 *   latency to bare node:http (bench/http/node-http-server.ts, the machine's floor). autocannon
 *   stays as a second column for HTTP/1.1 batched produce, to compare with the older rows.
 * - Redis Streams: redis-benchmark XADD pipelined 64 and 1000 deep, AOF with appendfsync everysec
 *   and then always; XRANGE COUNT 1000 for reads.
 * - NATS JetStream (file storage): the leanest publisher Node has (core publish with a reply inbox
 *   per message, 1000 un-acknowledged in flight: no promise per message), then a pull consumer.
 *
 * Steps are run in interleaved rounds (Sluice, then its baseline, alternating which goes first)
 * and each figure is the median of the rounds.
 *
 *   npm run bench                                   # BENCH_SECONDS=5, BENCH_ROUNDS=3
 *   BENCH_SECONDS=3 BENCH_ROUNDS=1 BENCH_PEERS=0 npm run bench   # quick, without Redis and NATS
 *   BENCH_SDK=0 npm run bench                       # without the SDK step (bench/sdk-send.ts)
 *
 * Prints a table and appends a dated row to bench/RESULTS.md naming each client and baseline,
 * the commit and the load average.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  fsyncSync,
  openSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Packr } from 'msgpackr';
import { ensureH2load, type Figure, type H2loadStep, h2load, h2loadAtRate, median } from './h2load.js';
import { freePort, waitForPort, waitForReady } from './ports.js';
import { sluiceStart } from './processes.js';
import { sdkThroughput } from './sdk-throughput.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WITH_PEERS = process.env.BENCH_PEERS !== '0';
const WITH_SDK = process.env.BENCH_SDK !== '0';
const RECORD_BYTES = 100;
const BATCH_RECORDS = 1000;
/** Open-loop rate of the latency steps, over LATENCY_CLIENTS connections. */
const LATENCY_RPS = 1000;
const LATENCY_CLIENTS = 10;
const ROOT = join(import.meta.dirname, '..');
const packr = new Packr({ useRecords: false, variableMapSize: true });
const children: ChildProcess[] = [];
const temporary: string[] = [];

function start(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

function record(i: number): Buffer {
  const value = Buffer.alloc(RECORD_BYTES, 0x61);
  value.write(String(i).padStart(12, '0'));
  return value;
}

const rows: { name: string; figure: string; ratio: string }[] = [];
/** Records a row of the table, and prints it as it comes (a step takes ROUNDS x SECONDS or more). */
function row(r: { name: string; figure: string; ratio: string }): void {
  rows.push(r);
  process.stdout.write(`${r.name}\n    ${r.figure}\n    ${r.ratio}\n`);
}
const f = (n: number) => Math.round(n).toLocaleString('en-US');
const x = (n: number) => `${n.toFixed(2)}x`;
const check = (ratio: number, target: number, atMost = false) =>
  `${(atMost ? ratio <= target : ratio >= target) ? 'met' : 'NOT met'}: target ${atMost ? '<=' : '>='} ${target}`;

/** Interleaved rounds of h2load steps against two servers; the median req/s of each side. */
function pair(steps: { sluice: [string, H2loadStep]; baseline: [string, H2loadStep] }): {
  sluice: number;
  baseline: number;
  failed: number;
  meanMs: [number, number];
} {
  const got = { sluice: [] as Figure[], baseline: [] as Figure[] };
  for (let round = 0; round < ROUNDS; round++) {
    const order: ('sluice' | 'baseline')[] =
      round % 2 === 0 ? ['sluice', 'baseline'] : ['baseline', 'sluice'];
    for (const side of order) got[side].push(h2load(steps[side][0], { ...steps[side][1], seconds: SECONDS }));
  }
  const rps = (figures: Figure[]) => median(figures.map((fig) => fig.requestsPerSecond));
  return {
    sluice: rps(got.sluice),
    baseline: rps(got.baseline),
    failed: [...got.sluice, ...got.baseline].reduce((n, fig) => n + fig.failed, 0),
    meanMs: [median(got.sluice.map((g) => g.meanMs)), median(got.baseline.map((g) => g.meanMs))],
  };
}

async function topic(url: string, name: string, configs?: Record<string, string>): Promise<void> {
  const response = await fetch(`${url}/v1/topics`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, partitions: 1, ...(configs ? { configs } : {}) }),
  });
  if (response.status !== 201)
    throw new Error(`creating topic ${name}: ${response.status} ${await response.text()}`);
}

/** Percentiles of write(165 B) + fsync on the data directory's file system, in ms. */
function fsyncLatency(dir: string, count = 1000): { p50Ms: number; p99Ms: number } {
  const path = join(dir, 'fsync-probe');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(165, 0x61);
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const t0 = process.hrtime.bigint();
      writeSync(fd, chunk);
      fsyncSync(fd);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
  times.sort((a, b) => a - b);
  return { p50Ms: times[Math.floor(count * 0.5)]!, p99Ms: times[Math.floor(count * 0.99)]! };
}

async function main(): Promise<void> {
  ensureH2load();
  if (WITH_PEERS) {
    ensureDebianPackage('redis-server', 'redis-server');
    ensureDebianPackage('nats-server', 'nats-server');
  }
  const loadBefore = loadavg()[0]!;
  const work = await mkdtemp(join(tmpdir(), 'sluice-bench-'));
  temporary.push(work);
  const dataDir = join(work, 'data');
  const ports = {
    sluice: await freePort(),
    h1: await freePort(),
    h2c: await freePort(),
    floor: await freePort(),
  };
  start(process.execPath, sluiceStart(ROOT, ports.sluice, dataDir, 'silent'));
  const tsx = (file: string, ...args: string[]) =>
    start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'http', file), ...args]);
  tsx('bare-server.ts', String(ports.h1), 'h1');
  tsx('bare-server.ts', String(ports.h2c), 'h2c');
  tsx('node-http-server.ts', String(ports.floor));
  for (const port of Object.values(ports)) await waitForPort(port);
  const sluice = `http://127.0.0.1:${ports.sluice}`;
  const bareH1 = `http://127.0.0.1:${ports.h1}`;
  const bareH2c = `http://127.0.0.1:${ports.h2c}`;
  const floor = `http://127.0.0.1:${ports.floor}`;
  await waitForReady(sluice);
  for (const name of ['bench', 'bench-single', 'bench-warmup']) await topic(sluice, name);
  await topic(sluice, 'bench-sync', { 'flush.policy': 'sync' });

  const batchBody = Buffer.from(
    packr.pack({ records: Array.from({ length: BATCH_RECORDS }, (_, i) => ({ value: record(i) })) }),
  );
  const batchFile = join(work, 'batch.msgpack');
  const singleFile = join(work, 'single.msgpack');
  writeFileSync(batchFile, batchBody);
  writeFileSync(singleFile, packr.pack({ records: [{ value: record(0) }] }));
  const produce = (h1: boolean, path: string, body = batchFile): H2loadStep => ({
    path,
    body,
    h1,
    clients: h1 ? 16 : 4,
    streams: 16,
    seconds: SECONDS,
  });
  const produced = '/v1/topics/bench/partitions/0/records?acks=1';

  // Warm-up (JIT, buffers): a second of each protocol on each server, not measured.
  for (const [url, path] of [
    [sluice, '/v1/topics/bench-warmup/partitions/0/records?acks=1'],
    [bareH1, '/produce'],
  ] as const)
    h2load(url, { ...produce(true, path), seconds: 1 });
  for (const [url, path] of [
    [sluice, '/v1/topics/bench-warmup/partitions/0/records?acks=1'],
    [bareH2c, '/produce'],
  ] as const)
    h2load(url, { ...produce(false, path), seconds: 1 });

  // 1. Batched produce, 1000 x 100 B per request, acks=1, against bare fastify's ingest.
  const figures: Record<string, number> = {};
  for (const h1 of [true, false]) {
    const proto = h1 ? 'h1' : 'h2c';
    const got = pair({
      sluice: [sluice, produce(h1, produced)],
      baseline: [h1 ? bareH1 : bareH2c, produce(h1, '/produce')],
    });
    figures[`produce_${proto}`] = got.sluice * BATCH_RECORDS;
    const ratio = got.sluice / got.baseline;
    row({
      name: `produce 1000x100B (${proto}, acks=1; h2load -c ${h1 ? 16 : '4 -m 16'})`,
      figure: `${f(got.sluice * BATCH_RECORDS)} rec/s, ${((got.sluice * batchBody.length) / 1e6).toFixed(1)} MB/s, mean ${got.meanMs[0].toFixed(2)} ms${got.failed ? `, ${got.failed} failed` : ''}`,
      ratio: `${x(ratio)} bare fastify /produce ${proto} (${f(got.baseline * BATCH_RECORDS)} rec/s, mean ${got.meanMs[1].toFixed(2)} ms); ${check(ratio, 0.8)}`,
    });
  }
  // The same bytes into a route that does not decode them: how much of the ceiling is msgpack.
  const raw = pair({ sluice: [sluice, produce(true, produced)], baseline: [bareH1, produce(true, '/raw')] });
  row({
    name: 'produce 1000x100B (h1) vs bare fastify /raw (no decode)',
    figure: `${f(raw.sluice * BATCH_RECORDS)} rec/s`,
    ratio: `${x(raw.sluice / raw.baseline)} bare /raw (${f(raw.baseline * BATCH_RECORDS)} req-equivalent rec/s)`,
  });
  // autocannon, as the older rows measured it: a second column, not a target.
  const cannon = async (url: string) =>
    (
      await autocannon({
        url,
        method: 'POST',
        headers: { 'content-type': 'application/vnd.msgpack', accept: 'application/vnd.msgpack' },
        body: batchBody,
        duration: SECONDS,
        connections: 16,
      })
    ).requests.average;
  const cannonSluice = await cannon(`${sluice}${produced}`);
  const cannonBare = await cannon(`${bareH1}/produce`);
  row({
    name: 'produce 1000x100B (h1) with autocannon -c 16 (second column)',
    figure: `${f(cannonSluice * BATCH_RECORDS)} rec/s`,
    ratio: `${x(cannonSluice / cannonBare)} bare fastify /produce h1 (${f(cannonBare * BATCH_RECORDS)} rec/s)`,
  });

  // 2. Fetch 1000 records per request, msgpack, against a bare route serving the same bytes.
  const fetchPath = `/v1/topics/bench/partitions/0/records?offset=0&maxBytes=${batchBody.length + 4096}`;
  const sample = await fetch(sluice + fetchPath, { headers: { accept: 'application/vnd.msgpack' } });
  const sampleBytes = Buffer.from(await sample.arrayBuffer()).length;
  for (const h1 of [true, false]) {
    const proto = h1 ? 'h1' : 'h2c';
    const step = (path: string): H2loadStep => ({
      path,
      h1,
      clients: h1 ? 16 : 4,
      streams: 16,
      seconds: SECONDS,
    });
    const got = pair({
      sluice: [sluice, step(fetchPath)],
      baseline: [h1 ? bareH1 : bareH2c, step(`/fetch?bytes=${sampleBytes}`)],
    });
    figures[`fetch_${proto}`] = got.sluice * BATCH_RECORDS;
    const ratio = got.sluice / got.baseline;
    row({
      name: `fetch 1000 records/request (${proto}; h2load -c ${h1 ? 16 : '4 -m 16'})`,
      figure: `${f(got.sluice * BATCH_RECORDS)} rec/s, mean ${got.meanMs[0].toFixed(2)} ms${got.failed ? `, ${got.failed} failed` : ''}`,
      ratio: `${x(ratio)} bare fastify serving the same ${sampleBytes} bytes (${f(got.baseline)} req/s); ${check(ratio, 0.8)}`,
    });
  }

  // 3. Single-record produce at a fixed 1,000 requests/s, open loop (h2load --rps, per-request
  //    log), over HTTP/1.1, against bare node:http; then flush.policy=sync against node:http plus
  //    one fsync measured here on the same file system.
  const atRate = (url: string, path: string, name: string) =>
    h2loadAtRate(url, {
      path,
      body: singleFile,
      h1: true,
      clients: LATENCY_CLIENTS,
      seconds: Math.max(3, SECONDS),
      rps: LATENCY_RPS / LATENCY_CLIENTS,
      logFile: join(work, `${name}.log`),
    });
  const latency = {
    sluice: [] as [number, number][],
    floor: [] as [number, number][],
    sync: [] as [number, number][],
  };
  const singlePath = '/v1/topics/bench-single/partitions/0/records?acks=1';
  const syncPath = '/v1/topics/bench-sync/partitions/0/records?acks=1';
  atRate(sluice, singlePath, 'warm');
  for (let round = 0; round < ROUNDS; round++) {
    for (const [side, url, path] of [
      ['floor', floor, '/'],
      ['sluice', sluice, singlePath],
      ['sync', sluice, syncPath],
    ] as const) {
      const got = atRate(url, path, `${side}-${round}`);
      if (got.failed) throw new Error(`${got.failed} of ${got.requests} requests failed at ${url}${path}`);
      latency[side].push([got.p50Ms, got.p99Ms]);
    }
  }
  const fsync = fsyncLatency(work);
  const p = (side: keyof typeof latency, i: 0 | 1) => median(latency[side].map((v) => v[i]));
  const floorP50 = p('floor', 0);
  const floorP99 = p('floor', 1);
  row({
    name: `single-record produce at ${LATENCY_RPS} req/s (h1, h2load --rps, ${LATENCY_CLIENTS} clients, open loop)`,
    figure: `p50 ${p('sluice', 0).toFixed(3)} ms, p99 ${p('sluice', 1).toFixed(3)} ms`,
    ratio: `bare node:http p50 ${floorP50.toFixed(3)} ms p99 ${floorP99.toFixed(3)} ms: p50 ${x(p('sluice', 0) / floorP50)} (${check(p('sluice', 0) / floorP50, 1.3, true)}), p99 ${x(p('sluice', 1) / floorP99)} (${check(p('sluice', 1) / floorP99, 1.5, true)})`,
  });
  const syncFloor = floorP99 + fsync.p50Ms;
  row({
    name: `single-record produce at ${LATENCY_RPS} req/s, flush.policy=sync`,
    figure: `p50 ${p('sync', 0).toFixed(3)} ms, p99 ${p('sync', 1).toFixed(3)} ms`,
    ratio: `node:http p99 + one fsync (write+fsync p50 ${fsync.p50Ms.toFixed(3)} ms, p99 ${fsync.p99Ms.toFixed(3)} ms) = ${syncFloor.toFixed(3)} ms: p99 ${x(p('sync', 1) / syncFloor)} (${check(p('sync', 1) / syncFloor, 1.5, true)})`,
  });

  // 4. The SDK, against a bare node:http2 client posting the same batches (bench/sdk-send.ts).
  if (WITH_SDK) {
    const sdk = await sdkThroughput(sluice);
    for (const r of sdk.rows) row(r);
  }

  if (WITH_PEERS) await peers(work, figures);

  const loadAfter = loadavg()[0]!;
  console.log(
    `\nSluice broker benchmark (${ROUNDS} rounds x ${SECONDS} s per step, ${RECORD_BYTES}-byte records)\n`,
  );
  for (const r of rows) console.log(`${r.name}\n    ${r.figure}\n    ${r.ratio}`);
  const load = `load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after on ${cpus().length} cores`;
  console.log(`\n${load}`);
  appendResults(load);
}

async function peers(work: string, figures: Record<string, number>): Promise<void> {
  // Redis Streams with redis-benchmark: AOF fsync every second (the class of Sluice's async
  // flush), then fsync before every answer.
  const redisDir = join(work, 'redis');
  execFileSync('mkdir', ['-p', redisDir]);
  const redisPort = await freePort();
  start('redis-server', [
    '--port',
    String(redisPort),
    '--bind',
    '127.0.0.1',
    '--dir',
    redisDir,
    '--save',
    '',
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--protected-mode',
    'yes',
  ]);
  await waitForPort(redisPort);
  const value = 'v'.repeat(RECORD_BYTES);
  const cli = (...args: string[]) =>
    execFileSync('redis-cli', ['-p', String(redisPort), ...args], { encoding: 'utf8' }).trim();
  /** One redis-benchmark run: requests per second from its CSV row. */
  const bench = (...args: string[]) => {
    const out = execFileSync(
      'redis-benchmark',
      ['-h', '127.0.0.1', '-p', String(redisPort), '--csv', '-c', '50', ...args],
      { encoding: 'utf8', maxBuffer: 16 << 20 },
    );
    const last = out.trim().split('\n').at(-1)!.replaceAll('"', '').split(',');
    return Number(last[1]);
  };
  const xadd: Record<string, number> = {};
  for (const fsyncMode of ['everysec', 'always']) {
    cli('config', 'set', 'appendfsync', fsyncMode);
    for (const depth of [64, 1000]) {
      const n = String(Math.max(200_000, depth * 500));
      const runs: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        cli('del', 's');
        runs.push(bench('-P', String(depth), '-n', n, 'XADD', 's', '*', 'f', value));
      }
      xadd[`${fsyncMode}_${depth}`] = median(runs);
    }
  }
  cli('config', 'set', 'appendfsync', 'everysec');
  // Reads: fill a stream, then XRANGE of 1000 entries per request.
  cli('del', 'r');
  bench('-P', '1000', '-n', '200000', 'XADD', 'r', '*', 'f', value);
  const xrange = median(
    Array.from({ length: ROUNDS }, () => bench('-n', '20000', 'XRANGE', 'r', '-', '+', 'COUNT', '1000')),
  );
  const h1 = figures.produce_h1!;
  const h2 = figures.produce_h2c!;
  for (const fsyncMode of ['everysec', 'always']) {
    row({
      name: `Redis XADD 100 B, AOF appendfsync ${fsyncMode} (redis-benchmark -c 50 -P 64 / -P 1000)`,
      figure: `-P 64: ${f(xadd[`${fsyncMode}_64`]!)} rec/s, -P 1000: ${f(xadd[`${fsyncMode}_1000`]!)} rec/s`,
      ratio:
        fsyncMode === 'everysec'
          ? `Sluice batched produce h1 = ${x(h1 / xadd.everysec_1000!)} -P 1000 (${check(h1 / xadd.everysec_1000!, 3)}), h2c = ${x(h2 / xadd.everysec_1000!)}; h1 = ${x(h1 / xadd.everysec_64!)} -P 64`
          : `Sluice h1 (acks=1, async flush) = ${x(h1 / xadd.always_1000!)} -P 1000`,
    });
  }
  row({
    name: 'Redis XRANGE COUNT 1000 (redis-benchmark -c 50)',
    figure: `${f(xrange * 1000)} rec/s`,
    ratio: `Sluice fetch h1 = ${x(figures.fetch_h1! / (xrange * 1000))}, h2c = ${x(figures.fetch_h2c! / (xrange * 1000))}`,
  });

  // NATS JetStream, file storage: the leanest Node publisher (bench/nats-publish.ts), alone in
  // its own process so that nothing else shares its event loop.
  const natsDir = join(work, 'nats');
  const natsPort = await freePort();
  const conf = join(work, 'nats.conf');
  writeFileSync(
    conf,
    `listen: 127.0.0.1:${natsPort}\njetstream {\n  store_dir: "${natsDir}"\n  max_memory_store: 1G\n  max_file_store: 10G\n}\n`,
  );
  start('nats-server', ['-c', conf, '-l', join(work, 'nats.log')]);
  await waitForPort(natsPort);
  const out = execFileSync(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'bench', 'nats-publish.ts'),
      String(natsPort),
      '200000',
      '1000',
      String(RECORD_BYTES),
    ],
    { encoding: 'utf8', cwd: ROOT },
  );
  const kv = Object.fromEntries(
    out
      .trim()
      .split(' ')
      .map((pair) => pair.split('=') as [string, string]),
  );
  const publish = Number(kv.publish_msgs_s);
  const consume = Number(kv.consume_msgs_s);
  row({
    name: 'NATS JetStream publish, file store (core publish + reply inbox, 1000 un-acked; bench/nats-publish.ts)',
    figure: `${f(publish)} rec/s (ack p50 ${kv.ack_p50_ms} ms, p99 ${kv.ack_p99_ms} ms)`,
    ratio: `Sluice batched produce h1 = ${x(h1 / publish)}, h2c = ${x(h2 / publish)}`,
  });
  row({
    name: 'NATS JetStream pull consume (1000/fetch)',
    figure: `${f(consume)} rec/s`,
    ratio: `Sluice fetch h1 = ${x(figures.fetch_h1! / consume)}`,
  });
}

function ensureDebianPackage(binary: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${binary}`]).status === 0) return;
  if (process.getuid?.() !== 0)
    throw new Error(`${binary} is missing: apt-get install ${pkg} (or BENCH_PEERS=0)`);
  console.log(`installing ${pkg} from Debian...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], {
    stdio: 'inherit',
    env,
  });
}

function appendResults(load: string): void {
  let sha = 'unknown';
  try {
    sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    if (
      execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' })
    )
      sha += '+';
  } catch {}
  const summary = rows.map((r) => `${r.name}: ${r.figure} (${r.ratio})`).join('; ');
  appendFileSync(
    join(ROOT, 'bench', 'RESULTS.md'),
    `| broker (native clients: h2load for HTTP, redis-benchmark, lean nats.js publisher; baselines bare fastify h1/h2c, bare node:http, one fsync; ${ROUNDS}x${SECONDS}s steps, medians) | ${new Date().toISOString().slice(0, 10)} | ${sha} | ${summary.replaceAll('|', '/')}; ${load} |\n`,
  );
}

try {
  await main();
} finally {
  for (const child of children) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const dir of temporary) await rm(dir, { recursive: true, force: true });
}
