import { execFile, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { type CliDependencies, main } from '../../src/cli/main.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';

/**
 * The CLI as a new user meets it, run in-process against one node: where the address comes from
 * (flag anywhere, SLUICE_BOOTSTRAP, the profile file), machine output with stable field names,
 * `sluice offsets`, exit codes (Ctrl-C included), progress lines on a terminal, completion scripts
 * and help texts. HOME and XDG_CONFIG_HOME point at a temporary directory, never the user's.
 */
let dir: string;
let home: string;
let node: SluiceNode;
let bootstrap: string;
const T0 = Date.now();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-cli-ux-'));
  home = join(dir, 'home');
  await mkdir(home);
  node = await startNode({ dataDir: join(dir, 'data'), port: 0, logLevel: 'silent' });
  bootstrap = `http://127.0.0.1:${node.address.port}`;
  const post = (path: string, body: unknown) =>
    fetch(`${bootstrap}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  await post('/v1/topics', { name: 'ux', partitions: 2 });
  await post('/v1/topics/ux/partitions/0/records', {
    records: [
      { key: 'k1', value: 'a', timestamp: T0 - 60_000, headers: { trace: 'x' } },
      { key: null, value: '{"n":2}', timestamp: T0 },
    ],
  });
  await post('/v1/topics/ux/partitions/1/records', { records: [{ value: 'b', timestamp: T0 - 30_000 }] });
});
afterAll(async () => {
  await node.close();
  await rm(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `sluice args` in-process with HOME in the temporary directory and no SLUICE_* variable. */
async function sluice(
  args: string[],
  options: {
    env?: Record<string, string>;
    stdin?: PassThrough;
    tty?: boolean;
    dependencies?: Partial<CliDependencies>;
    onStdout?: (soFar: string) => void;
  } = {},
): Promise<Run> {
  const stdout = new PassThrough();
  const stderr = Object.assign(new PassThrough(), { isTTY: options.tty === true });
  const stdin = options.stdin ?? new PassThrough();
  if (!options.stdin) stdin.end();
  let out = '';
  let err = '';
  stdout.on('data', (d) => {
    out += d;
    options.onStdout?.(out);
  });
  stderr.on('data', (d) => {
    err += d;
  });
  const env = { HOME: home, ...options.env };
  const code = await main(args, { stdout, stderr, stdin, env }, options.dependencies);
  return { code, stdout: out, stderr: err };
}

async function profile(content: unknown, where = join(home, '.config')): Promise<void> {
  await mkdir(join(where, 'sluice'), { recursive: true });
  await writeFile(
    join(where, 'sluice', 'config.json'),
    typeof content === 'string' ? content : JSON.stringify(content),
  );
}

describe('where the CLI finds the node', () => {
  it('takes --bootstrap before the subcommand or after it', async () => {
    for (const args of [
      ['--bootstrap', bootstrap, 'topic', 'list', '-o', 'json'],
      ['topic', '--bootstrap', bootstrap, 'list', '-o', 'json'],
      ['topic', 'list', '-o', 'json', `--bootstrap=${bootstrap}`],
    ]) {
      const run = await sluice(args);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(0);
      expect(JSON.parse(run.stdout).map((t: { name: string }) => t.name)).toContain('ux');
    }
  });

  it('then SLUICE_BOOTSTRAP, then the profile file, then the default; the flag wins over all', async () => {
    const dead = 'http://127.0.0.1:1';
    await profile({ bootstrap: dead, profiles: { here: { bootstrap } } });
    // The file's top level: the dead address.
    const fromFile = await sluice(['topic', 'list']);
    expect(fromFile).toMatchObject({
      code: 1,
      stderr: `sluice: cannot connect to ${dead} (connection refused)\n`,
    });
    // A profile chosen by flag or variable.
    expect((await sluice(['--profile', 'here', 'topic', 'list'])).code).toBe(0);
    expect((await sluice(['topic', 'list'], { env: { SLUICE_PROFILE: 'here' } })).code).toBe(0);
    // The variable over the file, the flag over the variable.
    expect((await sluice(['topic', 'list'], { env: { SLUICE_BOOTSTRAP: bootstrap } })).code).toBe(0);
    const flagWins = await sluice(['topic', 'list', '--bootstrap', dead], {
      env: { SLUICE_BOOTSTRAP: bootstrap },
    });
    expect(flagWins.code).toBe(1);
    // XDG_CONFIG_HOME moves the file.
    const xdg = join(dir, 'xdg');
    await profile({ bootstrap }, xdg);
    expect((await sluice(['topic', 'list'], { env: { XDG_CONFIG_HOME: xdg } })).code).toBe(0);
    // No file at all: the default address.
    await rm(join(home, '.config'), { recursive: true });
    const none = await sluice(['topic', 'list']);
    expect(none.stderr).toBe('sluice: cannot connect to http://127.0.0.1:8092 (connection refused)\n');
  });

  it('refuses a broken profile file, an unknown profile and a bad address in it with one usage line', async () => {
    const file = join(home, '.config', 'sluice', 'config.json');
    for (const [content, message] of [
      ['{not json', `${file}: not JSON`],
      [{ bootstrp: bootstrap }, `${file}: unknown setting "bootstrp"`],
      [{ bootstrap: 8092 }, `${file}: the top level: bootstrap must be a URL string`],
      [{ bootstrap: 'localhost' }, `${file}: "localhost" is not a URL`],
      [{ profile: 'gone', profiles: {} }, `${file}: no profile "gone"`],
    ] as const) {
      await profile(content);
      const run = await sluice(['topic', 'list']);
      expect(run.code, JSON.stringify(content)).toBe(2);
      expect(run.stderr, JSON.stringify(content)).toMatch(/^sluice: [^\n]+ \(see --help\)\n$/);
      expect(run.stderr).toContain(message);
    }
    // Commands that talk to no node never read it.
    expect((await sluice(['completion', 'bash'])).code).toBe(0);
    await rm(join(home, '.config'), { recursive: true });
  });
});

describe('machine output', () => {
  const b = () => ['--bootstrap', bootstrap];

  it('prints the same fields as JSON and YAML, and an aligned table for people', async () => {
    const json = JSON.parse((await sluice(['topic', 'list', '-o', 'json', ...b()])).stdout);
    const yaml = parseYaml((await sluice(['topic', 'list', '-o', 'yaml', ...b()])).stdout);
    expect(yaml).toEqual(json);
    expect(json.find((t: { name: string }) => t.name === 'ux')).toEqual({
      name: 'ux',
      partitions: 2,
      replicationFactor: 1,
    });
    const table = (await sluice(['topic', 'list', ...b()])).stdout.trimEnd().split('\n');
    expect(table[0]).toMatch(/^TOPIC +PARTITIONS +REPLICATION$/);
    const columns = table[0]!.indexOf('PARTITIONS');
    for (const row of table.slice(1)) expect(row[columns - 1]).toBe(' ');
    expect(table).toContainEqual(expect.stringMatching(/^ux +2 +1$/));
  });

  it('topic describe: the description’s fields, and one aligned row per partition', async () => {
    const d = JSON.parse((await sluice(['topic', 'describe', 'ux', '-o', 'json', ...b()])).stdout);
    expect(Object.keys(d).sort()).toEqual(['configs', 'name', 'partitions', 'replicationFactor']);
    expect(d.partitions[0]).toMatchObject({
      partition: 0,
      leader: 1,
      replicas: [1],
      isr: [1],
      logStartOffset: 0,
      logEndOffset: 2,
      highWatermark: 2,
    });
    const text = (await sluice(['topic', 'describe', 'ux', ...b()])).stdout.split('\n');
    expect(text[0]).toBe('topic ux  partitions=2  replication=1');
    expect(text[1]).toMatch(/^PARTITION +LEADER +REPLICAS +ISR +START +END +HW$/);
    expect(text[2]).toMatch(/^0 +1 +1 +1 +0 +2 +2$/);
    expect(text[3]).toMatch(/^1 +1 +1 +1 +0 +1 +1$/);
  });

  it('topic create and delete print what the node answered', async () => {
    const created = JSON.parse(
      (await sluice(['topic', 'create', 'ux-made', '-p', '3', '-o', 'json', ...b()])).stdout,
    );
    expect([created.name, created.partitions.length]).toEqual(['ux-made', 3]);
    const deleted = parseYaml((await sluice(['topic', 'delete', 'ux-made', '-o', 'yaml', ...b()])).stdout);
    expect(deleted).toEqual({ name: 'ux-made', deleted: true });
  });

  it('sluice offsets: earliest, latest and high watermark per partition, and the offset at a time', async () => {
    const all = JSON.parse((await sluice(['offsets', 'ux', '-o', 'json', ...b()])).stdout);
    expect(all).toEqual({
      topic: 'ux',
      partitions: [
        { partition: 0, earliest: 0, latest: 2, highWatermark: 2 },
        { partition: 1, earliest: 0, latest: 1, highWatermark: 1 },
      ],
    });
    const at = new Date(T0 - 45_000).toISOString();
    const timed = JSON.parse((await sluice(['offsets', 'ux', '--time', at, '-o', 'json', ...b()])).stdout);
    // Partition 0: the first record at or after the time is the second; partition 1's only one.
    expect(timed.partitions.map((p: { offset: number }) => p.offset)).toEqual([1, 0]);
    const late = await sluice(['offsets', 'ux', '--partition', '1', '--time', String(T0 + 60_000), ...b()]);
    expect(late.stdout.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^PARTITION +EARLIEST +LATEST +HW +AT TIME$/),
      expect.stringMatching(/^1 +0 +1 +1 +-$/),
    ]);
    const bad = await sluice(['offsets', 'ux', '--time', 'yesterday', ...b()]);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining('--time must be ISO 8601')]);
  });

  it('cluster health and describe in JSON; consume one JSON object per record', async () => {
    const health = await sluice(['cluster', 'health', '-o', 'json', ...b()]);
    expect(health.code).toBe(0);
    expect(JSON.parse(health.stdout)).toEqual({
      healthy: true,
      brokers: 1,
      controllerId: 1,
      partitions: expect.any(Number),
      underReplicated: 0,
      withoutLeader: 0,
      problems: [],
    });
    const cluster = parseYaml((await sluice(['cluster', 'describe', '-o', 'yaml', ...b()])).stdout);
    expect(cluster).toMatchObject({ nodeId: 1, controllerId: 1 });
    const records = (await sluice(['consume', 'ux', '--partition', '0', '-o', 'json', ...b()])).stdout
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(records).toEqual([
      {
        topic: 'ux',
        partition: 0,
        offset: 0,
        timestamp: T0 - 60_000,
        key: 'k1',
        value: 'a',
        headers: [['trace', 'x']],
      },
      { topic: 'ux', partition: 0, offset: 1, timestamp: T0, key: null, value: '{"n":2}', headers: [] },
    ]);
    const yamlRecords = (await sluice(['consume', 'ux', '--partition', '1', '-o', 'yaml', ...b()])).stdout;
    expect(
      yamlRecords
        .split('---\n')
        .filter(Boolean)
        .map((doc) => parseYaml(doc).value),
    ).toEqual(['b']);
  });
});

describe('exit codes, Ctrl-C and progress', () => {
  const b = () => ['--bootstrap', bootstrap];

  it('consume --follow ends with 130 on SIGINT, after printing what came', async () => {
    const signals = new EventEmitter();
    // Once it has printed the partition's record, the consumer waits in a long poll: then Ctrl-C.
    const running = sluice(['consume', 'ux', '--partition', '1', '--follow', '--from-beginning', ...b()], {
      dependencies: { signals },
      onStdout: (soFar) => {
        if (soFar === 'b\n') setTimeout(() => signals.emit('SIGINT'), 50);
      },
    });
    const run = await running;
    expect([run.code, run.stdout]).toEqual([130, 'b\n']);
    expect(signals.listenerCount('SIGINT')).toBe(0);
  });

  it('produce stops reading on SIGINT, waits for what it sent, and ends with 130', async () => {
    const signals = new EventEmitter();
    const stdin = new PassThrough();
    const running = sluice(['produce', 'ux', '--partition', '1', ...b()], {
      stdin,
      dependencies: { signals },
    });
    stdin.write('c\nd\n');
    // Ctrl-C once both records are in the log (standard input stays open, as a terminal's does).
    for (;;) {
      const answer = await fetch(`${bootstrap}/v1/topics/ux/partitions/1/offsets`, {
        headers: { accept: 'application/json' },
      });
      if (((await answer.json()) as { latest: number }).latest === 3) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    signals.emit('SIGINT');
    const run = await running;
    expect(run.code).toBe(130);
    expect(run.stderr).toBe('produced 2 record(s) to ux\n');
    const end = JSON.parse(
      (await sluice(['offsets', 'ux', '--partition', '1', '-o', 'json', ...b()])).stdout,
    );
    expect(end.partitions[0].latest).toBe(3);
  });

  it('shows a progress line only when standard error is a terminal', async () => {
    let now = 0;
    const dependencies = { nowMs: () => (now += 1000), progressIntervalMs: 1000 };
    const input = () => {
      const stdin = new PassThrough();
      stdin.end('p1\np2\np3\n');
      return stdin;
    };
    await sluice(['topic', 'create', 'ux-progress', ...b()]);
    const shown = await sluice(['produce', 'ux-progress', ...b()], {
      stdin: input(),
      tty: true,
      dependencies,
    });
    expect(shown.code).toBe(0);
    const ERASE = '\r\u001b[K';
    expect(shown.stderr).toMatch(/produced [123] record\(s\), \d+\/s/);
    expect(shown.stderr.startsWith(`${ERASE}produced `)).toBe(true);
    expect(shown.stderr.endsWith(`${ERASE}produced 3 record(s) to ux-progress\n`)).toBe(true);
    const piped = await sluice(['produce', 'ux-progress', ...b()], {
      stdin: input(),
      tty: false,
      dependencies,
    });
    expect(piped.stderr).toBe('produced 3 record(s) to ux-progress\n');
    const consumed = await sluice(['consume', 'ux-progress', ...b()], { tty: true, dependencies });
    expect(consumed.stdout.split('\n').filter(Boolean)).toHaveLength(6);
    expect(consumed.stderr).toMatch(/consumed [1-6] record\(s\)/);
  });
});

describe('completion and help', () => {
  it('bash completes commands, subcommands, options and output formats', async () => {
    const script = (await sluice(['completion', 'bash'])).stdout;
    const file = join(dir, 'sluice.bash');
    await writeFile(file, script);
    const complete = async (words: string[]) => {
      const line = `source ${JSON.stringify(file)}; COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')}); COMP_CWORD=${words.length - 1}; _sluice; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const { stdout } = await promisify(execFile)('bash', ['-c', line]);
      return stdout.split('\n').filter(Boolean);
    };
    expect(await complete(['sluice', 'of'])).toEqual(['offsets']);
    expect(await complete(['sluice', '--bootstrap', 'http://h:1', 'topic', 'de'])).toEqual([
      'describe',
      'delete',
    ]);
    expect(await complete(['sluice', 'topic', 'create', 't', '--rep'])).toEqual(['--replication-factor']);
    expect(await complete(['sluice', 'topic', 'list', '-o', 'y'])).toEqual(['yaml']);
  });

  it('zsh and fish scripts name every command', async () => {
    const zsh = (await sluice(['completion', 'zsh'])).stdout;
    const fish = (await sluice(['completion', 'fish'])).stdout;
    expect(zsh.startsWith('#compdef sluice\n')).toBe(true);
    for (const command of ['start', 'topic', 'produce', 'consume', 'offsets', 'group', 'completion']) {
      expect(zsh).toContain(`" ${command}"`);
      expect(fish).toContain(`-n '__fish_use_subcommand' -a ${command} -d `);
    }
    expect(fish).toContain(
      "complete -c sluice -n '__fish_seen_subcommand_from topic; and not __fish_seen_subcommand_from create list describe alter delete' -a create",
    );
  });

  it('fish completes commands from the script, and zsh loads it as the _sluice function', async (context) => {
    const has = (shell: string) => spawnSync('sh', ['-c', `command -v ${shell}`]).status === 0;
    if (!has('fish') || !has('zsh')) {
      // The global setup installs both where it can (as root); elsewhere this case says so.
      context.skip('zsh or fish is not installed');
      return;
    }
    const fishFile = join(dir, 'sluice.fish');
    await writeFile(fishFile, (await sluice(['completion', 'fish'])).stdout);
    const fish = async (line: string) =>
      (
        await promisify(execFile)('fish', ['-c', `source ${fishFile}; complete -C ${JSON.stringify(line)}`])
      ).stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t')[0]);
    expect(await fish('sluice of')).toEqual(['offsets']);
    expect(await fish('sluice topic cr')).toEqual(['create']);
    const zshFile = join(dir, '_sluice');
    await writeFile(zshFile, (await sluice(['completion', 'zsh'])).stdout);
    await promisify(execFile)('zsh', ['-n', zshFile]);
    const { stdout } = await promisify(execFile)('zsh', [
      '-c',
      `autoload -U compinit && compinit -u -d ${join(dir, 'zcompdump')}; source ${zshFile}; whence -w _sluice`,
    ]);
    expect(stdout.trim()).toBe('_sluice: function');
  });

  it('start --help gives every option a default; consume --help says where it starts', async () => {
    // An option's line, with the lines its description wraps onto.
    const options = (await sluice(['start', '--help'])).stdout
      .replace(/\n {4,}/g, ' ')
      .split('\n')
      .filter((line) => /^ {2}-/.test(line) && !line.includes('--help'));
    expect(options.length).toBeGreaterThan(15);
    for (const line of options) expect(line, line).toMatch(/\(default: [^)]+\)/);
    const consume = (await sluice(['consume', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(consume).toContain('Without --follow it starts at the earliest offset');
    expect(consume).toContain('with --follow it starts at the latest offset');
  });
});
