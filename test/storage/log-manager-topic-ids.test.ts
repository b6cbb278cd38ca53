import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { type FileSystem, SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager, TOPIC_ID_FILE } from '../../src/storage/log-manager.js';

/**
 * The topic id of each partition directory (`partition.metadata`) is read while the logs open at
 * start, so that the reconciler's first pass, which asks once per log, reads no file; a write or
 * a deletion of the partition after the open is never answered with what the open read.
 */
function counting(fs: SimulatedFileSystem): { fs: FileSystem; topicIdReads: () => number } {
  let reads = 0;
  const readFile = (path: string) => {
    if (path.endsWith(`/${TOPIC_ID_FILE}`)) reads++;
    return fs.readFile(path);
  };
  const wrapped = new Proxy(fs, {
    get(target, name) {
      if (name === 'readFile') return readFile;
      const value = Reflect.get(target, name, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as FileSystem;
  return { fs: wrapped, topicIdReads: () => reads };
}

describe('topic ids read while the logs open', () => {
  it('are answered from the open once, then from the file; a write or a deletion since is never answered stale', async () => {
    const disk = new SimulatedFileSystem();
    const clock = new ManualClock();
    const first = await LogManager.open({ dataDir: '/data' }, { fs: disk, clock });
    for (const partition of [0, 1, 2]) {
      await first.getOrCreate('t', partition);
      if (partition !== 2) await first.writeTopicId('t', partition, `id-${partition}`);
    }
    await first.close();

    const { fs, topicIdReads } = counting(disk);
    const logs = await LogManager.open({ dataDir: '/data' }, { fs, clock });
    const atOpen = topicIdReads();
    expect(atOpen).toBe(3);
    expect(await logs.readTopicId('t', 0)).toBe('id-0');
    // Partition 2 has no file (a single-node release's directory): that is known from the open too.
    expect(await logs.readTopicId('t', 2)).toBeUndefined();
    expect(topicIdReads()).toBe(atOpen);
    // Asked again, it is read from the file.
    expect(await logs.readTopicId('t', 0)).toBe('id-0');
    expect(topicIdReads()).toBe(atOpen + 1);
    // Written after the open: the new id, not the one the open read.
    await logs.writeTopicId('t', 1, 'id-1-new');
    expect(await logs.readTopicId('t', 1)).toBe('id-1-new');
    // Deleted and made again: no id, not the one the open read.
    await logs.deletePartition('t', 2);
    await logs.getOrCreate('t', 2);
    expect(await logs.readTopicId('t', 2)).toBeUndefined();
    await logs.close();
  });
});
