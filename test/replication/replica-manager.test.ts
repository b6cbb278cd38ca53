import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { DEFAULT_LOG_CONFIG } from '../../src/protocol/topic-config.js';
import { ReplicaManager } from '../../src/replication/replica-manager.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';

/**
 * A replica opened with the role the metadata records keeps all of it: its partition epoch fences
 * the leader's in-sync set changes, so a replica opened at epoch 0 (after a restart, the role at 11)
 * had every change refused as stale and its in-sync set never grew back (the fault test, seed
 * 134942706: the cluster did not converge).
 */
describe('ReplicaManager', () => {
  it("opens a replica at the role's partition epoch, and keeps it current", async () => {
    const logs = await LogManager.open(
      { dataDir: '/d' },
      { fs: new SimulatedFileSystem(), clock: new ManualClock(0) },
    );
    const replicas = new ReplicaManager({ nodeId: 2 }, { logs });
    const role = { leader: 2, leaderEpoch: 4, partitionEpoch: 11, replicas: [2, 1, 3], isr: [2] };
    const replica = await replicas.getOrCreate('t', 0, DEFAULT_LOG_CONFIG, role);
    expect(replica.partitionEpoch).toBe(11);
    expect(replica.leaderEpoch).toBe(4);
    await replicas.getOrCreate('t', 0, DEFAULT_LOG_CONFIG, { ...role, partitionEpoch: 12, isr: [2, 1] });
    expect(replica.partitionEpoch).toBe(12);
    await logs.close();
  });
});
