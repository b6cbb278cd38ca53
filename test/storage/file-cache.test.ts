import { mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.js';
import { type CachedFileHandle, FileCache } from '../../src/storage/file-cache.js';
import { LogManager } from '../../src/storage/log-manager.js';
import { batchOf, valuesOf } from './helpers.js';

/**
 * The bounded cache of open files: at most `openFilesMax` descriptors while handles are idle and
 * synced; files reopened on demand with the same bytes; never a descriptor closed under an
 * operation in flight, nor a dirty one; never a replaced file read through an old handle.
 */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-file-cache-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Descriptors this process has open on files under `dir`. */
async function descriptorsUnder(path: string): Promise<number> {
  let n = 0;
  for (const fd of await readdir('/proc/self/fd')) {
    try {
      const { readlink } = await import('node:fs/promises');
      if ((await readlink(`/proc/self/fd/${fd}`)).startsWith(path)) n++;
    } catch {
      // Closed while listing.
    }
  }
  return n;
}

describe('FileCache', () => {
  it('with synchronousReads, opens, reads, stats and listings finish on the calling thread with the same results', async () => {
    const cache = new FileCache({ openFilesMax: 2 });
    const fs = cache.fileSystem();
    await writeFile(join(dir, 'a'), 'alpha');
    const before = {
      file: await fs.readFile(join(dir, 'a')),
      missing: await fs.readFile(join(dir, 'none')),
      names: await fs.readdir(dir),
      exists: [await fs.exists(join(dir, 'a')), await fs.exists(join(dir, 'none'))],
    };
    cache.synchronousReads = true;
    try {
      expect({
        file: await fs.readFile(join(dir, 'a')),
        missing: await fs.readFile(join(dir, 'none')),
        names: await fs.readdir(dir),
        exists: [await fs.exists(join(dir, 'a')), await fs.exists(join(dir, 'none'))],
      }).toEqual(before);
      const handle = await fs.open(join(dir, 'a'));
      const buffer = Buffer.alloc(5);
      // The bytes are there before the promise is awaited: the read ran within the call.
      const reading = handle.read(buffer, 0, 5, 0);
      expect(buffer.toString()).toBe('alpha');
      expect(await reading).toBe(5);
      expect(await handle.size()).toBe(5);
      // A missing file is created, as without the flag.
      const created = await fs.open(join(dir, 'b'));
      expect(await created.size()).toBe(0);
      await created.close();
      await handle.close();
    } finally {
      cache.synchronousReads = false;
    }
    // Off again: through the thread pool (whose worker may fill the buffer at any moment).
    const later = await fs.open(join(dir, 'a'));
    const buffer = Buffer.alloc(5);
    expect(await later.read(buffer, 0, 5, 0)).toBe(5);
    expect(buffer.toString()).toBe('alpha');
    await later.close();
  });

  it('keeps at most openFilesMax descriptors for idle synced files, and reopens them with their bytes', async () => {
    const cache = new FileCache({ openFilesMax: 3 });
    const handles: CachedFileHandle[] = [];
    for (let i = 0; i < 10; i++) {
      const handle = (await cache.open(join(dir, `f${i}`))) as CachedFileHandle;
      await handle.write(Buffer.from(`file ${i}`), 0);
      await handle.sync();
      handles.push(handle);
    }
    // Each was dirty until its sync, then evictable: the last ones opened stay.
    expect(cache.stats.open).toBeLessThanOrEqual(4);
    expect(await descriptorsUnder(dir)).toBe(cache.stats.open);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 10; i++) {
        const buf = Buffer.alloc(16);
        const n = i % 2 ? handles[i]!.readSync(buf, 0, 16, 0) : await handles[i]!.read(buf, 0, 16, 0);
        expect(buf.subarray(0, n).toString()).toBe(`file ${i}`);
        expect(await handles[i]!.size()).toBe(`file ${i}`.length);
      }
    }
    expect(cache.stats.open).toBeLessThanOrEqual(3);
    expect(cache.stats.reopened).toBeGreaterThan(20);
    expect(await descriptorsUnder(dir)).toBe(cache.stats.open);
    for (const handle of handles) await handle.close();
    expect(cache.stats.open).toBe(0);
    expect(await descriptorsUnder(dir)).toBe(0);
  });

  it('never closes a descriptor under a read in flight, nor one written since its last sync', async () => {
    const cache = new FileCache({ openFilesMax: 1 });
    const big = (await cache.open(join(dir, 'big'))) as CachedFileHandle;
    const data = Buffer.alloc(8 << 20, 7);
    await big.write(data, 0);
    expect(big.dirty).toBe(true);
    const other = (await cache.open(join(dir, 'other'))) as CachedFileHandle;
    // `big` is dirty and stays open; `other`, idle and clean, is evicted at once.
    expect(big.isOpen).toBe(true);
    expect(other.isOpen).toBe(false);
    await big.sync();
    expect(big.dirty).toBe(false);
    const into = Buffer.alloc(data.length);
    const reading = big.read(into, 0, data.length, 0);
    // In flight from the call on: eviction (as an open of another file runs it) passes it over.
    expect(big.evict()).toBe(false);
    const more = cache.open(join(dir, 'm'));
    expect(big.isOpen).toBe(true);
    expect(await reading).toBe(data.length);
    await more;
    expect(into.equals(data)).toBe(true);
    // Idle and synced now: the next open evicts it.
    await cache.open(join(dir, 'last'));
    expect(big.isOpen).toBe(false);
    await other.close();
  });

  it('counts a write during an fsync as not covered by it', async () => {
    const cache = new FileCache({ openFilesMax: 8 });
    const handle = (await cache.open(join(dir, 'f'))) as CachedFileHandle;
    await handle.write(Buffer.from('a'), 0);
    const syncing = handle.sync();
    handle.writeSync(Buffer.from('b'), 1);
    await syncing;
    expect(handle.dirty).toBe(true);
    await handle.sync();
    expect(handle.dirty).toBe(false);
    await handle.close();
  });

  it('close waits for the operations in flight', async () => {
    const cache = new FileCache({ openFilesMax: 8 });
    const handle = (await cache.open(join(dir, 'f'))) as CachedFileHandle;
    const data = Buffer.alloc(4 << 20, 1);
    await handle.write(data, 0);
    const into = Buffer.alloc(data.length);
    const reading = handle.read(into, 0, data.length, 0);
    await handle.close();
    expect(await reading).toBe(data.length);
    expect(into.equals(data)).toBe(true);
    expect(cache.stats.open).toBe(0);
  });

  it('refuses to reopen a file replaced or removed since it was opened, and never creates one', async () => {
    const cache = new FileCache({ openFilesMax: 1 });
    const old = (await cache.open(join(dir, 'seg.log'))) as CachedFileHandle;
    await old.write(Buffer.from('old bytes'), 0);
    await old.sync();
    await cache.open(join(dir, 'x'));
    expect(old.isOpen).toBe(false);
    // A compaction swap: a new file renamed over the path.
    await writeFile(join(dir, 'seg.log.cleaned'), 'new bytes');
    await rename(join(dir, 'seg.log.cleaned'), join(dir, 'seg.log'));
    expect(() => old.readSync(Buffer.alloc(9), 0, 9, 0)).toThrow(/replaced/);
    await rm(join(dir, 'seg.log'));
    await expect(old.read(Buffer.alloc(9), 0, 9, 0)).rejects.toThrow(/ENOENT/);
    expect((await readdir(dir)).includes('seg.log')).toBe(false);
  });

  it('serves many partition logs through few descriptors: appends, rolls, reads and a reopen', async () => {
    const cache = new FileCache({ openFilesMax: 16 });
    const fs = cache.fileSystem();
    const config = { segmentBytes: 1024, flushPolicy: 'sync' as const };
    const logs = await LogManager.open({ dataDir: dir, defaultConfig: config }, { fs, clock: systemClock });
    const partitions = 40;
    for (let round = 0; round < 5; round++) {
      for (let p = 0; p < partitions; p++) {
        const log = await logs.getOrCreate('t', p, config);
        await log.append(batchOf([`p${p}-r${round}`.padEnd(300, '.')]), {
          assignOffsets: true,
          leaderEpoch: 0,
        });
      }
    }
    expect(cache.stats.open).toBeLessThanOrEqual(16 + 2);
    for (let p = 0; p < partitions; p++) {
      const log = await logs.getOrCreate('t', p, config);
      expect(log.segmentCount).toBeGreaterThan(1);
      const records: { value: Uint8Array | null }[] = [];
      for (let offset = 0; offset < log.logEndOffset; ) {
        const page = await log.readRecords(offset, { maxBytes: 1 << 20 });
        records.push(...page.records);
        offset = page.nextOffset;
      }
      expect(valuesOf(records)).toEqual([0, 1, 2, 3, 4].map((r) => `p${p}-r${r}`.padEnd(300, '.')));
    }
    await logs.close();
    expect(cache.stats.open).toBe(0);
    const again = await LogManager.open({ dataDir: dir, defaultConfig: config }, { fs, clock: systemClock });
    const log = await again.getOrCreate('t', 7, config);
    expect(log.logEndOffset).toBe(5);
    expect(cache.stats.open).toBeLessThanOrEqual(16 + 2);
    await again.close();
  });
});
