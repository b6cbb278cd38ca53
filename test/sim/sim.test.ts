import { describe, expect, it } from 'vitest';
import { nodesFor, replayCommand, runSeed, runSeedTwice, type SeedResult, SimCluster } from './cluster.js';

/**
 * The seeded simulation of real RaftDrivers (see cluster.ts): 3- and 5-node clusters under drops,
 * duplicates, long-tail delays, partitions, the stale-tail pattern, pauses, crashes that lose
 * unsynced writes, failed saves and lost disks, each node's clock at its own rate. Invariants are
 * checked after every simulated millisecond; a failure names its seed and the command that
 * replays it. SEEDS=n runs more seeds here; `SEEDS=20000 npm run sim` is the soak.
 */
const SEEDS = Number(process.env.SEEDS ?? 1200);
const CHUNK = 200;
/** A chunk takes about 4 s on a quiet machine; the limit leaves room for a loaded 2-core one. */
const CHUNK_TIMEOUT_MS = 90_000;

function sum(results: SeedResult[], key: keyof Omit<SeedResult, 'traceHash'>): number {
  return results.reduce((total, r) => total + r[key], 0);
}

describe('Raft simulation with the real driver', () => {
  for (let from = 1; from <= SEEDS; from += CHUNK) {
    const to = Math.min(SEEDS, from + CHUNK - 1);
    it(
      `seeds ${from}..${to} keep every invariant and catch up after healing`,
      async () => {
        const failures: string[] = [];
        const results: SeedResult[] = [];
        for (let seed = from; seed <= to; seed++) {
          try {
            results.push(await runSeed(seed));
          } catch (error) {
            failures.push(`${(error as Error).message}\n  replay: ${replayCommand(seed)}`);
            if (failures.length >= 5) break;
          }
        }
        expect(failures).toEqual([]);
        // The schedules do exercise what they claim to.
        const seeds = to - from + 1;
        expect(sum(results, 'committed')).toBeGreaterThan(10 * seeds);
        expect(sum(results, 'reads')).toBeGreaterThan(seeds);
        expect(sum(results, 'adminOps')).toBeGreaterThan(seeds);
        expect(sum(results, 'pauses')).toBeGreaterThan(seeds / 2);
        expect(sum(results, 'failedSaves')).toBeGreaterThan(seeds / 4);
        expect(sum(results, 'longTail')).toBeGreaterThan(seeds);
        expect(sum(results, 'staleTail')).toBeGreaterThan(0);
      },
      CHUNK_TIMEOUT_MS,
    );
  }

  it('is deterministic: each seed run twice gives the same trace', async () => {
    for (let seed = 1; seed <= 6; seed++) await runSeedTwice(seed);
  }, 60_000);

  it('has teeth: a disk that acknowledges saves before they are durable is caught', async () => {
    const caught: string[] = [];
    for (let seed = 1; seed <= 200 && caught.length === 0; seed++) {
      try {
        await new SimCluster({ seed, nodes: nodesFor(seed), unsafe: 'lyingDisk' }).run();
      } catch (error) {
        caught.push((error as Error).message);
      }
    }
    expect(caught.join('\n')).toMatch(
      /commit durability|election safety|state machine safety|log matching|committed entries differ|was lost/,
    );
  }, 60_000);

  it('has teeth: a node back with empty storage that may vote again is caught; refused, it is not', async () => {
    const caught: string[] = [];
    let refused = 0;
    for (let seed = 1; seed <= 400 && caught.length === 0; seed++) {
      try {
        await new SimCluster({ seed, nodes: nodesFor(seed), admin: false, unsafe: 'wipeRejoins' }).run();
      } catch (error) {
        caught.push((error as Error).message);
        refused += (await runSeed(seed, { admin: false })).refused;
      }
    }
    expect(caught.join('\n')).toMatch(
      /commit durability|election safety|state machine safety|log matching|committed entries differ|was lost/,
    );
    expect(refused).toBeGreaterThan(0);
  }, 90_000);
});
