/**
 * Replays or soaks the whole-cluster simulation:
 *   SEED=123 npm run sim:cluster            # one seed; on failure the last trace lines and the replay command
 *   SEED=123 TRACE=1 npm run sim:cluster    # the same with the whole history
 *   SEEDS=5000 npm run sim:cluster          # seeds 1..5000
 *   SEEDS=500 FIRST=10000 npm run sim:cluster
 */
import { ClusterSim, clusterReplayCommand, runClusterSeed } from './cluster-sim.js';

const seed = process.env.SEED;
if (seed !== undefined) {
  const s = Number(seed);
  const whole = process.env.TRACE === '1';
  const sim = new ClusterSim({ seed: s, transcript: whole });
  try {
    const result = await sim.run();
    if (whole) console.log(sim.transcript.join('\n'));
    console.log(`seed ${s}: ok`, JSON.stringify(result));
  } catch (error) {
    console.log(sim.transcript.slice(whole ? 0 : -200).join('\n'));
    console.error(
      `\n${(error as Error).message}\nreplay: ${clusterReplayCommand(s)}${whole ? '' : ' (TRACE=1 for the whole history)'}`,
    );
    process.exitCode = 1;
  }
} else {
  const count = Number(process.env.SEEDS ?? 1000);
  const first = Number(process.env.FIRST ?? 1);
  const started = performance.now();
  let failed = 0;
  let ran = 0;
  for (let s = first; s < first + count; s++) {
    ran++;
    try {
      await runClusterSeed(s);
    } catch (error) {
      failed++;
      console.error(`${(error as Error).message.split('\n')[0]}\n  replay: ${clusterReplayCommand(s)}`);
      if (failed >= 10) break;
    }
  }
  console.log(
    `${ran} seeds from ${first}: ${ran - failed} clean, ${failed} failed, ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  if (failed > 0) process.exitCode = 1;
}
