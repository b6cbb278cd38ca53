import { beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { batchCodecAt, batchSize, encodeBatch, readBatchHeader } from '../../src/protocol/batch.js';
import { type CompressedCodecName, codecs } from '../../src/protocol/compression.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';

/**
 * Compaction of compressed batches: it decompresses to find each key's latest record, and a batch
 * it rewrites stays in its codec (a batch it keeps whole is kept byte for byte).
 */
beforeAll(async () => {
  await codecs.load();
});

/** The codec of every stored batch of the log, in order. */
async function storedCodecs(log: PartitionLog): Promise<number[]> {
  const out: number[] = [];
  for (let offset = 0; offset < log.logEndOffset; ) {
    const { data, nextOffset } = await log.read(offset, { maxBytes: 1 << 20 });
    for (let pos = 0; pos < data.length; pos += batchSize(readBatchHeader(data, pos)))
      out.push(batchCodecAt(data, pos));
    offset = nextOffset;
  }
  return out;
}

/** Every record of the log, segment by segment. */
async function allRecords(log: PartitionLog): Promise<[number, string | undefined][]> {
  const out: [number, string | undefined][] = [];
  for (let offset = 0; offset < log.logEndOffset; ) {
    const { records } = await log.readRecords(offset, { maxBytes: 1 << 20 });
    for (const r of records) out.push([r.offset, r.value?.toString()]);
    offset = records.at(-1)!.offset + 1;
  }
  return out;
}

describe('compaction of compressed batches', () => {
  it.each(['gzip', 'snappy', 'lz4', 'zstd'] as CompressedCodecName[])('%s', async (codec) => {
    const clock = new ManualClock(1_000_000);
    const log = await PartitionLog.open(
      { dir: `/d/compact-${codec}-0`, config: { cleanupPolicy: 'compact', segmentMs: 1 } },
      { fs: new SimulatedFileSystem(), clock },
    );
    const batch = (keys: string[], tag: string) =>
      encodeBatch(
        keys.map((key) => ({
          key: Buffer.from(key),
          value: Buffer.from(`${key}=${tag}`),
          timestamp: clock.nowMs(),
        })),
        { compression: { codec } },
      );
    await log.append(batch(['a', 'b', 'c'], 'old'), { assignOffsets: true });
    clock.advance(10);
    await log.append(batch(['a', 'd'], 'new'), { assignOffsets: true });
    clock.advance(10);
    await log.append(batch(['b'], 'new'), { assignOffsets: true });
    expect(log.segmentBaseOffsets().length).toBeGreaterThan(1);
    const { recordsRemoved } = await log.compact();
    // a@0 and b@1 have later records; c@2 is the newest of its key (and ends its segment).
    expect(recordsRemoved).toBe(2);
    expect(await allRecords(log)).toEqual([
      [2, 'c=old'],
      [3, 'a=new'],
      [4, 'd=new'],
      [5, 'b=new'],
    ]);
    expect(await storedCodecs(log)).toEqual(
      [3, 3, 3].map(() => ['none', 'gzip', 'snappy', 'lz4', 'zstd'].indexOf(codec)),
    );
    await log.close();
  });
});
