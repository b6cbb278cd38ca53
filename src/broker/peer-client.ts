import * as http2 from 'node:http2';
import { isErrorCode, SluiceError } from '../common/errors.js';
import { connectPeer } from '../common/http2-peer.js';
import { CLUSTER_SECRET_HEADER } from '../protocol/internal-api.js';

export interface PeerResponse {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * Requests to other nodes over one cleartext HTTP/2 session per node, kept open and rebuilt when it
 * breaks. Every request presents the cluster secret. Sessions never hold the process open.
 */
export class PeerClient {
  readonly #sessions = new Map<string, http2.ClientHttp2Session>();
  readonly #secret: string;
  #closed = false;

  constructor(options: { clusterSecret: string }) {
    this.#secret = options.clusterSecret;
  }

  #session(base: string): http2.ClientHttp2Session {
    const existing = this.#sessions.get(base);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const session = connectPeer(base);
    session.unref();
    const forget = () => {
      if (this.#sessions.get(base) === session) this.#sessions.delete(base);
    };
    session.on('error', forget);
    session.on('close', forget);
    session.on('goaway', forget);
    this.#sessions.set(base, session);
    return session;
  }

  /**
   * One request; resolves with the whole answer, whatever its status. Rejects with
   * NETWORK_EXCEPTION when the node cannot be reached or does not answer
   * within `timeoutMs`.
   */
  request(
    base: string,
    options: {
      method: string;
      path: string;
      headers?: Record<string, string>;
      body?: Uint8Array;
      timeoutMs: number;
    },
  ): Promise<PeerResponse> {
    if (this.#closed) return Promise.reject(new SluiceError('SHUTTING_DOWN', 'the node is stopping'));
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(
          new SluiceError('NETWORK_EXCEPTION', `node at ${base} did not answer: ${error.message}`, {
            cause: error,
          }),
        );
      };
      let stream: http2.ClientHttp2Stream;
      try {
        stream = this.#session(base).request({
          ':method': options.method,
          ':path': options.path,
          [CLUSTER_SECRET_HEADER]: this.#secret,
          ...options.headers,
        });
      } catch (error) {
        reject(new SluiceError('NETWORK_EXCEPTION', `cannot reach ${base}`, { cause: error }));
        return;
      }
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        fail(new Error(`no answer in ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      timer.unref();
      let status = 0;
      let headers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        headers = h;
        status = Number(h[':status']);
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (settled) return;
        // A stream the peer closed (RST_STREAM NO_ERROR, its connection dropped) ends without
        // headers: that is no answer at all, not one with status 0 a caller would take as final.
        if (status === 0) {
          fail(new Error('the stream ended before an answer'));
          return;
        }
        settled = true;
        clearTimeout(timer);
        resolve({ status, headers, body: Buffer.concat(chunks) });
      });
      stream.on('error', fail);
      stream.on('close', () => fail(new Error('the stream closed before the answer ended')));
      stream.end(options.body === undefined ? undefined : Buffer.from(options.body));
    });
  }

  close(): void {
    this.#closed = true;
    for (const session of this.#sessions.values()) session.close();
    this.#sessions.clear();
  }
}

/** The problem+json (or msgpack problem) of a failed answer as the SluiceError it names. */
export function errorOf(response: PeerResponse, what: string): SluiceError {
  let problem: { code?: unknown; detail?: unknown; details?: unknown } = {};
  try {
    problem = JSON.parse(response.body.toString('utf8')) as typeof problem;
  } catch {}
  const code = isErrorCode(problem.code) ? problem.code : 'UNKNOWN_SERVER_ERROR';
  const detail = typeof problem.detail === 'string' ? problem.detail : `${what} answered ${response.status}`;
  return new SluiceError(code, detail, {
    ...(typeof problem.details === 'object' && problem.details !== null
      ? { details: problem.details as Record<string, unknown> }
      : {}),
  });
}
