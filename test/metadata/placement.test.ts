import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/common/random.js';
import { type PlacementBroker, type PlacementRequest, placeReplicas } from '../../src/metadata/placement.js';

/**
 * Replica placement against a naive checker: distinct replicas, leaders and (where racks allow)
 * replicas spread to within one per broker, no shared rack while racks suffice, extras to the least
 * loaded, and the same answer for the same seed.
 */

type RackMode = 'none' | 'equal' | 'any';

const scenario = fc
  .record({
    mode: fc.constantFrom<RackMode>('none', 'equal', 'any'),
    rackCount: fc.integer({ min: 1, max: 5 }),
    perRack: fc.integer({ min: 1, max: 4 }),
    brokerCount: fc.integer({ min: 1, max: 12 }),
    rackPicks: fc.array(fc.nat(4), { minLength: 12, maxLength: 12 }),
    existing: fc.array(fc.nat(6), { minLength: 20, maxLength: 20 }),
    partitionCount: fc.integer({ min: 1, max: 60 }),
    rf: fc.nat(),
    seed: fc.nat(),
  })
  .map((s) => {
    let brokers: PlacementBroker[];
    if (s.mode === 'equal')
      brokers = Array.from({ length: s.rackCount * s.perRack }, (_, i) => ({
        brokerId: 100 + i,
        rack: `rack-${i % s.rackCount}`,
      }));
    else
      brokers = Array.from({ length: s.brokerCount }, (_, i) => ({
        brokerId: 100 + i,
        rack:
          s.mode === 'none' ? null : s.rackPicks[i]! === 4 ? null : `rack-${s.rackPicks[i]! % s.rackCount}`,
      }));
    const request: PlacementRequest = {
      brokers,
      partitionCount: s.partitionCount,
      replicationFactor: 1 + (s.rf % brokers.length),
      existingReplicaCounts: new Map(brokers.map((b, i) => [b.brokerId, s.existing[i]!])),
    };
    return { ...s, request };
  });

/** Everything the naive checker finds wrong with a placement; [] when it keeps every rule. */
function problems(request: PlacementRequest, placed: number[][], mode: RackMode): string[] {
  const out: string[] = [];
  const rackOf = new Map(request.brokers.map((b) => [b.brokerId, b.rack ?? `own-${b.brokerId}`]));
  const racks = new Set(rackOf.values());
  const sizes = [...racks].map((r) => [...rackOf.values()].filter((x) => x === r).length);
  const equalRacks = sizes.every((n) => n === sizes[0]);
  const replicas = new Map(request.brokers.map((b) => [b.brokerId, 0]));
  const leaders = new Map(request.brokers.map((b) => [b.brokerId, 0]));
  if (placed.length !== request.partitionCount) out.push(`${placed.length} partitions`);
  placed.forEach((row, p) => {
    if (row.length !== request.replicationFactor) out.push(`partition ${p} has ${row.length} replicas`);
    if (new Set(row).size !== row.length) out.push(`partition ${p} repeats a broker`);
    for (const id of row) {
      if (!replicas.has(id)) out.push(`partition ${p} names unknown broker ${id}`);
      else replicas.set(id, replicas.get(id)! + 1);
    }
    leaders.set(row[0]!, (leaders.get(row[0]!) ?? 0) + 1);
    const rowRacks = new Set(row.map((id) => rackOf.get(id)));
    const want = Math.min(request.replicationFactor, racks.size);
    if (rowRacks.size !== want) out.push(`partition ${p} covers ${rowRacks.size} racks, not ${want}`);
  });
  const spread = (m: Map<number, number>) => Math.max(...m.values()) - Math.min(...m.values());
  if (spread(leaders) > 1) out.push(`leader counts spread ${spread(leaders)}`);
  if ((mode !== 'any' || equalRacks) && spread(replicas) > 1)
    out.push(`replica counts spread ${spread(replicas)}`);
  if (mode === 'none') {
    // The extras go to the least loaded: a broker that got more here held no more before.
    const existing = request.existingReplicaCounts!;
    for (const [a, na] of replicas)
      for (const [b, nb] of replicas)
        if (na > nb && existing.get(a)! > existing.get(b)!) out.push(`broker ${a} got an extra over ${b}`);
  }
  return out;
}

describe('placeReplicas', () => {
  it('keeps every rule of the naive checker, for brokers with no racks, equal racks and any racks', () => {
    fc.assert(
      fc.property(scenario, ({ request, seed, mode }) => {
        const placed = placeReplicas(request, new SeededRandom(seed));
        expect(problems(request, placed, mode)).toEqual([]);
      }),
      { numRuns: 2000 },
    );
  });

  it('gives the same placement for the same seed, and spreads differently for another', () => {
    const request: PlacementRequest = {
      brokers: [1, 2, 3, 4, 5, 6].map((brokerId) => ({ brokerId, rack: null })),
      partitionCount: 12,
      replicationFactor: 3,
    };
    const a = placeReplicas(request, new SeededRandom(7));
    expect(placeReplicas(request, new SeededRandom(7))).toEqual(a);
    const others = [1, 2, 3, 4, 5].map((seed) =>
      JSON.stringify(placeReplicas(request, new SeededRandom(seed))),
    );
    expect(new Set([JSON.stringify(a), ...others]).size).toBeGreaterThan(1);
  });

  it('puts a lone broker of a rack in every partition when racks would be shared otherwise', () => {
    const request: PlacementRequest = {
      brokers: [
        { brokerId: 1, rack: 'a' },
        { brokerId: 2, rack: 'a' },
        { brokerId: 3, rack: 'a' },
        { brokerId: 4, rack: 'b' },
      ],
      partitionCount: 4,
      replicationFactor: 2,
    };
    const placed = placeReplicas(request, new SeededRandom(1));
    for (const row of placed) expect(row).toContain(4);
    expect(problems(request, placed, 'any')).toEqual([]);
  });

  it('refuses a replication factor above the live brokers, or below 1, and a bad partition count', () => {
    const brokers = [1, 2].map((brokerId) => ({ brokerId, rack: null }));
    const random = new SeededRandom(1);
    for (const replicationFactor of [3, 0, 1.5])
      expect(() => placeReplicas({ brokers, partitionCount: 1, replicationFactor }, random)).toThrow(
        expect.objectContaining({ code: 'INVALID_REPLICATION_FACTOR' }),
      );
    expect(() => placeReplicas({ brokers: [], partitionCount: 1, replicationFactor: 1 }, random)).toThrow(
      expect.objectContaining({ code: 'INVALID_REPLICATION_FACTOR' }),
    );
    for (const partitionCount of [0, 10_001, 2.5])
      expect(() => placeReplicas({ brokers, partitionCount, replicationFactor: 1 }, random)).toThrow(
        expect.objectContaining({ code: 'INVALID_PARTITIONS' }),
      );
    expect(() =>
      placeReplicas({ brokers: [...brokers, brokers[0]!], partitionCount: 1, replicationFactor: 1 }, random),
    ).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });
});
