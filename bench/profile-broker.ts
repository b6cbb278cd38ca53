/**
 * CPU profiles of the broker under h2load load (docs/performance.md): one `sluice start` per step,
 * run with `node --cpu-prof`, on one data directory (the fetch step reads what the produce steps
 * wrote, after a restart), each summarised by its top self-time functions
 * (bench/profile-summary.ts).
 *
 *   npm run build && PROFILE_SECONDS=10 node --import tsx bench/profile-broker.ts [out-dir]
 *
 * Steps: produce 1000 x 100 B per request with acks=1 over HTTP/1.1 (h2load --h1 -c 16) and over
 * h2c (h2load -c 4 -m 16), then fetch of 1000 records per request over HTTP/1.1 (-c 16). Only the
 * samples of the measured load count (after h2load's one-second warm-up, until it ends): not the
 * broker's start-up (schema compilation, recovery) or its shutdown.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { ensureH2load, h2load } from './h2load.js';
import { freePort, waitForPort, waitForReady } from './ports.js';
import { sluiceStart } from './processes.js';

const ROOT = join(import.meta.dirname, '..');
const SECONDS = Number(process.env.PROFILE_SECONDS ?? 10);
const TOP = Number(process.env.PROFILE_TOP ?? 20);
const out = process.argv[2] ?? join(tmpdir(), `sluice-profiles-${Date.now()}`);
const packr = new Packr({ useRecords: false, variableMapSize: true });

async function main(): Promise<void> {
  ensureH2load();
  const work = await mkdtemp(join(tmpdir(), 'sluice-profile-'));
  const dataDir = join(work, 'data');
  const body = join(work, 'batch.msgpack');
  writeFileSync(
    body,
    packr.pack({
      records: Array.from({ length: 1000 }, (_, i) => ({ value: Buffer.alloc(100, 0x61 + (i % 26)) })),
    }),
  );
  const produce = '/v1/topics/p/partitions/0/records?acks=1';
  const steps = [
    { name: 'produce-h1', path: produce, body, h1: true, clients: 16 },
    { name: 'produce-h2c', path: produce, body, h1: false, clients: 4, streams: 16 },
    {
      name: 'fetch-h1',
      path: '/v1/topics/p/partitions/0/records?offset=0&maxBytes=120000',
      h1: true,
      clients: 16,
    },
  ];
  try {
    let created = false;
    for (const step of steps) {
      const dir = join(out, step.name);
      mkdirSync(dir, { recursive: true });
      const port = await freePort();
      const spawned = performance.now();
      const broker: ChildProcess = spawn(
        process.execPath,
        ['--cpu-prof', `--cpu-prof-dir=${dir}`, ...sluiceStart(ROOT, port, dataDir, 'silent')],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      const url = `http://127.0.0.1:${port}`;
      await waitForPort(port);
      await waitForReady(url);
      if (!created) {
        const response = await fetch(`${url}/v1/topics`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'p', partitions: 1 }),
        });
        if (response.status !== 201) throw new Error(`creating topic p: ${response.status}`);
        created = true;
      }
      // h2load warms up for a second, then measures for SECONDS.
      const loadFromMs = performance.now() - spawned + 1000;
      const figure = h2load(url, { ...step, seconds: SECONDS });
      const loadToMs = performance.now() - spawned;
      process.stdout.write(
        `\n## ${step.name}: ${Math.round(figure.requestsPerSecond * 1000).toLocaleString('en-US')} rec/s (h2load ${step.h1 ? '--h1 ' : ''}-c ${step.clients}${step.streams ? ` -m ${step.streams}` : ''}, ${SECONDS} s${figure.failed ? `, ${figure.failed} failed` : ''})\n`,
      );
      broker.kill('SIGTERM');
      await new Promise((resolve) => broker.once('exit', resolve));
      // The main thread's profile (worker threads, if any, write their own).
      const file = readdirSync(dir)
        .filter((f) => f.endsWith('.cpuprofile'))
        .sort()[0];
      if (!file) throw new Error(`no profile in ${dir}`);
      process.stdout.write(
        execFileSync(
          process.execPath,
          [
            '--import',
            'tsx',
            join(ROOT, 'bench', 'profile-summary.ts'),
            join(dir, file),
            String(TOP),
            String(Math.round(loadFromMs)),
            String(Math.round(loadToMs)),
          ],
          { encoding: 'utf8' },
        ),
      );
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  process.stdout.write(`\nprofiles in ${out}\n`);
}

await main();
