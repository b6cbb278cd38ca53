import { defineConfig } from 'vitest/config';

/** The tests that guard src/protocol/batch.ts, for mutation testing (stryker/protocol.config.mjs). */
export default defineConfig({
  test: {
    include: ['test/protocol/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
