import { defineConfig } from 'vitest/config';

/** The tests that guard src/storage/partition-log.ts, segment.ts and file-cache.ts, for mutation testing (stryker/storage.config.mjs). */
export default defineConfig({
  test: {
    include: ['test/storage/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
