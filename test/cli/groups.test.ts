import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';

/**
 * `sluice consume TOPIC --group G` and `sluice group list|describe|reset-offsets|delete` against a
 * node: a group member prints its partitions' records and commits what it printed, so that the
 * next member of the group goes on from there; the group commands show and change what it left.
 */
let dir: string;
let node: SluiceNode;
let bootstrap: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-cli-groups-'));
  node = await startNode({
    dataDir: dir,
    port: 0,
    logLevel: 'silent',
    configs: { 'offsets.topic.num.partitions': 2 },
  });
  bootstrap = `http://127.0.0.1:${node.address.port}`;
  const post = (path: string, body: unknown) =>
    fetch(`${bootstrap}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  await post('/v1/topics', { name: 'orders', partitions: 2 });
  for (const p of [0, 1])
    await post(`/v1/topics/orders/partitions/${p}/records`, {
      records: [1, 2, 3].map((i) => ({ value: `p${p}-${i}` })),
    });
});
afterAll(async () => {
  await node.close();
  await rm(dir, { recursive: true, force: true });
});

async function sluice(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => {
    out += d;
  });
  stderr.on('data', (d) => {
    err += d;
  });
  const code = await main([...args, '--bootstrap', bootstrap], { stdout, stderr, stdin: new PassThrough() });
  return { code, stdout: out, stderr: err };
}

describe('sluice consume --group and sluice group', () => {
  it('consumes as a group member, committing what it printed; a second member goes on from there', async () => {
    const first = await sluice('consume', 'orders', '--group', 'cli', '-n', '4');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout.trim().split('\n')).toHaveLength(4);
    const second = await sluice('consume', 'orders', '--group', 'cli');
    expect(second.code, second.stderr).toBe(0);
    const all = [...first.stdout.trim().split('\n'), ...second.stdout.trim().split('\n')].sort();
    expect(all).toEqual(['p0-1', 'p0-2', 'p0-3', 'p1-1', 'p1-2', 'p1-3']);
    const refused = await sluice('consume', 'orders', '--group', 'cli', '--offset', '0');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--group takes no/);
  });

  it('lists, describes, resets and deletes the group', async () => {
    const list = await sluice('group', 'list');
    expect(list.stdout).toMatch(/^GROUP +STATE +MEMBERS +COORDINATOR\ncli +empty +0 +1$/m);
    const described = await sluice('group', 'describe', 'cli', '-o', 'json');
    const d = JSON.parse(described.stdout);
    expect(d.partitions.map((p: { committed: number; lag: number }) => [p.committed, p.lag])).toEqual([
      [3, 0],
      [3, 0],
    ]);
    const reset = await sluice(
      'group',
      'reset-offsets',
      'cli',
      '--topic',
      'orders',
      '--partition',
      '1',
      '--shift-by',
      '-2',
    );
    expect(reset.stdout.trim()).toBe('TOPIC   PARTITION  OFFSET\norders  1          1');
    const text = await sluice('group', 'describe', 'cli');
    expect(text.stdout).toMatch(/^orders +1 +1 +3 +2 +-$/m);
    const again = await sluice('consume', 'orders', '--group', 'cli');
    expect(again.stdout.trim().split('\n')).toEqual(['p1-2', 'p1-3']);
    const twoWays = await sluice(
      'group',
      'reset-offsets',
      'cli',
      '--topic',
      'orders',
      '--to-earliest',
      '--to-latest',
    );
    expect(twoWays.code).toBe(2);
    expect((await sluice('group', 'delete', 'cli')).code).toBe(0);
    const gone = await sluice('group', 'describe', 'cli');
    expect([gone.code, gone.stderr]).toEqual([1, expect.stringMatching(/GROUP_ID_NOT_FOUND/)]);
  });
});
