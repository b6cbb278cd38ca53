import { SluiceError } from '../common/errors.js';
import { murmur2, toPositive } from '../common/murmur2.js';
import type { BatchRecord } from '../protocol/batch.js';
import { packr, unpackr } from '../protocol/msgpack.js';
import type { GroupCoordinator, GroupRecord, GroupSnapshot } from './coordinator.js';

/**
 * Groups' state in the internal topic `__consumer_offsets`: one record per committed offset and one
 * per group (its membership and assignment), keyed so that compaction keeps the newest of each and
 * a null value (a tombstone) deletes it. A group lives in partition `murmur2(groupId) % n`, and
 * the leader of that partition is the group's coordinator; a new leader replays the partition
 * before it answers for its groups.
 *
 * Record layout (msgpack):
 *   key   [1, "o", group, topic, partition]   value {offset, metadata, commitTimestampMs} | null
 *   key   [1, "g", group]                     value GroupSnapshot | null
 * The leading 1 is the layout version; a key of another version is skipped by this release.
 */

export const OFFSETS_TOPIC = '__consumer_offsets';
export const OFFSETS_TOPIC_PARTITIONS_DEFAULT = 50;
const LAYOUT_VERSION = 1;

/** The partition of the offsets topic that holds a group (and whose leader coordinates it). */
export function offsetsPartitionFor(groupId: string, partitions: number): number {
  return toPositive(murmur2(Buffer.from(groupId, 'utf8'))) % partitions;
}

export function encodeGroupRecord(record: GroupRecord): { key: Buffer; value: Buffer | null } {
  if (record.kind === 'offset') {
    return {
      key: packr.pack([LAYOUT_VERSION, 'o', record.group, record.topic, record.partition]),
      value: record.value === null ? null : packr.pack(record.value),
    };
  }
  return {
    key: packr.pack([LAYOUT_VERSION, 'g', record.group]),
    value: record.value === null ? null : packr.pack(record.value),
  };
}

/** The group record a stored record holds; undefined for a key of another layout version. */
export function decodeGroupRecord(key: Uint8Array | null, value: Uint8Array | null): GroupRecord | undefined {
  if (key === null) throw new SluiceError('CORRUPT_MESSAGE', `a record of ${OFFSETS_TOPIC} without a key`);
  const k = unpackr.unpack(key) as unknown[];
  if (!Array.isArray(k) || k[0] !== LAYOUT_VERSION) return undefined;
  const body = value === null ? null : unpackr.unpack(value);
  if (k[1] === 'o' && typeof k[2] === 'string' && typeof k[3] === 'string' && typeof k[4] === 'number')
    return {
      kind: 'offset',
      group: k[2],
      topic: k[3],
      partition: k[4],
      value: body as { offset: number; metadata: string; commitTimestampMs: number } | null,
    };
  if (k[1] === 'g' && typeof k[2] === 'string')
    return { kind: 'group', group: k[2], value: body as GroupSnapshot | null };
  throw new SluiceError('CORRUPT_MESSAGE', `a record of ${OFFSETS_TOPIC} with an unknown key`);
}

/** Replays a partition's records, in offset order, into a coordinator. */
export function replayInto(coordinator: GroupCoordinator, records: Iterable<BatchRecord>): number {
  let applied = 0;
  for (const r of records) {
    const record = decodeGroupRecord(r.key, r.value);
    if (record === undefined) continue;
    coordinator.apply(record);
    applied++;
  }
  return applied;
}
