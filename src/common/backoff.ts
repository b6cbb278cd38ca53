import type { Random } from './random.js';

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  multiplier?: number;
  /** Fraction of each delay drawn at random, so that many clients do not retry in step. */
  jitter?: number;
}

/** Exponential backoff with jitter; `next()` returns the delay before the next try. */
export class Backoff {
  #attempt = 0;
  constructor(
    private readonly options: BackoffOptions,
    private readonly random: Random,
  ) {}

  next(): number {
    const { initialMs, maxMs, multiplier = 2, jitter = 0.2 } = this.options;
    const base = Math.min(maxMs, initialMs * multiplier ** this.#attempt);
    this.#attempt++;
    const spread = base * jitter;
    return Math.max(0, Math.round(base - spread + this.random.next() * 2 * spread));
  }

  reset(): void {
    this.#attempt = 0;
  }

  get attempts(): number {
    return this.#attempt;
  }
}
