import * as fsCallbacks from 'node:fs';
import { promisify } from 'node:util';
import { assert } from '../common/assert.js';
import { type FileHandle, type FileSystem, nodeFileSystem } from './fs.js';

/**
 * A bounded cache of open files for the real disk: a `FileSystem` whose handles hold a file
 * descriptor only while they are among the `openFilesMax` most recently used, and open their file
 * again on demand. Each segment has three files (log, index, time index), so 10,000 partitions of
 * one segment each would hold 30,000 descriptors, above the process limit (20,000 here, and the
 * sockets of the HTTP clients count against it too).
 *
 * Rules, each for a reason:
 * - A handle is never closed under an operation: one in use (a read, write, sync, truncate or
 *   stat in flight) is skipped by eviction, and `close()` waits for its operations to end.
 * - A handle written since its last completed fsync (dirty) is not evicted: an error of the
 *   kernel's write-back is reported to descriptors open when it happened, so closing one before
 *   its fsync could lose the error, and the fsync would then pass over lost bytes. The active
 *   segment's log, written between flushes, thus stays open; the files of idle partitions close.
 *   Index and time index files (`.index`, `.timeindex`) are exempt: they are synced only at a roll
 *   or a clean close, so the rule would pin two descriptors per partition, and a write of theirs
 *   that was lost costs a rebuild from the log at the next open (`Segment.open` checks them
 *   against the log), never data. A truncation to the size a file has already is no change.
 * - A reopened file must be the same file (device and inode as at the first open): a segment
 *   replaced by compaction (rename over its path) or deleted while its old handle lives on must
 *   not be read through that handle, so the reopen fails instead, and the read fails with it.
 *   Reopening never creates a file.
 * - When every open handle is in use or dirty the cache goes over its bound rather than wait
 *   (`overBound` counts it): a wait could deadlock a read that holds one handle and needs another.
 */

/** Open files kept by default: a fifth of the descriptor limit, leaving the rest for sockets. */
export const OPEN_FILES_MAX_DEFAULT = 4096;

const read = promisify(fsCallbacks.read);
const write = promisify(fsCallbacks.write);
const fdatasync = promisify(fsCallbacks.fdatasync);
const ftruncate = promisify(fsCallbacks.ftruncate);
const fstat = promisify(fsCallbacks.fstat);
const open = promisify(fsCallbacks.open);

export interface FileCacheStats {
  /** Descriptors open now. */
  open: number;
  /** Files opened again after an eviction. */
  reopened: number;
  /** Descriptors closed to stay within the bound. */
  evicted: number;
  /** Times a descriptor was opened while at the bound with nothing evictable. */
  overBound: number;
}

/** Files a lost write-back costs nothing but a rebuild (see the rules above). */
const REBUILDABLE_FILE = /\.(index|timeindex)$/;

export class FileCache {
  readonly openFilesMax: number;
  /**
   * While set, opens, reads, stats, directory listings and whole-file reads run on the calling
   * thread (writes and fsyncs still go through the thread pool). For a node's start-up, when the
   * logs open and nothing else runs yet: each of those is a short syscall on a warm page cache,
   * and the trip through libuv's thread pool and back costs several times the syscall itself,
   * a dozen times per partition (10,000 partitions: seconds of it).
   */
  synchronousReads = false;
  /** Handles holding a descriptor, least recently used first (a Map keeps insertion order). */
  readonly #lru = new Map<CachedFileHandle, true>();
  #reopened = 0;
  #evicted = 0;
  #overBound = 0;

  constructor(options: { openFilesMax?: number } = {}) {
    this.openFilesMax = options.openFilesMax ?? OPEN_FILES_MAX_DEFAULT;
    assert(
      Number.isSafeInteger(this.openFilesMax) && this.openFilesMax >= 1,
      `openFilesMax ${this.openFilesMax}`,
    );
  }

  get stats(): FileCacheStats {
    return {
      open: this.#lru.size,
      reopened: this.#reopened,
      evicted: this.#evicted,
      overBound: this.#overBound,
    };
  }

  /** A `FileSystem` on the real disk whose `open` returns handles of this cache. */
  fileSystem(): FileSystem {
    return {
      ...nodeFileSystem,
      open: (path) => this.open(path),
      readFile: (path) => (this.synchronousReads ? readFileNow(path) : nodeFileSystem.readFile(path)),
      readdir: (path) =>
        this.synchronousReads ? Promise.resolve(fsCallbacks.readdirSync(path)) : nodeFileSystem.readdir(path),
      exists: (path) =>
        this.synchronousReads ? Promise.resolve(fsCallbacks.existsSync(path)) : nodeFileSystem.exists(path),
    };
  }

  /** Opens `path` for reading and writing, creating it when missing (as `FileSystem.open`). */
  async open(path: string): Promise<FileHandle> {
    const fd = this.synchronousReads
      ? openNow(path)
      : await open(path, 'r+').catch(async (error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
          return open(path, 'w+');
        });
    const { dev, ino } = this.synchronousReads ? fsCallbacks.fstatSync(fd) : await fstat(fd);
    const handle = new CachedFileHandle(this, path, fd, { dev, ino }, REBUILDABLE_FILE.test(path));
    this.opened(handle);
    return handle;
  }

  /** `handle` holds a descriptor now: it is the most recent, and the least recent ones may close. */
  opened(handle: CachedFileHandle): void {
    this.#lru.set(handle, true);
    this.#evictBeyondBound();
  }

  reopened(handle: CachedFileHandle): void {
    this.#reopened++;
    this.opened(handle);
  }

  /** `handle` was used: it moves to the most recent end. */
  touched(handle: CachedFileHandle): void {
    this.#lru.delete(handle);
    this.#lru.set(handle, true);
  }

  /** `handle` closed its descriptor itself. */
  forget(handle: CachedFileHandle): void {
    this.#lru.delete(handle);
  }

  #evictBeyondBound(): void {
    if (this.#lru.size <= this.openFilesMax) return;
    for (const handle of this.#lru.keys()) {
      if (this.#lru.size <= this.openFilesMax) return;
      if (handle.evict()) {
        this.#lru.delete(handle);
        this.#evicted++;
      }
    }
    if (this.#lru.size > this.openFilesMax) this.#overBound++;
  }
}

/** `FileSystem.open`'s descriptor, on the calling thread. */
function openNow(path: string): number {
  try {
    return fsCallbacks.openSync(path, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return fsCallbacks.openSync(path, 'w+');
  }
}

/** `FileSystem.readFile` on the calling thread: undefined for a missing file. */
async function readFileNow(path: string): Promise<Buffer | undefined> {
  try {
    return fsCallbacks.readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** One file of a `FileCache`: a descriptor while cached, its path and identity always. */
export class CachedFileHandle implements FileHandle {
  #fd: number | undefined;
  /** Operations in flight on the descriptor. */
  #busy = 0;
  /** Bumped by every write and truncation; a sync clears `dirty` only if none came during it. */
  #changes = 0;
  #syncedChanges = 0;
  #closed = false;
  #idle: (() => void) | undefined;

  constructor(
    private readonly cache: FileCache,
    readonly path: string,
    fd: number,
    private readonly identity: { dev: number; ino: number },
    /** Evictable while dirty: an index file, rebuilt from the log when its writes were lost. */
    private readonly rebuildable = false,
  ) {
    this.#fd = fd;
  }

  /** Whether the descriptor is open now (for tests and diagnostics). */
  get isOpen(): boolean {
    return this.#fd !== undefined;
  }

  get dirty(): boolean {
    return this.#changes !== this.#syncedChanges;
  }

  /** Closes the descriptor for the cache, unless it is in use or dirty; true when it closed. */
  evict(): boolean {
    if (this.#fd === undefined) return true;
    if (this.#busy > 0 || (this.dirty && !this.rebuildable)) return false;
    fsCallbacks.closeSync(this.#fd);
    this.#fd = undefined;
    return true;
  }

  /** The descriptor for one operation, opened again if it was evicted; pair with `#done`. */
  #use(): number {
    assert(!this.#closed, `use of the closed file ${this.path}`);
    let fd = this.#fd;
    if (fd === undefined) {
      // Synchronous, so that readSync and writeSync can reopen too; an open is one short syscall.
      fd = fsCallbacks.openSync(this.path, 'r+');
      const { dev, ino } = fsCallbacks.fstatSync(fd);
      if (dev !== this.identity.dev || ino !== this.identity.ino) {
        fsCallbacks.closeSync(fd);
        throw Object.assign(new Error(`${this.path} was replaced since it was opened`), { code: 'ESTALE' });
      }
      this.#fd = fd;
      this.#busy++;
      this.cache.reopened(this);
      return fd;
    }
    this.#busy++;
    this.cache.touched(this);
    return fd;
  }

  #done(): void {
    this.#busy--;
    if (this.#busy === 0) this.#idle?.();
  }

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (this.cache.synchronousReads) return this.readSync(buffer, offset, length, position);
    const fd = this.#use();
    try {
      let total = 0;
      while (total < length) {
        const { bytesRead } = await read(fd, buffer, offset + total, length - total, position + total);
        if (bytesRead === 0) break;
        total += bytesRead;
      }
      return total;
    } finally {
      this.#done();
    }
  }

  readSync(buffer: Buffer, offset: number, length: number, position: number): number {
    const fd = this.#use();
    try {
      let total = 0;
      while (total < length) {
        const n = fsCallbacks.readSync(fd, buffer, offset + total, length - total, position + total);
        if (n === 0) break;
        total += n;
      }
      return total;
    } finally {
      this.#done();
    }
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    const fd = this.#use();
    this.#changes++;
    try {
      let written = 0;
      while (written < data.length) {
        const { bytesWritten } = await write(fd, data, written, data.length - written, position + written);
        written += bytesWritten;
      }
    } finally {
      this.#done();
    }
  }

  writeSync(data: Uint8Array, position: number): void {
    const fd = this.#use();
    this.#changes++;
    try {
      let written = 0;
      while (written < data.length)
        written += fsCallbacks.writeSync(fd, data, written, data.length - written, position + written);
    } finally {
      this.#done();
    }
  }

  async sync(): Promise<void> {
    const fd = this.#use();
    const covered = this.#changes;
    try {
      await fdatasync(fd);
      // Only what was written before the fsync began is durable now.
      this.#syncedChanges = Math.max(this.#syncedChanges, covered);
    } finally {
      this.#done();
    }
  }

  async truncate(length: number): Promise<void> {
    const fd = this.#use();
    try {
      // A new segment's files are cut to 0 when created: that changes nothing to sync.
      if ((await fstat(fd)).size === length) return;
      this.#changes++;
      await ftruncate(fd, length);
    } finally {
      this.#done();
    }
  }

  async size(): Promise<number> {
    const fd = this.#use();
    try {
      return (this.cache.synchronousReads ? fsCallbacks.fstatSync(fd) : await fstat(fd)).size;
    } finally {
      this.#done();
    }
  }

  /** Waits for the operations in flight, then closes the descriptor and leaves the cache. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#busy > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    this.cache.forget(this);
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) await promisify(fsCallbacks.close)(fd);
  }
}
