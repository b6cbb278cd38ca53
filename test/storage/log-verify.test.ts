import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { readBatchHeader } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';
import { verifyLogDirectory } from '../../src/storage/log-verify.js';
import { segmentName } from '../../src/storage/segment.js';
import { batchOf } from './helpers.js';

/**
 * Proves that the offline verifier finds each kind of damage in a data directory, says where it
 * is, and reports a healthy directory as healthy.
 */
const dataDir = '/data';
const config = { segmentBytes: 1200, indexIntervalBytes: 200 };

async function dataDirectory(clean: boolean): Promise<{ fs: SimulatedFileSystem; bases: number[] }> {
  const fs = new SimulatedFileSystem();
  const manager = await LogManager.open({ dataDir, defaultConfig: config }, { fs, clock: new ManualClock() });
  const orders = await manager.getOrCreate('orders', 0);
  for (let i = 0; i < 60; i++)
    await orders.append(batchOf([`o${i}`.padEnd(50, '.')]), { assignOffsets: true });
  const other = await manager.getOrCreate('audit', 1);
  await other.append(batchOf(['a', 'b']), { assignOffsets: true });
  const bases = orders.segmentBaseOffsets();
  if (clean) await manager.close();
  else await orders.flush();
  return { fs, bases };
}

const segmentFile = (fs: SimulatedFileSystem, base: number, ext = 'log') =>
  fs.files.get(`${dataDir}/orders-0/${segmentName(base)}.${ext}`)!;

function batchPosition(content: Buffer, index: number): number {
  let pos = 0;
  for (let i = 0; i < index; i++) pos += 15 + readBatchHeader(content, pos).batchLength;
  return pos;
}

describe('verifyLogDirectory', () => {
  it('reports a healthy data directory as healthy, every batch checked', async () => {
    const { fs, bases } = await dataDirectory(true);
    const report = await verifyLogDirectory(dataDir, fs);
    expect(report.ok).toBe(true);
    expect(report.partitions.map((p) => [p.name, p.cleanShutdown, p.ok])).toEqual([
      ['audit-1', true, true],
      ['orders-0', true, true],
    ]);
    const orders = report.partitions[1]!;
    expect(orders.segments.map((s) => s.baseOffset)).toEqual(bases);
    expect(orders.segments.reduce((n, s) => n + s.batchesChecked, 0)).toBe(60);
    expect(orders.segments.at(-1)!.nextOffset).toBe(60);
  });

  it('names the first bad batch of an older segment whose CRC is wrong', async () => {
    const { fs, bases } = await dataDirectory(true);
    const file = segmentFile(fs, bases[1]!);
    const position = batchPosition(file.current, 2);
    file.current[position + 90]! ^= 0x10;
    const orders = (await verifyLogDirectory(dataDir, fs)).partitions.find((p) => p.name === 'orders-0')!;
    expect(orders.ok).toBe(false);
    const segment = orders.segments[1]!;
    expect(segment.batchesChecked).toBe(2);
    expect(segment.firstBadBatch).toMatchObject({ position, kind: 'corrupt', offset: bases[1]! + 2 });
    expect(segment.firstBadBatch!.reason).toMatch(/CRC/);
    expect(orders.segments.filter((s) => s.firstBadBatch).length).toBe(1);
  });

  it('reports a segment file missing between two others as a gap with its offsets', async () => {
    const { fs, bases } = await dataDirectory(true);
    for (const ext of ['log', 'index', 'timeindex'])
      await fs.unlink(`${dataDir}/orders-0/${segmentName(bases[2]!)}.${ext}`);
    const orders = (await verifyLogDirectory(dataDir, fs)).partitions.find((p) => p.name === 'orders-0')!;
    expect(orders.gaps).toEqual([
      {
        fromOffset: bases[2],
        toOffset: bases[3],
        before: `${segmentName(bases[1]!)}.log`,
        after: `${segmentName(bases[3]!)}.log`,
      },
    ]);
    expect(orders.ok).toBe(false);
  });

  it('finds index entries that do not point at the batch they name', async () => {
    const { fs, bases } = await dataDirectory(true);
    const index = segmentFile(fs, bases[0]!, 'index').current;
    expect(index.length).toBeGreaterThanOrEqual(16);
    index.writeUInt32BE(index.readUInt32BE(4) + 3, 4);
    index.writeUInt32BE(index.readUInt32BE(8) + 1, 8);
    const orders = (await verifyLogDirectory(dataDir, fs)).partitions.find((p) => p.name === 'orders-0')!;
    const problems = orders.segments[0]!.indexProblems;
    expect(problems.some((p) => p.includes('entry 0') && p.includes('not at the start of a batch'))).toBe(
      true,
    );
    expect(problems.some((p) => p.includes('entry 1') && p.includes('names the batch at offset'))).toBe(true);
    expect(orders.segments[0]!.firstBadBatch).toBeUndefined();
  });

  it('reports a torn tail of the active segment after a crash, with no clean-shutdown marker', async () => {
    const { fs, bases } = await dataDirectory(false);
    const file = segmentFile(fs, bases.at(-1)!);
    const cut = file.current.length - 10;
    file.current = file.current.subarray(0, cut);
    const orders = (await verifyLogDirectory(dataDir, fs)).partitions.find((p) => p.name === 'orders-0')!;
    expect(orders.cleanShutdown).toBe(false);
    expect(orders.segments.at(-1)!.firstBadBatch).toMatchObject({ kind: 'incomplete' });
    expect(orders.segments.at(-1)!.nextOffset).toBe(59);
  });
});
