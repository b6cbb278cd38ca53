import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { SeededRandom } from '../../src/common/random.js';

/**
 * An HTTP/2 (cleartext) proxy in front of one node that, for produce requests, seeded:
 * - answers nothing after the node has appended (the stream is reset: the client's outcome is
 *   unknown and it retries),
 * - sends the request to the node twice and answers the second answer,
 * - holds a request a few milliseconds before passing it on (requests in flight overtake each other).
 * Other requests pass untouched. Counts what it did, so that a test can check the faults happened.
 */
export class FaultyProxy {
  readonly counts = { passed: 0, answersDropped: 0, duplicated: 0, delayed: 0 };
  #target: string | undefined;
  #server: http2.Http2Server;
  #client: http2.ClientHttp2Session | undefined;
  readonly #random: SeededRandom;
  #faulty = true;

  private constructor(server: http2.Http2Server, seed: number) {
    this.#server = server;
    this.#random = new SeededRandom(seed);
    server.on('stream', (stream, headers) => void this.#handle(stream, headers));
  }

  static async start(seed: number): Promise<FaultyProxy> {
    const server = http2.createServer();
    const proxy = new FaultyProxy(server, seed);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** Where requests go (set once the node is up: it advertises the proxy's address). */
  target(url: string): void {
    this.#target = url;
  }

  /** Stops injecting faults (for the reads that check the outcome). */
  heal(): void {
    this.#faulty = false;
  }

  async close(): Promise<void> {
    this.#client?.close();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    // A client that gives up on a request resets its stream: nothing more to do for it.
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of stream) chunks.push(chunk as Buffer);
    } catch {
      return;
    }
    const body = Buffer.concat(chunks);
    const produce = headers[':method'] === 'POST' && String(headers[':path']).includes('/records');
    const roll = this.#faulty && produce ? this.#random.int(100) : 100;
    try {
      if (roll < 15) {
        this.counts.delayed++;
        await new Promise((resolve) => setTimeout(resolve, 1 + this.#random.int(30)));
      }
      let answer = await this.#forward(headers, body);
      if (roll >= 15 && roll < 30) {
        this.counts.duplicated++;
        answer = await this.#forward(headers, body);
      } else if (roll >= 30 && roll < 45) {
        this.counts.answersDropped++;
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        return;
      } else {
        this.counts.passed++;
      }
      if (stream.destroyed) return;
      stream.respond({ ':status': answer.status, ...answer.headers });
      stream.end(answer.body);
    } catch (error) {
      if (process.env.PROXY_DEBUG) console.error('proxy', error);
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  }

  #forward(
    headers: http2.IncomingHttpHeaders,
    body: Buffer,
  ): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
    if (!this.#client || this.#client.closed || this.#client.destroyed) {
      this.#client = http2.connect(this.#target!);
      this.#client.on('error', () => {});
    }
    const client = this.#client;
    return new Promise((resolve, reject) => {
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(headers)) {
        if (value === undefined || (name.startsWith(':') && name !== ':method' && name !== ':path')) continue;
        out[name] = value;
      }
      const request = client.request(out);
      let status = 0;
      const answerHeaders: Record<string, string> = {};
      request.on('response', (h) => {
        status = Number(h[':status']);
        for (const [name, value] of Object.entries(h))
          if (!name.startsWith(':') && typeof value === 'string') answerHeaders[name] = value;
      });
      const parts: Buffer[] = [];
      request.on('data', (chunk: Buffer) => parts.push(chunk));
      // A stream the leader ended without an answer (it died, say) is a failure, not an empty 200.
      request.on('end', () =>
        status === 0
          ? reject(new Error('the upstream stream ended without an answer'))
          : resolve({ status, headers: answerHeaders, body: Buffer.concat(parts) }),
      );
      request.on('error', reject);
      // A GET's stream is ended by the request itself.
      if (!request.writableEnded) request.end(body);
    });
  }
}
