/**
 * The second pass on src/raft/core.ts: the simulation (test/sim) joins the unit tests of test/raft,
 * but only on the lines where the last unit pass (`npm run mutate -- raft`) left a mutant alive.
 * The simulation is far slower per mutant than the unit tests, so it runs on what they miss, not on
 * everything. The lines come from that pass's report, so run `npm run mutate -- raft` first:
 * `npm run mutate -- raft-sim`. The simulation runs 200 seeds here (SIM_SEEDS in
 * stryker/vitest.raft-sim.config.ts), not CI's 2,000.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mutationConfig } from './shared.mjs';

const FILE = 'src/raft/core.ts';
const UNIT_REPORT = join(import.meta.dirname, '..', 'reports', 'mutation', 'raft.json');

function survivingLines() {
  let report;
  try {
    report = JSON.parse(readFileSync(UNIT_REPORT, 'utf8'));
  } catch (error) {
    throw new Error(`${UNIT_REPORT} is missing: run \`npm run mutate -- raft\` first (${error.message})`);
  }
  const mutants = report.files[FILE]?.mutants ?? [];
  const lines = new Set();
  for (const m of mutants) {
    if (m.status !== 'Survived' && m.status !== 'NoCoverage') continue;
    for (let line = m.location.start.line; line <= m.location.end.line; line++) lines.add(line);
  }
  // Runs of consecutive lines as `file:from-to`, the range form Stryker's `mutate` accepts.
  const sorted = [...lines].sort((a, b) => a - b);
  const ranges = [];
  for (const line of sorted) {
    const last = ranges.at(-1);
    if (last && line === last[1] + 1) last[1] = line;
    else ranges.push([line, line]);
  }
  return ranges.map(([from, to]) => `${FILE}:${from}-${to}`);
}

const lines = survivingLines();
if (lines.length === 0)
  throw new Error(`the unit pass left no survivor in ${FILE}: nothing for the second pass`);
export default mutationConfig('raft-sim', lines);
