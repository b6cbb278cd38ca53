import { describe, expect, it } from 'vitest';
import { clusterHealth, describeCluster } from '../../src/cli/cluster.js';
import type { ClusterResponse } from '../../src/protocol/api.js';

/** `sluice cluster describe` in text: one row per node in id order, the controller marked, the quorum last. */

const THREE_NODES: ClusterResponse = {
  clusterId: 'c-1',
  nodeId: 3,
  version: '0.1.0',
  controllerId: 2,
  nodes: [
    { id: 3, host: '::1', port: 8094, rack: null, fenced: true, brokerEpoch: 4096 },
    { id: 1, host: '10.0.0.1', port: 8092, rack: 'eu-1a', fenced: false, brokerEpoch: 196608 },
    { id: 2, host: 'broker-2.example', port: 8093, rack: 'eu-1b', fenced: false, brokerEpoch: 200000 },
  ],
  metadata: {
    role: 'follower',
    term: 7,
    commitIndex: 40,
    appliedIndex: 39,
    voters: [1, 2, 3],
    lastOffset: 1,
    lastIndex: 40,
    followers: [{ id: 1, matchIndex: 38, lag: 2 }],
  },
};

describe('sluice cluster describe', () => {
  it('prints every node with its address, rack, fencing, broker epoch and the controller, then the quorum', () => {
    expect(describeCluster(THREE_NODES)).toEqual([
      'cluster c-1  answered by node 3 (sluice 0.1.0)',
      'NODE  ADDRESS                RACK   FENCED  BROKER EPOCH  CONTROLLER',
      '1     10.0.0.1:8092          eu-1a  no      196608',
      '2     broker-2.example:8093  eu-1b  no      200000        yes',
      '3     [::1]:8094             -      yes     4096',
      'metadata quorum (as node 3 sees it)  role=follower  term=7  commitIndex=40  appliedIndex=39  voters=1,2,3',
      '  voter 1  matchIndex=38  lag=2',
    ]);
  });

  it('says when there is no controller, when the controller is no registered broker, and when the quorum is not reported', () => {
    const leaderless = describeCluster({ ...THREE_NODES, controllerId: null, metadata: undefined });
    expect(leaderless).toContain('no controller: the metadata quorum has no leader');
    expect(leaderless.at(-1)).toBe('metadata quorum: node 3 does not report it');
    expect(leaderless.join('\n')).not.toContain('yes        ');
    expect(describeCluster({ ...THREE_NODES, controllerId: 9 })).toContain(
      'controller: node 9 (not a registered broker)',
    );
    const bare = describeCluster({
      ...THREE_NODES,
      nodes: [{ id: 1, host: '127.0.0.1', port: 8092 }],
      controllerId: 1,
    });
    expect(bare[2]).toBe('1     127.0.0.1:8092  -     -       -             yes');
  });
});

describe('sluice cluster describe with roles and every voter’s status', () => {
  const withQuorum: ClusterResponse = {
    ...THREE_NODES,
    nodeId: 4,
    controllerId: 1,
    nodes: [
      { id: 1, host: '10.0.1.1', port: 9093, roles: ['controller'] },
      { id: 4, host: '10.0.0.4', port: 8092, rack: null, fenced: false, brokerEpoch: 12, roles: ['broker'] },
    ],
    metadata: {
      ...THREE_NODES.metadata!,
      role: 'learner',
      voters: [1, 2],
      quorum: {
        source: 'controller',
        controllerId: 1,
        voters: [
          {
            id: 1,
            reachable: true,
            role: 'leader',
            term: 7,
            commitIndex: 40,
            appliedIndex: 40,
            lastIndex: 41,
            matchIndex: 41,
            lag: 0,
          },
          { id: 2, reachable: false, matchIndex: 30, lag: 11 },
        ],
      },
    },
  };

  it('adds a roles column and one line per voter, saying whose counts they are', () => {
    const lines = describeCluster(withQuorum);
    expect(lines.slice(1, 4)).toEqual([
      'NODE  ADDRESS        RACK  FENCED  BROKER EPOCH  CONTROLLER  ROLES',
      '1     10.0.1.1:9093  -     -       -             yes         controller',
      '4     10.0.0.4:8092  -     no      12                        broker',
    ]);
    expect(lines.slice(-3)).toEqual([
      'voters (match index and lag as controller 1 counts them):',
      '  voter 1  role=leader  term=7  commitIndex=40  appliedIndex=40  matchIndex=41  lag=0',
      '  voter 2  did not answer  matchIndex=30  lag=11',
    ]);
    const local = describeCluster({
      ...withQuorum,
      metadata: {
        ...withQuorum.metadata!,
        quorum: {
          source: 'local',
          controllerId: null,
          voters: [{ id: 2, reachable: true, term: 8, lag: 3 }],
        },
      },
    });
    expect(local.slice(-2)).toEqual([
      'voters (no controller answered: lag behind the longest log heard of, match index unknown):',
      '  voter 2  role=-  term=8  commitIndex=-  appliedIndex=-  matchIndex=-  lag=3',
    ]);
  });
});

describe('sluice cluster health', () => {
  const base = {
    clusterId: 'c-1',
    controllerId: 1 as number | null,
    nodes: [
      { id: 1, host: 'a', port: 1, rack: null, fenced: false },
      { id: 2, host: 'b', port: 2, rack: null, fenced: false },
    ],
    topics: [
      {
        name: 't',
        topicId: 'x',
        partitions: [{ partition: 0, leader: 1, leaderEpoch: 0, replicas: [1, 2], isr: [1, 2] }],
      },
    ],
    unknownTopics: [],
  };

  it('says healthy with one line when every partition is led and fully in sync', () => {
    expect(clusterHealth(base)).toEqual([
      'healthy: 2 brokers, controller 1, 1 partitions, 0 under-replicated, 0 without a leader',
    ]);
  });

  it('names each fenced broker, under-replicated and leaderless partition, and a missing controller', () => {
    const lines = clusterHealth({
      ...base,
      controllerId: null,
      nodes: [base.nodes[0]!, { ...base.nodes[1]!, fenced: true }],
      topics: [
        {
          name: 't',
          topicId: 'x',
          partitions: [
            { partition: 0, leader: 1, leaderEpoch: 1, replicas: [1, 2], isr: [1] },
            { partition: 1, leader: -1, leaderEpoch: 2, replicas: [2], isr: [2] },
          ],
        },
      ],
    });
    expect(lines).toEqual([
      'unhealthy: 2 brokers, no controller, 2 partitions, 1 under-replicated, 1 without a leader',
      'broker 2 is fenced',
      't/0 is under-replicated: 2 not in sync (leader 1)',
      't/1 has no leader (replicas 2, in sync 2)',
      'the metadata quorum has no leader',
    ]);
  });
});
