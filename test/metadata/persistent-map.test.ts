import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PersistentMap } from '../../src/metadata/image.js';

/**
 * The image's persistent map behaves as a Map (checked against one as the oracle), never changes a
 * version someone holds, and shares everything a change does not touch.
 */

type Op = { kind: 'set'; key: string | number; value: number } | { kind: 'delete'; key: string | number };

// Pairs whose 32-bit hashes are equal (found by search), so that the collision nodes are exercised.
const COLLIDING = ['k32728', 'k261234', 'k32729', 'k261235'];

const key = fc.oneof(fc.nat(40), fc.constantFrom(...COLLIDING), fc.string({ maxLength: 3 }));
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key, value: fc.nat(5) }),
  fc.record({ kind: fc.constant('delete' as const), key }),
);

// A total order over the keys: 1 and '1' are distinct keys, so the type breaks the tie.
const byKey = ([a]: [string | number, number], [b]: [string | number, number]): number => {
  const ka = `${typeof a}:${String(a)}`;
  const kb = `${typeof b}:${String(b)}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

describe('PersistentMap', () => {
  it('agrees with a Map after any sequence of sets and deletes, and old versions stay as they were', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        let map = PersistentMap.empty<string | number, number>();
        const oracle = new Map<string | number, number>();
        const versions: [PersistentMap<string | number, number>, [string | number, number][]][] = [];
        for (const o of ops) {
          if (o.kind === 'set') {
            map = map.set(o.key, o.value);
            oracle.set(o.key, o.value);
          } else {
            map = map.delete(o.key);
            oracle.delete(o.key);
          }
          versions.push([map, [...oracle]]);
          expect(map.size).toBe(oracle.size);
          for (const k of [o.key, ...COLLIDING]) expect(map.get(k)).toBe(oracle.get(k));
        }
        for (const [version, entries] of versions) {
          const sortedEntries = entries.sort(byKey);
          const actual = [...version.entries()].sort(byKey);
          expect(actual).toEqual(sortedEntries);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('returns itself for a set that changes nothing and a delete of a missing key', () => {
    const map = PersistentMap.from<string, number>([
      ['a', 1],
      ['b', 2],
    ]);
    expect(map.set('a', 1)).toBe(map);
    expect(map.delete('zz')).toBe(map);
    expect(PersistentMap.empty().delete('x')).toBe(PersistentMap.empty());
  });

  it('keeps colliding keys apart', () => {
    let map = PersistentMap.from(COLLIDING.map((k, i) => [k, i] as const));
    expect(COLLIDING.map((k) => map.get(k))).toEqual([0, 1, 2, 3]);
    map = map.delete('k32728');
    expect(map.get('k32728')).toBeUndefined();
    expect(map.get('k261234')).toBe(1);
    expect(map.size).toBe(3);
  });

  it('sorts numbers numerically and strings by code unit', () => {
    const numbers = PersistentMap.from([10, 9, 100, 1].map((n) => [n, n] as const));
    expect(numbers.sorted().map(([k]) => k)).toEqual([1, 9, 10, 100]);
    const strings = PersistentMap.from(['b', 'B', 'a'].map((s) => [s, s] as const));
    expect(strings.sorted().map(([k]) => k)).toEqual(['B', 'a', 'b']);
  });
});
