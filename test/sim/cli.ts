/**
 * Replays or soaks the Raft simulation:
 *   SEED=123 npm run sim            # one seed; on failure the last trace lines and the replay command
 *   SEED=123 TRACE=1 npm run sim    # the same with the whole history
 *   SEEDS=20000 npm run sim         # seeds 1..20000
 *   SEEDS=5000 FIRST=100000 npm run sim
 *   NODES=5 overrides the node count a seed would get.
 */
import { nodesFor, replayCommand, runSeed, SimCluster } from './cluster.js';
import { seedCli } from './seed-cli.js';

await seedCli({
  replay: (seed, whole) =>
    new SimCluster({
      seed,
      nodes: process.env.NODES ? Number(process.env.NODES) : nodesFor(seed),
      transcript: whole,
    }),
  run: runSeed,
  replayCommand,
});
