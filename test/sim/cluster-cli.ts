/**
 * Replays or soaks the whole-cluster simulation:
 *   SEED=123 npm run sim:cluster            # one seed; on failure the last trace lines and the replay command
 *   SEED=123 TRACE=1 npm run sim:cluster    # the same with the whole history
 *   SEEDS=5000 npm run sim:cluster          # seeds 1..5000
 *   SEEDS=500 FIRST=10000 npm run sim:cluster
 */
import { ClusterSim, clusterReplayCommand, runClusterSeed } from './cluster-sim.js';
import { seedCli } from './seed-cli.js';

await seedCli({
  replay: (seed, whole) => new ClusterSim({ seed, transcript: whole }),
  run: runClusterSeed,
  replayCommand: clusterReplayCommand,
});
