import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import {
  DATA_DIR_LOCK_FILE,
  type LockEnvironment,
  lockDataDir,
  processEnvironment,
} from '../../src/node/data-dir-lock.js';
import { startNode } from '../../src/node/node.js';

/**
 * One process per data directory: a node started on a directory another live process holds is
 * refused before it reads anything of it (it would otherwise run crash recovery over the logs the
 * other is writing), and a lock left by a process that died is taken over.
 */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A process id that is certainly not running: one of a child that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(child.stdout.toString());
}

const here = processEnvironment('boot-a');

describe('the data directory lock', () => {
  it('refuses a second holder while the first lives, naming it, and frees the directory on release', async () => {
    const first = await lockDataDir(dir, here);
    const second = await lockDataDir(dir, here).catch((error: unknown) => error);
    expect(isSluiceError(second, 'INVALID_CONFIG'), String(second)).toBe(true);
    expect((second as Error).message).toContain(`in use by process ${process.pid}`);
    await first.release();
    expect(existsSync(join(dir, DATA_DIR_LOCK_FILE))).toBe(false);
    const third = await lockDataDir(dir, here);
    await third.release();
  });

  it('takes over a lock whose process is gone, from another boot, or whose id was reused', async () => {
    const path = join(dir, DATA_DIR_LOCK_FILE);
    const stale = [
      { pid: deadPid(), bootId: 'boot-a', started: null },
      // Alive, but the lock was written before the machine rebooted.
      { pid: process.pid, bootId: 'boot-before', started: null },
      // Alive and the same boot, but another process: its start time differs.
      { pid: process.pid, bootId: 'boot-a', started: 'not-this-process' },
    ];
    for (const holder of stale) {
      await writeFile(path, JSON.stringify(holder));
      const lock = await lockDataDir(dir, here);
      expect(JSON.parse(await readFile(path, 'utf8')).pid).toBe(process.pid);
      await lock.release();
    }
    // A lock file cut short by a crash while it was written names nobody.
    await writeFile(path, '{"pid": 12');
    await (await lockDataDir(dir, here)).release();
  });

  it('keeps a live holder whose start time matches, or is unknown', async () => {
    const path = join(dir, DATA_DIR_LOCK_FILE);
    // This process sees process 4242 running, started at tick 77.
    const observer: LockEnvironment = {
      ...here,
      alive: (pid) => pid === 4242 || here.alive(pid),
      startedOf: (pid) => (pid === 4242 ? '77' : here.startedOf(pid)),
    };
    for (const holder of [
      { pid: 4242, bootId: 'boot-a', started: '77' },
      { pid: 4242, bootId: null, started: null },
    ]) {
      await writeFile(path, JSON.stringify(holder));
      const refused = await lockDataDir(dir, observer).catch((error: unknown) => error);
      expect(isSluiceError(refused, 'INVALID_CONFIG'), String(refused)).toBe(true);
      expect((refused as Error).message).toContain('in use by process 4242');
      expect(JSON.parse(await readFile(path, 'utf8'))).toEqual(holder);
    }
  });

  it('a node started on a directory a running node holds is refused before it touches the logs', async () => {
    const node = await startNode({ dataDir: dir, port: 0, logLevel: 'silent' });
    try {
      const url = `http://127.0.0.1:${node.address.port}`;
      await fetch(`${url}/v1/topics`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 't', partitions: 1 }),
      });
      await fetch(`${url}/v1/topics/t/records`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ records: [{ value: 'kept' }] }),
      });
      const partitionDir = join(dir, 't-0');
      const before = await settled(partitionDir);
      const second = await startNode({ dataDir: dir, port: 0, logLevel: 'silent' }).catch((e: unknown) => e);
      expect(isSluiceError(second, 'INVALID_CONFIG'), String(second)).toBe(true);
      expect((second as Error).message).toContain('--data-dir');
      // Not a file of the partition was opened for writing, renamed, created or removed.
      expect(await snapshot(partitionDir)).toEqual(before);
      const read = await fetch(`${url}/v1/topics/t/partitions/0/records?offset=0`);
      expect(((await read.json()) as { records: { value: string }[] }).records.map((r) => r.value)).toEqual([
        'kept',
      ]);
    } finally {
      await node.close();
    }
    expect(existsSync(join(dir, DATA_DIR_LOCK_FILE))).toBe(false);
    // Closed: the directory opens again.
    const reopened = await startNode({ dataDir: dir, port: 0, logLevel: 'silent' });
    await reopened.close();
  });
});

/** The snapshot once the node's writes after the append (checkpoints) are done: two alike in a row. */
async function settled(path: string): Promise<Record<string, string>> {
  let last = await snapshot(path);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = await snapshot(path);
    const moving = Object.entries(now).some(([n, v]) => n.endsWith('.tmp') || v === 'gone');
    if (JSON.stringify(now) === JSON.stringify(last) && !moving) return now;
    last = now;
  }
}

/** Each file of a directory: a segment file's size and modification time, any other's presence. */
async function snapshot(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(path)).sort()) {
    // A checkpoint's temporary file may be renamed away between the listing and its stat.
    const s = await stat(join(path, name)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    // The running node may rewrite its checkpoints at any time; a recovery would touch the segments.
    const segment = /\.(log|index|timeindex)$/.test(name);
    out[name] = s ? (segment ? `${s.size}@${s.mtimeMs}` : 'present') : 'gone';
  }
  return out;
}
