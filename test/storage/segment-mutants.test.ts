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

/**
 * A recovery check that starts at the recovery point (`recoveryPoint` with `recover`), found
 * unguarded by the storage mutation run after it came in: it starts at the last indexed batch at
 * or below the recovery point, leaves the segment's indexes as a check of the whole segment would,
 * and uses the index files only when they are consistent; otherwise the whole segment is read.
 */
describe('a recovery check that starts at the recovery point', () => {
  /** Record times as a real clock gives them: above 2^32, so the high word of an entry counts. */
  const T0 = 1_700_000_000_000;
  const COUNT = 20;
  const RECOVERY_POINT = 12;
  const timeIndexPath = `${dir}/${segmentName(0)}.timeindex`;
  const logPath = `${dir}/${segmentName(0)}.log`;
  const recoverOptions = (recoveryPoint?: number) => ({
    recover: true,
    ...(recoveryPoint === undefined ? {} : { recoveryPoint }),
    indexIntervalBytes: 1,
    batchBytesMax: 1 << 20,
    nowMs: 0,
  });

  function timedBatch(offset: number): Buffer {
    const b = batchOf([`value-${offset}`], { timestamp: T0 + 10 * offset });
    setBaseOffset(b, 0, offset);
    return b;
  }

  /** COUNT one-record batches, every one after the first indexed, all synced (indexes too). */
  async function written(): Promise<SimulatedFileSystem> {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    for (let offset = 0; offset < COUNT; offset++) {
      const data = timedBatch(offset);
      expect(await segment.append(data, [locationOf(data)], 1)).toBe(true);
    }
    await segment.sync();
    await segment.syncIndexes();
    await segment.close();
    // Durable entries too: `checkedWhole` works on what a power loss would leave.
    await fs.syncDir('/');
    await fs.syncDir(dir);
    return fs;
  }

  async function fileOf(fs: SimulatedFileSystem, path: string): Promise<Buffer> {
    return (await fs.readFile(path)) ?? Buffer.alloc(0);
  }

  /** The same files checked from the first byte: the index files emptied, no recovery point. */
  async function checkedWhole(fs: SimulatedFileSystem) {
    const copy = fs.afterPowerLoss();
    await copy.writeFileAtomic(indexPath, Buffer.alloc(0));
    await copy.writeFileAtomic(timeIndexPath, Buffer.alloc(0));
    const opened = await Segment.open(dir, 0, copy, recoverOptions());
    expect(opened.scanned?.fromOffset).toBe(0);
    return { fs: copy, segment: opened.segment };
  }

  /** Same end, same max timestamp, same lookups by offset and time, same index files once synced. */
  async function expectSameSegments(
    a: { fs: SimulatedFileSystem; segment: Segment },
    b: { fs: SimulatedFileSystem; segment: Segment },
  ): Promise<void> {
    const shape = (s: Segment) => [s.size, s.nextOffset, s.maxTimestamp];
    expect(shape(a.segment)).toEqual(shape(b.segment));
    for (let offset = 0; offset <= COUNT; offset++)
      expect([offset, a.segment.lookupPosition(offset)]).toEqual([offset, b.segment.lookupPosition(offset)]);
    for (let t = T0 - 5; t <= T0 + 10 * COUNT + 5; t += 5)
      expect([t, a.segment.lookupTimestamp(t)]).toEqual([t, b.segment.lookupTimestamp(t)]);
    await a.segment.syncIndexes();
    await b.segment.syncIndexes();
    expect(await fileOf(a.fs, indexPath)).toEqual(await fileOf(b.fs, indexPath));
    expect(await fileOf(a.fs, timeIndexPath)).toEqual(await fileOf(b.fs, timeIndexPath));
  }

  it('starts at the indexed batch at the recovery point and leaves the indexes a whole check leaves', async () => {
    const fs = await written();
    const whole = await checkedWhole(fs);
    const fileSize = (await fileOf(fs, logPath)).length;
    const opened = await Segment.open(dir, 0, fs, recoverOptions(RECOVERY_POINT));
    const position = whole.segment.lookupPosition(RECOVERY_POINT);
    expect(opened.corrupt).toBeUndefined();
    expect(opened.scanned).toEqual({
      fromOffset: RECOVERY_POINT,
      fromPosition: position,
      bytes: fileSize - position,
    });
    await expectSameSegments({ fs, segment: opened.segment }, whole);
  });

  it('checks every batch without a recovery point: damage before the last indexed batch is found', async () => {
    const fs = await written();
    const whole = await checkedWhole(fs);
    const log = Buffer.from(await fileOf(fs, logPath));
    // The last byte of batch 5 (its record): the batch's CRC no longer matches.
    log[whole.segment.lookupPosition(6) - 1]! ^= 0xff;
    await fs.writeFileAtomic(logPath, log);
    const opened = await Segment.open(dir, 0, fs, recoverOptions());
    expect(opened.scanned?.fromOffset).toBe(0);
    expect(opened.corrupt).toBeDefined();
    expect(opened.segment.nextOffset).toBe(5);
  });

  it('reads in chunks no larger than the bytes it checks', async () => {
    const fs = await written();
    const lengths: number[] = [];
    const recording: typeof fs = Object.create(fs);
    recording.open = async (path: string) => {
      const handle = await fs.open(path);
      if (!path.endsWith('.log')) return handle;
      const read = handle.read.bind(handle);
      handle.read = (buffer, offset, length, position) => {
        lengths.push(buffer.length);
        return read(buffer, offset, length, position);
      };
      return handle;
    };
    const opened = await Segment.open(dir, 0, recording, recoverOptions(RECOVERY_POINT));
    expect(opened.scanned?.bytes).toBeGreaterThan(0);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(opened.scanned!.bytes);
  });

  /** Index entries are 8 bytes (relative offset, position); the first, at file entry 0, is offset 1. */
  const damages: [
    string,
    (files: {
      index: Buffer;
      time: Buffer;
      log: Buffer;
    }) => Partial<Record<'index' | 'time' | 'log', Buffer>>,
  ][] = [
    [
      'an index file ending in a torn entry',
      ({ index }) => ({ index: Buffer.concat([index, Buffer.alloc(5, 1)]) }),
    ],
    [
      'a time index ending in a torn entry',
      ({ time }) => ({ time: Buffer.concat([time, Buffer.alloc(5, 1)]) }),
    ],
    [
      'an index entry whose offset is not above the one before',
      ({ index }) => {
        index.writeUInt32BE(index.readUInt32BE(4 * 8), 5 * 8);
        return { index };
      },
    ],
    [
      'an index entry whose position is not above the one before',
      ({ index }) => {
        index.writeUInt32BE(index.readUInt32BE(6 * 8 + 4), 5 * 8 + 4);
        return { index };
      },
    ],
    [
      'an index entry past the end of the log, just after the recovery point',
      ({ index, log }) => ({ log: log.subarray(0, index.readUInt32BE((RECOVERY_POINT + 1 - 1) * 8 + 4)) }),
    ],
    [
      "the entry at the recovery point, the index's last, naming the next batch's position",
      ({ index }) => {
        const at = (RECOVERY_POINT - 1) * 8;
        index.writeUInt32BE(index.readUInt32BE(at + 8 + 4), at + 4);
        return { index: index.subarray(0, at + 8) };
      },
    ],
    [
      'a time index without the entry at the recovery point',
      ({ time }) => ({ time: time.subarray(0, (RECOVERY_POINT - 1) * 12) }),
    ],
    [
      'a time index whose timestamps go back',
      ({ time }) => {
        time.writeBigInt64BE(time.readBigInt64BE(4 * 12) - 1n, 5 * 12);
        return { time };
      },
    ],
  ];

  it.each(damages)('reads the whole segment for %s', async (_name, damage) => {
    const fs = await written();
    const files = {
      index: Buffer.from(await fileOf(fs, indexPath)),
      time: Buffer.from(await fileOf(fs, timeIndexPath)),
      log: Buffer.from(await fileOf(fs, logPath)),
    };
    const changed = damage(files);
    if (changed.index) await fs.writeFileAtomic(indexPath, changed.index);
    if (changed.time) await fs.writeFileAtomic(timeIndexPath, changed.time);
    if (changed.log) await fs.writeFileAtomic(logPath, changed.log);
    const whole = await checkedWhole(fs);
    const opened = await Segment.open(dir, 0, fs, recoverOptions(RECOVERY_POINT));
    expect(opened.corrupt).toBeUndefined();
    expect(opened.scanned?.fromOffset).toBe(0);
    await expectSameSegments({ fs, segment: opened.segment }, whole);
  });
});

describe('a read into a buffer the caller allocates', () => {
  it('uses that buffer, and refuses one that is too short or not at the start of its memory', async () => {
    const fs = await newFs();
    const segment = await reopened(fs, 3);
    const given: Buffer[] = [];
    const result = await segment.read(0, 1 << 20, Number.MAX_SAFE_INTEGER, {
      allocate: (bytes) => {
        const buf = Buffer.alloc(bytes);
        given.push(buf);
        return buf;
      },
    });
    expect(result.batchCount).toBe(3);
    expect(given).toHaveLength(1);
    expect(result.data.buffer).toBe(given[0]!.buffer);
    for (const allocate of [
      (bytes: number) => Buffer.alloc(bytes - 1),
      (bytes: number) => Buffer.alloc(bytes + 8).subarray(8),
    ])
      await expect(segment.read(0, 1 << 20, Number.MAX_SAFE_INTEGER, { allocate })).rejects.toThrow(
        'an allocated read buffer is not whole',
      );
    await segment.close();
  });
});
