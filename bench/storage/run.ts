/**
 * Storage benchmark. Every figure is reported beside a baseline measured in the same run on the
 * same disk, because absolute numbers on shared machines drift.
 *
 *   1. async-flush append throughput of 64 KiB batches of 1 KiB records, as a ratio to plain
 *      sequential fs writes of the same bytes (awaited writes, and fs.writeSync);
 *   2. sync-flush appends with 8 concurrent appenders (group commit): appends/s and fsyncs/s, as a
 *      ratio to one write+fsync per append;
 *   3. whole-batch read throughput from a cold (just reopened, page cache dropped where possible)
 *      and a warm file.
 *
 * Run: node --import tsx bench/storage/run.ts   (BENCH_MB=256 for a larger run)
 */
import { execSync } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/common/clock.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { type FileHandle, type FileSystem, nodeFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';

const totalMb = Number(process.env.BENCH_MB ?? 96);
const batchBytes = 64 * 1024;
const recordBytes = 1024;

function makeBatch(): Buffer {
  const value = Buffer.alloc(recordBytes, 0x61);
  const records = [];
  // 64 KiB of payload: 1 KiB values less the per-record overhead keeps the batch near 64 KiB.
  for (let size = 0; size + recordBytes + 16 <= batchBytes - 79; size += recordBytes + 16)
    records.push({ value, timestamp: Date.now() });
  return encodeBatch(records);
}

async function timeIt(fn: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function dropCaches(): boolean {
  try {
    execSync('sync && echo 3 > /proc/sys/vm/drop_caches', { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Counts fsyncs by wrapping the real file system. */
function countingFs(): { fs: FileSystem; syncs: () => number } {
  let syncs = 0;
  const fs: FileSystem = {
    ...nodeFileSystem,
    async open(path) {
      const handle = await nodeFileSystem.open(path);
      const wrapped: FileHandle = {
        read: (...args) => handle.read(...args),
        readSync: (...args) => handle.readSync(...args),
        write: (...args) => handle.write(...args),
        writeSync: (...args) => handle.writeSync(...args),
        truncate: (n) => handle.truncate(n),
        size: () => handle.size(),
        close: () => handle.close(),
        async sync() {
          syncs++;
          await handle.sync();
        },
      };
      return wrapped;
    },
  };
  return { fs, syncs: () => syncs };
}

const root = await mkdtemp(join(tmpdir(), 'sluice-bench-storage-'));
try {
  const batch = makeBatch();
  const batches = Math.floor((totalMb * 1024 * 1024) / batch.length);
  const mb = (batches * batch.length) / 1e6;

  // 1. The log with async flush against plain sequential writes of the same bytes, in the two
  // plain ways a Node program writes a file: `await handle.write()` (the thread pool) and
  // `fs.writeSync` (this thread, as the log writes groups up to 1 MiB). Within a round the three
  // take turns in chunks of 16 writes (1 MiB), in an order that rotates, so that all see the same
  // machine: on a shared machine the load changes from one tenth of a second to the next. The
  // first two rounds warm the JIT and the page cache and are not counted; each figure is the
  // median of five rounds.
  const chunk = 16;
  const round = async (n: number, keep: boolean) => {
    const rawPath = join(root, `raw-${n}.bin`);
    const raw = await open(rawPath, 'w');
    const rawSyncPath = join(root, `raw-sync-${n}.bin`);
    const rawSync = openSync(rawSyncPath, 'w');
    const dir = join(root, keep ? 'async-0' : `async-scratch-${n}`);
    const asyncLog = await PartitionLog.open(
      { dir, config: { flushPolicy: 'async', flushMs: 1000 } },
      { fs: nodeFileSystem, clock: systemClock },
    );
    const seconds = { raw: 0, rawSync: 0, log: 0 };
    let rawPosition = 0;
    let rawSyncPosition = 0;
    const turns: ((count: number) => Promise<void>)[] = [
      async (count) => {
        seconds.raw += await timeIt(async () => {
          for (let i = 0; i < count; i++) {
            await raw.write(batch, 0, batch.length, rawPosition);
            rawPosition += batch.length;
          }
        });
      },
      async (count) => {
        seconds.rawSync += await timeIt(async () => {
          for (let i = 0; i < count; i++) {
            writeSync(rawSync, batch, 0, batch.length, rawSyncPosition);
            rawSyncPosition += batch.length;
          }
        });
      },
      async (count) => {
        seconds.log += await timeIt(async () => {
          for (let i = 0; i < count; i++) await asyncLog.append(batch, { assignOffsets: true });
        });
      },
    ];
    for (let done = 0, turn = 0; done < batches; done += chunk, turn++) {
      const count = Math.min(chunk, batches - done);
      for (let k = 0; k < turns.length; k++) await turns[(turn + k) % turns.length]!(count);
    }
    await raw.close();
    closeSync(rawSync);
    await rm(rawPath);
    await rm(rawSyncPath);
    await asyncLog.close();
    if (!keep) await rm(dir, { recursive: true });
    return seconds;
  };
  const rounds: { raw: number; rawSync: number; log: number }[] = [];
  for (let n = -2; n < 5; n++) {
    const measured = await round(n, n === 4);
    if (n >= 0) rounds.push(measured);
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const asyncRatio = median(rounds.map((r) => r.raw / r.log));
  const asyncSyncRatio = median(rounds.map((r) => r.rawSync / r.log));
  const rawMBps = mb / median(rounds.map((r) => r.raw));
  const rawSyncMBps = mb / median(rounds.map((r) => r.rawSync));
  const asyncMBps = mb / median(rounds.map((r) => r.log));

  // 2. Sync flush with 8 concurrent appenders vs one write+fsync per append.
  const smallBatch = encodeBatch([{ value: Buffer.alloc(1024, 0x62), timestamp: Date.now() }]);
  const syncAppends = 4000;
  const perAppendPath = join(root, 'fsync-each.bin');
  const perAppend = await open(perAppendPath, 'w');
  const perAppendSeconds = await timeIt(async () => {
    let position = 0;
    for (let i = 0; i < syncAppends / 4; i++) {
      await perAppend.write(smallBatch, 0, smallBatch.length, position);
      position += smallBatch.length;
      await perAppend.datasync();
    }
  });
  await perAppend.close();
  const perAppendRate = syncAppends / 4 / perAppendSeconds;
  const counting = countingFs();
  const syncLog = await PartitionLog.open(
    { dir: join(root, 'sync-0'), config: { flushPolicy: 'sync' } },
    { fs: counting.fs, clock: systemClock },
  );
  const syncsBefore = counting.syncs();
  const appenders = 8;
  const syncSeconds = await timeIt(async () => {
    await Promise.all(
      Array.from({ length: appenders }, async () => {
        for (let i = 0; i < syncAppends / appenders; i++)
          await syncLog.append(Buffer.from(smallBatch), { assignOffsets: true });
      }),
    );
  });
  const syncCount = counting.syncs() - syncsBefore;
  await syncLog.close();
  const syncRate = syncAppends / syncSeconds;
  const fsyncRate = syncCount / syncSeconds;

  // 3. Reads of whole batches, cold then warm.
  const readLog = await PartitionLog.open(
    { dir: join(root, 'async-0') },
    { fs: nodeFileSystem, clock: systemClock },
  );
  const readAll = async () => {
    let offset = readLog.logStartOffset;
    let bytes = 0;
    while (offset < readLog.logEndOffset) {
      const result = await readLog.read(offset, { maxBytes: 1024 * 1024 });
      bytes += result.data.length;
      offset = result.nextOffset;
    }
    return bytes;
  };
  const dropped = dropCaches();
  let coldBytes = 0;
  const coldSeconds = await timeIt(async () => {
    coldBytes = await readAll();
  });
  let warmBytes = 0;
  const warmSeconds = await timeIt(async () => {
    warmBytes = await readAll();
  });
  await readLog.close();

  const rows: [string, string, string][] = [
    [
      'append async, 64 KiB batches',
      `${asyncMBps.toFixed(0)} MB/s`,
      `${asyncRatio.toFixed(2)}x awaited fs writes (${rawMBps.toFixed(0)} MB/s); target >= 0.8`,
    ],
    [
      '',
      '',
      `${asyncSyncRatio.toFixed(2)}x fs.writeSync (${rawSyncMBps.toFixed(0)} MB/s), the copy alone: the log also checks every batch's CRC`,
    ],
    [
      'append sync, 8 appenders',
      `${syncRate.toFixed(0)} appends/s`,
      `${(syncRate / perAppendRate).toFixed(2)}x fsync-per-append (${perAppendRate.toFixed(0)}/s)`,
    ],
    [
      '  fsyncs during sync appends',
      `${fsyncRate.toFixed(0)} fsyncs/s`,
      `${(syncCount / syncAppends).toFixed(3)} fsyncs per append`,
    ],
    [
      `read cold${dropped ? '' : ' (cache not dropped)'}`,
      `${(coldBytes / 1e6 / coldSeconds).toFixed(0)} MB/s`,
      '',
    ],
    ['read warm', `${(warmBytes / 1e6 / warmSeconds).toFixed(0)} MB/s`, ''],
  ];
  console.log(`\nSluice storage benchmark: ${mb.toFixed(0)} MB of ${batch.length}-byte batches\n`);
  for (const [name, figure, ratio] of rows)
    console.log(`${name.padEnd(34)} ${figure.padStart(16)}   ${ratio}`);

  const resultsPath = join(import.meta.dirname, '..', 'RESULTS.md');
  if (!existsSync(resultsPath))
    writeFileSync(
      resultsPath,
      '# Benchmark results\n\nDated rows appended by the scripts in bench/. Ratios are against a baseline measured in the same run.\n',
    );
  let sha = 'unknown';
  try {
    sha = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
  } catch {}
  appendFileSync(
    resultsPath,
    `| storage | ${new Date().toISOString().slice(0, 10)} | ${sha} | async append ${asyncMBps.toFixed(0)} MB/s = ${asyncRatio.toFixed(2)}x awaited fs writes (${rawMBps.toFixed(0)} MB/s), ${asyncSyncRatio.toFixed(2)}x fs.writeSync (${rawSyncMBps.toFixed(0)} MB/s) (medians of 5 interleaved rounds); ` +
      `sync 8 appenders ${syncRate.toFixed(0)}/s = ${(syncRate / perAppendRate).toFixed(2)}x fsync-per-append, ${(syncCount / syncAppends).toFixed(3)} fsyncs/append (${fsyncRate.toFixed(0)}/s); ` +
      `read cold ${(coldBytes / 1e6 / coldSeconds).toFixed(0)} MB/s, warm ${(warmBytes / 1e6 / warmSeconds).toFixed(0)} MB/s |\n`,
  );
} finally {
  await rm(root, { recursive: true, force: true });
}
