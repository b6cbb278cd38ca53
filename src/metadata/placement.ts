import { assert } from '../common/assert.js';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import type { Random } from '../common/random.js';

/**
 * Where the replicas of a new topic go: pure, so that the controller's choice depends only on the
 * brokers it sees and its seeded Random. The first replica of each partition is its preferred
 * leader.
 *
 * What is guaranteed, within the one topic placed:
 * - the replicas of a partition are distinct brokers;
 * - leaders (first replicas) per broker differ by at most one;
 * - no two replicas of a partition share a rack while there are at least as many racks as the
 *   replication factor, and otherwise each partition covers every rack; a broker without a rack
 *   counts as a rack of its own;
 * - replicas per broker differ by at most one whenever every rack has the same number of brokers
 *   (which includes no racks at all). With racks of different sizes that can be impossible (one
 *   broker alone in a rack must take a replica of every partition to keep replicas off a shared
 *   rack), and the rack rule wins: replicas then go to the least loaded broker that keeps it.
 * - where counts cannot be equal, the extra replicas go to the brokers that hold the fewest
 *   replicas already (`existingReplicaCounts`), ties broken by the Random.
 */

export interface PlacementBroker {
  readonly brokerId: number;
  readonly rack: string | null;
}

export interface PlacementRequest {
  /** Live (unfenced) brokers. */
  readonly brokers: readonly PlacementBroker[];
  readonly partitionCount: number;
  readonly replicationFactor: number;
  /** Replicas each broker holds already, of other topics; a broker not in it holds none. */
  readonly existingReplicaCounts?: ReadonlyMap<number, number>;
}

function shuffle<T>(items: readonly T[], random: Random): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function checkRequest(request: PlacementRequest): void {
  const { brokers, partitionCount, replicationFactor } = request;
  if (!Number.isSafeInteger(partitionCount) || partitionCount < 1 || partitionCount > LIMITS.partitionsMax)
    throw new SluiceError(
      'INVALID_PARTITIONS',
      `a topic has 1 to ${LIMITS.partitionsMax} partitions, not ${partitionCount}`,
    );
  if (!Number.isSafeInteger(replicationFactor) || replicationFactor < 1)
    throw new SluiceError(
      'INVALID_REPLICATION_FACTOR',
      `replication factor ${replicationFactor} is not valid`,
    );
  if (replicationFactor > brokers.length)
    throw new SluiceError(
      'INVALID_REPLICATION_FACTOR',
      `replication factor ${replicationFactor} is larger than the ${brokers.length} live brokers`,
      { details: { replicationFactor, liveBrokers: brokers.length } },
    );
  const ids = new Set(brokers.map((b) => b.brokerId));
  if (ids.size !== brokers.length) throw new SluiceError('INVALID_REQUEST', 'a broker is listed twice');
}

/**
 * The brokers grouped by rack, each rack's brokers least loaded first, and racks by their least
 * loaded broker. Ties are broken by shuffles made before the (stable) sorts.
 */
function racksOf(request: PlacementRequest, random: Random): number[][] {
  const existing = (id: number) => request.existingReplicaCounts?.get(id) ?? 0;
  const byRack = new Map<string, number[]>();
  for (const broker of shuffle(request.brokers, random)) {
    // A broker without a rack is a rack of its own; the prefix keeps it apart from a named rack.
    const key = broker.rack === null ? `\u0000${broker.brokerId}` : `r${broker.rack}`;
    const rack = byRack.get(key);
    if (rack) rack.push(broker.brokerId);
    else byRack.set(key, [broker.brokerId]);
  }
  const racks = shuffle(
    [...byRack.values()].map((rack) => rack.sort((a, b) => existing(a) - existing(b))),
    random,
  );
  // Racks whose least loaded broker holds the least come first: the first positions take extras.
  return racks.sort((a, b) => existing(a[0]!) - existing(b[0]!));
}

/**
 * Racks of equal size k: lay the brokers out as rack 0's first, rack 1's first, ..., rack 0's
 * second, ... (any RF consecutive positions, wrapping, are RF distinct racks, or all of them) and
 * give partition p the RF positions from p × RF on. Filling positions in order is round-robin, so
 * replica counts differ by at most one, the extras landing on the first positions (the least
 * loaded of each rack). The leader is position p × RF + ⌊p / (n/g)⌋ mod g, g = gcd(RF, n): over any
 * n consecutive partitions from a multiple of n that visits every position exactly once, so leader
 * counts differ by at most one too.
 */
function placeEven(racks: number[][], partitionCount: number, replicationFactor: number): number[][] {
  const perRack = racks[0]!.length;
  const order: number[] = [];
  for (let i = 0; i < perRack; i++) for (const rack of racks) order.push(rack[i]!);
  const n = order.length;
  const g = gcd(replicationFactor, n);
  const out: number[][] = [];
  for (let p = 0; p < partitionCount; p++) {
    const base = p * replicationFactor;
    const leaderAt = Math.floor(p / (n / g)) % g;
    const row = [order[(base + leaderAt) % n]!];
    for (let j = 0; j < replicationFactor; j++) if (j !== leaderAt) row.push(order[(base + j) % n]!);
    out.push(row);
  }
  return out;
}

/**
 * Racks of different sizes: each partition's leader is a broker leading the fewest partitions so
 * far (so leader counts differ by at most one), and each further replica the least loaded broker
 * in a rack the partition does not use yet (any broker once every rack is used).
 */
function placeGreedy(racks: number[][], request: PlacementRequest): number[][] {
  const existing = (id: number) => request.existingReplicaCounts?.get(id) ?? 0;
  const rackOf = new Map<number, number>();
  const order: number[] = [];
  racks.forEach((rack, r) => {
    for (const id of rack) rackOf.set(id, r);
  });
  for (let i = 0; racks.some((rack) => i < rack.length); i++)
    for (const rack of racks) if (i < rack.length) order.push(rack[i]!);
  const replicas = new Map(order.map((id) => [id, 0]));
  const leaders = new Map(order.map((id) => [id, 0]));
  const least = (candidates: number[], first: (id: number) => number) =>
    candidates.reduce((best, id) => {
      const d =
        first(id) - first(best) || replicas.get(id)! - replicas.get(best)! || existing(id) - existing(best);
      return d < 0 ? id : best;
    });
  const out: number[][] = [];
  for (let p = 0; p < request.partitionCount; p++) {
    const leader = least(order, (id) => leaders.get(id)!);
    const row = [leader];
    const usedRacks = new Set([rackOf.get(leader)!]);
    while (row.length < request.replicationFactor) {
      const free = order.filter((id) => !row.includes(id));
      const newRack = free.filter((id) => !usedRacks.has(rackOf.get(id)!));
      const next = least(newRack.length > 0 ? newRack : free, () => 0);
      row.push(next);
      usedRacks.add(rackOf.get(next)!);
    }
    leaders.set(leader, leaders.get(leader)! + 1);
    for (const id of row) replicas.set(id, replicas.get(id)! + 1);
    out.push(row);
  }
  return out;
}

/**
 * The replicas of each partition, partition 0 first, preferred leader first. INVALID_REPLICATION_FACTOR
 * when the factor is below 1 or above the number of live brokers; INVALID_PARTITIONS for a count
 * outside [1, partitionsMax].
 */
export function placeReplicas(request: PlacementRequest, random: Random): number[][] {
  checkRequest(request);
  const racks = racksOf(request, random);
  const even = racks.every((rack) => rack.length === racks[0]!.length);
  const placed = even
    ? placeEven(racks, request.partitionCount, request.replicationFactor)
    : placeGreedy(racks, request);
  assert(placed.length === request.partitionCount, 'one row per partition');
  for (const row of placed)
    assert(new Set(row).size === request.replicationFactor, 'replicas of a partition are distinct');
  return placed;
}
