/**
 * Recovery after kill -9: the time from spawning the restarted process to the first fetch at the
 * log end that returns records, with 1 GiB and with 10 GiB of log, against a log of only the
 * writes made before each kill (the node's own start-up, the baseline) (100-byte records in batches of
 * 1000, written by h2load with acks=1 and the default flush policy), beside Redis's AOF load
 * (everysec, no rewrite: the AOF holds every XADD) and JetStream's restart of 2 GiB of the same
 * records, in the same run. Each restart follows fresh writes (a few seconds of them, so that an
 * unflushed tail is there to recover) and a kill -9. The data is deleted at the end.
 *
 *   npm run bench:recovery
 *   RECOVERY_GIB=1,10 RECOVERY_RUNS=3 RECOVERY_PEER_GIB=2 RECOVERY_PEERS=1 npm run bench:recovery
 *
 * Prints the figures and appends a dated row to bench/RESULTS.md.
 */
import { type ChildProcess, execFileSync, execSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { createTopic } from './fetch.js';
import { ensureH2load, median } from './h2load.js';
import { freePort, waitForPort } from './ports.js';
import { loadAverage, spawnTracked, stopChild } from './processes.js';

/** 0 is the baseline: a log holding only the writes made right before each kill. */
const SIZES_GIB = (process.env.RECOVERY_GIB ?? '0,1,10').split(',').map(Number);
const RUNS = Number(process.env.RECOVERY_RUNS ?? 3);
const PEER_GIB = Number(process.env.RECOVERY_PEER_GIB ?? 2);
const WITH_PEERS = process.env.RECOVERY_PEERS !== '0';
const RECORD_BYTES = 100;
const BATCH_RECORDS = 1000;
const GIB = 1024 ** 3;
const ROOT = join(import.meta.dirname, '..');
const children = new Set<ChildProcess>();
const spawnChild = (command: string, args: string[], stdout: 'ignore' | 'pipe' = 'ignore') =>
  spawnTracked(children, ROOT, command, args, stdout);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One batch of 1000 records of 100 B as a produce body, and its stored size (about). */
function batchFile(dir: string): { path: string; bytes: number } {
  const packr = new Packr({ useRecords: false, variableMapSize: true });
  const records = Array.from({ length: BATCH_RECORDS }, (_, i) => {
    const value = Buffer.alloc(RECORD_BYTES, 0x72);
    value.write(String(i).padStart(12, '0'));
    return { value };
  });
  const path = join(dir, 'batch.msgpack');
  const body = packr.pack({ records });
  writeFileSync(path, body);
  return { path, bytes: body.length };
}

/** `requests` produce requests of the batch, 8 connections, HTTP/1.1, acks=1. */
function produce(base: string, body: string, requests: number): void {
  execFileSync(
    'h2load',
    [
      '--h1',
      '-n',
      String(requests),
      '-c',
      '8',
      '-m',
      '1',
      '-H',
      'content-type: application/vnd.msgpack',
      '-H',
      'accept: application/vnd.msgpack',
      '-d',
      body,
      `${base}/v1/topics/r/partitions/0/records?acks=1`,
    ],
    { stdio: 'ignore', maxBuffer: 16 << 20 },
  );
}

async function logEnd(base: string): Promise<number> {
  const answer = await fetch(`${base}/v1/topics/r/partitions/0/offsets`, {
    headers: { accept: 'application/json' },
  });
  return ((await answer.json()) as { latest: number }).latest;
}

function startSluice(port: number, dataDir: string): { child: ChildProcess; lines: string[] } {
  const child = spawnChild(
    process.execPath,
    [
      join(ROOT, 'bin', 'sluice.js'),
      'start',
      '--port',
      String(port),
      '--data-dir',
      dataDir,
      '--log-format',
      'json',
    ],
    'pipe',
  );
  const lines: string[] = [];
  let rest = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = rest + chunk.toString();
    const parts = text.split('\n');
    rest = parts.pop()!;
    lines.push(...parts);
  });
  return { child, lines };
}

/** Polls a fetch at `offset` (the last batch) until it returns records; the ms since `t0`. */
async function firstFetch(base: string, offset: number, t0: number): Promise<number> {
  for (;;) {
    try {
      const answer = await fetch(`${base}/v1/topics/r/partitions/0/records?offset=${offset}&maxBytes=1`, {
        headers: { accept: 'application/json' },
      });
      if (answer.ok) {
        const body = (await answer.json()) as { records: unknown[] };
        if (body.records.length > 0) return performance.now() - t0;
      } else await answer.body?.cancel();
    } catch {
      // Not listening yet.
    }
    await sleep(5);
  }
}

interface SluiceFigure {
  gib: number;
  writeSeconds: number;
  restartsMs: number[];
  /** From spawn to the node's line saying the partition log was recovered (its own clock). */
  recoveredMs: number[];
  scannedBytes: number[];
  segments: number;
}

async function sluiceAt(
  gib: number,
  dir: string,
  body: { path: string; bytes: number },
): Promise<SluiceFigure> {
  const dataDir = join(dir, `sluice-${gib}`);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let node = startSluice(port, dataDir);
  await waitForPort(port);
  await createTopic(base, 'r', 1);
  const requests = Math.ceil((gib * GIB) / body.bytes);
  const started = performance.now();
  if (requests > 0) produce(base, body.path, requests);
  const writeSeconds = (performance.now() - started) / 1000;
  const restartsMs: number[] = [];
  const recoveredMs: number[] = [];
  const scannedBytes: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    // Fresh writes right before the kill: the tail past the last flush is what recovery checks.
    produce(base, body.path, 500);
    const end = await logEnd(base);
    await sleep(1500);
    await stopChild(node.child, 'SIGKILL');
    const t0 = performance.now();
    const spawnedAt = Date.now();
    node = startSluice(port, dataDir);
    restartsMs.push(await firstFetch(base, end - BATCH_RECORDS, t0));
    const recovered = node.lines
      .map((line) => JSON.parse(line))
      .find((l) => l.msg?.startsWith('partition log recovered'));
    scannedBytes.push(recovered?.scannedBytes ?? -1);
    recoveredMs.push(recovered ? recovered.time - spawnedAt : -1);
  }
  const segments = Number(execSync(`find ${dataDir} -name '*.log' | wc -l`, { encoding: 'utf8' }).trim());
  await stopChild(node.child, 'SIGKILL');
  await rm(dataDir, { recursive: true, force: true });
  return { gib, writeSeconds, restartsMs, recoveredMs, scannedBytes, segments };
}

function ensureDebianPackage(binary: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${binary}`]).status === 0) return;
  if (process.getuid?.() !== 0) throw new Error(`${binary} is missing: sudo apt-get install -y ${pkg}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], {
    stdio: 'inherit',
    env,
  });
}

/** Redis 7 with AOF everysec and no rewrite: XADD of `entries` x 100 B, then kill -9 and restarts. */
async function redisRecovery(
  dir: string,
  entries: number,
): Promise<{ restartsMs: number[]; aofBytes: number }> {
  ensureDebianPackage('redis-server', 'redis-server');
  const data = join(dir, 'redis');
  mkdirSync(data, { recursive: true });
  const port = await freePort();
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    data,
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--save',
    '',
    '--daemonize',
    'no',
    '--auto-aof-rewrite-percentage',
    '0',
  ];
  let server = spawnChild('redis-server', args);
  await waitForPort(port);
  const value = 'v'.repeat(RECORD_BYTES);
  execFileSync(
    'redis-benchmark',
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-P',
      '1000',
      '-c',
      '8',
      '-n',
      String(entries),
      '-q',
      'XADD',
      's',
      '*',
      'f',
      value,
    ],
    { stdio: 'ignore' },
  );
  const count = execFileSync('redis-cli', ['-p', String(port), 'xlen', 's'], { encoding: 'utf8' }).trim();
  await sleep(1500);
  const aofBytes = Number(execSync(`du -sb ${data}`, { encoding: 'utf8' }).split('\t')[0]);
  const restartsMs: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    await stopChild(server, 'SIGKILL');
    const t0 = performance.now();
    server = spawnChild('redis-server', args);
    for (;;) {
      const answer = spawnSync('redis-cli', ['-p', String(port), 'xlen', 's'], { encoding: 'utf8' });
      if (answer.stdout?.trim() === count) break;
      await sleep(10);
    }
    restartsMs.push(performance.now() - t0);
  }
  await stopChild(server, 'SIGKILL');
  return { restartsMs, aofBytes };
}

/** JetStream file stream of `messages` x 100 B (core publishes, no acks: the leanest fill), kill -9, restarts. */
async function natsRecovery(
  dir: string,
  messages: number,
): Promise<{ restartsMs: number[]; storeBytes: number }> {
  ensureDebianPackage('nats-server', 'nats-server');
  const store = join(dir, 'nats');
  mkdirSync(store, { recursive: true });
  const port = await freePort();
  const conf = join(dir, 'nats.conf');
  writeFileSync(
    conf,
    `listen: 127.0.0.1:${port}\njetstream {\n  store_dir: "${store}"\n  max_memory_store: 1G\n  max_file_store: 20G\n}\n`,
  );
  let server = spawnChild('nats-server', ['-c', conf]);
  await waitForPort(port);
  const nats = await import('nats');
  const nc = await nats.connect({ servers: `127.0.0.1:${port}` });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({
    name: 'FILL',
    subjects: ['fill.>'],
    storage: nats.StorageType.File,
    num_replicas: 1,
  });
  const payload = Buffer.alloc(RECORD_BYTES, 0x66);
  let stored = 0;
  for (let sent = 0; sent < messages; ) {
    for (let i = 0; i < 10_000 && sent < messages; i++, sent++) nc.publish('fill.x', payload);
    await nc.flush();
    // Core publishes are not acknowledged: keep at most ~1 M messages ahead of the stream.
    if (sent - stored > 1_000_000) {
      for (;;) {
        stored = (await jsm.streams.info('FILL')).state.messages;
        if (sent - stored <= 500_000) break;
        await sleep(50);
      }
    }
  }
  for (;;) {
    stored = (await jsm.streams.info('FILL')).state.messages;
    if (stored >= messages) break;
    await sleep(100);
  }
  await nc.close();
  await sleep(1500);
  const storeBytes = Number(execSync(`du -sb ${store}`, { encoding: 'utf8' }).split('\t')[0]);
  const restartsMs: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    await stopChild(server, 'SIGKILL');
    const t0 = performance.now();
    server = spawnChild('nats-server', ['-c', conf]);
    for (;;) {
      try {
        const probe = await nats.connect({ servers: `127.0.0.1:${port}`, timeout: 500, reconnect: false });
        try {
          const info = await (await probe.jetstreamManager({ timeout: 1000 })).streams.info('FILL');
          if (info.state.messages >= stored) break;
        } finally {
          await probe.close();
        }
      } catch {
        // Not up yet.
      }
      await sleep(10);
    }
    restartsMs.push(performance.now() - t0);
  }
  await stopChild(server, 'SIGKILL');
  return { restartsMs, storeBytes };
}

const seconds = (ms: number) => (ms / 1000).toFixed(3);

async function main(): Promise<void> {
  ensureH2load();
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bench-recovery-'));
  const loadBefore = loadAverage();
  // The commit when the run starts, which dist was built from (a rebuild during the run would mix).
  const commit = execSync('git rev-parse --short HEAD', { cwd: ROOT, encoding: 'utf8' }).trim();
  try {
    const body = batchFile(dir);
    const figures: SluiceFigure[] = [];
    for (const gib of SIZES_GIB) {
      const figure = await sluiceAt(gib, dir, body);
      console.log(
        `Sluice ${gib} GiB (written in ${figure.writeSeconds.toFixed(1)} s, ${figure.segments} segments): first fetch at the log end after ${figure.restartsMs.map(seconds).join(', ')} s; log recovered after ${figure.recoveredMs.map(seconds).join(', ')} s; scanned ${figure.scannedBytes.join(', ')} bytes`,
      );
      figures.push(figure);
    }
    const parts = figures.map(
      (f) =>
        `${f.gib === 0 ? 'baseline, only the writes before each kill' : `${f.gib} GiB`} (${f.segments} segments): first fetch at the log end ${seconds(median(f.restartsMs))} s (runs ${f.restartsMs.map(seconds).join('/')}), the log recovered ${seconds(median(f.recoveredMs))} s after spawn, recovery scanned ${f.scannedBytes.map((b) => `${(b / 1024 / 1024).toFixed(2)} MiB`).join('/')}`,
    );
    const sized = figures.filter((f) => f.gib > 0);
    if (sized.length >= 2) {
      const ratio = median(sized.at(-1)!.restartsMs) / median(sized[0]!.restartsMs);
      parts.push(
        `${sized.at(-1)!.gib} GiB / ${sized[0]!.gib} GiB = ${ratio.toFixed(2)}x (target at most 1.2x and under 2 s)`,
      );
    }
    const baseline = figures.find((f) => f.gib === 0);
    if (baseline && sized.length > 0)
      parts.push(
        sized
          .map(
            (f) =>
              `${f.gib} GiB = ${(median(f.restartsMs) / median(baseline.restartsMs)).toFixed(2)}x the baseline`,
          )
          .join(', '),
      );
    if (WITH_PEERS) {
      const entries = Math.round((PEER_GIB * GIB) / RECORD_BYTES);
      const redis = await redisRecovery(dir, entries);
      const redisLine = `Redis AOF load of ${entries.toLocaleString('en-US')} XADD x 100 B (AOF ${(redis.aofBytes / GIB).toFixed(2)} GiB, everysec, no rewrite): ${seconds(median(redis.restartsMs))} s (runs ${redis.restartsMs.map(seconds).join('/')})`;
      console.log(redisLine);
      parts.push(redisLine);
      await rm(join(dir, 'redis'), { recursive: true, force: true });
      const jetstream = await natsRecovery(dir, entries);
      const natsLine = `JetStream restart with ${entries.toLocaleString('en-US')} x 100 B in a file stream (store ${(jetstream.storeBytes / GIB).toFixed(2)} GiB) until stream info reports them all: ${seconds(median(jetstream.restartsMs))} s (runs ${jetstream.restartsMs.map(seconds).join('/')})`;
      console.log(natsLine);
      parts.push(natsLine);
    }
    const date = new Date().toISOString().slice(0, 10);
    const row = `| recovery (1 node, kill -9; time from spawn to the first fetch at the log end that returns records; h2load writes 1000 x 100 B batches, acks=1, default flush; peers in the same run) | ${date} | ${commit} | ${parts.join('; ')}; load average ${loadBefore} before, ${loadAverage()} after on 2 cores |\n`;
    console.log(row);
    if (process.env.RECOVERY_NO_RESULTS !== '1') appendFileSync(join(ROOT, 'bench', 'RESULTS.md'), row);
  } finally {
    for (const child of children) await stopChild(child, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
