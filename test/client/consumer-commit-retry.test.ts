import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Consumer } from '../../src/client/index.js';
import { isSluiceError } from '../../src/common/errors.js';
import { type RelayedNode, startRelayedNode } from './relay.js';

/**
 * A group commit refused for a retriable reason is sent again: NOT_ENOUGH_REPLICAS comes while the
 * offsets partition's in-sync set is short (a follower slow under load), and the application's
 * commit() failed with it (seen in test/cluster/groups.test.ts on a loaded machine). A relay in
 * front of the node refuses the first `refusals` commits as the coordinator would.
 */
let relayed: RelayedNode;
let refuse = 0;
let refused = 0;
let commits = 0;

beforeAll(async () => {
  relayed = await startRelayedNode('commit-retry', {
    answer(headers, _answer, client, upstream) {
      const commit =
        headers[':method'] === 'POST' && /\/v1\/groups\/[^/]+\/offsets/.test(String(headers[':path']));
      if (!commit) return false;
      commits++;
      if (refused >= refuse) return false;
      refused++;
      upstream.resume();
      const body = JSON.stringify({
        type: 'about:blank',
        title: 'Not enough replicas',
        status: 503,
        code: 'NOT_ENOUGH_REPLICAS',
        retriable: true,
        detail: '1 in-sync replica, min.insync.replicas is 2; nothing was appended',
      });
      client.respond({ ':status': 503, 'content-type': 'application/problem+json' });
      client.end(body);
      return true;
    },
  });
  await relayed.createTopic('c');
  await fetch(`${relayed.nodeUrl}/v1/topics/c/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ records: [{ value: 'a' }, { value: 'b' }] }),
  });
});
afterAll(async () => {
  await relayed.close();
});

async function consumed(group: string, retries: number): Promise<Consumer> {
  const consumer = new Consumer({
    bootstrap: relayed.bootstrap,
    group,
    topics: ['c'],
    autoCommit: false,
    maxWaitMs: 100,
    retries,
    retryBackoffMs: 5,
  });
  let seen = 0;
  while (seen < 2) seen += (await consumer.poll()).length;
  return consumer;
}

describe('a group commit refused for a retriable reason', () => {
  it('is sent again until it lands', async () => {
    const consumer = await consumed('retried', 5);
    refused = 0;
    refuse = 2;
    const before = commits;
    await consumer.commit();
    expect(refused).toBe(2);
    expect(commits).toBe(before + 3);
    const group = (await (await fetch(`${relayed.nodeUrl}/v1/groups/retried`)).json()) as {
      partitions: { committed: number | null }[];
    };
    expect(group.partitions.map((p) => p.committed)).toEqual([2]);
    await consumer.close();
  });

  it('fails with the refusal once the retries are spent', async () => {
    const consumer = await consumed('spent', 1);
    refused = 0;
    refuse = 5;
    const failure = await consumer.commit().catch((error: unknown) => error);
    expect(isSluiceError(failure, 'NOT_ENOUGH_REPLICAS'), String(failure)).toBe(true);
    expect(refused).toBe(2);
    refuse = 0;
    await consumer.close();
  });
});
