import { defineConfig } from 'vitest/config';

/** The tests that guard src/common/crc32c.ts src/common/murmur2.ts, for mutation testing (stryker/common.config.mjs). */
export default defineConfig({
  test: {
    include: ['test/common/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
