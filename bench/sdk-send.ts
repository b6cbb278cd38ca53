import { execFileSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Admin, Producer } from '../src/client/index.js';
import { startNode } from '../src/node/node.js';

/**
 * What awaiting one `producer.send()` at a time costs, against letting sends overlap so that the
 * producer batches them (docs/sdk.md): records per second of 100-byte values to one partition,
 * acks=all, on one node in this process (`npm run bench:sdk`). Every figure is a ratio to the
 * overlapped sends of the same run. Appends a dated row to bench/RESULTS.md.
 */
const ROOT = join(import.meta.dirname, '..');
const VALUE = 'x'.repeat(100);
const AWAITED_RECORDS = Number(process.env.SDK_AWAITED_RECORDS ?? 500);
const OVERLAPPED_RECORDS = Number(process.env.SDK_OVERLAPPED_RECORDS ?? 200_000);
/** Sends in flight when overlapping: the producer's buffer bounds the rest. */
const WINDOW = 10_000;

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bench-sdk-'));
  const node = await startNode({ dataDir: dir, port: 0, logLevel: 'silent' });
  const bootstrap = `http://127.0.0.1:${node.address.port}`;
  const admin = new Admin({ bootstrap });
  const loadBefore = loadavg()[0]!;
  const lines: string[] = [];
  try {
    let topics = 0;
    const topic = async () => {
      const name = `bench-sdk-${topics++}`;
      await admin.createTopic({ name, partitions: 1 });
      return name;
    };
    const rate = async (
      records: number,
      run: (producer: Producer, topic: string) => Promise<void>,
      lingerMs?: number,
    ) => {
      const producer = new Producer({ bootstrap, ...(lingerMs !== undefined ? { lingerMs } : {}) });
      const name = await topic();
      await producer.send({ topic: name, value: 'warm-up' });
      const started = performance.now();
      await run(producer, name);
      const seconds = (performance.now() - started) / 1000;
      await producer.close();
      return records / seconds;
    };
    const awaited = (records: number) => async (producer: Producer, name: string) => {
      for (let i = 0; i < records; i++) await producer.send({ topic: name, value: VALUE });
    };
    const overlapped = async (producer: Producer, name: string) => {
      let pending: Promise<unknown>[] = [];
      for (let i = 0; i < OVERLAPPED_RECORDS; i++) {
        pending.push(producer.send({ topic: name, value: VALUE }));
        if (pending.length >= WINDOW) {
          await Promise.all(pending);
          pending = [];
        }
      }
      await Promise.all(pending);
    };
    const arrays = async (producer: Producer, name: string) => {
      const batch = Array.from({ length: 1000 }, () => ({ topic: name, value: VALUE }));
      for (let i = 0; i < OVERLAPPED_RECORDS / 1000; i++) await producer.send(batch);
    };
    const base = await rate(OVERLAPPED_RECORDS, overlapped);
    const array = await rate(OVERLAPPED_RECORDS, arrays);
    const oneLinger = await rate(AWAITED_RECORDS, awaited(AWAITED_RECORDS));
    const oneNoLinger = await rate(AWAITED_RECORDS, awaited(AWAITED_RECORDS), 0);
    const f = (n: number) => Math.round(n).toLocaleString('en-US');
    const x = (n: number) => `${(n / base).toFixed(4)}x`;
    lines.push(
      `overlapped sends (${f(WINDOW)} in flight, lingerMs 5): ${f(base)} rec/s`,
      `send(array of 1000) awaited: ${f(array)} rec/s = ${x(array)}`,
      `one send awaited at a time, lingerMs 5 (the default): ${f(oneLinger)} rec/s = ${x(oneLinger)} (${(1000 / oneLinger).toFixed(2)} ms each)`,
      `one send awaited at a time, lingerMs 0: ${f(oneNoLinger)} rec/s = ${x(oneNoLinger)} (${(1000 / oneNoLinger).toFixed(2)} ms each)`,
    );
  } finally {
    await admin.close();
    await node.close();
    await rm(dir, { recursive: true, force: true });
  }
  lines.push(
    `load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after on ${cpus().length} cores`,
  );
  for (const line of lines) process.stdout.write(`${line}\n`);
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
    cwd: ROOT,
    encoding: 'utf8',
  }).trim();
  appendFileSync(
    join(ROOT, 'bench', 'RESULTS.md'),
    `| sdk send (1 node in-process, 100 B values, 1 partition, acks=all; baseline overlapped sends) | ${new Date().toISOString().slice(0, 10)} | ${commit} | ${lines.join('; ')} |\n`,
  );
}

await main();
