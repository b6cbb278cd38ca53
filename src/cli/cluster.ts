import type { ChildProcess } from 'node:child_process';
import type { Command } from 'commander';
import type { ClusterResponse, MetadataResponse } from '../protocol/api.js';
import { DEV_CLUSTER_NODES_MAX, runDevCluster } from './dev-cluster.js';
import {
  BOOTSTRAP_OPTION,
  ExitCode,
  type Io,
  integer,
  OUTPUT_OPTION,
  type OutputFormat,
  render,
  table,
  withAdmin,
} from './io.js';

export interface ClusterDependencies {
  /** Starts `sluice <args>` as a child process (dev-cluster's nodes). */
  spawnNode: (args: readonly string[], env: NodeJS.ProcessEnv) => ChildProcess;
  signals: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
}

export function addClusterCommand(program: Command, io: Io): void {
  const cluster = program.command('cluster').description('the nodes of a cluster and its metadata quorum');
  cluster
    .command('describe')
    .description('every node (address, rack, fenced, broker epoch), the controller and the metadata quorum')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (opts: { bootstrap: string; output: OutputFormat }) => {
      const answer = await withAdmin(opts.bootstrap, (admin) => admin.cluster());
      render(io, opts.output, answer, describeCluster);
    });
  cluster
    .command('health')
    .description('partitions without a leader, under-replicated, or fenced brokers; exit code 1 when any')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (opts: { bootstrap: string; output: OutputFormat }) => {
      const metadata = await withAdmin(opts.bootstrap, (admin) => admin.metadata());
      const report = healthOf(metadata);
      render(io, opts.output, report, healthLines);
      if (!report.healthy) throw new ExitCode(1);
    });
  for (const [name, description, change] of [
    ['add-voter', 'make a broker-only node (a learner of the metadata log) a voter', 'addVoter'],
    ['remove-voter', 'take a voter out of the metadata quorum (it stays a learner)', 'removeVoter'],
  ] as const) {
    cluster
      .command(`${name} <nodeId>`)
      .description(description)
      .option(...BOOTSTRAP_OPTION)
      .option(...OUTPUT_OPTION)
      .action(async (nodeId: string, opts: { bootstrap: string; output: OutputFormat }) => {
        const id = integer('nodeId')(nodeId);
        const members = await withAdmin(opts.bootstrap, (admin) => admin[change](id));
        render(io, opts.output, members, (m) => [
          `voters ${m.voters.join(',')}  learners ${m.learners.join(',') || '-'}`,
        ]);
      });
  }
}

function address(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** `cluster health` for scripts (docs/cli.md): the counts, and one sentence per problem. */
export interface HealthReport {
  healthy: boolean;
  brokers: number;
  controllerId: number | null;
  partitions: number;
  underReplicated: number;
  withoutLeader: number;
  problems: string[];
}

/** The first line sums the cluster up; each further one names a problem (none: healthy). */
export function clusterHealth(metadata: MetadataResponse): string[] {
  return healthLines(healthOf(metadata));
}

function healthLines(r: HealthReport): string[] {
  const controller = r.controllerId === null ? 'no controller' : `controller ${r.controllerId}`;
  return [
    `${r.healthy ? 'healthy' : 'unhealthy'}: ${r.brokers} brokers, ${controller}, ${r.partitions} partitions, ${r.underReplicated} under-replicated, ${r.withoutLeader} without a leader`,
    ...r.problems,
  ];
}

export function healthOf(metadata: MetadataResponse): HealthReport {
  const problems: string[] = [];
  for (const node of metadata.nodes) if (node.fenced) problems.push(`broker ${node.id} is fenced`);
  let partitions = 0;
  let under = 0;
  let offline = 0;
  for (const topic of metadata.topics) {
    for (const p of topic.partitions) {
      partitions++;
      if (p.leader === -1) {
        offline++;
        problems.push(
          p.isr.length === 0
            ? `${topic.name}/${p.partition} has no leader and no replica sure to hold its committed records (replicas ${p.replicas.join(',')}; its last in-sync replica restarted after an unclean shutdown): it waits; unclean.leader.election.enable=true elects one that may lack records`
            : `${topic.name}/${p.partition} has no leader (replicas ${p.replicas.join(',')}, in sync ${p.isr.join(',')})`,
        );
      } else if (p.isr.length < p.replicas.length) {
        under++;
        const out = p.replicas.filter((id) => !p.isr.includes(id));
        problems.push(
          `${topic.name}/${p.partition} is under-replicated: ${out.join(',')} not in sync (leader ${p.leader})`,
        );
      }
    }
  }
  if (metadata.controllerId === null) problems.push('the metadata quorum has no leader');
  return {
    healthy: problems.length === 0,
    brokers: metadata.nodes.length,
    controllerId: metadata.controllerId,
    partitions,
    underReplicated: under,
    withoutLeader: offline,
    problems,
  };
}

/** `GET /v1/cluster` for people: the answering node, one row per node, then the metadata quorum. */
export function describeCluster(cluster: ClusterResponse): string[] {
  const lines = [
    `cluster ${cluster.clusterId}  answered by node ${cluster.nodeId} (sluice ${cluster.version})`,
  ];
  const nodes = [...cluster.nodes].sort((a, b) => a.id - b.id);
  // A node of a release that reports no roles is printed without the column.
  const withRoles = nodes.some((node) => node.roles !== undefined);
  lines.push(
    ...table([
      ['NODE', 'ADDRESS', 'RACK', 'FENCED', 'BROKER EPOCH', 'CONTROLLER', ...(withRoles ? ['ROLES'] : [])],
      ...nodes.map((node) => [
        String(node.id),
        address(node.host, node.port),
        node.rack ?? '-',
        node.fenced === undefined ? '-' : node.fenced ? 'yes' : 'no',
        node.brokerEpoch === undefined ? '-' : String(node.brokerEpoch),
        node.id === cluster.controllerId ? 'yes' : '',
        ...(withRoles ? [node.roles?.join(',') ?? '-'] : []),
      ]),
    ]),
  );
  if (cluster.controllerId === null) lines.push('no controller: the metadata quorum has no leader');
  else if (!nodes.some((node) => node.id === cluster.controllerId))
    lines.push(`controller: node ${cluster.controllerId} (not a registered broker)`);
  const m = cluster.metadata;
  lines.push(
    m
      ? `metadata quorum (as node ${cluster.nodeId} sees it)  role=${m.role}  term=${m.term}  commitIndex=${m.commitIndex}  appliedIndex=${m.appliedIndex}  voters=${m.voters.join(',')}`
      : `metadata quorum: node ${cluster.nodeId} does not report it`,
  );
  const quorum = m?.quorum;
  if (!quorum) {
    for (const f of m?.followers ?? [])
      lines.push(`  voter ${f.id}  matchIndex=${f.matchIndex}  lag=${f.lag}`);
    return lines;
  }
  const known = (value: number | undefined) => (value === undefined ? '-' : String(value));
  lines.push(
    quorum.source === 'controller'
      ? `voters (match index and lag as controller ${quorum.controllerId} counts them):`
      : 'voters (no controller answered: lag behind the longest log heard of, match index unknown):',
  );
  for (const v of quorum.voters)
    lines.push(
      v.reachable
        ? `  voter ${v.id}  role=${v.role ?? '-'}  term=${known(v.term)}  commitIndex=${known(v.commitIndex)}  appliedIndex=${known(v.appliedIndex)}  matchIndex=${known(v.matchIndex)}  lag=${known(v.lag)}`
        : `  voter ${v.id}  did not answer${v.matchIndex !== undefined ? `  matchIndex=${v.matchIndex}  lag=${known(v.lag)}` : ''}`,
    );
  return lines;
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
