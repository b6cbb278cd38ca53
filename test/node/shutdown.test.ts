import { mkdtemp, rm } from 'node:fs/promises';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode } from '../../src/node/node.js';
import { makeHarness } from '../http/harness.js';

/**
 * A clean shutdown answers what is waiting instead of cutting it: long-polls get their (empty)
 * answer, follow streams end normally, and requests that still arrive get SHUTTING_DOWN.
 */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-shutdown-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('clean shutdown', () => {
  it('answers a waiting long-poll and ends a follow stream before the node closes', async () => {
    const node = await startNode({ dataDir: dir, port: 0 });
    await node.broker.admin.createTopic({ name: 'quiet', partitions: 1 });
    const base = `http://127.0.0.1:${node.address.port}`;

    const longPoll = new Promise<{ status: number; body: string; connection: string | undefined }>(
      (resolve, reject) => {
        http
          .get(`${base}/v1/topics/quiet/partitions/0/records?offset=0&maxWaitMs=30000`, (res) => {
            let body = '';
            res.on('data', (c) => {
              body += c;
            });
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }),
            );
          })
          .on('error', reject);
      },
    );
    const session = http2.connect(base);
    const follow = session.request({
      ':method': 'GET',
      ':path': '/v1/topics/quiet/partitions/0/records?offset=0&follow=true',
    });
    const followEnded = new Promise<string>((resolve, reject) => {
      let status = '';
      follow.on('response', (headers) => {
        status = String(headers[':status']);
      });
      follow.on('data', () => {});
      follow.on('end', () => resolve(status));
      follow.on('error', reject);
    });
    while (node.broker.fetch.waiting < 2) await new Promise((r) => setTimeout(r, 10));

    const closing = node.close();
    const answered = await longPoll;
    expect(answered.status).toBe(200);
    expect(JSON.parse(answered.body)).toMatchObject({ records: [], nextOffset: 0, highWatermark: 0 });
    expect(answered.connection).toBe('close');
    expect(await followEnded).toBe('200');
    await closing;
    expect(node.broker.fetch.waiting).toBe(0);
    session.destroy();
  });

  it('refuses requests that arrive during a shutdown with SHUTTING_DOWN', async () => {
    const h = await makeHarness();
    try {
      await h.broker.admin.createTopic({ name: 'late', partitions: 1 });
      h.broker.beginShutdown();
      const response = await h.app.inject({
        method: 'POST',
        url: '/v1/topics/late/records',
        headers: { 'content-type': 'application/json' },
        payload: '{"records": [{"value": "x"}]}',
      });
      expect(response.statusCode).toBe(503);
      expect(JSON.parse(response.body)).toMatchObject({ code: 'SHUTTING_DOWN', retriable: true });
      expect(response.headers.connection).toBe('close');
      expect((await h.broker.admin.describeTopic('late')).partitions[0]!.logEndOffset).toBe(0);
    } finally {
      await h.close();
    }
  });
});
