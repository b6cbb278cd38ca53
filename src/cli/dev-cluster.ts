import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/**
 * `sluice dev-cluster`: N nodes of one cluster on this machine, each a child process running
 * `sluice start`, every one a voter of the metadata quorum. The parent only manages them: it
 * prefixes their output, and stops them all together, on a signal or when one of them dies.
 */

export const DEV_CLUSTER_NODES_MAX = 9;
const DEV_CLUSTER_HOST = '127.0.0.1';
/** How long a node has to stop after SIGTERM before it is killed. */
const DEV_CLUSTER_STOP_TIMEOUT_MS = 10_000;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export interface DevClusterOptions {
  /** 1 to DEV_CLUSTER_NODES_MAX. */
  nodes: number;
  /** Node i listens on basePort + i - 1; 0 picks free ports. */
  basePort: number;
  /** Node i keeps its data in dataDir/node-i; a new temporary directory when absent. */
  dataDir?: string;
  /** Keep the temporary directory on exit (a given dataDir is always kept). */
  keep: boolean;
  /** Passed to every node's --log-level. */
  logLevel?: string;
  stopTimeoutMs?: number;
}

export interface DevClusterDependencies {
  /** Starts one node: `sluice <args>` with this environment, its stdout and stderr piped. */
  spawnNode: (args: readonly string[], env: NodeJS.ProcessEnv) => ChildProcess;
  /** Where the nodes' prefixed lines and the summary go. */
  stdout: NodeJS.WritableStream;
  /** The environment the nodes inherit, less its SLUICE_* settings. */
  env: Readonly<Record<string, string | undefined>>;
  /** Where SIGINT, SIGTERM and SIGHUP arrive: the process. */
  signals: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
}

interface DevClusterNode {
  nodeId: number;
  port: number;
  dataDir: string;
  /** The arguments after the program: `start --node-id ...`. */
  args: string[];
}

/** The nodes of a dev cluster: ids 1..N, one port and data directory each, all of them voters. */
function planDevCluster(ports: readonly number[], dataDir: string, logLevel?: string): DevClusterNode[] {
  const quorum = ports.map((port, i) => `${i + 1}@${DEV_CLUSTER_HOST}:${port}`).join(',');
  return ports.map((port, i) => {
    const nodeId = i + 1;
    const nodeDir = join(dataDir, `node-${nodeId}`);
    return {
      nodeId,
      port,
      dataDir: nodeDir,
      args: [
        'start',
        ...['--node-id', String(nodeId), '--host', DEV_CLUSTER_HOST, '--port', String(port)],
        ...['--data-dir', nodeDir, '--controller-quorum', quorum],
        // The lines are read by a person, behind their [node-N] prefix, never by a log shipper.
        ...['--log-format', 'text'],
        ...(logLevel !== undefined ? ['--log-level', logLevel] : []),
      ],
    };
  });
}

/**
 * A node's environment: the parent's less every SLUICE_* setting (a quorum or a secret file meant
 * for some other node must not reach these), plus the cluster secret, which goes here rather than
 * in the arguments so that `ps` does not show it.
 */
function devClusterEnv(
  env: Readonly<Record<string, string | undefined>>,
  clusterSecret: string,
): NodeJS.ProcessEnv {
  const child: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env))
    if (!name.startsWith('SLUICE_') && value !== undefined) child[name] = value;
  child.SLUICE_CLUSTER_SECRET = clusterSecret;
  return child;
}

/**
 * `sluice <args>` as a child: the same Node.js and script as this process. Each child leads a
 * process group of its own, so that a Ctrl-C on the terminal reaches only the parent, which then
 * stops every node once; a node that got the terminal's SIGINT and then the parent's SIGTERM would
 * be killed by the second signal in the middle of its clean shutdown.
 */
export function spawnSluice(args: readonly string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: process.platform !== 'win32',
  });
}

/** `count` ports that were free a moment ago: each bound to port 0 at once, then all closed. */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.once('error', reject);
            server.listen(0, DEV_CLUSTER_HOST, () => {
              const address = server.address();
              resolve(typeof address === 'object' && address ? address.port : 0);
            });
          }),
      ),
    );
  } finally {
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())),
      ),
    );
  }
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

interface RunningNode extends DevClusterNode {
  child: ChildProcess;
  exited: Promise<Exit>;
  done: boolean;
}

function describeExit(exit: Exit): string {
  if (exit.error) return `could not start: ${exit.error.message}`;
  return exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

/** Resolves when a node's process has ended and its output has been read to the end. */
function watch(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
    // A child that could not be spawned at all emits only this.
    child.once('error', (error) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, error });
    });
  });
}

/** Copies each line of `input` to `out` behind `prefix`. */
function prefixLines(input: NodeJS.ReadableStream | null, prefix: string, out: NodeJS.WritableStream): void {
  if (!input) return;
  createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) =>
    out.write(`${prefix}${line}\n`),
  );
}

/**
 * Runs the cluster until a signal (then resolves, every node stopped and the temporary directory
 * removed) or until a node ends by itself (then stops the others, cleans up the same way, and
 * rejects naming the node and how it ended).
 */
export async function runDevCluster(
  options: DevClusterOptions,
  dependencies: DevClusterDependencies,
): Promise<void> {
  if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > DEV_CLUSTER_NODES_MAX)
    throw new RangeError(`a dev cluster has 1 to ${DEV_CLUSTER_NODES_MAX} nodes, not ${options.nodes}`);
  if (options.basePort !== 0 && options.basePort + options.nodes - 1 > 65535)
    throw new RangeError(`ports ${options.basePort}..${options.basePort + options.nodes - 1} go past 65535`);
  const stopTimeoutMs = options.stopTimeoutMs ?? DEV_CLUSTER_STOP_TIMEOUT_MS;
  const out = dependencies.stdout;
  const say = (line: string) => out.write(`${line}\n`);

  // Listening from the start, so that a signal while the nodes are being started still stops them.
  let signalled: (signal: string) => void = () => {};
  const firstSignal = new Promise<string>((resolve) => {
    signalled = resolve;
  });
  let onSignal: (signal: string) => void = (signal) => signalled(signal);
  const handlers = SIGNALS.map((signal) => [signal, () => onSignal(signal)] as const);
  for (const [signal, handler] of handlers) dependencies.signals.on(signal, handler);

  const ports =
    options.basePort === 0
      ? await freePorts(options.nodes)
      : Array.from({ length: options.nodes }, (_, i) => options.basePort + i);
  const temporary = options.dataDir === undefined;
  const root = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'sluice-dev-')));
  const plan = planDevCluster(ports, root, options.logLevel);
  const running: RunningNode[] = [];
  let failure: { node: RunningNode; exit: Exit } | undefined;
  try {
    for (const node of plan) await mkdir(node.dataDir, { recursive: true });
    say(
      `sluice dev cluster: ${plan.length} node${plan.length === 1 ? '' : 's'}, data in ${root}${temporary ? (options.keep ? ' (kept on exit)' : ' (removed on exit)') : ''}`,
    );
    for (const node of plan) say(`node ${node.nodeId}  http://${DEV_CLUSTER_HOST}:${node.port}`);
    say(
      `try sluice cluster describe --bootstrap http://${DEV_CLUSTER_HOST}:${plan[0]!.port}; Ctrl-C stops every node`,
    );

    const env = devClusterEnv(dependencies.env, randomBytes(16).toString('hex'));
    let firstExit: (ended: { node: RunningNode; exit: Exit }) => void = () => {};
    const anExit = new Promise<{ node: RunningNode; exit: Exit }>((resolve) => {
      firstExit = resolve;
    });
    for (const node of plan) {
      const child = dependencies.spawnNode(node.args, env);
      const entry: RunningNode = { ...node, child, exited: watch(child), done: false };
      prefixLines(child.stdout, `[node-${node.nodeId}] `, out);
      prefixLines(child.stderr, `[node-${node.nodeId}] `, out);
      void entry.exited.then((exit) => {
        entry.done = true;
        firstExit({ node: entry, exit });
      });
      running.push(entry);
    }

    const ended = await Promise.race([firstSignal.then(() => undefined), anExit]);
    if (ended) {
      failure = ended;
      say(`node ${ended.node.nodeId} ${describeExit(ended.exit)}; stopping the others`);
    } else {
      say('stopping the nodes');
    }
  } finally {
    await stopAll(running, failure?.node, stopTimeoutMs, say, (listener) => {
      onSignal = listener;
    });
    for (const [signal, handler] of handlers) dependencies.signals.off(signal, handler);
    if (temporary && !options.keep) await rm(root, { recursive: true, force: true });
    if (temporary && options.keep) say(`data kept in ${root}`);
  }
  if (failure) throw new Error(`node ${failure.node.nodeId} ${describeExit(failure.exit)}`);
}

/**
 * SIGTERM to every node still running, then waits for all of them; one that has not stopped after
 * `stopTimeoutMs`, or once another signal arrives, gets SIGKILL.
 */
async function stopAll(
  running: readonly RunningNode[],
  /** The node whose end started the stop, already reported. */
  failed: RunningNode | undefined,
  stopTimeoutMs: number,
  say: (line: string) => void,
  onSignal: (listener: (signal: string) => void) => void,
): Promise<void> {
  for (const node of running) if (!node.done) node.child.kill('SIGTERM');
  const killRest = (why: string) => {
    for (const node of running) {
      if (node.done) continue;
      say(`node ${node.nodeId} ${why}; killing it`);
      node.child.kill('SIGKILL');
    }
  };
  const timer = setTimeout(() => killRest(`has not stopped within ${stopTimeoutMs} ms`), stopTimeoutMs);
  onSignal((signal) => killRest(`is still stopping at a second ${signal}`));
  try {
    await Promise.all(
      running.map(async (node) => {
        const exit = await node.exited;
        if (node !== failed && exit.code !== 0 && exit.code !== null)
          say(`node ${node.nodeId} ${describeExit(exit)}`);
      }),
    );
  } finally {
    clearTimeout(timer);
  }
}
