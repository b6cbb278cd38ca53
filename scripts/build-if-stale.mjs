#!/usr/bin/env node
// Builds dist/ (`npm run build`) only when a source is newer than the last build: `npm start`
// and `prepare` start at once when nothing changed. A source is any file or folder under src/
// (a folder's time changes when a file in it is added, removed or renamed), the tsconfig files,
// package.json and the build's own scripts. The last build is the time of dist/.build-stamp,
// which `npm run build` writes as its last step (`--stamp`), after everything else succeeded.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const STAMP = join(ROOT, 'dist', '.build-stamp');
const INPUTS = [
  'src',
  'tsconfig.json',
  'tsconfig.build.json',
  'package.json',
  'scripts/copy-console-assets.mjs',
  'scripts/build-if-stale.mjs',
];

/** The newest modification time (ms) of a path and, for a folder, of everything in it. */
function newestMs(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMs(join(path, entry)));
  return newest;
}

export function staleReason() {
  if (!existsSync(STAMP)) return 'no build yet';
  const built = statSync(STAMP).mtimeMs;
  for (const input of INPUTS) {
    const path = join(ROOT, input);
    if (existsSync(path) && newestMs(path) > built) return `${input} changed since the last build`;
  }
  return undefined;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--stamp')) {
    writeFileSync(STAMP, `${new Date().toISOString()}\n`);
    process.exit(0);
  }
  const reason = staleReason();
  if (reason === undefined) process.exit(0);
  if (!process.argv.includes('--quiet')) process.stderr.write(`building dist/: ${reason}\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const build = spawnSync(npm, ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
  process.exitCode = build.status ?? 1;
}
