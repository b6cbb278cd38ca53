import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { isSluiceError, type SluiceError } from '../../src/common/errors.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { segmentName } from '../../src/storage/segment.js';
import { batchOf } from './helpers.js';

/**
 * Proves that a segment file lost while the broker was stopped is noticed at open: the log refuses
 * to open, naming the missing offsets, instead of jumping over them as if they had never existed.
 */
const dir = '/d/g-0';
const config = { segmentBytes: 300 };

async function logWithSegments(fs: SimulatedFileSystem, clean: boolean): Promise<number[]> {
  const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
  for (let i = 0; i < 40; i++) await log.append(batchOf([`v${i}`.padEnd(40, '.')]), { assignOffsets: true });
  const bases = log.segmentBaseOffsets();
  if (clean) await log.close();
  else await log.flush();
  return bases;
}

async function removeSegment(fs: SimulatedFileSystem, base: number): Promise<void> {
  for (const ext of ['log', 'index', 'timeindex']) await fs.unlink(`${dir}/${segmentName(base)}.${ext}`);
  await fs.syncDir(dir);
}

async function openRefusal(fs: SimulatedFileSystem): Promise<SluiceError> {
  try {
    const log = await PartitionLog.open({ dir, config }, { fs, clock: new ManualClock() });
    await log.close();
  } catch (error) {
    if (isSluiceError(error)) return error;
    throw error;
  }
  throw new Error('the log opened');
}

describe('a missing segment file', () => {
  for (const clean of [true, false]) {
    it(`between two segments refuses the open and names the missing range (${clean ? 'clean' : 'crashed'} shutdown)`, async () => {
      const fs = new SimulatedFileSystem();
      const bases = await logWithSegments(fs, clean);
      expect(bases.length).toBeGreaterThan(3);
      await removeSegment(fs, bases[1]!);
      const error = await openRefusal(fs);
      expect(error.code).toBe('KAFKA_STORAGE_ERROR');
      expect(error.retriable).toBe(false);
      expect(error.details).toMatchObject({ missingFromOffset: bases[1], missingToOffset: bases[2] });
      expect(error.message).toContain(`[${bases[1]}, ${bases[2]})`);
      expect(error.message).toContain(`${segmentName(bases[0]!)}.log`);
    });
  }

  it('at the start, below the recorded log start, refuses the open too', async () => {
    const fs = new SimulatedFileSystem();
    const bases = await logWithSegments(fs, true);
    await removeSegment(fs, bases[0]!);
    const error = await openRefusal(fs);
    expect(error.details).toMatchObject({ missingFromOffset: 0, missingToOffset: bases[1] });
  });

  it('after retention moved the log start, the first segment starting later is no gap', async () => {
    const fs = new SimulatedFileSystem();
    const clock = new ManualClock();
    const log = await PartitionLog.open({ dir, config }, { fs, clock });
    for (let i = 0; i < 40; i++)
      await log.append(batchOf([`v${i}`.padEnd(40, '.')]), { assignOffsets: true });
    const second = log.segmentBaseOffsets()[1]!;
    await log.deleteRecordsBefore(second);
    await log.close();
    const reopened = await PartitionLog.open({ dir, config }, { fs, clock });
    expect(reopened.logStartOffset).toBe(second);
    await reopened.close();
  });
});
