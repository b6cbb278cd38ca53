import * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Connection } from '../../src/client/connection.js';
import { Producer } from '../../src/client/producer.js';
import { isSluiceError } from '../../src/common/errors.js';
import { type RelayedNode, startRelayedNode } from './relay.js';

/**
 * An answer that says nothing is not a success. A leader that dies mid-request can end the stream
 * without headers (an RST_STREAM with NO_ERROR ends it cleanly), and an intermediary can turn that
 * into an empty 200. Before, the SDK took both for an acknowledgement: the batch's records were
 * resolved with offset -1, the producer numbered its next batches after one that never landed,
 * and every later batch was refused as out of order (seen in test/cluster/idempotent.test.ts when a
 * leader was killed). Now the stream without an answer is a retriable NETWORK_EXCEPTION, a produce
 * answer without offsets is too, and the batch is sent again.
 */
let relayed: RelayedNode;
/** What the proxy does to the next produce request after forwarding it: its answer is lost. */
let spoil: 'empty-200' | 'reset' | undefined;
let spoiled = 0;

beforeAll(async () => {
  relayed = await startRelayedNode('answers', {
    answer(headers, _answer, client, upstream) {
      const produce = headers[':method'] === 'POST' && String(headers[':path']).includes('/records');
      const fault = produce ? spoil : undefined;
      if (!fault) return false;
      // The batch was appended; its answer never reaches the producer.
      spoil = undefined;
      spoiled++;
      upstream.resume();
      if (fault === 'empty-200') client.respond({ ':status': 200 }, { endStream: true });
      else client.close(http2.constants.NGHTTP2_NO_ERROR);
      return true;
    },
  });
  await relayed.createTopic('t');
});
afterAll(async () => {
  await relayed.close();
});

async function values(): Promise<string[]> {
  const read = await fetch(`${relayed.nodeUrl}/v1/topics/t/partitions/0/records?offset=0`);
  const body = (await read.json()) as { records: { value: string }[] };
  return body.records.map((r) => r.value);
}

describe('an answer without content', () => {
  it('a stream that ends without headers fails the request as retriable NETWORK_EXCEPTION', async () => {
    const connection = new Connection(relayed.bootstrap);
    spoil = 'reset';
    const failure = await connection
      .request('POST', '/v1/topics/t/partitions/0/records', {
        body: Buffer.from(JSON.stringify({ records: [{ value: 'raw' }] })),
        contentType: 'application/json',
      })
      .then(
        (answer) => answer,
        (error: unknown) => error,
      );
    connection.close();
    expect(isSluiceError(failure, 'NETWORK_EXCEPTION'), String(failure)).toBe(true);
    expect((failure as { retriable: boolean }).retriable).toBe(true);
  });

  it.each(['empty-200', 'reset'] as const)(
    'an idempotent batch whose answer was lost (%s) is sent again and lands once with its offset',
    async (fault) => {
      const before = (await values()).length;
      const producer = new Producer({
        bootstrap: relayed.bootstrap,
        lingerMs: 0,
        retries: 3,
        retryBackoffMs: 10,
      });
      const spoiledBefore = spoiled;
      spoil = fault;
      const first = await producer.send({ topic: 't', partition: 0, value: `${fault}-1` });
      const second = await producer.send({ topic: 't', partition: 0, value: `${fault}-2` });
      await producer.close();
      expect(spoiled).toBe(spoiledBefore + 1);
      expect(first).toEqual({ topic: 't', partition: 0, offset: before });
      expect(second).toEqual({ topic: 't', partition: 0, offset: before + 1 });
      expect((await values()).slice(before)).toEqual([`${fault}-1`, `${fault}-2`]);
    },
  );
});
