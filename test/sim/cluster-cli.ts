/**
 * Replays or soaks the whole-cluster simulation:
 *   SEED=123 npm run sim:cluster            # one seed; on failure the last trace lines and the replay command
 *   SEED=123 TRACE=1 npm run sim:cluster    # the same with the whole history
 *   SEEDS=5000 npm run sim:cluster          # seeds 1..5000
 *   SEEDS=500 FIRST=10000 npm run sim:cluster
 *   LOSE_DISKS=1 ...                        # one crash in ten loses the whole disk
 *   WITH_GROUPS=1 ...                       # consumer-group members and coordinator in every seed
 *                                           # (0: in none; default: seeds divisible by 25)
 */
import { ClusterSim, type ClusterSimOptions, clusterReplayCommand } from './cluster-sim.js';
import { seedCli } from './seed-cli.js';

const flag = (name: string) => (process.env[name] === undefined ? undefined : process.env[name] === '1');
const options: Partial<ClusterSimOptions> = {};
const loseDisks = flag('LOSE_DISKS');
if (loseDisks !== undefined) options.loseDisks = loseDisks;
// (Not GROUPS: bash keeps that name for the user's group ids and ignores an assignment to it.)
const groups = flag('WITH_GROUPS');
if (groups !== undefined) options.groups = groups;
await seedCli({
  replay: (seed, whole) => new ClusterSim({ seed, transcript: whole, ...options }),
  run: (seed) => new ClusterSim({ seed, ...options }).run(),
  replayCommand: (seed) => clusterReplayCommand(seed, options),
});
