import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SluiceError } from '../common/errors.js';
import { ENDPOINTS, MEDIA } from '../protocol/api.js';
import { unpackr } from '../protocol/msgpack.js';
import { checkMsgpackBody, invalidMsgpack } from '../protocol/produce-body.js';

/** A msgpack produce body, kept as bytes until the handler reads it. */
export class MsgpackBody {
  constructor(readonly bytes: Buffer) {}
}

const PRODUCE_ROUTES = new Set<string>([ENDPOINTS.produce.path, ENDPOINTS.producePartition.path]);

/**
 * The body parsers of the public API: msgpack (a produce body stays bytes, its records copied into
 * a batch without being decoded), raw bytes and pre-built batches as buffers, NDJSON as a list of
 * records. JSON is fastify's own.
 */
export function addBodyParsers(app: FastifyInstance): void {
  const decodeMsgpack = (
    request: FastifyRequest,
    body: Buffer,
    done: (error: Error | null, body?: unknown) => void,
  ) => {
    if (body.length === 0) return done(null, undefined);
    if (PRODUCE_ROUTES.has(request.routeOptions.url ?? '')) return done(null, new MsgpackBody(body));
    try {
      checkMsgpackBody(body);
      done(null, unpackr.unpack(body));
    } catch (error) {
      done(error instanceof SluiceError ? error : invalidMsgpack(error));
    }
  };
  app.addContentTypeParser([MEDIA.msgpack, MEDIA.msgpackAlt], { parseAs: 'buffer' }, decodeMsgpack);
  app.addContentTypeParser([MEDIA.octetStream, MEDIA.batches], { parseAs: 'buffer' }, (_r, body, done) =>
    done(null, body),
  );
  app.addContentTypeParser(MEDIA.ndjson, { parseAs: 'string' }, (_r, body, done) => {
    const records: unknown[] = [];
    const lines = (body as string).split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line === '') continue;
      try {
        records.push(JSON.parse(line));
      } catch {
        return done(
          new SluiceError('INVALID_REQUEST', `line ${i + 1} of the NDJSON body is not valid JSON`, {
            details: { line: i + 1 },
          }),
        );
      }
    }
    done(null, { records });
  });
}
