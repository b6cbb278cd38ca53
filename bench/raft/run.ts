/**
 * Raft benchmark: 3 voters in separate processes on loopback, LevelDB with real fsync, the HTTP/2
 * transport. Measures committed proposals per second with 64 concurrent proposers, commit latency
 * p50/p99 at a fixed moderate rate, and fsyncs per commit (group commit makes it far below 1).
 *
 *   node --import tsx bench/raft/run.ts        (RAFT_SECONDS=5)
 */
import { type ChildProcess, execSync, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import * as http2 from 'node:http2';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as hdr from 'hdr-histogram-js';

const SECONDS = Number(process.env.RAFT_SECONDS ?? 5);
const ROOT = join(import.meta.dirname, '..', '..');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function request(
  session: http2.ClientHttp2Session,
  method: string,
  path: string,
  body?: Buffer,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': method,
      ':path': path,
      ...(body ? { 'content-type': 'application/octet-stream' } : {}),
    });
    let status = 0;
    let data = '';
    stream.on('response', (h) => {
      status = Number(h[':status']);
    });
    stream.setEncoding('utf8');
    stream.on('data', (d) => {
      data += d;
    });
    stream.on('end', () => resolve({ status, body: data }));
    stream.on('error', reject);
    stream.end(body);
  });
}

const children: ChildProcess[] = [];
const dirs: string[] = [];
try {
  const ports = await Promise.all([1, 2, 3].map(() => freePort()));
  const peers: Record<number, string> = {
    1: `http://127.0.0.1:${ports[0]}`,
    2: `http://127.0.0.1:${ports[1]}`,
    3: `http://127.0.0.1:${ports[2]}`,
  };
  for (const id of [1, 2, 3]) {
    const dir = await mkdtemp(join(tmpdir(), `sluice-raft-bench-${id}-`));
    dirs.push(dir);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(ROOT, 'bench/raft/voter.ts'),
        String(id),
        JSON.stringify(peers),
        dir,
        'bench-secret',
      ],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.push(child);
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  }
  const sessions = [1, 2, 3].map((id) => {
    const url = new URL(peers[id]!);
    return http2.connect(peers[id]!, {
      createConnection: () => connect({ host: url.hostname, port: Number(url.port), noDelay: true }),
    });
  });
  let leader = -1;
  for (let i = 0; i < 100 && leader < 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    for (let s = 0; s < 3; s++)
      if (JSON.parse((await request(sessions[s]!, 'GET', '/status')).body).role === 'leader') leader = s;
  }
  if (leader < 0) throw new Error('no leader elected');
  const session = sessions[leader]!;
  const body = Buffer.alloc(100, 0x61);
  const statusOf = async () =>
    JSON.parse((await request(session, 'GET', '/status')).body) as { saves: number; commitIndex: number };

  // 1. Throughput with 64 concurrent proposers.
  const before = await statusOf();
  let committed = 0;
  const deadline = Date.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (Date.now() < deadline) {
        const r = await request(session, 'POST', '/propose', body);
        if (r.status === 200) committed++;
      }
    }),
  );
  const after = await statusOf();
  const commitsPerSecond = committed / SECONDS;
  const fsyncsPerCommit = (after.saves - before.saves) / Math.max(1, committed);

  // 2. Latency at a fixed moderate rate: 500 proposals per second.
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const rate = Number(process.env.RAFT_RATE ?? 500);
  const total = rate * Math.min(SECONDS, 4);
  const start = process.hrtime.bigint();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const at = start + BigInt(Math.round((i * 1e9) / rate));
    while (process.hrtime.bigint() < at) await new Promise((r) => setImmediate(r));
    pending.push(
      request(session, 'POST', '/propose', body).then(() => {
        histogram.recordValue(Math.max(1, Math.round(Number(process.hrtime.bigint() - at) / 1000)));
      }),
    );
  }
  await Promise.all(pending);
  const p50 = histogram.getValueAtPercentile(50) / 1000;
  const p99 = histogram.getValueAtPercentile(99) / 1000;

  // Baseline in the same run: one LevelDB synced write per proposal, no replication.
  const { LevelRaftStorage } = await import('../../src/raft/storage.js');
  const baseDir = await mkdtemp(join(tmpdir(), 'sluice-raft-bench-base-'));
  dirs.push(baseDir);
  const base = await LevelRaftStorage.open(baseDir);
  const baseStart = performance.now();
  let baseCount = 0;
  while (performance.now() - baseStart < 2000) {
    baseCount++;
    await base.save({ entries: [{ index: baseCount, term: 1, type: 'normal', data: body }] });
  }
  const syncedWritesPerSecond = baseCount / ((performance.now() - baseStart) / 1000);
  await base.close();

  for (const s of sessions) s.close();
  const rows = [
    [
      'committed proposals/s, 64 proposers',
      `${Math.round(commitsPerSecond)}`,
      `${(commitsPerSecond / syncedWritesPerSecond).toFixed(2)}x one synced LevelDB write per proposal (${Math.round(syncedWritesPerSecond)}/s)`,
    ],
    ['fsyncs per commit on the leader', fsyncsPerCommit.toFixed(3), 'group commit: far below 1 under load'],
    [`commit latency at ${rate}/s`, `p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`, ''],
  ];
  console.log(
    '\nSluice Raft benchmark: 3 voters, separate processes, LevelDB with fsync, HTTP/2 transport\n',
  );
  for (const [name, figure, note] of rows) console.log(`${name!.padEnd(40)} ${figure!.padEnd(26)} ${note}`);
  let sha = 'unknown';
  try {
    sha = execSync('git rev-parse --short HEAD', { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {}
  appendFileSync(
    join(ROOT, 'bench', 'RESULTS.md'),
    `| raft | ${new Date().toISOString().slice(0, 10)} | ${sha} | ${Math.round(commitsPerSecond)} commits/s with 64 proposers = ${(commitsPerSecond / syncedWritesPerSecond).toFixed(2)}x one synced write per proposal; ${fsyncsPerCommit.toFixed(3)} fsyncs/commit on the leader; latency at ${rate}/s p50 ${p50.toFixed(2)} ms p99 ${p99.toFixed(2)} ms |\n`,
  );
} finally {
  for (const c of children) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
}
