import { describe, expect, it } from 'vitest';
import { ControllerService, type MetadataQuorum } from '../../src/broker/controller-service.js';
import { ManualClock } from '../../src/common/clock.js';
import { noopLogger } from '../../src/common/logger.js';
import { SeededRandom } from '../../src/common/random.js';
import { Controller } from '../../src/metadata/controller.js';
import { MetadataImage, replay } from '../../src/metadata/image.js';
import type { MetadataLog } from '../../src/metadata/metadata-log.js';
import {
  METADATA_VERSION_FEATURE,
  METADATA_VERSION_MAX,
  type MetadataRecord,
} from '../../src/metadata/records.js';
import type { RaftStatus } from '../../src/raft/driver.js';

/**
 * The first controller of a cluster commits its bootstrap records (cluster id, metadata.version)
 * before deciding anything. When that proposal fails (refused, timed out) while the node keeps
 * leading the same term, the next command must bootstrap again rather than decide on an image
 * without them (it did: a reassignment was refused UNSUPPORTED_VERSION at level 0; the metadata
 * simulation's seeds 5254, 5503, 5639 and 5826 showed it).
 */
describe('ControllerService bootstrap', () => {
  it('retries the bootstrap after a failed proposal instead of deciding on an empty image', async () => {
    let image = MetadataImage.EMPTY;
    let failNext = true;
    const proposed: MetadataRecord[][] = [];
    const log = {
      get image() {
        return image;
      },
      barrier: async () => {},
      propose: async (records: MetadataRecord[]) => {
        if (failNext) {
          failNext = false;
          throw new Error('the proposal timed out');
        }
        proposed.push(records);
        // One Raft entry holds the proposal's records; the image reaches its index.
        const offset = image.lastOffset + 1;
        for (const record of records) image = replay(image, record, offset);
        return image.lastOffset;
      },
      waitFor: async () => true,
    } as unknown as MetadataLog;
    const quorum: MetadataQuorum = {
      status: () => ({ role: 'leader', term: 3, leaderId: 1 }) as unknown as RaftStatus,
      addVoter: async () => {},
      removeVoter: async () => {},
      addLearner: async () => {},
    };
    const clock = new ManualClock(0);
    const service = new ControllerService(
      {
        nodeId: 1,
        urlOf: () => undefined,
        tickMs: 50,
        submitTimeoutMs: 1000,
        bootstrapRecords: () => [
          { type: 'clusterId', version: 0, clusterId: 'c-1' },
          { type: 'featureLevel', version: 0, name: METADATA_VERSION_FEATURE, level: METADATA_VERSION_MAX },
        ],
      },
      {
        log,
        controller: new Controller({ sessionTimeoutMs: 1000 } as never, {
          clock,
          random: new SeededRandom(1),
        }),
        quorum,
        clock,
        logger: noopLogger,
      },
    );
    await expect(service.execute({ type: 'readIndex' })).rejects.toThrow(/timed out/);
    expect(image.clusterId).toBeNull();
    await service.execute({ type: 'readIndex' });
    expect(image.clusterId).toBe('c-1');
    expect(proposed[0]!.map((r) => r.type)).toEqual(['clusterId', 'featureLevel']);
  });
});
