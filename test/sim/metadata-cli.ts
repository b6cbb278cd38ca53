/**
 * Replays or soaks the metadata simulation:
 *   SEED=123 npm run sim:metadata            # one seed; on failure the last trace lines and the replay command
 *   SEED=123 TRACE=1 npm run sim:metadata    # the same with the whole history
 *   SEEDS=2000 npm run sim:metadata          # seeds 1..2000
 *   SEEDS=500 FIRST=10000 npm run sim:metadata
 *   NODES=5 overrides the node count a seed would get.
 */
import { nodesFor } from './cluster.js';
import { MetadataSim, metadataReplayCommand, runMetadataSeed } from './metadata-sim.js';
import { seedCli } from './seed-cli.js';

await seedCli({
  replay: (seed, whole) =>
    new MetadataSim({
      seed,
      nodes: process.env.NODES ? Number(process.env.NODES) : nodesFor(seed),
      transcript: whole,
    }),
  run: runMetadataSeed,
  replayCommand: metadataReplayCommand,
});
