import { type ChildProcess, execSync, spawn } from 'node:child_process';
import { join } from 'node:path';

/** The benchmarks' child processes and the machine's load, each row of bench/RESULTS.md names it. */

/** `uptime`'s load averages (1, 5 and 15 minutes), as it prints them. */
export function loadAverage(): string {
  return execSync('uptime', { encoding: 'utf8' })
    .replace(/.*load average: /, '')
    .trim();
}

/** Starts a process in `cwd` and keeps it in `children` until it exits (for the stop at the end). */
export function spawnTracked(
  children: Set<ChildProcess>,
  cwd: string,
  command: string,
  args: string[],
  stdout: 'ignore' | 'pipe' = 'ignore',
): ChildProcess {
  const child = spawn(command, args, { cwd, stdio: ['ignore', stdout, 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Sends `signal` and waits for the exit; nothing for a process that has exited already. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

/** The arguments after `node` that start a Sluice node of the tree at `root` (more may follow). */
export function sluiceStart(
  root: string,
  port: number | string,
  dataDir: string,
  logLevel = 'warn',
): string[] {
  return [
    join(root, 'bin', 'sluice.js'),
    'start',
    '--port',
    String(port),
    '--data-dir',
    dataDir,
    '--log-level',
    logLevel,
  ];
}
