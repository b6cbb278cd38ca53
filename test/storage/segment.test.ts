import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import { setBaseOffset, splitBatches } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { type BatchLocation, Segment, segmentName } from '../../src/storage/segment.js';
import { batchOf } from './helpers.js';

/**
 * One segment on its own: its sparse indexes, what a reopen trusts of them, reads at their
 * boundaries, truncation, and the dirty flag of its fsyncs. Batches here are appended with the
 * offsets they already carry (encodeBatch numbers them from 0, so each test stamps them).
 */

const dir = '/seg';
const openOptions = { indexIntervalBytes: 1, batchBytesMax: 1 << 20, nowMs: 0 };

async function newFs(): Promise<SimulatedFileSystem> {
  const fs = new SimulatedFileSystem();
  await fs.mkdir(dir);
  return fs;
}

/** `count` one-record batches with offsets from `base`, timestamps `ts(i)`, and their locations. */
function batches(count: number, base = 0, ts: (i: number) => number = (i) => 1000 + i) {
  const parts = Array.from({ length: count }, (_, i) => {
    const b = batchOf([`value-${i}`], { timestamp: ts(i) });
    setBaseOffset(b, 0, base + i);
    return b;
  });
  return parts;
}

async function appendAll(segment: Segment, parts: Buffer[], indexIntervalBytes = 1): Promise<void> {
  for (const data of parts) {
    const [split] = splitBatches(data);
    const location: BatchLocation = { position: 0, size: split!.size, header: split!.header };
    expect(await segment.append(data, [location], indexIntervalBytes)).toBe(true);
  }
}

async function offsetsRead(segment: Segment, from: number, maxBytes = 1 << 20, maxOffset = 1e9) {
  const result = await segment.read(from, maxBytes, maxOffset);
  return {
    offsets: splitBatches(result.data).map((b) => b.header.baseOffset),
    nextOffset: result.nextOffset,
  };
}

describe('Segment', () => {
  it('is named by its base offset in 20 digits', () => {
    expect(segmentName(170410)).toBe('00000000000000170410');
    expect(Segment.paths('/d', 7)).toEqual({
      log: '/d/00000000000000000007.log',
      index: '/d/00000000000000000007.index',
      timeIndex: '/d/00000000000000000007.timeindex',
    });
  });

  it('indexes a batch once indexIntervalBytes have passed since the last entry, never the first batch', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 100, fs, 0);
    const parts = batches(6, 100);
    const size = parts[0]!.length;
    // One entry every two batches: after exactly 2 * size bytes.
    await appendAll(segment, parts, size * 2);
    expect([segment.size, segment.nextOffset, segment.maxTimestamp]).toEqual([size * 6, 106, 1005]);
    expect(segment.lookupPosition(99)).toBe(0);
    expect(segment.lookupPosition(101)).toBe(0);
    expect(segment.lookupPosition(102)).toBe(size * 2);
    expect(segment.lookupPosition(103)).toBe(size * 2);
    expect(segment.lookupPosition(104)).toBe(size * 4);
    expect(segment.lookupPosition(1000)).toBe(size * 4);
    await segment.syncIndexes();
    expect(fs.files.get(`${dir}/${segmentName(100)}.index`)!.current.length).toBe(2 * 8);
    expect(fs.files.get(`${dir}/${segmentName(100)}.timeindex`)!.current.length).toBe(2 * 12);
    await segment.close();
  });

  it('the time index proves no earlier record qualifies: lookups start at the last entry below the time', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await appendAll(
      segment,
      batches(5, 0, (i) => 1000 + i * 10),
      1,
    );
    // Entries at offsets 1..4, each holding the max timestamp before it: 1000, 1010, 1020, 1030.
    expect(segment.lookupTimestamp(999)).toBe(0);
    expect(segment.lookupTimestamp(1000)).toBe(0);
    expect(segment.lookupTimestamp(1001)).toBe(1);
    expect(segment.lookupTimestamp(1010)).toBe(1);
    expect(segment.lookupTimestamp(1011)).toBe(2);
    expect(segment.lookupTimestamp(1031)).toBe(4);
    expect(segment.lookupTimestamp(9999)).toBe(4);
    await segment.close();
  });

  it('writes index entries out after 1024 are pending, before any flush', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    const indexPath = `${dir}/${segmentName(0)}.index`;
    await appendAll(segment, batches(1024), 1);
    expect(fs.files.get(indexPath)!.current.length).toBe(0);
    await appendAll(segment, batches(2, 1024), 1);
    expect(fs.files.get(indexPath)!.current.length).toBe(1024 * 8);
    await segment.close();
  });

  it('reopens from its indexes when they are consistent, and rebuilds them when they are not, reading the same either way', async () => {
    for (const damage of [
      'none',
      'odd size',
      'offsets back',
      'offsets equal',
      'position past end',
      'time back',
    ] as const) {
      const fs = await newFs();
      const segment = await Segment.create(dir, 10, fs, 0);
      await appendAll(
        segment,
        batches(8, 10, (i) => 5000 + i),
        1,
      );
      await segment.syncIndexes();
      await segment.close();
      const index = fs.files.get(`${dir}/${segmentName(10)}.index`)!;
      const time = fs.files.get(`${dir}/${segmentName(10)}.timeindex`)!;
      if (damage === 'odd size') index.current = index.current.subarray(0, index.current.length - 3);
      if (damage === 'offsets back') index.current.writeUInt32BE(0, 8);
      if (damage === 'offsets equal') index.current.writeUInt32BE(index.current.readUInt32BE(0), 8);
      if (damage === 'position past end') index.current.writeUInt32BE(1 << 30, index.current.length - 4);
      if (damage === 'time back') time.current.writeBigInt64BE(0n, time.current.length - 12);
      const opened = await Segment.open(dir, 10, fs, { ...openOptions, recover: false });
      const reopened = opened.segment;
      expect([reopened.nextOffset, reopened.maxTimestamp, opened.corrupt], damage).toEqual([
        18,
        5007,
        undefined,
      ]);
      for (const from of [10, 11, 13, 17]) {
        expect((await offsetsRead(reopened, from)).offsets[0], `${damage} from ${from}`).toBe(from);
      }
      expect(reopened.lookupTimestamp(5004), damage).toBe(14);
      await reopened.close();
    }
  });

  it('recovery cuts a torn tail and reports it; without damage it reports nothing', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await appendAll(segment, batches(3), 1);
    const size = segment.size;
    await segment.close();
    const whole = await Segment.open(dir, 0, fs, { ...openOptions, recover: true });
    expect([whole.corrupt, whole.fileSize, whole.segment.size]).toEqual([undefined, size, size]);
    await whole.segment.close();
    const file = fs.files.get(`${dir}/${segmentName(0)}.log`)!;
    file.current = file.current.subarray(0, size - 4);
    const torn = await Segment.open(dir, 0, fs, { ...openOptions, recover: true });
    const third = size / 3;
    expect(torn.segment.size).toBe(third * 2);
    expect(torn.segment.nextOffset).toBe(2);
    expect(torn.corrupt).toBe(`${third - 4} bytes of partial batch at position ${third * 2}`);
    expect(file.current.length).toBe(third * 2);
    await torn.segment.close();
  });

  it('reads whole batches within maxBytes (at least one) and none that ends past maxOffset', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await appendAll(segment, batches(6), 1);
    const size = segment.size / 6;
    expect(await offsetsRead(segment, 0, 1)).toEqual({ offsets: [0], nextOffset: 1 });
    expect(await offsetsRead(segment, 1, size * 2)).toEqual({ offsets: [1, 2], nextOffset: 3 });
    expect(await offsetsRead(segment, 1, size * 2 - 1)).toEqual({ offsets: [1], nextOffset: 2 });
    expect(await offsetsRead(segment, 2, 1 << 20, 4)).toEqual({ offsets: [2, 3], nextOffset: 4 });
    expect(await offsetsRead(segment, 4, 1 << 20, 4)).toEqual({ offsets: [], nextOffset: 4 });
    expect(await offsetsRead(segment, 6)).toEqual({ offsets: [], nextOffset: 6 });
    const sync = await segment.read(5, 1 << 20, 1e9, { sync: true, reserve: { before: 3, after: 5 } });
    expect(sync.reserved).toEqual({ before: 3, after: 5 });
    expect(sync.data.byteOffset).toBe(3);
    expect(splitBatches(sync.data).map((b) => b.header.baseOffset)).toEqual([5]);
    expect(await segment.read(0, 1, 1e9)).not.toHaveProperty('reserved');
    await segment.close();
  });

  it('truncation cuts before the batch holding the offset, drops its index entries and recomputes the max timestamp', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await appendAll(
      segment,
      batches(6, 0, (i) => 100 * (6 - i)),
      1,
    );
    const size = segment.size / 6;
    expect(segment.maxTimestamp).toBe(600);
    expect(await segment.truncateTo(3)).toBe(3);
    expect([segment.size, segment.nextOffset, segment.maxTimestamp]).toEqual([size * 3, 3, 600]);
    expect(segment.lookupPosition(100)).toBe(size * 2);
    expect(await segment.truncateTo(50)).toBe(3);
    await appendAll(
      segment,
      batches(2, 3, () => 50),
      1,
    );
    expect(segment.lookupPosition(4)).toBe(size * 4);
    expect(await offsetsRead(segment, 2)).toEqual({ offsets: [2, 3, 4], nextOffset: 5 });
    expect(await segment.truncateTo(0)).toBe(0);
    expect([segment.size, segment.maxTimestamp, segment.lookupPosition(9)]).toEqual([0, -1, 0]);
    await segment.syncIndexes();
    expect(fs.files.get(`${dir}/${segmentName(0)}.index`)!.current.length).toBe(0);
    await segment.close();
  });

  it('a failed fsync leaves the segment dirty, so the next sync tries again', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    expect(segment.dirty).toBe(false);
    await appendAll(segment, batches(1), 1);
    expect(segment.dirty).toBe(true);
    fs.fault = (operation) => (operation === 'sync' ? new Error('EIO') : undefined);
    await expect(segment.sync()).rejects.toThrow('EIO');
    expect(segment.dirty).toBe(true);
    fs.fault = undefined;
    const before = fs.syncCount;
    await segment.sync();
    expect(segment.dirty).toBe(false);
    expect(fs.syncCount).toBe(before + 1);
    await segment.sync();
    expect(fs.syncCount).toBe(before + 1);
    await segment.close();
  });

  it('a verify that fails leaves nothing appended, written synchronously or not', async () => {
    for (const sync of [true, false]) {
      const fs = await newFs();
      const segment = await Segment.create(dir, 0, fs, 0);
      const [data] = batches(1);
      const [split] = splitBatches(data!);
      const location = { position: 0, size: split!.size, header: split!.header };
      expect(await segment.append(data!, [location], 1, { verify: () => false, sync })).toBe(false);
      expect([segment.size, segment.nextOffset, segment.maxTimestamp]).toEqual([0, 0, -1]);
      expect(fs.files.get(`${dir}/${segmentName(0)}.log`)!.current.length).toBe(0);
      expect(await segment.append(data!, [location], 1, { verify: () => true, sync })).toBe(true);
      expect(segment.nextOffset).toBe(1);
      await segment.close();
    }
  });

  it('close waits for the readers already in the segment', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await appendAll(segment, batches(2), 1);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const events: string[] = [];
    const reading = segment.withReader(async () => {
      await gate;
      events.push('read done');
    });
    const closing = segment.close().then(() => events.push('closed'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual([]);
    release();
    await Promise.all([reading, closing]);
    expect(events).toEqual(['read done', 'closed']);
    await expect(segment.read(0, 1, 1e9)).rejects.toThrow(/closed segment/);
  });

  it('a header that is not one is a non-retriable CORRUPT_MESSAGE naming where reading goes on', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await appendAll(segment, batches(4), 1);
    const size = segment.size / 4;
    fs.files.get(`${dir}/${segmentName(0)}.log`)!.current[size] = 0x00;
    try {
      await segment.read(1, 1 << 20, 1e9);
      expect.unreachable();
    } catch (error) {
      expect(isSluiceError(error) && error.code).toBe('CORRUPT_MESSAGE');
      if (!isSluiceError(error)) return;
      expect(error.retriable).toBe(false);
      expect(error.details).toEqual({ segmentBaseOffset: 0, damagedPosition: size, nextReadableOffset: 2 });
      expect(error.message).toBe(
        `the stored batch at byte ${size} of segment 0 is damaged (no batch header at this position); reads from offset 2 on do not cross it`,
      );
    }
    await segment.close();
  });

  it('a clean reopen whose log ends in bytes that are no whole batch cuts them off', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await appendAll(segment, batches(3), 1);
    const size = segment.size;
    await segment.syncIndexes();
    await segment.close();
    const file = fs.files.get(`${dir}/${segmentName(0)}.log`)!;
    file.current = Buffer.concat([file.current, batches(1, 3)[0]!.subarray(0, 20)]);
    const { segment: reopened } = await Segment.open(dir, 0, fs, { ...openOptions, recover: false });
    expect([reopened.size, reopened.nextOffset]).toEqual([size, 3]);
    expect(file.current.length).toBe(size);
    await appendAll(reopened, batches(1, 3), 1);
    expect((await offsetsRead(reopened, 0)).offsets).toEqual([0, 1, 2, 3]);
    await reopened.close();
  });

  it('recovery stops at a batch whose offsets go back, and says where', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    await appendAll(segment, batches(2), 1);
    const size = segment.size;
    await segment.close();
    const file = fs.files.get(`${dir}/${segmentName(0)}.log`)!;
    file.current = Buffer.concat([file.current, batches(1, 1)[0]!]);
    const opened = await Segment.open(dir, 0, fs, { ...openOptions, recover: true });
    expect(opened.corrupt).toBe(`batch at position ${size} goes back to offset 1`);
    expect([opened.segment.size, opened.segment.nextOffset]).toEqual([size, 2]);
    await opened.segment.close();
  });

  it('recovery checks a segment larger than its read chunk, batch by batch across chunks', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    const parts = [0, 1, 2].map((i) => {
      const b = batchOf([String(i).repeat(400_000)]);
      setBaseOffset(b, 0, i);
      return b;
    });
    await appendAll(segment, parts, 4096);
    await segment.close();
    const opened = await Segment.open(dir, 0, fs, {
      ...openOptions,
      indexIntervalBytes: 4096,
      recover: true,
    });
    expect([opened.corrupt, opened.segment.nextOffset, opened.segment.size]).toEqual([
      undefined,
      3,
      parts.reduce((n, p) => n + p.length, 0),
    ]);
    await opened.segment.close();
  });

  it('without index entries, reads and truncation far into the segment find their batch by walking headers across read chunks', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    const parts = batches(1500);
    const bytes = (from: number, to: number) => parts.slice(from, to).reduce((n, p) => n + p.length, 0);
    expect(bytes(0, 1500)).toBeGreaterThan(2 * 65_536);
    await appendAll(segment, parts, 1e9);
    expect(segment.lookupPosition(1400)).toBe(0);
    expect(await offsetsRead(segment, 1400, 1)).toEqual({ offsets: [1400], nextOffset: 1401 });
    expect(await offsetsRead(segment, 1400, bytes(1400, 1403))).toEqual({
      offsets: [1400, 1401, 1402],
      nextOffset: 1403,
    });
    expect(await offsetsRead(segment, 1400, 1 << 20, 1402)).toEqual({
      offsets: [1400, 1401],
      nextOffset: 1402,
    });
    expect(await segment.truncateTo(1200)).toBe(1200);
    expect(segment.size).toBe(bytes(0, 1200));
    expect(await offsetsRead(segment, 1199, 1)).toEqual({ offsets: [1199], nextOffset: 1200 });
    await segment.close();
  });

  it('names the damage a header walk finds: a batch running past the end, a length too small, a value beyond 2^53', async () => {
    const damaged = async (edit: (log: Buffer, size: number) => void) => {
      const fs = await newFs();
      const segment = await Segment.create(dir, 0, fs, 0);
      await appendAll(segment, batches(3), 1e9);
      edit(fs.files.get(`${dir}/${segmentName(0)}.log`)!.current, segment.size / 3);
      try {
        await segment.truncateTo(2);
        return 'no error';
      } catch (error) {
        return isSluiceError(error) ? error.message : String(error);
      } finally {
        await segment.close();
      }
    };
    const size = batches(1)[0]!.length;
    expect(await damaged((log, n) => log.writeUInt32BE(n * 5, n + 11))).toBe(
      `the stored batch at byte ${size} of segment 0 is damaged (a batch runs past the end of the segment); reads from offset 3 on do not cross it`,
    );
    expect(await damaged((log, n) => log.writeUInt32BE(10, n + 11))).toBe(
      `the stored batch at byte ${size} of segment 0 is damaged (batch length 10 too small); reads from offset 3 on do not cross it`,
    );
    expect(await damaged((log, n) => log.writeUInt32BE(0x200000, n + 2))).toBe(
      `the stored batch at byte ${size} of segment 0 is damaged (a 64-bit value exceeds 2^53); reads from offset 3 on do not cross it`,
    );
  });

  it('after a truncation, the next index entry comes indexIntervalBytes after the last one kept', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    const parts = batches(6);
    const size = parts[0]!.length;
    await appendAll(segment, parts, size * 2);
    expect([segment.lookupPosition(2), segment.lookupPosition(4)]).toEqual([size * 2, size * 4]);
    expect(await segment.truncateTo(3)).toBe(3);
    await appendAll(segment, batches(3, 3), size * 2);
    expect([segment.lookupPosition(3), segment.lookupPosition(4), segment.lookupPosition(5)]).toEqual([
      size * 2,
      size * 4,
      size * 4,
    ]);
    await segment.close();
  });
});
