/**
 * Sluice against an earlier commit of itself, in one run on this machine, with a native load
 * generator (h2load, from Debian's nghttp2-client, installed here when missing and running as root):
 * the same broker steps for both builds, interleaved round by round so that a noisy neighbour hurts
 * both alike. Figures are medians over the rounds; the ratio is this tree over the base.
 *
 *   node --import tsx bench/compare.ts                  # base: HEAD~1, 5 rounds of 3 s per step
 *   BASE=2d8089a ROUNDS=7 STEP_SECONDS=3 node --import tsx bench/compare.ts
 *   BASE=2d8089a CANDIDATE=8d06a74 node --import tsx bench/compare.ts   # two commits, neither the tree
 *   STEPS=fetch ROUNDS=10 node --import tsx bench/compare.ts             # only the steps named so
 *
 * The base commit is built in a temporary git worktree (node_modules shared with this tree), and
 * both brokers run as `sluice start` processes on loopback. Appends a dated row to bench/RESULTS.md.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, existsSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packr } from '../src/protocol/msgpack.js';
import { ensureH2load, type Figure, h2load, median } from './h2load.js';
import { freePort, waitForPort } from './ports.js';
import { sluiceStart } from './processes.js';

const ROOT = join(import.meta.dirname, '..');
const BASE = process.env.BASE ?? 'HEAD~1';
/** A commit to measure instead of this working tree. */
const CANDIDATE = process.env.CANDIDATE;
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const STEP_SECONDS = Number(process.env.STEP_SECONDS ?? 3);
const RECORD_BYTES = 100;
const BATCH_RECORDS = 1000;
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

function git(...args: string[]): string {
  return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
}

/** Builds `commit` in a temporary worktree (removed at the end) and returns its directory. */
async function buildBase(commit: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-base-'));
  git('worktree', 'add', '--detach', dir, commit);
  cleanups.push(() => {
    git('worktree', 'remove', '--force', dir);
  });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' });
  return dir;
}

async function startBroker(tree: string): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-compare-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const child = spawn(process.execPath, sluiceStart(tree, port, dataDir, 'silent'), {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  await waitForPort(port);
  const url = `http://127.0.0.1:${port}`;
  for (const name of ['batched', 'single']) {
    const response = await fetch(`${url}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, partitions: 1 }),
    });
    if (response.status !== 201) throw new Error(`creating topic ${name}: ${response.status}`);
  }
  return url;
}

function record(i: number): Buffer {
  const value = Buffer.alloc(RECORD_BYTES, 0x61);
  value.write(String(i).padStart(12, '0'));
  return value;
}

interface Step {
  name: string;
  path: string;
  body?: string;
  h1: boolean;
  clients: number;
  /** Records per request, to turn requests into records. */
  records: number;
}

async function main(): Promise<void> {
  ensureH2load();
  const head = git('rev-parse', '--short', CANDIDATE ?? 'HEAD');
  const dirty = !CANDIDATE && git('status', '--porcelain', '--untracked-files=no') !== '';
  const base = git('rev-parse', '--short', BASE);
  const baseTree = await buildBase(base);
  const headTree = CANDIDATE ? await buildBase(head) : ROOT;
  if (!CANDIDATE) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  const work = await mkdtemp(join(tmpdir(), 'sluice-bodies-'));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  const batched = join(work, 'batched.msgpack');
  const single = join(work, 'single.msgpack');
  writeFileSync(
    batched,
    packr.pack({ records: Array.from({ length: BATCH_RECORDS }, (_, i) => ({ value: record(i) })) }),
  );
  writeFileSync(single, packr.pack({ records: [{ value: record(0) }] }));
  const urls = { head: await startBroker(headTree), base: await startBroker(baseTree) };

  const steps: Step[] = [
    {
      name: 'produce 1000x100B (h1)',
      path: '/v1/topics/batched/partitions/0/records?acks=1',
      body: batched,
      h1: true,
      clients: 16,
      records: BATCH_RECORDS,
    },
    {
      name: 'produce 1000x100B (h2c)',
      path: '/v1/topics/batched/partitions/0/records?acks=1',
      body: batched,
      h1: false,
      clients: 16,
      records: BATCH_RECORDS,
    },
    {
      name: 'produce 1 record (h1)',
      path: '/v1/topics/single/records?acks=1',
      body: single,
      h1: true,
      clients: 16,
      records: 1,
    },
    {
      name: 'fetch 1000 records (h1)',
      path: `/v1/topics/batched/partitions/0/records?offset=0&maxBytes=${110_000}`,
      h1: true,
      clients: 16,
      records: BATCH_RECORDS,
    },
  ];
  // STEPS=fetch (a substring of step names) measures only those steps.
  const only = process.env.STEPS;
  if (only) steps.splice(0, steps.length, ...steps.filter((step) => step.name.includes(only)));
  // The fetch step reads what the produce steps wrote; with those left out, each broker gets the
  // same 100 batches first.
  for (const url of Object.values(urls))
    execFileSync(
      'h2load',
      [
        '-n',
        '100',
        '-c',
        '4',
        '--h1',
        '-H',
        'content-type: application/vnd.msgpack',
        '-d',
        batched,
        `${url}/v1/topics/batched/partitions/0/records?acks=1`,
      ],
      { stdio: 'ignore' },
    );
  const results = new Map<string, { head: Figure[]; base: Figure[] }>();
  for (const step of steps) results.set(step.name, { head: [], base: [] });
  for (let round = 0; round < ROUNDS; round++) {
    for (const step of steps) {
      // Alternate which build goes first, so that neither always runs on a warmer machine.
      const order: ('head' | 'base')[] = round % 2 === 0 ? ['head', 'base'] : ['base', 'head'];
      for (const which of order)
        results.get(step.name)![which].push(h2load(urls[which], { ...step, seconds: STEP_SECONDS }));
    }
    process.stdout.write(`round ${round + 1}/${ROUNDS} done\n`);
  }

  const lines: string[] = [];
  for (const step of steps) {
    const r = results.get(step.name)!;
    const headRps = median(r.head.map((f) => f.requestsPerSecond));
    const baseRps = median(r.base.map((f) => f.requestsPerSecond));
    const headMean = median(r.head.map((f) => f.meanMs));
    const baseMean = median(r.base.map((f) => f.meanMs));
    const failed = [...r.head, ...r.base].reduce((n, f) => n + f.failed, 0);
    const spread = (figures: Figure[]) => {
      const rps = figures.map((f) => f.requestsPerSecond);
      return `${Math.round(Math.min(...rps) * step.records).toLocaleString('en-US')}-${Math.round(Math.max(...rps) * step.records).toLocaleString('en-US')}`;
    };
    lines.push(
      `${step.name}: ${Math.round(headRps * step.records).toLocaleString('en-US')} rec/s (rounds ${spread(r.head)}) = ${(headRps / baseRps).toFixed(2)}x base ${Math.round(baseRps * step.records).toLocaleString('en-US')} rec/s (rounds ${spread(r.base)}); mean latency ${headMean.toFixed(2)} ms vs ${baseMean.toFixed(2)} ms${failed ? `; ${failed} failed requests` : ''}`,
    );
  }
  for (const line of lines) process.stdout.write(`${line}\n`);
  const row = `| compare (h2load, ${ROUNDS}x${STEP_SECONDS}s, 16 clients) | ${new Date().toISOString().slice(0, 10)} | ${head}${dirty ? '+' : ''} vs ${base} | ${lines.join('; ')} |\n`;
  const results_md = join(ROOT, 'bench', 'RESULTS.md');
  if (existsSync(results_md)) appendFileSync(results_md, row);
}

async function shutdown(): Promise<void> {
  for (const child of children) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  for (const cleanup of cleanups.reverse()) await cleanup();
}

main()
  .then(shutdown)
  .catch(async (error) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    await shutdown();
    process.exit(1);
  });
