import { describe, expect, it } from 'vitest';
import { setBaseOffset, splitBatches } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { type BatchLocation, Segment, segmentName } from '../../src/storage/segment.js';
import { batchOf } from './helpers.js';

/**
 * When a segment's index files count as synced, found unguarded by the storage mutation run
 * after `syncIndexes` learned to skip index files not written since their last fsync
 * (docs/mutation-protocol-storage.md): indexes loaded by a clean open are synced already; index
 * files a segment created, wrote or cut are not, until an fsync of them succeeds.
 */

const dir = '/seg-m';
const indexPath = `${dir}/${segmentName(0)}.index`;
const openOptions = { recover: false, indexIntervalBytes: 1, batchBytesMax: 1 << 20, nowMs: 0 };

async function newFs(): Promise<SimulatedFileSystem> {
  const fs = new SimulatedFileSystem();
  await fs.mkdir(dir);
  return fs;
}

function batchAt(offset: number): Buffer {
  const b = batchOf([`value-${offset}`], { timestamp: 1000 + offset });
  setBaseOffset(b, 0, offset);
  return b;
}

function locationOf(data: Buffer): BatchLocation {
  const [split] = splitBatches(data, 2 << 20);
  return { position: 0, size: split!.size, header: split!.header };
}

async function append(segment: Segment, from: number, count: number): Promise<void> {
  for (let offset = from; offset < from + count; offset++) {
    const data = batchAt(offset);
    expect(await segment.append(data, [locationOf(data)], 1)).toBe(true);
  }
}

/** A segment of `count` one-record batches, synced and closed cleanly, then opened again. */
async function reopened(fs: SimulatedFileSystem, count: number): Promise<Segment> {
  const segment = await Segment.create(dir, 0, fs, 0);
  await append(segment, 0, count);
  await segment.sync();
  await segment.syncIndexes();
  await segment.close();
  const { segment: again } = await Segment.open(dir, 0, fs, openOptions);
  return again;
}

async function indexBytes(fs: SimulatedFileSystem): Promise<number> {
  return (await fs.readFile(indexPath))?.length ?? -1;
}

describe('index files and their fsync', () => {
  it('indexes a clean open loaded cost no fsync until they are written', async () => {
    const fs = await newFs();
    const segment = await reopened(fs, 4);
    const before = fs.syncCount;
    await segment.syncIndexes();
    await segment.syncIndexes();
    expect(fs.syncCount).toBe(before);
    await segment.close();
  });

  it('a synced index costs no second fsync, and entries written after it are synced by the next call', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await append(segment, 0, 3);
    await segment.syncIndexes();
    const synced = fs.syncCount;
    await segment.syncIndexes();
    expect(fs.syncCount).toBe(synced);
    await append(segment, 3, 2);
    await segment.syncIndexes();
    expect(fs.syncCount).toBeGreaterThan(synced);
    await segment.close();
  });

  it('entries appended after a clean open are made durable by syncIndexes', async () => {
    const fs = await newFs();
    const segment = await reopened(fs, 3);
    const loaded = await indexBytes(fs);
    expect(loaded).toBeGreaterThan(0);
    await append(segment, 3, 3);
    await segment.sync();
    await segment.syncIndexes();
    const written = await indexBytes(fs);
    expect(written).toBeGreaterThan(loaded);
    fs.crashLosingAllUnsynced();
    expect(await indexBytes(fs)).toBe(written);
  });

  it('a truncation after a clean open is made durable in the index files by syncIndexes', async () => {
    const fs = await newFs();
    const segment = await reopened(fs, 6);
    const whole = await indexBytes(fs);
    expect(await segment.truncateTo(2)).toBe(2);
    await segment.syncIndexes();
    const cut = await indexBytes(fs);
    expect(cut).toBeLessThan(whole);
    fs.crashLosingAllUnsynced();
    expect(await indexBytes(fs)).toBe(cut);
  });

  it('a created segment never takes index files left on disk for synced: its emptied ones are synced', async () => {
    const fs = await newFs();
    // Index bytes of an older segment of the same base, durable on disk.
    await fs.writeFileAtomic(indexPath, Buffer.alloc(64, 1));
    const segment = await Segment.create(dir, 0, fs, 0);
    expect(await indexBytes(fs)).toBe(0);
    await segment.syncIndexes();
    fs.crashLosingAllUnsynced();
    expect(await indexBytes(fs)).toBe(0);
  });

  it('a failed index fsync is not taken for one: the next syncIndexes syncs again', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await append(segment, 0, 4);
    await segment.sync();
    fs.fault = (operation, path) =>
      operation === 'sync' && path === indexPath ? new Error('EIO') : undefined;
    await expect(segment.syncIndexes()).rejects.toThrow('EIO');
    fs.fault = undefined;
    await segment.syncIndexes();
    const written = await indexBytes(fs);
    expect(written).toBeGreaterThan(0);
    fs.crashLosingAllUnsynced();
    expect(await indexBytes(fs)).toBe(written);
  });
});
