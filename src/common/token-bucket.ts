/**
 * A token bucket over an injected clock's readings: `ratePerSecond` tokens a second, at most
 * `capacity` saved up (one second's worth when absent). `take` may run the bucket into debt: a read
 * of whole batches can be larger than what is left, and the debt is paid off before the next one,
 * so that over any long window no more than `rate × time + capacity` goes through. Pure: the
 * caller passes the time of every call (monotonic milliseconds).
 */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly capacity: number;
  #tokens: number;
  #lastMs: number;

  constructor(options: { ratePerSecond: number; capacity?: number }, nowMs: number) {
    if (!Number.isFinite(options.ratePerSecond) || options.ratePerSecond <= 0)
      throw new RangeError(`a token bucket's rate must be positive, got ${options.ratePerSecond}`);
    const capacity = options.capacity ?? options.ratePerSecond;
    if (!Number.isFinite(capacity) || capacity <= 0)
      throw new RangeError(`a token bucket's capacity must be positive, got ${capacity}`);
    this.ratePerSecond = options.ratePerSecond;
    this.capacity = capacity;
    this.#tokens = capacity;
    this.#lastMs = nowMs;
  }

  /** Tokens there now: negative while in debt. */
  available(nowMs: number): number {
    this.#refill(nowMs);
    return this.#tokens;
  }

  /** Takes `amount` tokens, into debt if need be. */
  take(amount: number, nowMs: number): void {
    this.#refill(nowMs);
    this.#tokens -= amount;
  }

  /** Milliseconds until at least one token is there (0 when one is now). */
  waitMs(nowMs: number): number {
    this.#refill(nowMs);
    if (this.#tokens >= 1) return 0;
    return Math.ceil(((1 - this.#tokens) * 1000) / this.ratePerSecond);
  }

  #refill(nowMs: number): void {
    // A clock reading that goes back (it should not) adds nothing rather than taking tokens away.
    const elapsedMs = Math.max(0, nowMs - this.#lastMs);
    this.#lastMs = Math.max(this.#lastMs, nowMs);
    this.#tokens = Math.min(this.capacity, this.#tokens + (elapsedMs * this.ratePerSecond) / 1000);
  }
}
