/**
 * Where a follower's log parts from its leader's, by leader epochs (KIP-101, KIP-279, and the
 * fetch-time check of KIP-595), as pure functions over what each side's epoch cache answers.
 */

/** What a leader-epoch cache answers: the largest epoch not above the one asked, and where it ends. */
export type EpochEnd = (epoch: number) => { epoch: number; endOffset: number } | undefined;

/**
 * The leader's check of a follower's fetch: the follower's last batch is of `lastFetchedEpoch` and
 * its log ends at `fetchOffset`. Where the leader's log has no such epoch (its largest epoch below
 * is smaller) or that epoch ends before `fetchOffset`, the logs diverge: the answer is the leader's
 * epoch and end offset there, for the follower to truncate to. Undefined when they agree.
 */
export function divergingEpoch(
  leaderEnd: EpochEnd,
  lastFetchedEpoch: number,
  fetchOffset: number,
): { epoch: number; endOffset: number } | undefined {
  if (lastFetchedEpoch < 0 || fetchOffset === 0) return undefined;
  const end = leaderEnd(lastFetchedEpoch) ?? { epoch: -1, endOffset: -1 };
  return end.epoch < lastFetchedEpoch || end.endOffset < fetchOffset ? end : undefined;
}

/**
 * Where a follower truncates on the leader's diverging answer, as Kafka's fetcher does:
 * - the follower has that epoch too: the sooner of the two ends of it;
 * - it has only a smaller epoch below it: that epoch's end on the follower (it asks again from
 *   there, and the next answer settles it, KIP-279);
 * - it has no epoch that low: its log start (everything it holds is of later epochs);
 * never above its log end. A leader that knows no epoch at or below the one asked (-1) leaves the
 * follower its high watermark: everything below it was committed.
 */
export function truncationOffset(
  diverging: { epoch: number; endOffset: number },
  followerEnd: EpochEnd,
  follower: { logStartOffset: number; logEndOffset: number; highWatermark: number },
): number {
  let to: number;
  if (diverging.epoch < 0) to = follower.highWatermark;
  else {
    const own = followerEnd(diverging.epoch);
    if (!own) to = follower.logStartOffset;
    else if (own.epoch === diverging.epoch) to = Math.min(diverging.endOffset, own.endOffset);
    else to = own.endOffset;
  }
  return Math.max(follower.logStartOffset, Math.min(to, follower.logEndOffset));
}
