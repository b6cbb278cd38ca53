/**
 * The HTTP ceiling for bench/run.ts: fastify 5 with the same msgpack body parser as Sluice, and no
 * broker behind it. POST /produce decodes the body and answers with one offset per record (what a
 * produce answer carries); POST /raw reads the body and answers without decoding it;
 * GET /fetch?bytes=N answers with N bytes, as a fetch of stored batches would.
 *
 *   node --import tsx bench/http/bare-server.ts <port> [h1|h2c]
 *
 * `h1` (the default) serves HTTP/1.1, `h2c` cleartext HTTP/2 with prior knowledge (fastify's
 * `http2: true`), so that each protocol of Sluice's port has its own bare ceiling. The h2c server
 * has Sluice's HTTP/2 settings (src/http/server.ts: 256 streams, a 1 MiB stream window and an
 * 8 MiB session window): with Node's defaults (64 KiB windows) a 108 KB body waits for window
 * updates, and the ceiling would be flow control's rather than the framework's.
 */
import * as http2 from 'node:http2';
import Fastify, { type FastifyInstance } from 'fastify';
import { Packr, Unpackr } from 'msgpackr';

const port = Number(process.argv[2] ?? 8093);
const h2c = process.argv[3] === 'h2c';
const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
// The routes are the same on both: typed as the HTTP/1.1 instance, which they do not depend on.
const app = (h2c
  ? Fastify({
      logger: false,
      bodyLimit: 8 * 1024 * 1024,
      http2: true,
      serverFactory: (handler) => {
        const server = http2.createServer(
          { settings: { maxConcurrentStreams: 256, initialWindowSize: 1024 * 1024 } },
          handler as unknown as (
            request: http2.Http2ServerRequest,
            response: http2.Http2ServerResponse,
          ) => void,
        );
        server.on('session', (session) => session.setLocalWindowSize(8 * 1024 * 1024));
        return server;
      },
    })
  : Fastify({ logger: false, bodyLimit: 8 * 1024 * 1024 })) as unknown as FastifyInstance;
app.addContentTypeParser(
  ['application/vnd.msgpack', 'application/msgpack'],
  { parseAs: 'buffer' },
  (request, body, done) => {
    if (request.url === '/raw') return done(null, body);
    try {
      done(null, unpackr.unpack(body as Buffer));
    } catch (error) {
      done(error as Error);
    }
  },
);
let next = 0;
app.post('/produce', async (request, reply) => {
  const records = (request.body as { records: unknown[] }).records;
  const offsets = records.map(() => ({ partition: 0, offset: next++ }));
  return reply.type('application/vnd.msgpack').send(Buffer.from(packr.pack({ offsets })));
});
const rawAnswer = Buffer.from(packr.pack({ offsets: [] }));
app.post('/raw', async (_request, reply) => reply.type('application/vnd.msgpack').send(rawAnswer));
const bodies = new Map<number, Buffer>();
app.get('/fetch', async (request, reply) => {
  const bytes = Number((request.query as { bytes?: string }).bytes ?? 110_000);
  let body = bodies.get(bytes);
  if (!body) bodies.set(bytes, (body = Buffer.alloc(bytes, 0x61)));
  return reply.type('application/vnd.msgpack').send(body);
});
await app.listen({ host: '127.0.0.1', port });
const stop = () => void app.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
