import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { checkBatchAt, readBatchHeader } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { segmentName } from '../../src/storage/segment.js';
import { batchOf, refusal } from './helpers.js';

/**
 * Proves that a read with `verify` checks the CRC-32C of every batch it returns: one byte changed
 * on disk, where nothing else looks (an older segment, or the active one after a clean shutdown),
 * is refused as CORRUPT_MESSAGE naming the batch, while the good batches before it are served.
 */
const dir = '/d/v-0';
const config = { segmentBytes: 3000 };

async function damagedLog(pick: (bases: number[]) => { segment: number; batch: number }) {
  const fs = new SimulatedFileSystem();
  const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
  for (let i = 0; i < 100; i++) await log.append(batchOf([`v${i}`.padEnd(60, '.')]), { assignOffsets: true });
  const bases = log.segmentBaseOffsets();
  await log.close();
  const { segment, batch } = pick(bases);
  const file = fs.files.get(`${dir}/${segmentName(segment)}.log`)!;
  let pos = 0;
  for (let b = segment; b < batch; b++) pos += 15 + readBatchHeader(file.current, pos).batchLength;
  // A byte of the record's value: inside what the CRC covers, outside every header field.
  for (const content of [file.current, file.durable]) content[pos + 100]! ^= 0x01;
  const reopened = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
  expect(reopened.recoveryReport).toBeUndefined();
  return reopened;
}

describe('verified reads', () => {
  it('refuse a batch of an older segment whose CRC is wrong, naming its offset, after serving the good ones', async () => {
    const log = await damagedLog((bases) => ({ segment: bases[0]!, batch: 7 }));
    // The unverified path serves the bytes as stored.
    expect((await log.read(7, { maxBytes: 1 })).batchCount).toBe(1);
    const prefix = await log.read(2, { maxBytes: 1 << 20, verify: true });
    expect([prefix.batchCount, prefix.nextOffset]).toEqual([5, 7]);
    expect(checkBatchAt(prefix.data).ok).toBe(true);
    const error = await refusal(log.read(7, { maxBytes: 1 << 20, verify: true }));
    expect(error.code).toBe('CORRUPT_MESSAGE');
    expect(error.retriable).toBe(false);
    expect(error.details).toMatchObject({ batchOffset: 7, nextReadableOffset: 8 });
    expect(error.message).toContain('offset 7');
    expect((await log.read(8, { maxBytes: 1 << 20, verify: true })).batchCount).toBeGreaterThan(0);
    await log.close();
  });

  it('refuse the damaged last batch of the active segment after a clean shutdown', async () => {
    const log = await damagedLog((bases) => ({ segment: bases.at(-1)!, batch: 99 }));
    const error = await refusal(log.read(99, { maxBytes: 1 << 20, verify: true }));
    expect(error.details).toMatchObject({ batchOffset: 99, nextReadableOffset: 100 });
    await log.close();
  });

  it('keep the room asked for around verified data', async () => {
    const log = await damagedLog((bases) => ({ segment: bases[0]!, batch: 7 }));
    const result = await log.read(0, { maxBytes: 1 << 20, verify: true, reserve: { before: 8, after: 8 } });
    expect(result.data.byteOffset).toBeGreaterThanOrEqual(8);
    expect(
      result.data.buffer.byteLength - result.data.byteOffset - result.data.length,
    ).toBeGreaterThanOrEqual(8);
    expect(result.nextOffset).toBe(7);
    await log.close();
  });
});
