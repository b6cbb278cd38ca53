import { describe, expect, it } from 'vitest';
import { FileTopicRegistry, type TopicRecord } from '../../src/broker/topic-registry.js';
import { SluiceError } from '../../src/common/errors.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';

/** The single-node topic registry: one JSON file replaced atomically, a stable cluster id. */
class FlakyFileSystem extends SimulatedFileSystem {
  failNextWrite = false;
  override async writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
    if (this.failNextWrite) {
      this.failNextWrite = false;
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    }
    return super.writeFileAtomic(path, data);
  }
}

const topic = (name: string, partitions = 1): TopicRecord => ({
  name,
  partitions,
  replicationFactor: 1,
  configs: {},
});

describe('FileTopicRegistry', () => {
  it('keeps its cluster id and topics across reopen, sorted by name', async () => {
    const fs = new SimulatedFileSystem();
    const first = await FileTopicRegistry.open('/d', fs);
    await first.put(topic('b'));
    await first.put(topic('a', 3));
    await first.remove('b');
    await first.put(topic('c'));
    const second = await FileTopicRegistry.open('/d', fs);
    expect(second.clusterId).toBe(first.clusterId);
    expect(second.list().map((t) => [t.name, t.partitions])).toEqual([
      ['a', 3],
      ['c', 1],
    ]);
    // A new data directory is a new cluster.
    expect((await FileTopicRegistry.open('/other', fs)).clusterId).not.toBe(first.clusterId);
  });

  it('leaves memory and disk as they were when a write fails, and writes again afterwards', async () => {
    const fs = new FlakyFileSystem();
    const registry = await FileTopicRegistry.open('/d', fs);
    await registry.put(topic('kept'));
    fs.failNextWrite = true;
    await expect(registry.put(topic('lost'))).rejects.toThrow(/ENOSPC/);
    expect(registry.get('lost')).toBeUndefined();
    fs.failNextWrite = true;
    await expect(registry.remove('kept')).rejects.toThrow(/ENOSPC/);
    expect(registry.get('kept')).toBeDefined();
    await registry.put(topic('after'));
    const reopened = await FileTopicRegistry.open('/d', fs);
    expect(reopened.list().map((t) => t.name)).toEqual(['after', 'kept']);
  });

  it('refuses a registry file that is not JSON with a storage error', async () => {
    const fs = new SimulatedFileSystem();
    await fs.mkdir('/d/__cluster');
    await fs.writeFileAtomic('/d/__cluster/topics.json', Buffer.from('{"clusterId": '));
    const error = await FileTopicRegistry.open('/d', fs).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SluiceError);
    expect((error as SluiceError).code).toBe('KAFKA_STORAGE_ERROR');
  });
});
