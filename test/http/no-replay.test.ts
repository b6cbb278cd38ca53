import { afterEach, describe, expect, it } from 'vitest';
import { SluiceError } from '../../src/common/errors.js';
import { type Harness, makeHarness } from './harness.js';

/**
 * A refusal that may follow an append must not be one an HTTP client replays by itself. Found by
 * the fault test: NOT_LEADER_OR_FOLLOWER was 421 Misdirected Request, which the Fetch standard
 * (and so Node's and browsers' fetch) sends again once, on a new connection, whatever the method;
 * a produce whose leadership moved while it waited for its in-sync replicas (appended, answered
 * NOT_LEADER_OR_FOLLOWER) was appended a second time by that replay. The controller's refusals
 * (NOT_LEADER, NOT_CONTROLLER) had the same status and the same problem for POSTs.
 */
describe('refusals of the leader and controller kind', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  for (const code of ['NOT_LEADER_OR_FOLLOWER', 'NOT_LEADER', 'NOT_CONTROLLER'] as const) {
    it(`are not replayed by fetch (${code})`, async () => {
      harness = await makeHarness();
      await harness.broker.admin.createTopic({ name: 't', partitions: 1 });
      let produces = 0;
      harness.broker.produce.from = async () => {
        produces++;
        throw new SluiceError(code, `${code} after the append`);
      };
      const address = await harness.app.listen({ host: '127.0.0.1', port: 0 });
      // A keep-alive connection that the produce reuses: fetch replays a 421 only on a reused one.
      expect((await fetch(`${address}/healthz`)).status).toBe(200);
      const answer = await fetch(`${address}/v1/topics/t/partitions/0/records?acks=all`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ records: [{ value: 'once' }] }),
      });
      const problem = (await answer.json()) as { code: string; retriable: boolean };
      expect(problem.code).toBe(code);
      expect(problem.retriable).toBe(true);
      expect(produces).toBe(1);
      expect(answer.status).toBe(503);
    });
  }
});
