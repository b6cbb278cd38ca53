/**
 * What every mutation config shares: the vitest runner over one folder's tests (its own vitest
 * config beside this file), incremental reports under reports/mutation/ so that a rerun after a
 * change tests only the mutants it touched, and per-test coverage so each mutant runs only the
 * tests that reach it. `npm run mutate -- raft` runs one config; `npm run mutate` runs them all.
 */
export function mutationConfig(name, mutate) {
  return {
    mutate,
    testRunner: 'vitest',
    vitest: { configFile: `stryker/vitest.${name}.config.ts`, related: false },
    coverageAnalysis: 'perTest',
    reporters: ['clear-text', 'progress', 'json'],
    jsonReporter: { fileName: `reports/mutation/${name}.json` },
    incremental: true,
    incrementalFile: `reports/mutation/${name}.incremental.json`,
    concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 2),
    // Added to each mutant's expected time: a mutant that loops (a broken bound) is declared a timeout
    // soon instead of holding a worker.
    timeoutMS: 5_000,
    thresholds: { high: 85, low: 70, break: null },
    tempDirName: `.stryker-tmp/${name}`,
    cleanTempDir: 'always',
    ignoreStatic: true,
  };
}
