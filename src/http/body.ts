import { isUtf8 } from 'node:buffer';
import { errorCodes, type FastifyInstance, type FastifyRequest } from 'fastify';
import { SluiceError } from '../common/errors.js';
import { ENDPOINTS, MEDIA } from '../protocol/api.js';
import { unpackr } from '../protocol/msgpack.js';
import { checkMsgpackBody, invalidMsgpack, invalidUtf8Offset } from '../protocol/produce-body.js';

/** A msgpack produce body, kept as bytes until the handler reads it. */
export class MsgpackBody {
  constructor(readonly bytes: Buffer) {}
}

const PRODUCE_ROUTES = new Set<string>([ENDPOINTS.produce.path, ENDPOINTS.producePartition.path]);

/**
 * The body parsers of the public API: JSON and NDJSON checked as UTF-8 before they are parsed,
 * msgpack (a produce body stays bytes, its records copied into a batch without being decoded),
 * raw bytes and pre-built batches as buffers.
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
  app.removeContentTypeParser(MEDIA.json);
  app.addContentTypeParser(MEDIA.json, { parseAs: 'buffer' }, (_r, body, done) => {
    try {
      done(null, parseJsonBody(body as Buffer));
    } catch (error) {
      done(error as Error);
    }
  });
  app.addContentTypeParser(MEDIA.ndjson, { parseAs: 'buffer' }, (_r, body, done) => {
    try {
      done(null, { records: parseNdjsonBody(body as Buffer) });
    } catch (error) {
      done(error as Error);
    }
  });
}

/**
 * A JSON body: refused unless it is UTF-8 (RFC 8259 §8.1; a decoder that replaced bad bytes with
 * U+FFFD would store something the client did not send), then parsed. As with fastify's own
 * parser: an empty body and malformed JSON are its errors, a leading byte order mark is skipped,
 * and keys that could poison a prototype are refused.
 */
export function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0) throw new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY();
  checkUtf8(body, 0, body.length, undefined);
  const text = body.toString('utf8', hasByteOrderMark(body) ? 3 : 0);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY();
  }
  checkPrototypeKeys(value, text, undefined);
  return value;
}

/** An NDJSON body: one JSON record per line, blank lines skipped; errors name the line. */
export function parseNdjsonBody(body: Buffer): unknown[] {
  const records: unknown[] = [];
  let start = hasByteOrderMark(body) ? 3 : 0;
  for (let line = 1; start < body.length; line++) {
    let end = body.indexOf(0x0a, start);
    if (end < 0) end = body.length;
    checkUtf8(body, start, end, line);
    const text = body.toString('utf8', start, end).trim();
    start = end + 1;
    if (text === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new SluiceError('INVALID_REQUEST', `line ${line} of the NDJSON body is not valid JSON`, {
        details: { line },
      });
    }
    checkPrototypeKeys(value, text, line);
    records.push(value);
  }
  return records;
}

function hasByteOrderMark(body: Buffer): boolean {
  return body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf;
}

function checkUtf8(body: Buffer, start: number, end: number, line: number | undefined): void {
  if (isUtf8(body.subarray(start, end))) return;
  const offset = invalidUtf8Offset(body, start, end);
  const where = line === undefined ? `byte ${offset}` : `byte ${offset} (line ${line})`;
  throw new SluiceError('INVALID_REQUEST', `the body is not valid UTF-8 at ${where}`, {
    details: line === undefined ? { offset } : { offset, line },
  });
}

/**
 * Refuses a parsed value that holds a `__proto__` key, or a `constructor` key whose value has a
 * `prototype`: code that later merges such an object into another would change a prototype.
 * JSON can spell those names only literally or with \u escapes, so a text with neither is not
 * walked. The walk is a loop, so that no nesting can overflow the stack.
 */
function checkPrototypeKeys(value: unknown, text: string, line: number | undefined): void {
  if (!text.includes('__proto__') && !text.includes('constructor') && !text.includes('\\u')) return;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const node = pending.pop();
    if (node === null || typeof node !== 'object') continue;
    const constructorValue = Object.hasOwn(node, 'constructor')
      ? (node as { constructor: unknown }).constructor
      : undefined;
    if (
      Object.hasOwn(node, '__proto__') ||
      (constructorValue !== null &&
        typeof constructorValue === 'object' &&
        Object.hasOwn(constructorValue, 'prototype'))
    ) {
      const where = line === undefined ? 'the body' : `line ${line} of the NDJSON body`;
      throw new SluiceError('INVALID_REQUEST', `${where} holds a __proto__ or constructor.prototype key`, {
        details: line === undefined ? {} : { line },
      });
    }
    for (const child of Object.values(node))
      if (child !== null && typeof child === 'object') pending.push(child);
  }
}
