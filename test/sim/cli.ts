/**
 * Replays or soaks the Raft simulation:
 *   SEED=123 npm run sim            # one seed, with its transcript on failure
 *   SEEDS=20000 npm run sim         # seeds 1..20000
 *   SEEDS=5000 FIRST=100000 npm run sim
 */
import { replayCommand, runSeed, SimCluster } from './cluster.js';

const seed = process.env.SEED;
if (seed !== undefined) {
  const s = Number(seed);
  const nodes = process.env.NODES ? Number(process.env.NODES) : undefined;
  try {
    const result = runSeed(s, nodes ? { nodes } : {});
    console.log(
      `seed ${s}: ok, ${result.events} events, ${result.committed} entries committed, ${result.reads} reads, ${result.adminOps} transfers/membership changes, trace ${result.traceHash}`,
    );
  } catch (error) {
    const cluster = new SimCluster({ seed: s, nodes: nodes ?? (s % 3 === 0 ? 5 : 3), transcript: true });
    try {
      cluster.run();
    } catch {}
    console.log(cluster.transcript.slice(-80).join('\n'));
    console.error(`\n${(error as Error).message}\nreplay: ${replayCommand(s)}`);
    process.exitCode = 1;
  }
} else {
  const count = Number(process.env.SEEDS ?? 2000);
  const first = Number(process.env.FIRST ?? 1);
  const started = performance.now();
  let failed = 0;
  for (let s = first; s < first + count; s++) {
    try {
      runSeed(s);
    } catch (error) {
      failed++;
      console.error(`${(error as Error).message}\n  replay: ${replayCommand(s)}`);
      if (failed >= 10) break;
    }
  }
  console.log(
    `${count} seeds from ${first}: ${failed} failed, ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  if (failed > 0) process.exitCode = 1;
}
