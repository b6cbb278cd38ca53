import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SluiceError } from '../../src/common/errors.js';
import { loadConfigFile, type SluiceNode, startNode } from '../../src/node/node.js';

/** The composition root: listens, persists, closes everything, refuses bad settings clearly. */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-node-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function errorOf(promise: Promise<unknown>): Promise<SluiceError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof SluiceError) return error;
    throw error;
  }
  throw new Error('expected an error');
}

async function get(node: SluiceNode, path: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`http://${node.address.host}:${node.address.port}${path}`);
  return { status: response.status, body: await response.json() };
}

describe('startNode', () => {
  it('listens on a free port, keeps topics and records across a restart and closes idempotently', async () => {
    const dataDir = join(dir, 'restart');
    const first = await startNode({ dataDir, port: 0, configs: { 'num.partitions': 2 } });
    expect(first.address.port).toBeGreaterThan(0);
    const created = await fetch(`http://127.0.0.1:${first.address.port}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'kept' }),
    });
    expect(created.status).toBe(201);
    const produced = await fetch(`http://127.0.0.1:${first.address.port}/v1/topics/kept/records?acks=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ records: [{ value: 'one', partition: 1 }] }),
    });
    expect(await produced.json()).toEqual({ offsets: [{ partition: 1, offset: 0 }] });
    const cluster = (await get(first, '/v1/cluster')).body as {
      clusterId: string;
      nodes: { port: number }[];
    };
    expect(cluster.nodes[0]!.port).toBe(first.address.port);
    await Promise.all([first.close(), first.close()]);

    const second = await startNode({ dataDir, port: 0 });
    try {
      expect(((await get(second, '/v1/cluster')).body as { clusterId: string }).clusterId).toBe(
        cluster.clusterId,
      );
      const topic = (await get(second, '/v1/topics/kept')).body as { partitions: { logEndOffset: number }[] };
      expect(topic.partitions.map((p) => p.logEndOffset)).toEqual([0, 1]);
      // Topics and the cluster id live in the metadata log, not in a file.
      expect(existsSync(join(dataDir, '__cluster_metadata'))).toBe(true);
      expect(existsSync(join(dataDir, '__cluster', 'topics.json'))).toBe(false);
    } finally {
      await second.close();
    }
  });

  it('refuses bad settings with INVALID_CONFIG and leaves the port free', async () => {
    const dataDir = join(dir, 'bad');
    expect((await errorOf(startNode({ dataDir, port: 0, configs: { 'retention.ms': 'soon' } }))).code).toBe(
      'INVALID_CONFIG',
    );
    expect((await errorOf(startNode({ dataDir, port: 0, configs: { 'no.such.config': 1 } }))).code).toBe(
      'INVALID_CONFIG',
    );
    expect((await errorOf(startNode({ dataDir, port: 0, logLevel: 'loud' }))).code).toBe('INVALID_CONFIG');
    for (const openSegmentFilesMax of [0, -1, 2.5, Number.NaN])
      expect((await errorOf(startNode({ dataDir, port: 0, openSegmentFilesMax }))).code).toBe(
        'INVALID_CONFIG',
      );
    // The data directory is not left locked or half-open: a good start works right after.
    const node = await startNode({ dataDir, port: 0 });
    await node.close();
  });

  it('fails to start on a port in use, closing what it opened', async () => {
    const holder = await startNode({ dataDir: join(dir, 'holder'), port: 0 });
    try {
      await expect(startNode({ dataDir: join(dir, 'second'), port: holder.address.port })).rejects.toThrow(
        /EADDRINUSE|address already in use/,
      );
    } finally {
      await holder.close();
    }
  });
});

describe('loadConfigFile', () => {
  const write = async (name: string, text: string) => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };

  it('reads a JSON file of node settings', async () => {
    const path = await write(
      'good.json',
      JSON.stringify({
        port: 9000,
        dataDir: '/tmp/x',
        configs: { 'flush.policy': 'sync' },
        logLevel: 'info',
      }),
    );
    expect(await loadConfigFile(path)).toEqual({
      port: 9000,
      dataDir: '/tmp/x',
      configs: { 'flush.policy': 'sync' },
      logLevel: 'info',
    });
  });

  it.each([
    ['missing file', null, /cannot read/],
    ['not JSON', '{port: 1', /not valid JSON/],
    ['not an object', '[1, 2]', /must hold a JSON object/],
    ['unknown setting', '{"prot": 1}', /unknown setting prot/],
    ['port of the wrong type', '{"port": "8092"}', /port must be/],
    ['port out of range', '{"port": 70000}', /port must be/],
    ['empty data dir', '{"dataDir": ""}', /dataDir must be/],
    ['configs not an object', '{"configs": [1]}', /configs must be/],
    ['config value of the wrong type', '{"configs": {"retention.ms": [1]}}', /configs.retention.ms must be/],
    ['slow request threshold not an integer', '{"slowRequestMs": "1"}', /slowRequestMs must be/],
    ['series limit negative', '{"metricsPartitionSeriesMax": -1}', /metricsPartitionSeriesMax must be/],
  ])('refuses %s with INVALID_CONFIG', async (name, text, message) => {
    const path =
      text === null ? join(dir, 'absent.json') : await write(`${name.replaceAll(' ', '-')}.json`, text);
    const error = await errorOf(loadConfigFile(path));
    expect(error.code).toBe('INVALID_CONFIG');
    expect(error.message).toMatch(message);
  });
});
