import { defineConfig } from 'vitest/config';

/**
 * The tests that guard src/groups/ (assignors, coordinator, offsets-store), for mutation testing
 * (stryker/groups.config.mjs). The node test (test/groups/groups-node.test.ts, a real node over
 * HTTP and two Python members, about 9 s) and the cluster test are left out: far too slow per
 * mutant, and every coordinator mutant would run them.
 */
export default defineConfig({
  test: {
    include: ['test/groups/**/*.test.ts'],
    exclude: ['test/groups/groups-node.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
