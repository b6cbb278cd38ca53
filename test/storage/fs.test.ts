import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/common/random.js';
import { type FileSystem, mkdirDurable, nodeFileSystem, SimulatedFileSystem } from '../../src/storage/fs.js';

/** One conformance suite for both file systems: the simulated one must behave like the real one. */
const realRoot = await mkdtemp(join(tmpdir(), 'sluice-fs-'));
afterAll(() => rm(realRoot, { recursive: true, force: true }));

const implementations: [string, () => { fs: FileSystem; root: string }][] = [
  ['node:fs', () => ({ fs: nodeFileSystem, root: realRoot })],
  ['simulated', () => ({ fs: new SimulatedFileSystem(), root: '/sim' })],
];

describe.each(implementations)('FileSystem conformance: %s', (_name, make) => {
  it('writes at positions, reads back, truncates and reports size', async () => {
    const { fs, root } = make();
    const dir = `${root}/a`;
    await fs.mkdir(dir);
    const file = await fs.open(`${dir}/f.log`);
    await file.write(Buffer.from('hello world'), 0);
    await file.write(Buffer.from('W'), 6);
    expect(await file.size()).toBe(11);
    const buf = Buffer.alloc(20);
    expect(await file.read(buf, 0, 20, 0)).toBe(11);
    expect(buf.subarray(0, 11).toString()).toBe('hello World');
    const direct = Buffer.alloc(20);
    expect(file.readSync(direct, 2, 18, 6)).toBe(5);
    expect(direct.subarray(2, 7).toString()).toBe('World');
    await file.truncate(5);
    await file.sync();
    expect(await file.size()).toBe(5);
    expect(await file.read(buf, 0, 20, 3)).toBe(2);
    await file.close();
    const again = await fs.open(`${dir}/f.log`);
    expect(await again.size()).toBe(5);
    await again.close();
    expect((await fs.readFile(`${dir}/f.log`))?.toString()).toBe('hello');
  });

  it('replaces files atomically, lists, renames, unlinks and removes directories', async () => {
    const { fs, root } = make();
    const dir = `${root}/b`;
    await fs.mkdir(dir);
    await fs.writeFileAtomic(`${dir}/cp`, Buffer.from('1'));
    await fs.writeFileAtomic(`${dir}/cp`, Buffer.from('22'));
    expect((await fs.readFile(`${dir}/cp`))?.toString()).toBe('22');
    expect(await fs.readFile(`${dir}/missing`)).toBeUndefined();
    await fs.rename(`${dir}/cp`, `${dir}/cp2`);
    expect(await fs.readdir(dir)).toEqual(['cp2']);
    expect(await fs.exists(`${dir}/cp2`)).toBe(true);
    await fs.unlink(`${dir}/cp2`);
    expect(await fs.exists(`${dir}/cp2`)).toBe(false);
    await fs.writeFileAtomic(`${dir}/x`, Buffer.from('x'));
    await fs.removeDir(dir);
    expect(await fs.exists(dir)).toBe(false);
  });

  it('an open handle keeps its file after the path is renamed over or unlinked', async () => {
    const { fs, root } = make();
    const dir = `${root}/c`;
    await fs.mkdir(dir);
    const old = await fs.open(`${dir}/seg.log`);
    await old.write(Buffer.from('old'), 0);
    const cleaned = await fs.open(`${dir}/seg.log.cleaned`);
    await cleaned.write(Buffer.from('new!'), 0);
    await cleaned.close();
    await fs.rename(`${dir}/seg.log.cleaned`, `${dir}/seg.log`);
    const buf = Buffer.alloc(8);
    expect(buf.subarray(0, await old.read(buf, 0, 8, 0)).toString()).toBe('old');
    expect((await fs.readFile(`${dir}/seg.log`))?.toString()).toBe('new!');
    await fs.unlink(`${dir}/seg.log`);
    expect(buf.subarray(0, await old.read(buf, 0, 8, 0)).toString()).toBe('old');
    await old.close();
  });

  it('syncs a directory, made durably with its parents', async () => {
    const { fs, root } = make();
    const dir = `${root}/d/e/f`;
    await mkdirDurable(fs, dir);
    expect(await fs.exists(dir)).toBe(true);
    const file = await fs.open(`${dir}/x`);
    await file.close();
    await fs.syncDir(dir);
    expect(await fs.readdir(dir)).toEqual(['x']);
    await expect(fs.syncDir(`${root}/missing`)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('SimulatedFileSystem power loss', () => {
  it('keeps synced bytes and at most a prefix of unsynced writes, possibly torn', async () => {
    let sawPartial = false;
    let sawNone = false;
    for (let seed = 0; seed < 50; seed++) {
      const fs = new SimulatedFileSystem();
      await mkdirDurable(fs, '/p');
      const file = await fs.open('/p/f');
      await fs.syncDir('/p');
      await file.write(Buffer.from('synced|'), 0);
      await file.sync();
      await file.write(Buffer.from('first|'), 7);
      await file.write(Buffer.from('second'), 13);
      fs.crash(new SeededRandom(seed));
      const content = (await fs.readFile('/p/f'))!.toString();
      expect('synced|first|second'.startsWith(content)).toBe(true);
      expect(content.startsWith('synced|')).toBe(true);
      if (content === 'synced|') sawNone = true;
      if (content.length > 7 && content.length < 19 && content.length !== 13) sawPartial = true;
    }
    expect(sawNone).toBe(true);
    expect(sawPartial).toBe(true);
  });
});

describe('SimulatedFileSystem directory durability', () => {
  it('loses creates, unlinks, renames and mkdirs that no directory sync followed, keeps those it did', async () => {
    const fs = new SimulatedFileSystem();
    await mkdirDurable(fs, '/p/q');
    const synced = await fs.open('/p/q/synced');
    await synced.write(Buffer.from('s'), 0);
    await synced.sync();
    await fs.writeFileAtomic('/p/q/cp', Buffer.from('1'));
    // From here on nothing syncs /p/q.
    const fresh = await fs.open('/p/q/fresh');
    await fresh.write(Buffer.from('f'), 0);
    await fresh.sync();
    await fs.rename('/p/q/cp', '/p/q/cp2');
    await fs.unlink('/p/q/synced');
    await fs.mkdir('/p/q/sub');
    fs.crashLosingAllUnsynced();
    expect(await fs.readdir('/p/q')).toEqual(['cp', 'synced']);
    expect((await fs.readFile('/p/q/synced'))?.toString()).toBe('s');
    expect((await fs.readFile('/p/q/cp'))?.toString()).toBe('1');
    // The same changes followed by a sync of the directory survive.
    const again = await fs.open('/p/q/fresh');
    await again.sync();
    await fs.unlink('/p/q/synced');
    await fs.syncDir('/p/q');
    fs.crash(new SeededRandom(1));
    expect(await fs.readdir('/p/q')).toEqual(['cp', 'fresh']);
  });

  it('the removal of a directory reverts unless its parent was synced', async () => {
    const fs = new SimulatedFileSystem();
    await mkdirDurable(fs, '/data/t-0');
    await fs.writeFileAtomic('/data/t-0/cp', Buffer.from('1'));
    await fs.removeDir('/data/t-0');
    expect(fs.afterPowerLoss().dirs.has('/data/t-0')).toBe(true);
    await fs.syncDir('/data');
    const after = fs.afterPowerLoss();
    expect([after.dirs.has('/data/t-0'), await after.exists('/data/t-0/cp')]).toEqual([false, false]);
  });
});
