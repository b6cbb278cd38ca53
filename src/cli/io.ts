import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { stringify as toYaml } from 'yaml';
import { Admin } from '../client/admin.js';
import { checkBaseUrl } from '../client/connection.js';

export const DEFAULT_BOOTSTRAP = 'http://127.0.0.1:8092';
/** The variable that gives the node to talk to when `--bootstrap` does not. */
export const BOOTSTRAP_ENV = 'SLUICE_BOOTSTRAP';
/** The variable that names the profile of the config file to use when `--profile` does not. */
export const PROFILE_ENV = 'SLUICE_PROFILE';

/**
 * No default here: the value is resolved before each action (`resolveBootstrap`), from the flag
 * (before or after the subcommand), then SLUICE_BOOTSTRAP, then the profile file, then the default.
 */
export const BOOTSTRAP_OPTION = [
  '--bootstrap <url>',
  `a Sluice node, http:// or https:// (default: $${BOOTSTRAP_ENV}, else the profile file's, else ${DEFAULT_BOOTSTRAP})`,
] as const;

/** What the command reads and writes; the process's own unless a test passes others. */
export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream;
  /** The environment `SLUICE_*` settings (and HOME, XDG_CONFIG_HOME) are read from; `process.env` when absent. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** A mistake in the command line: one line on standard error, exit code 2. */
export class UsageError extends Error {}

/** Ends the command with this exit code and nothing more on standard error (its output said why). */
export class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** The exit code of a command interrupted by Ctrl-C (128 + SIGINT), as shells report it. */
export const EXIT_INTERRUPTED = 130;

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

export type OutputFormat = 'table' | 'json' | 'yaml';

/** `-o table|json|yaml` (`text` is `table`), checked before any connection is made. */
export function outputFormat(value: string): OutputFormat {
  if (value === 'text') return 'table';
  if (value !== 'table' && value !== 'json' && value !== 'yaml')
    throw new InvalidArgumentError(`--output must be table, json or yaml, got ${value}`);
  return value;
}

export const OUTPUT_OPTION = [
  '-o, --output <format>',
  'table (for people, the default), json or yaml (for scripts: the fields of docs/cli.md)',
  outputFormat,
  'table' as OutputFormat,
] as const;

/**
 * Prints `data` as JSON or YAML (the same fields, documented in docs/cli.md), or as the lines
 * `table` makes of it for people.
 */
export function render<T>(
  io: Io,
  format: OutputFormat,
  data: T,
  table: (data: T) => readonly string[],
): void {
  if (format === 'json') print(io, JSON.stringify(data, null, 2));
  else if (format === 'yaml') io.stdout.write(toYaml(data));
  else for (const line of table(data)) print(io, line);
}

/** Rows padded into columns two spaces apart, the first row the header. */
export function table(rows: readonly (readonly string[])[]): string[] {
  if (rows.length === 0) return [];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  return rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd(),
  );
}

/** The client settings a profile of the config file gives; more (TLS, a token) take the same route later. */
export interface Profile {
  bootstrap?: string;
}

/**
 * `$XDG_CONFIG_HOME/sluice/config.json`, else `~/.config/sluice/config.json`: the client settings
 * for people who talk to one cluster most of the time.
 */
export function profilePath(env: Readonly<Record<string, string | undefined>>): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'sluice', 'config.json');
}

const PROFILE_KEYS = new Set(['bootstrap']);
const FILE_KEYS = new Set(['bootstrap', 'profile', 'profiles']);

/**
 * The profile to use from the config file: `{"bootstrap": ..., "profile": "prod", "profiles":
 * {"prod": {"bootstrap": ...}}}`. The top level is the default profile; `name` (or the file's
 * `profile`) picks one of `profiles` over it. No file: no settings. A file that cannot be read as
 * this shape is refused with its path, so that a typo is not silently ignored.
 */
export function loadProfile(path: string, name: string | undefined): Profile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      if (name !== undefined) throw new UsageError(`profile ${name}: there is no ${path}`);
      return {};
    }
    throw new UsageError(`${path}: ${(error as Error).message}`);
  }
  const bad = (what: string) => new UsageError(`${path}: ${what}`);
  let file: unknown;
  try {
    file = JSON.parse(text);
  } catch (error) {
    throw bad(`not JSON (${(error as Error).message})`);
  }
  if (typeof file !== 'object' || file === null || Array.isArray(file)) throw bad('must be a JSON object');
  const top = file as Record<string, unknown>;
  for (const key of Object.keys(top))
    if (!FILE_KEYS.has(key))
      throw bad(`unknown setting ${JSON.stringify(key)} (known: ${[...FILE_KEYS].join(', ')})`);
  const checked = (where: string, value: unknown): Profile => {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw bad(`${where} must be an object`);
    const profile = value as Record<string, unknown>;
    for (const key of Object.keys(profile))
      if (!PROFILE_KEYS.has(key) && where !== 'the top level')
        throw bad(
          `${where}: unknown setting ${JSON.stringify(key)} (known: ${[...PROFILE_KEYS].join(', ')})`,
        );
    if (profile.bootstrap !== undefined && typeof profile.bootstrap !== 'string')
      throw bad(`${where}: bootstrap must be a URL string`);
    return profile.bootstrap === undefined ? {} : { bootstrap: profile.bootstrap as string };
  };
  const defaults = checked('the top level', top);
  const chosen = name ?? (typeof top.profile === 'string' ? top.profile : undefined);
  if (top.profile !== undefined && typeof top.profile !== 'string') throw bad('profile must be a name');
  if (chosen === undefined) return defaults;
  const profiles = (top.profiles ?? {}) as Record<string, unknown>;
  if (typeof profiles !== 'object' || Array.isArray(profiles)) throw bad('profiles must be an object');
  if (!Object.hasOwn(profiles, chosen))
    throw bad(
      `no profile ${JSON.stringify(chosen)} (profiles: ${Object.keys(profiles).join(', ') || 'none'})`,
    );
  return { ...defaults, ...checked(`profiles.${chosen}`, profiles[chosen]) };
}

/**
 * The node a command talks to: `--bootstrap`, else SLUICE_BOOTSTRAP, else the profile's, else
 * the default; checked to be an http:// or https:// address, so that a typo is one usage line and
 * not a connection error.
 */
export function resolveBootstrap(
  flag: string | undefined,
  profileName: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  let url: string;
  let from: string;
  if (flag !== undefined) [url, from] = [flag, '--bootstrap'];
  else if (env[BOOTSTRAP_ENV]) [url, from] = [env[BOOTSTRAP_ENV], BOOTSTRAP_ENV];
  else {
    const path = profilePath(env);
    const profile = loadProfile(path, profileName ?? (env[PROFILE_ENV] || undefined));
    if (profile.bootstrap !== undefined) [url, from] = [profile.bootstrap, path];
    else [url, from] = [DEFAULT_BOOTSTRAP, 'the default'];
  }
  try {
    checkBaseUrl(url);
  } catch (error) {
    throw new UsageError(`${from}: ${(error as Error).message}`);
  }
  return url;
}

/** Runs `work` with an Admin client for `bootstrap`, closed afterwards whatever happens. */
export async function withAdmin<T>(bootstrap: string, work: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = new Admin({ bootstrap });
  try {
    return await work(admin);
  } finally {
    await admin.close();
  }
}

/** A mistake in the arguments found after commander parsed them: the same as commander's own. */
export function usage(message: string): UsageError {
  return new UsageError(message);
}

/**
 * A line on standard error that counts records as they go, rewritten in place at most once per
 * `intervalMs`, only when standard error is a terminal (a pipe or a file gets the final summary
 * alone). `done()` clears it.
 */
export class Progress {
  #lastMs: number;
  readonly #startMs: number;
  #shown = false;

  constructor(
    private readonly stream: Io['stderr'],
    private readonly label: string,
    private readonly nowMs: () => number,
    private readonly intervalMs: number,
  ) {
    this.#startMs = nowMs();
    this.#lastMs = this.#startMs;
  }

  get active(): boolean {
    return this.stream.isTTY === true;
  }

  update(count: number): void {
    if (!this.active) return;
    const now = this.nowMs();
    if (now - this.#lastMs < this.intervalMs) return;
    this.#lastMs = now;
    const seconds = Math.max((now - this.#startMs) / 1000, 0.001);
    this.stream.write(`\r\x1b[K${this.label} ${count} record(s), ${Math.round(count / seconds)}/s`);
    this.#shown = true;
  }

  done(): void {
    if (this.#shown) this.stream.write('\r\x1b[K');
    this.#shown = false;
  }
}
