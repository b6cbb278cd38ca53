import { describe, expect, it } from 'vitest';
import { type AssignorMember, assign, type TopicPartition } from '../../src/groups/assignors.js';

/**
 * Assignor rules the table and properties of assignors.test.ts leave loose: `roundrobin` deals
 * topics in name order and members in member id order whatever order they come in; `sticky`
 * drops a current partition that does not exist (a negative one included), treats subscriptions
 * as sets (their order does not matter, and `["ab"]` is not `["a", "b"]`), lets the members
 * holding the most keep the extra partition, and gives the same answer whatever order a member's
 * current partitions are listed in.
 */

const tps = (spec: string): TopicPartition[] =>
  spec === ''
    ? []
    : spec.split(' ').map((s) => {
        const at = s.lastIndexOf('-');
        return { topic: s.slice(0, at), partition: Number(s.slice(at + 1)) };
      });
const render = (a: Map<string, TopicPartition[]>) =>
  Object.fromEntries(
    [...a].map(([m, list]) => [m, list.map((tp) => `${tp.topic}-${tp.partition}`).join(' ')]),
  );

describe('roundrobin', () => {
  it('deals topics in name order and members in id order, whatever order they are given in', () => {
    const members: AssignorMember[] = [
      { memberId: 'c', topics: ['y', 'x'] },
      { memberId: 'a', topics: ['y', 'x'] },
      { memberId: 'b', topics: ['y', 'x'] },
    ];
    const out = assign(
      'roundrobin',
      members,
      new Map([
        ['y', 1],
        ['x', 4],
      ]),
    );
    expect(render(out)).toEqual({ c: 'x-2', a: 'x-0 x-3', b: 'x-1 y-0' });
  });
});

describe('sticky', () => {
  const counts = new Map([['t', 4]]);

  it('drops current partitions that do not exist, a negative one included', () => {
    const out = assign(
      'sticky',
      [
        { memberId: 'a', topics: ['t'], current: tps('t-0 t-4') },
        { memberId: 'b', topics: ['t'], current: [{ topic: 't', partition: -1 }] },
      ],
      counts,
    );
    const all = [...out.values()]
      .flat()
      .map((tp) => tp.partition)
      .sort();
    expect(all).toEqual([0, 1, 2, 3]);
    expect(out.get('a')!.map((tp) => tp.partition)).toContain(0);
  });

  it('treats a subscription as a set: the order of its topics changes nothing', () => {
    const both = new Map([
      ['a', 3],
      ['b', 3],
    ]);
    const same = assign(
      'sticky',
      [
        { memberId: 'm1', topics: ['a', 'b'], current: tps('a-0 a-1 a-2 b-0 b-1') },
        { memberId: 'm2', topics: ['a', 'b'] },
      ],
      both,
    );
    const swapped = assign(
      'sticky',
      [
        { memberId: 'm1', topics: ['a', 'b'], current: tps('a-0 a-1 a-2 b-0 b-1') },
        { memberId: 'm2', topics: ['b', 'a'] },
      ],
      both,
    );
    expect(render(swapped)).toEqual(render(same));
  });

  it('keeps ["ab"] apart from ["a", "b"]: no member gets a topic it does not subscribe to', () => {
    const out = assign(
      'sticky',
      [
        { memberId: 'm1', topics: ['ab'] },
        { memberId: 'm2', topics: ['a', 'b'] },
      ],
      new Map([
        ['a', 2],
        ['b', 2],
        ['ab', 2],
      ]),
    );
    expect(render(out)).toEqual({ m1: 'ab-0 ab-1', m2: 'a-0 a-1 b-0 b-1' });
  });

  it('lets the member holding the most keep the extra partition', () => {
    // 7 partitions over 3: quotas 3, 2, 2. b holds 4 and a holds 3: b keeps three, a two.
    const out = assign(
      'sticky',
      [
        { memberId: 'a', topics: ['t'], current: tps('t-0 t-1 t-2') },
        { memberId: 'b', topics: ['t'], current: tps('t-3 t-4 t-5 t-6') },
        { memberId: 'c', topics: ['t'] },
      ],
      new Map([['t', 7]]),
    );
    expect(out.get('b')).toHaveLength(3);
    expect(out.get('a')).toHaveLength(2);
    expect(out.get('c')).toHaveLength(2);
  });

  it('gives the same answer whatever order a member lists its current partitions in', () => {
    const run = (current: string) =>
      render(
        assign(
          'sticky',
          [
            { memberId: 'a', topics: ['t'], current: tps(current) },
            { memberId: 'b', topics: ['t'] },
          ],
          counts,
        ),
      );
    expect(run('t-3 t-2 t-1 t-0')).toEqual(run('t-0 t-1 t-2 t-3'));
    // With differing subscriptions (the general path) too.
    const general = (current: string) =>
      render(
        assign(
          'sticky',
          [
            { memberId: 'a', topics: ['t', 'u'], current: tps(current) },
            { memberId: 'b', topics: ['t'] },
          ],
          new Map([
            ['t', 4],
            ['u', 1],
          ]),
        ),
      );
    expect(general('u-0 t-3 t-2 t-1 t-0')).toEqual(general('t-0 t-1 t-2 t-3 u-0'));
  });
});
