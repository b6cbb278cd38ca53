import { readSync, writeSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Random } from '../common/random.js';

/**
 * Every file the storage engine touches goes through this interface, so that tests can run the
 * same code on a simulated disk that loses unsynced writes. Positions are explicit: the log never
 * relies on an implicit file cursor.
 */
export interface FileHandle {
  /** Reads up to `length` bytes at `position` into `buffer[offset..]`; returns the bytes read. */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
  /**
   * As `read`, on the calling thread. For bytes written moments ago, which the page cache holds,
   * a synchronous copy costs a fraction of a round trip through the thread pool; for anything
   * else it would stall the event loop on the disk, so the log uses it only for its newest bytes.
   */
  readSync(buffer: Buffer, offset: number, length: number, position: number): number;
  /** Writes all of `data` at `position`. */
  write(data: Uint8Array, position: number): Promise<void>;
  /**
   * As `write`, on the calling thread: a write that lands in the page cache is a memory copy,
   * which costs less than the trip through the thread pool and back unless it is large.
   */
  writeSync(data: Uint8Array, position: number): void;
  /** Makes every write and truncation so far durable. */
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export interface FileSystem {
  /** Opens a file for reading and writing, creating it when missing. */
  open(path: string): Promise<FileHandle>;
  readFile(path: string): Promise<Buffer | undefined>;
  /**
   * Replaces a file's content atomically and durably: a temporary file, fsync, rename, and a sync
   * of the directory. With `syncDir: false` the directory is not synced: the new content is
   * durable, but which of the old and the new the path names after a power loss is settled only
   * by the next `syncDir` of its directory (a caller that replaces several files of one directory
   * syncs it once for all).
   */
  writeFileAtomic(path: string, data: Uint8Array, options?: { syncDir?: boolean }): Promise<void>;
  exists(path: string): Promise<boolean>;
  readdir(path: string): Promise<string[]>;
  mkdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** Removes a directory and everything under it. */
  removeDir(path: string): Promise<void>;
  /**
   * Makes the directory's entries durable: files created, unlinked or renamed in it (and
   * directories made in it) survive a power loss only once their directory was synced after.
   */
  syncDir(path: string): Promise<void>;
}

/**
 * Makes `path` and any missing parents, and syncs the parent of each directory it created, so that
 * the new directories survive a power loss.
 */
export async function mkdirDurable(fs: FileSystem, path: string): Promise<void> {
  const created: string[] = [];
  for (let p = path; dirname(p) !== p && !(await fs.exists(p)); p = dirname(p)) created.push(p);
  await fs.mkdir(path);
  for (const p of created) await fs.syncDir(dirname(p));
}

class NodeFileHandle implements FileHandle {
  constructor(private readonly handle: fsp.FileHandle) {}

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    let total = 0;
    while (total < length) {
      const { bytesRead } = await this.handle.read(buffer, offset + total, length - total, position + total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
    return total;
  }

  readSync(buffer: Buffer, offset: number, length: number, position: number): number {
    let total = 0;
    while (total < length) {
      const n = readSync(this.handle.fd, buffer, offset + total, length - total, position + total);
      if (n === 0) break;
      total += n;
    }
    return total;
  }

  writeSync(data: Uint8Array, position: number): void {
    let written = 0;
    while (written < data.length)
      written += writeSync(this.handle.fd, data, written, data.length - written, position + written);
  }

  write(data: Uint8Array, position: number): Promise<void> {
    // One call writes everything almost always; the loop is for the rare short write.
    return this.handle
      .write(data, 0, data.length, position)
      .then(({ bytesWritten }) =>
        bytesWritten < data.length ? this.#writeFrom(data, bytesWritten, position) : undefined,
      );
  }

  async #writeFrom(data: Uint8Array, written: number, position: number): Promise<void> {
    while (written < data.length) {
      const { bytesWritten } = await this.handle.write(
        data,
        written,
        data.length - written,
        position + written,
      );
      written += bytesWritten;
    }
  }

  sync(): Promise<void> {
    return this.handle.datasync();
  }

  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await fsp.open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

let temporaryCounter = 0;

export const nodeFileSystem: FileSystem = {
  async open(path) {
    // 'a+' would force appends to the end; 'r+' fails on a missing file, so create it first.
    const handle = await fsp.open(path, 'r+').catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
      return fsp.open(path, 'w+');
    });
    return new NodeFileHandle(handle);
  },
  async readFile(path) {
    try {
      return await fsp.readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  },
  async writeFileAtomic(path, data, options) {
    // A unique temporary name: two replacements of one file in flight must not share it.
    const temporary = `${path}.${process.pid}.${++temporaryCounter}.tmp`;
    const handle = await fsp.open(temporary, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temporary, path);
    if (options?.syncDir !== false) await syncDirectory(dirname(path));
  },
  async exists(path) {
    try {
      await fsp.stat(path);
      return true;
    } catch {
      return false;
    }
  },
  readdir: (path) => fsp.readdir(path),
  async mkdir(path) {
    await fsp.mkdir(path, { recursive: true });
  },
  async unlink(path) {
    await fsp.rm(path, { force: true });
  },
  rename: (from, to) => fsp.rename(from, to),
  async removeDir(path) {
    await fsp.rm(path, { recursive: true, force: true });
  },
  syncDir: syncDirectory,
};

export type SimulatedOperation =
  | 'write'
  | 'truncate'
  | 'sync'
  | 'syncDir'
  | 'writeFileAtomic'
  | 'mkdir'
  | 'unlink'
  | 'rename';

export type PendingOp =
  | { kind: 'write'; position: number; data: Buffer }
  | { kind: 'truncate'; length: number };

interface SimulatedFile {
  /** Content as of the last sync: what survives a power loss for sure. */
  durable: Buffer;
  /** Content as every reader sees it now. */
  current: Buffer;
  /** Writes and truncations since the last sync, in order. */
  pending: PendingOp[];
}

/**
 * A file system in memory that keeps synced and unsynced bytes apart, and synced and unsynced
 * directory entries. `crash()` models a power loss: each file keeps its synced content plus a
 * random prefix of its unsynced operations, and the last kept write may be torn (only a prefix of
 * its bytes lands). Directory changes (create, unlink, rename, mkdir, removeDir) are all lost
 * unless their directory was synced after them (`syncDir`): the namespace reverts to what each
 * directory held when it was last synced. Atomic file replacement is durable when it resolves (it
 * syncs the file, renames it into place and syncs the directory, as the real one does).
 */
export class SimulatedFileSystem implements FileSystem {
  /** The namespace as every caller sees it now: path → file. */
  readonly files = new Map<string, SimulatedFile>();
  readonly dirs = new Set<string>(['/']);
  /** The namespace that survives a power loss: entries as of their directory's last sync. */
  readonly #durableFiles = new Map<string, SimulatedFile>();
  readonly #durableDirs = new Set<string>(['/']);
  syncCount = 0;
  /**
   * Fault injection: asked before every operation that changes or syncs something. An error it
   * returns fails that operation (nothing of it happens); `'stall'` leaves it pending forever, as
   * a write caught by a power loss.
   */
  fault: ((operation: SimulatedOperation, path: string) => Error | 'stall' | undefined) | undefined;

  /** Throws or stalls as `fault` says; resolves when the operation may go ahead. */
  async faultFor(operation: SimulatedOperation, path: string): Promise<void> {
    const fault = this.fault?.(operation, path);
    if (fault === 'stall') await new Promise<never>(() => {});
    if (fault) throw fault;
  }

  /** As `faultFor`, for operations on the calling thread, which cannot stall. */
  faultForSync(operation: SimulatedOperation, path: string): void {
    const fault = this.fault?.(operation, path);
    if (fault === 'stall') throw new Error(`a synchronous ${operation} of ${path} cannot stall`);
    if (fault) throw fault;
  }

  async open(path: string): Promise<FileHandle> {
    this.#requireDir(dirname(path));
    let file = this.files.get(path);
    if (!file) {
      file = { durable: Buffer.alloc(0), current: Buffer.alloc(0), pending: [] };
      this.files.set(path, file);
    }
    return new SimulatedFileHandle(this, path, file);
  }

  fileFor(path: string): SimulatedFile {
    const file = this.files.get(path);
    if (!file) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return file;
  }

  async readFile(path: string): Promise<Buffer | undefined> {
    const file = this.files.get(path);
    return file ? Buffer.from(file.current) : undefined;
  }

  async writeFileAtomic(path: string, data: Uint8Array, options?: { syncDir?: boolean }): Promise<void> {
    this.#requireDir(dirname(path));
    await this.faultFor('writeFileAtomic', path);
    const copy = Buffer.from(data);
    // A new file whose content is durable; without the directory sync, a power loss reverts the
    // path to the file it named before (or to none).
    this.files.set(path, { durable: copy, current: Buffer.from(copy), pending: [] });
    if (options?.syncDir !== false) this.#syncEntries(dirname(path));
    this.syncCount++;
  }

  async syncDir(path: string): Promise<void> {
    this.#requireDir(path);
    await this.faultFor('syncDir', path);
    this.#syncEntries(path);
    this.syncCount++;
  }

  /** Copies the current entries of directory `dir` (files and directories in it) to the durable namespace. */
  #syncEntries(dir: string): void {
    for (const path of [...this.#durableFiles.keys()])
      if (dirname(path) === dir && !this.files.has(path)) this.#durableFiles.delete(path);
    for (const [path, file] of this.files) if (dirname(path) === dir) this.#durableFiles.set(path, file);
    for (const path of [...this.#durableDirs])
      if (path !== dir && dirname(path) === dir && !this.dirs.has(path)) this.#forgetDurableTree(path);
    for (const path of this.dirs) if (path !== dir && dirname(path) === dir) this.#durableDirs.add(path);
  }

  /** A directory removed durably takes everything under it along. */
  #forgetDurableTree(root: string): void {
    const prefix = `${root}/`;
    for (const path of [...this.#durableFiles.keys()])
      if (path.startsWith(prefix)) this.#durableFiles.delete(path);
    for (const path of [...this.#durableDirs])
      if (path === root || path.startsWith(prefix)) this.#durableDirs.delete(path);
  }

  /** The namespace after a power loss: only synced directory entries stay. */
  #revertNamespace(): void {
    this.files.clear();
    for (const [path, file] of this.#durableFiles) this.files.set(path, file);
    this.dirs.clear();
    for (const path of this.#durableDirs) this.dirs.add(path);
  }

  async exists(path: string): Promise<boolean> {
    return this.files.has(path) || this.dirs.has(path);
  }

  async readdir(path: string): Promise<string[]> {
    this.#requireDir(path);
    const prefix = path.endsWith('/') ? path : `${path}/`;
    const names = new Set<string>();
    for (const p of [...this.files.keys(), ...this.dirs]) {
      if (p.startsWith(prefix) && p !== prefix) names.add(p.slice(prefix.length).split('/')[0]!);
    }
    return [...names].sort();
  }

  async mkdir(path: string): Promise<void> {
    await this.faultFor('mkdir', path);
    let p = path;
    while (p !== '/' && p !== '.' && p !== '') {
      this.dirs.add(p);
      p = dirname(p);
    }
  }

  async unlink(path: string): Promise<void> {
    await this.faultFor('unlink', path);
    this.files.delete(path);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.faultFor('rename', from);
    const file = this.fileFor(from);
    this.files.delete(from);
    this.files.set(to, file);
  }

  async removeDir(path: string): Promise<void> {
    const prefix = `${path}/`;
    for (const p of [...this.files.keys()]) if (p.startsWith(prefix)) this.files.delete(p);
    for (const d of [...this.dirs]) if (d === path || d.startsWith(prefix)) this.dirs.delete(d);
  }

  /** Power loss: keeps synced bytes, a random prefix of unsynced operations, maybe a torn last write. */
  crash(random: Random): void {
    this.#revertNamespace();
    for (const file of this.files.values()) {
      let content = file.durable;
      const keep = random.int(file.pending.length + 1);
      for (let i = 0; i < keep; i++) {
        const op = file.pending[i]!;
        const torn = i === keep - 1 && op.kind === 'write' && random.chance(0.5);
        content = applyOp(
          content,
          torn && op.kind === 'write'
            ? { ...op, data: op.data.subarray(0, random.int(op.data.length + 1)) }
            : op,
        );
      }
      file.durable = content;
      file.current = Buffer.from(content);
      file.pending = [];
    }
  }

  /**
   * Power loss at a chosen point: each file keeps its synced content plus the first `keep(path, ops)`
   * of its unsynced operations, whole; unsynced directory changes are lost.
   */
  crashKeeping(keep: (path: string, pending: readonly PendingOp[]) => number): void {
    this.#revertNamespace();
    for (const [path, file] of this.files) {
      let content = file.durable;
      for (const op of file.pending.slice(0, keep(path, file.pending))) content = applyOp(content, op);
      file.durable = content;
      file.current = Buffer.from(content);
      file.pending = [];
    }
  }

  /** Every unsynced operation lost, none kept: the harshest crash. */
  crashLosingAllUnsynced(): void {
    this.crashKeeping(() => 0);
  }

  /**
   * A copy of this file system as a power loss right now would leave it (every unsynced write and
   * directory change lost), for checking many crash points of one run.
   */
  afterPowerLoss(): SimulatedFileSystem {
    const copy = new SimulatedFileSystem();
    for (const [path, file] of this.#durableFiles) {
      const content = Buffer.from(file.durable);
      copy.files.set(path, { durable: content, current: Buffer.from(content), pending: [] });
      copy.#durableFiles.set(path, copy.files.get(path)!);
    }
    for (const path of this.#durableDirs) {
      copy.dirs.add(path);
      copy.#durableDirs.add(path);
    }
    return copy;
  }

  #requireDir(path: string): void {
    if (!this.dirs.has(path))
      throw Object.assign(new Error(`ENOENT: no directory ${path}`), { code: 'ENOENT' });
  }
}

function applyOp(content: Buffer, op: PendingOp): Buffer {
  if (op.kind === 'truncate') {
    if (op.length <= content.length) return content.subarray(0, op.length);
    return Buffer.concat([content, Buffer.alloc(op.length - content.length)]);
  }
  const end = op.position + op.data.length;
  const out =
    end > content.length
      ? Buffer.concat([content, Buffer.alloc(end - content.length)])
      : Buffer.from(content);
  op.data.copy(out, op.position);
  return out;
}

/**
 * A handle holds its file, not its path, as a POSIX descriptor holds its inode: after the path is
 * renamed over or unlinked, the handle still reads and writes the file it opened.
 */
class SimulatedFileHandle implements FileHandle {
  #closed = false;
  constructor(
    private readonly fs: SimulatedFileSystem,
    private readonly path: string,
    private readonly file: SimulatedFile,
  ) {}

  #file(): SimulatedFile {
    if (this.#closed) throw Object.assign(new Error(`EBADF: ${this.path} is closed`), { code: 'EBADF' });
    return this.file;
  }

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    return this.readSync(buffer, offset, length, position);
  }

  readSync(buffer: Buffer, offset: number, length: number, position: number): number {
    const file = this.#file();
    const n = Math.max(0, Math.min(length, file.current.length - position));
    file.current.copy(buffer, offset, position, position + n);
    return n;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    await this.fs.faultFor('write', this.path);
    this.writeSync(data, position);
  }

  writeSync(data: Uint8Array, position: number): void {
    const file = this.#file();
    this.fs.faultForSync('write', this.path);
    const op: PendingOp = { kind: 'write', position, data: Buffer.from(data) };
    file.pending.push(op);
    file.current = applyOp(file.current, op);
  }

  async sync(): Promise<void> {
    this.#file();
    await this.fs.faultFor('sync', this.path);
    const file = this.#file();
    file.durable = Buffer.from(file.current);
    file.pending = [];
    this.fs.syncCount++;
  }

  async truncate(length: number): Promise<void> {
    this.#file();
    await this.fs.faultFor('truncate', this.path);
    const file = this.#file();
    const op: PendingOp = { kind: 'truncate', length };
    file.pending.push(op);
    file.current = applyOp(file.current, op);
  }

  async size(): Promise<number> {
    return this.#file().current.length;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
