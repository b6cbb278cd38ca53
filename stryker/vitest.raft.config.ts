import { defineConfig } from 'vitest/config';

/** The tests that guard src/raft/core.ts, for mutation testing (stryker/raft.config.mjs). */
export default defineConfig({
  test: {
    include: ['test/raft/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
