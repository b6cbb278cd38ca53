import { describe, expect, it } from 'vitest';
import { replay, replayAll } from '../../src/metadata/image.js';
import { decommissionTargets } from '../../src/metadata/reassignment.js';
import type { MetadataRecord } from '../../src/metadata/records.js';
import { buildImage, topicId } from './rules-image.js';

/**
 * Orders and names that only unusual inputs reach: the delta's partitions ordered by topic id
 * before partition number (partition numbers that disagree with the topic order); a topic named
 * `undefined` kept apart from the broker defaults; a decommission whose partition names a broker
 * that has unregistered since.
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
