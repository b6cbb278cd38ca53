import type { FastifyReply, FastifyRequest } from 'fastify';
import { SluiceError } from '../common/errors.js';
import { MEDIA } from '../protocol/api.js';
import { packr } from '../protocol/msgpack.js';

/** Content negotiation: which format a request's `Accept` asks for, and a body's media type. */

export type Format = 'json' | 'msgpack';

/** The response format `Accept` asks for; undefined when nothing acceptable is listed. */
export function negotiate(
  accept: string | undefined,
  extra: readonly string[] = [],
): Format | string | undefined {
  // The forms clients send on every request are answered without parsing.
  if (!accept || accept === MEDIA.json || accept === '*/*') return 'json';
  if (accept === MEDIA.msgpack) return 'msgpack';
  const types = accept
    .split(',')
    .map((part) => {
      const [type, ...params] = part.trim().toLowerCase().split(';');
      const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      return { type: type!.trim(), q: q ? Number(q.slice(2)) : 1 };
    })
    .filter((t) => t.q > 0)
    .sort((a, b) => b.q - a.q);
  for (const { type } of types) {
    if (type === MEDIA.msgpack || type === MEDIA.msgpackAlt) return 'msgpack';
    if (type === MEDIA.json || type === 'application/*' || type === '*/*' || type === MEDIA.problem)
      return 'json';
    if (extra.includes(type)) return type;
  }
  return undefined;
}

export function mediaTypeOf(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Sends `payload` with `status` in the format Accept asks for (JSON or msgpack), else NOT_ACCEPTABLE. */
export function sendNegotiated(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  payload: unknown,
): FastifyReply {
  const format = negotiate(request.headers.accept);
  if (format === undefined)
    throw new SluiceError(
      'NOT_ACCEPTABLE',
      `none of ${request.headers.accept} can be produced; use JSON or msgpack`,
    );
  reply.code(status);
  if (format === 'msgpack') return reply.type(MEDIA.msgpack).send(Buffer.from(packr.pack(payload)));
  return reply.type(MEDIA.json).send(JSON.stringify(payload));
}
