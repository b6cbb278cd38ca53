import { assert } from './assert.js';

/**
 * A bounded pool of large buffers for reads whose bytes are handed to someone else for a while (a
 * fetch's stored batches, framed in place and written to a socket), instead of a fresh allocation
 * per read. A buffer of 100 KiB or more is, in V8, a backing store of its own: allocating one costs
 * a malloc of fresh pages (page faults on first touch) and its release waits for a garbage
 * collection, which is a large share of a fetch's time when the batches come from the page cache.
 *
 * A buffer is taken through a `BufferLease` and goes back to the pool only when the lease is
 * released, which its holder does once nothing references the bytes any more (for a response: on
 * its `close`, after every write of it completed or was abandoned). Until then no other lease can
 * receive it: the pool tracks every buffer it handed out and asserts that a buffer is never out
 * twice, nor returned twice.
 *
 * Buffers come in power-of-two size classes from `BUFFER_POOL_CLASS_MIN_BYTES` to
 * `BUFFER_POOL_CLASS_MAX_BYTES`; a request above the largest class gets an unpooled buffer. The
 * pool keeps at most `retainedBytesMax` of free buffers: one returned beyond that is dropped (left
 * to the garbage collector), so the pool never holds more idle memory than that.
 */

/** The smallest class: below this a fresh allocation comes from V8's own pool and is cheap. */
export const BUFFER_POOL_CLASS_MIN_BYTES = 64 * 1024;
/** The largest class: above the fetch limit (8 MiB) plus the read's slack and framing. */
export const BUFFER_POOL_CLASS_MAX_BYTES = 16 * 1024 * 1024;
/** Idle buffers kept by default: 64 MiB serves 64 fetches of 1 MiB in flight at once. */
export const BUFFER_POOL_RETAINED_BYTES_MAX = 64 * 1024 * 1024;

export interface BufferPoolStats {
  /** Buffers taken from the free lists. */
  reused: number;
  /** Pooled-class buffers allocated because their free list was empty. */
  allocated: number;
  /** Requests above the largest class, served by a fresh buffer that never joins the pool. */
  unpooled: number;
  /** Buffers out in leases now. */
  inUse: number;
  /** Bytes of free buffers kept now. */
  retainedBytes: number;
}

export class BufferPool {
  readonly #retainedBytesMax: number;
  /** Free buffers by class index (class i holds buffers of `CLASS_MIN << i` bytes). */
  readonly #free: Buffer[][] = [];
  /** Every pooled buffer out in a lease, by its backing store. */
  readonly #inUse = new Set<ArrayBufferLike>();
  #retainedBytes = 0;
  #reused = 0;
  #allocated = 0;
  #unpooled = 0;

  constructor(options: { retainedBytesMax?: number } = {}) {
    this.#retainedBytesMax = options.retainedBytesMax ?? BUFFER_POOL_RETAINED_BYTES_MAX;
    assert(this.#retainedBytesMax >= 0, `retainedBytesMax ${this.#retainedBytesMax} is negative`);
    for (let size = BUFFER_POOL_CLASS_MIN_BYTES; size <= BUFFER_POOL_CLASS_MAX_BYTES; size *= 2)
      this.#free.push([]);
  }

  /** A lease that takes buffers from this pool and returns them all at `release()`. */
  lease(): BufferLease {
    return new BufferLease(this);
  }

  get stats(): BufferPoolStats {
    return {
      reused: this.#reused,
      allocated: this.#allocated,
      unpooled: this.#unpooled,
      inUse: this.#inUse.size,
      retainedBytes: this.#retainedBytes,
    };
  }

  /**
   * A buffer of at least `bytes`, whole (its own backing store, offset 0), for the caller alone
   * until it is given back with `give`; `pooled` says whether it must be.
   */
  take(bytes: number): { buffer: Buffer; pooled: boolean } {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, `buffer of ${bytes} bytes`);
    const index = classIndex(bytes);
    if (index === undefined) {
      this.#unpooled++;
      return { buffer: Buffer.allocUnsafeSlow(bytes), pooled: false };
    }
    let buffer = this.#free[index]!.pop();
    if (buffer) {
      this.#retainedBytes -= buffer.length;
      this.#reused++;
    } else {
      buffer = Buffer.allocUnsafeSlow(BUFFER_POOL_CLASS_MIN_BYTES * 2 ** index);
      this.#allocated++;
    }
    assert(!this.#inUse.has(buffer.buffer), 'a pooled buffer handed out while still in use');
    this.#inUse.add(buffer.buffer);
    return { buffer, pooled: true };
  }

  /** Returns a buffer `take` handed out as pooled; nothing may reference its bytes any more. */
  give(buffer: Buffer): void {
    assert(this.#inUse.delete(buffer.buffer), 'a buffer returned that is not out of this pool');
    const index = classIndex(buffer.length);
    assert(
      index !== undefined && buffer.length === BUFFER_POOL_CLASS_MIN_BYTES * 2 ** index,
      'not a pooled size',
    );
    if (this.#retainedBytes + buffer.length > this.#retainedBytesMax) return;
    this.#free[index]!.push(buffer);
    this.#retainedBytes += buffer.length;
  }
}

/**
 * The buffers one holder (one response) took from a pool. `allocate` fits `ReadOptions.allocate`;
 * `release` gives them all back, once: a second call does nothing, and `allocate` after it is
 * refused, since nothing would return those buffers.
 */
export class BufferLease {
  readonly #pool: BufferPool;
  readonly #buffers: Buffer[] = [];
  #released = false;

  constructor(pool: BufferPool) {
    this.#pool = pool;
  }

  readonly allocate = (bytes: number): Buffer => {
    assert(!this.#released, 'allocate from a released lease');
    const { buffer, pooled } = this.#pool.take(bytes);
    if (pooled) this.#buffers.push(buffer);
    return buffer;
  };

  get released(): boolean {
    return this.#released;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const buffer of this.#buffers) this.#pool.give(buffer);
    this.#buffers.length = 0;
  }
}

/** The class that holds `bytes`, or undefined above the largest. */
function classIndex(bytes: number): number | undefined {
  if (bytes > BUFFER_POOL_CLASS_MAX_BYTES) return undefined;
  let index = 0;
  while (BUFFER_POOL_CLASS_MIN_BYTES * 2 ** index < bytes) index++;
  return index;
}
