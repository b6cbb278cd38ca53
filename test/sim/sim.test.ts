import { describe, expect, it } from 'vitest';
import { replayCommand, runSeed, SimCluster } from './cluster.js';

/**
 * 2,000 seeds of 3- and 5-node clusters under drops, delays, duplicates, reordering, symmetric
 * and one-way partitions, and crashes that lose unsynced writes. Each seed runs twice and both
 * traces must hash the same. Invariants are checked after every event inside the simulation;
 * a failure names its seed and the command that replays it.
 */
const SEEDS = Number(process.env.SIM_SEEDS ?? 2000);

describe('Raft simulation', () => {
  for (const [from, to] of [
    [1, Math.floor(SEEDS / 2)],
    [Math.floor(SEEDS / 2) + 1, SEEDS],
  ] as const) {
    it(`seeds ${from}..${to} keep every invariant and recover after healing`, () => {
      const failures: string[] = [];
      let committed = 0;
      let reads = 0;
      let adminOps = 0;
      for (let seed = from; seed <= to; seed++) {
        try {
          const result = runSeed(seed);
          committed += result.committed;
          reads += result.reads;
          adminOps += result.adminOps;
        } catch (error) {
          failures.push(`${(error as Error).message}\n  replay: ${replayCommand(seed)}`);
          if (failures.length >= 5) break;
        }
      }
      expect(failures).toEqual([]);
      expect(committed).toBeGreaterThan(to - from);
      // The schedules do exercise reads, transfers and membership changes.
      expect(reads).toBeGreaterThan(to - from);
      expect(adminOps).toBeGreaterThan(to - from);
    });
  }

  it('has teeth: a driver that sends vote grants and acknowledgements before its write is caught', () => {
    const caught: string[] = [];
    for (let seed = 1; seed <= 300 && caught.length < 2; seed++) {
      try {
        new SimCluster({ seed, nodes: seed % 3 === 0 ? 5 : 3, unsafeSendBeforePersist: true }).run();
      } catch (error) {
        const message = (error as Error).message;
        if (/election safety|log matching|leader completeness|state machine safety/.test(message))
          caught.push(message);
      }
    }
    expect(caught.length).toBeGreaterThan(0);
  });

  // Seeds that once failed. The simulation has grown since (storage model, membership changes,
  // transfers, reads), so 264 and 237 no longer replay their original schedule. The core faults
  // (264, 269, 546) are pinned down by rule tests in test/raft/rules.test.ts; 237 was a fault in
  // the simulation's own check (it compared terms across a crash instead of persisted terms).
  it('regression: seed 264 stalled when lost appends filled the pipeline (a heartbeat answer now frees a slot)', () => {
    expect(runSeed(264).committed).toBeGreaterThan(0);
  });

  it('regression: seed 237 crashes before a new term is persisted; only the persisted term must never go back', () => {
    expect(runSeed(237).committed).toBeGreaterThan(0);
  });

  it('regression: seed 269 lost a snapshot and the follower in the new configuration was never caught up', () => {
    expect(runSeed(269).committed).toBeGreaterThan(0);
  });

  it('regression: seed 546 reached voters {4, 5} where node 4 refused to vote for a candidate it did not know as a voter', () => {
    expect(runSeed(546).committed).toBeGreaterThan(0);
  });
});
