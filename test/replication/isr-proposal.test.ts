import { describe, expect, it } from 'vitest';
import { type ReplicaFetchTransport, ReplicationService } from '../../src/broker/replication.js';
import type { Topics } from '../../src/broker/topics.js';
import { ManualClock } from '../../src/common/clock.js';
import { SluiceError } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import type { ControllerCommand } from '../../src/protocol/internal-api.js';
import { PartitionReplica } from '../../src/replication/replica.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf } from '../storage/helpers.js';

/**
 * A leader's in-sync expansion whose answer is lost. Found by the fault test (an acknowledged
 * record lost): the controller committed the leader's alterPartition adding a follower, the answer
 * did not arrive (the link dropped; the retried request was refused as stale), and the leader
 * dropped its proposal at once. Its high watermark then ran over the smaller set it still knew,
 * acknowledging records the added follower lacked; the controller, whose set held that follower,
 * could then elect it, and the acknowledged records were gone. The leader now keeps counting the
 * proposal until its metadata has caught up with the controller (and shows the set in force).
 */
const LAG_MS = 2000;
const quiet: Logger = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

async function leaderWithIsr12() {
  const clock = new ManualClock();
  const log = await PartitionLog.open(
    { dir: '/d/t-0', config: {} },
    { fs: new SimulatedFileSystem(), clock },
  );
  const replica = new PartitionReplica(
    {
      topic: 't',
      partition: 0,
      nodeId: 1,
      replicas: [1, 2, 3],
      isr: [1, 2],
      leader: 1,
      leaderEpoch: 0,
      nowMs: 0,
    },
    { log },
  );
  replica.setMinInsync(2);
  const submitted: ControllerCommand['type'][] = [];
  let catchUp: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  const cluster = {
    brokerEpoch: () => 7,
    isLive: () => true,
    urlOf: () => undefined,
    submit: (command: ControllerCommand) => {
      submitted.push(command.type);
      // The controller committed the expansion, but its answer never came back.
      if (command.type === 'alterPartition')
        return Promise.reject(
          new SluiceError('NOT_CONTROLLER', 'no active controller took the alterPartition'),
        );
      return new Promise<void>((resolve, reject) => {
        catchUp = { resolve, reject };
      });
    },
  };
  const topics = {
    replicas: { all: () => [{ replica }][Symbol.iterator](), get: () => replica },
    topicId: () => 'topic-id',
  } as unknown as Topics;
  /** The in-sync set changes the leader counted (sluice_isr_changes_total). */
  const counted: string[] = [];
  const service = new ReplicationService(
    { nodeId: 1, replicaLagTimeMaxMs: LAG_MS, fetchMaxWaitMs: 100, fetchMaxBytes: 1 << 20 },
    {
      topics,
      cluster,
      transport: {} as ReplicaFetchTransport,
      clock,
      logger: quiet,
      countIsrChange: (change) => counted.push(change),
    },
  );
  service.start();
  const append = () => replica.appendAsLeader(batchOf([`v${log.logEndOffset}`]));
  const settle = async () => {
    for (let i = 0; i < 20; i++) await Promise.resolve();
  };
  return { clock, replica, service, append, submitted, settle, counted, catchUp: () => catchUp };
}

describe('an in-sync set proposal whose answer is lost', () => {
  it('keeps counting for the high watermark until the metadata has caught up', async () => {
    const { clock, replica, service, append, submitted, settle, counted, catchUp } = await leaderWithIsr12();
    try {
      await append();
      replica.followerFetched(2, 1, clock.monotonicMs(), 7);
      replica.followerFetched(3, 1, clock.monotonicMs(), 7);
      expect(replica.highWatermark).toBe(1);
      // Follower 3 has caught up: the leader proposes [1, 2, 3]; the answer is lost.
      clock.advance(LAG_MS);
      await settle();
      expect(submitted).toContain('alterPartition');
      expect(replica.proposedIsr).toEqual([1, 2, 3]);
      // Follower 3 stops; follower 2 fetches a new record. The set in force may hold 3.
      await append();
      replica.followerFetched(2, 2, clock.monotonicMs(), 7);
      expect(replica.proposedIsr).toEqual([1, 2, 3]);
      expect(replica.highWatermark).toBe(1);
      // Once caught up, the metadata shows what is in force: the proposal was not, and may go.
      expect(submitted).toContain('readIndex');
      catchUp()!.resolve();
      await settle();
      expect(replica.proposedIsr).toBeUndefined();
      expect(replica.highWatermark).toBe(2);
      // Nothing changed, so nothing is counted.
      expect(counted).toEqual([]);
    } finally {
      service.close();
    }
  });

  it('is counted once its metadata shows the controller committed it, answer or not', async () => {
    const { clock, replica, service, append, submitted, settle, counted, catchUp } = await leaderWithIsr12();
    try {
      await append();
      replica.followerFetched(2, 1, clock.monotonicMs(), 7);
      replica.followerFetched(3, 1, clock.monotonicMs(), 7);
      clock.advance(LAG_MS);
      await settle();
      expect(replica.proposedIsr).toEqual([1, 2, 3]);
      // The committed change reaches this node in the metadata; the answer never does.
      replica.setRole(
        { leader: 1, leaderEpoch: 0, replicas: [1, 2, 3], isr: [1, 2, 3], partitionEpoch: 1 },
        clock.monotonicMs(),
      );
      expect(submitted).toContain('readIndex');
      catchUp()?.resolve();
      await settle();
      expect(replica.inSyncReplicas).toEqual([1, 2, 3]);
      expect(counted).toEqual(['expand']);
    } finally {
      service.close();
    }
  });
});
