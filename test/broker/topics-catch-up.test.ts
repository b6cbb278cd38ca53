import { describe, expect, it } from 'vitest';
import type { TopicRecord, TopicRegistry } from '../../src/broker/topic-registry.js';
import { Topics } from '../../src/broker/topics.js';
import type { ReplicaManager } from '../../src/replication/replica-manager.js';

/**
 * A node in a cluster may be asked about a topic created through another node a moment ago: it
 * catches up with the controller before answering that the topic does not exist, and only then.
 */

/** A registry that learns its topics from `pending` when the node catches up. */
function lagging(known: TopicRecord[], pending: TopicRecord[]) {
  const topics = new Map(known.map((t) => [t.name, t]));
  let catchUps = 0;
  const registry = {
    clusterId: 'c',
    list: () => [...topics.values()],
    get: (name: string) => topics.get(name),
    topicId: () => undefined,
    partitionRole: () => undefined,
    localPartitions: () => [],
    onChange: () => () => {},
    put: async () => {},
    remove: async () => {},
  } satisfies TopicRegistry;
  const catchUp = async () => {
    catchUps++;
    for (const t of pending) topics.set(t.name, t);
  };
  const service = new Topics({ defaultConfigs: {} }, { registry, replicas: {} as ReplicaManager, catchUp });
  return { service, catchUps: () => catchUps };
}

const topic = (name: string, partitions = 1): TopicRecord => ({
  name,
  partitions,
  replicationFactor: 1,
  configs: {},
});

describe('Topics catching up with the cluster', () => {
  it('does not catch up when every topic asked for is known', async () => {
    const { service, catchUps } = lagging([topic('a'), topic('b')], []);
    await service.catchUpUnless(['a', 'b']);
    await service.resolve('a', 0);
    expect(catchUps()).toBe(0);
  });

  it('catches up once when a topic asked for is not known, and then knows it', async () => {
    const { service, catchUps } = lagging([topic('a')], [topic('new')]);
    await service.catchUpUnless(['a', 'new']);
    expect(catchUps()).toBe(1);
    expect(service.find('new')?.name).toBe('new');
  });

  it('resolves a topic or a partition created elsewhere after catching up', async () => {
    const { service, catchUps } = lagging([topic('grown', 1)], [topic('grown', 3), topic('fresh')]);
    expect((await service.resolve('grown', 2)).partitions).toBe(3);
    expect((await service.resolve('fresh')).name).toBe('fresh');
    expect(catchUps()).toBe(1);
  });

  it('answers UNKNOWN_TOPIC_OR_PARTITION for a topic the cluster does not have either', async () => {
    const { service, catchUps } = lagging([], []);
    await expect(service.resolve('missing')).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC_OR_PARTITION' });
    expect(catchUps()).toBe(1);
  });

  it('catches up before refusing a partition placed on another node, and names the leader it has then', async () => {
    const topics = new Map([['moved', topic('moved')]]);
    let leader = 2;
    let catchUps = 0;
    const registry = {
      clusterId: 'c',
      list: () => [...topics.values()],
      get: (name: string) => topics.get(name),
      topicId: () => undefined,
      partitionRole: () => ({
        leader,
        leaderEpoch: leader,
        partitionEpoch: 0,
        replicas: [leader],
        isr: [leader],
      }),
      localPartitions: () => [],
      onChange: () => () => {},
      put: async () => {},
      remove: async () => {},
    } satisfies TopicRegistry;
    const service = new Topics(
      { defaultConfigs: {} },
      {
        registry,
        replicas: { nodeId: 1, get: () => undefined } as unknown as ReplicaManager,
        catchUp: async () => {
          catchUps++;
          leader = 3;
        },
      },
    );
    await expect(service.localReplica('moved', 0)).rejects.toMatchObject({
      code: 'NOT_LEADER_OR_FOLLOWER',
      details: { leader: 3 },
    });
    expect(catchUps).toBe(1);
  });
});
