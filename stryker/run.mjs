/**
 * `npm run mutate` runs every mutation config here in turn; `npm run mutate -- raft storage` runs
 * those. Not part of CI: a full run takes tens of minutes. Scores go to docs/testing.md by hand.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = import.meta.dirname;
const all = readdirSync(dir)
  .filter((f) => f.endsWith('.config.mjs'))
  .map((f) => f.replace('.config.mjs', ''));
const names = process.argv.slice(2).length > 0 ? process.argv.slice(2) : all;
for (const name of names) {
  if (!all.includes(name)) {
    process.stderr.write(`no mutation config ${name}; there are: ${all.join(', ')}\n`);
    process.exit(2);
  }
  const result = spawnSync('npx', ['stryker', 'run', join('stryker', `${name}.config.mjs`)], {
    stdio: 'inherit',
    cwd: join(dir, '..'),
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
