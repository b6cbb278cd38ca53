import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import type { PeerClient, PeerResponse } from '../../src/broker/peer-client.js';
import { RemotePartitions } from '../../src/broker/remote-partitions.js';
import { FileTopicRegistry } from '../../src/broker/topic-registry.js';
import { ManualClock } from '../../src/common/clock.js';
import { SluiceError } from '../../src/common/errors.js';
import { recordArraySource } from '../../src/protocol/produce-body.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';

/**
 * A produce to a topic whose records span a partition this node leads and one another node leads.
 * Found by the fault test: when the other node refused its part with NOT_ENOUGH_REPLICAS ("nothing
 * was appended") after this node had appended its own, the client was told NOT_ENOUGH_REPLICAS,
 * and the records appended here stayed (a refused request that changed the log). The answer is
 * now NOT_ENOUGH_REPLICAS_AFTER_APPEND, indeterminate, naming the partitions appended.
 */
const DATA_DIR = '/data';
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Node 1 leads partition 0 itself; node 2 "leads" partition 1 and answers every append with `answer`. */
async function broker(
  answer: PeerResponse,
): Promise<{ broker: Broker; forwarded: number[]; paths: string[] }> {
  const fs = new SimulatedFileSystem();
  const clock = new ManualClock();
  const logs = await LogManager.open({ dataDir: DATA_DIR }, { fs, clock });
  closers.push(() => logs.close());
  const registry = await FileTopicRegistry.open(DATA_DIR, fs);
  const forwarded: number[] = [];
  const paths: string[] = [];
  const peers = {
    request: async (_base: string, options: { path: string }) => {
      forwarded.push(Number(/partitions\/(\d+)/.exec(options.path)?.[1]));
      paths.push(options.path);
      return answer;
    },
  } as unknown as PeerClient;
  const remote = new RemotePartitions(
    { nodeId: 1, clusterSecret: 'spanning-test-secret' },
    {
      directory: {
        leaderOf: (_topic, partition) => (partition === 1 ? 2 : 1),
        urlOf: (id) => `http://node-${id}.invalid`,
      },
      peers,
    },
  );
  const node = new Broker(
    { nodeId: 1, address: () => ({ host: '127.0.0.1', port: 1 }), version: 'test' },
    { registry, logs, clock, remote },
  );
  await node.start();
  await node.admin.createTopic({ name: 't', partitions: 2 });
  return { broker: node, forwarded, paths };
}

const problem = (status: number, code: string): PeerResponse => ({
  status,
  headers: {},
  body: Buffer.from(JSON.stringify({ code, detail: `${code} on node 2` })),
});

const records = [
  { value: Buffer.from('here'), partition: 0 },
  { value: Buffer.from('there'), partition: 1 },
];

const recordsSource = () => recordArraySource(records);

async function refusal(promise: Promise<unknown>): Promise<SluiceError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof SluiceError) return error;
    throw error;
  }
  throw new Error('the produce was not refused');
}

describe('a produce spanning partitions of several leaders', () => {
  it('answers NOT_ENOUGH_REPLICAS_AFTER_APPEND, not NOT_ENOUGH_REPLICAS, when its local part was appended', async () => {
    const { broker: node, forwarded } = await broker(problem(503, 'NOT_ENOUGH_REPLICAS'));
    const error = await refusal(node.produce.records('t', records, -1));
    expect(forwarded).toEqual([1]);
    // Partition 0's record is in its log: the answer must not say that nothing was appended.
    expect((await node.admin.describeTopic('t')).partitions[0]!.logEndOffset).toBe(1);
    expect(error.code).toBe('NOT_ENOUGH_REPLICAS_AFTER_APPEND');
    expect(error.retriable).toBe(true);
    expect(error.details).toMatchObject({ appendedPartitions: [0] });
  });

  it('passes the request’s timeoutMs to the leader of the forwarded part', async () => {
    const { broker: node, paths } = await broker(problem(504, 'REQUEST_TIMED_OUT'));
    await refusal(node.produce.from('t', recordsSource(), -1, { timeoutMs: 1234 }));
    expect(paths).toHaveLength(1);
    expect(new URLSearchParams(paths[0]!.split('?')[1]).get('timeoutMs')).toBe('1234');
  });

  it('keeps NOT_ENOUGH_REPLICAS when no part was appended, and the remote answer as it is otherwise', async () => {
    const { broker: node } = await broker(problem(503, 'NOT_ENOUGH_REPLICAS'));
    const only = await refusal(node.produce.records('t', [records[1]!], -1));
    expect(only.code).toBe('NOT_ENOUGH_REPLICAS');
    const { broker: other } = await broker(problem(504, 'REQUEST_TIMED_OUT'));
    expect((await refusal(other.produce.records('t', records, -1))).code).toBe('REQUEST_TIMED_OUT');
  });
});
