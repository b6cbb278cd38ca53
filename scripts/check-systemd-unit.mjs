#!/usr/bin/env node
// Checks a systemd unit for a Sluice node: `node scripts/check-systemd-unit.mjs [deploy/sluice.service]`.
//
// 1. A structural check that always runs: the sections and keys a node's service needs, every
//    SLUICE_* variable one `sluice start` reads, every flag of ExecStart one it takes (both read
//    from `sluice start --help`, so the unit and the program cannot drift apart).
// 2. `systemd-analyze verify` where it is installed, on a copy whose ExecStart program is a stub
//    (the unit names where the package installs `sluice`, which this machine may not have). Any
//    line it prints about the unit is a problem: it reports unknown keys and bad values as
//    warnings with exit code 0. Where it is absent the check is skipped with the reason printed.
//
// Exit code 0: no problem; 1: problems, one per line on standard error.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The unit's sections, each a list of [key, value] in order (keys repeat: Environment=). */
function parseUnit(text) {
  const sections = new Map();
  let current;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[([A-Za-z]+)\]$/.exec(line);
    if (section) {
      current = section[1];
      if (!sections.has(current)) sections.set(current, []);
      continue;
    }
    const at = line.indexOf('=');
    if (current === undefined || at <= 0)
      throw new Error(`line ${i + 1}: not a section or key=value: ${line}`);
    sections.get(current).push([line.slice(0, at).trim(), line.slice(at + 1).trim()]);
  }
  return sections;
}

/** What `sluice start` takes: its flags and variables, from its help. */
function startInterface() {
  const help = execFileSync(process.execPath, [join(ROOT, 'bin', 'sluice.js'), 'start', '--help'], {
    encoding: 'utf8',
    env: { ...process.env, COLUMNS: '400' },
  });
  return {
    flags: new Set([...help.matchAll(/(?:^|\s)(--[a-z][a-z-]*)/g)].map((m) => m[1])),
    variables: new Set([...help.matchAll(/\[(SLUICE_[A-Z_]+)\]/g)].map((m) => m[1])),
  };
}

export function structuralProblems(text, start = startInterface()) {
  const problems = [];
  let sections;
  try {
    sections = parseUnit(text);
  } catch (error) {
    return [error.message];
  }
  const values = (section, key) => (sections.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
  const one = (section, key) => {
    const found = values(section, key);
    if (found.length !== 1) problems.push(`[${section}] needs exactly one ${key}=, has ${found.length}`);
    return found[0] ?? '';
  };
  for (const section of ['Unit', 'Service', 'Install'])
    if (!sections.has(section)) problems.push(`no [${section}] section`);
  one('Unit', 'Description');
  const exec = one('Service', 'ExecStart').split(/\s+/);
  if (!exec[0]?.startsWith('/')) problems.push(`ExecStart must start with an absolute path, got ${exec[0]}`);
  if (exec[1] !== 'start') problems.push(`ExecStart must run "sluice start", got ${exec.slice(1).join(' ')}`);
  for (const word of exec.slice(2))
    if (word.startsWith('--') && !start.flags.has(word.split('=')[0]))
      problems.push(`ExecStart: sluice start takes no ${word.split('=')[0]}`);
  for (const assignment of values('Service', 'Environment'))
    for (const pair of assignment.split(/\s+/)) {
      const name = pair.slice(0, pair.indexOf('='));
      if (name.startsWith('SLUICE_') && !start.variables.has(name))
        problems.push(`Environment: sluice start reads no ${name}`);
    }
  const restart = one('Service', 'Restart');
  if (!['on-failure', 'always', 'on-abnormal'].includes(restart))
    problems.push(`Restart should bring a crashed node back (on-failure), got ${restart}`);
  const kill = values('Service', 'KillSignal')[0] ?? 'SIGTERM';
  if (kill !== 'SIGTERM' && kill !== 'SIGINT')
    problems.push(`KillSignal must be SIGTERM or SIGINT (a controlled shutdown), got ${kill}`);
  const stop = Number(values('Service', 'TimeoutStopSec')[0] ?? 90);
  if (!(stop >= 30))
    problems.push(`TimeoutStopSec must leave a controlled shutdown 30 s or more, got ${stop}`);
  const dataDir = values('Service', 'Environment').find((v) => v.startsWith('SLUICE_DATA_DIR='));
  const state = values('Service', 'StateDirectory')[0];
  if (dataDir === undefined) problems.push('Environment=SLUICE_DATA_DIR= must name the data directory');
  else if (state !== undefined && dataDir !== `SLUICE_DATA_DIR=/var/lib/${state}`)
    problems.push(`the data directory ${dataDir} is not the StateDirectory /var/lib/${state}`);
  if (values('Install', 'WantedBy').length === 0) problems.push('[Install] needs WantedBy= to be enabled');
  return problems;
}

/** `systemd-analyze verify` of the unit, or why it cannot run here. */
export function verifyProblems(text, name) {
  const which = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (which.error || which.status !== 0)
    return {
      skipped: `systemd-analyze is not installed here (${which.error?.code ?? `exit ${which.status}`})`,
    };
  const dir = mkdtempSync(join(tmpdir(), 'sluice-unit-'));
  try {
    const stub = join(dir, 'sluice');
    writeFileSync(stub, '#!/bin/sh\nexit 0\n');
    chmodSync(stub, 0o755);
    const file = join(dir, name);
    writeFileSync(file, text.replace(/^ExecStart=\S+/m, `ExecStart=${stub}`));
    const run = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8' });
    const lines = `${run.stdout}\n${run.stderr}`.split('\n').filter((l) => l.trim() !== '');
    const problems = lines.filter((l) => l.includes(name)).map((l) => l.replace(file, name));
    if (run.status !== 0 && problems.length === 0) problems.push(...lines);
    return { problems };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const path = process.argv[2] ?? join(ROOT, 'deploy', 'sluice.service');
  const text = readFileSync(path, 'utf8');
  const problems = structuralProblems(text);
  const verified = verifyProblems(text, basename(path));
  if (verified.skipped) process.stdout.write(`systemd-analyze verify skipped: ${verified.skipped}\n`);
  else problems.push(...verified.problems);
  for (const problem of problems) process.stderr.write(`${path}: ${problem}\n`);
  if (problems.length === 0)
    process.stdout.write(`${path}: ok (structure${verified.skipped ? '' : ', systemd-analyze verify'})\n`);
  process.exitCode = problems.length === 0 ? 0 : 1;
}
