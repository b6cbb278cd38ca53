import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConsumedRecord } from '../../src/client/consumer.js';
import { Admin, Consumer, Producer } from '../../src/client/index.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';

/**
 * Consumer groups on a real node over HTTP: SDK members share a topic's partitions (each partition
 * to exactly one member), a member that dies without leaving loses its partitions once its
 * session expires and what it did not commit is read again by the others (what it committed is
 * not), a restarted node has the group's offsets back from `__consumer_offsets`, and two members
 * in Python (standard library, JSON, no SDK) share a topic.
 */

let dir: string;
let node: SluiceNode | undefined;
let url: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-groups-'));
  await start();
});
afterEach(async () => {
  await node?.close();
  node = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function start(): Promise<void> {
  node = await startNode({
    dataDir: dir,
    port: 0,
    logLevel: 'silent',
    configs: { 'offsets.topic.num.partitions': 3 },
  });
  url = `http://127.0.0.1:${node.address.port}`;
}

async function call(method: string, path: string, body?: unknown) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  // biome-ignore lint/suspicious/noExplicitAny: checked field by field
  return { status: response.status, body: text ? (JSON.parse(text) as any) : undefined };
}

async function topicWith(name: string, partitions: number, perPartition: number): Promise<void> {
  const admin = new Admin({ bootstrap: url });
  await admin.createTopic({ name, partitions });
  admin.close();
  const producer = new Producer({ bootstrap: url });
  const sends = [];
  for (let p = 0; p < partitions; p++)
    for (let i = 0; i < perPartition; i++)
      sends.push(producer.send({ topic: name, partition: p, value: Buffer.from(`${p}-${i}`) }));
  await Promise.all(sends);
  await producer.close();
}

const until = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const textOf = (r: ConsumedRecord) => Buffer.from(r.value!).toString();

describe('consumer groups on a node', () => {
  it('gives 3 SDK members 6 partitions, each partition to exactly one, and every record once', async () => {
    await topicWith('t6', 6, 5);
    const members = [0, 1, 2].map(
      () => new Consumer({ bootstrap: url, group: 'g3', topics: ['t6'], maxWaitMs: 100 }),
    );
    const seen: string[][] = [[], [], []];
    try {
      for (const m of members) await m.join();
      // Polls (heartbeats) until the group is stable: every partition assigned, none twice.
      await until('a stable group', async () => {
        for (let i = 0; i < 3; i++) for (const r of await members[i]!.poll()) seen[i]!.push(textOf(r));
        return (await call('GET', '/v1/groups/g3')).body.state === 'stable';
      });
      const assignments = members.map((m) =>
        m
          .assignment()
          .map((tp) => tp.partition)
          .sort(),
      );
      expect(assignments.flat().sort()).toEqual([0, 1, 2, 3, 4, 5]);
      for (const a of assignments) expect(a).toHaveLength(2);
      await until('all 30 records', async () => {
        for (let i = 0; i < 3; i++) for (const r of await members[i]!.poll()) seen[i]!.push(textOf(r));
        return seen.flat().length >= 30;
      });
      // Each member read only its own partitions once the group was stable, and nothing twice.
      expect(new Set(seen.flat()).size).toBe(30);
      expect(seen.flat()).toHaveLength(30);
      const described = (await call('GET', '/v1/groups/g3')).body;
      const owners = described.partitions.map((p: { owner: string }) => p.owner);
      expect(new Set(owners)).toEqual(new Set(members.map((m) => m.memberId)));
    } finally {
      for (const m of members) await m.close();
    }
    // Left, each member committed what it handed out: the group's lag is 0 everywhere.
    const after = (await call('GET', '/v1/groups/g3')).body;
    expect(after.state).toBe('empty');
    expect(after.partitions.map((p: { committed: number }) => p.committed)).toEqual([5, 5, 5, 5, 5, 5]);
  });

  it('moves a dead member’s partitions within its session timeout; redelivers what it did not commit, not what it did', async () => {
    await topicWith('t2', 2, 10);
    // The member that dies: raw HTTP, so that nothing heartbeats for it once it stops.
    const dead = (await call('POST', '/v1/groups/gd/members', { topics: ['t2'], sessionTimeoutMs: 1500 }))
      .body;
    expect(dead.assignment).toHaveLength(2);
    const polled = (await call('GET', `/v1/groups/gd/members/${dead.memberId}/records`)).body;
    expect(polled.records).toHaveLength(20);
    // It commits partition 0 up to offset 6 and partition 1 not at all, then dies.
    const commit = await call('POST', '/v1/groups/gd/offsets', {
      memberId: dead.memberId,
      memberEpoch: polled.memberEpoch,
      offsets: [{ topic: 't2', partition: 0, offset: 6 }],
    });
    expect(commit.status).toBe(200);
    const died = Date.now();
    const survivor = new Consumer({
      bootstrap: url,
      group: 'gd',
      topics: ['t2'],
      maxWaitMs: 100,
      autoCommit: false,
    });
    const got: string[] = [];
    try {
      await survivor.join();
      await until('the partitions to move', async () => {
        for (const r of await survivor.poll()) got.push(textOf(r));
        return survivor.assignment().length === 2;
      });
      const movedMs = Date.now() - died;
      // Within the session timeout, plus the coordinator's expiry check (every 250 ms) and a poll.
      expect(movedMs).toBeLessThan(1500 + 1000);
      await until('the redelivered records', async () => {
        for (const r of await survivor.poll()) got.push(textOf(r));
        return got.length >= 14;
      });
      expect(got.sort()).toEqual(
        [...[6, 7, 8, 9].map((i) => `0-${i}`), ...[0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `1-${i}`)].sort(),
      );
      // The dead member is gone: its commits are refused now.
      const late = await call('POST', '/v1/groups/gd/offsets', {
        memberId: dead.memberId,
        memberEpoch: polled.memberEpoch,
        offsets: [{ topic: 't2', partition: 1, offset: 10 }],
      });
      expect([late.status, late.body.code]).toEqual([404, 'UNKNOWN_MEMBER_ID']);
    } finally {
      await survivor.close();
    }
  });

  it('keeps the group and its offsets through a restart (replayed from __consumer_offsets)', async () => {
    await topicWith('tr', 2, 3);
    const c = new Consumer({ bootstrap: url, group: 'gr', topics: ['tr'], maxWaitMs: 100 });
    const got: string[] = [];
    await until('3 records', async () => {
      for (const r of await c.poll()) got.push(textOf(r));
      return got.length >= 3;
    });
    await c.commit([{ topic: 'tr', partition: 0, offset: 2, metadata: 'kept' }]);
    const memberId = c.memberId!;
    // No leave: the member is in the group's record when the node stops.
    await node!.close();
    node = undefined;
    await start();
    const described = (await call('GET', '/v1/groups/gr')).body;
    expect(described.members.map((m: { memberId: string }) => m.memberId)).toEqual([memberId]);
    expect(described.partitions[0]).toMatchObject({ partition: 0, committed: 2, metadata: 'kept' });
    // A new member of the group starts where the group committed, once the old one's session expired.
    const reset = await call('POST', '/v1/groups/gr/offsets/reset', { topic: 'tr', to: 'earliest' });
    expect(reset.body.code).toBe('NON_EMPTY_GROUP');
    expect((await call('DELETE', `/v1/groups/gr/members/${memberId}`)).status).toBe(200);
    const shifted = await call('POST', '/v1/groups/gr/offsets/reset', {
      topic: 'tr',
      partitions: [0],
      to: 'shift',
      shift: -1,
    });
    expect(shifted.body.offsets).toEqual([{ topic: 'tr', partition: 0, offset: 1 }]);
    const again = new Consumer({ bootstrap: url, group: 'gr', topics: ['tr'], maxWaitMs: 100 });
    try {
      const first: string[] = [];
      await until('records after the reset', async () => {
        for (const r of await again.poll()) first.push(textOf(r));
        return first.length >= 5;
      });
      // Partition 0 from offset 1 (the reset), partition 1 from its start (nothing committed).
      expect(first.sort()).toEqual(['0-1', '0-2', '1-0', '1-1', '1-2']);
    } finally {
      await again.close();
      c.close().catch(() => {});
    }
  });

  it('lets two members in Python (no SDK) share a topic', async () => {
    await topicWith('tp', 4, 10);
    const script = join(import.meta.dirname, '..', '..', 'docs', 'examples', 'group_member.py');
    const run = () =>
      promisify(execFile)('/usr/bin/python3', [script, url, 'gpy', 'tp', '4'], { timeout: 20_000 });
    const both = Promise.all([run(), run()]);
    // While both poll, the group settles with each holding two partitions, none held twice.
    await until('two members holding two partitions each', async () => {
      const d = (await call('GET', '/v1/groups/gpy')).body;
      return (
        d?.state === 'stable' &&
        d.members.length === 2 &&
        d.members.every((m: { assignment: unknown[]; revoking: unknown[] }) => m.assignment.length === 2)
      );
    });
    const held = (await call('GET', '/v1/groups/gpy')).body.members.flatMap(
      (m: { assignment: { partition: number }[] }) => m.assignment.map((tp) => tp.partition),
    );
    expect(held.sort()).toEqual([0, 1, 2, 3]);
    const [a, b] = await both;
    const lines = (out: string) => out.trim().split('\n');
    const records = [...lines(a.stdout), ...lines(b.stdout)].filter((l) => l.startsWith('record '));
    // At least once: every record reached one of them.
    expect(new Set(records.map((l) => l.split(' ')[3])).size).toBe(40);
    // Both left: the group is empty.
    expect((await call('GET', '/v1/groups/gpy')).body.state).toBe('empty');
  });

  it('streams a member’s records (follow, NDJSON), and resets an empty group by timestamp and to the end', async () => {
    await topicWith('tf', 2, 2);
    const member = (await call('POST', '/v1/groups/gf/members', { topics: ['tf'] })).body;
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/groups/gf/members/${member.memberId}/records?follow=true`, {
      headers: { accept: 'application/x-ndjson' },
      signal: controller.signal,
    });
    expect(response.headers.get('content-type')).toMatch(/ndjson/);
    const reader = response.body!.getReader();
    let text = '';
    const lineCount = () => text.split('\n').filter((l) => l.length > 0).length;
    while (lineCount() < 4) text += new TextDecoder().decode((await reader.read()).value);
    // A record produced while the stream is open comes through it too.
    await fetch(`${url}/v1/topics/tf/partitions/1/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ records: [{ value: 'late' }] }),
    });
    while (lineCount() < 5) text += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    const values = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .map((r: { topic: string; value: string }) => `${r.topic}:${r.value}`);
    expect(values.sort()).toEqual(['tf:0-0', 'tf:0-1', 'tf:1-0', 'tf:1-1', 'tf:late']);
    // A poll at an epoch the coordinator never gave is refused, and its auto-commit with it.
    const fenced = await call(
      'GET',
      `/v1/groups/gf/members/${member.memberId}/records?memberEpoch=99&autoCommit=true`,
    );
    expect([fenced.status, fenced.body.code]).toEqual([409, 'FENCED_MEMBER_EPOCH']);
    expect(
      (await call('GET', '/v1/groups/gf')).body.partitions.map(
        (p: { committed: number | null }) => p.committed,
      ),
    ).toEqual([null, null]);
    expect((await call('DELETE', `/v1/groups/gf/members/${member.memberId}`)).status).toBe(200);
    const latest = await call('POST', '/v1/groups/gf/offsets/reset', { topic: 'tf', to: 'latest' });
    expect(latest.body.offsets.map((o: { offset: number }) => o.offset)).toEqual([2, 3]);
    const future = await call('POST', '/v1/groups/gf/offsets/reset', {
      topic: 'tf',
      to: 'timestamp',
      timestamp: Date.now() + 3_600_000,
    });
    expect(future.body.offsets.map((o: { offset: number }) => o.offset)).toEqual([2, 3]);
    const past = await call('POST', '/v1/groups/gf/offsets/reset', {
      topic: 'tf',
      to: 'timestamp',
      timestamp: 0,
    });
    expect(past.body.offsets.map((o: { offset: number }) => o.offset)).toEqual([0, 0]);
    const missing = await call('POST', '/v1/groups/gf/offsets/reset', { topic: 'tf', to: 'shift' });
    expect([missing.status, missing.body.code]).toEqual([400, 'INVALID_REQUEST']);
  });
});
