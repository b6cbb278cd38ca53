import { describe, expect, it } from 'vitest';
import { PersistentMap, replay, replayAll } from '../../src/metadata/image.js';
import { cancellation, completion, decommissionTargets } from '../../src/metadata/reassignment.js';
import type { MetadataRecord } from '../../src/metadata/records.js';
import { buildImage, oneTopic, TOPIC_ID, topicId } from './rules-image.js';

/**
 * Orders and names that only unusual inputs reach: the delta's partitions ordered by topic id
 * before partition number (partition numbers that disagree with the topic order); a topic named
 * `undefined` kept apart from the broker defaults; a decommission whose partition names a broker
 * that has unregistered since; strings hashed by their characters (no two topic ids of 4,000 share
 * a hash); the leader rules of a leaderless completion or cancellation (no one is elected) and
 * of a cancellation that keeps the leader although it is not the first in-sync replica; the
 * decommission plan counting the replicas it has planned onto a loaded broker.
 */

describe('orders', () => {
  it('lists changed partitions by topic id, then partition, whatever the partition numbers', () => {
    const T = topicId(1);
    const U = topicId(2);
    const image = buildImage(
      [{ id: 1 }, { id: 2 }],
      [
        { name: 'b', topicId: U, partitions: [{ replicas: [1, 2] }] },
        {
          name: 'a',
          topicId: T,
          partitions: [
            { replicas: [1, 2] },
            { replicas: [1, 2] },
            { replicas: [1, 2] },
            { replicas: [1, 2] },
          ],
        },
      ],
    );
    const change = (id: string, partition: number): MetadataRecord => ({
      type: 'partitionChange',
      version: 0,
      topicId: id,
      partition,
      isr: [1],
    });
    const delta = replayAll(
      image,
      [change(U, 0), change(T, 3), change(T, 1)].map((record, i) => ({
        record,
        offset: image.lastOffset + 1 + i,
      })),
    );
    expect(delta.partitionsChanged.map((p) => `${p.topicName}-${p.partition}`)).toEqual([
      'a-1',
      'a-3',
      'b-0',
    ]);
  });

  it('keeps the configs of a topic named `undefined` apart from the broker defaults', () => {
    const image = buildImage([{ id: 1 }], [{ name: 'undefined', topicId: topicId(1), partitions: [] }]);
    const delta = replayAll(
      image,
      [
        { type: 'config', version: 0, resource: { type: 'brokerDefaults' }, name: 'a', value: '1' },
        { type: 'config', version: 0, resource: { type: 'topic', name: 'undefined' }, name: 'a', value: '2' },
      ].map((record, i) => ({ record: record as MetadataRecord, offset: image.lastOffset + 1 + i })),
    );
    expect(delta.configsChanged.map((r) => r.type).sort()).toEqual(['brokerDefaults', 'topic']);
  });
});

describe('a decommission over a broker that has gone', () => {
  it('counts an unregistered replica as a rack of its own, and moves the decommissioned one', () => {
    const image = buildImage(
      [{ id: 1 }, { id: 2 }, { id: 3 }],
      [{ name: 't', topicId: topicId(1), partitions: [{ replicas: [1, 2] }] }],
    );
    const gone = replay(
      image,
      { type: 'unregisterBroker', version: 0, brokerId: 2, brokerEpoch: image.broker(2)!.brokerEpoch },
      image.lastOffset + 1,
    );
    expect(decommissionTargets(gone, 1).map((p) => p.replicas)).toEqual([[3, 2]]);
  });
});

describe('string keys', () => {
  it('hashes strings by every character: 4,000 topic ids, no collision node', () => {
    let map = PersistentMap.empty<string, number>();
    for (let i = 0; i < 4000; i++) map = map.set(topicId(i), i);
    const collisions = (node: { kind: string; children?: unknown[] } | undefined): number =>
      node === undefined
        ? 0
        : node.kind === 'collision'
          ? 1
          : (node.children ?? []).reduce<number>((n, c) => n + collisions(c as { kind: string }), 0);
    expect(collisions((map as unknown as { root: { kind: string } }).root)).toBe(0);
    expect(map.get(topicId(17))).toBe(17);
  });
});

describe('leaders of a completion and a cancellation', () => {
  it('a leaderless partition whose target has no replica in sync does not complete (it would have an empty in-sync set)', () => {
    const image = oneTopic(
      [{ id: 1, fenced: true }, { id: 2 }, { id: 3 }],
      [{ replicas: [3, 1, 2], isr: [1], leader: -1, addingReplicas: [], removingReplicas: [1, 2] }],
    );
    expect(completion(image, image.partition(TOPIC_ID, 0)!)).toBeUndefined();
  });

  it('a cancellation keeps an original leader that is not the first in-sync replica, and elects no one for a leaderless partition', () => {
    const led = oneTopic(
      [{ id: 1 }, { id: 2 }, { id: 4 }],
      [{ replicas: [4, 1, 2], isr: [1, 2], leader: 2, addingReplicas: [4], removingReplicas: [1] }],
    );
    expect(cancellation(led, led.partition(TOPIC_ID, 0)!, 't')).not.toHaveProperty('leader');
    const leaderless = oneTopic(
      [{ id: 1 }, { id: 2 }, { id: 4 }],
      [{ replicas: [4, 1, 2], isr: [1, 2], leader: -1, addingReplicas: [4], removingReplicas: [1] }],
    );
    expect(cancellation(leaderless, leaderless.partition(TOPIC_ID, 0)!, 't')).not.toHaveProperty('leader');
  });

  it('a cancelled adding leader passes over an in-sync broker that has unregistered', () => {
    const image = oneTopic(
      [{ id: 2 }, { id: 4 }, { id: 6 }],
      [{ replicas: [4, 6, 2], isr: [4, 6, 2], leader: 4, addingReplicas: [4], removingReplicas: [6] }],
    );
    // Not complete only because of the order of events: 4 is in sync; build the state by hand.
    const p = { ...image.partition(TOPIC_ID, 0)! };
    const gone = replay(
      image,
      { type: 'unregisterBroker', version: 0, brokerId: 6, brokerEpoch: image.broker(6)!.brokerEpoch },
      image.lastOffset + 1,
    );
    expect(cancellation(gone, p, 't')).toMatchObject({ leader: 2, isr: [6, 2], replicas: [6, 2] });
  });
});

describe('the decommission plan over loaded brokers', () => {
  it('adds each planned move to the load the broker had', () => {
    const image = buildImage(
      [{ id: 1 }, { id: 2 }, { id: 3 }],
      [
        { name: 't', topicId: topicId(1), partitions: [{ replicas: [1] }, { replicas: [1] }] },
        { name: 'u', topicId: topicId(2), partitions: [{ replicas: [2, 3] }, { replicas: [2, 3] }] },
      ],
    );
    // 2 and 3 hold two each: 2 (lower id) takes the first, then holds three; 3 takes the second.
    expect(decommissionTargets(image, 1).map((p) => p.replicas)).toEqual([[2], [3]]);
  });
});
