/**
 * Fetch throughput against the HTTP ceiling, both driven by h2load (native) in one run: a fetch of
 * 1000 stored records of 100 B per request from one Sluice node, against a route that serves the
 * same response bytes (fetched from Sluice once, then held in memory) on the same one-port server,
 * once in fastify (`fastify`) and once as a bare handler (`node`). Rounds alternate between the
 * three servers so that the machine's noise hits each alike; the figures are medians of the rounds.
 *
 *   npm run bench:fetch
 *   FETCH_SECONDS=3 FETCH_ROUNDS=5 FETCH_CLIENTS=16 FETCH_H2=1 npm run bench:fetch
 *
 * `FETCH_PROFILE=1` starts the node with `--cpu-prof` and prints where its time went.
 * Prints the figures and appends a dated row to bench/RESULTS.md.
 */
import { type ChildProcess, execSync, spawn } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { cpuSeconds } from './cpu.js';
import { ensureH2load, type Figure, h2load, median } from './h2load.js';
import { freePort, waitForPort } from './ports.js';
import { loadAverage, sluiceStart, stopChild } from './processes.js';

const SECONDS = Number(process.env.FETCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.FETCH_ROUNDS ?? 5);
const CLIENTS = Number(process.env.FETCH_CLIENTS ?? 16);
const WITH_H2 = process.env.FETCH_H2 !== '0';
const PROFILE = process.env.FETCH_PROFILE === '1';
const RECORD_BYTES = 100;
const BATCH_RECORDS = 1000;
/** Batches stored before the fetches (each fetch reads the first). */
const BATCHES = 16;
const ROOT = join(import.meta.dirname, '..');
const children: ChildProcess[] = [];

function start(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

function batchBody(): Buffer {
  const packr = new Packr({ useRecords: false, variableMapSize: true });
  const records = Array.from({ length: BATCH_RECORDS }, (_, i) => {
    const value = Buffer.alloc(RECORD_BYTES, 0x61);
    value.write(String(i).padStart(12, '0'));
    return { value };
  });
  return packr.pack({ records });
}

/** CPU profile summary: self time by function, the top entries. */
function summarizeProfile(dir: string): string {
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
  if (!file) return 'no profile written';
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples: number[];
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  for (const id of profile.samples) {
    const frame = byId.get(id)!.callFrame;
    const where = frame.url.replace(/.*\/(node_modules|src|dist)\//, '$1/');
    const key = `${frame.functionName || '(anonymous)'} ${where}:${frame.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + 1);
  }
  // Shares of the busy time: the node idles while the baselines run.
  const total = profile.samples.length - (self.get('(idle) :0') ?? 0);
  self.delete('(idle) :0');
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 30)
    .map(([key, n]) => `${((100 * n) / total).toFixed(1).padStart(5)}%  ${key}`)
    .join('\n');
}

/** Creates a topic, retrying while the node is still starting (LEADER_NOT_AVAILABLE). */
export async function createTopic(base: string, name: string, partitions: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const created = await fetch(`${base}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, partitions }),
    });
    if (created.ok) return;
    const text = await created.text();
    if (created.status !== 503 || attempt > 100) throw new Error(`topic creation: ${created.status} ${text}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function main(): Promise<void> {
  ensureH2load();
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-bench-fetch-'));
  const profileDir = await mkdtemp(join(tmpdir(), 'sluice-bench-fetch-prof-'));
  const bodyFile = join(dataDir, 'fetch-body.bin');
  const loadBefore = loadAverage();
  try {
    const [sluicePort, fastifyPort, nodePort] = [await freePort(), await freePort(), await freePort()];
    const sluice = start(process.execPath, [
      ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
      ...sluiceStart(ROOT, sluicePort, join(dataDir, 'sluice'), 'silent'),
    ]);
    await waitForPort(sluicePort);
    const base = `http://127.0.0.1:${sluicePort}`;
    await createTopic(base, 'bench', 1);
    const body = batchBody();
    for (let i = 0; i < BATCHES; i++) {
      const produced = await fetch(`${base}/v1/topics/bench/partitions/0/records?acks=1`, {
        method: 'POST',
        headers: { 'content-type': 'application/vnd.msgpack', accept: 'application/json' },
        body,
      });
      if (!produced.ok) throw new Error(`produce: ${produced.status} ${await produced.text()}`);
    }
    // One stored batch of 1000 records per fetch: maxBytes fits one batch and not two.
    const one = await fetch(`${base}/v1/topics/bench/partitions/0/records?offset=0&maxBytes=1`, {
      headers: { accept: 'application/vnd.msgpack' },
    });
    const sample = Buffer.from(await one.arrayBuffer());
    writeFileSync(bodyFile, sample);
    const maxBytes = sample.length;
    const bareServer = join(ROOT, 'bench/fetch/bare-fetch-server.ts');
    const fastifyServer = start(process.execPath, [
      '--import',
      'tsx',
      bareServer,
      'fastify',
      String(fastifyPort),
      bodyFile,
    ]);
    const nodeServer = start(process.execPath, [
      '--import',
      'tsx',
      bareServer,
      'node',
      String(nodePort),
      bodyFile,
    ]);
    await Promise.all([waitForPort(fastifyPort), waitForPort(nodePort)]);
    const sluicePath = `/v1/topics/bench/partitions/0/records?offset=0&maxBytes=${maxBytes}`;
    const servers = {
      sluice: { url: base, path: sluicePath, pid: sluice.pid! },
      fastify: { url: `http://127.0.0.1:${fastifyPort}`, path: '/fetch', pid: fastifyServer.pid! },
      node: { url: `http://127.0.0.1:${nodePort}`, path: '/fetch', pid: nodeServer.pid! },
    };
    const protocols = WITH_H2 ? [true, false] : [true];
    const results: string[] = [];
    for (const h1 of protocols) {
      const label = h1 ? 'h1' : 'h2c';
      const figures: Record<keyof typeof servers, number[]> = { sluice: [], fastify: [], node: [] };
      const cpuMs: Record<keyof typeof servers, number[]> = { sluice: [], fastify: [], node: [] };
      let failed = 0;
      for (const [name, server] of Object.entries(servers)) {
        h2load(server.url, { path: server.path, h1, clients: CLIENTS, seconds: 1 });
        void name;
      }
      for (let round = 0; round < ROUNDS; round++) {
        for (const [name, server] of Object.entries(servers) as [
          keyof typeof servers,
          (typeof servers)['sluice'],
        ][]) {
          const cpuBefore = cpuSeconds(server.pid);
          const figure: Figure = h2load(server.url, {
            path: server.path,
            h1,
            clients: CLIENTS,
            seconds: SECONDS,
          });
          // h2load's warm-up second is outside its count but inside this CPU time: per request, over both.
          const requests = figure.requestsPerSecond * (SECONDS + 1);
          cpuMs[name].push(((cpuSeconds(server.pid) - cpuBefore) * 1000) / requests);
          failed += figure.failed + figure.errored;
          figures[name].push(figure.requestsPerSecond);
        }
      }
      const s = median(figures.sluice);
      const f = median(figures.fastify);
      const n = median(figures.node);
      const line =
        `fetch 1000x100B (${label}, ${CLIENTS} clients, ${ROUNDS}x${SECONDS}s): Sluice ${Math.round(s * BATCH_RECORDS).toLocaleString('en-US')} rec/s ` +
        `(${Math.round(s).toLocaleString('en-US')} req/s, rounds ${figures.sluice.map(Math.round).join('/')}) = ${(s / f).toFixed(2)}x bare fastify ` +
        `${Math.round(f).toLocaleString('en-US')} req/s (rounds ${figures.fastify.map(Math.round).join('/')}), ${(s / n).toFixed(2)}x bare handler ` +
        `${Math.round(n).toLocaleString('en-US')} req/s (rounds ${figures.node.map(Math.round).join('/')}) serving the same ${sample.length} bytes (target 0.8x fastify); ` +
        `server CPU per request (approx.): Sluice ${median(cpuMs.sluice).toFixed(3)} ms, fastify ${median(cpuMs.fastify).toFixed(3)} ms, bare ${median(cpuMs.node).toFixed(3)} ms` +
        (failed > 0 ? `; ${failed} requests failed` : '');
      console.log(line);
      results.push(line);
    }
    await stopChild(sluice);
    if (PROFILE)
      console.log(
        `\nSluice CPU profile, self time as a share of its busy time (all steps):\n${summarizeProfile(profileDir)}`,
      );
    const commit = execSync('git rev-parse --short HEAD', { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execSync('git status --porcelain -- src', { cwd: ROOT, encoding: 'utf8' }).trim()
      ? ' + uncommitted src'
      : '';
    const date = new Date().toISOString().slice(0, 10);
    const row = `| fetch (1 node; h2load for all, baselines a fastify route and a bare handler on the same server serving the same bytes, in the same run) | ${date} | ${commit}${dirty} | ${results.join('; ')}; load average ${loadBefore} before, ${loadAverage()} after on 2 cores${PROFILE ? ' (with --cpu-prof)' : ''} |\n`;
    if (process.env.FETCH_NO_RESULTS !== '1') appendFileSync(join(ROOT, 'bench', 'RESULTS.md'), row);
  } finally {
    for (const child of children) await stopChild(child);
    await rm(dataDir, { recursive: true, force: true });
    await rm(profileDir, { recursive: true, force: true });
  }
}

// Only as a script: bench/recovery.ts and bench/scale.ts import createTopic from here.
if (process.argv[1]?.endsWith('fetch.ts')) await main();
