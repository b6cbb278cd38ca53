import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DevClusterOptions, runDevCluster } from '../../src/cli/dev-cluster.js';
import { main } from '../../src/cli/main.js';

/**
 * `sluice dev-cluster` manages its nodes as child processes: the right arguments and environment
 * for each, their output prefixed, all of them stopped together on a signal or when one dies, the
 * temporary data directory removed. The nodes here are fakes, tiny scripts that print their
 * arguments and wait for SIGTERM; no real node is started.
 */

/**
 * A node that prints its pid, arguments and environment once it handles its signals, then waits;
 * `behaviour` says what it does at SIGTERM, and `exits-3` exits with code 3 at SIGUSR2.
 */
function fakeNode(behaviour: 'stops' | 'ignores-sigterm' | 'exits-3'): string {
  return `
    process.on('SIGTERM', () => {
      console.log('got SIGTERM');
      if (${JSON.stringify(behaviour)} !== 'ignores-sigterm') setTimeout(() => process.exit(0), 10);
    });
    if (${JSON.stringify(behaviour)} === 'exits-3') process.on('SIGUSR2', () => process.exit(3));
    console.log('args ' + JSON.stringify(process.argv.slice(1)));
    console.error('env ' + JSON.stringify({ pid: process.pid, secret: process.env.SLUICE_CLUSTER_SECRET ?? null, rack: process.env.SLUICE_RACK ?? null, home: process.env.FAKE_HOME ?? null }));
    setInterval(() => {}, 1000);
  `;
}

interface Run {
  /** Everything written to stdout so far. */
  output: () => string;
  signals: EventEmitter;
  done: Promise<void>;
  /** Resolves once `predicate` holds for the output (bounded: 10 s). */
  waitFor: (predicate: (output: string) => boolean) => Promise<void>;
}

/** Starts a dev cluster whose node `id` runs `fakeNode(behaviours[id] ?? 'stops')`. */
function startCluster(
  options: DevClusterOptions,
  behaviours: Record<number, Parameters<typeof fakeNode>[0]> = {},
): Run {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (d) => {
    out += d;
  });
  const signals = new EventEmitter();
  const done = runDevCluster(options, {
    stdout,
    signals,
    env: { FAKE_HOME: '/home/fake', SLUICE_RACK: 'leaks-if-passed', SLUICE_CONTROLLER_QUORUM: '9@x:1' },
    spawnNode: (args, env) => {
      const id = Number(args[args.indexOf('--node-id') + 1]);
      return spawn(process.execPath, ['-e', fakeNode(behaviours[id] ?? 'stops'), ...args], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    },
  });
  // Keep an early rejection from being reported as unhandled before the test awaits it.
  done.catch(() => {});
  const waitFor = async (predicate: (output: string) => boolean) => {
    for (let waitedMs = 0; !predicate(out); waitedMs += 20) {
      if (waitedMs > 10_000) throw new Error(`timed out waiting; output so far:\n${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { output: () => out, signals, done, waitFor };
}

function count(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern, 'g'))?.length ?? 0;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

let parent: string;
beforeAll(async () => {
  parent = await mkdtemp(join(tmpdir(), 'sluice-dev-cluster-test-'));
});
afterAll(async () => {
  await rm(parent, { recursive: true, force: true });
});

describe('sluice dev-cluster', () => {
  it('starts N voters with their own port and data directory, the secret in the environment only, and stops them on SIGINT', async () => {
    const run = startCluster({ nodes: 3, basePort: 0, keep: false });
    await run.waitFor((o) => count(o, /\[node-\d\] args /) === 3 && count(o, /\[node-\d\] env /) === 3);
    const out = run.output();
    const root = /data in (\S+) \(removed on exit\)/.exec(out)![1]!;
    expect(root.startsWith(tmpdir())).toBe(true);
    const ports = [1, 2, 3].map((id) =>
      Number(new RegExp(`node ${id}  http://127\\.0\\.0\\.1:(\\d+)`).exec(out)![1]),
    );
    expect(new Set(ports).size).toBe(3);
    for (const port of ports) expect(port).toBeGreaterThan(0);
    const quorum = ports.map((port, i) => `${i + 1}@127.0.0.1:${port}`).join(',');
    const secrets = new Set<string>();
    for (const id of [1, 2, 3]) {
      const args = JSON.parse(new RegExp(`\\[node-${id}\\] args (.*)`).exec(out)![1]!);
      expect(args).toEqual([
        'start',
        '--node-id',
        String(id),
        '--host',
        '127.0.0.1',
        '--port',
        String(ports[id - 1]),
        '--data-dir',
        join(root, `node-${id}`),
        '--controller-quorum',
        quorum,
        '--log-format',
        'text',
      ]);
      expect(await exists(join(root, `node-${id}`))).toBe(true);
      const env = JSON.parse(new RegExp(`\\[node-${id}\\] env (.*)`).exec(out)![1]!);
      // The parent's own SLUICE_* settings stay out; the rest of its environment goes in.
      expect(env).toMatchObject({ rack: null, home: '/home/fake' });
      expect(env.secret).toMatch(/^[0-9a-f]{32}$/);
      expect(args.join(' ')).not.toContain(env.secret);
      secrets.add(env.secret);
    }
    expect(secrets.size).toBe(1);

    run.signals.emit('SIGINT');
    await run.done;
    expect(count(run.output(), /\[node-\d\] got SIGTERM\n/)).toBe(3);
    expect(await exists(root)).toBe(false);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) expect(run.signals.listenerCount(signal)).toBe(0);
  });

  it('counts ports up from --base-port, keeps a given data directory and a temporary one with --keep', async () => {
    const given = join(parent, 'given');
    const run = startCluster({ nodes: 2, basePort: 20_100, dataDir: given, keep: false, logLevel: 'debug' });
    await run.waitFor((o) => count(o, /\[node-\d\] args /) === 2);
    expect(run.output()).toContain('node 1  http://127.0.0.1:20100\nnode 2  http://127.0.0.1:20101\n');
    expect(run.output()).toContain('"--controller-quorum","1@127.0.0.1:20100,2@127.0.0.1:20101"');
    expect(run.output()).toContain('"--log-level","debug"');
    run.signals.emit('SIGTERM');
    await run.done;
    expect(await exists(join(given, 'node-2'))).toBe(true);

    const kept = startCluster({ nodes: 1, basePort: 0, keep: true });
    await kept.waitFor((o) => o.includes('[node-1] args '));
    const root = /data in (\S+) \(kept on exit\)/.exec(kept.output())![1]!;
    kept.signals.emit('SIGTERM');
    await kept.done;
    expect(kept.output()).toContain(`data kept in ${root}\n`);
    expect(await exists(join(root, 'node-1'))).toBe(true);
    await rm(root, { recursive: true, force: true });
  });

  it('names a node that exits by itself and its code, stops the others and fails', async () => {
    const run = startCluster({ nodes: 3, basePort: 0, keep: false }, { 2: 'exits-3' });
    await run.waitFor((o) => count(o, /\[node-\d\] env /) === 3);
    process.kill(JSON.parse(/\[node-2\] env (.*)/.exec(run.output())![1]!).pid, 'SIGUSR2');
    await expect(run.done).rejects.toThrow('node 2 exited with code 3');
    const out = run.output();
    expect(out).toContain('node 2 exited with code 3; stopping the others\n');
    expect(out).toContain('[node-1] got SIGTERM\n');
    expect(out).toContain('[node-3] got SIGTERM\n');
    expect(await exists(/data in (\S+) /.exec(out)![1]!)).toBe(false);
  });

  it('kills a node that has not stopped within the stop timeout, or at a second signal', async () => {
    const slow = startCluster(
      { nodes: 2, basePort: 0, keep: false, stopTimeoutMs: 300 },
      { 1: 'ignores-sigterm' },
    );
    await slow.waitFor((o) => count(o, /\[node-\d\] args /) === 2);
    slow.signals.emit('SIGINT');
    await slow.done;
    expect(slow.output()).toContain('node 1 has not stopped within 300 ms; killing it\n');
    expect(slow.output()).not.toContain('node 2 has not stopped');

    const impatient = startCluster(
      { nodes: 1, basePort: 0, keep: false, stopTimeoutMs: 60_000 },
      { 1: 'ignores-sigterm' },
    );
    await impatient.waitFor((o) => o.includes('[node-1] args '));
    impatient.signals.emit('SIGINT');
    await impatient.waitFor((o) => o.includes('[node-1] got SIGTERM'));
    const before = Date.now();
    impatient.signals.emit('SIGINT');
    await impatient.done;
    expect(Date.now() - before).toBeLessThan(5_000);
    expect(impatient.output()).toContain('node 1 is still stopping at a second SIGINT; killing it\n');
  });

  it('fails naming the node when a node cannot be started at all', async () => {
    const signals = new EventEmitter();
    const done = runDevCluster(
      { nodes: 2, basePort: 0, keep: false },
      {
        stdout: new PassThrough(),
        signals,
        env: {},
        spawnNode: (args, env) =>
          args[args.indexOf('--node-id') + 1] === '1'
            ? spawn(join(parent, 'no-such-program'), [], { env })
            : spawn(process.execPath, ['-e', fakeNode('stops')], { env, stdio: ['ignore', 'pipe', 'pipe'] }),
      },
    );
    await expect(done).rejects.toThrow(/^node 1 could not start: spawn .*ENOENT/);
  });

  it('is reached through the command line with its flags, and refuses bad ones in one line', async () => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (d) => {
      out += d;
    });
    stderr.on('data', (d) => {
      err += d;
    });
    const signals = new EventEmitter();
    const io = { stdout, stderr, stdin: new PassThrough(), env: {} };
    const spawned: string[][] = [];
    const running = main(['dev-cluster', '--nodes', '2', '--base-port', '20200'], io, {
      signals,
      spawnNode: (args, env) => {
        spawned.push([...args]);
        return spawn(process.execPath, ['-e', fakeNode('stops')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      },
    });
    for (let waitedMs = 0; count(out, /\[node-\d\] args /) < 2; waitedMs += 20) {
      if (waitedMs > 10_000) throw new Error(`the nodes never started; output so far:\n${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    signals.emit('SIGINT');
    expect(await running).toBe(0);
    expect(spawned.map((args) => args[args.indexOf('--port') + 1])).toEqual(['20200', '20201']);
    expect(out).toContain('sluice dev cluster: 2 nodes, data in ');
    expect(count(out, /\[node-\d\] got SIGTERM\n/)).toBe(2);

    for (const args of [
      ['--nodes', '0'],
      ['--nodes', '10'],
      ['--nodes', 'three'],
      ['--base-port', '65536'],
      ['--nodes', '3', '--base-port', '65534'],
    ]) {
      err = '';
      const code = await main(['dev-cluster', ...args], io, {
        signals,
        spawnNode: () => {
          throw new Error('no node may start');
        },
      });
      expect(code, args.join(' ')).toBe(2);
      expect(err, args.join(' ')).toMatch(/^sluice: [^\n]+ \(see --help\)\n$/);
    }
    expect(err).toBe('sluice: --base-port 65534 leaves no room for 3 nodes below 65536 (see --help)\n');
  });
});
