import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** h2load, the native load generator of every HTTP benchmark here (Debian's nghttp2-client). */

/** Installs nghttp2-client when h2load is missing and this runs as root; else says what to run. */
export function ensureH2load(): void {
  if (spawnSync('h2load', ['--version'], { stdio: 'ignore' }).status === 0) return;
  if (process.getuid?.() !== 0) throw new Error('h2load is missing: sudo apt-get install -y nghttp2-client');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'nghttp2-client'], {
    stdio: 'inherit',
    env,
  });
}

export interface H2loadStep {
  path: string;
  /** A file whose bytes are each request's body (POST); GET when absent. */
  body?: string;
  /** The body's Content-Type (default msgpack). */
  contentType?: string;
  /** More request headers, `name: value`. */
  headers?: readonly string[];
  h1: boolean;
  clients: number;
  /** Requests in flight per client (h2load -m): concurrent streams over h2c; 1 over HTTP/1.1. */
  streams?: number;
  seconds: number;
}

export interface Figure {
  requestsPerSecond: number;
  meanMs: number;
  /** Requests h2load counts as failed: errored, timed out, or answered with a status of 400 or more. */
  failed: number;
  /** Requests that got no answer (connection errors) and that timed out. */
  errored: number;
  timedOut: number;
  /** Answers by status class, as h2load counts them. */
  status: { '2xx': number; '3xx': number; '4xx': number; '5xx': number };
}

/** h2load's arguments for `step` (msgpack in and out), with `extra` before the URL. */
function h2loadArgs(url: string, step: H2loadStep, extra: string[]): string[] {
  const args = [
    '-D',
    String(step.seconds),
    '--warm-up-time=1',
    '-c',
    String(step.clients),
    '-m',
    String(step.h1 ? 1 : (step.streams ?? 1)),
    ...extra,
    '-H',
    `content-type: ${step.contentType ?? 'application/vnd.msgpack'}`,
    '-H',
    'accept: application/vnd.msgpack',
  ];
  for (const header of step.headers ?? []) args.push('-H', header);
  if (step.h1) args.push('--h1');
  if (step.body) args.push('-d', step.body);
  args.push(url + step.path);
  return args;
}

/** One timed h2load run against `url` + `step.path`, msgpack in and out; the figures h2load prints. */
export function h2load(url: string, step: H2loadStep): Figure {
  const args = h2loadArgs(url, step, []);
  const out = execFileSync('h2load', args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  const rps = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  const failed =
    /requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      out,
    );
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const mean = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out);
  if (!rps || !failed || !codes || !mean) throw new Error(`unexpected h2load output:\n${out}`);
  const meanText = mean[1]!;
  const meanMs = meanText.endsWith('us')
    ? Number.parseFloat(meanText) / 1000
    : meanText.endsWith('ms')
      ? Number.parseFloat(meanText)
      : Number.parseFloat(meanText) * 1000;
  return {
    requestsPerSecond: Number(rps[1]),
    meanMs,
    failed: Number(failed[1]),
    errored: Number(failed[2]),
    timedOut: Number(failed[3]),
    status: {
      '2xx': Number(codes[1]),
      '3xx': Number(codes[2]),
      '4xx': Number(codes[3]),
      '5xx': Number(codes[4]),
    },
  };
}

/** The median of the rounds' figures: the interleaved rounds' middle, robust to one noisy round. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface Latencies {
  requests: number;
  failed: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * An open-loop run at a fixed rate (`rps` requests per second per client, h2load `--rps`), with
 * each request's time from h2load's `--log-file`: the percentiles of what a steady producer sees,
 * not of a saturated one.
 */
export function h2loadAtRate(url: string, step: H2loadStep & { rps: number; logFile: string }): Latencies {
  const args = h2loadArgs(url, step, [`--rps=${step.rps}`, `--log-file=${step.logFile}`]);
  execFileSync('h2load', args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  const rows = readFileSync(step.logFile, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => line.split('\t'));
  const times = rows
    .filter((r) => r[1] === '200')
    .map((r) => Number(r[2]) / 1000)
    .sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? Number.NaN;
  return { requests: rows.length, failed: rows.length - times.length, p50Ms: at(0.5), p99Ms: at(0.99) };
}
