import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import type { FastifyInstance } from 'fastify';
import { Packr, Unpackr } from 'msgpackr';
import { Broker } from '../../src/broker/broker.js';
import { FileTopicRegistry } from '../../src/broker/topic-registry.js';
import { systemClock } from '../../src/common/clock.js';
import type { MetricsRegistry } from '../../src/common/metrics.js';
import { buildApp } from '../../src/http/app.js';
import { ENDPOINTS, type Endpoint } from '../../src/protocol/api.js';
import { type FileSystem, nodeFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';

export const packr = new Packr({ useRecords: false, variableMapSize: true });
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export interface Harness {
  app: FastifyInstance;
  broker: Broker;
  logs: LogManager;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * A broker app on a temporary data directory, for app.inject() tests; with `deps.metrics` it
 * counts into that registry and serves it at /metrics, with `deps.fs` its logs live there.
 */
export async function makeHarness(
  defaultConfigs: Record<string, string | number | boolean> = {},
  brokerOptions: { fetchWaitersMax?: number; partitionSeriesMax?: number } = {},
  deps: { metrics?: MetricsRegistry; fs?: FileSystem; slowRequestMs?: number } = {},
): Promise<Harness> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-http-'));
  const fs = deps.fs ?? nodeFileSystem;
  const metrics = deps.metrics ? { metrics: deps.metrics } : {};
  const logs = await LogManager.open({ dataDir }, { fs, clock: systemClock, ...metrics });
  const registry = await FileTopicRegistry.open(dataDir, fs);
  const broker = new Broker(
    {
      nodeId: 1,
      address: () => ({ host: '127.0.0.1', port: 0 }),
      version: 'test',
      defaultConfigs,
      ...brokerOptions,
    },
    { registry, logs, clock: systemClock, ...metrics },
  );
  await broker.start();
  const app = buildApp(deps.slowRequestMs !== undefined ? { slowRequestMs: deps.slowRequestMs } : {}, {
    broker,
    ...metrics,
  });
  await app.ready();
  return {
    app,
    broker,
    logs,
    dataDir,
    async close() {
      await app.close();
      await logs.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export type Format = 'json' | 'msgpack';

const ajv = new Ajv({ strict: false, allErrors: true });
const responseChecks = (Object.values(ENDPOINTS) as Endpoint[]).map((endpoint) => ({
  endpoint,
  path: new RegExp(`^${endpoint.path.replace(/:[a-zA-Z]+/g, '[^/]+')}$`),
  validate: endpoint.response ? ajv.compile(endpoint.response) : undefined,
}));

/**
 * Checks a successful JSON answer against its endpoint's response schema in ENDPOINTS (what
 * /openapi.json publishes), so that the published contract and the server cannot drift apart.
 */
export function checkResponseSchema(method: string, url: string, body: unknown): void {
  const path = url.split('?')[0]!;
  const check = responseChecks.find((c) => c.endpoint.method === method && c.path.test(path));
  if (!check) throw new Error(`no endpoint for ${method} ${path}`);
  if (!check.validate) throw new Error(`endpoint ${check.endpoint.id} has no response schema`);
  if (!check.validate(body)) {
    throw new Error(
      `${check.endpoint.id} answered outside its schema: ${ajv.errorsText(check.validate.errors)} in ${JSON.stringify(body).slice(0, 300)}`,
    );
  }
}

/** Sends a request with the body and Accept in one format and decodes the answer. */
export async function call(
  app: FastifyInstance,
  format: Format,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT',
  url: string,
  body?: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field by the tests
): Promise<{ status: number; body: any; contentType: string }> {
  const type = format === 'json' ? 'application/json' : 'application/vnd.msgpack';
  const response = await app.inject({
    method,
    url,
    headers: { accept: type, ...(body === undefined ? {} : { 'content-type': type }) },
    ...(body === undefined
      ? {}
      : { payload: format === 'json' ? JSON.stringify(body) : Buffer.from(packr.pack(body)) }),
  });
  const contentType = String(response.headers['content-type'] ?? '');
  let decoded: unknown;
  if (contentType.startsWith('application/vnd.msgpack')) decoded = unpackr.unpack(response.rawPayload);
  else if (response.body.length > 0) decoded = JSON.parse(response.body);
  if (format === 'json' && response.statusCode < 300 && contentType.startsWith('application/json'))
    checkResponseSchema(method, url, decoded);
  return { status: response.statusCode, body: decoded, contentType };
}
