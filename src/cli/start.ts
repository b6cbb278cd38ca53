import type { Command } from 'commander';
import { SluiceError } from '../common/errors.js';
import {
  parseAdvertise,
  parseControllerQuorum,
  parseListen,
  parseRoles,
  resolveClusterSecret,
  resolveRoles,
} from '../node/cluster-config.js';
import { loadConfigFile, logsLifecycle, type NodeOptions, type SluiceNode } from '../node/node.js';
import { VERSION } from '../node/version.js';
import { collectConfig, type Io, print } from './io.js';

const DEFAULT_DATA_DIR = './sluice-data';
const DEFAULT_PORT = 8092;
const NODE_ID_MAX = 2 ** 31 - 1;

/** What `sluice start` needs besides its arguments; tests pass a fake node and their own signals. */
export interface StartDependencies {
  startNode: (options: NodeOptions) => Promise<Pick<SluiceNode, 'address' | 'nodeId' | 'close'>>;
  /** Where SIGINT and SIGTERM arrive: the process. */
  signals: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
}

/** The flags as commander hands them over: strings, checked by `resolveStartOptions`. */
export interface StartFlags {
  port?: string;
  host?: string;
  dataDir?: string;
  nodeId?: string;
  config?: string;
  logLevel?: string;
  logFormat?: string;
  controllerQuorum?: string;
  advertise?: string;
  rack?: string;
  clusterSecret?: string;
  clusterSecretFile?: string;
  sessionTimeoutMs?: string;
  replicationThrottleBytesPerSecond?: string;
  internalListen?: string;
  advertiseInternal?: string;
  roles?: string;
  topicConfig?: Record<string, string>;
}

/** A setting given on the command line or in the environment that cannot be used: a usage error. */
export class StartArgumentError extends Error {}

/** Refused with a reason; the caller prefixes the flag, variable or file that gave the value. */
class BadValue extends Error {}

function integerIn(min: number, max: number) {
  return (text: string): number => {
    if (!/^-?\d+$/.test(text) || Number(text) < min || Number(text) > max)
      throw new BadValue(`${JSON.stringify(text)} is not an integer in ${min}..${max}`);
    return Number(text);
  };
}

function nonEmpty(text: string): string {
  if (text === '') throw new BadValue('must not be empty');
  return text;
}

function logFormat(text: string): string {
  if (text !== 'json' && text !== 'text') throw new BadValue(`${JSON.stringify(text)} is not json or text`);
  return text;
}

type SettingKey =
  | 'port'
  | 'host'
  | 'dataDir'
  | 'nodeId'
  | 'logLevel'
  | 'logFormat'
  | 'controllerQuorum'
  | 'advertise'
  | 'rack'
  | 'clusterSecret'
  | 'clusterSecretFile'
  | 'sessionTimeoutMs'
  | 'replicationThrottleBytesPerSecond'
  | 'internalListen'
  | 'advertiseInternal'
  | 'roles';

/**
 * A setting that a flag, an environment variable and the config file can all give. `parse` reads
 * a flag's or a variable's text; the config file's values were typed and range-checked by
 * `loadConfigFile`.
 */
interface Setting {
  key: SettingKey;
  flag: `--${string}`;
  env: `SLUICE_${string}`;
  parse: (text: string) => string | number;
}

const SETTINGS: readonly Setting[] = [
  { key: 'port', flag: '--port', env: 'SLUICE_PORT', parse: integerIn(0, 65535) },
  { key: 'host', flag: '--host', env: 'SLUICE_HOST', parse: nonEmpty },
  { key: 'dataDir', flag: '--data-dir', env: 'SLUICE_DATA_DIR', parse: nonEmpty },
  { key: 'nodeId', flag: '--node-id', env: 'SLUICE_NODE_ID', parse: integerIn(1, NODE_ID_MAX) },
  { key: 'logLevel', flag: '--log-level', env: 'SLUICE_LOG_LEVEL', parse: nonEmpty },
  { key: 'logFormat', flag: '--log-format', env: 'SLUICE_LOG_FORMAT', parse: logFormat },
  { key: 'controllerQuorum', flag: '--controller-quorum', env: 'SLUICE_CONTROLLER_QUORUM', parse: nonEmpty },
  { key: 'advertise', flag: '--advertise', env: 'SLUICE_ADVERTISE', parse: nonEmpty },
  { key: 'rack', flag: '--rack', env: 'SLUICE_RACK', parse: nonEmpty },
  { key: 'clusterSecret', flag: '--cluster-secret', env: 'SLUICE_CLUSTER_SECRET', parse: nonEmpty },
  {
    key: 'clusterSecretFile',
    flag: '--cluster-secret-file',
    env: 'SLUICE_CLUSTER_SECRET_FILE',
    parse: nonEmpty,
  },
  {
    key: 'sessionTimeoutMs',
    flag: '--session-timeout-ms',
    env: 'SLUICE_SESSION_TIMEOUT_MS',
    parse: integerIn(1, 2 ** 31 - 1),
  },
  {
    key: 'replicationThrottleBytesPerSecond',
    flag: '--replication-throttle-bytes-per-second',
    env: 'SLUICE_REPLICATION_THROTTLE_BYTES_PER_SECOND',
    parse: integerIn(0, Number.MAX_SAFE_INTEGER),
  },
  { key: 'internalListen', flag: '--internal-listen', env: 'SLUICE_INTERNAL_LISTEN', parse: nonEmpty },
  {
    key: 'advertiseInternal',
    flag: '--advertise-internal',
    env: 'SLUICE_ADVERTISE_INTERNAL',
    parse: nonEmpty,
  },
  { key: 'roles', flag: '--roles', env: 'SLUICE_ROLES', parse: nonEmpty },
];

/** The variable named beside a flag in `--help`. */
function envOf(key: SettingKey): string {
  return SETTINGS.find((s) => s.key === key)!.env;
}

/** The config file's path is a setting of its own, read before the others: `--config`, then this. */
const CONFIG_ENV = 'SLUICE_CONFIG';

type SourceKind = 'flag' | 'env' | 'file';
const PRECEDENCE: readonly SourceKind[] = ['flag', 'env', 'file'];
const SECRET_KEYS: ReadonlySet<SettingKey> = new Set(['clusterSecret', 'clusterSecretFile']);

/** commander's key for a flag: `--session-timeout-ms` is `sessionTimeoutMs`. */
function flagKey(flag: string): keyof StartFlags {
  return flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof StartFlags;
}

/**
 * The node's options from the flags, the environment and the config file: each setting from the
 * first of them that gives it (an empty variable gives nothing), then the default. Every value is
 * checked here so that a mistake is refused before anything opens: a bad flag or variable throws
 * `StartArgumentError`, a bad config file value `SluiceError` (`INVALID_CONFIG`).
 */
export function resolveStartOptions(
  flags: StartFlags,
  env: Readonly<Record<string, string | undefined>>,
  fromFile: Partial<NodeOptions>,
  configPath = 'config file',
): NodeOptions {
  const given = (setting: Setting, kind: SourceKind): unknown => {
    if (kind === 'flag') return flags[flagKey(setting.flag)];
    if (kind === 'env') return env[setting.env] === '' ? undefined : env[setting.env];
    return fromFile[setting.key];
  };
  // The secret and its file are one setting: the first source that gives either decides, so that
  // a secret in the environment overrides a file named in the config file instead of clashing.
  const secretFrom = PRECEDENCE.find((kind) =>
    SETTINGS.some((s) => SECRET_KEYS.has(s.key) && given(s, kind) !== undefined),
  );
  const options: Record<string, unknown> = { ...fromFile };
  delete options.clusterSecret;
  delete options.clusterSecretFile;
  /** Which flag, variable or file each setting came from, to name it in an error. */
  const from = new Map<SettingKey, { kind: SourceKind; name: string }>();
  for (const setting of SETTINGS) {
    const kinds = SECRET_KEYS.has(setting.key) ? PRECEDENCE.filter((k) => k === secretFrom) : PRECEDENCE;
    const kind = kinds.find((k) => given(setting, k) !== undefined);
    if (kind === undefined) continue;
    const value = given(setting, kind);
    const name = kind === 'flag' ? setting.flag : kind === 'env' ? setting.env : configPath;
    from.set(setting.key, { kind, name });
    if (kind === 'file') {
      options[setting.key] = value;
      continue;
    }
    try {
      options[setting.key] = setting.parse(value as string);
    } catch (error) {
      if (error instanceof BadValue) throw new StartArgumentError(`${name}: ${error.message}`);
      throw error;
    }
  }
  const resolved = {
    ...options,
    dataDir: (options.dataDir as string | undefined) ?? DEFAULT_DATA_DIR,
    configs: { ...fromFile.configs, ...flags.topicConfig },
  } as NodeOptions;

  const refuse = (key: SettingKey, error: unknown): never => {
    const source = from.get(key)!;
    const detail = error instanceof Error ? error.message : String(error);
    if (source.kind === 'file')
      throw new SluiceError('INVALID_CONFIG', `config file ${source.name}: ${key}: ${detail}`, {
        details: { config: key },
      });
    throw new StartArgumentError(`${source.name}: ${detail}`);
  };
  // startNode parses these again; here they are parsed only to refuse a mistake before anything opens.
  if (resolved.controllerQuorum !== undefined) {
    try {
      parseControllerQuorum(resolved.controllerQuorum);
    } catch (error) {
      refuse('controllerQuorum', error);
    }
  }
  if (resolved.advertise !== undefined) {
    try {
      parseAdvertise(resolved.advertise, resolved.port ?? DEFAULT_PORT);
    } catch (error) {
      refuse('advertise', error);
    }
  }
  if (resolved.internalListen !== undefined) {
    try {
      parseListen(resolved.internalListen);
    } catch (error) {
      refuse('internalListen', error);
    }
  }
  if (resolved.advertiseInternal !== undefined) {
    try {
      if (resolved.internalListen === undefined)
        throw new Error('needs --internal-listen: without it the internal API is on the public port');
      parseAdvertise(resolved.advertiseInternal, 0);
    } catch (error) {
      refuse('advertiseInternal', error);
    }
  }
  if (resolved.roles !== undefined) {
    try {
      const quorum =
        resolved.controllerQuorum !== undefined
          ? parseControllerQuorum(resolved.controllerQuorum)
          : undefined;
      resolveRoles(parseRoles(resolved.roles), resolved.nodeId ?? 1, quorum);
    } catch (error) {
      refuse('roles', error);
    }
  }
  if (resolved.clusterSecret !== undefined || resolved.clusterSecretFile !== undefined) {
    try {
      resolveClusterSecret(resolved);
    } catch (error) {
      refuse(resolved.clusterSecretFile !== undefined ? 'clusterSecretFile' : 'clusterSecret', error);
    }
  }
  return resolved;
}

export function addStartCommand(program: Command, io: Io, dependencies: StartDependencies): void {
  const command = program
    .command('start')
    .description(
      'run a node; each setting is taken from its flag, else its SLUICE_* variable (in brackets), else the --config file, else its default',
    )
    .option(
      '--port <port>',
      `port for HTTP/1.1 and HTTP/2, 0 for any free one (default: ${DEFAULT_PORT}) [${envOf('port')}]`,
    )
    .option('--host <host>', `address to listen on (default: 127.0.0.1) [${envOf('host')}]`)
    .option('--data-dir <dir>', `where the logs live (default: ${DEFAULT_DATA_DIR}) [${envOf('dataDir')}]`)
    .option('--node-id <id>', `this node’s id (default: 1) [${envOf('nodeId')}]`)
    .option('--config <file>', `a JSON config file (default: none) [${CONFIG_ENV}]`)
    .option(
      '--log-level <level>',
      `fatal, error, warn, info, debug or silent (default: info) [${envOf('logLevel')}]`,
    )
    .option(
      '--log-format <format>',
      `json, or text for a person (default: text on a terminal, else json) [${envOf('logFormat')}]`,
    )
    .option(
      '--controller-quorum <voters>',
      `the metadata quorum's voters, id@host:port,... (default: this node alone) [${envOf('controllerQuorum')}]`,
    )
    .option(
      '--advertise <host[:port]>',
      `the address other nodes and clients reach this node at (default: --host and the bound port) [${envOf('advertise')}]`,
    )
    .option(
      '--rack <rack>',
      `the rack or zone this node is in, for replica placement (default: none) [${envOf('rack')}]`,
    )
    .option(
      '--cluster-secret <secret>',
      `the secret nodes present to each other, 16 characters or more; prefer the variable, which ps does not show (default: none) [${envOf('clusterSecret')}]`,
    )
    .option(
      '--cluster-secret-file <file>',
      `a file holding the cluster secret (default: none) [${envOf('clusterSecretFile')}]`,
    )
    .option(
      '--session-timeout-ms <ms>',
      `how long a broker may go unheard before it is fenced (default: 9000) [${envOf('sessionTimeoutMs')}]`,
    )
    .option(
      '--replication-throttle-bytes-per-second <bytes>',
      `bytes per second a leader sends to replicas a reassignment adds, until in sync; 0 is unthrottled (default: 0) [${envOf('replicationThrottleBytesPerSecond')}]`,
    )
    .option(
      '--internal-listen <host:port>',
      `a listener of its own for the cluster-internal API; the quorum then names these addresses (default: the public port) [${envOf('internalListen')}]`,
    )
    .option(
      '--advertise-internal <host[:port]>',
      `the address other nodes reach this node's internal listener at (default: the --advertise host and the internal port) [${envOf('advertiseInternal')}]`,
    )
    .option(
      '--roles <roles>',
      `controller, broker or controller,broker (default: both for a node the quorum names, broker for any other) [${envOf('roles')}]`,
    )
    .option(
      '-c, --topic-config <name=value>',
      'default topic config, repeatable, e.g. flush.policy=sync (default: the built-in topic defaults of docs/api.md)',
      collectConfig,
    );
  command.action(async (flags: StartFlags) => {
    const env = io.env ?? process.env;
    const configPath = flags.config ?? (env[CONFIG_ENV] || undefined);
    const fromFile = configPath !== undefined ? await loadConfigFile(configPath) : {};
    let options: NodeOptions;
    try {
      options = resolveStartOptions(flags, env, fromFile, configPath);
    } catch (error) {
      // A usage error: one line, commander's shape, its exit code.
      if (error instanceof StartArgumentError) command.error(error.message);
      throw error;
    }
    const node = await dependencies.startNode(options);
    // At info and below the node logs its own start and stop lines, in the log's stream.
    const quiet = !logsLifecycle(options.logLevel);
    if (quiet)
      print(
        io,
        `sluice ${VERSION} node ${node.nodeId} listening on http://${node.address.host}:${node.address.port} (HTTP/1.1 and HTTP/2), data in ${options.dataDir}`,
      );
    await new Promise<void>((resolve) => {
      const stop = () => {
        dependencies.signals.off('SIGINT', stop);
        dependencies.signals.off('SIGTERM', stop);
        resolve();
      };
      dependencies.signals.on('SIGINT', stop);
      dependencies.signals.on('SIGTERM', stop);
    });
    await node.close();
    if (quiet) print(io, 'sluice stopped');
  });
}
