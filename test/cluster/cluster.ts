import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
export const SECRET = 'cluster-tests-secret-0123456789';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface Answer {
  status: number;
  servedBy: string | null;
  body: any;
}

/** How the harness lays a cluster out, beside the options every node is given. */
export interface ClusterLayout {
  /**
   * Every node gets an internal listener on a port of its own (`internalListen`), and the quorum
   * names those ports; `internalUrl(id)` reaches it.
   */
  internalListen?: boolean;
  /** Options of one node only (its roles, say), over the shared ones. */
  nodeOptions?: (id: number) => Record<string, unknown>;
}

/**
 * A cluster of node processes on loopback, every node a voter and a broker, each with its own data
 * directory and port. Nodes are killed (SIGKILL), stopped (SIGTERM) and started again by id.
 */
export class TestCluster {
  readonly ports = new Map<number, number>();
  /** Each node's internal listener port, with `ClusterLayout.internalListen`. */
  readonly internalPorts = new Map<number, number>();
  readonly #children = new Map<number, ChildProcess>();
  readonly #logs = new Map<number, string>();
  /** The output so far of each node's running process. */
  readonly #liveLogs = new Map<number, () => string>();
  readonly dir: string;

  private constructor(
    readonly size: number,
    readonly options: Record<string, unknown>,
    readonly layout: ClusterLayout = {},
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'sluice-cluster-'));
  }

  static async start(
    size: number,
    options: Record<string, unknown> = {},
    layout: ClusterLayout = {},
  ): Promise<TestCluster> {
    const cluster = await TestCluster.create(size, options, layout);
    await cluster.startAll();
    return cluster;
  }

  /** A cluster whose ports are chosen but whose nodes are not started yet (`startAll`). */
  static async create(
    size: number,
    options: Record<string, unknown> = {},
    layout: ClusterLayout = {},
  ): Promise<TestCluster> {
    const cluster = new TestCluster(size, options, layout);
    for (let id = 1; id <= size; id++) await cluster.#allocate(id);
    return cluster;
  }

  async startAll(): Promise<void> {
    try {
      await Promise.all([...this.ports.keys()].map((id) => this.startNode(id)));
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  async #allocate(id: number): Promise<void> {
    this.ports.set(id, await freePort());
    if (this.layout.internalListen) this.internalPorts.set(id, await freePort());
  }

  /** The voters every node is started with: the founding nodes (1..size), at their internal ports if any. */
  get quorum(): string {
    return [...this.ports]
      .filter(([id]) => id <= this.size)
      .map(([id, port]) => `${id}@127.0.0.1:${this.internalPorts.get(id) ?? port}`)
      .join(',');
  }

  /** Starts a node the quorum does not name (a broker-only node) on a new port. */
  async addNode(id: number): Promise<void> {
    await this.#allocate(id);
    await this.startNode(id);
  }

  /** A node's internal listener, with `ClusterLayout.internalListen`. */
  internalUrl(id: number): string {
    return `http://127.0.0.1:${this.internalPorts.get(id)}`;
  }

  get ids(): number[] {
    return [...this.ports.keys()];
  }

  url(id: number): string {
    return `http://127.0.0.1:${this.ports.get(id)}`;
  }

  isRunning(id: number): boolean {
    return this.#children.has(id);
  }

  /** Starts node `id` (again) and resolves once it serves. */
  async startNode(id: number, timeoutMs = 30_000): Promise<void> {
    const options = {
      nodeId: id,
      port: this.ports.get(id),
      dataDir: join(this.dir, `node-${id}`),
      controllerQuorum: this.quorum,
      clusterSecret: SECRET,
      ...(this.internalPorts.has(id) ? { internalListen: `127.0.0.1:${this.internalPorts.get(id)}` } : {}),
      ...this.options,
      ...this.layout.nodeOptions?.(id),
    };
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'test/cluster/node-child.ts'), JSON.stringify(options)],
      {
        cwd: ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    this.#children.set(id, child);
    let log = '';
    child.stderr!.on('data', (d) => {
      log += d;
    });
    child.stdout!.on('data', (d) => {
      log += d;
    });
    const before = this.#logs.get(id) ?? '';
    this.#liveLogs.set(id, () => `${before}${log}`);
    child.once('exit', (code, signal) => {
      this.#liveLogs.delete(id);
      // Every incarnation's output, oldest first: a restarted node's earlier lives are evidence too.
      this.#logs.set(id, `${before}${log}--- node ${id} exited (${code ?? signal})\n`);
      if (this.#children.get(id) === child) this.#children.delete(id);
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`node ${id} did not start in ${timeoutMs} ms:\n${log}`)),
        timeoutMs,
      );
      const check = () => {
        if (/ready \d+/.test(log)) {
          clearTimeout(timer);
          child.stdout!.off('data', check);
          resolve();
        }
      };
      child.stdout!.on('data', check);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`node ${id} exited (${code ?? signal}) while starting:\n${log}`));
      });
    });
  }

  /** The output of a node's processes, those that exited and the running one, for a failing test's message. */
  logOf(id: number): string {
    return this.#liveLogs.get(id)?.() ?? this.#logs.get(id) ?? '';
  }

  /** Sends a signal and returns at once (SIGSTOP, SIGCONT: the process lives on). */
  signal(id: number, signal: NodeJS.Signals): void {
    this.#children.get(id)?.kill(signal);
  }

  /** Sends the signal and waits for the process to exit; says how it ended (undefined: not running). */
  async kill(
    id: number,
    signal: NodeJS.Signals = 'SIGKILL',
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
    const child = this.#children.get(id);
    if (!child) return undefined;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, by) => resolve({ code, signal: by })),
    );
    child.kill(signal);
    return exited;
  }

  async request(id: number, method: string, path: string, body?: unknown): Promise<Answer> {
    const response = await fetch(`${this.url(id)}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {}
    return { status: response.status, servedBy: response.headers.get('sluice-node-id'), body: parsed };
  }

  get(id: number, path: string): Promise<Answer> {
    return this.request(id, 'GET', path);
  }

  post(id: number, path: string, body: unknown): Promise<Answer> {
    return this.request(id, 'POST', path, body);
  }

  /** The active controller as a running node sees it. */
  async controllerId(): Promise<number | null> {
    for (const id of this.#children.keys()) {
      const answer = await this.get(id, '/v1/cluster').catch(() => undefined);
      if (answer?.status === 200 && answer.body.controllerId !== null) return answer.body.controllerId;
    }
    return null;
  }

  /** Kills every node and removes the data directories, unless `keepData` (a failing test's evidence). */
  async close(options: { keepData?: boolean } = {}): Promise<void> {
    await Promise.all([...this.#children.keys()].map((id) => this.kill(id)));
    if (!options.keepData) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `check` until it returns a value other than undefined; fails with `what` after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`${what} did not happen in ${timeoutMs} ms${last ? `: ${last}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
