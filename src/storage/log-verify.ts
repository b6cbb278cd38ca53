import { type BatchHeader, checkBatchAt, nextOffsetOf } from '../protocol/batch.js';
import { DEFAULT_LOG_CONFIG } from '../protocol/topic-config.js';
import type { FileSystem } from './fs.js';
import { CLEAN_SHUTDOWN_FILE, LOG_START_FILE, readCheckpoint } from './partition-log.js';
import { INDEX_ENTRY_BYTES, segmentName, TIME_INDEX_ENTRY_BYTES } from './segment.js';

/**
 * The storage side of `sluice log verify DIR`: an offline check of every partition directory of a
 * data directory, every segment batch by batch (markers, length, CRC-32C, offsets increasing),
 * the gaps and overlaps between segments, and the sparse indexes against the batches. It only
 * reads, and it is meant for a stopped broker; the report is data for the CLI to print.
 */

/** Where a segment stops being readable. */
export interface BadBatch {
  /** Byte position in the `.log` file. */
  position: number;
  /** `incomplete`: cut short at the end of the file (a crash's torn tail); `corrupt`: damage; `offsets`: goes backwards. */
  kind: 'incomplete' | 'corrupt' | 'offsets';
  reason: string;
  /** The offset the batch's header claims, when the header could be read. */
  offset?: number;
}

export interface SegmentReport {
  file: string;
  baseOffset: number;
  bytes: number;
  batchesChecked: number;
  /** The offset after the last good batch (the base offset while none). */
  nextOffset: number;
  /** The first batch that is not a whole valid one; undefined when all are. */
  firstBadBatch?: BadBatch;
  /** Problems of `.index` and `.timeindex` against the batches (both are rebuilt at open when wrong). */
  indexProblems: string[];
}

export interface PartitionReport {
  name: string;
  dir: string;
  /** Whether the clean-shutdown marker is there: without it a torn tail in the last segment is a crash's normal residue. */
  cleanShutdown: boolean;
  logStartOffset: number;
  segments: SegmentReport[];
  /** Offsets no segment holds: between segments, or below the oldest one above the log start. */
  gaps: { fromOffset: number; toOffset: number; before: string; after: string }[];
  /** Segments whose offsets overlap the previous segment's. */
  overlaps: { file: string; baseOffset: number; previousNextOffset: number }[];
  ok: boolean;
}

export interface LogVerifyReport {
  dataDir: string;
  partitions: PartitionReport[];
  ok: boolean;
}

const SEGMENT_FILE = /^(\d{20})\.log$/;
/** Index problems listed per file before the rest are only counted. */
const INDEX_PROBLEMS_MAX = 20;

export async function verifyLogDirectory(
  dataDir: string,
  fs: FileSystem,
  options: { batchBytesMax?: number } = {},
): Promise<LogVerifyReport> {
  const batchBytesMax = Math.max(options.batchBytesMax ?? 0, DEFAULT_LOG_CONFIG.batchBytesMax);
  const partitions: PartitionReport[] = [];
  for (const name of await fs.readdir(dataDir)) {
    const dir = `${dataDir}/${name}`;
    const names = await listDir(fs, dir);
    if (names === undefined || !names.some((n) => SEGMENT_FILE.test(n))) continue;
    partitions.push(await verifyPartition(fs, dir, name, names, batchBytesMax));
  }
  return { dataDir, partitions, ok: partitions.every((p) => p.ok) };
}

/** The names in `path`, or undefined when it is not a directory. */
async function listDir(fs: FileSystem, path: string): Promise<string[] | undefined> {
  try {
    return await fs.readdir(path);
  } catch {
    // A file beside the partition directories (the topic registry, a lock) is no partition.
    return undefined;
  }
}

async function verifyPartition(
  fs: FileSystem,
  dir: string,
  name: string,
  names: readonly string[],
  batchBytesMax: number,
): Promise<PartitionReport> {
  const bases = names
    .map((n) => SEGMENT_FILE.exec(n)?.[1])
    .filter((b): b is string => b !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  const report: PartitionReport = {
    name,
    dir,
    cleanShutdown: names.includes(CLEAN_SHUTDOWN_FILE),
    logStartOffset: await readCheckpoint(fs, `${dir}/${LOG_START_FILE}`),
    segments: [],
    gaps: [],
    overlaps: [],
    ok: true,
  };
  for (const base of bases) {
    const segment = await verifySegment(fs, dir, base, names, batchBytesMax);
    const previous = report.segments.at(-1);
    if (previous === undefined && report.logStartOffset < base) {
      report.gaps.push({
        fromOffset: report.logStartOffset,
        toOffset: base,
        before: LOG_START_FILE,
        after: segment.file,
      });
    }
    // A damaged segment's end is unknown: only a whole one can show a gap.
    if (previous && previous.firstBadBatch === undefined) {
      if (previous.nextOffset < base)
        report.gaps.push({
          fromOffset: previous.nextOffset,
          toOffset: base,
          before: previous.file,
          after: segment.file,
        });
      if (previous.nextOffset > base)
        report.overlaps.push({
          file: segment.file,
          baseOffset: base,
          previousNextOffset: previous.nextOffset,
        });
    }
    report.segments.push(segment);
  }
  report.ok =
    report.gaps.length === 0 &&
    report.overlaps.length === 0 &&
    report.segments.every((s) => s.firstBadBatch === undefined && s.indexProblems.length === 0);
  return report;
}

async function verifySegment(
  fs: FileSystem,
  dir: string,
  baseOffset: number,
  names: readonly string[],
  batchBytesMax: number,
): Promise<SegmentReport> {
  const name = segmentName(baseOffset);
  const report: SegmentReport = {
    file: `${name}.log`,
    baseOffset,
    bytes: 0,
    batchesChecked: 0,
    nextOffset: baseOffset,
    indexProblems: [],
  };
  const batchStarts = new Map<number, BatchHeader>();
  const handle = await fs.open(`${dir}/${name}.log`);
  try {
    report.bytes = await handle.size();
    const chunkBytes = Math.max(1 << 20, batchBytesMax);
    const buf = Buffer.allocUnsafe(chunkBytes);
    let pos = 0;
    while (pos < report.bytes && report.firstBadBatch === undefined) {
      const n = await handle.read(buf, 0, Math.min(chunkBytes, report.bytes - pos), pos);
      const walked = walkChunk(buf, n, pos, pos + n >= report.bytes, batchBytesMax, report, batchStarts);
      if (walked === 0 && report.firstBadBatch === undefined)
        report.firstBadBatch = {
          position: pos,
          kind: 'corrupt',
          reason: 'batch larger than the read buffer',
        };
      pos += walked;
    }
  } finally {
    await handle.close();
  }
  if (names.includes(`${name}.index`)) await checkIndex(fs, `${dir}/${name}.index`, report, batchStarts);
  if (names.includes(`${name}.timeindex`))
    await checkTimeIndex(fs, `${dir}/${name}.timeindex`, report, batchStarts);
  return report;
}

/**
 * Checks the whole batches in `buf[0, n)`, the bytes at file position `at`, into `report`; returns
 * the bytes consumed. A batch cut off by the end of the chunk (not the file) is left for the next.
 */
function walkChunk(
  buf: Buffer,
  n: number,
  at: number,
  reachesEnd: boolean,
  batchBytesMax: number,
  report: SegmentReport,
  batchStarts: Map<number, BatchHeader>,
): number {
  let off = 0;
  while (off < n) {
    const check = checkBatchAt(buf, off, n, batchBytesMax);
    if (!check.ok) {
      if (check.reason === 'incomplete' && !reachesEnd && off > 0) return off;
      // The base offset's u64 follows the fixarray byte and the 0xcf marker.
      const offset = n - off >= 10 ? Number(buf.readBigUInt64BE(off + 2)) : undefined;
      report.firstBadBatch = {
        position: at + off,
        kind: check.reason,
        reason: check.message,
        ...(offset === undefined ? {} : { offset }),
      };
      return off;
    }
    const { header } = check;
    if (header.baseOffset < report.nextOffset) {
      report.firstBadBatch = {
        position: at + off,
        kind: 'offsets',
        reason: `batch starts at offset ${header.baseOffset}, the one before ends at ${report.nextOffset}`,
        offset: header.baseOffset,
      };
      return off;
    }
    batchStarts.set(at + off, header);
    report.batchesChecked++;
    report.nextOffset = nextOffsetOf(header);
    off += check.size;
  }
  return off;
}

function addIndexProblem(report: SegmentReport, problem: string): void {
  if (report.indexProblems.length < INDEX_PROBLEMS_MAX) report.indexProblems.push(problem);
  else if (report.indexProblems.length === INDEX_PROBLEMS_MAX) report.indexProblems.push('and more');
}

/** An index file's bytes and name; a length that is not whole entries is a problem of the report. */
async function readIndexFile(
  fs: FileSystem,
  path: string,
  report: SegmentReport,
  entryBytes: number,
): Promise<{ data: Buffer; file: string }> {
  const data = (await fs.readFile(path)) ?? Buffer.alloc(0);
  const file = path.slice(path.lastIndexOf('/') + 1);
  if (data.length % entryBytes !== 0)
    addIndexProblem(report, `${file}: ${data.length} bytes is not a whole number of entries`);
  return { data, file };
}

/** `.index`: 8-byte entries, increasing, each at a batch start whose offset it names. */
async function checkIndex(
  fs: FileSystem,
  path: string,
  report: SegmentReport,
  batchStarts: ReadonlyMap<number, BatchHeader>,
): Promise<void> {
  const { data, file } = await readIndexFile(fs, path, report, INDEX_ENTRY_BYTES);
  let lastRelative = -1;
  let lastPosition = -1;
  for (let at = 0; at + INDEX_ENTRY_BYTES <= data.length; at += INDEX_ENTRY_BYTES) {
    const relative = data.readUInt32BE(at);
    const position = data.readUInt32BE(at + 4);
    const entry = `${file} entry ${at / INDEX_ENTRY_BYTES} (offset ${report.baseOffset + relative}, position ${position})`;
    if (relative <= lastRelative || position <= lastPosition)
      addIndexProblem(report, `${entry} does not increase`);
    const header = batchStarts.get(position);
    if (position >= report.bytes) addIndexProblem(report, `${entry} points past the end of the log file`);
    else if (header === undefined) {
      // Past the first bad batch the batch starts are unknown.
      if (report.firstBadBatch === undefined || position < report.firstBadBatch.position)
        addIndexProblem(report, `${entry} is not at the start of a batch`);
    } else if (header.baseOffset !== report.baseOffset + relative) {
      addIndexProblem(report, `${entry} names the batch at offset ${header.baseOffset}`);
    }
    lastRelative = relative;
    lastPosition = position;
  }
}

/** `.timeindex`: 12-byte entries, timestamps not decreasing, each naming a batch's first offset. */
async function checkTimeIndex(
  fs: FileSystem,
  path: string,
  report: SegmentReport,
  batchStarts: ReadonlyMap<number, BatchHeader>,
): Promise<void> {
  const { data, file } = await readIndexFile(fs, path, report, TIME_INDEX_ENTRY_BYTES);
  const batchOffsets = new Set([...batchStarts.values()].map((h) => h.baseOffset));
  let lastTimestamp = Number.NEGATIVE_INFINITY;
  for (let at = 0; at + TIME_INDEX_ENTRY_BYTES <= data.length; at += TIME_INDEX_ENTRY_BYTES) {
    const timestamp = Number(data.readBigInt64BE(at));
    const offset = report.baseOffset + data.readUInt32BE(at + 8);
    const entry = `${file} entry ${at / TIME_INDEX_ENTRY_BYTES} (timestamp ${timestamp}, offset ${offset})`;
    if (timestamp < lastTimestamp) addIndexProblem(report, `${entry} goes back in time`);
    if (!batchOffsets.has(offset) && (report.firstBadBatch === undefined || offset < report.nextOffset))
      addIndexProblem(report, `${entry} is not the first offset of a batch`);
    lastTimestamp = timestamp;
  }
}
