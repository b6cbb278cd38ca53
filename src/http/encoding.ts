import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../common/errors.js';
import { codecId, codecs } from '../protocol/compression.js';

/**
 * HTTP content codings, for curl users (`curl --compressed`, `Content-Encoding: gzip` bodies):
 * distinct from batch compression, which is inside the batches and stored as sent. A request body
 * in `gzip`, `br` or `zstd` is decompressed before it is parsed, to at most the body limit
 * (DECOMPRESSED_TOO_LARGE, 413, past it: a bomb costs no more memory than the limit); a response of
 * JSON (or NDJSON, problem+json) of at least `RESPONSE_BYTES_MIN` is compressed with the first of
 * zstd, gzip, br that `Accept-Encoding` allows. msgpack responses are left alone: their batches
 * may be compressed already, and the zero-copy fetch path stays one buffer.
 */
export function addHttpEncoding(app: FastifyInstance, bodyLimitBytes: number): void {
  app.addHook('preParsing', async (request, _reply, payload) => {
    const header = request.headers['content-encoding'];
    if (header === undefined) return payload;
    const encoding = String(header).trim().toLowerCase();
    if (encoding === '' || encoding === 'identity') return payload;
    const decode = REQUEST_DECODERS[encoding];
    if (!decode)
      throw new SluiceError(
        'UNSUPPORTED_MEDIA_TYPE',
        `Content-Encoding ${JSON.stringify(encoding)} is not supported; use gzip, br, zstd or identity`,
        { details: { field: 'headers/content-encoding' } },
      );
    const compressed = await readBounded(payload, bodyLimitBytes);
    const body = decode(compressed, bodyLimitBytes);
    const stream = Readable.from([body]) as Readable & { receivedEncodedLength?: number };
    // Fastify checks Content-Length against this: the bytes that came over the wire.
    stream.receivedEncodedLength = compressed.length;
    return stream;
  });

  app.addHook('onSend', async (request, reply, payload) => {
    if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return payload;
    if (reply.getHeader('content-encoding') !== undefined) return payload;
    const type = String(reply.getHeader('content-type') ?? '');
    if (!COMPRESSIBLE_TYPE.test(type)) return payload;
    const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    if (size < RESPONSE_BYTES_MIN) return payload;
    const encoding = chooseEncoding(request.headers['accept-encoding']);
    reply.header('vary', 'accept-encoding');
    if (encoding === undefined) return payload;
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
    reply.header('content-encoding', encoding);
    reply.removeHeader('content-length');
    return RESPONSE_ENCODERS[encoding](bytes);
  });
}

/** Smaller responses go as they are: the coding would save less than its headers cost. */
const RESPONSE_BYTES_MIN = 1024;
const COMPRESSIBLE_TYPE = /^application\/(json|problem\+json|x-ndjson)\b/;

type ResponseEncoding = 'zstd' | 'gzip' | 'br';

const RESPONSE_ENCODERS: Record<ResponseEncoding, (body: Buffer) => Buffer> = {
  zstd: (body) => codecs.get(codecId('zstd')).compress(body, 3),
  gzip: (body) => zlib.gzipSync(body, { level: 5 }),
  br: (body) =>
    zlib.brotliCompressSync(body, {
      params: {
        [zlib.constants.BROTLI_PARAM_QUALITY]: 5,
        [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length,
      },
    }),
};

function tooLarge(encoding: string, limitBytes: number): SluiceError {
  return new SluiceError(
    'DECOMPRESSED_TOO_LARGE',
    `the ${encoding} request body decompresses to more than the body limit of ${limitBytes} bytes`,
    { details: { field: 'headers/content-encoding', limitBytes } },
  );
}

function invalid(encoding: string, error: unknown): SluiceError {
  return new SluiceError(
    'INVALID_REQUEST',
    `the request body is not valid ${encoding}: ${(error as Error).message}`,
    { details: { field: 'headers/content-encoding' } },
  );
}

function zlibDecoder(
  encoding: string,
  run: (body: Buffer, options: zlib.ZlibOptions & zlib.BrotliOptions) => Buffer,
): (body: Buffer, limitBytes: number) => Buffer {
  return (body, limitBytes) => {
    try {
      return run(body, { maxOutputLength: Math.max(1, limitBytes) });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(encoding, limitBytes);
      throw invalid(encoding, error);
    }
  };
}

const REQUEST_DECODERS: Record<string, (body: Buffer, limitBytes: number) => Buffer> = {
  gzip: zlibDecoder('gzip', zlib.gunzipSync),
  'x-gzip': zlibDecoder('gzip', zlib.gunzipSync),
  br: zlibDecoder('br', zlib.brotliDecompressSync),
  zstd(body, limitBytes) {
    try {
      return codecs.get(codecId('zstd')).decompress(body, limitBytes);
    } catch (error) {
      if (error instanceof SluiceError && error.code === 'DECOMPRESSED_TOO_LARGE')
        throw tooLarge('zstd', limitBytes);
      if (error instanceof SluiceError && error.code === 'UNSUPPORTED_COMPRESSION_TYPE')
        throw new SluiceError('UNSUPPORTED_MEDIA_TYPE', error.message);
      throw invalid('zstd', error);
    }
  },
};

/** The request codings read (`identity` is none); the route check refuses others before the body is read. */
export const REQUEST_CONTENT_ENCODINGS: ReadonlySet<string> = new Set([
  'identity',
  ...Object.keys(REQUEST_DECODERS),
]);

/** The body as sent, refused as REQUEST_TOO_LARGE past `limitBytes` before any more is read. */
async function readBounded(payload: NodeJS.ReadableStream, limitBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of payload as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > limitBytes)
      throw new SluiceError('REQUEST_TOO_LARGE', `the request body is larger than ${limitBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}

/**
 * The coding to answer in: the first of zstd (when loaded), gzip, br that `Accept-Encoding` names
 * with a q-value above 0 (or allows by `*`); none otherwise.
 */
export function chooseEncoding(header: string | string[] | undefined): ResponseEncoding | undefined {
  if (header === undefined) return undefined;
  const allowed = new Map<string, number>();
  for (const part of String(header).split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    if (!name) continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q=([0-9.]+)\s*$/.exec(p);
      if (m) q = Number(m[1]);
    }
    allowed.set(name, q);
  }
  const zstd = codecs.available().includes('zstd');
  for (const encoding of ['zstd', 'gzip', 'br'] as const) {
    if (encoding === 'zstd' && !zstd) continue;
    const q = allowed.get(encoding) ?? allowed.get('*');
    if (q !== undefined && q > 0) return encoding;
  }
  return undefined;
}
