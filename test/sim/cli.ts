/**
 * Replays or soaks the Raft simulation:
 *   SEED=123 npm run sim            # one seed; on failure the last trace lines and the replay command
 *   SEED=123 TRACE=1 npm run sim    # the same with the whole history
 *   SEEDS=20000 npm run sim         # seeds 1..20000
 *   SEEDS=5000 FIRST=100000 npm run sim
 */
import { nodesFor, replayCommand, runSeed, SimCluster } from './cluster.js';

const seed = process.env.SEED;
if (seed !== undefined) {
  const s = Number(seed);
  const nodes = process.env.NODES ? Number(process.env.NODES) : nodesFor(s);
  const whole = process.env.TRACE === '1';
  const cluster = new SimCluster({ seed: s, nodes, transcript: whole });
  try {
    const result = await cluster.run();
    if (whole) console.log(cluster.transcript.join('\n'));
    console.log(`seed ${s}: ok`, JSON.stringify(result));
  } catch (error) {
    console.log(cluster.transcript.slice(whole ? 0 : -200).join('\n'));
    console.error(
      `\n${(error as Error).message}\nreplay: ${replayCommand(s)}${whole ? '' : ' (TRACE=1 for the whole history)'}`,
    );
    process.exitCode = 1;
  }
} else {
  const count = Number(process.env.SEEDS ?? 1000);
  const first = Number(process.env.FIRST ?? 1);
  const started = performance.now();
  let failed = 0;
  for (let s = first; s < first + count; s++) {
    try {
      await runSeed(s);
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
