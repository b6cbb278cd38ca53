/**
 * How long `PartitionLog.open` takes on a log of N GiB (1000 x 100 B batches, default config),
 * after a flush without a clean close (the recovery path, three opens) and after a clean close
 * (three opens), in this process, with no server around it: the storage part of a restart.
 *
 *   node --import tsx bench/storage/open.ts 3     # GiB; writes them under /tmp and deletes them
 */
import { rm } from 'node:fs/promises';
import { systemClock } from '../../src/common/clock.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';

const dir = `/tmp/sluice-bench-open-${process.pid}`;
await rm(dir, { recursive: true, force: true });
const deps = { fs: nodeFileSystem, clock: systemClock };
const log = await PartitionLog.open({ dir }, deps);
const batch = encodeBatch(
  Array.from({ length: 1000 }, () => ({ key: null, value: Buffer.alloc(100, 97), timestamp: Date.now() })),
);
const target = Number(process.argv[2] ?? 2) * 1024 ** 3;
for (let bytes = 0; bytes < target; bytes += batch.length)
  await log.append(batch, { assignOffsets: true, leaderEpoch: 0 });
await log.flush();
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  const again = await PartitionLog.open({ dir }, deps);
  console.log(
    `unclean open of ${again.segmentCount} segments: ${(performance.now() - t0).toFixed(0)} ms, scanned ${again.recoveryReport?.scannedBytes}`,
  );
}
await log.close();
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  const again = await PartitionLog.open({ dir }, deps);
  const t1 = performance.now();
  console.log(
    `clean open of ${again.segmentCount} segments: ${(t1 - t0).toFixed(0)} ms; RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
  );
  await again.close();
}
await rm(dir, { recursive: true, force: true });
