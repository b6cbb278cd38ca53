import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/PID/stat's times (USER_HZ, 100 on most Linux builds). */
const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** CPU seconds (user + system) the process has used so far, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** CPU seconds each process used while `work` ran, by the same keys as `pids`. */
export function cpuDuring<K, T>(
  pids: ReadonlyMap<K, number>,
  work: () => T,
): { result: T; cpu: Map<K, number> } {
  const before = new Map([...pids].map(([k, pid]) => [k, cpuSeconds(pid)]));
  const result = work();
  const cpu = new Map([...pids].map(([k, pid]) => [k, cpuSeconds(pid) - before.get(k)!]));
  return { result, cpu };
}
