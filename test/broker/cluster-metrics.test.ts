import { describe, expect, it } from 'vitest';
import { ClusterMetrics } from '../../src/broker/cluster-metrics.js';
import { MetadataImage } from '../../src/metadata/image.js';
import { PromMetricsRegistry } from '../../src/node/metrics.js';
import type { RaftStatus } from '../../src/raft/driver.js';

/** Leader changes of the metadata quorum, counted from the status the node samples. */
describe('sluice_metadata_leader_changes_total', () => {
  it('counts a new leader and a new term of the same leader, not a leaderless pause or a repeat', async () => {
    const registry = new PromMetricsRegistry();
    let status = {
      role: 'follower',
      term: 1,
      leaderId: null as number | null,
      followers: [],
      commitIndex: 0,
      appliedIndex: 0,
    };
    const metrics = new ClusterMetrics({
      metrics: registry,
      status: () => status as unknown as RaftStatus,
      image: () => MetadataImage.EMPTY,
      controllerActive: () => false,
    });
    const changes = async () =>
      Number(/^sluice_metadata_leader_changes_total (\d+)$/m.exec(await registry.render())?.[1]);
    const sequence: [number, number | null, number][] = [
      [1, null, 0], // no leader yet
      [1, 2, 1], // the first leader
      [1, 2, 1], // the same, again
      [2, null, 1], // an election under way
      [2, 3, 2], // another node leads
      [3, 3, 3], // the same node, elected again at a new term
      [3, 3, 3],
    ];
    for (const [term, leaderId, expected] of sequence) {
      status = { role: 'follower', term, leaderId, followers: [], commitIndex: 0, appliedIndex: 0 };
      metrics.observeLeader();
      expect(await changes(), `term ${term}, leader ${leaderId}`).toBe(expected);
    }
  });
});
