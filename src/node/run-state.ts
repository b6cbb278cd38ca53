import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SluiceError } from '../common/errors.js';
import type { ShutdownKind } from '../metadata/controller.js';
import type { FileSystem } from '../storage/fs.js';

/**
 * How this broker's last run ended, as its data directory tells, for the controller's
 * unclean-restart rule (KIP-966): a broker that may have lost writes it acknowledged must not stay
 * in, or lead from, an in-sync set until it has caught up again.
 *
 * `run-state.json` at the top of the data directory holds `{bootId, clean}`. A start reads it, then
 * writes `clean: false` with the machine's boot id, durably, before the broker registers; a close
 * that closed every log writes `clean: true`. At the next start:
 * - `clean: true`: `clean`.
 * - `clean: false` with the same boot id: the process stopped (a crash, kill -9) but the machine
 *   did not, so the kernel's page cache kept every write the process made: `clean` too.
 * - `clean: false` with another boot id, or none known: the machine went down with the broker, and
 *   writes not yet synced may be gone: `unclean`.
 * - no file, and no node identity either: a new (or replaced) data directory: `new`. A directory
 *   with an identity but no file (written by a release before this one): `unclean`.
 */

export const RUN_STATE_FILE = 'run-state.json';
const IDENTITY_FILE = join('__cluster', 'node.json');

interface RunState {
  bootId: string | null;
  clean: boolean;
}

/**
 * The machine's boot id: `SLUICE_BOOT_ID` when set (tests stand for a reboot with it), else Linux's
 * `/proc/sys/kernel/random/boot_id`; null where neither is there (every unclean stop then counts as
 * a machine's).
 */
export function machineBootId(env: NodeJS.ProcessEnv = process.env): string | null {
  const override = env.SLUICE_BOOT_ID;
  if (override !== undefined && override !== '') return override;
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

async function readRunState(path: string, fs: FileSystem): Promise<RunState | undefined> {
  const data = await fs.readFile(path);
  if (data === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch (error) {
    throw new SluiceError('KAFKA_STORAGE_ERROR', `${path} is not valid JSON`, { cause: error });
  }
  const state = parsed as Partial<RunState> | null;
  if (
    typeof state !== 'object' ||
    state === null ||
    typeof state.clean !== 'boolean' ||
    (state.bootId !== null && typeof state.bootId !== 'string')
  )
    throw new SluiceError('KAFKA_STORAGE_ERROR', `${path} is not a run state {bootId, clean}`);
  return { bootId: state.bootId, clean: state.clean };
}

/**
 * How the last run in `dataDir` ended; records that this one has begun (durably) before it
 * returns, so that a crash from here on is seen at the next start.
 */
export async function beginRun(
  dataDir: string,
  fs: FileSystem,
  bootId: string | null,
): Promise<ShutdownKind> {
  const path = join(dataDir, RUN_STATE_FILE);
  const last = await readRunState(path, fs);
  let kind: ShutdownKind;
  if (last === undefined) kind = (await fs.exists(join(dataDir, IDENTITY_FILE))) ? 'unclean' : 'new';
  else if (last.clean || (bootId !== null && last.bootId === bootId)) kind = 'clean';
  else kind = 'unclean';
  await writeRunState(path, fs, { bootId, clean: false });
  return kind;
}

/** Records a clean end of the run: call only once every log is closed (flushed and synced). */
export async function endRunCleanly(dataDir: string, fs: FileSystem, bootId: string | null): Promise<void> {
  await writeRunState(join(dataDir, RUN_STATE_FILE), fs, { bootId, clean: true });
}

async function writeRunState(path: string, fs: FileSystem, state: RunState): Promise<void> {
  await fs.writeFileAtomic(path, Buffer.from(`${JSON.stringify(state)}\n`));
}
