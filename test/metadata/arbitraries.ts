import fc from 'fast-check';
import type {
  ConfigResource,
  Endpoint,
  MetadataRecord,
  PartitionChangeRecord,
} from '../../src/metadata/records.js';
import { topicIdFromBytes } from '../../src/metadata/records.js';

/** fast-check generators of metadata records: every field over its whole valid range. */

export const brokerId = fc.integer({ min: 0, max: 2 ** 31 - 1 });
export const uint = fc.oneof(fc.nat(1000), fc.maxSafeNat());
export const label = fc.string({ minLength: 1, maxLength: 30, unit: 'grapheme' });
export const topicId = fc
  .uint8Array({ minLength: 16, maxLength: 16 })
  .filter((b) => b.some((x) => x !== 0))
  .map(topicIdFromBytes);
export const topicName = fc.string({ minLength: 1, maxLength: 249, unit: 'grapheme-ascii' });
const brokerList = (minLength: number) =>
  fc.uniqueArray(fc.oneof(fc.nat(20), brokerId), { minLength, maxLength: 8 });

const endpoint: fc.Arbitrary<Endpoint> = fc.record({
  name: label,
  host: label,
  port: fc.integer({ min: 1, max: 65_535 }),
});

const resource: fc.Arbitrary<ConfigResource> = fc.oneof(
  topicName.map((name) => ({ type: 'topic' as const, name })),
  fc.constant({ type: 'brokerDefaults' as const }),
);

const partitionChange: fc.Arbitrary<PartitionChangeRecord> = fc
  .record(
    {
      topicId,
      partition: fc.integer({ min: 0, max: 9_999 }),
      leader: fc.integer({ min: -1, max: 2 ** 31 - 1 }),
      isr: brokerList(0),
      replicas: brokerList(1),
    },
    { requiredKeys: ['topicId', 'partition'] },
  )
  .filter((c) => c.leader !== undefined || c.isr !== undefined || c.replicas !== undefined)
  .map((c) => ({ type: 'partitionChange' as const, version: 0 as const, ...c }));

/** Version 2: any field may be absent, the eligible leader replicas among them. */
const partitionChangeV2: fc.Arbitrary<PartitionChangeRecord> = fc
  .record(
    {
      topicId,
      partition: fc.integer({ min: 0, max: 9_999 }),
      leader: fc.integer({ min: -1, max: 2 ** 31 - 1 }),
      isr: brokerList(0),
      replicas: brokerList(1),
      addingReplicas: brokerList(0),
      removingReplicas: brokerList(0),
      elr: brokerList(0),
    },
    { requiredKeys: ['topicId', 'partition'] },
  )
  .filter((c) => Object.keys(c).length > 2)
  .map((c) => ({ type: 'partitionChange' as const, version: 2 as const, ...c }));

/** Any record that passes checkRecord (not necessarily one that makes sense against an image). */
export const anyRecord: fc.Arbitrary<MetadataRecord> = fc.oneof(
  label.map((clusterId) => ({ type: 'clusterId' as const, version: 0 as const, clusterId })),
  fc.constant({
    type: 'featureLevel' as const,
    version: 0 as const,
    name: 'metadata.version' as const,
    level: 1,
  }),
  fc.record({
    type: fc.constant('registerBroker' as const),
    version: fc.constant(0 as const),
    brokerId,
    incarnationId: label,
    endpoints: fc.uniqueArray(endpoint, { maxLength: 4, selector: (e) => e.name }),
    rack: fc.option(label, { nil: null }),
  }),
  ...(['unregisterBroker', 'fenceBroker', 'unfenceBroker'] as const).map((type) =>
    fc.record({ type: fc.constant(type), version: fc.constant(0 as const), brokerId, brokerEpoch: uint }),
  ),
  fc.record({
    type: fc.constant('topic' as const),
    version: fc.constant(0 as const),
    name: topicName,
    topicId,
  }),
  fc.record({
    type: fc.constant('partition' as const),
    version: fc.constant(0 as const),
    topicId,
    partition: fc.integer({ min: 0, max: 9_999 }),
    replicas: brokerList(1),
    isr: brokerList(0),
    leader: fc.integer({ min: -1, max: 2 ** 31 - 1 }),
    leaderEpoch: uint,
    partitionEpoch: uint,
  }),
  partitionChange,
  partitionChangeV2,
  fc.record({
    type: fc.constant('config' as const),
    version: fc.constant(0 as const),
    resource,
    name: label,
    value: fc.option(fc.string({ maxLength: 100 }), { nil: null }),
  }),
  fc.record({
    type: fc.constant('producerIdBlock' as const),
    version: fc.constant(0 as const),
    brokerId,
    firstProducerId: uint,
    size: fc.integer({ min: 1, max: 1_000_000 }),
  }),
  fc.record({ type: fc.constant('removeTopic' as const), version: fc.constant(0 as const), topicId }),
);
