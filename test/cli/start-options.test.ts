import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { resolveStartOptions, StartArgumentError } from '../../src/cli/start.js';
import { SluiceError } from '../../src/common/errors.js';
import type { NodeOptions } from '../../src/node/node.js';

/**
 * `sluice start` takes each setting from its flag, else its SLUICE_* variable, else the config
 * file, else the default, and refuses a bad value in one line before any node opens. A fake
 * startNode records what the real one would have been given.
 */

const SECRET = 'a-secret-of-twenty-chars';
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-start-options-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Started {
  code: number;
  stdout: string;
  stderr: string;
  /** What startNode was given; undefined when the command refused before it. */
  options: NodeOptions | undefined;
}

/** Runs `sluice start ...` in-process with a fake node, stopped by a SIGTERM once it has started. */
async function start(args: string[], env: Record<string, string> = {}): Promise<Started> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  stdin.end();
  let out = '';
  let err = '';
  stdout.on('data', (d) => {
    out += d;
  });
  stderr.on('data', (d) => {
    err += d;
  });
  const signals = new EventEmitter();
  let options: NodeOptions | undefined;
  const code = await main(
    ['start', ...args],
    { stdout, stderr, stdin, env },
    {
      signals,
      startNode: async (given) => {
        options = given;
        // The command waits for a signal once the node is up; send it as soon as it listens.
        setImmediate(() => signals.emit('SIGTERM'));
        return { nodeId: given.nodeId ?? 1, address: { host: '127.0.0.1', port: 1 }, close: async () => {} };
      },
    },
  );
  return { code, stdout: out, stderr: err, options };
}

async function configFile(name: string, settings: object): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, JSON.stringify(settings));
  return path;
}

/** Each setting: its flag, its variable, its config file key, three different values of it, and its default. */
const SETTINGS: {
  flag: string;
  env: string;
  key: keyof NodeOptions;
  values: [string, string, string | number];
  parsed: (text: string) => unknown;
  absent: unknown;
}[] = [
  {
    flag: '--port',
    env: 'SLUICE_PORT',
    key: 'port',
    values: ['9001', '9002', 9003],
    parsed: Number,
    absent: undefined,
  },
  {
    flag: '--host',
    env: 'SLUICE_HOST',
    key: 'host',
    values: ['10.0.0.1', '10.0.0.2', '10.0.0.3'],
    parsed: String,
    absent: undefined,
  },
  {
    flag: '--data-dir',
    env: 'SLUICE_DATA_DIR',
    key: 'dataDir',
    values: ['/d/flag', '/d/env', '/d/file'],
    parsed: String,
    absent: './sluice-data',
  },
  {
    flag: '--node-id',
    env: 'SLUICE_NODE_ID',
    key: 'nodeId',
    values: ['4', '5', 6],
    parsed: Number,
    absent: undefined,
  },
  {
    flag: '--log-format',
    env: 'SLUICE_LOG_FORMAT',
    key: 'logFormat',
    values: ['json', 'text', 'json'],
    parsed: String,
    absent: undefined,
  },
  {
    flag: '--controller-quorum',
    env: 'SLUICE_CONTROLLER_QUORUM',
    key: 'controllerQuorum',
    values: ['1@a:1,2@b:2,3@c:3', '1@[::1]:9000', '7@h.example:8092'],
    parsed: String,
    absent: undefined,
  },
  {
    flag: '--advertise',
    env: 'SLUICE_ADVERTISE',
    key: 'advertise',
    values: ['broker-1.example:19092', 'broker-1.example', '[fd00::1]:8092'],
    parsed: String,
    absent: undefined,
  },
  {
    flag: '--rack',
    env: 'SLUICE_RACK',
    key: 'rack',
    values: ['r1', 'r2', 'r3'],
    parsed: String,
    absent: undefined,
  },
  {
    flag: '--session-timeout-ms',
    env: 'SLUICE_SESSION_TIMEOUT_MS',
    key: 'sessionTimeoutMs',
    values: ['3000', '4000', 5000],
    parsed: Number,
    absent: undefined,
  },
  {
    flag: '--internal-listen',
    env: 'SLUICE_INTERNAL_LISTEN',
    key: 'internalListen',
    values: ['10.0.0.1:9093', '0.0.0.0:0', '[::1]:9094'],
    parsed: String,
    absent: undefined,
  },
  {
    // Without a quorum the node is the whole cluster, so every value here has the controller role.
    flag: '--roles',
    env: 'SLUICE_ROLES',
    key: 'roles',
    values: ['controller,broker', 'broker,controller', 'controller,broker'],
    parsed: String,
    absent: undefined,
  },
];

describe('sluice start settings', () => {
  it('takes each setting from its flag, else its variable, else the config file, else the default', () => {
    for (const s of SETTINGS) {
      const [flag, env, file] = s.values;
      const flags = { [s.flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())]: flag };
      const all = resolveStartOptions(flags, { [s.env]: env }, { [s.key]: file }, 'f.json');
      expect(all[s.key], `${s.flag} over ${s.env} and the file`).toEqual(s.parsed(flag));
      const envAndFile = resolveStartOptions({}, { [s.env]: env }, { [s.key]: file }, 'f.json');
      expect(envAndFile[s.key], `${s.env} over the file`).toEqual(s.parsed(env));
      const fileOnly = resolveStartOptions({}, { [s.env]: '' }, { [s.key]: file }, 'f.json');
      expect(fileOnly[s.key], `the file, an empty ${s.env} giving nothing`).toEqual(file);
      expect(resolveStartOptions({}, {}, {})[s.key], `${s.key} absent`).toEqual(s.absent);
    }
  });

  it('takes the secret and its file as one setting: the first source that gives either decides', async () => {
    const secretFile = join(dir, 'secret');
    await writeFile(secretFile, `${SECRET}\n`);
    const envOverFile = resolveStartOptions(
      {},
      { SLUICE_CLUSTER_SECRET: SECRET },
      { clusterSecretFile: secretFile },
    );
    expect(envOverFile).toMatchObject({ clusterSecret: SECRET });
    expect(envOverFile).not.toHaveProperty('clusterSecretFile');
    const flagOverEnv = resolveStartOptions(
      { clusterSecretFile: secretFile },
      { SLUICE_CLUSTER_SECRET: SECRET },
      { clusterSecret: SECRET },
    );
    expect(flagOverEnv).toMatchObject({ clusterSecretFile: secretFile });
    expect(flagOverEnv).not.toHaveProperty('clusterSecret');
    expect(resolveStartOptions({}, {}, { clusterSecret: SECRET })).toMatchObject({ clusterSecret: SECRET });
  });

  it('merges topic configs, the flags over the file, and keeps the file’s other settings', () => {
    const options = resolveStartOptions(
      { topicConfig: { 'flush.policy': 'sync' } },
      {},
      { configs: { 'flush.policy': 'interval', 'retention.ms': 1000 }, slowRequestMs: 50 },
    );
    expect(options.configs).toEqual({ 'flush.policy': 'sync', 'retention.ms': 1000 });
    expect(options.slowRequestMs).toBe(50);
  });

  it('hands the flags, the variables and the --config file (or SLUICE_CONFIG) to the node', async () => {
    const file = await configFile('node.json', { port: 9100, rack: 'file-rack', dataDir: '/from/file' });
    const started = await start(
      ['--config', file, '--node-id', '2', '--controller-quorum', '1@127.0.0.1:9100,2@127.0.0.1:9101'],
      {
        SLUICE_RACK: 'env-rack',
        SLUICE_CLUSTER_SECRET: SECRET,
        SLUICE_NODE_ID: '3',
        SLUICE_LOG_LEVEL: 'warn',
      },
    );
    expect(started.code, started.stderr).toBe(0);
    expect(started.options).toMatchObject({
      port: 9100,
      dataDir: '/from/file',
      nodeId: 2,
      rack: 'env-rack',
      clusterSecret: SECRET,
      controllerQuorum: '1@127.0.0.1:9100,2@127.0.0.1:9101',
      logLevel: 'warn',
    });
    expect(started.stdout).toContain('node 2 listening on http://127.0.0.1:1');
    expect(started.stdout).toContain('sluice stopped');
    const viaEnv = await start([], { SLUICE_CONFIG: file, SLUICE_LOG_LEVEL: 'warn' });
    expect(viaEnv.options).toMatchObject({ port: 9100, rack: 'file-rack' });
  });

  it('refuses a bad flag or variable with one usage line naming it, before the node starts', async () => {
    const cases: [string[], Record<string, string>, string][] = [
      [['--port', '65536'], {}, '--port: "65536" is not an integer in 0..65535'],
      [['--port', '80.5'], {}, '--port: "80.5" is not an integer in 0..65535'],
      [[], { SLUICE_PORT: 'http' }, 'SLUICE_PORT: "http" is not an integer in 0..65535'],
      [['--node-id', '0'], {}, '--node-id: "0" is not an integer in 1..2147483647'],
      [[], { SLUICE_NODE_ID: 'one' }, 'SLUICE_NODE_ID: "one" is not an integer in 1..2147483647'],
      [['--session-timeout-ms', '0'], {}, '--session-timeout-ms: "0" is not an integer in 1..2147483647'],
      [['--log-format', 'yaml'], {}, '--log-format: "yaml" is not json or text'],
      [['--rack', ''], {}, '--rack: must not be empty'],
      [
        ['--controller-quorum', '1@a:1,2@b'],
        {},
        '--controller-quorum: controller quorum "1@a:1,2@b": "2@b" is not id@host:port',
      ],
      [
        [],
        { SLUICE_CONTROLLER_QUORUM: '1@a:1,1@b:2' },
        'SLUICE_CONTROLLER_QUORUM: controller quorum "1@a:1,1@b:2": node id 1 is named twice',
      ],
      [['--advertise', 'a b'], {}, '--advertise: advertise "a b" is not host or host:port'],
      [[], { SLUICE_ADVERTISE: 'h:99999' }, 'SLUICE_ADVERTISE: advertise "h:99999" is not host or host:port'],
      [['--internal-listen', 'host-only'], {}, '--internal-listen: "host-only" is not host:port'],
      [[], { SLUICE_INTERNAL_LISTEN: 'h:70000' }, 'SLUICE_INTERNAL_LISTEN: "h:70000" is not host:port'],
      [
        ['--advertise-internal', 'peer-1'],
        {},
        '--advertise-internal: needs --internal-listen: without it the internal API is on the public port',
      ],
      [
        ['--internal-listen', '127.0.0.1:9093', '--advertise-internal', 'a b'],
        {},
        '--advertise-internal: advertise "a b" is not host or host:port',
      ],
      [['--roles', 'voter'], {}, '--roles: roles "voter" must be controller, broker or controller,broker'],
      [[], { SLUICE_ROLES: 'broker,broker' }, 'SLUICE_ROLES: roles "broker,broker" must be'],
      [
        ['--node-id', '2', '--controller-quorum', '1@a:1,2@b:2', '--roles', 'broker'],
        {},
        '--roles: node 2 is named in the controller quorum, so it votes: a broker-only node must not be named there',
      ],
      [
        ['--node-id', '3', '--controller-quorum', '1@a:1,2@b:2', '--roles', 'controller'],
        {},
        '--roles: node 3 has the controller role but the controller quorum does not name it',
      ],
      [
        ['--cluster-secret', 'short'],
        {},
        '--cluster-secret: the cluster secret must be at least 16 characters',
      ],
      [
        ['--cluster-secret', SECRET, '--cluster-secret-file', '/x'],
        {},
        '--cluster-secret-file: give the cluster secret or a file that holds it, not both',
      ],
      [
        [],
        { SLUICE_CLUSTER_SECRET_FILE: join(dir, 'missing') },
        `SLUICE_CLUSTER_SECRET_FILE: cannot read the cluster secret file ${join(dir, 'missing')}:`,
      ],
    ];
    for (const [args, env, message] of cases) {
      const result = await start(args, env);
      const what = [...args, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ');
      expect(result.code, what).toBe(2);
      expect(result.options, what).toBeUndefined();
      expect(result.stderr, what).toMatch(/^sluice: [^\n]+ \(see --help\)\n$/);
      expect(result.stderr, what).toContain(`sluice: ${message}`);
    }
  });

  it('refuses a bad value in the config file as INVALID_CONFIG, naming the file and the key', async () => {
    const file = await configFile('bad-quorum.json', { controllerQuorum: 'nobody' });
    const result = await start(['--config', file]);
    expect(result).toMatchObject({ code: 1, options: undefined });
    expect(result.stderr).toBe(
      `sluice: config file ${file}: controllerQuorum: controller quorum "nobody": "nobody" is not id@host:port (INVALID_CONFIG)\n`,
    );
    // A good flag wins over the bad file value, so the file's value is never looked at.
    expect((await start(['--config', file, '--controller-quorum', '1@h:1'])).code).toBe(0);
    expect(() => resolveStartOptions({}, {}, { advertise: 'a:b:c' }, 'x.json')).toThrow(SluiceError);
    expect(() => resolveStartOptions({ advertise: 'a:b:c' }, {}, {})).toThrow(StartArgumentError);
  });
});
