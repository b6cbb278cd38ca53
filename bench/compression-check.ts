/**
 * The leader's check of a produced compressed batch, alone, per codec: MB of uncompressed data per
 * CPU second of this process (user + system, so that the other work of a shared machine counts
 * less than it would in wall time). For each codec and data set (the JSON log lines and random
 * bytes of bench/compression.ts, 1000 records):
 *
 * - `check`: `checkProducedBatch`, what the leader runs on every produced batch: decompress into
 *   the codec's reused memory, walk the records (varint lengths, no record decoded);
 * - `decompress`: the codec's allocating `decompress` (what fetch paths and consumers use);
 * - `transient`: `decompressTransient` alone (the check without the walk);
 * - the reference the check used before, in the same run: for lz4 the TypeScript block decoder
 *   (`decompressLz4Frame` with its default decoder), for zstd the package's own `decompress()`.
 *
 * `none` is the walk alone. Each figure is the median of ROUNDS rounds that alternate the steps.
 *
 *   npm run bench:compression-check
 *   ROUNDS=5 STEP_MS=200 npm run bench:compression-check   (quicker, noisier)
 *
 * Prints the table and appends a dated row to bench/RESULTS.md.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import {
  BATCH_HEADER_BYTES,
  checkProducedBatch,
  encodeBatch,
  type RecordInput,
  readBatchHeader,
} from '../src/protocol/batch.js';
import { type CodecName, codecId, codecs, decompressLz4Frame } from '../src/protocol/compression.js';
import { median } from './h2load.js';

const ROOT = join(import.meta.dirname, '..');
const ROUNDS = Number(process.env.ROUNDS ?? 9);
const STEP_MS = Number(process.env.STEP_MS ?? 300);
const RECORDS = 1000;
const LIMIT_BYTES = 8 << 20;
const CODECS: CodecName[] = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];

function logLines(): RecordInput[] {
  const now = Date.now();
  const levels = ['INFO', 'INFO', 'INFO', 'WARN', 'DEBUG', 'ERROR'];
  return Array.from({ length: RECORDS }, (_, i) => ({
    value: Buffer.from(
      JSON.stringify({
        ts: new Date(now + i * 37).toISOString(),
        level: levels[i % levels.length],
        service: `checkout-${i % 7}`,
        msg: `request handled path=/api/v1/orders/${(i * 7919) % 100_000} status=${i % 50 === 0 ? 500 : 200}`,
        durationMs: (i * 31) % 500,
        traceId: ((i * 2_654_435_761) >>> 0).toString(16).padStart(8, '0'),
      }),
    ),
    timestamp: now + i,
  }));
}

function randomRecords(): RecordInput[] {
  return Array.from({ length: RECORDS }, (_, i) => ({ value: randomBytes(100), timestamp: Date.now() + i }));
}

/** MB of `bytes`-sized work per CPU second, running `run` for about STEP_MS of wall time. */
function rate(bytes: number, run: () => unknown): number {
  let n = 0;
  const before = process.cpuUsage();
  const stop = performance.now() + STEP_MS;
  while (performance.now() < stop) {
    for (let i = 0; i < 20; i++) run();
    n += 20;
  }
  const cpu = process.cpuUsage(before);
  return (n * bytes) / ((cpu.user + cpu.system) / 1e6) / 1e6;
}

async function main(): Promise<void> {
  await codecs.load();
  const require = createRequire(import.meta.url);
  const zstdPackage = require('@bokuweb/zstd-wasm') as {
    decompress(data: Uint8Array, options?: { defaultHeapSize: number }): Uint8Array;
  };
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
  const loadBefore = loadavg()[0]!;
  const rows: string[] = [];
  for (const [dataset, records] of [
    ['JSON log lines', logLines()],
    ['random bytes', randomRecords()],
  ] as const) {
    const plain = encodeBatch(records);
    const plainBytes = plain.length;
    const steps: { name: string; run: () => unknown }[] = [];
    for (const name of CODECS) {
      const batch = encodeBatch(records, { compression: { codec: name } });
      const header = readBatchHeader(batch, 0);
      steps.push({ name: `${name} check`, run: () => checkProducedBatch(batch, 0, header) });
      if (name === 'none') continue;
      const codec = codecs.get(codecId(name));
      const payload = batch.subarray(BATCH_HEADER_BYTES);
      // Every variant must give the records back before it is timed.
      const expected = plain.subarray(BATCH_HEADER_BYTES);
      const variants: [string, () => Buffer][] = [
        ['decompress', () => codec.decompress(payload, LIMIT_BYTES)],
        ['transient', () => codec.decompressTransient(payload, LIMIT_BYTES)],
      ];
      if (name === 'lz4')
        variants.push(['TypeScript blocks (before)', () => decompressLz4Frame(payload, LIMIT_BYTES)]);
      if (name === 'zstd')
        variants.push([
          'package decompress() (before)',
          () => Buffer.from(zstdPackage.decompress(payload, { defaultHeapSize: LIMIT_BYTES })),
        ]);
      for (const [variant, run] of variants) {
        if (!run().equals(expected)) throw new Error(`${name} ${variant} does not give the records back`);
        steps.push({ name: `${name} ${variant}`, run });
      }
    }
    const figures = new Map<string, number[]>(steps.map((s) => [s.name, []]));
    for (const step of steps) rate(plainBytes, step.run); // warm up
    for (let round = 0; round < ROUNDS; round++)
      for (const step of steps) figures.get(step.name)!.push(rate(plainBytes, step.run));
    console.log(`\n${dataset}: ${RECORDS} records, ${plainBytes} bytes uncompressed per batch`);
    const parts: string[] = [];
    for (const step of steps) {
      const mbps = median(figures.get(step.name)!);
      console.log(`${step.name.padEnd(40)} ${mbps.toFixed(0).padStart(6)} MB/CPU-s`);
      parts.push(`${step.name} ${mbps.toFixed(0)}`);
    }
    rows.push(`${dataset}: ${parts.join(', ')}`);
  }
  const line =
    `MB of uncompressed batch per CPU second, median of ${ROUNDS} alternating rounds of ${STEP_MS} ms: ` +
    `${rows.join('; ')} (load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after on ${availableParallelism()} cores)`;
  appendFileSync(
    join(ROOT, 'bench', 'RESULTS.md'),
    `| compression check (leader's check of a produced batch, alone) | ${new Date().toISOString().slice(0, 10)} | ${commit} | ${line} |\n`,
  );
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
