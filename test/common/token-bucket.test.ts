import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../src/common/token-bucket.js';

/**
 * The replication throttle's token bucket: it starts full, refills at its rate up to its capacity,
 * runs into debt on a large take and pays it off before letting more through, and over any schedule
 * of takes (a fast-check property against the rate × time + capacity bound) never lets more through
 * than that.
 */
describe('TokenBucket', () => {
  it('starts full, refills at its rate, never past its capacity', () => {
    const bucket = new TokenBucket({ ratePerSecond: 1000 }, 0);
    expect(bucket.available(0)).toBe(1000);
    bucket.take(600, 0);
    expect(bucket.available(0)).toBe(400);
    expect(bucket.available(100)).toBe(500);
    expect(bucket.available(10_000)).toBe(1000);
  });

  it('goes into debt on a take larger than what is there, and says how long until a token is back', () => {
    const bucket = new TokenBucket({ ratePerSecond: 1000, capacity: 500 }, 0);
    bucket.take(2500, 0);
    expect(bucket.available(0)).toBe(-2000);
    expect(bucket.waitMs(0)).toBe(2001);
    expect(bucket.available(1000)).toBe(-1000);
    expect(bucket.waitMs(2000)).toBe(1);
    expect(bucket.waitMs(2001)).toBe(0);
  });

  it('ignores a clock reading that goes back', () => {
    const bucket = new TokenBucket({ ratePerSecond: 1000 }, 1000);
    bucket.take(1000, 1000);
    expect(bucket.available(500)).toBe(0);
    expect(bucket.available(1500)).toBe(500);
  });

  it('refuses a rate or capacity that is not positive', () => {
    expect(() => new TokenBucket({ ratePerSecond: 0 }, 0)).toThrow(RangeError);
    expect(() => new TokenBucket({ ratePerSecond: 10, capacity: -1 }, 0)).toThrow(RangeError);
  });

  it('lets through at most rate × time + capacity + one last take, for any schedule of takes made while not in debt', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 500 }), fc.integer({ min: 1, max: 2_000_000 })), {
          maxLength: 200,
        }),
        (rate, steps) => {
          const bucket = new TokenBucket({ ratePerSecond: rate }, 0);
          let now = 0;
          let through = 0;
          let largest = 0;
          for (const [advanceMs, bytes] of steps) {
            now += advanceMs;
            // What the throttle does: read only while tokens are there.
            if (bucket.available(now) <= 0) continue;
            bucket.take(bytes, now);
            through += bytes;
            largest = Math.max(largest, bytes);
          }
          expect(through).toBeLessThanOrEqual((rate * now) / 1000 + bucket.capacity + largest);
        },
      ),
    );
  });
});
