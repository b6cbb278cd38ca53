import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Producer } from '../src/client/index.js';
import { freePort, waitForPort, waitForReady } from './ports.js';
import { sluiceStart } from './processes.js';
import { sdkThroughput } from './sdk-throughput.js';

/**
 * The SDK against bare node:http2 clients, in one run against one broker (`sluice start` in its own
 * process, so that the broker does not share the client's event loop): `Producer.send()` of
 * 100-byte records against a bare client posting the same pre-built batches, `PartitionConsumer`
 * against bare msgpack fetches (bench/sdk-throughput.ts); then what one awaited send at a time
 * costs, which does not wait for `lingerMs` when nothing else is queued.
 *
 *   npm run bench:sdk                          # SDK_RECORDS=300000 SDK_ROUNDS=3
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/sdk-send.ts   # profile the client
 *
 * Appends a dated row to bench/RESULTS.md.
 */
const ROOT = join(import.meta.dirname, '..');
const AWAITED_RECORDS = Number(process.env.SDK_AWAITED_RECORDS ?? 500);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bench-sdk-'));
  const port = await freePort();
  const broker = spawn(process.execPath, sluiceStart(ROOT, port, dir, 'silent'), {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const bootstrap = `http://127.0.0.1:${port}`;
  const loadBefore = loadavg()[0]!;
  const lines: string[] = [];
  try {
    await waitForPort(port);
    await waitForReady(bootstrap);
    const sdk = await sdkThroughput(bootstrap);
    for (const row of sdk.rows) lines.push(`${row.name}: ${row.figure} = ${row.ratio}`);
    const awaited = async (lingerMs: number) => {
      const name = `sdk-awaited-${lingerMs}`;
      const response = await fetch(`${bootstrap}/v1/topics`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, partitions: 1 }),
      });
      if (response.status !== 201) throw new Error(`creating ${name}: ${response.status}`);
      const producer = new Producer({ bootstrap, lingerMs });
      await producer.send({ topic: name, value: 'warm-up' });
      const started = performance.now();
      for (let i = 0; i < AWAITED_RECORDS; i++) await producer.send({ topic: name, value: 'x'.repeat(100) });
      const seconds = (performance.now() - started) / 1000;
      await producer.close();
      return AWAITED_RECORDS / seconds;
    };
    const linger5 = await awaited(5);
    const linger0 = await awaited(0);
    lines.push(
      `one send awaited at a time (acks=all, idempotent), lingerMs 5: ${Math.round(linger5)} rec/s (${(1000 / linger5).toFixed(2)} ms each) = ${(linger5 / linger0).toFixed(2)}x lingerMs 0 (${Math.round(linger0)} rec/s, ${(1000 / linger0).toFixed(2)} ms each)`,
    );
  } finally {
    broker.kill('SIGTERM');
    await new Promise((resolve) => broker.once('exit', resolve));
    await rm(dir, { recursive: true, force: true });
  }
  lines.push(
    `load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after on ${cpus().length} cores`,
  );
  for (const line of lines) process.stdout.write(`${line}\n`);
  let commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  if (execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }))
    commit += '+';
  appendFileSync(
    join(ROOT, 'bench', 'RESULTS.md'),
    `| sdk (broker in its own process; clients: the SDK and bare node:http2 in one Node process; baselines a bare http2 client posting pre-built batches, bare msgpack fetches) | ${new Date().toISOString().slice(0, 10)} | ${commit} | ${lines.join('; ')} |\n`,
  );
}

await main();
