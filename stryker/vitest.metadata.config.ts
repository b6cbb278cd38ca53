import { defineConfig } from 'vitest/config';

/**
 * The tests that guard src/metadata/ (controller, image, records, placement, reassignment), for
 * mutation testing (stryker/metadata.config.mjs). The metadata simulation (test/sim) is left out:
 * far too slow per mutant. The image scale test replays 50 topics instead of 1,000 here: it reaches
 * most of image.ts and records.ts, so it runs for most mutants.
 */
export default defineConfig({
  test: {
    include: ['test/metadata/**/*.test.ts'],
    env: { SLUICE_SCALE_TOPICS: '50' },
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
