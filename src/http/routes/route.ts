import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { SluiceError } from '../../common/errors.js';
import { type Endpoint, type EndpointRequest, MEDIA } from '../../protocol/api.js';
import { mediaTypeOf, negotiate } from '../content.js';
import { REQUEST_CONTENT_ENCODINGS } from '../encoding.js';

/** A request to `E`, its params, query and body typed from the endpoint table's schemas. */
export type EndpointFastifyRequest<E extends Endpoint> = FastifyRequest<EndpointRequest<E>>;

/**
 * Adds the route of one endpoint of the table: its method, path and schemas, and `handler`. An
 * onRequest hook checks Accept, Content-Type and Content-Encoding against what the table says the
 * endpoint produces and takes, so that a refusal comes before the body is read, parsed or acted on.
 */
export function addRoute<E extends Endpoint>(
  app: FastifyInstance,
  endpoint: E,
  handler: (request: EndpointFastifyRequest<E>, reply: FastifyReply) => Promise<unknown>,
): void {
  const check = requestCheck(endpoint);
  const observe = app.httpMetrics.observer(endpoint);
  app.route<EndpointRequest<E>>({
    method: endpoint.method,
    url: endpoint.path,
    schema: {
      ...(endpoint.params ? { params: endpoint.params } : {}),
      ...(endpoint.querystring ? { querystring: endpoint.querystring } : {}),
      ...(endpoint.body ? { body: endpoint.body } : {}),
    },
    // Callback style: an async hook would cost a promise on every request.
    onRequest: (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
      const error = check(request);
      if (error === undefined) done();
      else done(error);
    },
    onResponse: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
      observe(request, reply);
      done();
    },
    handler,
  });
}

/** What the checks read of a request: a fastify request, or an HTTP/2 stream's headers. */
export interface CheckedRequest {
  readonly headers: IncomingHttpHeaders;
  readonly raw: { readonly rawHeaders: readonly string[] };
}

/**
 * The checks of one endpoint, precomputed: what it answers in and which bodies it takes. Returns
 * the refusal, or undefined. The common request (no or a plain Accept, one plain Content-Type)
 * allocates nothing.
 */
export function requestCheck(endpoint: Endpoint): (request: CheckedRequest) => SluiceError | undefined {
  if (!endpoint.produces.includes(MEDIA.json) || !endpoint.produces.includes(MEDIA.msgpack))
    throw new Error(`${endpoint.id} must answer in JSON and msgpack`);
  const alsoProduces = endpoint.produces.filter((type) => type !== MEDIA.json && type !== MEDIA.msgpack);
  const consumes = new Set(endpoint.consumes ?? []);
  const takesBody = consumes.size > 0;
  const route = `${endpoint.method} ${endpoint.path}`;
  return (request) => {
    const headers = request.headers;
    const accept = headers.accept;
    if (accept !== undefined && negotiate(accept, alsoProduces) === undefined)
      return new SluiceError(
        'NOT_ACCEPTABLE',
        `none of ${accept} can be produced; ${route} answers in ${endpoint.produces.join(', ')}`,
      );
    const contentType = headers['content-type'];
    if (!takesBody) {
      if (hasBody(request)) return new SluiceError('UNSUPPORTED_MEDIA_TYPE', `${route} takes no body`);
      return undefined;
    }
    if (contentType === undefined) {
      if (hasBody(request))
        return new SluiceError(
          'UNSUPPORTED_MEDIA_TYPE',
          `a body needs a Content-Type: one of ${[...consumes].join(', ')}`,
        );
      return undefined;
    }
    if (headerCount(request.raw.rawHeaders, 'content-type') > 1)
      return new SluiceError('INVALID_REQUEST', 'the request has more than one Content-Type header');
    if (!consumes.has(contentType) && !consumes.has(mediaTypeOf(contentType)))
      return new SluiceError(
        'UNSUPPORTED_MEDIA_TYPE',
        `${route} takes ${[...consumes].join(', ')}, not ${contentType}`,
      );
    const encoding = headers['content-encoding'];
    if (encoding !== undefined && !REQUEST_CONTENT_ENCODINGS.has(encoding.trim().toLowerCase()))
      return new SluiceError(
        'UNSUPPORTED_MEDIA_TYPE',
        `Content-Encoding ${encoding} is not supported; send the body as gzip, br, zstd or identity`,
        { details: { field: 'headers/content-encoding' } },
      );
    return undefined;
  };
}

/**
 * Whether the request announces a body. HTTP/1.1 must (Content-Length or Transfer-Encoding); an
 * HTTP/2 request without Content-Length is taken as bodiless, as fastify does, and its data is
 * never parsed.
 */
function hasBody(request: CheckedRequest): boolean {
  const { headers } = request;
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** How often the lower-case header `name` occurs, in any case, without allocating. */
function headerCount(rawHeaders: readonly string[], name: string): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i]!;
    if (raw.length !== name.length) continue;
    let same = true;
    for (let j = 0; j < raw.length && same; j++) {
      const c = raw.charCodeAt(j);
      const lower = c >= 65 && c <= 90 ? c + 32 : c;
      same = lower === name.charCodeAt(j);
    }
    if (same) count++;
  }
  return count;
}
