import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import { LIMITS } from '../../src/common/limits.js';
import { SeededRandom } from '../../src/common/random.js';
import { type PlacementRequest, placeReplicas } from '../../src/metadata/placement.js';

/**
 * The rules of placement.ts that the property test of placement.test.ts leaves loose: the partition
 * count at its limit; each refusal's code, message and details; within a rack the least loaded
 * broker first (it takes the extra replicas); with racks of different sizes, a leader tie broken
 * by the replicas placed so far and then by the replicas held already.
 */

const noRacks = (...ids: number[]) => ids.map((brokerId) => ({ brokerId, rack: null }));

function refusal(code: string, request: PlacementRequest): { message: string; details: unknown } {
  try {
    placeReplicas(request, new SeededRandom(1));
  } catch (error) {
    if (isSluiceError(error, code as never)) return { message: error.message, details: error.details };
    throw error;
  }
  throw new Error(`expected ${code}, the placement was made`);
}

describe('placement refusals and limits', () => {
  it(`places ${LIMITS.partitionsMax} partitions, and refuses one more naming the range`, () => {
    const brokers = noRacks(1);
    expect(
      placeReplicas(
        { brokers, partitionCount: LIMITS.partitionsMax, replicationFactor: 1 },
        new SeededRandom(1),
      ),
    ).toHaveLength(LIMITS.partitionsMax);
    expect(
      refusal('INVALID_PARTITIONS', {
        brokers,
        partitionCount: LIMITS.partitionsMax + 1,
        replicationFactor: 1,
      }),
    ).toEqual({
      message: `a topic has 1 to ${LIMITS.partitionsMax} partitions, not ${LIMITS.partitionsMax + 1}`,
      details: {},
    });
  });

  it('says why a replication factor is refused, with the live brokers as details when there are too few', () => {
    expect(
      refusal('INVALID_REPLICATION_FACTOR', {
        brokers: noRacks(1, 2),
        partitionCount: 1,
        replicationFactor: 0,
      }),
    ).toEqual({
      message: 'replication factor 0 is not valid',
      details: {},
    });
    expect(
      refusal('INVALID_REPLICATION_FACTOR', {
        brokers: noRacks(1, 2),
        partitionCount: 1,
        replicationFactor: 3,
      }),
    ).toEqual({
      message: 'replication factor 3 is larger than the 2 live brokers',
      details: { replicationFactor: 3, liveBrokers: 2 },
    });
    expect(
      refusal('INVALID_REQUEST', { brokers: noRacks(1, 1), partitionCount: 1, replicationFactor: 1 }),
    ).toEqual({
      message: 'a broker is listed twice',
      details: {},
    });
  });
});

describe('load within racks', () => {
  it('gives the extra replicas to the least loaded broker of each rack, whatever the seed', () => {
    const request: PlacementRequest = {
      brokers: [
        { brokerId: 1, rack: 'a' },
        { brokerId: 2, rack: 'a' },
        { brokerId: 3, rack: 'b' },
        { brokerId: 4, rack: 'b' },
      ],
      partitionCount: 2,
      replicationFactor: 1,
      existingReplicaCounts: new Map([
        [1, 5],
        [2, 0],
        [3, 5],
        [4, 0],
      ]),
    };
    for (let seed = 1; seed <= 20; seed++)
      expect(placeReplicas(request, new SeededRandom(seed)).flat().sort()).toEqual([2, 4]);
  });

  it('with racks of different sizes, breaks a leader tie by the replicas placed so far, then by those held already', () => {
    // Rack a holds 1 (0 held) and 2 (2 held), rack b holds 3 (1 held): positions 1, 3, 2.
    const held = new Map([
      [1, 0],
      [2, 2],
      [3, 1],
    ]);
    const brokers = [
      { brokerId: 1, rack: 'a' },
      { brokerId: 2, rack: 'a' },
      { brokerId: 3, rack: 'b' },
    ];
    for (let seed = 1; seed <= 10; seed++) {
      const random = new SeededRandom(seed);
      // Partition 1: 3 and 2 lead nothing; 3 has a replica of partition 0 already, so 2 leads.
      expect(
        placeReplicas(
          { brokers, partitionCount: 2, replicationFactor: 2, existingReplicaCounts: held },
          random,
        ),
      ).toEqual([
        [1, 3],
        [2, 3],
      ]);
      // One replica each: 3 and 2 tie on this placement; 2 holds fewer already (1 against 5), so 2 leads.
      expect(
        placeReplicas(
          {
            brokers,
            partitionCount: 2,
            replicationFactor: 1,
            existingReplicaCounts: new Map([
              [1, 0],
              [2, 1],
              [3, 5],
            ]),
          },
          random,
        ),
      ).toEqual([[1], [2]]);
    }
  });
});
