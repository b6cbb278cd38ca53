/**
 * The floor for bench/run.ts's latency step: node:http alone, no framework, answering every
 * request with a one-byte msgpack body once it has read the request. What it measures is the
 * machine, the kernel's loopback and the client, nothing a server could do less of.
 *
 *   node --import tsx bench/http/node-http-server.ts <port>
 */
import * as http from 'node:http';

const port = Number(process.argv[2] ?? 8094);
const empty = Buffer.from([0x80]);
const server = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    response.writeHead(200, { 'content-type': 'application/vnd.msgpack', 'content-length': empty.length });
    response.end(empty);
  });
});
server.listen(port, '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
