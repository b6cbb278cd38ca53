import { defineConfig } from 'vitest/config';

/**
 * The second mutation pass on src/raft/core.ts (stryker/raft-sim.config.mjs): the Raft unit tests
 * and the simulation. 200 simulation seeds per mutant instead of CI's 2,000, to keep the pass within
 * minutes; a mutant the simulation catches is usually caught within the first few hundred seeds.
 */
export default defineConfig({
  test: {
    include: ['test/raft/**/*.test.ts', 'test/sim/**/*.test.ts'],
    env: { SIM_SEEDS: '200' },
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});
