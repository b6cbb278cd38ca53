import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { readBatchHeader } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { segmentName } from '../../src/storage/segment.js';
import { batchOf, refusal, valuesOf } from './helpers.js';

/**
 * Proves that damage found on disk by a read is reported as corruption, not as a passing storage
 * trouble: not retriable, naming where reading can go on, and a read from there works.
 */
const dir = '/d/c-0';
const config = { segmentBytes: 4000, indexIntervalBytes: 300 };

/** A cleanly closed log of single-record batches whose first segment is no longer active. */
async function closedLog(fs: SimulatedFileSystem): Promise<{ positions: number[] }> {
  const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
  for (let i = 0; i < 80; i++) await log.append(batchOf([`v${i}`.padEnd(60, '.')]), { assignOffsets: true });
  expect(log.segmentCount).toBeGreaterThan(1);
  await log.close();
  const file = fs.files.get(`${dir}/${segmentName(0)}.log`)!.current;
  const positions: number[] = [];
  for (let pos = 0; pos < file.length; pos += 15 + readBatchHeader(file, pos).batchLength)
    positions.push(pos);
  return { positions };
}

describe('a damaged batch in an older segment', () => {
  it('a corrupt length field is a non-retriable CORRUPT_MESSAGE that names the next readable offset, and reading there works', async () => {
    const fs = new SimulatedFileSystem();
    const { positions } = await closedLog(fs);
    const file = fs.files.get(`${dir}/${segmentName(0)}.log`)!;
    const damaged = positions[5]!;
    for (const content of [file.current, file.durable])
      content.writeUInt32BE(content.readUInt32BE(damaged + 11) + 7, damaged + 11);
    const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    const error = await refusal(log.read(0, { maxBytes: 1 << 20 }));
    expect(error.code).toBe('CORRUPT_MESSAGE');
    expect(error.retriable).toBe(false);
    const next = error.details.nextReadableOffset as number;
    expect(next).toBeGreaterThan(5);
    expect(next).toBeLessThanOrEqual(log.segmentBaseOffsets()[1]!);
    // The same answer every time: the damage does not go away by retrying.
    expect((await refusal(log.read(5, { maxBytes: 1 << 20 }))).details.nextReadableOffset).toBe(next);
    const after = await log.readRecords(next, { maxBytes: 1 << 20 });
    expect(valuesOf(after.records)[0]).toBe(`v${next}`.padEnd(60, '.'));
    // Reads before the damage, within their byte budget, still work.
    expect(valuesOf((await log.readRecords(0, { maxBytes: 1 })).records)).toEqual(['v0'.padEnd(60, '.')]);
    await log.close();
  });

  it('a length that runs past the end of the segment is corruption too, not an empty read', async () => {
    const fs = new SimulatedFileSystem();
    const { positions } = await closedLog(fs);
    const file = fs.files.get(`${dir}/${segmentName(0)}.log`)!;
    const damaged = positions[3]!;
    for (const content of [file.current, file.durable]) content.writeUInt32BE(0x00ff_0000, damaged + 11);
    const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    const error = await refusal(log.read(3, { maxBytes: 100 }));
    expect(error.code).toBe('CORRUPT_MESSAGE');
    expect(error.details.nextReadableOffset as number).toBeGreaterThan(3);
    await log.close();
  });
});
