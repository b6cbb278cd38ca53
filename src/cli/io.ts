import { InvalidArgumentError } from 'commander';
import { Admin } from '../client/admin.js';

const DEFAULT_BOOTSTRAP = 'http://127.0.0.1:8092';

export const BOOTSTRAP_OPTION = ['--bootstrap <url>', 'a Sluice node', DEFAULT_BOOTSTRAP] as const;

/** What the command reads and writes; the process's own unless a test passes others. */
export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  /** The environment `SLUICE_*` settings are read from; `process.env` when absent. */
  env?: Readonly<Record<string, string | undefined>>;
}

export function print(io: Io, line: string): void {
  io.stdout.write(`${line}\n`);
}

/** A commander argument parser for an integer of at least `min` (and at most `max`, when given). */
export function integer(name: string, min = 0, max?: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || n < min || (max !== undefined && n > max))
      throw new InvalidArgumentError(
        max === undefined
          ? `${name} must be an integer >= ${min}`
          : `${name} must be an integer in ${min}..${max}`,
      );
    return n;
  };
}

/** `name=value`, repeatable. */
export function collectConfig(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`--config takes name=value, got ${value}`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

/** `-o text|json`, checked before any connection is made. */
export function outputFormat(value: string): 'text' | 'json' {
  if (value !== 'text' && value !== 'json')
    throw new InvalidArgumentError(`--output must be text or json, got ${value}`);
  return value;
}

/** Runs `work` with an Admin client for `bootstrap`, closed afterwards whatever happens. */
export async function withAdmin<T>(bootstrap: string, work: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = new Admin({ bootstrap });
  try {
    return await work(admin);
  } finally {
    admin.close();
  }
}
