import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:net';
import { dualProtocolServerFactory } from '../http/server.js';

/**
 * The listener of the cluster-internal API (`--internal-listen`): HTTP/1.1 and h2c on a port of
 * its own, handing requests to `handler` (the node's app, through `internalListenerHandler`). Its
 * connections are not counted in `sluice_http_connections`, which counts clients.
 */
export async function listenInternal(
  address: { host: string; port: number },
  handler: (request: IncomingMessage, response: ServerResponse) => void,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = dualProtocolServerFactory()(handler as never, {}) as unknown as Server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : address.port;
  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => server.close(() => resolve()));
      return closing;
    },
  };
}
