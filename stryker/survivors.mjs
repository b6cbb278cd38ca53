/**
 * Lists the mutants a Stryker JSON report left alive (survived and no coverage), grouped by file
 * and line, with the mutator, the original code and the replacement, for review:
 *
 *   node stryker/survivors.mjs reports/mutation/storage.json [src/storage/segment.ts ...]
 *
 * With file arguments, only those files. The score line per file counts as Stryker does:
 * (killed + timed out) / (killed + timed out + survived + no coverage), static mutants ignored.
 */
import { readFileSync } from 'node:fs';

const [reportPath, ...only] = process.argv.slice(2);
if (reportPath === undefined) {
  process.stderr.write('usage: node stryker/survivors.mjs <report.json> [file ...]\n');
  process.exit(2);
}
const report = JSON.parse(readFileSync(reportPath, 'utf8'));
const alive = new Set(['Survived', 'NoCoverage']);
/** Longest original text shown for one mutant; a mutated block is cut after this many characters. */
const SHOWN_CHARS_MAX = 100;

function originalText(lines, location) {
  const { start, end } = location;
  const picked = lines.slice(start.line - 1, end.line);
  if (picked.length === 0) return '';
  picked[picked.length - 1] = picked[picked.length - 1].slice(0, end.column - 1);
  picked[0] = picked[0].slice(start.column - 1);
  return oneLine(picked.join('\n'));
}

function oneLine(text) {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > SHOWN_CHARS_MAX ? `${flat.slice(0, SHOWN_CHARS_MAX)}…` : flat;
}

for (const [file, entry] of Object.entries(report.files).sort(([a], [b]) => a.localeCompare(b))) {
  if (only.length > 0 && !only.includes(file)) continue;
  const lines = entry.source.split('\n');
  const counts = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0 };
  for (const mutant of entry.mutants) if (mutant.status in counts) counts[mutant.status]++;
  const detected = counts.Killed + counts.Timeout;
  const valid = detected + counts.Survived + counts.NoCoverage;
  const score = valid === 0 ? 'n/a' : `${((100 * detected) / valid).toFixed(2)}%`;
  process.stdout.write(
    `\n${file}: ${valid} mutants, ${counts.Killed} killed, ${counts.Timeout} timed out, ` +
      `${counts.Survived} survived, ${counts.NoCoverage} no coverage, score ${score}\n`,
  );
  const byLine = new Map();
  for (const mutant of entry.mutants) {
    if (!alive.has(mutant.status)) continue;
    const line = mutant.location.start.line;
    if (!byLine.has(line)) byLine.set(line, []);
    byLine.get(line).push(mutant);
  }
  for (const line of [...byLine.keys()].sort((a, b) => a - b)) {
    process.stdout.write(`  ${line}: ${oneLine(lines[line - 1] ?? '')}\n`);
    const mutants = byLine.get(line).sort((a, b) => a.location.start.column - b.location.start.column);
    for (const mutant of mutants) {
      const status = mutant.status === 'NoCoverage' ? ' (no coverage)' : '';
      process.stdout.write(
        `    #${mutant.id} ${mutant.mutatorName}${status}: ${originalText(lines, mutant.location)} -> ` +
          `${oneLine(mutant.replacement ?? '')}\n`,
      );
    }
  }
}
