import type { ChildProcess } from 'node:child_process';
import type { Command } from 'commander';
import { DEV_CLUSTER_NODES_MAX, runDevCluster } from './dev-cluster.js';
import { type Io, integer } from './io.js';

export interface ClusterDependencies {
  /** Starts `sluice <args>` as a child process (dev-cluster's nodes). */
  spawnNode: (args: readonly string[], env: NodeJS.ProcessEnv) => ChildProcess;
  signals: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
}

interface DevClusterFlags {
  nodes: number;
  basePort: number;
  dataDir?: string;
  keep?: boolean;
  logLevel?: string;
}

export function addDevClusterCommand(program: Command, io: Io, dependencies: ClusterDependencies): void {
  const command = program
    .command('dev-cluster')
    .description(
      'run a cluster of N nodes on 127.0.0.1 for development, each a child process and a voter of the metadata quorum; Ctrl-C stops them all',
    )
    .option(
      '-n, --nodes <n>',
      `how many nodes, 1 to ${DEV_CLUSTER_NODES_MAX}`,
      integer('nodes', 1, DEV_CLUSTER_NODES_MAX),
      3,
    )
    .option(
      '--base-port <port>',
      'node N listens on base port + N - 1; 0 picks free ports',
      integer('base port', 0, 65535),
      8092,
    )
    .option('--data-dir <dir>', 'node N keeps its data in DIR/node-N (default: a temporary directory)')
    .option('--keep', 'keep the temporary data directory on exit')
    .option('--log-level <level>', 'the nodes’ log level (default info)');
  command.action(async (flags: DevClusterFlags) => {
    if (flags.basePort !== 0 && flags.basePort + flags.nodes - 1 > 65535)
      command.error(`--base-port ${flags.basePort} leaves no room for ${flags.nodes} nodes below 65536`);
    await runDevCluster(
      {
        nodes: flags.nodes,
        basePort: flags.basePort,
        keep: flags.keep === true,
        ...(flags.dataDir !== undefined ? { dataDir: flags.dataDir } : {}),
        ...(flags.logLevel !== undefined ? { logLevel: flags.logLevel } : {}),
      },
      {
        spawnNode: dependencies.spawnNode,
        stdout: io.stdout,
        env: io.env ?? process.env,
        signals: dependencies.signals,
      },
    );
  });
}
