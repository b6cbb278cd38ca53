/**
 * Time as a dependency. Core layers (raft, metadata, storage, replication) never read the wall
 * clock or start timers themselves; they take a Clock so that tests and simulations control time.
 */
export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  nowMs(): number;
  /** A monotonic reading in milliseconds, for measuring intervals. */
  monotonicMs(): number;
  /** Runs `fn` after `delayMs`; returns a handle that cancels it. */
  setTimeout(fn: () => void, delayMs: number): TimerHandle;
  setInterval(fn: () => void, intervalMs: number): TimerHandle;
}

export interface TimerHandle {
  cancel(): void;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimeout(fn, delayMs) {
    const t = setTimeout(fn, delayMs);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, intervalMs) {
    const t = setInterval(fn, intervalMs);
    t.unref?.();
    return { cancel: () => clearInterval(t) };
  },
};

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  intervalMs: number | undefined;
  cancelled: boolean;
}

/**
 * A clock that moves only when told to. Timers fire in deadline order (ties in creation order)
 * during `advance`, so a run is a pure function of the calls made on it.
 */
export class ManualClock implements Clock {
  #nowMs: number;
  #sequence = 0;
  #timers: Timer[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.#nowMs = startMs;
  }

  nowMs(): number {
    return this.#nowMs;
  }

  monotonicMs(): number {
    return this.#nowMs;
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    return this.#add(fn, delayMs, undefined);
  }

  setInterval(fn: () => void, intervalMs: number): TimerHandle {
    return this.#add(fn, intervalMs, Math.max(1, intervalMs));
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const target = this.#nowMs + ms;
    for (;;) {
      const next = this.#nextDue(target);
      if (next === undefined) break;
      this.#nowMs = Math.max(this.#nowMs, next.at);
      if (next.intervalMs !== undefined) {
        next.at += next.intervalMs;
        next.seq = this.#sequence++;
      } else {
        next.cancelled = true;
      }
      next.fn();
    }
    this.#nowMs = target;
    this.#timers = this.#timers.filter((t) => !t.cancelled);
  }

  pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  #nextDue(limit: number) {
    let best: Timer | undefined;
    for (const t of this.#timers) {
      if (t.cancelled || t.at > limit) continue;
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }

  #add(fn: () => void, delayMs: number, intervalMs: number | undefined): TimerHandle {
    const timer = {
      at: this.#nowMs + Math.max(0, delayMs),
      seq: this.#sequence++,
      fn,
      intervalMs,
      cancelled: false,
    };
    this.#timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }
}
