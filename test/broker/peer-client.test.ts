import * as http2 from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerClient } from '../../src/broker/peer-client.js';

/**
 * The peer client's answers when the peer gives none. Found by the fault test: a stream the peer
 * closed without headers resolved as an answer of status 0, which callers read as a final
 * UNKNOWN_SERVER_ERROR (a restarting node's registration gave up and the node exited).
 */
describe('PeerClient', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const close of closers.splice(0)) close();
  });

  async function serve(onStream: (stream: http2.ServerHttp2Stream) => void): Promise<string> {
    const server = http2.createServer();
    server.on('stream', onStream);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => server.close());
    return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  }

  function client(): PeerClient {
    const peers = new PeerClient({ clusterSecret: 'peer-client-test-secret' });
    closers.unshift(() => peers.close());
    return peers;
  }

  it('rejects with NETWORK_EXCEPTION (retriable) when the peer closes the stream without answering', async () => {
    const base = await serve((stream) => stream.close(http2.constants.NGHTTP2_NO_ERROR));
    const answer = client().request(base, {
      method: 'POST',
      path: '/x',
      body: Buffer.from('hi'),
      timeoutMs: 5000,
    });
    await expect(answer).rejects.toMatchObject({ code: 'NETWORK_EXCEPTION', retriable: true });
  });

  it('still resolves an answer with its status and body', async () => {
    const base = await serve((stream) => {
      stream.respond({ ':status': 503 });
      stream.end('busy');
    });
    const answer = await client().request(base, { method: 'GET', path: '/x', timeoutMs: 5000 });
    expect(answer.status).toBe(503);
    expect(answer.body.toString()).toBe('busy');
  });
});
