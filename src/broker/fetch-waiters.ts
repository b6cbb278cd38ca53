import type { Clock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import type { PartitionReplica } from '../replication/replica.js';

/**
 * The long-poll fetches (and follow streams) waiting for records, bounded by `waitersMax`. Each
 * waits for its partition's high watermark to pass its offset, its deadline, its abort signal, or
 * a wake-up (a shutdown, or its topic being deleted), whichever comes first.
 */
export class FetchWaiters {
  readonly #clock: Clock;
  readonly #waitersMax: number;
  #waiting = 0;
  #closed = false;
  /** Finishers of the waiting fetches, so that a shutdown or a delete can answer them at once. */
  readonly #wakers = new Map<() => void, PartitionReplica>();

  constructor(options: { waitersMax: number }, deps: { clock: Clock }) {
    this.#waitersMax = options.waitersMax;
    this.#clock = deps.clock;
  }

  get waiting(): number {
    return this.#waiting;
  }

  get waitingMax(): number {
    return this.#waitersMax;
  }

  /**
   * Resolves when the partition has grown by at least `minBytes` past `offset` (roughly), the time
   * is up, the signal aborts or the waiter is woken. Refuses with LIMIT_EXCEEDED when full.
   */
  wait(
    replica: PartitionReplica,
    offset: number,
    minBytes: number,
    maxWaitMs: number,
    signal?: AbortSignal,
  ): Promise<void> {
    if (this.#waiting >= this.#waitersMax) {
      throw new SluiceError('LIMIT_EXCEEDED', `too many waiting fetches (limit ${this.#waitersMax})`);
    }
    if ((replica.highWatermark > offset && minBytes <= 1) || this.#closed) return Promise.resolve();
    this.#waiting++;
    const startSize = replica.log.sizeBytes;
    return new Promise<void>((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        this.#waiting--;
        this.#wakers.delete(finish);
        unsubscribe();
        timer.cancel();
        signal?.removeEventListener('abort', finish);
        resolve();
      };
      const unsubscribe = replica.onHighWatermarkAdvance(() => {
        if (replica.highWatermark > offset && replica.log.sizeBytes - startSize >= minBytes - 1) finish();
      });
      const timer = this.#clock.setTimeout(finish, maxWaitMs);
      this.#wakers.set(finish, replica);
      signal?.addEventListener('abort', finish, { once: true });
    });
  }

  /** Answers every waiter on these replicas now (their topic is going away). */
  wake(replicas: ReadonlySet<PartitionReplica>): void {
    for (const [finish, replica] of [...this.#wakers]) if (replicas.has(replica)) finish();
  }

  /** Answers every waiter now, and later waits return at once (a clean shutdown). */
  close(): void {
    this.#closed = true;
    for (const finish of [...this.#wakers.keys()]) finish();
  }
}
