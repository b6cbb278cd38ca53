import { readFileSync } from 'node:fs';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SluiceError } from '../common/errors.js';

/**
 * One process per data directory. A second node started on a directory in use would open every
 * partition log (running crash recovery over tails the first is writing, rewriting checkpoints)
 * before anything else refused it. So the first step of a start is `sluice.lock` in the directory,
 * created exclusively and naming its holder: the process id, the machine's boot id and the
 * process's start time (Linux's `/proc/<pid>/stat`), so that a lock left by a process that died
 * (kill -9, power loss) is recognised as stale and taken over, while a live holder's is refused
 * with INVALID_CONFIG naming it. The lock is removed when the node has closed.
 *
 * Two processes starting at the same moment over a stale lock could both take it over; each
 * rereads the file after writing it and gives up when it names another holder, which leaves the
 * window between that reread and the other's unlink (microseconds, and only on a stale lock).
 */
export const DATA_DIR_LOCK_FILE = 'sluice.lock';

interface LockHolder {
  pid: number;
  bootId: string | null;
  /** The process's start time in clock ticks since boot, where the machine tells it. */
  started: string | null;
}

export interface DataDirLock {
  readonly path: string;
  /** Removes the lock, if it still names this holder. */
  release(): Promise<void>;
}

/** How the lock's holder is looked at: injectable so that tests can stand for other processes. */
export interface LockEnvironment {
  pid: number;
  bootId: string | null;
  /** Whether a process with this id exists on this machine now. */
  alive(pid: number): boolean;
  /** The start time of process `pid`, or null where unknown. */
  startedOf(pid: number): string | null;
}

export function processEnvironment(bootId: string | null): LockEnvironment {
  return { pid: process.pid, bootId, alive: processAlive, startedOf: processStarted };
}

export async function lockDataDir(dataDir: string, env: LockEnvironment): Promise<DataDirLock> {
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, DATA_DIR_LOCK_FILE);
  const me: LockHolder = { pid: env.pid, bootId: env.bootId, started: env.startedOf(env.pid) };
  const mine = `${JSON.stringify(me)}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await createExclusive(path, mine)) {
      // A process that took over the same stale lock at the same moment may have replaced it.
      const now = await readFile(path, 'utf8').catch(() => undefined);
      if (now === mine) return { path, release: () => releaseIf(path, mine) };
      continue;
    }
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) continue; // removed meanwhile: try again
    const holder = parseHolder(text);
    if (holder && holdsNow(holder, env)) {
      throw new SluiceError(
        'INVALID_CONFIG',
        `the data directory ${dataDir} is in use by process ${holder.pid} (its ${DATA_DIR_LOCK_FILE}): ` +
          'stop that node first, or give this one another --data-dir',
        { details: { config: 'dataDir', pid: holder.pid } },
      );
    }
    // Left by a process that is gone (or unreadable, from a write cut short): stale.
    await unlink(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }
  throw new SluiceError(
    'INVALID_CONFIG',
    `the data directory ${dataDir} is being locked by another process starting at the same time`,
    { details: { config: 'dataDir' } },
  );
}

/** Whether the holder a lock names is a process running now (not one that died, nor a reused id). */
function holdsNow(holder: LockHolder, env: LockEnvironment): boolean {
  if (holder.bootId !== null && env.bootId !== null && holder.bootId !== env.bootId) return false;
  if (!env.alive(holder.pid)) return false;
  // The id may have been given to another process since: its start time tells.
  const started = env.startedOf(holder.pid);
  return holder.started === null || started === null || started === holder.started;
}

async function createExclusive(path: string, content: string): Promise<boolean> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

async function releaseIf(path: string, mine: string): Promise<void> {
  const now = await readFile(path, 'utf8').catch(() => undefined);
  if (now === mine) await unlink(path).catch(() => {});
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockHolder>;
    if (typeof value.pid !== 'number' || !Number.isSafeInteger(value.pid) || value.pid <= 0) return undefined;
    return {
      pid: value.pid,
      bootId: typeof value.bootId === 'string' ? value.bootId : null,
      started: typeof value.started === 'string' ? value.started : null,
    };
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, owned by another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Field 22 of `/proc/<pid>/stat` (start time in ticks since boot); null off Linux. */
function processStarted(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}
