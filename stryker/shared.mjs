/**
 * What every mutation config shares: the vitest runner over one folder's tests (its own vitest
 * config beside this file), incremental reports under reports/mutation/ so that a rerun after a
 * change tests only the mutants it touched, and per-test coverage so each mutant runs only the
 * tests that reach it. `npm run mutate -- raft` runs one config; `npm run mutate` runs them all.
 * `tests` names the vitest config when it is not the config's own name (two configs that mutate
 * different files of one folder share that folder's tests).
 */
export function mutationConfig(name, mutate, { tests = name } = {}) {
  return {
    mutate,
    testRunner: 'vitest',
    vitest: { configFile: `stryker/vitest.${tests}.config.ts`, related: false },
    coverageAnalysis: 'perTest',
    reporters: ['clear-text', 'progress', 'json'],
    jsonReporter: { fileName: `reports/mutation/${name}.json` },
    incremental: true,
    incrementalFile: `reports/mutation/${name}.incremental.json`,
    // One worker by default: the machines this runs on have two cores shared with other work.
    concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 1),
    // Added to each mutant's expected time: a mutant that loops (a broken bound) is declared a timeout
    // soon instead of holding a worker.
    timeoutMS: 5_000,
    thresholds: { high: 85, low: 70, break: null },
    tempDirName: `.stryker-tmp/${name}`,
    cleanTempDir: 'always',
    ignoreStatic: true,
  };
}
