/**
 * The CPU an http2 client request costs (client and server in one process, loopback, empty
 * answers) with Node's own `AsyncResource.prototype.bind` and with the broker's lean one
 * (src/common/async-resource-bind.ts), each in its own process, alternated over ROUNDS, in one run.
 * CPU time (user + system of the process), not wall time: the machine is shared.
 *
 *   npm run bench:async-bind            # ROUNDS=5 REQUESTS=20000
 *
 * Prints the medians and appends a dated row to bench/RESULTS.md.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const REQUESTS = Number(process.env.REQUESTS ?? 20_000);
const ROOT = join(import.meta.dirname, '..');

if (process.argv[2] === 'child') {
  if (process.argv[3] === 'lean') {
    const { installLeanAsyncResourceBind } = await import('../src/common/async-resource-bind.js');
    installLeanAsyncResourceBind();
  }
  const http2 = await import('node:http2');
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  await new Promise((resolve) => session.once('connect', resolve));
  // 50 requests in flight: each answer sends the next.
  const run = (count: number) =>
    new Promise<void>((resolve) => {
      let sent = 0;
      let done = 0;
      const send = () => {
        sent++;
        const request = session.request({ ':path': '/' });
        request.resume();
        request.on('close', () => {
          if (++done === count) resolve();
          else if (sent < count) send();
        });
      };
      for (let i = 0; i < Math.min(50, count); i++) send();
    });
  await run(2_000); // warm-up
  const before = process.cpuUsage();
  await run(REQUESTS);
  const used = process.cpuUsage(before);
  session.close();
  server.close();
  process.stdout.write(String((used.user + used.system) / REQUESTS));
} else {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const figures = { stock: [] as number[], lean: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const kind of ['stock', 'lean'] as const) {
      const child = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, 'child', kind], {
        cwd: ROOT,
        env: { ...process.env, REQUESTS: String(REQUESTS) },
        encoding: 'utf8',
      });
      if (child.status !== 0) throw new Error(`${kind} run failed: ${child.stderr}`);
      figures[kind].push(Number(child.stdout));
    }
  }
  const stock = median(figures.stock);
  const lean = median(figures.lean);
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
    cwd: ROOT,
    encoding: 'utf8',
  }).trim();
  console.log(`http2 client request, client and server CPU per request (median of ${ROUNDS} x ${REQUESTS}):`);
  console.log(
    `  Node's AsyncResource.bind: ${stock.toFixed(1)} µs   runs ${figures.stock.map((x) => x.toFixed(1))}`,
  );
  console.log(
    `  lean bind:                 ${lean.toFixed(1)} µs   runs ${figures.lean.map((x) => x.toFixed(1))}`,
  );
  console.log(
    `  saved: ${(stock - lean).toFixed(1)} µs per request (${((1 - lean / stock) * 100).toFixed(0)}%)`,
  );
  const date = new Date().toISOString().slice(0, 10);
  appendFileSync(
    join(ROOT, 'bench', 'RESULTS.md'),
    `| http2 client request CPU, Node ${process.version} (client and server in one process, loopback; baseline Node's own AsyncResource.bind in the same run; CPU time, median of ${ROUNDS} alternated runs of ${REQUESTS}) | ${date} | ${commit} | lean bind ${lean.toFixed(1)} µs per request = ${(lean / stock).toFixed(2)}x Node's ${stock.toFixed(1)} µs (${(stock - lean).toFixed(1)} µs saved per request); load ${load} |\n`,
  );
}
