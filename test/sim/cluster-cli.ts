/**
 * Replays or soaks the whole-cluster simulation:
 *   SEED=123 npm run sim:cluster            # one seed; on failure the last trace lines and the replay command
 *   SEED=123 TRACE=1 npm run sim:cluster    # the same with the whole history
 *   SEEDS=5000 npm run sim:cluster          # seeds 1..5000
 *   SEEDS=500 FIRST=10000 npm run sim:cluster
 *   LOSE_DISKS=1 ...                        # one crash in ten loses the whole disk
 */
import { ClusterSim, clusterReplayCommand } from './cluster-sim.js';
import { seedCli } from './seed-cli.js';

const loseDisks = process.env.LOSE_DISKS === undefined ? undefined : process.env.LOSE_DISKS === '1';
await seedCli({
  replay: (seed, whole) => new ClusterSim({ seed, transcript: whole, loseDisks }),
  run: (seed) => new ClusterSim({ seed, loseDisks }).run(),
  replayCommand: clusterReplayCommand,
});
