import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { systemClock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import { buildApp } from '../http/app.js';
import { dualProtocolServerFactory } from '../http/server.js';
import { nodeFileSystem } from '../storage/fs.js';
import { LogManager } from '../storage/log-manager.js';
import { BrokerService } from './service.js';
import type { ConfigValue } from './topic-registry.js';
import { FileTopicRegistry } from './topic-registry.js';
import { VERSION } from './version.js';

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
  readonly service: BrokerService;
  close(): Promise<void>;
}

/**
 * The composition root of a single-node Sluice: storage, topic registry, broker service, HTTP on
 * one port for HTTP/1.1 and HTTP/2. Everything it opens it closes, in reverse order.
 */
export async function startNode(options: NodeOptions): Promise<SluiceNode> {
  const nodeId = options.nodeId ?? 1;
  const host = options.host ?? '127.0.0.1';
  const dataDir = resolve(options.dataDir);
  const clock = systemClock;
  const logs = await LogManager.open({ dataDir, retentionCheckMs: 60_000 }, { fs: nodeFileSystem, clock });
  const closers: (() => Promise<void>)[] = [() => logs.close()];
  try {
    const registry = await FileTopicRegistry.open(dataDir, nodeFileSystem);
    const service = new BrokerService(
      { nodeId, host, port: options.port ?? 8092, version: VERSION, defaultConfigs: options.configs ?? {} },
      { registry, logs, clock },
    );
    await service.start();
    const app = buildApp(
      {
        logger: options.logLevel && options.logLevel !== 'silent' ? { level: options.logLevel } : false,
        serverFactory: dualProtocolServerFactory(),
      },
      { service },
    );
    closers.unshift(() => app.close());
    await app.listen({ host, port: options.port ?? 8092 });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : (options.port ?? 8092);
    (service.options as { port: number }).port = port;
    let closing: Promise<void> | undefined;
    return {
      address: { host, port },
      nodeId,
      service,
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
  return parsed as Partial<NodeOptions>;
}
