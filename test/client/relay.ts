import { mkdtemp, rm } from 'node:fs/promises';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SluiceNode, startNode } from '../../src/node/node.js';

/**
 * An HTTP/2 relay in front of a node for SDK tests: each request is read whole, may be held
 * (`before`), is sent to the node, and its answer goes back as it came unless `answer` takes it
 * (it then answers the client's stream itself, or not at all).
 */
export interface RelayHooks {
  /** Runs before the request goes on; the request waits for it. */
  before?(headers: http2.IncomingHttpHeaders, body: Buffer): Promise<void> | void;
  /** Sees the node's answer headers; true when it has dealt with the client's stream itself. */
  answer?(
    headers: http2.IncomingHttpHeaders,
    answer: http2.IncomingHttpHeaders,
    client: http2.ServerHttp2Stream,
    upstream: http2.ClientHttp2Stream,
  ): boolean;
}

export function relay(
  server: http2.Http2Server,
  upstreamUrl: string,
  hooks: RelayHooks = {},
): http2.ClientHttp2Session {
  const upstream = http2.connect(upstreamUrl);
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', async () => {
      const body = Buffer.concat(chunks);
      await hooks.before?.(headers, body);
      const forwarded: http2.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(headers))
        if (!name.startsWith(':') || name === ':method' || name === ':path') forwarded[name] = value;
      const request = upstream.request(forwarded);
      // A GET's stream is ended when it is made: only a body is written.
      if (chunks.length > 0) request.end(body);
      else if (headers[':method'] !== 'GET') request.end();
      request.on('response', (answer) => {
        if (hooks.answer?.(headers, answer, stream, request)) return;
        const back: http2.OutgoingHttpHeaders = { ':status': Number(answer[':status']) };
        for (const [name, value] of Object.entries(answer)) if (!name.startsWith(':')) back[name] = value;
        stream.respond(back);
        request.pipe(stream);
      });
    });
  });
  return upstream;
}

/** A node that advertises a relay in front of it, so that SDK clients reach it only through the relay. */
export interface RelayedNode {
  node: SluiceNode;
  /** The relay's URL: the bootstrap for clients. */
  bootstrap: string;
  /** The node's own URL, for the test's reads and set-up. */
  nodeUrl: string;
  /** Creates a topic on the node directly. */
  createTopic(name: string, partitions?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startRelayedNode(name: string, hooks: RelayHooks): Promise<RelayedNode> {
  const dir = await mkdtemp(join(tmpdir(), `sluice-${name}-`));
  const server = http2.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const node = await startNode({ dataDir: dir, port: 0, logLevel: 'silent', advertise: `127.0.0.1:${port}` });
  const nodeUrl = `http://127.0.0.1:${node.address.port}`;
  const upstream = relay(server, nodeUrl, hooks);
  return {
    node,
    bootstrap: `http://127.0.0.1:${port}`,
    nodeUrl,
    async createTopic(topic, partitions = 1) {
      const answer = await fetch(`${nodeUrl}/v1/topics`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: topic, partitions }),
      });
      if (answer.status !== 201)
        throw new Error(`creating ${topic}: ${answer.status} ${await answer.text()}`);
    },
    async close() {
      upstream.close();
      await node.close();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
