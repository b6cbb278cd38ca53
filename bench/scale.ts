/**
 * Scale of one node: 10,000 partitions (100 topics of 100), one record in each; then a kill -9
 * and a start-up, a clean stop, and a start-up again, each start-up timed from spawn until every
 * partition answers a fetch of its record, with the RSS and the descriptors the node holds once
 * up; then 10,000 idle keep-alive connections held by two other processes, with the RSS and
 * h2load fetches served meanwhile (against the same fetches without them); then the RSS under
 * batched produce (h2load, 1000 x 100 B per request), and a second clean stop.
 *
 *   npm run bench:scale
 *   SCALE_TOPICS=100 SCALE_PARTITIONS=100 SCALE_CONNECTIONS=10000 npm run bench:scale
 *   SCALE_STEPS= SCALE_NO_RESULTS=1 SCALE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" npm run bench:scale
 *
 * SCALE_STEPS names the steps after the start-ups (`connections,produce` by default; empty: the
 * start-ups and the stops alone); SCALE_NODE_ARGS goes to the node's `node` (a CPU profile per
 * run of the node); SCALE_LOG_LEVEL is the node's log level (`warn`).
 * Prints the figures and appends a dated row to bench/RESULTS.md.
 */
import { type ChildProcess, execFileSync, execSync } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { createTopic } from './fetch.js';
import { ensureH2load, h2load } from './h2load.js';
import { freePort, waitForPort } from './ports.js';
import { loadAverage, sluiceStart, spawnTracked, stopChild } from './processes.js';

const TOPICS = Number(process.env.SCALE_TOPICS ?? 100);
const PARTITIONS = Number(process.env.SCALE_PARTITIONS ?? 100);
const CONNECTIONS = Number(process.env.SCALE_CONNECTIONS ?? 10_000);
const ROOT = join(import.meta.dirname, '..');
const children = new Set<ChildProcess>();
const spawnChild = (command: string, args: string[], stdout: 'ignore' | 'pipe' = 'ignore') =>
  spawnTracked(children, ROOT, command, args, stdout);
const MIB = 1024 * 1024;
const STOP_WAIT_MS = Number(process.env.SCALE_STOP_WAIT_MS ?? 60_000);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

function descriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Extra arguments for the node's own `node`, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`. */
const NODE_ARGS = (process.env.SCALE_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
/** The steps after the start-ups: `connections`, `produce` (both by default). */
const STEPS = new Set((process.env.SCALE_STEPS ?? 'connections,produce').split(',').filter(Boolean));
let currentDataDir = '';
/** Every partition's fetch URL at offset 0, one a line (h2load -i). */
let uriFile = '';

function startSluice(port: number, dataDir: string): ChildProcess {
  return spawnChild(process.execPath, [
    ...NODE_ARGS,
    ...sluiceStart(ROOT, port, dataDir, process.env.SCALE_LOG_LEVEL ?? 'warn'),
  ]);
}

/** Runs `work` over `items`, `concurrency` at a time. */
async function eachLimited<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

const partitions = Array.from({ length: TOPICS * PARTITIONS }, (_, i) => ({
  topic: `s${Math.floor(i / PARTITIONS)}`,
  partition: i % PARTITIONS,
}));

async function fetchOne(base: string, topic: string, partition: number): Promise<boolean> {
  try {
    const answer = await fetch(`${base}/v1/topics/${topic}/partitions/${partition}/records?offset=0`, {
      headers: { accept: 'application/json' },
    });
    if (!answer.ok) {
      await answer.body?.cancel();
      return false;
    }
    return ((await answer.json()) as { records: unknown[] }).records.length === 1;
  } catch {
    return false;
  }
}

/**
 * Starts the node on `dataDir` and times it from spawn: until it listens, and until every
 * partition answers a fetch of its record (checked 64 at a time, the last created first).
 */
async function timedStart(
  port: number,
  base: string,
  label: string,
): Promise<{ node: ChildProcess; line: string; label: string }> {
  const t0 = performance.now();
  const node = startSluice(port, currentDataDir);
  await waitForPort(port, 600_000);
  const listeningSeconds = (performance.now() - t0) / 1000;
  // Ready: every partition answers a fetch at offset 0 with 200, by h2load (native, so that the
  // client's own cost stays small) over a file of every partition's URL, in rounds until none fails.
  let rounds = 0;
  let lastRoundBegan = 0;
  for (;;) {
    rounds++;
    lastRoundBegan = (performance.now() - t0) / 1000;
    const out = execFileSync(
      'h2load',
      [
        '--h1',
        '-c',
        '8',
        '-n',
        String(partitions.length),
        '-i',
        uriFile,
        '-H',
        'accept: application/vnd.msgpack',
      ],
      { encoding: 'utf8', maxBuffer: 16 << 20 },
    );
    const ok = /status codes: (\d+) 2xx/.exec(out);
    if (Number(ok?.[1] ?? 0) === partitions.length) break;
    await sleep(20);
  }
  const readySeconds = (performance.now() - t0) / 1000;
  // One more round on the node now up: what one round of the check costs.
  const t1 = performance.now();
  execFileSync('h2load', ['--h1', '-c', '8', '-n', String(partitions.length), '-i', uriFile], {
    encoding: 'utf8',
    maxBuffer: 16 << 20,
  });
  const roundSeconds = (performance.now() - t1) / 1000;
  // And each record itself, untimed.
  let wrong = 0;
  await eachLimited(partitions, 64, async (p) => {
    if (!(await fetchOne(base, p.topic, p.partition))) wrong++;
  });
  const line = `${readySeconds.toFixed(2)} s until every partition answered a fetch (listening after ${listeningSeconds.toFixed(2)} s; target under 5 s; ${rounds} rounds of h2load over the ${partitions.length} partitions, the last begun at ${lastRoundBegan.toFixed(2)} s, one round ${roundSeconds.toFixed(2)} s once up; ${wrong === 0 ? 'every record then read back' : `${wrong} records NOT read back`})`;
  console.log(`start-up ${label}: ${line}`);
  return { node, line, label };
}

/** SIGTERM, bounded by STOP_WAIT_MS (then kill -9), counting the partitions that closed cleanly. */
async function timedStop(node: ChildProcess, dataDir: string): Promise<{ stopped: boolean; line: string }> {
  const started = performance.now();
  const stopped = await Promise.race([
    stopChild(node).then(() => true),
    sleep(STOP_WAIT_MS).then(() => false),
  ]);
  const seconds = (performance.now() - started) / 1000;
  const cleanMarkers = Number(
    execSync(`find ${dataDir} -maxdepth 2 -name .clean-shutdown | wc -l`, { encoding: 'utf8' }).trim(),
  );
  if (!stopped) await stopChild(node, 'SIGKILL');
  const line = stopped
    ? `clean stop ${seconds.toFixed(2)} s (${cleanMarkers} of ${partitions.length} partitions with a clean-shutdown marker)`
    : `clean stop unfinished after ${STOP_WAIT_MS / 1000} s (${cleanMarkers} of ${partitions.length} partitions closed), then kill -9`;
  console.log(line);
  return { stopped, line };
}

async function main(): Promise<void> {
  ensureH2load();
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bench-scale-'));
  const dataDir = join(dir, 'data');
  currentDataDir = dataDir;
  uriFile = join(dir, 'uris.txt');
  const loadBefore = loadAverage();
  // The commit when the run starts, which dist was built from (a rebuild during the run would mix).
  const commit = execSync('git rev-parse --short HEAD', { cwd: ROOT, encoding: 'utf8' }).trim();
  const parts: string[] = [];
  try {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    writeFileSync(
      uriFile,
      partitions
        .map((p) => `${base}/v1/topics/${p.topic}/partitions/${p.partition}/records?offset=0\n`)
        .join(''),
    );
    let node = startSluice(port, dataDir);
    await waitForPort(port);
    let t0 = performance.now();
    await eachLimited(
      Array.from({ length: TOPICS }, (_, t) => `s${t}`),
      4,
      (name) => createTopic(base, name, PARTITIONS),
    );
    const createSeconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    await eachLimited(partitions, 32, async ({ topic, partition }) => {
      for (;;) {
        const answer = await fetch(`${base}/v1/topics/${topic}/partitions/${partition}/records?acks=1`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify({ records: [{ value: `${topic}/${partition}` }] }),
        });
        await answer.text();
        if (answer.ok) return;
        // The partition's log may still be opening right after the topic was created.
        await sleep(50);
      }
    });
    const produceSeconds = (performance.now() - t0) / 1000;
    console.log(
      `${partitions.length} partitions created in ${createSeconds.toFixed(1)} s, one record each in ${produceSeconds.toFixed(1)} s; RSS ${(rssBytes(node.pid!) / MIB).toFixed(0)} MiB, ${descriptors(node.pid!)} descriptors`,
    );
    // 1. A crash: kill -9 once the timed flush (flush.ms 1000) has synced the records.
    await sleep(2500);
    await stopChild(node, 'SIGKILL');
    const afterCrash = await timedStart(port, base, 'after kill -9');
    node = afterCrash.node;
    // 2. A clean stop of every partition (each was opened after a crash, so each writes its
    // checkpoints and its clean-shutdown marker); bounded, then kill -9 so the next start-up runs.
    const stop = await timedStop(node, dataDir);
    const stopLine = stop.line;
    // 3. Start-up after it.
    const afterStop = await timedStart(
      port,
      base,
      stop.stopped ? 'after the clean stop' : 'after kill -9 (the stop did not finish)',
    );
    node = afterStop.node;
    await sleep(2000);
    const rssStarted = rssBytes(node.pid!);
    const fdsStarted = descriptors(node.pid!);
    const startLine = `${partitions.length} partitions (${TOPICS} topics x ${PARTITIONS}, one record each): start-up after kill -9 ${afterCrash.line}; ${stopLine}; start-up ${afterStop.label} ${afterStop.line}; RSS ${(rssStarted / MIB).toFixed(0)} MiB (target at most 512), ${fdsStarted} descriptors open`;
    console.log(startLine);
    parts.push(startLine);
    if (!STEPS.has('connections') && !STEPS.has('produce')) {
      const last = await timedStop(node, dataDir);
      console.log(`second ${last.line}`);
      parts.push(`second ${last.line}`);
    }

    // 4. 10,000 idle keep-alive connections, from two other processes.
    if (STEPS.has('connections')) {
      const fetchPath = '/v1/topics/s0/partitions/0/records?offset=0';
      const before = h2load(base, { path: fetchPath, h1: true, clients: 8, seconds: 3 });
      const holders: ChildProcess[] = [];
      const opened: Promise<string>[] = [];
      for (let i = 0; i < 2; i++) {
        const holder = spawnChild(
          process.execPath,
          [
            '--import',
            'tsx',
            join(ROOT, 'bench/scale/idle-connections.ts'),
            String(port),
            String(CONNECTIONS / 2),
            '60000',
          ],
          'pipe',
        );
        holders.push(holder);
        opened.push(
          new Promise((resolve) => {
            let out = '';
            holder.stdout!.on('data', (chunk: Buffer) => {
              out += chunk.toString();
              if (out.includes('\n')) resolve(out.trim());
            });
          }),
        );
      }
      const counts = await Promise.all(opened);
      const idle = counts.reduce((sum, line) => sum + Number(/open (\d+)/.exec(line)![1]), 0);
      await sleep(1000);
      const rssIdle = rssBytes(node.pid!);
      const fdsIdle = descriptors(node.pid!);
      const during = h2load(base, { path: fetchPath, h1: true, clients: 8, seconds: 3 });
      const last = partitions.at(-1)!;
      const served = await fetchOne(base, last.topic, last.partition);
      for (const holder of holders) await stopChild(holder);
      await sleep(1000);
      // Measured again once they are gone: right after start-up the node may still be busy, so the
      // baseline is the better of the runs before and after.
      const after = h2load(base, { path: fetchPath, h1: true, clients: 8, seconds: 3 });
      const baselineRps = Math.max(before.requestsPerSecond, after.requestsPerSecond);
      const idleLine = `${idle.toLocaleString('en-US')} idle keep-alive connections open (${counts.join(', ')}): RSS ${(rssIdle / MIB).toFixed(0)} MiB (+${((rssIdle - rssStarted) / MIB).toFixed(0)} MiB, ${((rssIdle - rssStarted) / Math.max(1, idle) / 1024).toFixed(1)} KiB each), ${fdsIdle} descriptors; fetches meanwhile ${Math.round(during.requestsPerSecond).toLocaleString('en-US')} req/s (${during.failed} failed) = ${(during.requestsPerSecond / baselineRps).toFixed(2)}x without them (${Math.round(before.requestsPerSecond).toLocaleString('en-US')} req/s before, ${Math.round(after.requestsPerSecond).toLocaleString('en-US')} after; h2load h1 8 clients 3 s); a fetch of the last partition ${served ? 'served' : 'NOT served'}`;
      console.log(idleLine);
      parts.push(idleLine);
    }

    // 5. RSS under batched produce load.
    if (STEPS.has('produce')) {
      const packr = new Packr({ useRecords: false, variableMapSize: true });
      const body = packr.pack({
        records: Array.from({ length: 1000 }, (_, i) => ({ value: Buffer.alloc(100, 97 + (i % 26)) })),
      });
      const bodyFile = join(dir, 'batch.msgpack');
      writeFileSync(bodyFile, body);
      let rssMax = 0;
      const sampler = setInterval(() => {
        rssMax = Math.max(rssMax, rssBytes(node.pid!));
      }, 100);
      // h2load blocks this thread: sample from a timer in a child instead (ps every 100 ms).
      const sampleFile = join(dir, 'rss.txt');
      const sampling = spawnChild('bash', [
        '-c',
        `while kill -0 ${node.pid} 2>/dev/null; do grep VmRSS /proc/${node.pid}/status >> ${sampleFile}; sleep 0.1; done`,
      ]);
      const produced = h2load(base, {
        path: '/v1/topics/s1/partitions/0/records?acks=1',
        body: bodyFile,
        h1: true,
        clients: 16,
        seconds: 10,
      });
      await stopChild(sampling);
      clearInterval(sampler);
      for (const line of readFileSync(sampleFile, 'utf8').split('\n')) {
        const kb = /VmRSS:\s+(\d+) kB/.exec(line);
        if (kb) rssMax = Math.max(rssMax, Number(kb[1]) * 1024);
      }
      const produceLine = `batched produce (h2load h1, 16 clients, 10 s, 1000 x 100 B, acks=1, one partition among the 10,000): ${Math.round(produced.requestsPerSecond * 1000).toLocaleString('en-US')} rec/s (${produced.failed} failed), RSS at most ${(rssMax / MIB).toFixed(0)} MiB (sampled every 100 ms), ${(rssBytes(node.pid!) / MIB).toFixed(0)} MiB after`;
      console.log(produceLine);
      parts.push(produceLine);
      const last = await timedStop(node, dataDir);
      console.log(`second ${last.line}`);
    }

    const date = new Date().toISOString().slice(0, 10);
    const row = `| scale (1 node; fetches and produce by h2load, idle connections from two Node processes; fd limit ${execFileSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()}) | ${date} | ${commit} | ${parts.join('; ')}; load average ${loadBefore} before, ${loadAverage()} after on 2 cores |\n`;
    console.log(row);
    if (process.env.SCALE_NO_RESULTS !== '1') appendFileSync(join(ROOT, 'bench', 'RESULTS.md'), row);
  } finally {
    for (const child of children) await stopChild(child, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
