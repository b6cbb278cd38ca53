import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import type { LogConfig } from '../../src/protocol/topic-config.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf, refusal, valuesOf } from './helpers.js';

/**
 * Proves the retention limit (`setRetentionLimit`, the high watermark in a replicated partition):
 * size and time retention, at a pass and at a roll, delete no segment whose last offset is at or
 * past it; compaction cleans nothing past it and lets no record past it supersede an older one;
 * `deleteRecordsBefore` refuses an offset above it; without a limit, nothing changes.
 */
const dir = '/d/rl-0';

async function setup(config: Partial<LogConfig>) {
  const clock = new ManualClock(1_000_000);
  const log = await PartitionLog.open(
    { dir, config: { flushPolicy: 'sync', segmentMs: Number.MAX_SAFE_INTEGER, ...config } },
    { fs: new SimulatedFileSystem(), clock },
  );
  return { clock, log };
}

/** Ten one-record segments, offsets 0-9 (the last one active), record timestamps 0-9. */
async function tenSegments(config: Partial<LogConfig>) {
  // Retention at a roll would delete while they are written: the config applies after.
  const made = await setup({ retentionBytes: -1, retentionMs: -1, segmentMs: 0 });
  for (let i = 0; i < 10; i++)
    await made.log.append(batchOf([`v${i}`], { timestamp: i }), { assignOffsets: true });
  expect(made.log.segmentBaseOffsets()).toEqual([...Array(10).keys()]);
  made.log.updateConfig(config);
  return made;
}

describe('the retention limit', () => {
  it('keeps size retention below it, and lets it go on as the limit moves', async () => {
    const { log } = await tenSegments({ retentionBytes: 0, retentionMs: -1 });
    let limit = 4;
    log.setRetentionLimit(() => limit);
    expect(await log.enforceRetention()).toEqual({ segmentsDeleted: 4 });
    expect(log.logStartOffset).toBe(4);
    // Segment 4 holds offset 4, the limit: it stays.
    expect(log.segmentBaseOffsets()[0]).toBe(4);
    expect(await log.enforceRetention()).toEqual({ segmentsDeleted: 0 });
    limit = 7;
    expect(await log.enforceRetention()).toEqual({ segmentsDeleted: 3 });
    expect(log.logStartOffset).toBe(7);
    await log.close();
  });

  it('keeps time retention below it', async () => {
    const { log } = await tenSegments({ retentionBytes: -1, retentionMs: 1 });
    log.setRetentionLimit(() => 2);
    expect(await log.enforceRetention()).toEqual({ segmentsDeleted: 2 });
    expect(log.logStartOffset).toBe(2);
    await log.close();
  });

  it('holds at a roll too (retention.bytes applied while appending)', async () => {
    const { log } = await setup({ retentionBytes: 1, retentionMs: -1, segmentMs: 0 });
    log.setRetentionLimit(() => 3);
    for (let i = 0; i < 10; i++) await log.append(batchOf([`v${i}`]), { assignOffsets: true });
    expect(log.logStartOffset).toBe(3);
    expect(log.segmentBaseOffsets()[0]).toBe(3);
    await log.close();
  });

  it('without a limit, or once it is removed, retention deletes as before', async () => {
    const unlimited = await tenSegments({ retentionBytes: 0, retentionMs: -1 });
    expect(await unlimited.log.enforceRetention()).toEqual({ segmentsDeleted: 9 });
    await unlimited.log.close();
    const { log } = await tenSegments({ retentionBytes: 0, retentionMs: -1 });
    log.setRetentionLimit(() => 0);
    expect(await log.enforceRetention()).toEqual({ segmentsDeleted: 0 });
    log.setRetentionLimit(undefined);
    expect(await log.enforceRetention()).toEqual({ segmentsDeleted: 9 });
    await log.close();
  });

  it('counts a limit that is not a number as 0: nothing is deleted', async () => {
    const { log } = await tenSegments({ retentionBytes: 0, retentionMs: -1 });
    log.setRetentionLimit(() => Number.NaN);
    expect(await log.enforceRetention()).toEqual({ segmentsDeleted: 0 });
    await log.close();
  });

  it('refuses deleteRecordsBefore above it with OFFSET_OUT_OF_RANGE, and allows it up to it', async () => {
    const { log } = await tenSegments({ retentionBytes: -1, retentionMs: -1 });
    log.setRetentionLimit(() => 5);
    const error = await refusal(log.deleteRecordsBefore(6));
    expect(error.code).toBe('OFFSET_OUT_OF_RANGE');
    expect(error.details).toMatchObject({ retentionLimit: 5 });
    expect(log.logStartOffset).toBe(0);
    await log.deleteRecordsBefore(5);
    expect(log.logStartOffset).toBe(5);
    await log.close();
  });

  it('compaction cleans no segment past it, and a record at or past it supersedes nothing', async () => {
    const { log } = await setup({ cleanupPolicy: 'compact' });
    const append = (key: string, value: string) =>
      log.append(batchOf([value], { keys: [key] }), { assignOffsets: true });
    const roll = () => log.updateConfig({ segmentMs: 0 });
    const stay = () => log.updateConfig({ segmentMs: Number.MAX_SAFE_INTEGER });
    // Segment 0: k=a0 @0, y=y0 @1. Segment 1: k=a1 @2, k=a2 @3, y=y1 @4. Segment 2 (active): z @5.
    await append('k', 'a0');
    await append('y', 'y0');
    roll();
    await append('k', 'a1');
    stay();
    await append('k', 'a2');
    await append('y', 'y1');
    roll();
    await append('z', 'z');
    expect(log.segmentBaseOffsets()).toEqual([0, 2, 5]);
    const kept = async () => {
      const out: string[] = [];
      for (let offset = log.logStartOffset; offset < log.logEndOffset; ) {
        const { records, nextOffset } = await log.readRecords(offset, { maxBytes: 1 << 20 });
        out.push(...records.map((r) => `${r.offset}:${valuesOf([r])[0]}`));
        offset = nextOffset;
      }
      return out;
    };
    let limit = 2;
    log.setRetentionLimit(() => limit);
    // k=a1 @2 is past the limit: it may yet be truncated away, so k=a0 is still the latest.
    expect(await log.compact()).toEqual({ segmentsCleaned: 0, recordsRemoved: 0 });
    expect(await kept()).toEqual(['0:a0', '1:y0', '2:a1', '3:a2', '4:y1', '5:z']);
    limit = 4;
    // Segment 0 is cleaned (k=a2 @3 supersedes k=a0); segment 1 ends past the limit, so its
    // k=a1 stays although k=a2 supersedes it.
    expect(await log.compact()).toEqual({ segmentsCleaned: 1, recordsRemoved: 1 });
    expect(await kept()).toEqual(['1:y0', '2:a1', '3:a2', '4:y1', '5:z']);
    limit = 5;
    expect(await log.compact()).toEqual({ segmentsCleaned: 1, recordsRemoved: 1 });
    // y=y0 is superseded but stays: the last record of its segment always does.
    expect(await kept()).toEqual(['1:y0', '3:a2', '4:y1', '5:z']);
    await log.close();
  });
});
