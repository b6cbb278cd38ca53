import { expect } from 'vitest';
import { MetadataImage, replayAll } from '../../src/metadata/image.js';
import type { MetadataRecord, PartitionRecord } from '../../src/metadata/records.js';

/**
 * A metadata image built by replaying hand-written records (no controller), for the rule tests of
 * image.ts and reassignment.ts: brokers registered (and unfenced unless `fenced`), and one topic
 * per name with its partitions as given. Every record must apply.
 */

export const TOPIC_ID = 'AAAAAAAAAAAAAAAAAAAAAQ';

export interface BrokerSpec {
  id: number;
  rack?: string;
  fenced?: boolean;
}

export type PartitionSpec = Partial<Omit<PartitionRecord, 'type' | 'topicId'>> & {
  replicas: number[];
};

export interface TopicSpec {
  name: string;
  topicId: string;
  partitions: PartitionSpec[];
}

export function topicId(n: number): string {
  const bytes = Buffer.alloc(16);
  bytes.writeUInt32BE(n, 12);
  return bytes.toString('base64url');
}

export function partitionRecord(topicIdOf: string, partition: number, spec: PartitionSpec): PartitionRecord {
  const reassigning = spec.addingReplicas !== undefined || spec.removingReplicas !== undefined;
  return {
    type: 'partition',
    version: reassigning ? 1 : 0,
    topicId: topicIdOf,
    partition,
    isr: spec.isr ?? spec.replicas,
    leader: spec.leader ?? (spec.isr ?? spec.replicas)[0] ?? -1,
    leaderEpoch: spec.leaderEpoch ?? 0,
    partitionEpoch: spec.partitionEpoch ?? 0,
    ...spec,
    ...(reassigning
      ? { addingReplicas: spec.addingReplicas ?? [], removingReplicas: spec.removingReplicas ?? [] }
      : {}),
  };
}

export function buildImage(
  brokers: readonly BrokerSpec[],
  topics: readonly TopicSpec[] = [],
  metadataVersion = 2,
): MetadataImage {
  const records: MetadataRecord[] = [
    { type: 'clusterId', version: 0, clusterId: 'c' },
    { type: 'featureLevel', version: 0, name: 'metadata.version', level: metadataVersion },
  ];
  const epochs = new Map<number, number>();
  for (const b of brokers) {
    records.push({
      type: 'registerBroker',
      version: 0,
      brokerId: b.id,
      incarnationId: `i${b.id}`,
      endpoints: [{ name: 'public', host: '127.0.0.1', port: 9000 + b.id }],
      rack: b.rack ?? null,
    });
    epochs.set(b.id, records.length);
  }
  for (const b of brokers)
    if (!b.fenced)
      records.push({ type: 'unfenceBroker', version: 0, brokerId: b.id, brokerEpoch: epochs.get(b.id)! });
  for (const t of topics) {
    records.push({ type: 'topic', version: 0, name: t.name, topicId: t.topicId });
    t.partitions.forEach((spec, i) => {
      records.push(partitionRecord(t.topicId, i, spec));
    });
  }
  const delta = replayAll(
    MetadataImage.EMPTY,
    records.map((record, i) => ({ record, offset: i + 1 })),
  );
  expect(delta.ignored.map((i) => i.reason.message)).toEqual([]);
  return delta.after;
}

/** One topic `t` (id TOPIC_ID) with the given partitions. */
export function oneTopic(brokers: readonly BrokerSpec[], partitions: PartitionSpec[], metadataVersion = 2) {
  return buildImage(brokers, [{ name: 't', topicId: TOPIC_ID, partitions }], metadataVersion);
}
