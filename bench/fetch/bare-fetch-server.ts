/**
 * The baseline for bench/fetch.ts: a route that answers every GET with the same bytes, read once
 * from a file at start (a fetch response Sluice served), with nothing behind it. `fastify` runs
 * the route in fastify 5 on Sluice's own one-port HTTP/1.1 + h2c server (`dualProtocolServerFactory`);
 * `node` answers from a bare request handler on that same server, without fastify.
 *
 *   node --import tsx bench/fetch/bare-fetch-server.ts <fastify|node> <port> <body file>
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Fastify from 'fastify';
import { dualProtocolServerFactory } from '../../src/http/server.js';

const [kind, portText, bodyFile] = process.argv.slice(2);
const port = Number(portText);
const body = readFileSync(bodyFile!);
const factory = dualProtocolServerFactory();

if (kind === 'fastify') {
  const app = Fastify({ logger: false, serverFactory: factory });
  app.get('/fetch', async (_request, reply) => reply.type('application/vnd.msgpack').send(body));
  await app.listen({ host: '127.0.0.1', port });
} else {
  const server = factory((_request: IncomingMessage, response: ServerResponse) => {
    response.writeHead(200, { 'content-type': 'application/vnd.msgpack', 'content-length': body.length });
    response.end(body);
  }, {});
  server.listen(port, '127.0.0.1');
}
// Stops by itself: the bench ends it, and an orphan exits within the hour.
setTimeout(() => process.exit(0), 3_600_000).unref();
process.on('SIGTERM', () => process.exit(0));
