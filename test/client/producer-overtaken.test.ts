import type * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { type RelayedNode, startRelayedNode } from './relay.js';

/**
 * An idempotent producer's batch that overtakes an earlier one of its partition (the earlier one
 * slow, or timed out and retried) is refused as out of order until the earlier one lands. It
 * waits for it, whatever `retries` is: those refusals are not its own failures. Before, it gave
 * up after `retries` tries, and every later batch of the partition failed behind the gap (seen
 * under load with 10,000 sends in flight). A proxy in front of the node holds the first produce
 * request of the first record for a second; the second batch is refused meanwhile, many more
 * times than retries: 1.
 */
let relayed: RelayedNode;
let held = 0;
let refusals = 0;

beforeAll(async () => {
  let firstProduce = true;
  const isProduce = (headers: http2.IncomingHttpHeaders) =>
    headers[':method'] === 'POST' && String(headers[':path']).endsWith('/records?acks=all');
  relayed = await startRelayedNode('overtaken', {
    async before(headers, body) {
      // The batch of the first record, whichever stream reaches the proxy first.
      if (isProduce(headers) && firstProduce && body.includes('first')) {
        firstProduce = false;
        held++;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    },
    answer(headers, answer) {
      if (isProduce(headers) && Number(answer[':status']) === 409) refusals++;
      return false;
    },
  });
  await relayed.createTopic('t');
});
afterAll(async () => {
  await relayed.close();
});

describe('an idempotent batch that overtook an earlier one', () => {
  it('waits for the earlier one to land instead of failing after its retries', async () => {
    const producer = new Producer({
      bootstrap: relayed.bootstrap,
      lingerMs: 0,
      retries: 1,
      retryBackoffMs: 10,
    });
    const first = producer.send({ topic: 't', partition: 0, value: 'first' });
    // Once the proxy holds the first batch, the second is a batch of its own, sent behind it.
    while (held === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const second = producer.send({ topic: 't', partition: 0, value: 'second' });
    const results = await Promise.allSettled([first, second]);
    await producer.close();
    expect(held).toBe(1);
    expect(refusals).toBeGreaterThan(2);
    expect(results).toEqual([
      { status: 'fulfilled', value: { topic: 't', partition: 0, offset: 0 } },
      { status: 'fulfilled', value: { topic: 't', partition: 0, offset: 1 } },
    ]);
  });
});
