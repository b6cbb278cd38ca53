/**
 * Batch compression against none, in the same run: one `sluice start` process, one partition per
 * (data set, codec), pre-built batches of RECORDS records (JSON log lines of ~150 bytes, or random
 * bytes of 100) compressed by this script once, then sent by h2load (HTTP/1.1, CLIENTS clients)
 * as the same body again and again, so that what is measured is the broker: it checks each
 * compressed batch once (CRC, header, decompress, walk the records) and stores it as sent.
 *
 * Per codec and data set: the compression ratio (uncompressed batch bytes / compressed), produce
 * records/s and MB/s of uncompressed data, broker CPU (user + system, from /proc) per MB of
 * uncompressed data produced, fetch records/s served as stored (the consumer names the codec in
 * Sluice-Accept-Compression: one batch per answer) and served decompressed to a plain msgpack
 * client (the broker decompresses). Each figure is the median of ROUNDS rounds that alternate the
 * codecs; the ratio is to `none` of the same data set. Rates count 2xx answers only, and every
 * answer must be 2xx: at the first step with any other, the run stops and prints what the broker
 * answers to the same request (h2load's own req/s counts refusals too, which are fast).
 *
 *   npm run bench:compression
 *   ROUNDS=3 SECONDS=2 CLIENTS=8 npm run bench:compression   (quicker, noisier)
 *
 * Prints the table and appends a dated row per data set to bench/RESULTS.md.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeBatch, type RecordInput } from '../src/protocol/batch.js';
import { ACCEPT_COMPRESSION_HEADER, type CodecName, codecs } from '../src/protocol/compression.js';
import { cpuSeconds } from './cpu.js';
import { ensureH2load, type Figure, h2load, median } from './h2load.js';
import { freePort } from './ports.js';
import { sluiceStart } from './processes.js';

const ROOT = join(import.meta.dirname, '..');
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const SECONDS = Number(process.env.SECONDS ?? 3);
const CLIENTS = Number(process.env.CLIENTS ?? 16);
const RECORDS = 1000;
const CODECS: CodecName[] = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];
/**
 * The records' create time: the start of the run. Time retention (retention.ms, 7 days) goes by
 * record timestamps, so records stamped long ago would be deleted at the next retention check,
 * all but the active segment, in the middle of a step.
 */
const NOW_MS = Date.now();

/** Log lines as services write them: a timestamp, a level, a service, a message, a trace id. */
function logLines(): RecordInput[] {
  const levels = ['INFO', 'INFO', 'INFO', 'WARN', 'DEBUG', 'ERROR'];
  return Array.from({ length: RECORDS }, (_, i) => ({
    value: Buffer.from(
      JSON.stringify({
        ts: new Date(NOW_MS + i * 37).toISOString(),
        level: levels[i % levels.length],
        service: `checkout-${i % 7}`,
        msg: `request handled path=/api/v1/orders/${(i * 7919) % 100_000} status=${i % 50 === 0 ? 500 : 200}`,
        durationMs: (i * 31) % 500,
        traceId: ((i * 2_654_435_761) >>> 0).toString(16).padStart(8, '0'),
      }),
    ),
    timestamp: NOW_MS + i,
  }));
}

function randomRecords(): RecordInput[] {
  return Array.from({ length: RECORDS }, (_, i) => ({
    value: randomBytes(100),
    timestamp: NOW_MS + i,
  }));
}

interface Figures {
  produceRps: number[];
  cpuPerMb: number[];
  fetchStoredRps: number[];
  fetchPlainRps: number[];
}

async function main(): Promise<void> {
  ensureH2load();
  await codecs.load();
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-bench-compression-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(process.execPath, sluiceStart(ROOT, port, dataDir), {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    for (let i = 0; ; i++) {
      const ready = await fetchRetried(`${base}/readyz`, {}).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) break;
      if (i > 300) throw new Error('the node did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
    for (const [dataset, records] of [
      ['JSON log lines', logLines()],
      ['random bytes', randomRecords()],
    ] as const) {
      const plainBytes = encodeBatch(records).length;
      const bodies = new Map<CodecName, { file: string; bytes: number }>();
      const figures = new Map<CodecName, Figures>();
      for (const codec of CODECS) {
        const batch = encodeBatch(records, { compression: { codec } });
        const file = join(dataDir, `${dataset.replace(/\W/g, '-')}-${codec}.batch`);
        writeFileSync(file, batch);
        bodies.set(codec, { file, bytes: batch.length });
        figures.set(codec, { produceRps: [], cpuPerMb: [], fetchStoredRps: [], fetchPlainRps: [] });
        const created = await fetchRetried(`${base}/v1/topics`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            name: topicOf(dataset, codec),
            partitions: 1,
            // The log of a few seconds of load stays small: segments of 64 MiB, 256 MiB kept.
            configs: { 'segment.bytes': 64 << 20, 'retention.bytes': 256 << 20 },
          }),
        });
        if (created.status !== 201) throw new Error(`create: ${created.status} ${await created.text()}`);
      }
      const loadBefore = loadavg()[0]!;
      for (let round = 0; round < ROUNDS; round++) {
        for (const codec of CODECS) {
          const topic = topicOf(dataset, codec);
          const f = figures.get(codec)!;
          const cpuBefore = cpuSeconds(child.pid!);
          const produced = h2load(base, {
            path: `/v1/topics/${topic}/partitions/0/records?acks=1`,
            body: bodies.get(codec)!.file,
            contentType: 'application/vnd.sluice.batches',
            h1: true,
            clients: CLIENTS,
            seconds: SECONDS,
          });
          const cpu = cpuSeconds(child.pid!) - cpuBefore;
          const producePath = `/v1/topics/${topic}/partitions/0/records?acks=1`;
          await expectAnswered(`produce ${dataset} ${codec}`, produced, () =>
            fetchRetried(base + producePath, {
              method: 'POST',
              headers: { 'content-type': 'application/vnd.sluice.batches', accept: 'application/json' },
              body: readFileSync(bodies.get(codec)!.file),
            }),
          );
          f.produceRps.push(produced.status['2xx'] / SECONDS);
          // h2load's warm-up second and the timed seconds both load the broker.
          f.cpuPerMb.push(cpu / ((produced.status['2xx'] * ((SECONDS + 1) / SECONDS) * plainBytes) / 1e6));
          // The newest batch: retention (checked every log.retention.check.interval.ms, 60 s) may
          // delete the oldest segments in the middle of a step, and a fetch from the log start
          // would then be answered OFFSET_OUT_OF_RANGE (416), fast, for the rest of the step. The
          // newest batch is in the last retention.bytes of the log, which retention keeps.
          const described = await fetchRetried(`${base}/v1/topics/${topic}`, {
            headers: { accept: 'application/json' },
          });
          const end = ((await described.json()) as { partitions: { highWatermark: number }[] }).partitions[0]!
            .highWatermark;
          const fetchPath = `/v1/topics/${topic}/partitions/0/records?offset=${end - RECORDS}&maxBytes=1`;
          const fetchStep = async (name: string, headers: Record<string, string>) => {
            const figure = h2load(base, {
              path: fetchPath,
              h1: true,
              clients: CLIENTS,
              seconds: SECONDS,
              headers: Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
            });
            await expectAnswered(`${name} ${dataset} ${codec}`, figure, () =>
              fetchRetried(base + fetchPath, { headers: { accept: 'application/vnd.msgpack', ...headers } }),
            );
            return figure.status['2xx'] / SECONDS;
          };
          f.fetchStoredRps.push(await fetchStep('fetch as stored', { [ACCEPT_COMPRESSION_HEADER]: codec }));
          f.fetchPlainRps.push(await fetchStep('fetch decompressed', {}));
        }
      }
      const none = figures.get('none')!;
      const noneProduce = median(none.produceRps) * RECORDS;
      const parts: string[] = [];
      console.log(`\n${dataset}: ${RECORDS} records, ${plainBytes} bytes uncompressed per batch`);
      console.log(
        'codec   ratio  produce rec/s  MB/s (x none)  CPU ms/MB  fetch stored rec/s  fetch decompressed rec/s',
      );
      for (const codec of CODECS) {
        const f = figures.get(codec)!;
        const ratio = plainBytes / bodies.get(codec)!.bytes;
        const produce = median(f.produceRps) * RECORDS;
        const mbps = (median(f.produceRps) * plainBytes) / 1e6;
        const vsNone = produce / noneProduce;
        const cpuMs = median(f.cpuPerMb) * 1000;
        const stored = median(f.fetchStoredRps) * RECORDS;
        const plain = median(f.fetchPlainRps) * RECORDS;
        console.log(
          `${codec.padEnd(7)} ${ratio.toFixed(2).padStart(5)}  ${fmt(produce).padStart(13)}  ${mbps.toFixed(0).padStart(5)} (${vsNone.toFixed(2)}x)  ${cpuMs.toFixed(1).padStart(9)}  ${fmt(stored).padStart(18)}  ${fmt(plain).padStart(24)}`,
        );
        parts.push(
          `${codec}: ratio ${ratio.toFixed(2)}, produce ${fmt(produce)} rec/s ${mbps.toFixed(0)} MB/s uncompressed (${vsNone.toFixed(2)}x none), ` +
            `broker CPU ${cpuMs.toFixed(1)} ms/MB, fetch as stored ${fmt(stored)} rec/s, decompressed for a plain client ${fmt(plain)} rec/s`,
        );
      }
      const line =
        `${dataset} (${RECORDS} records, ${plainBytes} B per uncompressed batch; target lz4 and zstd >= 1.0x none for JSON): ` +
        `${parts.join('; ')} (${ROUNDS}x${SECONDS} s alternating rounds, ${CLIENTS} clients, ` +
        `load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after on ${availableParallelism()} cores; ` +
        'every request answered 2xx)';
      appendFileSync(
        join(ROOT, 'bench', 'RESULTS.md'),
        `| compression (1 node; h2load HTTP/1.1 pre-built batches, baseline none in the same run) | ${new Date().toISOString().slice(0, 10)} | ${commit} | ${line} |\n`,
      );
    }
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    await rm(dataDir, { recursive: true, force: true });
  }
}

/**
 * Throws, with what the broker answers to the same request once more, when h2load saw anything
 * but 2xx answers: a figure that counts refusals (h2load's req/s counts every answer) measures
 * nothing, so the run stops before it prints or appends a row.
 */
async function expectAnswered(step: string, figure: Figure, replay: () => Promise<Response>): Promise<void> {
  if (figure.failed === 0 && figure.status['3xx'] === 0) return;
  const answer = await replay().then(
    async (r) => `${r.status} ${r.headers.get('content-type')}: ${(await r.text()).slice(0, 500)}`,
    (error: Error) => `no answer: ${error.message}`,
  );
  throw new Error(
    `${step}: ${figure.failed} of ${figure.status['2xx'] + figure.failed} requests failed ` +
      `(${JSON.stringify(figure.status)}, ${figure.errored} errored, ${figure.timedOut} timed out); ` +
      `the same request now: ${answer}`,
  );
}

/**
 * fetch, tried again once when the connection it reused was closed under it (the node closes an idle
 * keep-alive connection while h2load runs, and undici may pick it just then).
 */
async function fetchRetried(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch {
    return fetch(url, init);
  }
}

function topicOf(dataset: string, codec: CodecName): string {
  return `${dataset.startsWith('JSON') ? 'json' : 'random'}-${codec}`;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
