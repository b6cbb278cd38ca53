/**
 * Idempotent produce against plain produce, in the same run: one `sluice start` process, one
 * partition, msgpack bodies of 1000 records of 100 bytes sent to the partition route by autocannon
 * (HTTP/1.1, CONNECTIONS connections). With idempotence each connection is one producer (an id
 * from POST /v1/producers) and numbers its requests with Sluice-Sequence; without, the same bodies
 * carry no producer headers. Rounds alternate (off, on, off, on, ...) so that the machine's drift
 * falls on both; the figure is the ratio of the medians.
 *
 *   npm run bench:idempotence
 *   ROUNDS=5 SECONDS=5 CONNECTIONS=8 npm run bench:idempotence
 *
 * The load generator is autocannon (Node) on both sides: h2load sends one fixed request, and an
 * idempotent producer's sequence numbers change with every request. The ratio compares the
 * broker's two paths under the same client. Prints the figures and appends a dated row to
 * bench/RESULTS.md.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { packr } from '../src/protocol/msgpack.js';
import { median } from './h2load.js';
import { freePort } from './ports.js';
import { sluiceStart } from './processes.js';

const ROOT = join(import.meta.dirname, '..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 5);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 8);
const RECORDS = 1000;

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-bench-idem-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(process.execPath, sluiceStart(ROOT, port, dataDir), {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    for (let i = 0; ; i++) {
      const ready = await fetch(`${base}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) break;
      if (i > 300) throw new Error('the node did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const created = await fetch(`${base}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench', partitions: 1 }),
    });
    if (created.status !== 201) throw new Error(`create: ${created.status}`);
    const value = Buffer.alloc(100, 'v');
    const body = packr.pack({ records: Array.from({ length: RECORDS }, () => ({ value })) });
    const path = '/v1/topics/bench/partitions/0/records?acks=1';
    const off: number[] = [];
    const on: number[] = [];
    let failures = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const idempotent of [false, true]) {
        const producers: number[] = [];
        if (idempotent) {
          for (let c = 0; c < CONNECTIONS; c++) {
            const answer = (await (await fetch(`${base}/v1/producers`, { method: 'POST' })).json()) as {
              producerId: number;
            };
            producers.push(answer.producerId);
          }
        }
        let nextProducer = 0;
        const result = await autocannon({
          url: base,
          connections: CONNECTIONS,
          duration: SECONDS,
          requests: [
            {
              method: 'POST',
              path,
              headers: { 'content-type': 'application/vnd.msgpack' },
              body,
              setupRequest: (request: any, context: any) => {
                if (!idempotent) return request;
                context.producerId ??= producers[nextProducer++ % producers.length];
                context.sequence ??= 0;
                const headers = {
                  ...request.headers,
                  'sluice-producer-id': String(context.producerId),
                  'sluice-producer-epoch': '0',
                  'sluice-sequence': String(context.sequence),
                };
                context.sequence += RECORDS;
                return { ...request, headers };
              },
            },
          ],
        } as autocannon.Options);
        failures += result.non2xx + result.errors + result.timeouts;
        (idempotent ? on : off).push(result.requests.average * RECORDS);
      }
    }
    const offRate = median(off);
    const onRate = median(on);
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
    const line =
      `idempotent produce ${Math.round(onRate).toLocaleString('en-US')} rec/s = ${(onRate / offRate).toFixed(2)}x ` +
      `plain ${Math.round(offRate).toLocaleString('en-US')} rec/s (target 0.9x; 1000x100 B msgpack bodies, acks=1, ` +
      `${CONNECTIONS} connections, ${ROUNDS}x${SECONDS} s alternating rounds${failures ? `; ${failures} failed requests` : ''})`;
    console.log(line);
    appendFileSync(
      join(ROOT, 'bench', 'RESULTS.md'),
      `| idempotence (1 node; autocannon HTTP/1.1 on both sides, baseline plain produce in the same run) | ${new Date().toISOString().slice(0, 10)} | ${commit} | ${line} |\n`,
    );
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
