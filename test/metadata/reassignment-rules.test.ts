import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import { type PartitionImage, replay } from '../../src/metadata/image.js';
import {
  cancellation,
  checkTarget,
  completion,
  decommissionTargets,
  requireReassignmentVersion,
  startReassignment,
} from '../../src/metadata/reassignment.js';
import { RECORD_LIMITS } from '../../src/metadata/records.js';
import { type BrokerSpec, buildImage, oneTopic, TOPIC_ID, topicId } from './rules-image.js';

/**
 * The rules of reassignment.ts one by one, on images replayed from hand-written records (no
 * controller in between): a completion's in-sync set is the target's in-sync members, it waits
 * while no target replica is in sync or (when the leader must move) none is live, it keeps a
 * leader in the target (and a leaderless partition leaderless) and moves a removed one to the
 * first live in-sync target replica, writing a leader field only when the leader changes;
 * cancellation takes the adding replicas out of replicas, in-sync set and leadership; the target
 * checks at their edges; the decommission plan (only partitions on the broker, a live broker not
 * in the partition, a rack it does not use, the least loaded counting the plan so far, the lowest
 * id); every refusal's code, message and details.
 */

const live = (...ids: number[]): BrokerSpec[] => ids.map((id) => ({ id }));

function refusal(code: string, run: () => unknown): { message: string; details: Record<string, unknown> } {
  try {
    run();
  } catch (error) {
    if (isSluiceError(error, code as never)) return { message: error.message, details: error.details };
    throw error;
  }
  throw new Error(`expected ${code}, nothing was refused`);
}

const part = (image: ReturnType<typeof oneTopic>, partition = 0): PartitionImage =>
  image.partition(TOPIC_ID, partition)!;

describe('completion', () => {
  it('cuts the in-sync set to the target members in sync, in target order', () => {
    // Target [4, 1]: 4 (added) is in sync, 1 is not; 2 is being removed.
    const image = oneTopic(live(1, 2, 4), [
      { replicas: [4, 1, 2], isr: [2, 4], leader: 2, addingReplicas: [4], removingReplicas: [2] },
    ]);
    expect(completion(image, part(image))).toEqual({
      type: 'partitionChange',
      version: 1,
      topicId: TOPIC_ID,
      partition: 0,
      replicas: [4, 1],
      isr: [4],
      leader: 4,
      addingReplicas: [],
      removingReplicas: [],
    });
  });

  it('waits while no replica of the target is in sync (a shrink whose kept replica lags)', () => {
    const image = oneTopic(live(1, 2, 3), [
      { replicas: [3, 1, 2], isr: [1, 2], leader: 1, addingReplicas: [], removingReplicas: [1, 2] },
    ]);
    expect(completion(image, part(image))).toBeUndefined();
  });

  it('keeps a leader that stays in the target, with no leader field (no new leader epoch)', () => {
    // The leader 2 is not the first in-sync replica of the target: it still stays.
    const image = oneTopic(live(1, 2, 3), [
      { replicas: [1, 2, 3], isr: [1, 2, 3], leader: 2, addingReplicas: [], removingReplicas: [3] },
    ]);
    const change = completion(image, part(image))!;
    expect(change).not.toHaveProperty('leader');
    expect(change).toMatchObject({ replicas: [1, 2], isr: [1, 2] });
    expect(replay(image, change, image.lastOffset + 1).partition(TOPIC_ID, 0)!.leaderEpoch).toBe(0);
  });

  it('completes a leaderless partition and leaves it leaderless: completion elects no one', () => {
    const image = oneTopic(
      [{ id: 1, fenced: true }, { id: 2, fenced: true }, { id: 3 }],
      [{ replicas: [1, 2, 3], isr: [1, 2], leader: -1, addingReplicas: [], removingReplicas: [3] }],
    );
    const change = completion(image, part(image))!;
    expect(change).toMatchObject({ replicas: [1, 2], isr: [1, 2] });
    expect(change).not.toHaveProperty('leader');
  });

  it('moves a removed leader to the first live in-sync target replica, passing over fenced and unregistered ones', () => {
    const image = oneTopic(
      [{ id: 1 }, { id: 4, fenced: true }, { id: 5 }, { id: 6 }],
      [{ replicas: [6, 4, 5, 1], isr: [1, 6, 4, 5], leader: 1, addingReplicas: [], removingReplicas: [1] }],
    );
    // 6, the first in-sync target replica, unregisters; 4 is fenced; 5 leads.
    const gone = replay(
      image,
      { type: 'unregisterBroker', version: 0, brokerId: 6, brokerEpoch: image.broker(6)!.brokerEpoch },
      image.lastOffset + 1,
    );
    expect(gone.broker(6)).toBeUndefined();
    expect(completion(gone, part(gone))).toMatchObject({ leader: 5, isr: [6, 4, 5], replicas: [6, 4, 5] });
  });

  it('waits, rather than take the partition offline, when every in-sync target replica is fenced', () => {
    const image = oneTopic(
      [{ id: 1 }, { id: 2, fenced: true }, { id: 3, fenced: true }],
      [{ replicas: [2, 3, 1], isr: [1, 2, 3], leader: 1, addingReplicas: [], removingReplicas: [1] }],
    );
    expect(completion(image, part(image))).toBeUndefined();
  });
});

describe('start', () => {
  it('writes replicas = target ++ removed and the in-sync set in that order, version 1', () => {
    const image = oneTopic(live(1, 2, 3, 4), [{ replicas: [1, 2, 3], isr: [3, 1, 2], leader: 1 }]);
    expect(startReassignment(image, part(image), [4, 2, 1])).toEqual({
      type: 'partitionChange',
      version: 1,
      topicId: TOPIC_ID,
      partition: 0,
      replicas: [4, 2, 1, 3],
      isr: [2, 1, 3],
      addingReplicas: [4],
      removingReplicas: [3],
    });
  });

  it('a reorder is a version 0 change of replicas and in-sync order; the same order is no change', () => {
    const image = oneTopic(live(1, 2, 3), [{ replicas: [1, 2, 3], isr: [1, 2, 3], leader: 1 }]);
    expect(startReassignment(image, part(image), [3, 1, 2])).toEqual({
      type: 'partitionChange',
      version: 0,
      topicId: TOPIC_ID,
      partition: 0,
      replicas: [3, 1, 2],
      isr: [3, 1, 2],
    });
    expect(startReassignment(image, part(image), [1, 2, 3])).toBeUndefined();
  });
});

describe('cancellation', () => {
  it('takes the adding replicas out of replicas and the in-sync set, and hands an adding leader back to the first live original', () => {
    const image = oneTopic(
      [{ id: 1, fenced: true }, { id: 2 }, { id: 3 }, { id: 4 }, { id: 5 }],
      [
        {
          replicas: [4, 5, 1, 2, 3],
          isr: [4, 1, 2],
          leader: 4,
          addingReplicas: [4, 5],
          removingReplicas: [3],
        },
      ],
    );
    expect(cancellation(image, part(image), 't')).toEqual({
      type: 'partitionChange',
      version: 1,
      topicId: TOPIC_ID,
      partition: 0,
      replicas: [1, 2, 3],
      isr: [1, 2],
      leader: 2,
      addingReplicas: [],
      removingReplicas: [],
    });
  });

  it('keeps an original leader (no leader field), and a leaderless partition leaderless', () => {
    for (const leader of [2, -1]) {
      const brokers: BrokerSpec[] = [{ id: 1 }, { id: 2, fenced: leader === -1 }, { id: 4 }];
      const image = oneTopic(brokers, [
        {
          replicas: [4, 1, 2],
          isr: leader === -1 ? [2] : [2, 1],
          leader,
          addingReplicas: [4],
          removingReplicas: [1, 2],
        },
      ]);
      const change = cancellation(image, part(image), 't');
      expect(change).not.toHaveProperty('leader');
      expect(change.replicas).toEqual([1, 2]);
    }
  });

  it('an adding leader whose originals in sync are all fenced leaves the partition leaderless', () => {
    const image = oneTopic(
      [{ id: 1, fenced: true }, { id: 2 }, { id: 4 }, { id: 5 }],
      [{ replicas: [4, 5, 1, 2], isr: [4, 1], leader: 4, addingReplicas: [4, 5], removingReplicas: [1, 2] }],
    );
    expect(cancellation(image, part(image), 't')).toMatchObject({ leader: -1, isr: [1] });
  });

  it('refuses when no original replica is in sync any more, and when nothing is in progress', () => {
    const image = oneTopic(live(1, 4, 5), [
      { replicas: [4, 5, 1], isr: [4], leader: 4, addingReplicas: [4, 5], removingReplicas: [1] },
      { replicas: [1], isr: [1], leader: 1 },
    ]);
    expect(refusal('INVALID_REQUEST', () => cancellation(image, part(image), 't'))).toEqual({
      message:
        'cancelling the reassignment of t/0 would leave no in-sync replica: every original replica has fallen out of sync',
      details: { topic: 't', partition: 0 },
    });
    expect(refusal('NO_REASSIGNMENT_IN_PROGRESS', () => cancellation(image, part(image, 1), 't'))).toEqual({
      message: 'no reassignment of t/1 is in progress',
      details: { topic: 't', partition: 1 },
    });
  });
});

describe('the target checks', () => {
  const many = buildImage(Array.from({ length: RECORD_LIMITS.replicasMax + 1 }, (_, i) => ({ id: i + 1 })));
  const ids = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

  it(`accepts ${RECORD_LIMITS.replicasMax} registered replicas and refuses one more, naming the limit`, () => {
    expect(() => checkTarget(many, 't', 0, ids(RECORD_LIMITS.replicasMax))).not.toThrow();
    expect(
      refusal('INVALID_REPLICA_ASSIGNMENT', () =>
        checkTarget(many, 't', 0, ids(RECORD_LIMITS.replicasMax + 1)),
      ),
    ).toEqual({
      message: `t/0: at most ${RECORD_LIMITS.replicasMax} replicas, got ${RECORD_LIMITS.replicasMax + 1}`,
      details: { topic: 't', partition: 0 },
    });
  });

  it('names the topic, the partition and what is wrong: empty, repeated ids, an unregistered broker', () => {
    expect(refusal('INVALID_REPLICA_ASSIGNMENT', () => checkTarget(many, 'orders', 3, []))).toEqual({
      message: 'orders/3: the target replicas are empty',
      details: { topic: 'orders', partition: 3 },
    });
    expect(refusal('INVALID_REPLICA_ASSIGNMENT', () => checkTarget(many, 'orders', 3, [2, 1, 2]))).toEqual({
      message: 'orders/3: broker ids repeat in 2,1,2',
      details: { topic: 'orders', partition: 3 },
    });
    expect(refusal('INVALID_REPLICA_ASSIGNMENT', () => checkTarget(many, 'orders', 3, [1, 99]))).toEqual({
      message: 'orders/3: broker 99 is not registered',
      details: { topic: 'orders', partition: 3, brokerId: 99 },
    });
  });

  it('needs metadata.version 2, and says the cluster’s level', () => {
    const old = buildImage(live(1), [], 1);
    expect(refusal('UNSUPPORTED_VERSION', () => requireReassignmentVersion(old))).toEqual({
      message: 'reassignment needs metadata.version 2; this cluster is at 1',
      details: { metadataVersion: 1 },
    });
    expect(() => requireReassignmentVersion(many)).not.toThrow();
  });
});

describe('the decommission plan', () => {
  it('plans only the partitions on the broker, each with its partition epoch', () => {
    const image = oneTopic(live(1, 2, 3), [{ replicas: [1, 2], partitionEpoch: 7 }, { replicas: [2, 3] }]);
    expect(decommissionTargets(image, 1)).toEqual([
      { topic: 't', partition: 0, replicas: [3, 2], partitionEpoch: 7 },
    ]);
  });

  it('never picks a fenced broker, even the least loaded with the lowest id', () => {
    const image = oneTopic(
      [{ id: 1 }, { id: 2, fenced: true }, { id: 3 }, { id: 9 }],
      [{ replicas: [1, 3] }],
    );
    expect(decommissionTargets(image, 1).map((p) => p.replicas)).toEqual([[9, 3]]);
  });

  it('prefers a rack the partition’s other replicas do not use over a lighter broker; the emptied broker’s rack is free', () => {
    const image = buildImage(
      [
        { id: 1, rack: 'a' },
        { id: 2, rack: 'b' },
        { id: 3, rack: 'b' },
        { id: 4, rack: 'a' },
        { id: 5, rack: 'c' },
      ],
      [
        // Broker 3 (rack b, the other replica's) is the lightest; 4 (rack a, the emptied broker's) and
        // 5 (rack c) are free racks; 4 holds less than 5.
        { name: 't', topicId: TOPIC_ID, partitions: [{ replicas: [1, 2] }] },
        { name: 'u', topicId: topicId(2), partitions: [{ replicas: [5, 2] }, { replicas: [5, 2] }] },
      ],
    );
    expect(decommissionTargets(image, 1).map((p) => p.replicas)).toEqual([[4, 2]]);
  });

  it('counts a broker without a rack as a rack of its own', () => {
    // Partition [1, 2], no racks: 3 (no rack, lightest) is a new rack; 4 (rack z) holds more.
    const image = buildImage(
      [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4, rack: 'z' }],
      [
        { name: 't', topicId: TOPIC_ID, partitions: [{ replicas: [1, 2] }] },
        { name: 'u', topicId: topicId(2), partitions: [{ replicas: [4] }] },
      ],
    );
    expect(decommissionTargets(image, 1).map((p) => p.replicas)).toEqual([[3, 2]]);
  });

  it('picks the least loaded broker, counting other topics’ replicas and the moves planned so far, then the lowest id', () => {
    const image = buildImage(live(1, 2, 3, 4, 5), [
      // Broker 1 holds partitions 0-2 of t; 3 is the most loaded (three replicas of u).
      { name: 't', topicId: TOPIC_ID, partitions: [{ replicas: [1] }, { replicas: [1] }, { replicas: [1] }] },
      {
        name: 'u',
        topicId: topicId(2),
        partitions: [{ replicas: [3, 2] }, { replicas: [3] }, { replicas: [3] }],
      },
    ]);
    // Loads: 2 has 1, 3 has 3, 4 and 5 none. Moves: 4 (lightest, lower id), 5, then 2 (1) before 4 (1).
    expect(decommissionTargets(image, 1).map((p) => p.replicas)).toEqual([[4], [5], [2]]);
  });

  it('counts the replicas a partition moving elsewhere will have, not those it is losing', () => {
    const image = buildImage(live(1, 2, 3, 4), [
      { name: 't', topicId: TOPIC_ID, partitions: [{ replicas: [1] }] },
      // u/0 moves from 2 to 4: 4 counts one replica, 2 none.
      {
        name: 'u',
        topicId: topicId(2),
        partitions: [{ replicas: [4, 2], isr: [2], leader: 2, addingReplicas: [4], removingReplicas: [2] }],
      },
    ]);
    expect(decommissionTargets(image, 1).map((p) => p.replicas)).toEqual([[2]]);
  });

  it('leaves a partition already moving off the broker out of the plan, and refuses one whose target keeps it', () => {
    const moving = oneTopic(live(1, 2, 3), [
      { replicas: [2, 1], isr: [1], leader: 1, addingReplicas: [2], removingReplicas: [1] },
    ]);
    expect(decommissionTargets(moving, 1)).toEqual([]);
    const keeping = oneTopic(live(1, 2, 3), [
      { replicas: [1, 2], isr: [1], leader: 1, addingReplicas: [2], removingReplicas: [] },
    ]);
    expect(refusal('REASSIGNMENT_IN_PROGRESS', () => decommissionTargets(keeping, 1))).toEqual({
      message: 't/0 is being reassigned to 1,2, which keeps broker 1: cancel that first',
      details: { topic: 't', partition: 0 },
    });
  });

  it('refuses when no live broker outside the partition remains, and for a broker not registered', () => {
    const image = oneTopic([{ id: 1 }, { id: 2 }, { id: 3, fenced: true }], [{ replicas: [1, 2] }]);
    expect(refusal('INVALID_REPLICATION_FACTOR', () => decommissionTargets(image, 1))).toEqual({
      message: 't/0 has replication factor 2: without broker 1 only 1 live broker(s) remain',
      details: { topic: 't', partition: 0, availableBrokers: 1 },
    });
    expect(refusal('INVALID_REPLICA_ASSIGNMENT', () => decommissionTargets(image, 8))).toEqual({
      message: 'broker 8 is not registered',
      details: { brokerId: 8 },
    });
  });
});
