/**
 * Partition assignors: pure functions from the members' subscriptions (and, for `sticky`, their
 * current partitions) and the topics' partition counts to a partition list per member. The
 * coordinator runs one per group (KIP-848: the assignment is computed server-side).
 *
 * `range` and `roundrobin` give exactly the assignments of Kafka's RangeAssignor and
 * RoundRobinAssignor for the same inputs, members ordered by member id:
 * - range, per topic: the members subscribed to it in member id order; each gets
 *   `floor(partitions / members)` consecutive partitions and the first `partitions % members`
 *   one more.
 * - roundrobin: every subscribed topic-partition in (topic, partition) order, dealt to the members
 *   in member id order in turn; a member not subscribed to the partition's topic is passed over.
 * - sticky: balanced (with one subscription shared by all, counts differ by at most one) and a
 *   member keeps as many of its current partitions as a balanced assignment allows.
 */

export type AssignorName = 'range' | 'roundrobin' | 'sticky';
export const ASSIGNOR_NAMES: readonly AssignorName[] = ['range', 'roundrobin', 'sticky'];

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface AssignorMember {
  memberId: string;
  /** The topics the member is subscribed to (a pattern is resolved before assigning). */
  topics: readonly string[];
  /** The partitions it holds now; read by `sticky` only. */
  current?: readonly TopicPartition[];
}

/** Member id → its partitions, sorted by topic then partition. Every member has an entry. */
export type Assignment = Map<string, TopicPartition[]>;

/** Partition counts of the topics that exist; subscribed topics that do not are skipped. */
export type PartitionCounts = ReadonlyMap<string, number>;

export function assign(
  name: AssignorName,
  members: readonly AssignorMember[],
  partitions: PartitionCounts,
): Assignment {
  switch (name) {
    case 'range':
      return rangeAssign(members, partitions);
    case 'roundrobin':
      return roundRobinAssign(members, partitions);
    case 'sticky':
      return stickyAssign(members, partitions);
  }
}

const byId = (a: AssignorMember, b: AssignorMember): number => compareStrings(a.memberId, b.memberId);

/** Code-unit order, as Java's String.compareTo. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareTopicPartitions(a: TopicPartition, b: TopicPartition): number {
  return compareStrings(a.topic, b.topic) || a.partition - b.partition;
}

function emptyAssignment(members: readonly AssignorMember[]): Assignment {
  const out: Assignment = new Map();
  for (const m of members) out.set(m.memberId, []);
  return out;
}

function sortAll(out: Assignment): Assignment {
  for (const list of out.values()) list.sort(compareTopicPartitions);
  return out;
}

/** The topics some member subscribes to that exist, sorted. */
function subscribedTopics(members: readonly AssignorMember[], partitions: PartitionCounts): string[] {
  const topics = new Set<string>();
  for (const m of members) for (const t of m.topics) if ((partitions.get(t) ?? 0) > 0) topics.add(t);
  return [...topics].sort(compareStrings);
}

export function rangeAssign(members: readonly AssignorMember[], partitions: PartitionCounts): Assignment {
  const out = emptyAssignment(members);
  const sorted = [...members].sort(byId);
  for (const topic of subscribedTopics(members, partitions)) {
    const count = partitions.get(topic)!;
    const consumers = sorted.filter((m) => m.topics.includes(topic));
    const each = Math.floor(count / consumers.length);
    const extra = count % consumers.length;
    consumers.forEach((member, i) => {
      const start = each * i + Math.min(i, extra);
      const length = each + (i < extra ? 1 : 0);
      const list = out.get(member.memberId)!;
      for (let p = start; p < start + length; p++) list.push({ topic, partition: p });
    });
  }
  return sortAll(out);
}

export function roundRobinAssign(
  members: readonly AssignorMember[],
  partitions: PartitionCounts,
): Assignment {
  const out = emptyAssignment(members);
  const sorted = [...members].sort(byId);
  if (sorted.length === 0) return out;
  let next = 0;
  for (const topic of subscribedTopics(members, partitions)) {
    for (let p = 0; p < partitions.get(topic)!; p++) {
      // Some member subscribes to `topic`, so this loop ends within one turn of the circle.
      while (!sorted[next % sorted.length]!.topics.includes(topic)) next++;
      out.get(sorted[next % sorted.length]!.memberId)!.push({ topic, partition: p });
      next++;
    }
  }
  return out;
}

const keyOf = (tp: TopicPartition): string => `${tp.topic}\u0000${tp.partition}`;

/**
 * Sticky: every member first keeps its current partitions that still exist and that it still
 * subscribes to (a partition two members claim stays with the first in member id order). With one
 * subscription shared by all members, each member's quota is `floor(P / m)`, and the
 * `P % m` members holding the most keep one more: a member over its quota gives up only the
 * excess, which is the fewest moves any balanced assignment can make. The freed and unowned
 * partitions go, in (topic, partition) order, to the member furthest below its quota. With
 * differing subscriptions, free partitions go to the least loaded member subscribed, and then a
 * partition moves from a member to one subscribed with at least two fewer while such a move exists.
 */
export function stickyAssign(members: readonly AssignorMember[], partitions: PartitionCounts): Assignment {
  const out = emptyAssignment(members);
  const sorted = [...members].sort(byId);
  if (sorted.length === 0) return out;
  const exists = (tp: TopicPartition) => tp.partition >= 0 && tp.partition < (partitions.get(tp.topic) ?? 0);
  const owner = new Map<string, string>();
  for (const m of sorted) {
    for (const tp of m.current ?? []) {
      const key = keyOf(tp);
      if (!exists(tp) || !m.topics.includes(tp.topic) || owner.has(key)) continue;
      owner.set(key, m.memberId);
      out.get(m.memberId)!.push({ topic: tp.topic, partition: tp.partition });
    }
  }
  const all: TopicPartition[] = [];
  for (const topic of subscribedTopics(members, partitions))
    for (let p = 0; p < partitions.get(topic)!; p++) all.push({ topic, partition: p });
  const subscriptionKey = (m: AssignorMember) => [...new Set(m.topics)].sort(compareStrings).join('\u0000');
  const homogeneous = sorted.every((m) => subscriptionKey(m) === subscriptionKey(sorted[0]!));
  if (homogeneous) stickyHomogeneous(sorted, all, out, owner);
  else stickyGeneral(sorted, all, out, owner);
  return sortAll(out);
}

function stickyHomogeneous(
  sorted: readonly AssignorMember[],
  all: readonly TopicPartition[],
  out: Assignment,
  owner: Map<string, string>,
): void {
  const each = Math.floor(all.length / sorted.length);
  let extra = all.length % sorted.length;
  // The members holding the most keep one over the base quota (ties: member id order).
  const byHeld = [...sorted].sort(
    (a, b) => out.get(b.memberId)!.length - out.get(a.memberId)!.length || byId(a, b),
  );
  const quota = new Map<string, number>();
  for (const m of byHeld) {
    const held = out.get(m.memberId)!.length;
    const q = held > each && extra > 0 ? each + 1 : each;
    if (q > each) extra--;
    quota.set(m.memberId, q);
  }
  // Members with fewer than `each` held can still take the remaining +1 quotas.
  for (const m of byHeld) {
    if (extra === 0) break;
    if (quota.get(m.memberId) === each) {
      quota.set(m.memberId, each + 1);
      extra--;
    }
  }
  for (const m of sorted) {
    const list = out.get(m.memberId)!;
    list.sort(compareTopicPartitions);
    const q = quota.get(m.memberId)!;
    for (const tp of list.splice(q)) owner.delete(keyOf(tp));
  }
  for (const tp of all) {
    if (owner.has(keyOf(tp))) continue;
    let best: AssignorMember | undefined;
    let bestRoom = 0;
    for (const m of sorted) {
      const room = quota.get(m.memberId)! - out.get(m.memberId)!.length;
      if (room > bestRoom) {
        best = m;
        bestRoom = room;
      }
    }
    // The quotas add up to the partition count, so a member has room for every free partition.
    const taker = best!;
    out.get(taker.memberId)!.push(tp);
    owner.set(keyOf(tp), taker.memberId);
  }
}

function stickyGeneral(
  sorted: readonly AssignorMember[],
  all: readonly TopicPartition[],
  out: Assignment,
  owner: Map<string, string>,
): void {
  const load = (m: AssignorMember) => out.get(m.memberId)!.length;
  for (const tp of all) {
    if (owner.has(keyOf(tp))) continue;
    let best: AssignorMember | undefined;
    for (const m of sorted)
      if (m.topics.includes(tp.topic) && (best === undefined || load(m) < load(best))) best = m;
    out.get(best!.memberId)!.push(tp);
    owner.set(keyOf(tp), best!.memberId);
  }
  // Each move lowers the sum of squared loads by at least 2, so this ends.
  for (let moved = true; moved; ) {
    moved = false;
    const byLoad = [...sorted].sort((a, b) => load(b) - load(a) || byId(a, b));
    for (const from of byLoad) {
      const list = out.get(from.memberId)!;
      list.sort(compareTopicPartitions);
      for (let i = list.length - 1; i >= 0 && !moved; i--) {
        const tp = list[i]!;
        let to: AssignorMember | undefined;
        for (const m of sorted)
          if (
            m !== from &&
            m.topics.includes(tp.topic) &&
            load(m) + 1 < load(from) &&
            (to === undefined || load(m) < load(to))
          )
            to = m;
        if (to === undefined) continue;
        list.splice(i, 1);
        out.get(to.memberId)!.push(tp);
        owner.set(keyOf(tp), to.memberId);
        moved = true;
      }
      if (moved) break;
    }
  }
}
