import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';

/**
 * A node keeps its topics in the metadata log, a one-voter Raft quorum on the node itself: they
 * survive restarts there, the broker is registered in it, and a data directory written by the
 * single-node release (topics in `__cluster/topics.json`) opens with its topics and records intact.
 */
const dirs: string[] = [];
const nodes: SluiceNode[] = [];
afterEach(async () => {
  for (const node of nodes.splice(0)) await node.close();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-metadata-'));
  dirs.push(dir);
  return dir;
}

describe('the metadata log of a node', () => {
  it('holds the cluster id, this broker (unfenced) and every topic, across restarts', async () => {
    const dataDir = await tempDir();
    const first = await startNode({ dataDir, port: 0, logLevel: 'silent' });
    await first.broker.admin.createTopic({
      name: 'kept',
      partitions: 2,
      configs: { 'retention.ms': 60_000 },
    });
    await first.broker.admin.alterConfigs('kept', { 'cleanup.policy': 'compact' });
    await first.broker.admin.addPartitions('kept', 3);
    await first.broker.produce.records('kept', [{ value: Buffer.from('v'), partition: 2 }], 1);
    const clusterId = first.broker.admin.cluster().clusterId;
    const firstEpoch = first.broker.admin.cluster().nodes[0]!.brokerEpoch!;
    await first.close();
    const second = await startNode({ dataDir, port: 0, logLevel: 'silent' });
    nodes.push(second);
    expect(second.broker.admin.cluster().clusterId).toBe(clusterId);
    // The cluster view comes from the quorum: this node leads it, and is registered unfenced with a
    // new broker epoch at every start.
    const view = second.broker.admin.cluster();
    expect(view.controllerId).toBe(1);
    expect(view.metadata).toMatchObject({ role: 'leader', voters: [1] });
    expect(view.nodes).toEqual([
      expect.objectContaining({
        id: 1,
        port: second.address.port,
        fenced: false,
        brokerEpoch: expect.any(Number),
      }),
    ]);
    expect(view.nodes[0]!.brokerEpoch).toBeGreaterThan(firstEpoch);
    const topic = await second.broker.admin.describeTopic('kept');
    expect(topic.partitions.map((p) => p.logEndOffset)).toEqual([0, 0, 1]);
    // Config values keep their JSON type through the log.
    expect(topic.configs).toEqual({ 'retention.ms': 60_000, 'cleanup.policy': 'compact' });
    await second.broker.admin.deleteTopic('kept');
    expect(second.broker.admin.listTopics()).toEqual([]);
  });

  it('imports a single-node release data directory: its cluster id, topics, configs and records', async () => {
    const dataDir = await tempDir();
    await mkdir(join(dataDir, '__cluster'), { recursive: true });
    await writeFile(
      join(dataDir, '__cluster', 'topics.json'),
      JSON.stringify({
        clusterId: 'old-cluster-id',
        topics: [
          {
            name: 'legacy',
            partitions: 2,
            replicationFactor: 1,
            configs: { 'retention.ms': 1000 },
            createdMs: 1,
          },
        ],
      }),
    );
    // The release's partition logs, as it left them.
    const logs = await LogManager.open({ dataDir }, { fs: nodeFileSystem, clock: systemClock });
    const log = await logs.getOrCreate('legacy', 1);
    await log.append(
      encodeBatch([
        { value: Buffer.from('a'), timestamp: 1 },
        { value: Buffer.from('b'), timestamp: 2 },
      ]),
      {
        assignOffsets: true,
        leaderEpoch: 0,
      },
    );
    await logs.close();
    const node = await startNode({ dataDir, port: 0, logLevel: 'silent' });
    nodes.push(node);
    expect(node.broker.admin.cluster().clusterId).toBe('old-cluster-id');
    const topic = await node.broker.admin.describeTopic('legacy');
    expect(topic.configs).toEqual({ 'retention.ms': 1000 });
    expect(topic.partitions.map((p) => p.logEndOffset)).toEqual([0, 2]);
    const read = await node.broker.fetch.read('legacy', 1, {
      offset: 0,
      maxBytes: 1 << 20,
      maxWaitMs: 0,
      minBytes: 1,
    });
    expect(read.nextOffset).toBe(2);
    expect(existsSync(join(dataDir, '__cluster', 'topics.json'))).toBe(false);
    expect(existsSync(join(dataDir, '__cluster', 'topics.json.imported'))).toBe(true);
  });

  it('refuses to start when the metadata log of a node that took part is gone, and leaves the data alone', async () => {
    const dataDir = await tempDir();
    const node = await startNode({ dataDir, port: 0, logLevel: 'silent' });
    await node.broker.admin.createTopic({ name: 'precious', partitions: 1 });
    await node.broker.produce.records('precious', [{ value: Buffer.from('v') }], 1);
    await node.close();
    await rm(join(dataDir, '__cluster_metadata'), { recursive: true, force: true });
    await expect(startNode({ dataDir, port: 0, logLevel: 'silent' })).rejects.toMatchObject({
      code: 'KAFKA_STORAGE_ERROR',
    });
    // The partition is still on disk, not deleted as unowned by a fresh, empty cluster.
    expect(existsSync(join(dataDir, 'precious-0', '00000000000000000000.log'))).toBe(true);
    // Another node id on this data directory is refused too.
    const other = await tempDir();
    nodes.push(await startNode({ dataDir: other, port: 0, logLevel: 'silent' }));
    await nodes.pop()!.close();
    await expect(startNode({ dataDir: other, nodeId: 2, port: 0, logLevel: 'silent' })).rejects.toMatchObject(
      {
        code: 'INVALID_CONFIG',
      },
    );
  });
});
