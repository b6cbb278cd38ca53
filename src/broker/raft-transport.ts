import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { assert } from '../common/assert.js';
import { Backoff } from '../common/backoff.js';
import type { Clock } from '../common/clock.js';
import type { Random } from '../common/random.js';
import { CLUSTER_SECRET_HEADER, RAFT_MESSAGES_MAX, RAFT_MESSAGES_PATH } from '../protocol/internal-api.js';
import { packr } from '../protocol/msgpack.js';
import type { RaftTransport } from '../raft/driver.js';
import type { Message, NodeId } from '../raft/types.js';

/** Messages waiting for one peer; past it the oldest are dropped (Raft recovers from loss). */
const QUEUE_MAX = 4096;
/** Messages in one request. */
const BATCH_MAX = 512;
assert(BATCH_MAX <= RAFT_MESSAGES_MAX, 'a batch fits one internal request');

interface Peer {
  url: string;
  session: http2.ClientHttp2Session | undefined;
  queue: Message[];
  sending: boolean;
  backoff: Backoff;
  retryAt: number;
}

/**
 * Raft messages over HTTP/2 with msgpack bodies on the cluster-internal API: one session per
 * peer, messages batched into one POST while the previous one is in flight, reconnection with
 * backoff, and the shared cluster secret on every request. Incoming messages arrive through the
 * `/internal/raft` route (src/http/routes/internal-raft.ts), which calls `deliver`.
 */
export class Http2RaftTransport implements RaftTransport {
  readonly #peers = new Map<NodeId, Peer>();
  #handler: ((message: Message) => void) | undefined;
  #closed = false;

  readonly #clock: Clock;

  constructor(
    readonly options: {
      id: NodeId;
      /** Every member's base URL (`http://host:port`), this node's own included or not. */
      peers: Record<number, string>;
      clusterSecret: string;
      requestTimeoutMs?: number;
    },
    deps: { clock: Clock; random: Random },
  ) {
    this.#clock = deps.clock;
    const random = deps.random;
    for (const [id, url] of Object.entries(options.peers)) {
      if (Number(id) === options.id) continue;
      this.#peers.set(Number(id), {
        url,
        session: undefined,
        queue: [],
        sending: false,
        backoff: new Backoff({ initialMs: 50, maxMs: 2000 }, random.fork()),
        retryAt: 0,
      });
    }
  }

  send(message: Message): void {
    const peer = this.#peers.get(message.to);
    if (!peer || this.#closed) return;
    if (peer.queue.length >= QUEUE_MAX) peer.queue.shift();
    peer.queue.push(message);
    if (!peer.sending) void this.#flush(peer);
  }

  onMessage(handler: (message: Message) => void): void {
    this.#handler = handler;
  }

  /** Called by the HTTP route with messages from a peer. */
  deliver(messages: Message[]): void {
    if (this.#closed || !this.#handler) return;
    for (const m of messages) if (m.to === this.options.id) this.#handler(m);
  }

  async #flush(peer: Peer): Promise<void> {
    peer.sending = true;
    try {
      while (peer.queue.length > 0 && !this.#closed) {
        const wait = peer.retryAt - this.#clock.monotonicMs();
        if (wait > 0) await new Promise<void>((r) => this.#clock.setTimeout(r, wait));
        const batch = peer.queue.splice(0, BATCH_MAX);
        try {
          await this.#post(peer, packr.pack(batch));
          peer.backoff.reset();
        } catch {
          // The batch is lost; Raft resends what matters. Reconnect after a pause.
          peer.session?.destroy();
          peer.session = undefined;
          peer.retryAt = this.#clock.monotonicMs() + peer.backoff.next();
        }
      }
    } finally {
      peer.sending = false;
    }
  }

  #post(peer: Peer, body: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!peer.session || peer.session.closed || peer.session.destroyed) {
        // Small messages must not wait for Nagle's algorithm (40 ms with delayed acknowledgements).
        peer.session = http2.connect(peer.url, {
          createConnection: () =>
            connect({
              host: new URL(peer.url).hostname,
              port: Number(new URL(peer.url).port),
              noDelay: true,
            }),
        });
        peer.session.on('error', () => {});
        peer.session.on('goaway', () => peer.session?.close());
        peer.session.unref();
      }
      const stream = peer.session.request({
        ':method': 'POST',
        ':path': RAFT_MESSAGES_PATH,
        'content-type': 'application/vnd.msgpack',
        [CLUSTER_SECRET_HEADER]: this.options.clusterSecret,
      });
      stream.setTimeout(this.options.requestTimeoutMs ?? 5000, () =>
        stream.close(http2.constants.NGHTTP2_CANCEL),
      );
      let status = 0;
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
      });
      stream.on('data', () => {});
      stream.on('end', () =>
        status >= 200 && status < 300 ? resolve() : reject(new Error(`peer answered ${status}`)),
      );
      stream.on('error', reject);
      stream.on('close', () => reject(new Error('stream closed')));
      stream.end(body);
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const peer of this.#peers.values()) {
      peer.session?.close();
      peer.queue = [];
    }
  }
}
