import * as http2 from 'node:http2';
import { assert } from '../common/assert.js';
import { Backoff } from '../common/backoff.js';
import type { Clock, TimerHandle } from '../common/clock.js';
import { crc32c } from '../common/crc32c.js';
import { connectPeer } from '../common/http2-peer.js';
import type { Random } from '../common/random.js';
import {
  CLUSTER_SECRET_HEADER,
  RAFT_CONTROL_MESSAGE_TYPES,
  RAFT_MESSAGES_BYTES_MAX,
  RAFT_MESSAGES_MAX,
  RAFT_MESSAGES_PATH,
  RAFT_SNAPSHOT_CHUNKS_PATH,
  SNAPSHOT_CHUNK_BYTES,
  SNAPSHOT_CHUNKED_BYTES_MIN,
  type SnapshotChunk,
  type SnapshotChunkOutcome,
} from '../protocol/internal-api.js';
import { packr } from '../protocol/msgpack.js';
import type { RaftTransport } from '../raft/driver.js';
import type { Message, NodeId } from '../raft/types.js';

/**
 * Control messages waiting for one peer; past it the oldest are dropped (Raft recovers from loss,
 * and an old heartbeat or vote is worth less than a new one).
 */
const CONTROL_QUEUE_MAX = 1024;
/** Appends and whole small snapshots waiting for one peer; past it the oldest are dropped. */
const DATA_QUEUE_MAX = 4096;
/** Messages in one request. */
const BATCH_MAX = 512;
/** Bytes in one request body: a quarter of what a receiver takes, so one batch never hits it. */
const BATCH_BYTES_MAX = RAFT_MESSAGES_BYTES_MAX / 4;
/** Tries of one chunk before the transfer is given up (Raft sends the snapshot again). */
const CHUNK_ATTEMPTS_MAX = 5;
assert(BATCH_MAX <= RAFT_MESSAGES_MAX, 'a batch fits one internal request');
assert(SNAPSHOT_CHUNKED_BYTES_MIN + 64 * 1024 <= RAFT_MESSAGES_BYTES_MAX, 'a whole snapshot fits a request');

/** The driver's election timeout for its options, with the driver's defaults (100 ms × 10). */
export function electionTimeoutMs(options: { tickMs?: number; electionTicks?: number }): number {
  return (options.tickMs ?? 100) * (options.electionTicks ?? 10);
}

export interface Http2RaftTransportOptions {
  id: NodeId;
  /**
   * Every node that may be a member, with its base URL (`http://host:port`), this node's own
   * included or not. Messages are taken only from these ids (`isKnownMember`); `setPeer` and
   * `removePeer` change the list as members are added or removed.
   */
  peers: Record<number, string>;
  clusterSecret: string;
  /** The driver's election timeout (`electionTimeoutMs(driverOptions)`); default 1000. */
  electionTimeoutMs?: number;
  /**
   * How long a request of control messages (votes, heartbeats, acknowledgements) may take before
   * it is cancelled and the connection rebuilt; default half the election timeout, so that a
   * stuck connection is replaced before a follower gives up on its leader.
   */
  controlTimeoutMs?: number;
  /** How long a request of appends (or of a small snapshot) may take; default 5000. */
  requestTimeoutMs?: number;
  /** How long one snapshot chunk may take; default 10 000. */
  chunkTimeoutMs?: number;
  /** A snapshot in assembly that receives no chunk for this long is dropped; default 30 000. */
  assemblyTimeoutMs?: number;
}

interface Failure extends Error {
  /** The peer's HTTP status when it answered; undefined when the request never completed. */
  status?: number;
}

/** One HTTP/2 session to one peer with its own reconnection backoff. */
class Connection {
  #session: http2.ClientHttp2Session | undefined;
  #retryAt = 0;

  constructor(
    readonly url: string,
    readonly secret: string,
    readonly clock: Clock,
    readonly backoff: Backoff,
  ) {}

  async waitForRetry(): Promise<void> {
    const wait = this.#retryAt - this.clock.monotonicMs();
    if (wait > 0) await new Promise<void>((r) => this.clock.setTimeout(r, wait));
  }

  /** After a failed request: drop the session and wait before the next one. */
  failed(): void {
    this.#session?.destroy();
    this.#session = undefined;
    this.#retryAt = this.clock.monotonicMs() + this.backoff.next();
  }

  succeeded(): void {
    this.backoff.reset();
  }

  close(): void {
    this.#session?.close();
    this.#session = undefined;
  }

  #open(): http2.ClientHttp2Session {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return this.#session;
    const session = connectPeer(this.url);
    session.on('error', () => {});
    session.on('goaway', () => session.close());
    session.unref();
    this.#session = session;
    return session;
  }

  post(path: string, body: Buffer, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const stream = this.#open().request({
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/vnd.msgpack',
        [CLUSTER_SECRET_HEADER]: this.secret,
      });
      stream.setTimeout(timeoutMs, () => stream.close(http2.constants.NGHTTP2_CANCEL));
      let status = 0;
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
      });
      stream.on('data', () => {});
      stream.on('end', () => {
        if (status >= 200 && status < 300) return resolve();
        const failure: Failure = new Error(`peer answered ${status}`);
        failure.status = status;
        reject(failure);
      });
      stream.on('error', reject);
      stream.on('close', () => reject(new Error('stream closed')));
      stream.end(body);
    });
  }
}

/** The msgpack array header for `length` items. */
function arrayHeader(length: number): Buffer {
  if (length < 16) return Buffer.from([0x90 | length]);
  const header = Buffer.alloc(3);
  header[0] = 0xdc;
  header.writeUInt16BE(length, 1);
  return header;
}

/**
 * A queue of messages to one peer on its own session, sent in batches (one request in flight at a
 * time, the next batch gathered meanwhile). Each message is packed alone and the batch is the
 * msgpack array of them, so a batch is cut by bytes exactly.
 */
class MessageLane {
  #queue: Message[] = [];
  #sending = false;
  #closed = false;
  /** Messages dropped: past the queue limit, or too large for any request. */
  dropped = 0;

  constructor(
    readonly connection: Connection,
    readonly queueMax: number,
    readonly timeoutMs: number,
  ) {}

  push(message: Message): void {
    if (this.#closed) return;
    if (this.#queue.length >= this.queueMax) {
      this.#queue.shift();
      this.dropped++;
    }
    this.#queue.push(message);
    if (!this.#sending) void this.#flush();
  }

  close(): void {
    this.#closed = true;
    this.#queue = [];
    this.connection.close();
  }

  #nextBatch(): Buffer | undefined {
    const parts: Buffer[] = [];
    let bytes = 0;
    while (this.#queue.length > 0 && parts.length < BATCH_MAX) {
      const packed = packr.pack(this.#queue[0]);
      if (packed.length + 3 > RAFT_MESSAGES_BYTES_MAX) {
        // No receiver takes it; the core must send smaller appends (see docs/raft.md).
        this.#queue.shift();
        this.dropped++;
        continue;
      }
      if (parts.length > 0 && bytes + packed.length > BATCH_BYTES_MAX) break;
      this.#queue.shift();
      // packr goes on writing after a buffer it has returned, never over it: no copy needed.
      parts.push(packed);
      bytes += packed.length;
    }
    if (parts.length === 0) return undefined;
    return Buffer.concat([arrayHeader(parts.length), ...parts]);
  }

  async #flush(): Promise<void> {
    this.#sending = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        await this.connection.waitForRetry();
        if (this.#closed) break;
        const body = this.#nextBatch();
        if (!body) break;
        try {
          await this.connection.post(RAFT_MESSAGES_PATH, body, this.timeoutMs);
          this.connection.succeeded();
        } catch {
          // The batch is lost; Raft resends what matters. Reconnect after a pause.
          this.connection.failed();
        }
      }
    } finally {
      this.#sending = false;
    }
  }
}

type SnapshotMessage = Extract<Message, { type: 'snapshot' }>;

interface Transfer {
  message: SnapshotMessage;
  crc32c: number;
}

function sameTransfer(a: Transfer, b: Transfer): boolean {
  const x = a.message;
  const y = b.message;
  return (
    x.term === y.term &&
    x.snapshot.index === y.snapshot.index &&
    x.snapshot.term === y.snapshot.term &&
    x.snapshot.data.byteLength === y.snapshot.data.byteLength &&
    a.crc32c === b.crc32c
  );
}

/**
 * Large snapshots to one peer, as ordered chunks on a session of their own, one transfer at a
 * time. A newer snapshot replaces the one being sent (between chunks); the same snapshot asked
 * again while it is being sent is not started twice.
 */
class SnapshotLane {
  #current: Transfer | undefined;
  #next: Transfer | undefined;
  #closed = false;
  /** Transfers not finished: refused, too many failed tries of one chunk, or replaced by a newer one. */
  abandoned = 0;

  constructor(
    readonly connection: Connection,
    readonly timeoutMs: number,
  ) {}

  push(message: SnapshotMessage): void {
    if (this.#closed) return;
    const transfer = { message, crc32c: crc32c(message.snapshot.data) };
    if (this.#current && !this.#next && sameTransfer(this.#current, transfer)) return;
    this.#next = transfer;
    if (!this.#current) void this.#run();
  }

  close(): void {
    this.#closed = true;
    this.#next = undefined;
    this.connection.close();
  }

  async #run(): Promise<void> {
    while (this.#next && !this.#closed) {
      this.#current = this.#next;
      this.#next = undefined;
      try {
        if (!(await this.#send(this.#current))) this.abandoned++;
      } finally {
        this.#current = undefined;
      }
    }
  }

  /** Sends every chunk in order; false when the transfer was given up or replaced. */
  async #send(transfer: Transfer): Promise<boolean> {
    const { message } = transfer;
    const data = message.snapshot.data;
    const header = {
      index: message.snapshot.index,
      term: message.snapshot.term,
      membership: message.snapshot.membership,
    };
    for (let offset = 0; offset < data.byteLength || offset === 0; offset += SNAPSHOT_CHUNK_BYTES) {
      const chunk: SnapshotChunk = {
        from: message.from,
        to: message.to,
        term: message.term,
        snapshot: header,
        totalBytes: data.byteLength,
        crc32c: transfer.crc32c,
        offset,
        data: data.subarray(offset, offset + SNAPSHOT_CHUNK_BYTES),
      };
      const body = packr.pack(chunk);
      let sent = false;
      for (let attempt = 0; attempt < CHUNK_ATTEMPTS_MAX && !sent; attempt++) {
        await this.connection.waitForRetry();
        if (this.#closed || this.#next) return false;
        try {
          await this.connection.post(RAFT_SNAPSHOT_CHUNKS_PATH, body, this.timeoutMs);
          this.connection.succeeded();
          sent = true;
        } catch (error) {
          this.connection.failed();
          // A refusal (a gap, a bad CRC, a stranger) will not change on a retry; a failure of
          // the connection or of the peer (5xx) may.
          const status = (error as Failure).status;
          if (status !== undefined && status < 500) return false;
        }
      }
      if (!sent) return false;
      if (data.byteLength === 0) break;
    }
    return true;
  }
}

interface Assembly {
  key: string;
  first: SnapshotChunk;
  parts: Uint8Array[];
  received: number;
  timer: TimerHandle;
}

/**
 * The receiving side of chunked snapshots: one transfer in assembly per sender, dropped after
 * `timeoutMs` without a chunk, handed over as one `snapshot` message only when every byte has
 * arrived in order and the whole matches its CRC-32C. Chunks are checked field by field
 * (`checkSnapshotChunk`) before they come here.
 */
export class SnapshotAssembler {
  readonly #assemblies = new Map<NodeId, Assembly>();

  constructor(
    readonly options: { timeoutMs: number },
    readonly deps: { clock: Clock; deliver: (message: SnapshotMessage) => void },
  ) {}

  /** Senders with a transfer in assembly. */
  get size(): number {
    return this.#assemblies.size;
  }

  receive(chunk: SnapshotChunk): SnapshotChunkOutcome {
    const key = JSON.stringify([chunk.term, chunk.snapshot, chunk.totalBytes, chunk.crc32c]);
    let assembly = this.#assemblies.get(chunk.from);
    if (!assembly || assembly.key !== key) {
      // Only the first chunk starts a transfer; a stray later one leaves the current one be.
      if (chunk.offset !== 0) return 'outOfOrder';
      this.#drop(chunk.from);
      assembly = { key, first: chunk, parts: [], received: 0, timer: this.#timer(chunk.from) };
      this.#assemblies.set(chunk.from, assembly);
    } else {
      if (chunk.offset + chunk.data.byteLength <= assembly.received) return 'duplicate';
      if (chunk.offset !== assembly.received) {
        this.#drop(chunk.from);
        return 'outOfOrder';
      }
      assembly.timer.cancel();
      assembly.timer = this.#timer(chunk.from);
    }
    // The body buffer may be reused by the HTTP layer: keep a copy.
    assembly.parts.push(Buffer.from(chunk.data));
    assembly.received += chunk.data.byteLength;
    if (assembly.received < chunk.totalBytes) return 'accepted';
    this.#drop(chunk.from);
    const data = Buffer.concat(assembly.parts, assembly.received);
    if (crc32c(data) !== chunk.crc32c) return 'corrupt';
    const { from, to, term, snapshot } = assembly.first;
    this.deps.deliver({
      type: 'snapshot',
      from,
      to,
      term,
      snapshot: {
        index: snapshot.index,
        term: snapshot.term,
        membership: { voters: [...snapshot.membership.voters], learners: [...snapshot.membership.learners] },
        data,
      },
    });
    return 'complete';
  }

  close(): void {
    for (const from of [...this.#assemblies.keys()]) this.#drop(from);
  }

  #timer(from: NodeId): TimerHandle {
    return this.deps.clock.setTimeout(() => this.#drop(from), this.options.timeoutMs);
  }

  #drop(from: NodeId): void {
    this.#assemblies.get(from)?.timer.cancel();
    this.#assemblies.delete(from);
  }
}

interface Peer {
  control: MessageLane;
  data: MessageLane;
  snapshots: SnapshotLane;
}

/**
 * Raft messages over HTTP/2 with msgpack bodies on the cluster-internal API. Each peer gets three
 * lanes, each its own session (so its own TCP connection) with one request in flight:
 *
 * - control: votes, pre-votes, heartbeats, their answers, append answers and `timeoutNow`, with
 *   a request timeout under the election timeout: they decide who leads and must never queue
 *   behind bulk data;
 * - data: appends and snapshots smaller than `SNAPSHOT_CHUNKED_BYTES_MIN`, batched;
 * - snapshots: larger snapshots as ordered chunks (`SnapshotChunk`), reassembled by the
 *   receiver's `SnapshotAssembler` and handed to its driver as one message.
 *
 * Incoming messages arrive through the `/internal/raft` routes (src/http/routes/internal-raft.ts),
 * which check every field and call `deliver` or `receiveSnapshotChunk`.
 */
export class Http2RaftTransport implements RaftTransport {
  readonly #peers = new Map<NodeId, Peer>();
  readonly #members = new Set<NodeId>();
  readonly #assembler: SnapshotAssembler;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #controlTimeoutMs: number;
  #handler: ((message: Message) => void) | undefined;
  #closed = false;

  constructor(
    readonly options: Http2RaftTransportOptions,
    deps: { clock: Clock; random: Random },
  ) {
    this.#clock = deps.clock;
    this.#random = deps.random;
    this.#controlTimeoutMs =
      options.controlTimeoutMs ?? Math.max(1, Math.floor((options.electionTimeoutMs ?? 1000) / 2));
    this.#assembler = new SnapshotAssembler(
      { timeoutMs: options.assemblyTimeoutMs ?? 30_000 },
      { clock: deps.clock, deliver: (m) => this.#handle(m) },
    );
    for (const [id, url] of Object.entries(options.peers)) this.setPeer(Number(id), url);
  }

  /** The request timeout of the control lane, in milliseconds. */
  get controlTimeoutMs(): number {
    return this.#controlTimeoutMs;
  }

  /** Adds a node (or moves it to a new URL): it may send here, and messages to it leave. */
  setPeer(id: NodeId, url: string): void {
    if (id === this.options.id) return;
    this.#members.add(id);
    this.#closePeer(id);
    const connection = () =>
      new Connection(
        url,
        this.options.clusterSecret,
        this.#clock,
        new Backoff({ initialMs: 50, maxMs: 2000 }, this.#random.fork()),
      );
    this.#peers.set(id, {
      control: new MessageLane(connection(), CONTROL_QUEUE_MAX, this.#controlTimeoutMs),
      data: new MessageLane(connection(), DATA_QUEUE_MAX, this.options.requestTimeoutMs ?? 5000),
      snapshots: new SnapshotLane(connection(), this.options.chunkTimeoutMs ?? 10_000),
    });
  }

  /** Forgets a node: nothing more is sent to it or taken from it. */
  removePeer(id: NodeId): void {
    this.#members.delete(id);
    this.#closePeer(id);
  }

  /** Whether `id` is a node this one takes messages from (the receiving route asks). */
  isKnownMember(id: NodeId): boolean {
    return this.#members.has(id);
  }

  /** What the receiving route (`internalRaftRoutes`) needs from this transport. */
  receiver(): {
    nodeId: NodeId;
    isKnownMember: (id: NodeId) => boolean;
    deliver: (messages: Message[]) => void;
    receiveSnapshotChunk: (chunk: SnapshotChunk) => SnapshotChunkOutcome;
  } {
    return {
      nodeId: this.options.id,
      isKnownMember: (id) => this.isKnownMember(id),
      deliver: (messages) => this.deliver(messages),
      receiveSnapshotChunk: (chunk) => this.receiveSnapshotChunk(chunk),
    };
  }

  send(message: Message): void {
    const peer = this.#peers.get(message.to);
    if (!peer || this.#closed) return;
    if (RAFT_CONTROL_MESSAGE_TYPES.has(message.type)) peer.control.push(message);
    else if (message.type === 'snapshot' && message.snapshot.data.byteLength >= SNAPSHOT_CHUNKED_BYTES_MIN)
      peer.snapshots.push(message);
    else peer.data.push(message);
  }

  onMessage(handler: (message: Message) => void): void {
    this.#handler = handler;
  }

  /** Called by the HTTP route with messages from a peer, every field checked. */
  deliver(messages: Message[]): void {
    for (const m of messages) this.#handle(m);
  }

  /** Called by the HTTP route with one chunk of a large snapshot, every field checked. */
  receiveSnapshotChunk(chunk: SnapshotChunk): SnapshotChunkOutcome {
    if (this.#closed || chunk.to !== this.options.id) return 'outOfOrder';
    return this.#assembler.receive(chunk);
  }

  /** Per peer: messages dropped by full queues or for size, and snapshot transfers not finished. */
  stats(): Record<number, { controlDropped: number; dataDropped: number; snapshotsAbandoned: number }> {
    const stats: Record<number, { controlDropped: number; dataDropped: number; snapshotsAbandoned: number }> =
      {};
    for (const [id, p] of this.#peers)
      stats[id] = {
        controlDropped: p.control.dropped,
        dataDropped: p.data.dropped,
        snapshotsAbandoned: p.snapshots.abandoned,
      };
    return stats;
  }

  #handle(message: Message): void {
    if (this.#closed || !this.#handler) return;
    if (message.to === this.options.id && this.#members.has(message.from)) this.#handler(message);
  }

  #closePeer(id: NodeId): void {
    const peer = this.#peers.get(id);
    if (!peer) return;
    peer.control.close();
    peer.data.close();
    peer.snapshots.close();
    this.#peers.delete(id);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#assembler.close();
    for (const id of [...this.#peers.keys()]) this.#closePeer(id);
  }
}
