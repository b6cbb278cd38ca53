/**
 * The high watermark and in-sync rules of a replicated partition, as pure functions so that they can
 * be checked against a naive oracle.
 */

/**
 * The high watermark a leader may expose: the lowest log end offset over the in-sync replicas
 * (the leader's own included), never below the current one, since a high watermark never goes
 * back. `logEndOffsets` holds one entry per in-sync replica and is never empty.
 */
export function highWatermarkOf(current: number, logEndOffsets: readonly number[]): number {
  let lowest = Number.POSITIVE_INFINITY;
  for (const end of logEndOffsets) if (end < lowest) lowest = end;
  return Math.max(current, lowest);
}

/** Whether an `acks=all` produce may be appended: the in-sync set is at least `min.insync.replicas`. */
export function enoughInSync(inSyncCount: number, minInsyncReplicas: number): boolean {
  return inSyncCount >= minInsyncReplicas;
}
