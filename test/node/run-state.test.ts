import { describe, expect, it } from 'vitest';
import { beginRun, endRunCleanly, machineBootId, RUN_STATE_FILE } from '../../src/node/run-state.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';

/**
 * How a broker tells the controller its last run ended (the unclean-restart rule's input): by a
 * run-state file written durably before it registers and again after every log closed, and the
 * machine's boot id, which tells a process crash (the page cache kept every write) from a machine
 * going down (unsynced writes may be gone).
 */
const DIR = '/data';

async function disk(): Promise<SimulatedFileSystem> {
  const fs = new SimulatedFileSystem();
  await fs.mkdir(DIR);
  await fs.syncDir('/');
  return fs;
}

describe('run state', () => {
  it('a data directory with neither run state nor identity is new', async () => {
    expect(await beginRun(DIR, await disk(), 'boot-a')).toBe('new');
  });

  it('a run that closed cleanly is clean, on any boot', async () => {
    const fs = await disk();
    await beginRun(DIR, fs, 'boot-a');
    await endRunCleanly(DIR, fs, 'boot-a');
    expect(await beginRun(DIR, fs, 'boot-b')).toBe('clean');
  });

  it('a process that stopped without closing, on the same boot, is clean (the page cache survived)', async () => {
    const fs = await disk();
    await beginRun(DIR, fs, 'boot-a');
    expect(await beginRun(DIR, fs, 'boot-a')).toBe('clean');
  });

  it('a run that did not close, on another boot or with no boot id known, is unclean', async () => {
    const fs = await disk();
    await beginRun(DIR, fs, 'boot-a');
    expect(await beginRun(DIR, fs, 'boot-b')).toBe('unclean');
    expect(await beginRun(DIR, fs, null)).toBe('unclean');
    expect(await beginRun(DIR, fs, null)).toBe('unclean');
  });

  it('the begun state survives a power loss: a crash right after it counts as unclean', async () => {
    const fs = await disk();
    await beginRun(DIR, fs, 'boot-a');
    await endRunCleanly(DIR, fs, 'boot-a');
    await beginRun(DIR, fs, 'boot-a');
    fs.crashLosingAllUnsynced();
    expect(await beginRun(DIR, fs, 'boot-b')).toBe('unclean');
  });

  it('a directory of a release without run state (an identity, no file) is unclean', async () => {
    const fs = await disk();
    await fs.mkdir(`${DIR}/__cluster`);
    await fs.writeFileAtomic(`${DIR}/__cluster/node.json`, Buffer.from('{"clusterId":"c","nodeId":1}'));
    expect(await beginRun(DIR, fs, 'boot-a')).toBe('unclean');
  });

  it('a damaged run-state file is a storage error, not a guess', async () => {
    const fs = await disk();
    await fs.writeFileAtomic(`${DIR}/${RUN_STATE_FILE}`, Buffer.from('{"clean":"yes"}'));
    await expect(beginRun(DIR, fs, 'boot-a')).rejects.toMatchObject({ code: 'KAFKA_STORAGE_ERROR' });
  });

  it('the boot id: SLUICE_BOOT_ID when set, else the kernel one (or null)', () => {
    expect(machineBootId({ SLUICE_BOOT_ID: 'x' })).toBe('x');
    const real = machineBootId({});
    expect(real === null || /^[0-9a-f-]{36}$/.test(real)).toBe(true);
  });
});
