import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CachedFileHandle, FileCache, OPEN_FILES_MAX_DEFAULT } from '../../src/storage/file-cache.js';

/**
 * Rules of the bounded file cache that the storage mutation run left unguarded when the cache
 * came in (docs/mutation-protocol-storage.md): its bound and its refusals, which handle goes
 * first, the counts it reports, truncation and what it makes dirty, and close.
 */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-file-cache-m-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function clean(cache: FileCache, name: string, bytes = `bytes of ${name}`): Promise<CachedFileHandle> {
  const handle = (await cache.open(join(dir, name))) as CachedFileHandle;
  await handle.write(Buffer.from(bytes), 0);
  await handle.sync();
  return handle;
}

describe('the bound', () => {
  it('defaults to OPEN_FILES_MAX_DEFAULT and refuses a bound that is not a whole number from 1', () => {
    expect(new FileCache().openFilesMax).toBe(OPEN_FILES_MAX_DEFAULT);
    expect(new FileCache({ openFilesMax: 1 }).openFilesMax).toBe(1);
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])
      expect(() => new FileCache({ openFilesMax: bad })).toThrow(`openFilesMax ${bad}`);
  });

  it('keeps exactly openFilesMax idle files open, evicting the least recently used, and counts each eviction', async () => {
    const cache = new FileCache({ openFilesMax: 2 });
    const a = await clean(cache, 'a');
    const b = await clean(cache, 'b');
    expect(cache.stats).toEqual({ open: 2, reopened: 0, evicted: 0, overBound: 0 });
    // `a` used last: `b` is the least recently used when `c` opens.
    await a.read(Buffer.alloc(1), 0, 1, 0);
    const c = await clean(cache, 'c');
    expect([a.isOpen, b.isOpen, c.isOpen]).toEqual([true, false, true]);
    expect(cache.stats).toEqual({ open: 2, reopened: 0, evicted: 1, overBound: 0 });
    // Reopening `b` evicts `a` now (c was used after it).
    expect(b.readSync(Buffer.alloc(1), 0, 1, 0)).toBe(1);
    expect([a.isOpen, b.isOpen, c.isOpen]).toEqual([false, true, true]);
    expect(cache.stats).toEqual({ open: 2, reopened: 1, evicted: 2, overBound: 0 });
    for (const handle of [a, b, c]) await handle.close();
  });

  it('goes over the bound only when nothing can be evicted, and counts each time', async () => {
    const cache = new FileCache({ openFilesMax: 1 });
    const a = (await cache.open(join(dir, 'a'))) as CachedFileHandle;
    await a.write(Buffer.from('dirty'), 0);
    // `a` is dirty: the new, clean `b` is the one evicted, and the cache is within its bound.
    const b = (await cache.open(join(dir, 'b'))) as CachedFileHandle;
    expect(b.isOpen).toBe(false);
    expect(cache.stats).toEqual({ open: 1, reopened: 0, evicted: 1, overBound: 0 });
    // Writing `b` reopens it, in use: nothing can go, so the cache goes over.
    await b.write(Buffer.from('dirty'), 0);
    expect(cache.stats).toEqual({ open: 2, reopened: 1, evicted: 1, overBound: 1 });
    await a.sync();
    await b.sync();
    // Synced, both can go when `c` opens: back to the bound, no overrun counted.
    const c = (await cache.open(join(dir, 'c'))) as CachedFileHandle;
    expect([a.isOpen, b.isOpen, c.isOpen]).toEqual([false, false, true]);
    expect(cache.stats).toEqual({ open: 1, reopened: 1, evicted: 3, overBound: 1 });
    for (const handle of [a, b, c]) await handle.close();
  });

  it('evict of a handle already evicted says so and closes nothing', async () => {
    const cache = new FileCache({ openFilesMax: 1 });
    const a = await clean(cache, 'a');
    await clean(cache, 'b');
    expect(a.isOpen).toBe(false);
    expect(a.evict()).toBe(true);
    expect(a.isOpen).toBe(false);
  });

  it('names a replaced file ESTALE', async () => {
    const cache = new FileCache({ openFilesMax: 1 });
    const a = await clean(cache, 'a');
    await clean(cache, 'b');
    await writeFile(join(dir, 'a.cleaned'), 'new bytes');
    await rename(join(dir, 'a.cleaned'), join(dir, 'a'));
    expect(() => a.readSync(Buffer.alloc(1), 0, 1, 0)).toThrow(
      expect.objectContaining({
        code: 'ESTALE',
        message: `${join(dir, 'a')} was replaced since it was opened`,
      }),
    );
  });
});

describe('truncation', () => {
  it('cuts the file, and makes the handle dirty until the next sync', async () => {
    const cache = new FileCache({ openFilesMax: 8 });
    const a = await clean(cache, 'a', '0123456789');
    await a.truncate(4);
    expect(await a.size()).toBe(4);
    const buf = Buffer.alloc(10);
    expect(await a.read(buf, 0, 10, 0)).toBe(4);
    expect(buf.subarray(0, 4).toString()).toBe('0123');
    expect(a.dirty).toBe(true);
    expect(a.evict()).toBe(false);
    await a.sync();
    expect(a.dirty).toBe(false);
    await a.close();
  });

  it('to the size the file has already is no change: the handle stays clean', async () => {
    const cache = new FileCache({ openFilesMax: 8 });
    const a = await clean(cache, 'a', '0123456789');
    await a.truncate(10);
    expect(a.dirty).toBe(false);
    expect(await a.size()).toBe(10);
    await a.close();
  });
});

describe('close', () => {
  it('refuses any use after it, naming the file', async () => {
    const cache = new FileCache({ openFilesMax: 8 });
    const a = await clean(cache, 'a');
    await a.close();
    expect(() => a.readSync(Buffer.alloc(1), 0, 1, 0)).toThrow(`use of the closed file ${join(dir, 'a')}`);
  });

  it('resolves only after every operation in flight has ended, and twice at once resolves both', async () => {
    const cache = new FileCache({ openFilesMax: 8 });
    const a = (await cache.open(join(dir, 'a'))) as CachedFileHandle;
    const data = Buffer.alloc(32 << 20, 3);
    await a.write(data, 0);
    const ended: string[] = [];
    // An fsync of 32 MiB just written outlasts a 1-byte read on a disk (on tmpfs it takes no time,
    // and the test holds all the same, proving less).
    const syncing = a.sync().then(() => ended.push('sync'));
    const reading = a.read(Buffer.alloc(1), 0, 1, 0).then((n) => ended.push(`read ${n}`));
    await Promise.all([a.close(), a.close()]);
    expect(ended.sort()).toEqual(['read 1', 'sync']);
    await Promise.all([syncing, reading]);
    expect(cache.stats.open).toBe(0);
  });
});

describe('the reads of a start-up (synchronousReads), on the calling thread', () => {
  it('answer as the thread-pool reads do: contents, listings, existence, undefined for a missing file, an existing file opened as it is', async () => {
    await writeFile(join(dir, 'present'), 'the bytes');
    for (const synchronousReads of [true, false]) {
      const cache = new FileCache({ openFilesMax: 4 });
      cache.synchronousReads = synchronousReads;
      const fs = cache.fileSystem();
      expect((await fs.readFile(join(dir, 'present')))?.toString()).toBe('the bytes');
      expect(await fs.readFile(join(dir, 'missing'))).toBeUndefined();
      expect(await fs.exists(join(dir, 'present'))).toBe(true);
      expect(await fs.exists(join(dir, 'missing'))).toBe(false);
      expect(await fs.readdir(dir)).toContain('present');
      // Opening keeps what a file holds, and makes one that is missing.
      const kept = await fs.open(join(dir, 'present'));
      expect(await kept.size()).toBe(9);
      await kept.close();
      const made = await fs.open(join(dir, `made-${synchronousReads}`));
      expect(await made.size()).toBe(0);
      await made.close();
      // Any error but a missing file is an error: a directory cannot be read as a file.
      await expect(fs.readFile(dir)).rejects.toThrow();
    }
  });
});
