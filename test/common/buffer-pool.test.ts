import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AssertionError } from '../../src/common/assert.js';
import {
  BUFFER_POOL_CLASS_MAX_BYTES,
  BUFFER_POOL_CLASS_MIN_BYTES,
  BufferPool,
} from '../../src/common/buffer-pool.js';

describe('BufferPool', () => {
  it('never hands a buffer to a second lease while the first holds it, and reuses it once released', () => {
    const pool = new BufferPool();
    const first = pool.lease();
    const a = first.allocate(100_000);
    const second = pool.lease();
    const b = second.allocate(100_000);
    expect(b.buffer).not.toBe(a.buffer);
    first.release();
    const third = pool.lease();
    const c = third.allocate(90_000);
    // The class of 128 KiB: the buffer `first` gave back, and not the one `second` still holds.
    expect(c.buffer).toBe(a.buffer);
    expect(c.length).toBe(128 * 1024);
    expect(pool.stats).toMatchObject({ reused: 1, allocated: 2, inUse: 2 });
  });

  it('releases a lease once: a second release gives nothing back twice, and a released lease allocates nothing', () => {
    const pool = new BufferPool();
    const lease = pool.lease();
    lease.allocate(BUFFER_POOL_CLASS_MIN_BYTES);
    lease.release();
    lease.release();
    expect(pool.stats).toMatchObject({ inUse: 0, retainedBytes: BUFFER_POOL_CLASS_MIN_BYTES });
    expect(() => lease.allocate(10)).toThrow(AssertionError);
  });

  it('refuses a buffer that is not out of the pool', () => {
    const pool = new BufferPool();
    expect(() => pool.give(Buffer.allocUnsafeSlow(BUFFER_POOL_CLASS_MIN_BYTES))).toThrow(AssertionError);
    const { buffer } = pool.take(1);
    pool.give(buffer);
    expect(() => pool.give(buffer)).toThrow(AssertionError);
  });

  it('keeps at most retainedBytesMax of free buffers and never pools a buffer above the largest class', () => {
    const pool = new BufferPool({ retainedBytesMax: 3 * BUFFER_POOL_CLASS_MIN_BYTES });
    const leases = [1, 2, 3, 4].map(() => pool.lease());
    for (const lease of leases) lease.allocate(BUFFER_POOL_CLASS_MIN_BYTES);
    for (const lease of leases) lease.release();
    expect(pool.stats.retainedBytes).toBe(3 * BUFFER_POOL_CLASS_MIN_BYTES);
    const big = pool.lease();
    const buffer = big.allocate(BUFFER_POOL_CLASS_MAX_BYTES + 1);
    expect(buffer.length).toBe(BUFFER_POOL_CLASS_MAX_BYTES + 1);
    big.release();
    expect(pool.stats).toMatchObject({
      unpooled: 1,
      inUse: 0,
      retainedBytes: 3 * BUFFER_POOL_CLASS_MIN_BYTES,
    });
  });

  it('gives each live lease bytes nobody else writes: a random interleaving of leases and releases', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant('allocate' as const),
              bytes: fc.integer({ min: 0, max: 600_000 }),
            }),
            fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
          ),
          { maxLength: 60 },
        ),
        (steps) => {
          const pool = new BufferPool({ retainedBytesMax: 1 << 20 });
          const live: { lease: ReturnType<BufferPool['lease']>; buffers: Buffer[]; mark: number }[] = [];
          let marks = 0;
          for (const step of steps) {
            if (step.kind === 'allocate') {
              const mark = ++marks & 0xff;
              const holder = { lease: pool.lease(), buffers: [] as Buffer[], mark };
              const buffer = holder.lease.allocate(step.bytes);
              expect(buffer.length).toBeGreaterThanOrEqual(step.bytes);
              expect(buffer.byteOffset).toBe(0);
              buffer.fill(mark);
              holder.buffers.push(buffer);
              live.push(holder);
            } else if (live.length > 0) {
              const [holder] = live.splice(step.pick % live.length, 1);
              // Nobody else wrote into these bytes while this lease held them.
              for (const buffer of holder!.buffers)
                expect(buffer.every((b) => b === holder!.mark)).toBe(true);
              holder!.lease.release();
            }
            const stores = live.flatMap((h) => h.buffers.map((b) => b.buffer));
            expect(new Set(stores).size).toBe(stores.length);
          }
        },
      ),
      { numRuns: 50 },
    );
  });
});
