import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import { setBaseOffset, setPartitionLeaderEpoch, splitBatches } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { type BatchLocation, Segment, segmentName } from '../../src/storage/segment.js';
import { batchOf } from './helpers.js';

/**
 * Rules of one segment that segment.test.ts leaves unguarded, each found by mutation testing
 * (docs/mutation-protocol-storage.md): what a clean reopen trusts of the indexes, what recovery
 * writes, the header walk's damage reports, reads that stop at `size`, readers and close, and the
 * time index after a truncation.
 */

const dir = '/seg';
const logPath = `${dir}/${segmentName(0)}.log`;
const openOptions = { indexIntervalBytes: 1, batchBytesMax: 1 << 20, nowMs: 0 };
/** Real clock times lie above 2^32 ms, so a timestamp's high word matters. */
const epochMs = 1_764_000_000_000;
/** An interval no segment here reaches: a rebuilt index has no entries, a loaded one keeps its own. */
const noIndex = 1e9;

async function newFs(): Promise<SimulatedFileSystem> {
  const fs = new SimulatedFileSystem();
  await fs.mkdir(dir);
  return fs;
}

function batches(count: number, base = 0, ts: (i: number) => number = (i) => 1000 + i, value = 'value') {
  return Array.from({ length: count }, (_, i) => {
    const b = batchOf([`${value}-${i}`], { timestamp: ts(i) });
    setBaseOffset(b, 0, base + i);
    return b;
  });
}

function locationOf(data: Buffer): BatchLocation {
  const [split] = splitBatches(data, 2 << 20);
  return { position: 0, size: split!.size, header: split!.header };
}

async function appendAll(segment: Segment, parts: Buffer[], indexIntervalBytes = 1): Promise<void> {
  for (const data of parts)
    expect(await segment.append(data, [locationOf(data)], indexIntervalBytes)).toBe(true);
}

async function segmentWith(
  fs: SimulatedFileSystem,
  parts: Buffer[],
  indexIntervalBytes = 1,
): Promise<Segment> {
  const segment = await Segment.create(dir, 0, fs, 0);
  await appendAll(segment, parts, indexIntervalBytes);
  return segment;
}

async function offsetsRead(segment: Segment, from: number, maxBytes = 1 << 20, maxOffset = 1e9) {
  const result = await segment.read(from, maxBytes, maxOffset);
  return {
    offsets: splitBatches(result.data).map((b) => b.header.baseOffset),
    nextOffset: result.nextOffset,
  };
}

/** The message of the CORRUPT_MESSAGE `promise` rejects with, or 'no error'. */
async function damage(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'no error';
  } catch (error) {
    return isSluiceError(error) ? error.message : String(error);
  }
}

/** Whether `promise` settles within a few turns of the event loop. */
async function settles(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

describe('Segment rules', () => {
  it('create empties files an earlier segment left at its paths', async () => {
    const fs = await newFs();
    for (const path of Object.values(Segment.paths(dir, 0))) {
      const handle = await fs.open(path);
      await handle.write(batches(1)[0]!, 0);
      await handle.close();
    }
    const segment = await Segment.create(dir, 0, fs, 0);
    for (const path of Object.values(Segment.paths(dir, 0)))
      expect(fs.files.get(path)!.current.length).toBe(0);
    expect(await offsetsRead(segment, 0)).toEqual({ offsets: [], nextOffset: 0 });
    await segment.close();
  });

  it('a clean reopen loads the indexes only when every entry is consistent, and a rebuild reads headers, not CRCs', async () => {
    for (const damaged of [
      'none',
      'positions equal',
      'last position at the end',
      'time back',
      'odd size, bad CRC',
      'time index odd size',
    ] as const) {
      const fs = await newFs();
      const segment = await Segment.create(dir, 10, fs, 0);
      const parts = batches(8, 10, (i) => epochMs + i * 1000);
      const n = parts[0]!.length;
      await appendAll(segment, parts, 1);
      await segment.syncIndexes();
      await segment.close();
      const log = fs.files.get(`${dir}/${segmentName(10)}.log`)!;
      const index = fs.files.get(`${dir}/${segmentName(10)}.index`)!;
      const time = fs.files.get(`${dir}/${segmentName(10)}.timeindex`)!;
      // Entries for offsets 11..17, at positions n..7n.
      if (damaged === 'positions equal') index.current.writeUInt32BE(index.current.readUInt32BE(12), 20);
      if (damaged === 'last position at the end')
        index.current.writeUInt32BE(8 * n, index.current.length - 4);
      if (damaged === 'time back') time.current.writeBigInt64BE(0n, time.current.length - 12);
      if (damaged === 'time index odd size') time.current = time.current.subarray(0, time.current.length - 5);
      if (damaged === 'odd size, bad CRC') {
        index.current = index.current.subarray(0, index.current.length - 3);
        log.current[4 * n - 2] = log.current[4 * n - 2]! ^ 0xff;
      }
      const opened = await Segment.open(dir, 10, fs, {
        ...openOptions,
        indexIntervalBytes: noIndex,
        recover: false,
      });
      const reopened = opened.segment;
      const loaded = reopened.lookupPosition(17) === 7 * n;
      expect([loaded, reopened.nextOffset, reopened.maxTimestamp, reopened.size], damaged).toEqual([
        damaged === 'none',
        18,
        epochMs + 7000,
        8 * n,
      ]);
      expect(log.current.length, damaged).toBe(8 * n);
      if (loaded) expect(reopened.lookupTimestamp(epochMs + 4000)).toBe(14);
      await reopened.close();
    }
  });

  it('after a clean reopen, the next index entry comes indexIntervalBytes after the last one loaded', async () => {
    const fs = await newFs();
    const parts = batches(7);
    const n = parts[0]!.length;
    const segment = await segmentWith(fs, parts, 2 * n);
    expect([segment.lookupPosition(5), segment.lookupPosition(6)]).toEqual([4 * n, 6 * n]);
    await segment.syncIndexes();
    await segment.close();
    const { segment: reopened } = await Segment.open(dir, 0, fs, { ...openOptions, recover: false });
    await appendAll(reopened, batches(2, 7), 2 * n);
    expect([reopened.lookupPosition(7), reopened.lookupPosition(8)]).toEqual([6 * n, 8 * n]);
    await reopened.close();
  });

  it('a clean reopen keeps the largest timestamp, also when it lies before the last index entry', async () => {
    const fs = await newFs();
    const segment = await segmentWith(
      fs,
      batches(8, 0, (i) => (i < 7 ? 1000 + i : 500)),
    );
    expect(segment.maxTimestamp).toBe(1006);
    await segment.syncIndexes();
    await segment.close();
    const { segment: reopened } = await Segment.open(dir, 0, fs, { ...openOptions, recover: false });
    expect(reopened.maxTimestamp).toBe(1006);
    await reopened.close();
  });

  it('recovery reports where each leader epoch starts: the first batch of each higher epoch, none for epoch -1', async () => {
    const fs = await newFs();
    const epochs = [-1, 0, 0, 2, 2, 5];
    const parts = batches(epochs.length);
    for (const [i, b] of parts.entries()) setPartitionLeaderEpoch(b, 0, epochs[i]!);
    const segment = await segmentWith(fs, parts);
    await segment.close();
    const opened = await Segment.open(dir, 0, fs, { ...openOptions, recover: true });
    expect(opened.epochStarts).toEqual([
      { epoch: 0, startOffset: 1 },
      { epoch: 2, startOffset: 3 },
      { epoch: 5, startOffset: 5 },
    ]);
    await opened.segment.close();
  });

  it('recovery writes the index entries it rebuilds, and leaves an undamaged log alone (no cut, no fsync)', async () => {
    const fs = await newFs();
    const segment = await segmentWith(fs, batches(3));
    await segment.close();
    for (const path of [`${dir}/${segmentName(0)}.index`, `${dir}/${segmentName(0)}.timeindex`])
      fs.files.get(path)!.current = Buffer.alloc(0);
    const syncs = fs.syncCount;
    const opened = await Segment.open(dir, 0, fs, { ...openOptions, recover: true });
    expect([opened.corrupt, fs.syncCount]).toEqual([undefined, syncs]);
    expect(fs.files.get(`${dir}/${segmentName(0)}.index`)!.current.length).toBe(2 * 8);
    expect(fs.files.get(`${dir}/${segmentName(0)}.timeindex`)!.current.length).toBe(2 * 12);
    await opened.segment.close();
  });

  it('recovery checks a batch larger than 1 MiB whole when batchBytesMax allows it', async () => {
    const fs = await newFs();
    const big = batchOf(['x'.repeat(1_200_000)]);
    const segment = await segmentWith(fs, [big], 4096);
    await segment.close();
    const opened = await Segment.open(dir, 0, fs, {
      ...openOptions,
      batchBytesMax: 2 << 20,
      indexIntervalBytes: 4096,
      recover: true,
    });
    expect([opened.corrupt, opened.segment.nextOffset, opened.segment.size]).toEqual([
      undefined,
      1,
      big.length,
    ]);
    await opened.segment.close();
  });

  it('the header walk names what it finds where a damaged length sends it: near, at and past the end', async () => {
    // Three batches of n bytes; batch 1's length is rewritten to end it `end` bytes into the file.
    const walkWithBatch1EndingAt = async (end: (n: number) => number) => {
      const fs = await newFs();
      const parts = batches(3);
      const n = parts[0]!.length;
      const segment = await segmentWith(fs, parts, noIndex);
      fs.files.get(logPath)!.current.writeUInt32BE(end(n) - n - 15, n + 11);
      try {
        return await damage(segment.truncateTo(2));
      } finally {
        await segment.close();
      }
    };
    const n = batches(1)[0]!.length;
    // Exactly one header's worth of bytes left, and they are no header.
    expect(await walkWithBatch1EndingAt((n) => 3 * n - 79)).toBe(
      `the stored batch at byte ${3 * n - 79} of segment 0 is damaged (no batch header at this position); reads from offset 3 on do not cross it`,
    );
    expect(await walkWithBatch1EndingAt((n) => 3 * n - 30)).toBe(
      `the stored batch at byte ${3 * n - 30} of segment 0 is damaged (a batch runs past the end of the segment); reads from offset 3 on do not cross it`,
    );
    expect(await walkWithBatch1EndingAt((n) => 3 * n + 10)).toBe(
      `the stored batch at byte ${n} of segment 0 is damaged (a batch runs past the end of the segment); reads from offset 3 on do not cross it`,
    );
  });

  it('a log file shorter than the segment (bytes lost under it) is damage to a header walk, not an endless walk', async () => {
    const fs = await newFs();
    const parts = batches(3);
    const n = parts[0]!.length;
    const segment = await segmentWith(fs, parts, noIndex);
    const file = fs.files.get(logPath)!;
    file.current = file.current.subarray(0, n);
    const error = await segment.truncateTo(2).catch((e: unknown) => e);
    expect(isSluiceError(error) && error.code).toBe('CORRUPT_MESSAGE');
    if (!isSluiceError(error)) return;
    expect(error.details).toEqual({ segmentBaseOffset: 0, damagedPosition: n, nextReadableOffset: 3 });
    expect(error.message).toMatch(/is damaged \(.+\)/);
    await segment.close();
  });

  it('never indexes the first batch, not even with indexIntervalBytes 0, which indexes every other one', async () => {
    const fs = await newFs();
    const parts = batches(3);
    const segment = await segmentWith(fs, parts, 0);
    await segment.syncIndexes();
    expect(fs.files.get(`${dir}/${segmentName(0)}.index`)!.current.length).toBe(2 * 8);
    expect([segment.lookupPosition(0), segment.lookupPosition(1)]).toEqual([0, parts[0]!.length]);
    await segment.close();
  });

  it('time index entries hold the running max timestamp exactly, 0 included', async () => {
    const fs = await newFs();
    const segment = await segmentWith(
      fs,
      batches(3, 0, () => 0),
    );
    // Entries at offsets 1 and 2, each saying that no earlier record is above 0.
    expect([segment.lookupTimestamp(0), segment.lookupTimestamp(1)]).toEqual([0, 2]);
    await segment.close();
  });

  it('a synchronous append needs no verify; one that fails its verify writes nothing and leaves the segment clean', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    const [first, second] = batches(2);
    const pending = fs.files.get(logPath)!.pending.length;
    expect(await segment.append(first!, [locationOf(first!)], 1, { verify: () => false, sync: true })).toBe(
      false,
    );
    expect([segment.dirty, fs.files.get(logPath)!.pending.length]).toEqual([false, pending]);
    expect(await segment.append(first!, [locationOf(first!)], 1, { sync: true })).toBe(true);
    expect(await segment.append(second!, [locationOf(second!)], 1, { sync: true })).toBe(true);
    expect([segment.dirty, segment.nextOffset]).toEqual([true, 2]);
    expect((await offsetsRead(segment, 0)).offsets).toEqual([0, 1]);
    await segment.close();
  });

  it('an append whose write fails rejects, and nothing is appended', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 0, fs, 0);
    const [data] = batches(1);
    fs.fault = (operation) => (operation === 'write' ? new Error('EIO') : undefined);
    await expect(segment.append(data!, [locationOf(data!)], 1)).rejects.toThrow('EIO');
    expect([segment.size, segment.nextOffset]).toEqual([0, 0]);
    fs.fault = undefined;
    await segment.close();
  });

  it('a segment without records reopens with max timestamp -1, loaded or recovered; one of timestamp 0 with 0', async () => {
    for (const recover of [false, true]) {
      const fs = await newFs();
      const empty = await Segment.create(dir, 0, fs, 0);
      await empty.close();
      const reopened = await Segment.open(dir, 0, fs, { ...openOptions, recover });
      expect(reopened.segment.maxTimestamp, `recover ${recover}`).toBe(-1);
      await reopened.segment.close();
      const fs2 = await newFs();
      const zero = await segmentWith(
        fs2,
        batches(1, 0, () => 0),
      );
      await zero.syncIndexes();
      await zero.close();
      const reopenedZero = await Segment.open(dir, 0, fs2, { ...openOptions, recover });
      expect(reopenedZero.segment.maxTimestamp, `recover ${recover}`).toBe(0);
      await reopenedZero.segment.close();
    }
  });

  it('recovery that cuts batches off leaves index files of the entries kept only', async () => {
    const fs = await newFs();
    const segment = await segmentWith(fs, batches(3));
    await segment.syncIndexes();
    await segment.close();
    const file = fs.files.get(logPath)!;
    file.current = file.current.subarray(0, file.current.length - 4);
    const opened = await Segment.open(dir, 0, fs, { ...openOptions, recover: true });
    expect(opened.segment.nextOffset).toBe(2);
    expect(fs.files.get(`${dir}/${segmentName(0)}.index`)!.current.length).toBe(8);
    expect(fs.files.get(`${dir}/${segmentName(0)}.timeindex`)!.current.length).toBe(12);
    await opened.segment.close();
  });

  it('close closes the files, and an append to a closed segment fails naming the rule', async () => {
    const fs = await newFs();
    const segment = await segmentWith(fs, batches(1));
    await segment.close();
    await expect(segment.log.read(Buffer.alloc(1), 0, 1, 0)).rejects.toThrow('EBADF');
    const [data] = batches(1, 1);
    await expect(segment.append(data!, [locationOf(data!)], 1)).rejects.toThrow('append to a closed segment');
  });

  it('a reader of a closed segment fails, naming the segment', async () => {
    const fs = await newFs();
    const segment = await Segment.create(dir, 7, fs, 0);
    await segment.close();
    await expect(segment.withReader(async () => 1)).rejects.toThrow('read of the closed segment 7');
  });

  it('close waits for every reader in the segment, reads and walks alike, whichever finishes first', async () => {
    for (const first of ['read', 'walk'] as const) {
      const fs = await newFs();
      const segment = await segmentWith(fs, batches(2));
      const releaseRead: (() => void)[] = [];
      const unlatched = segment.log.read.bind(segment.log);
      segment.log.read = async (...args) => {
        await new Promise<void>((resolve) => releaseRead.push(resolve));
        return unlatched(...args);
      };
      let releaseWalk: () => void = () => {};
      const walkGate = new Promise<void>((resolve) => (releaseWalk = resolve));
      const reading = segment.read(0, 1 << 20, 1e9);
      const walking = segment.withReader(() => walkGate);
      const closing = segment.close();
      expect(await settles(closing), first).toBe(false);
      if (first === 'read') releaseRead[0]!();
      else releaseWalk();
      expect(await settles(closing), first).toBe(false);
      if (first === 'read') releaseWalk();
      else releaseRead[0]!();
      expect(await settles(closing), first).toBe(true);
      expect(splitBatches((await reading).data).map((b) => b.header.baseOffset)).toEqual([0, 1]);
      await walking;
    }
  });

  it('a second close while a reader is in waits as the first does, and both resolve when it leaves', async () => {
    const fs = await newFs();
    const segment = await segmentWith(fs, batches(1));
    let release: () => void = () => {};
    const reading = segment.withReader(() => new Promise<void>((resolve) => (release = resolve)));
    const first = segment.close();
    const second = segment.close();
    expect(await settles(first)).toBe(false);
    release();
    await reading;
    expect([await settles(first), await settles(second)]).toEqual([true, true]);
  });

  it('reads serve nothing past size: bytes written but not yet appended are neither read nor taken for damage', async () => {
    // The first read window, from an indexed position.
    const fs = await newFs();
    const segment = await segmentWith(fs, batches(6));
    const file = fs.files.get(logPath)!;
    file.current = Buffer.concat([file.current, batches(1, 6)[0]!]);
    expect(await offsetsRead(segment, 3)).toEqual({ offsets: [3, 4, 5], nextOffset: 6 });
    await segment.close();
    // The general read, for a batch beyond the first window (no index entries).
    const fs2 = await newFs();
    const large = await Segment.create(dir, 0, fs2, 0);
    await appendAll(large, batches(1000), noIndex);
    const file2 = fs2.files.get(logPath)!;
    file2.current = Buffer.concat([file2.current, batches(1, 1000)[0]!]);
    expect(await offsetsRead(large, 990, 5000)).toEqual({
      offsets: [990, 991, 992, 993, 994, 995, 996, 997, 998, 999],
      nextOffset: 1000,
    });
    await large.close();
  });

  it('a read finds damage within what it reads, in the first window and in the general read, and says where', async () => {
    const fs = await newFs();
    const parts = batches(6);
    const n = parts[0]!.length;
    const segment = await segmentWith(fs, parts);
    // Batch 4 made to end 5 bytes past the segment.
    fs.files.get(logPath)!.current.writeUInt32BE(2 * n + 5 - 15, 4 * n + 11);
    const error = await segment.read(2, 1 << 20, 1e9).catch((e: unknown) => e);
    expect(isSluiceError(error) && error.details).toEqual({
      segmentBaseOffset: 0,
      damagedPosition: 4 * n,
      nextReadableOffset: 5,
    });
    expect(isSluiceError(error) && error.message).toBe(
      `the stored batch at byte ${4 * n} of segment 0 is damaged (batch of ${2 * n + 5} bytes runs past the end of the segment); reads from offset 5 on do not cross it`,
    );
    await segment.close();
    const fs2 = await newFs();
    const large = await Segment.create(dir, 0, fs2, 0);
    const many = batches(1000);
    await appendAll(large, many, noIndex);
    const at995 = many.slice(0, 995).reduce((sum, b) => sum + b.length, 0);
    fs2.files.get(logPath)!.current.writeUInt32BE(1 << 20, at995 + 11);
    expect(await damage(large.read(990, 5000, 1e9))).toBe(
      `the stored batch at byte ${at995} of segment 0 is damaged (batch of ${(1 << 20) + 15} bytes runs past the end of the segment); reads from offset 1000 on do not cross it`,
    );
    await large.close();
  });

  it('reads beyond the first window: past the end, past maxOffset, and a batch the window holds only in part', async () => {
    const fs = await newFs();
    const segment = await segmentWith(fs, batches(1000), noIndex);
    expect(await offsetsRead(segment, 1000, 1)).toEqual({ offsets: [], nextOffset: 1000 });
    expect(await offsetsRead(segment, 1500, 1)).toEqual({ offsets: [], nextOffset: 1500 });
    await segment.close();
    const fs2 = await newFs();
    const indexed = await segmentWith(fs2, batches(1000), 1);
    expect(await offsetsRead(indexed, 500, 1, 500)).toEqual({ offsets: [], nextOffset: 500 });
    await indexed.close();
    // Batches of about 5 kB: the first window (16 kB and a byte) ends inside batch 3.
    const fs3 = await newFs();
    const parts = batches(6, 0, undefined, 'x'.repeat(5000));
    const wide = await segmentWith(fs3, parts, noIndex);
    const result = await wide.read(3, 1, 1e9);
    expect([result.data.length, splitBatches(result.data).map((b) => b.header.baseOffset)]).toEqual([
      parts[3]!.length,
      [3],
    ]);
    await wide.close();
  });

  it('truncation drops the time index entries at and after the cut, and recomputes the max timestamp from all that is left', async () => {
    const fs = await newFs();
    // Time entries at offsets 1..5 holding 10, 20, 30, 40, 50.
    const segment = await segmentWith(
      fs,
      batches(6, 0, (i) => (i + 1) * 10),
    );
    expect(await segment.truncateTo(3)).toBe(3);
    expect([segment.lookupTimestamp(15), segment.lookupTimestamp(45), segment.maxTimestamp]).toEqual([
      1, 2, 30,
    ]);
    await segment.syncIndexes();
    expect(fs.files.get(`${dir}/${segmentName(0)}.index`)!.current.length).toBe(2 * 8);
    expect(fs.files.get(`${dir}/${segmentName(0)}.timeindex`)!.current.length).toBe(2 * 12);
    expect(await segment.truncateTo(1)).toBe(1);
    expect([segment.lookupTimestamp(9999), segment.maxTimestamp]).toEqual([0, 10]);
    await segment.close();
  });

  it('syncIndexes makes the index files durable', async () => {
    const fs = await newFs();
    const segment = await segmentWith(fs, batches(3));
    await segment.sync();
    await segment.syncIndexes();
    const afterLoss = fs.afterPowerLoss();
    expect(afterLoss.files.get(`${dir}/${segmentName(0)}.index`)!.current.length).toBe(2 * 8);
    expect(afterLoss.files.get(`${dir}/${segmentName(0)}.timeindex`)!.current.length).toBe(2 * 12);
    await segment.close();
  });

  it('the header walk checks every marker byte it relies on: 0, 1, 10, 21 and 29', async () => {
    for (const at of [0, 1, 10, 21, 29]) {
      const fs = await newFs();
      const parts = batches(3);
      const n = parts[0]!.length;
      const segment = await segmentWith(fs, parts, noIndex);
      fs.files.get(logPath)!.current[n + at] = 0x00;
      expect(await damage(segment.truncateTo(2)), `byte ${at}`).toBe(
        `the stored batch at byte ${n} of segment 0 is damaged (no batch header at this position); reads from offset 3 on do not cross it`,
      );
      await segment.close();
    }
  });
});
