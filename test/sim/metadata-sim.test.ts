import { describe, expect, it } from 'vitest';
import { nodesFor } from './cluster.js';
import {
  type MetadataSeedResult,
  MetadataSim,
  metadataReplayCommand,
  runMetadataSeed,
} from './metadata-sim.js';

/**
 * The seeded simulation of the metadata layer (see metadata-sim.ts): controllers and brokers on 3-
 * and 5-node simulated Raft clusters under the Raft simulation's faults. Invariants are checked on
 * every image every node applies; each seed ends healed and converged, then fences a broker cut off
 * from the controller and takes it back. A failure names its seed and the command that replays it.
 * SEEDS=n runs more seeds here; `SEEDS=2000 npm run sim:metadata` is the soak.
 */
const SEEDS = Number(process.env.SEEDS ?? 200);
const CHUNK = 50;
/** A chunk takes about 4 s on a loaded two-core machine; the limit leaves room for a worse one. */
const CHUNK_TIMEOUT_MS = 90_000;

type Count = Exclude<keyof MetadataSeedResult, 'traceHash' | 'underFaults' | 'finalCut'>;
const sum = (results: MetadataSeedResult[], key: Count) => results.reduce((total, r) => total + r[key], 0);
const sumUnderFaults = (results: MetadataSeedResult[], key: keyof MetadataSeedResult['underFaults']) =>
  results.reduce((total, r) => total + r.underFaults[key], 0);

describe('metadata simulation: controllers and brokers on the simulated Raft cluster', () => {
  for (let from = 1; from <= SEEDS; from += CHUNK) {
    const to = Math.min(SEEDS, from + CHUNK - 1);
    it(
      `seeds ${from}..${to} keep every invariant, converge after healing and fence a broker cut off`,
      async () => {
        const failures: string[] = [];
        const results: MetadataSeedResult[] = [];
        for (let seed = from; seed <= to; seed++) {
          try {
            results.push(await runMetadataSeed(seed));
          } catch (error) {
            failures.push(`${(error as Error).message}\n  replay: ${metadataReplayCommand(seed)}`);
            if (failures.length >= 5) break;
          }
        }
        expect(failures).toEqual([]);
        // The schedules do exercise what they claim to, under faults and at the end.
        const seeds = to - from + 1;
        expect(sumUnderFaults(results, 'topicsCreated')).toBeGreaterThan(seeds);
        expect(sumUnderFaults(results, 'registrations')).toBeGreaterThan(seeds);
        expect(sumUnderFaults(results, 'fences')).toBeGreaterThan(0);
        expect(sumUnderFaults(results, 'liveRestarts')).toBeGreaterThan(0);
        expect(sumUnderFaults(results, 'leaderlessElected')).toBeGreaterThan(0);
        expect(sum(results, 'fences')).toBeGreaterThanOrEqual(seeds);
        expect(sum(results, 'leaderlessElected')).toBeGreaterThan(seeds / 2);
        expect(sum(results, 'topicsDeleted')).toBeGreaterThan(0);
        expect(sum(results, 'partitionsAdded')).toBeGreaterThan(0);
        expect(sum(results, 'leadersMoved')).toBeGreaterThan(0);
        expect(sum(results, 'leadersLost')).toBeGreaterThan(0);
        expect(sum(results, 'replicationRefused')).toBeGreaterThan(0);
        // Reassignments run under the faults too: started, completed by the catch-up reports, cancelled.
        expect(sum(results, 'reassignmentsAsked')).toBeGreaterThan(seeds);
        expect(sum(results, 'reassignmentsCompleted')).toBeGreaterThan(0);
        expect(sum(results, 'reassignmentsCancelled')).toBeGreaterThan(0);
        expect(sum(results, 'producerIdBlocks')).toBeGreaterThan(seeds);
        if (seeds >= 40) expect(new Set(results.map((r) => r.finalCut)).size).toBe(4);
      },
      CHUNK_TIMEOUT_MS,
    );
  }

  it('is deterministic: each seed run twice gives the same trace', async () => {
    for (let seed = 1; seed <= 4; seed++) {
      const first = await runMetadataSeed(seed);
      const second = await runMetadataSeed(seed);
      expect(second.traceHash, `seed ${seed}`).toBe(first.traceHash);
    }
  }, 60_000);

  for (const unsafe of ['fenceKeepsLeaders', 'registerKeepsLeaders'] as const) {
    it(`has teeth: a controller that ${unsafe === 'fenceKeepsLeaders' ? 'fences' : 'registers a restarted broker'} without moving its leaderships is caught`, async () => {
      const caught: string[] = [];
      for (let seed = 1; seed <= 50 && caught.length === 0; seed++) {
        try {
          await new MetadataSim({ seed, nodes: nodesFor(seed), unsafe }).run();
        } catch (error) {
          caught.push((error as Error).message);
        }
      }
      expect(caught.join('\n')).toMatch(/is led by broker \d+, which is fenced/);
    }, 60_000);
  }
});
