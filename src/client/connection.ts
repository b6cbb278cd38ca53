import * as http2 from 'node:http2';
import type { SecureContextOptions } from 'node:tls';
import { isErrorCode, SluiceError } from '../common/errors.js';
import { MEDIA } from '../protocol/api.js';
import { packr, unpackr } from '../protocol/msgpack.js';

export interface RequestOptions {
  body?: Buffer | Uint8Array;
  contentType?: string;
  accept?: string;
  /** More request headers (lower-case names). */
  headers?: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface Response {
  status: number;
  contentType: string;
  body: Buffer;
}

/** How a client reaches the nodes, beyond their address: the same for every connection it opens. */
export interface TransportOptions {
  /**
   * Headers sent with every request (lower-case names), e.g. `authorization` for a proxy in front
   * of the cluster. The SDK's own headers (`:path`, `accept`, `content-type`) win over these.
   */
  headers?: Record<string, string>;
  /**
   * TLS settings for `https://` addresses (a certificate authority to trust, a client certificate,
   * `rejectUnauthorized`, `servername`). HTTP/2 over TLS is negotiated by ALPN (`h2`).
   */
  tls?: SecureContextOptions & { rejectUnauthorized?: boolean; servername?: string };
}

/** The transport part of a client's options (headers, TLS), for its connections. */
export function transportOf(options: TransportOptions): TransportOptions {
  return {
    ...(options.headers !== undefined ? { headers: options.headers } : {}),
    ...(options.tls !== undefined ? { tls: options.tls } : {}),
  };
}

/** Largest response body the client buffers. */
const RESPONSE_BYTES_MAX = 64 * 1024 * 1024;

/**
 * One HTTP/2 session (cleartext, prior knowledge) to one node, opened on first use and again after
 * it closes or receives GOAWAY. Requests are multiplexed on it.
 */
export class Connection {
  #session: http2.ClientHttp2Session | undefined;
  #closed = false;
  #pending = 0;

  readonly #transport: TransportOptions;

  constructor(
    readonly baseUrl: string,
    transport: TransportOptions = {},
  ) {
    checkBaseUrl(baseUrl);
    this.#transport = transport;
  }

  /** The transport options this connection was made with (for connections to the other nodes). */
  get transport(): TransportOptions {
    return this.#transport;
  }

  #sessionFor(): http2.ClientHttp2Session {
    if (this.#closed) throw new SluiceError('SHUTTING_DOWN', 'the client is closed');
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return this.#session;
    const session = this.baseUrl.startsWith('https:')
      ? http2.connect(this.baseUrl, { ...this.#transport.tls, ALPNProtocols: ['h2'] })
      : http2.connect(this.baseUrl);
    session.on('error', () => {});
    session.on('goaway', () => session.close());
    session.on('close', () => {
      if (this.#session === session) this.#session = undefined;
    });
    session.unref();
    this.#session = session;
    return session;
  }

  request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    return new Promise((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      try {
        session = this.#sessionFor();
      } catch (error) {
        reject(error);
        return;
      }
      session.ref();
      const stream = session.request({
        ...this.#transport.headers,
        ...options.headers,
        ':method': method,
        ':path': path,
        accept: options.accept ?? MEDIA.msgpack,
        ...(options.contentType ? { 'content-type': options.contentType } : {}),
      });
      const chunks: Buffer[] = [];
      let size = 0;
      let status = 0;
      let contentType = '';
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      // The session keeps the process alive only while a request is in flight.
      this.#pending++;
      const finish = (error?: unknown): boolean => {
        if (done) return false;
        done = true;
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (--this.#pending === 0) session.unref();
        if (error) reject(error);
        return true;
      };
      const onAbort = () => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        finish(new SluiceError('REQUEST_TIMED_OUT', `${method} ${path} was aborted`));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          finish(
            new SluiceError(
              'REQUEST_TIMED_OUT',
              `${method} ${path} took longer than ${options.timeoutMs} ms`,
            ),
          );
        }, options.timeoutMs);
      }
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
        contentType = String(headers['content-type'] ?? '');
      });
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > RESPONSE_BYTES_MAX) {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          finish(new SluiceError('LIMIT_EXCEEDED', `response larger than ${RESPONSE_BYTES_MAX} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      stream.on('end', () => {
        // A stream reset with NO_ERROR before any headers ends without an answer: that is a
        // failure (the request may or may not have been carried out), never an empty success.
        if (status === 0) {
          finish(
            new SluiceError('NETWORK_EXCEPTION', `${method} ${path}: the stream ended without an answer`, {
              retriable: true,
            }),
          );
          return;
        }
        if (finish()) resolve({ status, contentType, body: Buffer.concat(chunks) });
      });
      stream.on('error', (error: NodeJS.ErrnoException) => {
        const cause = (error.cause ?? error) as NodeJS.ErrnoException;
        const reason = cause.code ? NETWORK_ERRORS[cause.code] : undefined;
        const message = reason
          ? `cannot connect to ${this.baseUrl} (${reason})`
          : `${method} ${path} failed: ${cause.message}`;
        finish(new SluiceError('LEADER_NOT_AVAILABLE', message, { cause: error, retriable: true }));
      });
      stream.end(options.body);
    });
  }

  /** Sends a msgpack body (or none), decodes a msgpack answer, and throws SluiceError for a problem. */
  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    options: Omit<RequestOptions, 'body' | 'contentType'> = {},
  ): Promise<T> {
    const response = await this.request(method, path, {
      ...options,
      ...(body === undefined ? {} : { body: packr.pack(body), contentType: MEDIA.msgpack }),
    });
    return decodeResponse<T>(response);
  }

  close(): void {
    this.#closed = true;
    this.#session?.close();
    this.#session = undefined;
  }
}

/** Socket errors that mean the node could not be reached, in words (the errno code is in `cause`). */
const NETWORK_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'connection closed',
};

/** Whether the error says a node could not be reached (a refused, reset or unresolved connection). */
export function isConnectionError(error: unknown): boolean {
  const cause = (error as { cause?: NodeJS.ErrnoException } | undefined)?.cause;
  const code = (cause?.cause as NodeJS.ErrnoException | undefined)?.code ?? cause?.code;
  return code !== undefined && code in NETWORK_ERRORS;
}

/**
 * Refuses what cannot be a node's address, before any connection: an `http://` or `https://` URL
 * with a host and nothing after the port (no path, query or credentials).
 */
export function checkBaseUrl(baseUrl: string): URL {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new SluiceError(
      'INVALID_REQUEST',
      `${JSON.stringify(baseUrl)} is not a URL: give http://HOST:PORT or https://HOST:PORT`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new SluiceError('INVALID_REQUEST', `only http:// and https:// URLs are supported, got ${baseUrl}`);
  if (
    url.hostname === '' ||
    url.username !== '' ||
    url.search !== '' ||
    url.hash !== '' ||
    url.pathname !== '/'
  )
    throw new SluiceError(
      'INVALID_REQUEST',
      `${JSON.stringify(baseUrl)} is not a node's address: give http://HOST:PORT or https://HOST:PORT, with no path`,
    );
  return url;
}

export function decodeResponse<T>(response: Response): T {
  if (response.status >= 400) throw errorFromResponse(response);
  if (response.body.length === 0) return undefined as T;
  if (response.contentType.startsWith(MEDIA.msgpack)) return unpackr.unpack(response.body) as T;
  return JSON.parse(response.body.toString('utf8')) as T;
}

/** Rebuilds the server's SluiceError from a problem+json body. */
export function errorFromResponse(response: Response): SluiceError {
  let problem: Record<string, unknown> = {};
  try {
    problem = JSON.parse(response.body.toString('utf8'));
  } catch {
    // Not a problem document: fall through to a generic error by status.
  }
  const {
    code,
    detail,
    retriable,
    type: _type,
    title: _title,
    status: _status,
    instance: _instance,
    ...details
  } = problem as Record<string, unknown> & {
    code?: string;
    detail?: string;
    retriable?: boolean;
  };
  const errorCode = isErrorCode(code)
    ? code
    : response.status >= 500
      ? 'UNKNOWN_SERVER_ERROR'
      : 'INVALID_REQUEST';
  return new SluiceError(errorCode, typeof detail === 'string' ? detail : `HTTP ${response.status}`, {
    details,
    ...(typeof retriable === 'boolean' ? { retriable } : {}),
  });
}
