import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * deploy/sluice.service, checked by scripts/check-systemd-unit.mjs: its structure always (and
 * that every flag and variable it gives `sluice start` exists), and `systemd-analyze verify`
 * where systemd is installed; where it is not, the script says so and the structure is still
 * checked. A broken copy of the unit is refused with its problems named.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const SCRIPT = join(ROOT, 'scripts', 'check-systemd-unit.mjs');
const UNIT = join(ROOT, 'deploy', 'sluice.service');

function check(unit: string, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, unit], { env }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

describe('the systemd unit', () => {
  it('passes the structural check, and systemd-analyze verify where it is installed', async () => {
    const [full, noSystemd] = await Promise.all([
      check(UNIT),
      // PATH without systemd-analyze: the structural check alone, and the reason printed.
      check(UNIT, { ...process.env, PATH: join(ROOT, 'no-such-dir') }),
    ]);
    expect(full.code, full.out).toBe(0);
    expect(full.out).toMatch(/ok \(structure(, systemd-analyze verify)?\)/);
    if (!full.out.includes('systemd-analyze verify)'))
      expect(full.out).toContain('systemd-analyze verify skipped: systemd-analyze is not installed here');
    expect(noSystemd).toEqual({
      code: 0,
      out: `systemd-analyze verify skipped: systemd-analyze is not installed here (ENOENT)\n${UNIT}: ok (structure)\n`,
    });
  }, 30_000);

  it('refuses a unit with a variable sluice does not read, a bad restart policy or no data directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-unit-test-'));
    try {
      const text = await readFile(UNIT, 'utf8');
      const bad = join(dir, 'bad.service');
      await writeFile(
        bad,
        text
          .replace('SLUICE_PORT=8092', 'SLUICE_PROT=8092')
          .replace('Restart=on-failure', 'Restart=no')
          .replace('Environment=SLUICE_DATA_DIR=/var/lib/sluice\n', '')
          .replace(
            'ExecStart=/usr/local/bin/sluice start',
            'ExecStart=/usr/local/bin/sluice start --porrt 1',
          ),
      );
      const result = await check(bad);
      expect(result.code).toBe(1);
      for (const problem of [
        'Environment: sluice start reads no SLUICE_PROT',
        'Restart should bring a crashed node back (on-failure), got no',
        'Environment=SLUICE_DATA_DIR= must name the data directory',
        'ExecStart: sluice start takes no --porrt',
      ])
        expect(result.out).toContain(`${bad}: ${problem}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
