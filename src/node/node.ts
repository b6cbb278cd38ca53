import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Broker } from '../broker/broker.js';
import { FileTopicRegistry } from '../broker/topic-registry.js';
import { systemClock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import { buildApp } from '../http/app.js';
import { dualProtocolServerFactory } from '../http/server.js';
import { type ConfigValue, parseTopicConfigDefaults } from '../protocol/topic-config.js';
import { nodeFileSystem } from '../storage/fs.js';
import { LogManager } from '../storage/log-manager.js';
import type { StorageLogger } from '../storage/partition-log.js';
import { VERSION } from './version.js';

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export interface NodeOptions {
  nodeId?: number;
  host?: string;
  port?: number;
  dataDir: string;
  /** Defaults for every topic, in Kafka names: `flush.policy`, `retention.ms`, `num.partitions`, ... */
  configs?: Record<string, ConfigValue>;
  logLevel?: string;
}

export interface SluiceNode {
  readonly address: { host: string; port: number };
  readonly nodeId: number;
  readonly broker: Broker;
  close(): Promise<void>;
}

/**
 * The composition root of a single-node Sluice: storage, topic registry, broker service, HTTP on
 * one port for HTTP/1.1 and HTTP/2. Everything it opens it closes, in reverse order.
 */
export async function startNode(options: NodeOptions): Promise<SluiceNode> {
  const nodeId = options.nodeId ?? 1;
  const host = options.host ?? '127.0.0.1';
  const logLevel = options.logLevel ?? 'warn';
  if (!LOG_LEVELS.has(logLevel)) {
    throw new SluiceError(
      'INVALID_CONFIG',
      `log level ${logLevel} is not one of ${[...LOG_LEVELS].join(', ')}`,
    );
  }
  const dataDir = resolve(options.dataDir);
  const clock = systemClock;
  const defaults = parseTopicConfigDefaults(options.configs ?? {});
  // Storage faults are logged through the app's logger once it exists; before that (while the logs
  // open) to stderr, so that a partition taken offline at start is never silent.
  let logger: StorageLogger = {
    error: (fields, message) =>
      process.stderr.write(`${JSON.stringify({ level: 'error', msg: message, ...fields })}\n`),
  };
  const logs = await LogManager.open(
    { dataDir, retentionCheckMs: defaults.retentionCheckMs },
    { fs: nodeFileSystem, clock, logger: { error: (fields, message) => logger.error(fields, message) } },
  );
  const closers: (() => Promise<void>)[] = [() => logs.close()];
  try {
    const registry = await FileTopicRegistry.open(dataDir, nodeFileSystem);
    // The port is known once the server is bound; the cluster view asks for it when it answers.
    let boundPort = options.port ?? 8092;
    const broker = new Broker(
      {
        nodeId,
        version: VERSION,
        address: () => ({ host, port: boundPort }),
        defaultConfigs: options.configs ?? {},
      },
      { registry, logs, clock },
    );
    await broker.start();
    const app = buildApp(
      {
        // Warnings and errors by default: a terminal stays quiet until something needs attention.
        logger: logLevel === 'silent' ? false : { level: logLevel },
        serverFactory: dualProtocolServerFactory(),
      },
      { broker },
    );
    if (logLevel !== 'silent') logger = app.log;
    closers.unshift(async () => {
      // Answer waiting fetches and end follow streams first, so that the server can drain.
      broker.beginShutdown();
      await app.close();
    });
    await app.listen({ host, port: options.port ?? 8092 });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : boundPort;
    boundPort = port;
    let closing: Promise<void> | undefined;
    return {
      address: { host, port },
      nodeId,
      broker,
      close() {
        closing ??= (async () => {
          for (const close of closers) await close();
        })();
        return closing;
      },
    };
  } catch (error) {
    for (const close of closers) await close().catch(() => {});
    throw error;
  }
}

/** Reads a JSON config file: `{ "port": 8092, "dataDir": "...", "configs": { "flush.policy": "sync" } }`. */
export async function loadConfigFile(path: string): Promise<Partial<NodeOptions>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new SluiceError('INVALID_CONFIG', `cannot read config file ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SluiceError(
      'INVALID_CONFIG',
      `config file ${path} is not valid JSON: ${(error as Error).message}`,
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SluiceError('INVALID_CONFIG', `config file ${path} must hold a JSON object`);
  }
  const allowed = new Set(['nodeId', 'host', 'port', 'dataDir', 'configs', 'logLevel']);
  for (const key of Object.keys(parsed)) {
    if (!allowed.has(key))
      throw new SluiceError('INVALID_CONFIG', `config file ${path}: unknown setting ${key}`);
  }
  const settings = parsed as Record<string, unknown>;
  const bad = (key: string, what: string) =>
    new SluiceError('INVALID_CONFIG', `config file ${path}: ${key} must be ${what}`, {
      details: { config: key },
    });
  const isInt = (v: unknown, min: number, max: number) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
  if (settings.port !== undefined && !isInt(settings.port, 0, 65535)) throw bad('port', 'an integer port');
  if (settings.nodeId !== undefined && !isInt(settings.nodeId, 0, 2 ** 31 - 1))
    throw bad('nodeId', 'a non-negative integer');
  for (const key of ['host', 'dataDir', 'logLevel']) {
    if (settings[key] !== undefined && (typeof settings[key] !== 'string' || settings[key] === ''))
      throw bad(key, 'a non-empty string');
  }
  if (settings.configs !== undefined) {
    const configs = settings.configs;
    if (typeof configs !== 'object' || configs === null || Array.isArray(configs))
      throw bad('configs', 'an object of topic configs');
    for (const [name, value] of Object.entries(configs)) {
      if (!['string', 'number', 'boolean'].includes(typeof value))
        throw bad(`configs.${name}`, 'a string, number or boolean');
    }
  }
  return settings as Partial<NodeOptions>;
}
