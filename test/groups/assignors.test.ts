import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AssignorMember,
  type AssignorName,
  assign,
  type TopicPartition,
} from '../../src/groups/assignors.js';

/**
 * Proves the assignors: `range` and `roundrobin` give the assignments Kafka's RangeAssignor and
 * RoundRobinAssignor give for the same inputs (expected values worked out by hand from their
 * documented algorithms, two of them the examples of Kafka's own documentation), and every
 * assignor gives every subscribed partition to exactly one subscribed member; `sticky` is balanced
 * and moves no more partitions than a balanced assignment must.
 */

/** `{m1: 't0-0 t0-1'}` → a readable form of an assignment for the table. */
function render(assignment: Map<string, TopicPartition[]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [member, list] of [...assignment].sort(([a], [b]) => (a < b ? -1 : 1)))
    out[member] = list.map((tp) => `${tp.topic}-${tp.partition}`).join(' ');
  return out;
}

const counts = (entries: Record<string, number>) => new Map(Object.entries(entries));
const members = (subs: Record<string, string[]>): AssignorMember[] =>
  Object.entries(subs).map(([memberId, topics]) => ({ memberId, topics }));

interface Case {
  name: string;
  assignor: AssignorName;
  members: Record<string, string[]>;
  partitions: Record<string, number>;
  expected: Record<string, string>;
}

const CASES: Case[] = [
  {
    name: 'Kafka docs: two members, two topics of 3 partitions',
    assignor: 'range',
    members: { C0: ['t0', 't1'], C1: ['t0', 't1'] },
    partitions: { t0: 3, t1: 3 },
    expected: { C0: 't0-0 t0-1 t1-0 t1-1', C1: 't0-2 t1-2' },
  },
  {
    name: 'Kafka docs: two members, two topics of 3 partitions',
    assignor: 'roundrobin',
    members: { C0: ['t0', 't1'], C1: ['t0', 't1'] },
    partitions: { t0: 3, t1: 3 },
    expected: { C0: 't0-0 t0-2 t1-1', C1: 't0-1 t1-0 t1-2' },
  },
  {
    name: 'Kafka docs: differing subscriptions pass members over',
    assignor: 'roundrobin',
    members: { C0: ['t0'], C1: ['t0', 't1'], C2: ['t0', 't1', 't2'] },
    partitions: { t0: 1, t1: 2, t2: 3 },
    expected: { C0: 't0-0', C1: 't1-0', C2: 't1-1 t2-0 t2-1 t2-2' },
  },
  {
    name: '3 members over 6 partitions',
    assignor: 'range',
    members: { m1: ['t'], m2: ['t'], m3: ['t'] },
    partitions: { t: 6 },
    expected: { m1: 't-0 t-1', m2: 't-2 t-3', m3: 't-4 t-5' },
  },
  {
    name: '3 members over 6 partitions',
    assignor: 'roundrobin',
    members: { m1: ['t'], m2: ['t'], m3: ['t'] },
    partitions: { t: 6 },
    expected: { m1: 't-0 t-3', m2: 't-1 t-4', m3: 't-2 t-5' },
  },
  {
    name: '7 partitions over 3: the first member gets the extra one',
    assignor: 'range',
    members: { m3: ['t'], m1: ['t'], m2: ['t'] },
    partitions: { t: 7 },
    expected: { m1: 't-0 t-1 t-2', m2: 't-3 t-4', m3: 't-5 t-6' },
  },
  {
    name: 'member ids order as strings: c-10 before c-2',
    assignor: 'range',
    members: { 'c-2': ['t'], 'c-10': ['t'] },
    partitions: { t: 3 },
    expected: { 'c-10': 't-0 t-1', 'c-2': 't-2' },
  },
  {
    name: 'per topic, only its subscribers share it',
    assignor: 'range',
    members: { C0: ['t0'], C1: ['t0', 't1'] },
    partitions: { t0: 3, t1: 2 },
    expected: { C0: 't0-0 t0-1', C1: 't0-2 t1-0 t1-1' },
  },
  {
    name: 'range skews across topics (each topic starts again at the first member)',
    assignor: 'range',
    members: { a: ['x', 'y'], b: ['x', 'y'], c: ['x', 'y'] },
    partitions: { x: 4, y: 1 },
    expected: { a: 'x-0 x-1 y-0', b: 'x-2', c: 'x-3' },
  },
  {
    name: 'roundrobin continues the circle across topics',
    assignor: 'roundrobin',
    members: { a: ['x', 'y'], b: ['x', 'y'], c: ['x', 'y'] },
    partitions: { x: 4, y: 1 },
    expected: { a: 'x-0 x-3', b: 'x-1 y-0', c: 'x-2' },
  },
  {
    name: 'more members than partitions: the last ones get none',
    assignor: 'range',
    members: { a: ['t'], b: ['t'], c: ['t'] },
    partitions: { t: 2 },
    expected: { a: 't-0', b: 't-1', c: '' },
  },
  {
    name: 'a topic that does not exist is skipped',
    assignor: 'roundrobin',
    members: { a: ['t', 'gone'], b: ['t'] },
    partitions: { t: 3 },
    expected: { a: 't-0 t-2', b: 't-1' },
  },
];

describe('range and roundrobin give Kafka’s assignments', () => {
  for (const c of CASES) {
    it(`${c.assignor}: ${c.name}`, () => {
      expect(render(assign(c.assignor, members(c.members), counts(c.partitions)))).toEqual(c.expected);
    });
  }
});

describe('sticky', () => {
  it('keeps every partition of the members that stay when one joins, moving only what the newcomer needs', () => {
    const before = assign('sticky', members({ a: ['t'], b: ['t'] }), counts({ t: 6 }));
    expect(render(before)).toEqual({ a: 't-0 t-2 t-4', b: 't-1 t-3 t-5' });
    const after = assign(
      'sticky',
      [
        { memberId: 'a', topics: ['t'], current: before.get('a')! },
        { memberId: 'b', topics: ['t'], current: before.get('b')! },
        { memberId: 'c', topics: ['t'] },
      ],
      counts({ t: 6 }),
    );
    // Each of a and b gives up one partition (its last), c takes those two: 2 moves, range would make 4.
    expect(render(after)).toEqual({ a: 't-0 t-2', b: 't-1 t-3', c: 't-4 t-5' });
  });

  it('gives a leaving member’s partitions to the others and moves nothing else', () => {
    const after = assign(
      'sticky',
      [
        { memberId: 'a', topics: ['t'], current: [0, 3].map((partition) => ({ topic: 't', partition })) },
        { memberId: 'c', topics: ['t'], current: [2, 5].map((partition) => ({ topic: 't', partition })) },
      ],
      counts({ t: 6 }),
    );
    expect(render(after)).toEqual({ a: 't-0 t-1 t-3', c: 't-2 t-4 t-5' });
  });
});

// ---- properties ----

const TOPICS = ['a', 'b', 'c'];
const scenario = fc.record({
  assignor: fc.constantFrom<AssignorName>('range', 'roundrobin', 'sticky'),
  partitions: fc.tuple(
    fc.integer({ min: 0, max: 9 }),
    fc.integer({ min: 0, max: 9 }),
    fc.integer({ min: 0, max: 9 }),
  ),
  members: fc.uniqueArray(
    fc.record({
      memberId: fc.stringMatching(/^[a-z0-9-]{1,6}$/),
      topics: fc.subarray(TOPICS, { minLength: 1 }),
      current: fc.array(
        fc.record({ topic: fc.constantFrom(...TOPICS), partition: fc.integer({ min: 0, max: 10 }) }),
        {
          maxLength: 8,
        },
      ),
    }),
    { minLength: 1, maxLength: 8, selector: (m) => m.memberId },
  ),
});

function countsOf(partitions: readonly number[]): Map<string, number> {
  return new Map(TOPICS.map((t, i) => [t, partitions[i]!]));
}

describe('assignor properties', () => {
  it('assigns every subscribed partition to exactly one member subscribed to its topic', () => {
    fc.assert(
      fc.property(scenario, ({ assignor, partitions, members }) => {
        const p = countsOf(partitions);
        const result = assign(assignor, members, p);
        expect([...result.keys()].sort()).toEqual(members.map((m) => m.memberId).sort());
        const seen = new Map<string, string>();
        for (const [member, list] of result) {
          const topics = members.find((m) => m.memberId === member)!.topics;
          for (const tp of list) {
            expect(topics).toContain(tp.topic);
            const key = `${tp.topic}-${tp.partition}`;
            expect(seen.has(key), `${key} assigned twice`).toBe(false);
            seen.set(key, member);
          }
        }
        const subscribed = new Set(members.flatMap((m) => m.topics));
        let expected = 0;
        for (const t of subscribed) expected += p.get(t)!;
        expect(seen.size).toBe(expected);
      }),
    );
  });

  it('balances a shared subscription: counts differ by at most one (range per topic, the others overall)', () => {
    fc.assert(
      fc.property(scenario, ({ assignor, partitions, members }) => {
        const same = members.map((m) => ({ ...m, topics: TOPICS }));
        const result = assign(assignor, same, countsOf(partitions));
        const sizes = (topic?: string) =>
          [...result.values()].map((l) => l.filter((tp) => topic === undefined || tp.topic === topic).length);
        const spread = (xs: number[]) => Math.max(...xs) - Math.min(...xs);
        if (assignor === 'range') for (const t of TOPICS) expect(spread(sizes(t))).toBeLessThanOrEqual(1);
        else expect(spread(sizes())).toBeLessThanOrEqual(1);
      }),
    );
  });

  it('sticky moves no more partitions than a balanced assignment must', () => {
    fc.assert(
      fc.property(scenario, ({ partitions, members }) => {
        const p = countsOf(partitions);
        const same = members.map((m) => ({ ...m, topics: TOPICS }));
        const result = assign('sticky', same, p);
        // What each member validly holds: existing partitions, first claimant in member id order.
        const claimed = new Set<string>();
        const held = new Map<string, Set<string>>();
        for (const m of [...same].sort((a, b) => (a.memberId < b.memberId ? -1 : 1))) {
          const mine = new Set<string>();
          for (const tp of m.current) {
            const key = `${tp.topic}-${tp.partition}`;
            if (tp.partition >= p.get(tp.topic)! || claimed.has(key)) continue;
            claimed.add(key);
            mine.add(key);
          }
          held.set(m.memberId, mine);
        }
        const total = partitions.reduce((a, b) => a + b, 0);
        const each = Math.floor(total / same.length);
        // The least any balanced assignment must take away: the largest holders keep each + 1.
        const heldCounts = [...held.values()].map((s) => s.size).sort((a, b) => b - a);
        let bound = 0;
        heldCounts.forEach((c, i) => {
          bound += Math.max(0, c - (i < total % same.length ? each + 1 : each));
        });
        let moved = 0;
        for (const [member, mine] of held) {
          const now = new Set(result.get(member)!.map((tp) => `${tp.topic}-${tp.partition}`));
          for (const key of mine) if (!now.has(key)) moved++;
        }
        expect(moved).toBe(bound);
      }),
    );
  });

  it('sticky with differing subscriptions leaves no member two below another it could give to', () => {
    fc.assert(
      fc.property(scenario, ({ partitions, members }) => {
        const result = assign('sticky', members, countsOf(partitions));
        for (const [from, list] of result)
          for (const tp of list)
            for (const to of members)
              if (to.memberId !== from && to.topics.includes(tp.topic))
                expect(result.get(to.memberId)!.length).toBeGreaterThanOrEqual(list.length - 1);
      }),
    );
  });
});
