import { defineConfig } from 'vitest/config';

/**
 * The tests that guard src/replication/ (replica, isr, divergence, replica-manager), for mutation
 * testing (stryker/replication.config.mjs). The cluster simulation (test/sim) is left out: far too
 * slow per mutant.
 */
export default defineConfig({
  test: {
    // The two broker tests run a whole Broker, whose partitions are PartitionReplicas: they reach
    // replica.ts and replica-manager.ts through produce and fetch.
    include: [
      'test/replication/**/*.test.ts',
      'test/broker/broker.test.ts',
      'test/broker/produce-spanning.test.ts',
    ],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
