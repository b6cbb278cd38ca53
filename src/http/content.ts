import { MEDIA } from '../protocol/api.js';

/** Content negotiation: which format a request's `Accept` asks for, and a body's media type. */

export type Format = 'json' | 'msgpack';

/** The response format `Accept` asks for; undefined when nothing acceptable is listed. */
export function negotiate(
  accept: string | undefined,
  extra: readonly string[] = [],
): Format | string | undefined {
  if (!accept) return 'json';
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
