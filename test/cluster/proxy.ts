import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * What a link does with traffic: `pass` forwards it, `delay` forwards each chunk after `delayMs`
 * (in order), `blackhole` accepts connections and holds their bytes (delivered, in order, when the
 * link passes again, as TCP would after a partition heals), `drop` closes every connection and
 * refuses new ones.
 */
export type LinkMode =
  | { kind: 'pass' }
  | { kind: 'delay'; delayMs: number }
  | { kind: 'blackhole' }
  | { kind: 'drop' };

/** One direction of one connection: bytes held while the link is cut, then written in order. */
class Pipe {
  readonly #held: Buffer[] = [];
  readonly #delayed: { atMs: number; chunk: Buffer }[] = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly to: Socket,
    private readonly mode: () => LinkMode,
  ) {}

  push(chunk: Buffer): void {
    if (this.#closed) return;
    const mode = this.mode();
    if (mode.kind === 'blackhole' || this.#held.length > 0) {
      this.#held.push(chunk);
      if (mode.kind !== 'blackhole') this.release();
      return;
    }
    this.#send(chunk, mode);
  }

  /** Sends what a blackhole held, now that the link passes or delays again. */
  release(): void {
    const mode = this.mode();
    if (mode.kind === 'blackhole' || mode.kind === 'drop') return;
    for (const chunk of this.#held.splice(0)) this.#send(chunk, mode);
  }

  #send(chunk: Buffer, mode: LinkMode): void {
    const delayMs = mode.kind === 'delay' ? mode.delayMs : 0;
    // Later chunks never overtake earlier ones: while delayed chunks are on their way, every chunk
    // queues behind them, also when the link passes again meanwhile.
    if (delayMs === 0 && this.#delayed.length === 0) {
      this.to.write(chunk);
      return;
    }
    const last = this.#delayed.at(-1)?.atMs ?? 0;
    this.#delayed.push({ atMs: Math.max(Date.now() + delayMs, last), chunk });
    this.#schedule();
  }

  /** One timer at a time, for the oldest delayed chunk: timers of different lengths may fire out of order. */
  #schedule(): void {
    if (this.#timer || this.#delayed.length === 0) return;
    const waitMs = Math.max(0, this.#delayed[0]!.atMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = Date.now();
      while (this.#delayed.length > 0 && this.#delayed[0]!.atMs <= now) {
        const { chunk } = this.#delayed.shift()!;
        if (!this.#closed && !this.to.destroyed) this.to.write(chunk);
      }
      this.#schedule();
    }, waitMs);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    this.#held.length = 0;
    this.#delayed.length = 0;
    if (this.#timer) clearTimeout(this.#timer);
  }
}

/**
 * A TCP proxy for one directed link between two nodes (node i's connections to node j): the
 * fault test points node i at it and switches its mode. Listens on 127.0.0.1.
 */
export class LinkProxy {
  #mode: LinkMode = { kind: 'pass' };
  readonly #connections = new Set<{ client: Socket; upstream: Socket; pipes: Pipe[] }>();
  #server: Server | undefined;
  port = 0;

  /** `target` is looked up at each connection: a node restarted keeps its port. */
  constructor(
    readonly name: string,
    private readonly target: () => number | undefined,
  ) {}

  async listen(): Promise<number> {
    const server = createServer((client) => this.#accept(client));
    this.#server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  get mode(): LinkMode {
    return this.#mode;
  }

  set(mode: LinkMode): void {
    this.#mode = mode;
    if (mode.kind === 'drop') for (const c of [...this.#connections]) this.#end(c);
    else for (const c of this.#connections) for (const pipe of c.pipes) pipe.release();
  }

  #accept(client: Socket): void {
    const port = this.target();
    if (this.#mode.kind === 'drop' || port === undefined) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(port, '127.0.0.1');
    const connection = {
      client,
      upstream,
      pipes: [new Pipe(upstream, () => this.#mode), new Pipe(client, () => this.#mode)],
    };
    this.#connections.add(connection);
    client.on('data', (chunk: Buffer) => connection.pipes[0]!.push(chunk));
    upstream.on('data', (chunk: Buffer) => connection.pipes[1]!.push(chunk));
    const end = () => this.#end(connection);
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  }

  #end(connection: { client: Socket; upstream: Socket; pipes: Pipe[] }): void {
    if (!this.#connections.delete(connection)) return;
    for (const pipe of connection.pipes) pipe.close();
    connection.client.destroy();
    connection.upstream.destroy();
  }

  async close(): Promise<void> {
    for (const c of [...this.#connections]) this.#end(c);
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}
