import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SluiceNode, startNode } from '../../src/node/node.js';
import { CLUSTER_SECRET_HEADER } from '../../src/protocol/internal-api.js';

/**
 * One node in this process with `internalListen`: each of its two ports serves its own API and
 * answers the other's with a 404 problem, and the node reports its roles and the quorum's status.
 * (test/cluster/roles.test.ts runs peers over internal listeners.)
 */
const SECRET = 'internal-listener-secret-0123';

describe('a node with an internal listener', () => {
  let dir: string;
  let node: SluiceNode;
  let publicUrl: string;
  let internalUrl: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-internal-listener-'));
    // A one-voter quorum never sends to itself, so the address it names for itself is not dialled.
    node = await startNode({
      dataDir: dir,
      port: 0,
      logLevel: 'silent',
      controllerQuorum: '1@127.0.0.1:1',
      clusterSecret: SECRET,
      internalListen: '127.0.0.1:0',
    });
    publicUrl = `http://127.0.0.1:${node.address.port}`;
    internalUrl = `http://127.0.0.1:${node.internalAddress!.port}`;
  }, 30_000);
  afterAll(async () => {
    await node?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = async (url: string, withSecret = false) => {
    const response = await fetch(url, { headers: withSecret ? { [CLUSTER_SECRET_HEADER]: SECRET } : {} });
    return {
      status: response.status,
      type: response.headers.get('content-type') ?? '',
      body: (await response.json()) as Record<string, unknown>,
    };
  };

  it('listens on a port of its own', () => {
    expect(node.internalAddress!.port).toBeGreaterThan(0);
    expect(node.internalAddress!.port).not.toBe(node.address.port);
  });

  it('refuses /internal/* on the public port, with the secret too, as a 404 problem', async () => {
    const answer = await get(`${publicUrl}/internal/raft/status`, true);
    expect(answer.status).toBe(404);
    expect(answer.type).toMatch(/^application\/problem\+json/);
    expect(answer.body.code).toBe('NOT_FOUND');
    expect(answer.body.detail).toMatch(/internal listener of its own/);
  });

  it('serves /internal/* on the internal port behind the secret, and nothing of the public API there', async () => {
    const status = await get(`${internalUrl}/internal/raft/status`, true);
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ id: 1, role: 'leader' });
    expect((await get(`${internalUrl}/internal/raft/status`)).status).toBe(401);
    const publicThere = await get(`${internalUrl}/v1/topics`);
    expect(publicThere.status).toBe(404);
    expect(publicThere.body.code).toBe('NOT_FOUND');
    expect(publicThere.body.detail).toMatch(/public API is served on the public port/);
    expect((await get(`${internalUrl}/readyz`)).status).toBe(200);
  });

  it('gives clients the public endpoint, never the internal one', async () => {
    const metadata = await get(`${publicUrl}/v1/metadata`);
    expect(metadata.body.nodes).toEqual([expect.objectContaining({ id: 1, port: node.address.port })]);
  });

  it('reports its roles and the quorum’s status in /v1/cluster', async () => {
    const cluster = await get(`${publicUrl}/v1/cluster`);
    expect(cluster.status).toBe(200);
    expect(cluster.body.nodes).toEqual([expect.objectContaining({ id: 1, roles: ['controller', 'broker'] })]);
    const metadata = cluster.body.metadata as { quorum: { source: string; voters: unknown[] } };
    expect(metadata.quorum.source).toBe('controller');
    expect(metadata.quorum.voters).toEqual([
      expect.objectContaining({ id: 1, reachable: true, role: 'leader', lag: 0 }),
    ]);
  });
});
