/**
 * The storage part of a node's start-up and stop with many partitions, in this process with no
 * server around it: N one-record partitions through `LogManager` on the real disk (with the
 * node's bounded file cache), then an open after a crash (the logs flushed, never closed), a clean
 * close, an open after it and a second close; each timed, with the file-system operations it made
 * by kind (a count of each call into the `FileSystem` and its handles).
 *
 *   node --import tsx bench/scale/logs-open.ts 10000     # partitions; under /tmp, deleted after
 *   LOGS_OPEN_ASYNC=1 node --import tsx bench/scale/logs-open.ts 10000   # opens through the thread pool
 */
import { rm } from 'node:fs/promises';
import { systemClock } from '../../src/common/clock.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { FileCache } from '../../src/storage/file-cache.js';
import type { FileHandle, FileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';

const count = Number(process.argv[2] ?? 1000);
const dataDir = `/tmp/sluice-bench-logs-open-${process.pid}`;
const ops = new Map<string, number>();
const counted = (kind: string) => ops.set(kind, (ops.get(kind) ?? 0) + 1);
function countOp<T>(kind: string, call: () => T): T {
  counted(kind);
  return call();
}

/** `fs` with every call counted in `ops`. */
function counting(fs: FileSystem): FileSystem {
  const handle = (inner: FileHandle): FileHandle => ({
    read: (...args) => countOp('read', () => inner.read(...args)),
    readSync: (...args) => countOp('readSync', () => inner.readSync(...args)),
    write: (...args) => countOp('write', () => inner.write(...args)),
    writeSync: (...args) => countOp('writeSync', () => inner.writeSync(...args)),
    sync: () => countOp('fsync', () => inner.sync()),
    truncate: (length) => countOp('truncate', () => inner.truncate(length)),
    size: () => countOp('size', () => inner.size()),
    close: () => countOp('close', () => inner.close()),
  });
  const out = {} as FileSystem;
  for (const [name, fn] of Object.entries(fs) as [keyof FileSystem, (...a: unknown[]) => unknown][]) {
    (out as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
      counted(name);
      return name === 'open' ? (fn(...args) as Promise<FileHandle>).then(handle) : fn.apply(fs, args);
    };
  }
  return out;
}

const cache = new FileCache();
const fs = counting(cache.fileSystem());
const deps = { fs, clock: systemClock };
const options = { dataDir, retentionCheckMs: 3_600_000 };

async function timed<T>(label: string, work: () => Promise<T>): Promise<T> {
  ops.clear();
  const t0 = performance.now();
  const result = await work();
  const ms = performance.now() - t0;
  const perPartition = [...ops]
    .sort((a, b) => b[1] - a[1])
    .map(([kind, n]) => `${kind} ${(n / count).toFixed(2)}`)
    .join(', ');
  console.log(
    `${label}: ${(ms / 1000).toFixed(2)} s (${(ms / count).toFixed(3)} ms per partition); per partition: ${perPartition}`,
  );
  return result;
}

await rm(dataDir, { recursive: true, force: true });
const created = await LogManager.open(options, deps);
const batch = encodeBatch([{ key: null, value: Buffer.from('one'), timestamp: Date.now() }]);
await timed('create and append one record', async () => {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) {
        const log = await created.getOrCreate(`s${Math.floor(next / 100)}`, next++ % 100);
        await log.append(Buffer.from(batch), { assignOffsets: true, leaderEpoch: 0 });
        await log.flush();
      }
    }),
  );
});
// A crash: the logs are flushed and left as they are (no close, so no clean-shutdown marker).
// As the node opens them at start-up: reads on this thread (FileCache.synchronousReads).
const openAll = async () => {
  cache.synchronousReads = process.env.LOGS_OPEN_ASYNC !== '1';
  try {
    return await LogManager.open(options, deps);
  } finally {
    cache.synchronousReads = false;
  }
};
const afterCrash = await timed('open after a crash', openAll);
await timed('close after it', () => afterCrash.close());
const afterClean = await timed('open after the clean close', openAll);
await timed('close after it (nothing changed)', () => afterClean.close());
console.log(
  `RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB; file cache ${JSON.stringify(cache.stats)}`,
);
await rm(dataDir, { recursive: true, force: true });
process.exit(0);
