import { SluiceError } from '../common/errors.js';
import { type MetadataImage, type PartitionImage, reassigning, targetReplicas } from './image.js';
import { METADATA_VERSION_REASSIGNMENT, type PartitionChangeRecord, RECORD_LIMITS } from './records.js';

/**
 * Partition reassignment (after Kafka's KIP-455), as pure decisions on an image. A reassignment
 * from replicas C to a target T is two partition changes:
 *
 *   start     replicas = T ++ (C − T), addingReplicas = T − C, removingReplicas = C − T
 *   complete  replicas = T, the ISR cut to T, addingReplicas = removingReplicas = [], and a new
 *             leader from T when the leader is being removed (a new leader epoch)
 *
 * Between the two, the adding replicas open their logs and fetch from the leader like any follower;
 * the leader adds each to the ISR once it has caught up (alterPartition), and the change that puts
 * the last one in also completes the reassignment. The brokers of the removed replicas then delete
 * their logs, since the image no longer places the partition on them. A partition whose target the
 * ISR already covers completes in the same entry it starts in. Cancelling reverts to C: the adding
 * replicas leave replicas and ISR (and leadership), nothing else moves.
 *
 * While a reassignment is in progress the partition holds every replica of both sets, so the
 * in-sync set can only grow towards the target: no acknowledged record depends on a replica that is
 * about to be removed.
 */

export interface ReassignmentRequest {
  topic: string;
  partition: number;
  /** The target replicas, preferred leader first; null cancels the reassignment in progress. */
  replicas: readonly number[] | null;
  /** When given, the partition epoch the request was computed from (INVALID_UPDATE_VERSION when stale). */
  partitionEpoch?: number;
}

/** The change that starts (or, with nothing to add, starts and completes) a reassignment to `target`. */
export function startReassignment(
  image: MetadataImage,
  p: PartitionImage,
  target: readonly number[],
): PartitionChangeRecord | undefined {
  const current = p.replicas;
  const adding = target.filter((id) => !current.includes(id));
  const removing = current.filter((id) => !target.includes(id));
  const replicas = [...target, ...removing];
  if (adding.length === 0 && removing.length === 0) {
    // Only the order changes (the preferred leader): nothing to copy, nothing to remove.
    if (sameOrder(replicas, current)) return undefined;
    return change(p, { replicas, isr: inOrder(p.isr, replicas) });
  }
  const started: PartitionImage = {
    ...p,
    replicas,
    isr: inOrder(p.isr, replicas),
    addingReplicas: adding,
    removingReplicas: removing,
  };
  return (
    completion(image, started) ??
    change(p, {
      replicas,
      isr: started.isr,
      addingReplicas: adding,
      removingReplicas: removing,
    })
  );
}

/**
 * The change that completes the partition's reassignment, when it can: every adding replica is in
 * the ISR, and some replica of the target is in sync, and live if the leader has to move to it.
 * Undefined while it cannot (or when none is in progress). `p` may be a state not yet in `image`
 * (the one a start or an ISR change is about to leave); the record is relative to `p`.
 */
export function completion(image: MetadataImage, p: PartitionImage): PartitionChangeRecord | undefined {
  if (!reassigning(p)) return undefined;
  if (!p.addingReplicas.every((id) => p.isr.includes(id))) return undefined;
  const target = targetReplicas(p);
  const isr = target.filter((id) => p.isr.includes(id));
  if (isr.length === 0) return undefined;
  let leader = p.leader;
  if (leader !== -1 && !target.includes(leader)) {
    leader = isr.find((id) => image.broker(id)?.fenced === false) ?? -1;
    // Moving leadership to nobody would take the partition offline: wait for a live target replica.
    if (leader === -1) return undefined;
  }
  return change(p, {
    replicas: [...target],
    isr,
    ...(leader !== p.leader ? { leader } : {}),
    addingReplicas: [],
    removingReplicas: [],
  });
}

/** The change that takes the partition back to its replicas before the reassignment in progress. */
export function cancellation(image: MetadataImage, p: PartitionImage, topic: string): PartitionChangeRecord {
  if (!reassigning(p))
    throw new SluiceError(
      'NO_REASSIGNMENT_IN_PROGRESS',
      `no reassignment of ${topic}/${p.partition} is in progress`,
      { details: { topic, partition: p.partition } },
    );
  const replicas = p.replicas.filter((id) => !p.addingReplicas.includes(id));
  const isr = p.isr.filter((id) => !p.addingReplicas.includes(id));
  if (isr.length === 0)
    throw new SluiceError(
      'INVALID_REQUEST',
      `cancelling the reassignment of ${topic}/${p.partition} would leave no in-sync replica: every original replica has fallen out of sync`,
      { details: { topic, partition: p.partition } },
    );
  let leader = p.leader;
  if (leader !== -1 && !replicas.includes(leader))
    leader = isr.find((id) => image.broker(id)?.fenced === false) ?? -1;
  return change(p, {
    replicas,
    isr,
    ...(leader !== p.leader ? { leader } : {}),
    addingReplicas: [],
    removingReplicas: [],
  });
}

/** Refuses a target that is empty, repeats a broker, names a broker not registered or is too long. */
export function checkTarget(
  image: MetadataImage,
  topic: string,
  partition: number,
  target: readonly number[],
) {
  const where = `${topic}/${partition}`;
  const refuse = (message: string, details: Record<string, unknown> = {}) =>
    new SluiceError('INVALID_REPLICA_ASSIGNMENT', `${where}: ${message}`, {
      details: { topic, partition, ...details },
    });
  if (target.length === 0) throw refuse('the target replicas are empty');
  if (new Set(target).size !== target.length) throw refuse(`broker ids repeat in ${target.join(',')}`);
  if (target.length > RECORD_LIMITS.replicasMax)
    throw refuse(`at most ${RECORD_LIMITS.replicasMax} replicas, got ${target.length}`);
  for (const id of target)
    if (!image.broker(id)) throw refuse(`broker ${id} is not registered`, { brokerId: id });
}

/** UNSUPPORTED_VERSION below the metadata.version whose records carry reassignments. */
export function requireReassignmentVersion(image: MetadataImage): void {
  if (image.metadataVersion < METADATA_VERSION_REASSIGNMENT)
    throw new SluiceError(
      'UNSUPPORTED_VERSION',
      `reassignment needs metadata.version ${METADATA_VERSION_REASSIGNMENT}; this cluster is at ${image.metadataVersion}`,
      { details: { metadataVersion: image.metadataVersion } },
    );
}

/**
 * Targets that move every replica off `brokerId`: each replica there is replaced, at its place in
 * the order, by a live broker the partition does not use, preferring a rack the partition's other
 * replicas are not in, then the broker holding the fewest replicas (counting the moves planned so
 * far), then the lowest id. INVALID_REPLICATION_FACTOR when some partition finds no such broker (the
 * remaining brokers cannot hold its replication factor); REASSIGNMENT_IN_PROGRESS when a
 * reassignment in progress keeps the broker in its target. Partitions already moving off it are
 * left as they are.
 */
export function decommissionTargets(image: MetadataImage, brokerId: number): ReassignmentRequest[] {
  if (!image.broker(brokerId))
    throw new SluiceError('INVALID_REPLICA_ASSIGNMENT', `broker ${brokerId} is not registered`, {
      details: { brokerId },
    });
  const live = [...image.brokers.values()]
    .filter((b) => !b.fenced && b.brokerId !== brokerId)
    .sort((a, b) => a.brokerId - b.brokerId);
  const rackOf = (id: number) => image.broker(id)?.rack ?? `\u0000${id}`;
  const load = new Map<number, number>();
  for (const topic of image.topicsById.values())
    for (const p of topic.partitions.values())
      for (const id of targetReplicas(p)) load.set(id, (load.get(id) ?? 0) + 1);
  const plans: ReassignmentRequest[] = [];
  for (const [, topic] of image.topicsById.sorted()) {
    for (const [, p] of topic.partitions.sorted()) {
      if (!p.replicas.includes(brokerId)) continue;
      const target = targetReplicas(p);
      if (reassigning(p)) {
        if (!target.includes(brokerId)) continue;
        throw new SluiceError(
          'REASSIGNMENT_IN_PROGRESS',
          `${topic.name}/${p.partition} is being reassigned to ${target.join(',')}, which keeps broker ${brokerId}: cancel that first`,
          { details: { topic: topic.name, partition: p.partition } },
        );
      }
      const others = target.filter((id) => id !== brokerId);
      const usedRacks = new Set(others.map(rackOf));
      const candidates = live.filter((b) => !target.includes(b.brokerId));
      if (candidates.length === 0)
        throw new SluiceError(
          'INVALID_REPLICATION_FACTOR',
          `${topic.name}/${p.partition} has replication factor ${target.length}: without broker ${brokerId} only ${live.length} live broker(s) remain`,
          { details: { topic: topic.name, partition: p.partition, availableBrokers: live.length } },
        );
      const score = (id: number) => [usedRacks.has(rackOf(id)) ? 1 : 0, load.get(id) ?? 0, id];
      const best = candidates.map((b) => b.brokerId).reduce((a, b) => (lexLess(score(b), score(a)) ? b : a));
      load.set(best, (load.get(best) ?? 0) + 1);
      plans.push({
        topic: topic.name,
        partition: p.partition,
        replicas: target.map((id) => (id === brokerId ? best : id)),
        partitionEpoch: p.partitionEpoch,
      });
    }
  }
  return plans;
}

function lexLess(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}

function change(
  p: PartitionImage,
  fields: Omit<PartitionChangeRecord, 'type' | 'version' | 'topicId' | 'partition'>,
): PartitionChangeRecord {
  const v1 = fields.addingReplicas !== undefined || fields.removingReplicas !== undefined;
  return {
    type: 'partitionChange',
    version: v1 ? 1 : 0,
    topicId: p.topicId,
    partition: p.partition,
    ...fields,
  };
}

/** `ids` in the order of `order` (ids not in it dropped). */
function inOrder(ids: readonly number[], order: readonly number[]): number[] {
  return order.filter((id) => ids.includes(id));
}

function sameOrder(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => b[i] === id);
}
