import { describe, expect, it } from 'vitest';
import { type ReplicaFetchTransport, ReplicationService } from '../../src/broker/replication.js';
import type { Topics } from '../../src/broker/topics.js';
import { ManualClock } from '../../src/common/clock.js';
import type { Logger } from '../../src/common/logger.js';
import type { ControllerCommand } from '../../src/protocol/internal-api.js';
import { PartitionReplica } from '../../src/replication/replica.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf } from '../storage/helpers.js';

/**
 * A leader whose log goes offline on a storage error (a failed write or fsync) can take no more
 * appends: it reports the partition to the controller, which moves the leadership to another
 * in-sync replica (test/metadata/elr.test.ts covers the controller's side). Reported once per
 * partition epoch, again after a failed report; nothing while the log is healthy.
 */
const quiet: Logger = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

async function leader(options: { isr: number[]; leader: number }) {
  const clock = new ManualClock();
  const fs = new SimulatedFileSystem();
  const log = await PartitionLog.open({ dir: '/d/t-0', config: { flushPolicy: 'sync' } }, { fs, clock });
  const replica = new PartitionReplica(
    {
      topic: 't',
      partition: 0,
      nodeId: 1,
      replicas: [1, 2, 3],
      isr: options.isr,
      leader: options.leader,
      leaderEpoch: 0,
      nowMs: 0,
    },
    { log },
  );
  const submitted: ControllerCommand[] = [];
  let refuse = false;
  const cluster = {
    brokerEpoch: () => 7,
    isLive: () => true,
    submit: async (command: ControllerCommand) => {
      submitted.push(command);
      if (refuse) throw new Error('no controller');
    },
  };
  const topics = {
    replicas: { all: () => [{ replica }][Symbol.iterator](), get: () => replica },
    topicId: () => 'topic-id',
  } as unknown as Topics;
  const service = new ReplicationService(
    {
      nodeId: 1,
      replicaLagTimeMaxMs: 60_000,
      fetchMaxWaitMs: 100,
      fetchMaxBytes: 1 << 20,
      offlineCheckMs: 500,
    },
    { topics, cluster, transport: {} as ReplicaFetchTransport, clock, logger: quiet },
  );
  service.start();
  const settle = async () => {
    for (let i = 0; i < 20; i++) await Promise.resolve();
  };
  const breakDisk = async () => {
    fs.fault = () => new Error('EIO: the disk failed');
    await expect(log.append(batchOf(['lost']), { assignOffsets: true })).rejects.toBeDefined();
    expect(log.offlineReason).toBeDefined();
  };
  const offlineReports = () => submitted.filter((c) => c.type === 'offlineReplicas');
  return {
    clock,
    service,
    settle,
    breakDisk,
    offlineReports,
    refuse: (on: boolean) => {
      refuse = on;
    },
  };
}

describe('a partition log gone offline', () => {
  it('is reported to the controller by its leader, once per partition epoch', async () => {
    const l = await leader({ isr: [1, 2, 3], leader: 1 });
    l.clock.advance(600);
    await l.settle();
    expect(l.offlineReports()).toEqual([]);
    await l.breakDisk();
    l.clock.advance(500);
    await l.settle();
    expect(l.offlineReports()).toEqual([
      {
        type: 'offlineReplicas',
        brokerId: 1,
        brokerEpoch: 7,
        partitions: [{ topicId: 'topic-id', partition: 0 }],
      },
    ]);
    l.clock.advance(500);
    await l.settle();
    expect(l.offlineReports()).toHaveLength(1);
    l.service.close();
  });

  it('is reported again after a report that failed', async () => {
    const l = await leader({ isr: [1, 2, 3], leader: 1 });
    await l.breakDisk();
    l.refuse(true);
    l.clock.advance(500);
    await l.settle();
    l.refuse(false);
    l.clock.advance(500);
    await l.settle();
    expect(l.offlineReports()).toHaveLength(2);
    l.service.close();
  });

  it('is not reported by a follower that is the last in-sync replica (it keeps that place)', async () => {
    const l = await leader({ isr: [1], leader: -1 });
    await l.breakDisk();
    l.clock.advance(1000);
    await l.settle();
    expect(l.offlineReports()).toEqual([]);
    l.service.close();
  });
});
