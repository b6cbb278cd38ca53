/**
 * The top self-time functions of a V8 CPU profile (`node --cpu-prof`), for docs/performance.md:
 *
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile> [top=25] [fromMs] [toMs]
 *
 * Prints each function's share of the samples (self, then self plus callees) with where it is
 * defined, relative to the repository. Samples are counted rather than weighed by the time
 * between them: on a loaded machine a descheduled thread makes one gap of many milliseconds,
 * which would all go to whatever ran when it was scheduled again. With `fromMs` and `toMs`, only the samples taken that
 * long after the profile began count (the load's window, without start-up and shutdown).
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg, fromArg, toArg] = process.argv.slice(2);
const fromUs = fromArg === undefined ? 0 : Number(fromArg) * 1000;
const toUs = toArg === undefined ? Number.POSITIVE_INFINITY : Number(toArg) * 1000;
if (!file) throw new Error('usage: profile-summary.ts <file.cpuprofile> [top]');
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const samplesOf = new Map<number, number>();
let at = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const delta = profile.timeDeltas[i] ?? 0;
  at += delta;
  if (at < fromUs || at > toUs) continue;
  const id = profile.samples[i]!;
  samplesOf.set(id, (samplesOf.get(id) ?? 0) + 1);
}
const label = (n: Node) => {
  const { functionName, url, lineNumber } = n.callFrame;
  const where = url.replace(/^file:\/\//, '').replace(/^.*\/(src|bench|node_modules)\//, '$1/');
  return `${functionName || '(anonymous)'} ${where ? `${where}:${lineNumber + 1}` : ''}`.trim();
};
const self = new Map<string, number>();
const total = new Map<string, number>();
let all = 0;
for (const [id, count] of samplesOf) {
  all += count;
  const node = byId.get(id)!;
  self.set(label(node), (self.get(label(node)) ?? 0) + count);
  // Inclusive time: once per distinct function on the stack.
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const name = label(byId.get(at)!);
    if (seen.has(name)) continue;
    seen.add(name);
    total.set(name, (total.get(name) ?? 0) + count);
  }
}
const pct = (n: number) => `${((100 * n) / all).toFixed(1)}%`.padStart(6);
process.stdout.write(`${all} samples\n  self  total  function\n`);
for (const [name, count] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top))
  process.stdout.write(`${pct(count)} ${pct(total.get(name) ?? 0)}  ${name}\n`);
