import type { MetadataDelta, PartitionImage } from './image.js';

/**
 * What one broker must do when the metadata image changes, as data: which of its partitions it now
 * leads, which it follows (and from whom), and which it no longer holds. The broker applies these
 * idempotently: entries after the last snapshot are replayed at every restart, so the same change
 * can arrive twice, and applying it twice must leave the same state.
 */
export interface PartitionRole {
  topicId: string;
  topicName: string;
  partition: number;
  leaderEpoch: number;
  partitionEpoch: number;
  replicas: readonly number[];
  isr: readonly number[];
}

export interface LocalChanges {
  /** Partitions this broker leads after the delta, with a new leader epoch or newly created. */
  lead: PartitionRole[];
  /** Partitions this broker follows after the delta (leader -1: none yet), when something changed. */
  follow: (PartitionRole & { leader: number })[];
  /** Partitions this broker held before and no longer holds (removed, or reassigned away). */
  stop: { topicId: string; topicName: string; partition: number; deleteData: boolean }[];
}

/** The changes of `delta` that concern `brokerId`, in the delta's order (by topic id, partition). */
export function localChanges(delta: MetadataDelta, brokerId: number): LocalChanges {
  const out: LocalChanges = { lead: [], follow: [], stop: [] };
  for (const change of delta.partitionsChanged) {
    const before = change.before;
    const after = change.after;
    const heldBefore = before?.replicas.includes(brokerId) ?? false;
    const holdsAfter = after?.replicas.includes(brokerId) ?? false;
    if (heldBefore && !holdsAfter) {
      // A removed topic's data goes; a replica moved away keeps nothing either.
      out.stop.push({
        topicId: change.topicId,
        topicName: change.topicName,
        partition: change.partition,
        deleteData: true,
      });
      continue;
    }
    if (!holdsAfter || !after) continue;
    const role = roleOf(change.topicId, change.topicName, after);
    if (after.leader === brokerId) {
      if (!before || before.leader !== brokerId || before.leaderEpoch !== after.leaderEpoch)
        out.lead.push(role);
      else if (before.partitionEpoch !== after.partitionEpoch) out.lead.push(role);
    } else if (!before || !samePartition(before, after)) {
      out.follow.push({ ...role, leader: after.leader });
    }
  }
  return out;
}

function roleOf(topicId: string, topicName: string, p: PartitionImage): PartitionRole {
  return {
    topicId,
    topicName,
    partition: p.partition,
    leaderEpoch: p.leaderEpoch,
    partitionEpoch: p.partitionEpoch,
    replicas: p.replicas,
    isr: p.isr,
  };
}

function samePartition(a: PartitionImage, b: PartitionImage): boolean {
  return a.leader === b.leader && a.leaderEpoch === b.leaderEpoch && a.partitionEpoch === b.partitionEpoch;
}
