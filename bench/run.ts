/**
 * The broker benchmark: Sluice against the HTTP ceiling (a bare fastify route answering the same
 * requests; for latency also bare node:http, the machine's floor) and against the peers a user
 * would otherwise pick (Redis Streams, NATS JetStream), all measured in this one run on this
 * machine with the same 100-byte records.
 *
 *   npm run bench                      # BENCH_SECONDS=5 per autocannon step by default
 *   BENCH_SECONDS=3 BENCH_PEERS=0 npm run bench   # quick, without Redis and NATS
 *
 * Prints a table and appends a dated row to bench/RESULTS.md.
 */
import { type ChildProcess, execSync, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Packr } from 'msgpackr';
import { Admin, PartitionConsumer, Producer } from '../src/client/index.js';
import { paced } from './http/paced.js';
import { freePort, waitForPort } from './ports.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WITH_PEERS = process.env.BENCH_PEERS !== '0';
const RECORD_BYTES = 100;
const BATCH_RECORDS = 1000;
const ROOT = join(import.meta.dirname, '..');
const packr = new Packr({ useRecords: false, variableMapSize: true });
const children: ChildProcess[] = [];
const temporary: string[] = [];

function start(command: string, args: string[], options: { cwd?: string } = {}): ChildProcess {
  const child = spawn(command, args, { cwd: options.cwd ?? ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

function record(i: number): Buffer {
  const value = Buffer.alloc(RECORD_BYTES, 0x61);
  value.write(String(i).padStart(12, '0'));
  return value;
}

const batchBody = packr.pack({
  records: Array.from({ length: BATCH_RECORDS }, (_, i) => ({ value: record(i) })),
});
const singleBody = packr.pack({ records: [{ value: record(0) }] });

interface Measured {
  requestsPerSecond: number;
  bytesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

async function cannon(options: autocannon.Options): Promise<Measured> {
  const result = await autocannon({ duration: SECONDS, connections: 16, pipelining: 1, ...options });
  return {
    requestsPerSecond: result.requests.average,
    bytesPerSecond:
      result.requests.average * Number((options.body as Buffer | undefined)?.length ?? 0) ||
      result.throughput.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.non2xx,
  };
}

const rows: { name: string; figure: string; ratio: string }[] = [];
const figures: Record<string, number> = {};

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-bench-'));
  temporary.push(dataDir);
  const sluicePort = await freePort();
  const barePort = await freePort();
  const nodeHttpPort = await freePort();
  start(process.execPath, [
    join(ROOT, 'bin', 'sluice.js'),
    'start',
    '--port',
    String(sluicePort),
    '--data-dir',
    dataDir,
    '--log-level',
    'silent',
  ]);
  start(process.execPath, [
    '--import',
    'tsx',
    join(ROOT, 'bench', 'http', 'bare-server.ts'),
    String(barePort),
  ]);
  start(process.execPath, [
    '--import',
    'tsx',
    join(ROOT, 'bench', 'http', 'node-http-server.ts'),
    String(nodeHttpPort),
  ]);
  await waitForPort(sluicePort);
  await waitForPort(barePort);
  await waitForPort(nodeHttpPort);
  const sluice = `http://127.0.0.1:${sluicePort}`;
  const bare = `http://127.0.0.1:${barePort}`;
  const admin = new Admin({ bootstrap: sluice });
  await admin.createTopic({ name: 'bench', partitions: 1 });
  await admin.createTopic({ name: 'bench-sdk', partitions: 1 });
  await admin.createTopic({ name: 'bench-single', partitions: 1 });
  await admin.createTopic({ name: 'bench-warmup', partitions: 1 });
  admin.close();

  const msgpackHeaders = { 'content-type': 'application/vnd.msgpack', accept: 'application/vnd.msgpack' };
  // Both servers are warmed (JIT, buffers) by a second of the same requests, not measured.
  for (const url of [`${sluice}/v1/topics/bench-warmup/partitions/0/records?acks=1`, `${bare}/produce`]) {
    await autocannon({
      url,
      method: 'POST',
      headers: msgpackHeaders,
      body: batchBody,
      duration: 1,
      connections: 16,
    });
  }
  // 1. Batched produce, 1000 x 100 B per request, acks=1, HTTP/1.1.
  const produce = await cannon({
    url: `${sluice}/v1/topics/bench/partitions/0/records?acks=1`,
    method: 'POST',
    headers: msgpackHeaders,
    body: batchBody,
  });
  const bareProduce = await cannon({
    url: `${bare}/produce`,
    method: 'POST',
    headers: msgpackHeaders,
    body: batchBody,
  });
  figures.produceRecordsPerSecond = produce.requestsPerSecond * BATCH_RECORDS;
  figures.produceMBps = (produce.requestsPerSecond * batchBody.length) / 1e6;
  figures.bareProduceMBps = (bareProduce.requestsPerSecond * batchBody.length) / 1e6;
  rows.push({
    name: 'produce 1000x100B batches (h1, acks=1)',
    figure: `${fmt(figures.produceRecordsPerSecond)} rec/s, ${figures.produceMBps.toFixed(1)} MB/s, p50 ${produce.p50Ms} ms p99 ${produce.p99Ms} ms`,
    ratio: `${(figures.produceMBps / figures.bareProduceMBps).toFixed(2)}x bare fastify ingest (${figures.bareProduceMBps.toFixed(1)} MB/s); target >= 0.5`,
  });

  // 2. Fetch 1000 records per request, msgpack (stored batches as stored).
  const fetchUrl = `${sluice}/v1/topics/bench/partitions/0/records?offset=0&maxBytes=${batchBody.length + 4096}`;
  const sample = await fetch(fetchUrl, { headers: { accept: 'application/vnd.msgpack' } });
  const sampleBytes = Buffer.from(await sample.arrayBuffer()).length;
  const fetched = await cannon({ url: fetchUrl, headers: { accept: 'application/vnd.msgpack' } });
  const bareFetch = await cannon({
    url: `${bare}/fetch?bytes=${sampleBytes}`,
    headers: { accept: 'application/vnd.msgpack' },
  });
  figures.fetchRecordsPerSecond = fetched.requestsPerSecond * BATCH_RECORDS;
  rows.push({
    name: 'fetch 1000 records/request (h1)',
    figure: `${fmt(figures.fetchRecordsPerSecond)} rec/s, p50 ${fetched.p50Ms} ms p99 ${fetched.p99Ms} ms`,
    ratio: `${(fetched.requestsPerSecond / bareFetch.requestsPerSecond).toFixed(2)}x bare route serving the same ${sampleBytes} bytes`,
  });

  // 3. Single-record produce: saturated, then at a fixed 1,000 requests/s.
  const single = await cannon({
    url: `${sluice}/v1/topics/bench-single/records?acks=1`,
    method: 'POST',
    headers: msgpackHeaders,
    body: singleBody,
  });
  const bareSingle = await cannon({
    url: `${bare}/produce`,
    method: 'POST',
    headers: msgpackHeaders,
    body: singleBody,
  });
  rows.push({
    name: 'single-record produce, saturated (h1)',
    figure: `${fmt(single.requestsPerSecond)} req/s, p50 ${single.p50Ms} ms p99 ${single.p99Ms} ms`,
    ratio: `${(single.requestsPerSecond / bareSingle.requestsPerSecond).toFixed(2)}x bare fastify (${fmt(bareSingle.requestsPerSecond)} req/s)`,
  });
  // Open loop at 1,000 requests/s with microsecond latencies, both servers in the same run.
  const pacedOptions = {
    body: singleBody,
    headers: msgpackHeaders,
    ratePerSecond: 1000,
    seconds: Math.max(3, SECONDS),
  };
  const slow = await paced({ ...pacedOptions, url: `${sluice}/v1/topics/bench-single/records?acks=1` });
  const barePaced = await paced({ ...pacedOptions, url: `${bare}/produce` });
  // The floor: node:http with no framework and no work, the same requests at the same rate.
  const floorPaced = await paced({ ...pacedOptions, url: `http://127.0.0.1:${nodeHttpPort}/` });
  figures.singleP50Ms = slow.p50Ms;
  figures.singleP99Ms = slow.p99Ms;
  rows.push({
    name: 'single-record produce at 1,000 req/s',
    figure: `p50 ${slow.p50Ms.toFixed(3)} ms, p99 ${slow.p99Ms.toFixed(3)} ms (${slow.completed} requests, ${slow.errors} errors)`,
    ratio: `bare fastify p50 ${barePaced.p50Ms.toFixed(3)} ms p99 ${barePaced.p99Ms.toFixed(3)} ms; bare node:http p50 ${floorPaced.p50Ms.toFixed(3)} ms p99 ${floorPaced.p99Ms.toFixed(3)} ms; target p50 < 0.3 ms, p99 < 1 ms`,
  });

  // 4. The SDK over HTTP/2: batched produce on the stored-batch fast path, then a full read.
  const sdkRecords = 200_000;
  const producer = new Producer({
    bootstrap: sluice,
    acks: 1,
    lingerMs: 2,
    batchBytes: BATCH_RECORDS * (RECORD_BYTES + 16),
    maxInFlight: 4,
    bufferBytesMax: 256 * 1024 * 1024,
  });
  // Values are made before the clock starts, as the other steps send bodies made beforehand and
  // the peers one value: the figure is the SDK's, not the cost of allocating 200,000 buffers.
  const values = Array.from({ length: 1000 }, (_, i) => record(i));
  let t0 = performance.now();
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < sdkRecords; i++) {
    sends.push(producer.send({ topic: 'bench-sdk', partition: 0, value: values[i % values.length]! }));
    if (sends.length >= 20_000) await Promise.all(sends.splice(0));
  }
  await Promise.all(sends);
  await producer.close();
  figures.sdkProduceRecordsPerSecond = sdkRecords / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  const consumer = new PartitionConsumer({
    bootstrap: sluice,
    topic: 'bench-sdk',
    partition: 0,
    stopAtEnd: true,
    maxWaitMs: 0,
    maxBytes: 4 * 1024 * 1024,
  });
  let read = 0;
  for await (const _ of consumer) read++;
  consumer.close();
  figures.sdkFetchRecordsPerSecond = read / ((performance.now() - t0) / 1000);
  rows.push({
    name: 'SDK produce (h2, batches fast path)',
    figure: `${fmt(figures.sdkProduceRecordsPerSecond)} rec/s`,
    ratio: `${(figures.sdkProduceRecordsPerSecond / figures.produceRecordsPerSecond).toFixed(2)}x the h1 batched produce`,
  });
  rows.push({
    name: 'SDK fetch (h2, decode every record)',
    figure: `${fmt(figures.sdkFetchRecordsPerSecond)} rec/s (${fmt(read)} records)`,
    ratio: '',
  });

  if (WITH_PEERS) await peers();

  console.log(`\nSluice broker benchmark (${SECONDS} s per step, ${RECORD_BYTES}-byte records)\n`);
  for (const r of rows) console.log(`${r.name.padEnd(42)} ${r.figure.padEnd(58)} ${r.ratio}`);
  appendResults();
}

async function peers(): Promise<void> {
  ensureDebianPackage('redis-server', 'redis-server');
  ensureDebianPackage('nats-server', 'nats-server');
  // Redis Streams: AOF with fsync every second, the same class as Sluice's async flush.
  const redisDir = await mkdtemp(join(tmpdir(), 'bench-redis-'));
  temporary.push(redisDir);
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
  ]);
  await waitForPort(redisPort);
  const { Redis } = await import('ioredis');
  const redis = new Redis({ port: redisPort, host: '127.0.0.1', lazyConnect: false });
  const redisRecords = 200_000;
  const value = record(0);
  let t0 = performance.now();
  for (let sent = 0; sent < redisRecords; sent += BATCH_RECORDS) {
    const pipeline = redis.pipeline();
    for (let i = 0; i < BATCH_RECORDS; i++) pipeline.xadd('bench', '*', 'v', value);
    await pipeline.exec();
  }
  figures.redisXaddRecordsPerSecond = redisRecords / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  let last = '0-0';
  let redisRead = 0;
  for (;;) {
    const result = (await redis.xreadBuffer('COUNT', BATCH_RECORDS, 'STREAMS', 'bench', last)) as
      | [Buffer, [Buffer, Buffer[]][]][]
      | null;
    const entries = result?.[0]?.[1] ?? [];
    if (entries.length === 0) break;
    redisRead += entries.length;
    last = entries[entries.length - 1]![0].toString();
  }
  figures.redisXreadRecordsPerSecond = redisRead / ((performance.now() - t0) / 1000);
  redis.disconnect();
  rows.push({
    name: 'Redis XADD pipelined (1000/pipeline)',
    figure: `${fmt(figures.redisXaddRecordsPerSecond)} rec/s`,
    ratio: `Sluice batched produce = ${(figures.produceRecordsPerSecond! / figures.redisXaddRecordsPerSecond).toFixed(2)}x; target >= 2`,
  });
  rows.push({
    name: 'Redis XREAD COUNT 1000',
    figure: `${fmt(figures.redisXreadRecordsPerSecond)} rec/s`,
    ratio: `Sluice fetch = ${(figures.fetchRecordsPerSecond! / figures.redisXreadRecordsPerSecond).toFixed(2)}x; target >= 3`,
  });

  // NATS JetStream: file storage, async publish with 1000 in flight, pull consume in batches of 1000.
  const natsDir = await mkdtemp(join(tmpdir(), 'bench-nats-'));
  temporary.push(natsDir);
  const natsPort = await freePort();
  // Its start-up banner goes to a log file in its temp dir, not into the results table.
  start('nats-server', [
    '-js',
    '-sd',
    natsDir,
    '-l',
    join(natsDir, 'nats.log'),
    '-a',
    '127.0.0.1',
    '-p',
    String(natsPort),
  ]);
  await waitForPort(natsPort);
  const nats = await import('nats');
  const nc = await nats.connect({ servers: `127.0.0.1:${natsPort}` });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: 'BENCH', subjects: ['bench'], storage: nats.StorageType.File });
  const js = nc.jetstream();
  const natsRecords = 100_000;
  t0 = performance.now();
  let window: Promise<unknown>[] = [];
  for (let i = 0; i < natsRecords; i++) {
    window.push(js.publish('bench', value));
    if (window.length >= 1000) {
      await Promise.all(window);
      window = [];
    }
  }
  await Promise.all(window);
  figures.natsPublishRecordsPerSecond = natsRecords / ((performance.now() - t0) / 1000);
  await jsm.consumers.add('BENCH', { durable_name: 'reader', ack_policy: nats.AckPolicy.None });
  const natsConsumer = await js.consumers.get('BENCH', 'reader');
  t0 = performance.now();
  let natsRead = 0;
  while (natsRead < natsRecords) {
    const messages = await natsConsumer.fetch({ max_messages: 1000, expires: 2000 });
    let got = 0;
    for await (const _ of messages) got++;
    if (got === 0) break;
    natsRead += got;
  }
  figures.natsFetchRecordsPerSecond = natsRead / ((performance.now() - t0) / 1000);
  await nc.close();
  rows.push({
    name: 'NATS JetStream async publish (1000 in flight)',
    figure: `${fmt(figures.natsPublishRecordsPerSecond)} rec/s`,
    ratio: `Sluice batched produce = ${(figures.produceRecordsPerSecond! / figures.natsPublishRecordsPerSecond).toFixed(2)}x, SDK = ${(figures.sdkProduceRecordsPerSecond! / figures.natsPublishRecordsPerSecond).toFixed(2)}x`,
  });
  rows.push({
    name: 'NATS JetStream pull consume (1000/fetch)',
    figure: `${fmt(figures.natsFetchRecordsPerSecond)} rec/s`,
    ratio: `Sluice fetch = ${(figures.fetchRecordsPerSecond! / figures.natsFetchRecordsPerSecond).toFixed(2)}x`,
  });
}

function ensureDebianPackage(binary: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${binary}`]).status === 0) return;
  if (process.getuid?.() !== 0)
    throw new Error(`${binary} is missing: apt-get install ${pkg} (or BENCH_PEERS=0)`);
  console.log(`installing ${pkg} from Debian...`);
  execSync(
    `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${pkg}`,
    { stdio: 'inherit' },
  );
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function appendResults(): void {
  const path = join(ROOT, 'bench', 'RESULTS.md');
  if (!existsSync(path))
    writeFileSync(
      path,
      '# Benchmark results\n\n| bench | date | commit | figures |\n| --- | --- | --- | --- |\n',
    );
  let sha = 'unknown';
  try {
    sha = execSync('git rev-parse --short HEAD', { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {}
  const summary = rows.map((r) => `${r.name}: ${r.figure}${r.ratio ? ` (${r.ratio})` : ''}`).join('; ');
  appendFileSync(
    path,
    `| broker (${SECONDS}s steps) | ${new Date().toISOString().slice(0, 10)} | ${sha} | ${summary.replaceAll('|', '/')} |\n`,
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
