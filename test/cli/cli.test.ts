import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The `sluice` command as a user runs it: `node bin/sluice.js` (built by `npm test` before vitest).
 * A broker started with `sluice start`, then topic, produce and consume commands against it.
 */
const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'sluice.js');
let dataDir: string;
let broker: ReturnType<typeof spawn>;
let bootstrap: string;

async function sluice(
  args: string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

beforeAll(async () => {
  await run('npm', ['run', '--silent', 'build'], { cwd: ROOT });
  dataDir = await mkdtemp(join(tmpdir(), 'sluice-cli-'));
  broker = spawn(process.execPath, [BIN, 'start', '--port', '0', '--data-dir', dataDir], { cwd: ROOT });
  bootstrap = await new Promise<string>((resolve, reject) => {
    let out = '';
    broker.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[0-9.:]+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    broker.once('exit', (code) => reject(new Error(`sluice start exited with ${code}`)));
  });
  // Listening is not ready: until it has caught up with its metadata the node refuses the public
  // API with LEADER_NOT_AVAILABLE, which the CLI reports rather than retries.
  for (let ready = false; !ready; ) {
    ready = (await fetch(`${bootstrap}/readyz`).catch(() => undefined))?.status === 200;
    if (!ready) await new Promise((r) => setTimeout(r, 50));
  }
  // The build (tsc, then the console's assets copied) takes ~30 s on an idle 2-core machine and
  // passed 60 s in a full run beside other work (load average 17): time enough for that.
}, 180_000);

afterAll(async () => {
  broker.kill('SIGTERM');
  await new Promise((r) => broker.once('exit', r));
  await rm(dataDir, { recursive: true, force: true });
});

describe('sluice CLI', () => {
  it('creates, describes, alters and lists topics', async () => {
    expect(
      (await sluice(['topic', 'create', 'cli-t', '--partitions', '2', '--bootstrap', bootstrap])).stdout,
    ).toContain('created topic cli-t with 2 partition(s)');
    const described = await sluice(['topic', 'describe', 'cli-t', '--bootstrap', bootstrap]);
    expect(described.stdout).toMatch(/^1 +1 +1 +1 +0 +0 +0$/m);
    expect(
      (
        await sluice([
          'topic',
          'alter',
          'cli-t',
          '-c',
          'retention.ms=60000',
          '-p',
          '3',
          '--bootstrap',
          bootstrap,
        ])
      ).code,
    ).toBe(0);
    expect((await sluice(['topic', 'list', '--bootstrap', bootstrap])).stdout).toMatch(/^cli-t +3 +1$/m);
  });

  it('produces lines from stdin and consumes them back with keys and offsets', async () => {
    await sluice(['topic', 'create', 'cli-lines', '--bootstrap', bootstrap]);
    const produced = await sluice(
      ['produce', 'cli-lines', '--key-separator', '=', '--bootstrap', bootstrap],
      'k1=first\nk2=second\nthird\n',
    );
    expect(produced.code).toBe(0);
    expect(produced.stderr).toContain('produced 3 record(s)');
    const consumed = await sluice([
      'consume',
      'cli-lines',
      '--from-beginning',
      '--print-key',
      '--print-offset',
      '--bootstrap',
      bootstrap,
    ]);
    expect(consumed.stdout).toBe('0:0\tk1\tfirst\n0:1\tk2\tsecond\n0:2\t\tthird\n');
    const limited = await sluice([
      'consume',
      'cli-lines',
      '--offset',
      '1',
      '-n',
      '1',
      '--bootstrap',
      bootstrap,
    ]);
    expect(limited.stdout).toBe('second\n');
  });

  it('ends consume --follow with exit code 130 on Ctrl-C, as a shell reports an interrupted command', async () => {
    await sluice(['topic', 'create', 'cli-follow', '--bootstrap', bootstrap]);
    await sluice(['produce', 'cli-follow', '--bootstrap', bootstrap], 'one\n');
    const child = spawn(
      process.execPath,
      [BIN, 'consume', 'cli-follow', '--follow', '--from-beginning', '--bootstrap', bootstrap],
      { cwd: ROOT },
    );
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout === 'one\n') child.kill('SIGINT');
    });
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect([code, stdout]).toEqual([130, 'one\n']);
  });

  it('produces more lines than it lets wait for an answer, every one exactly once', async () => {
    await sluice(['topic', 'create', 'cli-many', '-p', '2', '--bootstrap', bootstrap]);
    const lines = Array.from({ length: 25_000 }, (_, i) => `k${i % 13}:line ${i}`);
    const produced = await sluice(
      [
        'produce',
        'cli-many',
        '--key-separator',
        ':',
        '--acks',
        '1',
        '--compression',
        'lz4',
        '--bootstrap',
        bootstrap,
      ],
      `${lines.join('\n')}\n`,
    );
    expect(produced.stderr).toBe('produced 25000 record(s) to cli-many\n');
    const consumed = await sluice(['consume', 'cli-many', '--from-beginning', '--bootstrap', bootstrap]);
    const values = consumed.stdout.trimEnd().split('\n');
    expect(values.sort()).toEqual(lines.map((l) => l.slice(l.indexOf(':') + 1)).sort());
  });

  it('describes the cluster: the node, the controller and the metadata quorum, in text and as JSON', async () => {
    const port = new URL(bootstrap).port;
    const text = await sluice(['cluster', 'describe', '--bootstrap', bootstrap]);
    expect(text.code, text.stderr).toBe(0);
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^cluster \S+ {2}answered by node 1 \(sluice \d+\.\d+\.\d+\)$/);
    expect(lines[1]).toMatch(/^NODE +ADDRESS +RACK +FENCED +BROKER EPOCH +CONTROLLER +ROLES$/);
    expect(lines[2]).toMatch(new RegExp(`^1 +127\\.0\\.0\\.1:${port} +- +no +\\d+ +yes +controller,broker$`));
    expect(lines[3]).toMatch(
      /^metadata quorum \(as node 1 sees it\) {2}role=leader {2}term=\d+ {2}commitIndex=\d+ {2}appliedIndex=\d+ {2}voters=1$/,
    );
    expect(lines).toHaveLength(4);
    const json = await sluice(['cluster', 'describe', '-o', 'json', '--bootstrap', bootstrap]);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      nodeId: 1,
      controllerId: 1,
      nodes: [
        { id: 1, host: '127.0.0.1', port: Number(port), fenced: false, roles: ['controller', 'broker'] },
      ],
      metadata: { role: 'leader', voters: [1] },
    });
    const refused = await sluice(['cluster', 'describe', '--bootstrap', 'http://127.0.0.1:1']);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringMatching(/^sluice: cannot connect to /) });
  });

  it('serves the web console from the built package: the page and its modules, copied by the build', async () => {
    const page = await fetch(`${bootstrap}/console`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await page.text()).toContain('/console/assets/app.js');
    for (const name of ['app.js', 'format.js', 'view-records.js', 'console.css']) {
      const asset = await fetch(`${bootstrap}/console/assets/${name}`);
      expect(asset.status, name).toBe(200);
    }
  });

  it('gives --help on every command and one-line errors with a code, never a stack trace', async () => {
    const commands = [
      [],
      ['start'],
      ['dev-cluster'],
      ['cluster'],
      ['cluster', 'describe'],
      ['topic'],
      ['topic', 'create'],
      ['produce'],
      ['consume'],
    ];
    // All at once: each is a process start, slow one after another on a loaded machine.
    const helps = await Promise.all(commands.map((command) => sluice([...command, '--help'])));
    helps.forEach((help, i) => {
      expect(help.code, commands[i]!.join(' ')).toBe(0);
      expect(help.stdout).toContain('Usage: sluice');
    });
    const exists = await sluice(['topic', 'create', 'cli-lines', '--bootstrap', bootstrap]);
    expect(exists.code).toBe(1);
    expect(exists.stderr).toBe('sluice: topic cli-lines already exists (TOPIC_ALREADY_EXISTS)\n');
    const refused = await sluice(['topic', 'list', '--bootstrap', 'http://127.0.0.1:1']);
    expect(refused).toMatchObject({
      code: 1,
      stderr: 'sluice: cannot connect to http://127.0.0.1:1 (connection refused)\n',
    });
    const badArg = await sluice(['topic', 'create', 'x', '--partitions', 'many']);
    expect(badArg.code).toBe(2);
    expect(badArg.stderr).toContain('partitions must be an integer');
    expect(badArg.stderr).not.toContain('    at ');
  }, 90_000);
});
