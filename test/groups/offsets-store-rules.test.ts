import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { isSluiceError } from '../../src/common/errors.js';
import { partitionForKey } from '../../src/common/murmur2.js';
import { GroupCoordinator, type GroupRecord, type GroupSnapshot } from '../../src/groups/coordinator.js';
import {
  decodeGroupRecord,
  encodeGroupRecord,
  OFFSETS_TOPIC,
  offsetsPartitionFor,
  replayInto,
} from '../../src/groups/offsets-store.js';
import type { BatchRecord } from '../../src/protocol/batch.js';
import { packr, unpackr } from '../../src/protocol/msgpack.js';

/**
 * The rules of the `__consumer_offsets` record layout (src/groups/offsets-store.ts), each on its
 * own: a group's partition is its id's key partition (what every node computes alike, release
 * after release); the key layout is `[1, "o", group, topic, partition]` or `[1, "g", group]` so that
 * compaction keeps the newest record of each offset and each group; a null value is a tombstone
 * both ways; a key of another layout version is skipped, a key that is no layout at all is
 * CORRUPT_MESSAGE; replay applies records in order and counts the ones applied.
 */

const snapshot: GroupSnapshot = {
  groupEpoch: 3,
  assignor: 'range',
  emptySinceMs: null,
  members: [
    {
      memberId: 'm1',
      instanceId: null,
      topics: ['t'],
      pattern: null,
      sessionTimeoutMs: 10_000,
      autoOffsetReset: 'earliest',
      memberEpoch: 3,
      assigned: [{ topic: 't', partition: 0 }],
      revoking: [],
    },
  ],
};
const offset: GroupRecord = {
  kind: 'offset',
  group: 'g',
  topic: 't',
  partition: 2,
  value: { offset: 41, metadata: 'x', commitTimestampMs: 5 },
};

function corruptCode(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (isSluiceError(error, 'CORRUPT_MESSAGE')) return error.message;
    throw error;
  }
  throw new Error('expected CORRUPT_MESSAGE, the record was accepted');
}

let nextOffset = 0;
const asRecord = (key: Uint8Array | null, value: Uint8Array | null): BatchRecord => ({
  offset: nextOffset++,
  timestamp: 0,
  key,
  value,
  headers: [],
});

function coordinator(): GroupCoordinator {
  return new GroupCoordinator(
    {},
    {
      clock: new ManualClock(),
      topics: { partitionCount: () => 8, topicNames: () => ['t'] },
      newMemberId: () => 'new',
    },
  );
}

describe('the group partition', () => {
  it('is the partition the default partitioner gives the group id as a key, for any count', () => {
    for (const group of ['', 'g', 'orders', 'payments-eu', 'grüße', 'a-little-bit-long-string'])
      for (const n of [1, 3, 7, 50, 1000])
        expect(offsetsPartitionFor(group, n)).toBe(partitionForKey(Buffer.from(group, 'utf8'), n));
  });

  it('is murmur2 of the UTF-8 id made positive by masking, not by abs (a negative hash is common)', () => {
    // murmur2("foobar") is -790332482 (Kafka's value): masked, 1357151166; abs, 790332482.
    expect(offsetsPartitionFor('foobar', 50)).toBe((-790332482 & 0x7fffffff) % 50);
    expect(offsetsPartitionFor('foobar', 1_000_000)).toBe(1357151166 % 1_000_000);
  });
});

describe('the key layout', () => {
  it('keys an offset by [1, "o", group, topic, partition] and a group by [1, "g", group]', () => {
    expect(unpackr.unpack(encodeGroupRecord(offset).key)).toEqual([1, 'o', 'g', 't', 2]);
    const group = encodeGroupRecord({ kind: 'group', group: 'g', value: snapshot });
    expect(unpackr.unpack(group.key)).toEqual([1, 'g', 'g']);
    expect(unpackr.unpack(group.value!)).toEqual(snapshot);
    expect(unpackr.unpack(encodeGroupRecord(offset).value!)).toEqual(offset.value);
  });

  it('round-trips offsets and groups, and a null value as a tombstone of either', () => {
    const records: GroupRecord[] = [
      offset,
      { ...offset, value: null },
      { kind: 'group', group: 'g', value: snapshot },
      { kind: 'group', group: 'g', value: null },
    ];
    for (const record of records) {
      const { key, value } = encodeGroupRecord(record);
      if (record.value === null) expect(value).toBeNull();
      expect(decodeGroupRecord(key, value)).toEqual(record);
    }
  });

  it('skips a key of another layout version, and of no version at all', () => {
    expect(decodeGroupRecord(packr.pack([2, 'o', 'g', 't', 0]), null)).toBeUndefined();
    expect(decodeGroupRecord(packr.pack([0, 'g', 'g']), null)).toBeUndefined();
    expect(decodeGroupRecord(packr.pack({ version: 1 }), null)).toBeUndefined();
    expect(decodeGroupRecord(packr.pack('g'), null)).toBeUndefined();
  });

  it('refuses a record without a key, and a version-1 key of no known kind or with fields of the wrong type', () => {
    expect(corruptCode(() => decodeGroupRecord(null, packr.pack(1)))).toContain(OFFSETS_TOPIC);
    for (const key of [
      [1, 'x', 'g'],
      [1, 'o', 'g', 't', '0'],
      [1, 'o', 'g', 5, 0],
      [1, 'o', 7, 't', 0],
      [1, 'g', 7],
    ])
      expect(corruptCode(() => decodeGroupRecord(packr.pack(key), null))).toContain('unknown key');
  });
  it('the kind decides the record: a group key with trailing fields is still a group', () => {
    expect(decodeGroupRecord(packr.pack([1, 'g', 'g', 't', 0]), null)).toEqual({
      kind: 'group',
      group: 'g',
      value: null,
    });
  });
});

describe('replay', () => {
  it('applies records in offset order (the last of a key wins), skips other versions, and counts what it applied', () => {
    const target = coordinator();
    const first = encodeGroupRecord(offset);
    const second = encodeGroupRecord({
      ...offset,
      value: { offset: 99, metadata: '', commitTimestampMs: 6 },
    });
    const applied = replayInto(target, [
      asRecord(first.key, first.value),
      asRecord(packr.pack([2, 'o', 'g', 't', 2]), packr.pack({ offset: 5 })),
      asRecord(second.key, second.value),
    ]);
    expect(applied).toBe(2);
    expect(target.describe('g').offsets).toEqual([
      { topic: 't', partition: 2, offset: 99, metadata: '', commitTimestampMs: 6 },
    ]);
  });

  it('a tombstone after an offset removes it; a group tombstone removes the group', () => {
    const target = coordinator();
    const live = encodeGroupRecord(offset);
    const dead = encodeGroupRecord({ ...offset, value: null });
    const group = encodeGroupRecord({ kind: 'group', group: 'h', value: { ...snapshot, members: [] } });
    const gone = encodeGroupRecord({ kind: 'group', group: 'h', value: null });
    expect(
      replayInto(target, [
        asRecord(live.key, live.value),
        asRecord(dead.key, dead.value),
        asRecord(group.key, group.value),
      ]),
    ).toBe(3);
    expect(target.describe('g').offsets).toEqual([]);
    expect(target.describe('h').groupEpoch).toBe(3);
    replayInto(target, [asRecord(gone.key, gone.value)]);
    expect(target.has('h')).toBe(false);
  });
});
