import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { crc32c, crc32cPortable } from '../../src/common/crc32c.js';
import { murmur2, partitionForKey, toPositive } from '../../src/common/murmur2.js';
import { SeededRandom } from '../../src/common/random.js';

describe('crc32c', () => {
  it('matches the CRC-32C check value and differs from zlib CRC-32', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32cPortable(Buffer.from('123456789'))).toBe(0xe3069283);
    // CRC-32/IEEE of the same input is 0xcbf43926.
    expect(crc32c(Buffer.from('123456789'))).not.toBe(0xcbf43926);
  });

  it('native and table implementations agree on any input, also when chained', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 50 }), (a, b) => {
        expect(crc32c(a)).toBe(crc32cPortable(a));
        expect(crc32c(b, crc32c(a))).toBe(crc32cPortable(Buffer.concat([a, b])));
      }),
    );
  });
});

describe('murmur2', () => {
  it('gives the values of Kafka’s default partitioner hash', () => {
    const cases: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
      // Every tail length (0 to 3 bytes after the 4-byte blocks), from a separate implementation
      // written from the algorithm that gives the values above: the 1-byte tail multiplies once more.
      ['', 275646681],
      ['a', -1563381124],
      ['hello', 2132663229],
      ['abcdefghi', -619679810],
      ['ab', 316155434],
      ['abcd', -1323649548],
      ['customer-7x', 132726131],
    ];
    for (const [input, expected] of cases) expect(murmur2(Buffer.from(input))).toBe(expected);
  });

  it('maps keys to a partition in range, with toPositive not abs', () => {
    expect(toPositive(-2147483648)).toBe(0);
    fc.assert(
      fc.property(fc.uint8Array(), fc.integer({ min: 1, max: 1000 }), (key, n) => {
        const p = partitionForKey(key, n);
        expect(p).toBeGreaterThanOrEqual(0);
        expect(p).toBeLessThan(n);
      }),
    );
  });
});

describe('SeededRandom', () => {
  it('replays the same sequence from the same seed and differs across seeds', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const c = new SeededRandom(43);
    const sa = Array.from({ length: 20 }, () => a.int(1000));
    expect(Array.from({ length: 20 }, () => b.int(1000))).toEqual(sa);
    expect(Array.from({ length: 20 }, () => c.int(1000))).not.toEqual(sa);
    for (const v of sa) expect(v).toBeLessThan(1000);
  });
});

describe('ManualClock', () => {
  it('fires timers in deadline order only when advanced', () => {
    const clock = new ManualClock(0);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b'), 20);
    clock.setTimeout(() => fired.push('a'), 10);
    const cancelled = clock.setTimeout(() => fired.push('x'), 15);
    const interval = clock.setInterval(() => fired.push('i'), 8);
    cancelled.cancel();
    expect(fired).toEqual([]);
    clock.advance(20);
    expect(fired).toEqual(['i', 'a', 'i', 'b']);
    interval.cancel();
    clock.advance(100);
    expect(fired).toHaveLength(4);
    expect(clock.nowMs()).toBe(120);
  });
});
