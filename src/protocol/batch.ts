import { isUtf8 } from 'node:buffer';
import { assert } from '../common/assert.js';
import { crc32c } from '../common/crc32c.js';
import { isSluiceError, SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { CODEC_NAMES, type CodecName, codecId, codecs } from './compression.js';

/**
 * The record batch: the unit that producers send, the log stores and consumers fetch.
 *
 * A stored batch is itself one msgpack value (a 14-element array), so that a fetch response can
 * carry stored batches byte for byte inside a msgpack array and any stock msgpack decoder reads
 * it. Header fields use fixed-width msgpack forms so that they sit at fixed positions and a
 * leader can rewrite `baseOffset` and `partitionLeaderEpoch` in place; both come before `crc`,
 * which covers only the bytes after it, so rewriting them needs no new CRC (as Kafka's v2 batch).
 *
 *   pos len bytes                    field
 *   0   1   0x9e                     fixarray, 14 elements
 *   1   9   0xcf u64                 [0]  baseOffset             rewritten by the leader
 *   10  5   0xce u32                 [1]  batchLength            bytes after this field
 *   15  5   0xd2 i32                 [2]  partitionLeaderEpoch   rewritten by the leader
 *   20  1   0x02                     [3]  magic (positive fixint 2)
 *   21  5   0xce u32                 [4]  crc: CRC-32C of bytes [26, end)
 *   26  3   0xcd u16                 [5]  attributes: bits 0-2 codec (0 none), bit 3 timestamp
 *                                         type, bit 4 transactional, bit 5 control
 *   29  5   0xce u32                 [6]  lastOffsetDelta
 *   34  9   0xd3 i64                 [7]  baseTimestamp (ms)
 *   43  9   0xd3 i64                 [8]  maxTimestamp (ms)
 *   52  9   0xd3 i64                 [9]  producerId (-1: none)
 *   61  3   0xd1 i16                 [10] producerEpoch (-1: none)
 *   64  5   0xd2 i32                 [11] baseSequence (-1: none)
 *   69  5   0xce u32                 [12] recordCount
 *   74  5   0xdd u32                 [13] records: array32 of recordCount records (codec none)
 *           0xc6 u32                      or bin32: the codec's output for the records (compressed)
 *   79  ...                               the records, or their compressed bytes
 *
 * A record is a msgpack array of 5 in the shortest msgpack forms:
 *   [offsetDelta uint, timestampDelta int, key bin|nil, value bin|nil, headers [[name str, value bin|nil], ...]]
 *
 * All multi-byte integers are big-endian, as msgpack defines. A whole batch is
 * `BATCH_LENGTH_PREFIX_BYTES + batchLength` bytes.
 *
 * A compressed batch (attributes codec 1-4, compression.ts) keeps the same header, and its element
 * [13] is one bin32 whose bytes are the codec's output for exactly the bytes that follow the
 * array32 header in the uncompressed batch (the records back to back). The batch stays one msgpack
 * value, the CRC covers the compressed bytes (so a follower checks it without decompressing), and
 * `recordCount` says how many records decompressing must give.
 */

export const BATCH_HEADER_BYTES = 79;
export const BATCH_LENGTH_PREFIX_BYTES = 15;
export const BATCH_MAGIC = 2;
export const BATCH_CRC_START = 26;
export const BATCH_RECORDS_START = 74;

const POS = {
  arrayMarker: 0,
  baseOffset: 1,
  batchLength: 10,
  partitionLeaderEpoch: 15,
  magic: 20,
  crc: 21,
  attributes: 26,
  lastOffsetDelta: 29,
  baseTimestamp: 34,
  maxTimestamp: 43,
  producerId: 52,
  producerEpoch: 61,
  baseSequence: 64,
  recordCount: 69,
  recordsArray: 74,
} as const;

/** The markers every header must carry at its fixed positions, checked before anything is trusted. */
const MARKERS: readonly (readonly [number, number])[] = [
  [POS.arrayMarker, 0x9e],
  [POS.baseOffset, 0xcf],
  [POS.batchLength, 0xce],
  [POS.partitionLeaderEpoch, 0xd2],
  [POS.magic, BATCH_MAGIC],
  [POS.crc, 0xce],
  [POS.attributes, 0xcd],
  [POS.lastOffsetDelta, 0xce],
  [POS.baseTimestamp, 0xd3],
  [POS.maxTimestamp, 0xd3],
  [POS.producerId, 0xd3],
  [POS.producerEpoch, 0xd1],
  [POS.baseSequence, 0xd2],
  [POS.recordCount, 0xce],
];
/** Element [13]: an array32 of records in an uncompressed batch, a bin32 in a compressed one. */
const RECORDS_ARRAY32 = 0xdd;
const RECORDS_BIN32 = 0xc6;

export const ATTRIBUTE_CODEC_MASK = 0x07;
export const ATTRIBUTE_LOG_APPEND_TIME = 0x08;
export const ATTRIBUTE_TRANSACTIONAL = 0x10;
export const ATTRIBUTE_CONTROL = 0x20;
/** The attribute bits that mean something; any other set bit is refused. */
const ATTRIBUTES_KNOWN = 0x3f;

/**
 * The smallest encoded record: fixarray 5, offset and timestamp deltas as fixints, nil key, nil
 * value, no headers. A batch cannot hold more records than its bytes fit at this size.
 */
const RECORD_BYTES_MIN = 6;

export type Header = readonly [name: string, value: Uint8Array | null];

export interface RecordInput {
  key?: Uint8Array | null;
  value?: Uint8Array | null;
  headers?: readonly Header[];
  /** Milliseconds since the epoch. */
  timestamp: number;
  /**
   * Offset relative to the batch's base offset; defaults to the record's index. Compaction keeps
   * the original offsets of the records it keeps, so a compacted batch has gaps.
   */
  offsetDelta?: number;
}

export interface BatchRecord {
  offset: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Header[];
}

export interface BatchHeader {
  baseOffset: number;
  batchLength: number;
  partitionLeaderEpoch: number;
  magic: number;
  crc: number;
  attributes: number;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

/** The idempotent producer fields of a batch. */
export interface ProducerFields {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
}

export interface EncodeBatchOptions {
  baseOffset?: number;
  partitionLeaderEpoch?: number;
  attributes?: number;
  producerId?: number;
  producerEpoch?: number;
  baseSequence?: number;
  /** Defaults to the largest offsetDelta; compaction keeps a batch's original last offset. */
  lastOffsetDelta?: number;
  /**
   * Compresses the records with this codec (and level, where the codec has levels). Without it,
   * the codec the attributes name (bits 0-2) is used: compaction re-encodes a batch in its codec.
   */
  compression?: { codec: CodecName; level?: number };
}

/** Total size in bytes of a batch: header prefix plus batchLength. */
export function batchSize(header: Pick<BatchHeader, 'batchLength'>): number {
  return BATCH_LENGTH_PREFIX_BYTES + header.batchLength;
}

/** The offset after the batch's last record. */
export function nextOffsetOf(header: Pick<BatchHeader, 'baseOffset' | 'lastOffsetDelta'>): number {
  return header.baseOffset + header.lastOffsetDelta + 1;
}

export function encodeBatch(records: readonly RecordInput[], options: EncodeBatchOptions = {}): Buffer {
  if (records.length === 0) throw new SluiceError('INVALID_RECORD', 'a batch holds at least one record');
  if (records.length > LIMITS.batchRecordsMax) {
    throw new SluiceError('TOO_MANY_RECORDS', `a batch holds at most ${LIMITS.batchRecordsMax} records`);
  }
  let baseTimestamp = records[0]!.timestamp;
  let maxTimestamp = baseTimestamp;
  let size = 0;
  let lastOffsetDelta = -1;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    const offsetDelta = r.offsetDelta ?? i;
    if (!Number.isSafeInteger(offsetDelta) || offsetDelta <= lastOffsetDelta) {
      throw new SluiceError('INVALID_RECORD', 'record offset deltas must increase');
    }
    lastOffsetDelta = offsetDelta;
    if (!Number.isSafeInteger(r.timestamp) || r.timestamp < -1) {
      throw new SluiceError('INVALID_TIMESTAMP', `timestamp ${r.timestamp} is not a valid millisecond time`);
    }
    if (r.timestamp < baseTimestamp) baseTimestamp = r.timestamp;
    if (r.timestamp > maxTimestamp) maxTimestamp = r.timestamp;
    size += recordSizeBound(r);
  }
  return encodeBatchWith(
    records.length,
    size,
    (buf, pos, i) => writeRecord(buf, pos, records[i]!, records[i]!.offsetDelta ?? i, baseTimestamp),
    {
      ...options,
      baseTimestamp,
      maxTimestamp,
      lastOffsetDelta: Math.max(lastOffsetDelta, options.lastOffsetDelta ?? -1),
    },
  );
}

/**
 * Encodes a batch of `count` records whose bytes `writeRecord` puts at `pos` (returning the
 * position after the record), within `recordBytesBound` bytes in all. Offsets run 0..count-1
 * unless `lastOffsetDelta` says otherwise; header fields not given take their defaults (no leader
 * epoch, no producer). For encoders that copy records from elsewhere without building `RecordInput`s.
 */
export function encodeBatchWith(
  count: number,
  recordBytesBound: number,
  writeRecord: (buf: Buffer, pos: number, n: number) => number,
  header: EncodeBatchOptions & { baseTimestamp: number; maxTimestamp: number },
): Buffer {
  assert(count >= 1, 'a batch holds at least one record');
  if (count > LIMITS.batchRecordsMax) {
    throw new SluiceError('TOO_MANY_RECORDS', `a batch holds at most ${LIMITS.batchRecordsMax} records`);
  }
  const buf = Buffer.allocUnsafe(BATCH_HEADER_BYTES + recordBytesBound);
  let pos = BATCH_HEADER_BYTES;
  for (let n = 0; n < count; n++) pos = writeRecord(buf, pos, n);
  assert(pos <= buf.length, 'records overran their size bound');
  const out = buf.subarray(0, pos);
  const attributes = header.attributes ?? 0;
  writeHeader(out, {
    baseOffset: header.baseOffset ?? 0,
    partitionLeaderEpoch: header.partitionLeaderEpoch ?? -1,
    attributes: attributes & ~ATTRIBUTE_CODEC_MASK,
    lastOffsetDelta: header.lastOffsetDelta ?? count - 1,
    baseTimestamp: header.baseTimestamp,
    maxTimestamp: header.maxTimestamp,
    producerId: header.producerId ?? -1,
    producerEpoch: header.producerEpoch ?? -1,
    baseSequence: header.baseSequence ?? -1,
    recordCount: count,
  });
  const codec = header.compression?.codec ?? CODEC_NAMES[attributes & ATTRIBUTE_CODEC_MASK] ?? 'none';
  if (codec === 'none') return out;
  return compressBatch(out, codec, header.compression?.level);
}

/**
 * The uncompressed batch `plain` (at 0, checked or built here) compressed with `codec`: the same
 * header with the codec in its attributes, the records as one bin32 of the codec's output, a new
 * CRC. `none` gives `plain` itself.
 */
export function compressBatch(plain: Buffer, codec: CodecName, level?: number): Buffer {
  if (codec === 'none') return plain;
  const id = codecId(codec);
  const compressed = codecs.get(id).compress(plain.subarray(BATCH_HEADER_BYTES), level);
  const out = Buffer.allocUnsafe(BATCH_HEADER_BYTES + compressed.length);
  plain.copy(out, 0, 0, BATCH_HEADER_BYTES);
  compressed.copy(out, BATCH_HEADER_BYTES);
  out.writeUInt32BE(out.length - BATCH_LENGTH_PREFIX_BYTES, POS.batchLength + 1);
  out.writeUInt16BE(
    (plain.readUInt16BE(POS.attributes + 1) & ~ATTRIBUTE_CODEC_MASK) | id,
    POS.attributes + 1,
  );
  out[POS.recordsArray] = RECORDS_BIN32;
  out.writeUInt32BE(compressed.length, POS.recordsArray + 1);
  out.writeUInt32BE(crc32c(out.subarray(BATCH_CRC_START)), POS.crc + 1);
  return out;
}

/** The codec number (0 none) in the attributes of the batch at `pos`. */
export function batchCodecAt(buf: Uint8Array, pos = 0): number {
  return asBuffer(buf).readUInt16BE(pos + POS.attributes + 1) & ATTRIBUTE_CODEC_MASK;
}

/**
 * The batch at `pos` (framing checked) uncompressed: for a compressed batch, a new buffer with the
 * same header (codec bits cleared, base offset and leader epoch as they are), the records array
 * and a new CRC; an uncompressed batch is returned as a view. Decompresses to at most
 * `uncompressedBytesMax` bytes of batch (DECOMPRESSED_TOO_LARGE past it); CORRUPT_MESSAGE when the
 * codec's data is damaged; UNSUPPORTED_COMPRESSION_TYPE when the codec is not loaded here. The
 * records are not checked: the caller decodes or walks them.
 */
export function decompressBatch(
  buf: Uint8Array,
  pos = 0,
  uncompressedBytesMax: number = LIMITS.uncompressedBatchBytesMax,
): Buffer {
  const b = asBuffer(buf);
  const size = BATCH_LENGTH_PREFIX_BYTES + b.readUInt32BE(pos + POS.batchLength + 1);
  if (batchCodecAt(b, pos) === 0) return b.subarray(pos, pos + size);
  // Copied into the new batch at once: the codec's reused memory serves.
  const records = decompressRecords(b, pos, uncompressedBytesMax, true);
  const out = Buffer.allocUnsafe(BATCH_HEADER_BYTES + records.length);
  b.copy(out, 0, pos, pos + BATCH_HEADER_BYTES);
  records.copy(out, BATCH_HEADER_BYTES);
  out.writeUInt32BE(out.length - BATCH_LENGTH_PREFIX_BYTES, POS.batchLength + 1);
  out.writeUInt16BE(b.readUInt16BE(pos + POS.attributes + 1) & ~ATTRIBUTE_CODEC_MASK, POS.attributes + 1);
  out[POS.recordsArray] = RECORDS_ARRAY32;
  out.writeUInt32BE(b.readUInt32BE(pos + POS.recordCount + 1), POS.recordsArray + 1);
  out.writeUInt32BE(crc32c(out.subarray(BATCH_CRC_START)), POS.crc + 1);
  return out;
}

/**
 * The records bytes of the compressed batch at `pos`, decompressed (what follows the array32
 * header in the uncompressed batch); the checks and errors of `decompressBatch`. `transient`:
 * in the codec's reused memory (`Codec.decompressTransient`), for a caller that reads the bytes
 * before the codec's next call and keeps nothing of them.
 */
function decompressRecords(b: Buffer, pos: number, uncompressedBytesMax: number, transient = false): Buffer {
  const size = BATCH_LENGTH_PREFIX_BYTES + b.readUInt32BE(pos + POS.batchLength + 1);
  const codec = codecs.get(batchCodecAt(b, pos));
  const data = b.subarray(pos + BATCH_HEADER_BYTES, pos + size);
  const limitBytes = Math.max(0, uncompressedBytesMax - BATCH_HEADER_BYTES);
  return transient ? codec.decompressTransient(data, limitBytes) : codec.decompress(data, limitBytes);
}

function writeHeader(buf: Buffer, h: Omit<BatchHeader, 'batchLength' | 'magic' | 'crc'>): void {
  buf[POS.arrayMarker] = 0x9e;
  buf[POS.baseOffset] = 0xcf;
  buf.writeBigUInt64BE(BigInt(h.baseOffset), POS.baseOffset + 1);
  buf[POS.batchLength] = 0xce;
  buf.writeUInt32BE(buf.length - BATCH_LENGTH_PREFIX_BYTES, POS.batchLength + 1);
  buf[POS.partitionLeaderEpoch] = 0xd2;
  buf.writeInt32BE(h.partitionLeaderEpoch, POS.partitionLeaderEpoch + 1);
  buf[POS.magic] = BATCH_MAGIC;
  buf[POS.crc] = 0xce;
  buf[POS.attributes] = 0xcd;
  buf.writeUInt16BE(h.attributes, POS.attributes + 1);
  buf[POS.lastOffsetDelta] = 0xce;
  buf.writeUInt32BE(h.lastOffsetDelta, POS.lastOffsetDelta + 1);
  buf[POS.baseTimestamp] = 0xd3;
  buf.writeBigInt64BE(BigInt(h.baseTimestamp), POS.baseTimestamp + 1);
  buf[POS.maxTimestamp] = 0xd3;
  buf.writeBigInt64BE(BigInt(h.maxTimestamp), POS.maxTimestamp + 1);
  buf[POS.producerId] = 0xd3;
  buf.writeBigInt64BE(BigInt(h.producerId), POS.producerId + 1);
  buf[POS.producerEpoch] = 0xd1;
  buf.writeInt16BE(h.producerEpoch, POS.producerEpoch + 1);
  buf[POS.baseSequence] = 0xd2;
  buf.writeInt32BE(h.baseSequence, POS.baseSequence + 1);
  buf[POS.recordCount] = 0xce;
  buf.writeUInt32BE(h.recordCount, POS.recordCount + 1);
  buf[POS.recordsArray] = 0xdd;
  buf.writeUInt32BE(h.recordCount, POS.recordsArray + 1);
  buf.writeUInt32BE(crc32c(buf.subarray(BATCH_CRC_START)), POS.crc + 1);
}

/** An upper bound of a record's encoded size (strings counted at 3 bytes per UTF-16 unit). */
function recordSizeBound(r: RecordInput): number {
  let n = 1 + 9 + 9 + 5 + 5 + 5; // array, offsetDelta, timestampDelta, key/value/headers markers
  if (r.key) n += r.key.length;
  if (r.value) n += r.value.length;
  const headers = r.headers ?? [];
  if (headers.length > LIMITS.headersPerRecordMax) {
    throw new SluiceError('INVALID_RECORD', `a record holds at most ${LIMITS.headersPerRecordMax} headers`);
  }
  for (const [name, value] of headers) {
    if (typeof name !== 'string') throw new SluiceError('INVALID_RECORD', 'a header name must be a string');
    n += 1 + 5 + name.length * 3 + 5 + (value ? value.length : 0);
  }
  return n;
}

function writeRecord(
  buf: Buffer,
  pos: number,
  r: RecordInput,
  offsetDelta: number,
  baseTimestamp: number,
): number {
  buf[pos++] = 0x95;
  pos = writeInt(buf, pos, offsetDelta);
  pos = writeInt(buf, pos, r.timestamp - baseTimestamp);
  pos = writeBin(buf, pos, r.key ?? null);
  pos = writeBin(buf, pos, r.value ?? null);
  const headers = r.headers ?? [];
  pos = writeArrayHeader(buf, pos, headers.length);
  for (const [name, value] of headers) {
    buf[pos++] = 0x92;
    pos = writeStr(buf, pos, name);
    pos = writeBin(buf, pos, value);
  }
  return pos;
}

/** A msgpack integer in its shortest form. */
export function writeInt(buf: Buffer, pos: number, n: number): number {
  if (n >= 0 && n < 128) {
    buf[pos] = n;
    return pos + 1;
  }
  if (n < 0 && n >= -32) {
    buf[pos] = n & 0xff;
    return pos + 1;
  }
  if (n >= 0) {
    if (n < 0x100) return buf.writeUInt8(n, writeMarker(buf, pos, 0xcc));
    if (n < 0x10000) return buf.writeUInt16BE(n, writeMarker(buf, pos, 0xcd));
    if (n < 0x100000000) return buf.writeUInt32BE(n, writeMarker(buf, pos, 0xce));
    return buf.writeBigUInt64BE(BigInt(n), writeMarker(buf, pos, 0xcf));
  }
  if (n >= -0x80) return buf.writeInt8(n, writeMarker(buf, pos, 0xd0));
  if (n >= -0x8000) return buf.writeInt16BE(n, writeMarker(buf, pos, 0xd1));
  if (n >= -0x80000000) return buf.writeInt32BE(n, writeMarker(buf, pos, 0xd2));
  return buf.writeBigInt64BE(BigInt(n), writeMarker(buf, pos, 0xd3));
}

function writeMarker(buf: Buffer, pos: number, marker: number): number {
  buf[pos] = marker;
  return pos + 1;
}

function writeBin(buf: Buffer, pos: number, data: Uint8Array | null): number {
  if (data === null) return writeMarker(buf, pos, 0xc0);
  pos = writeBinHeader(buf, pos, data.length);
  buf.set(data, pos);
  return pos + data.length;
}

/** The shortest msgpack bin header for `n` bytes. */
export function writeBinHeader(buf: Buffer, pos: number, n: number): number {
  if (n < 0x100) return buf.writeUInt8(n, writeMarker(buf, pos, 0xc4));
  if (n < 0x10000) return buf.writeUInt16BE(n, writeMarker(buf, pos, 0xc5));
  return buf.writeUInt32BE(n, writeMarker(buf, pos, 0xc6));
}

/** The shortest msgpack str header for `n` bytes of UTF-8. */
export function writeStrHeader(buf: Buffer, pos: number, n: number): number {
  if (n < 32) return writeMarker(buf, pos, 0xa0 | n);
  if (n < 0x100) return buf.writeUInt8(n, writeMarker(buf, pos, 0xd9));
  if (n < 0x10000) return buf.writeUInt16BE(n, writeMarker(buf, pos, 0xda));
  return buf.writeUInt32BE(n, writeMarker(buf, pos, 0xdb));
}

function writeStr(buf: Buffer, pos: number, s: string): number {
  // Write at the widest header's distance (str32), then shift down if a shorter header fits.
  const written = buf.write(s, pos + 5, 'utf8');
  let headerBytes = 5;
  if (written < 32) headerBytes = 1;
  else if (written < 0x100) headerBytes = 2;
  else if (written < 0x10000) headerBytes = 3;
  if (headerBytes !== 5) buf.copyWithin(pos + headerBytes, pos + 5, pos + 5 + written);
  if (headerBytes === 1) buf[pos] = 0xa0 | written;
  else if (headerBytes === 2) buf.writeUInt8(written, writeMarker(buf, pos, 0xd9));
  else if (headerBytes === 3) buf.writeUInt16BE(written, writeMarker(buf, pos, 0xda));
  else buf.writeUInt32BE(written, writeMarker(buf, pos, 0xdb));
  return pos + headerBytes + written;
}

/** The shortest msgpack array header for `n` elements. */
export function writeArrayHeader(buf: Buffer, pos: number, n: number): number {
  if (n < 16) return writeMarker(buf, pos, 0x90 | n);
  if (n < 0x10000) return buf.writeUInt16BE(n, writeMarker(buf, pos, 0xdc));
  return buf.writeUInt32BE(n, writeMarker(buf, pos, 0xdd));
}

/**
 * Reads the fixed header at `pos` without checking it; call `checkBatchAt` first on untrusted bytes.
 */
export function readBatchHeader(buf: Uint8Array, pos = 0): BatchHeader {
  const b = asBuffer(buf);
  return {
    baseOffset: readUint64(b, pos + POS.baseOffset + 1),
    batchLength: b.readUInt32BE(pos + POS.batchLength + 1),
    partitionLeaderEpoch: b.readInt32BE(pos + POS.partitionLeaderEpoch + 1),
    magic: b[pos + POS.magic]!,
    crc: b.readUInt32BE(pos + POS.crc + 1),
    attributes: b.readUInt16BE(pos + POS.attributes + 1),
    lastOffsetDelta: b.readUInt32BE(pos + POS.lastOffsetDelta + 1),
    baseTimestamp: readInt64(b, pos + POS.baseTimestamp + 1),
    maxTimestamp: readInt64(b, pos + POS.maxTimestamp + 1),
    producerId: readInt64(b, pos + POS.producerId + 1),
    producerEpoch: b.readInt16BE(pos + POS.producerEpoch + 1),
    baseSequence: b.readInt32BE(pos + POS.baseSequence + 1),
    recordCount: b.readUInt32BE(pos + POS.recordCount + 1),
  };
}

/**
 * The records in whole batches back to back (a read's data, already checked), from their
 * `recordCount` fields: no header object, no decoding.
 */
export function recordCountOf(buf: Uint8Array): number {
  const b = asBuffer(buf);
  let records = 0;
  for (let pos = 0; pos + BATCH_HEADER_BYTES <= b.length; ) {
    records += b.readUInt32BE(pos + POS.recordCount + 1);
    pos += BATCH_LENGTH_PREFIX_BYTES + b.readUInt32BE(pos + POS.batchLength + 1);
  }
  return records;
}

export type BatchCheck =
  | { ok: true; size: number; header: BatchHeader }
  /** Fewer bytes than the batch claims: a torn tail when found on disk. */
  | { ok: false; reason: 'incomplete'; message: string }
  | { ok: false; reason: 'corrupt'; message: string };

/**
 * Checks the batch that starts at `pos` within `buf[pos, end)`: markers, magic, length bounds,
 * record count against lastOffsetDelta, and CRC-32C (unless `checkCrc` is false). Decodes no record.
 */
export function checkBatchAt(
  buf: Uint8Array,
  pos = 0,
  end = buf.length,
  batchBytesMax: number = LIMITS.batchBytesMax,
  checkCrc = true,
): BatchCheck {
  const available = end - pos;
  if (available < BATCH_LENGTH_PREFIX_BYTES) {
    return { ok: false, reason: 'incomplete', message: `${available} bytes is shorter than a batch header` };
  }
  for (const [at, value] of MARKERS) {
    if (at >= BATCH_LENGTH_PREFIX_BYTES) break;
    if (buf[pos + at] !== value)
      return corrupt(`byte ${at} of the batch header is 0x${hex(buf[pos + at])}, not 0x${hex(value)}`);
  }
  const b = asBuffer(buf);
  const batchLength = b.readUInt32BE(pos + POS.batchLength + 1);
  const size = BATCH_LENGTH_PREFIX_BYTES + batchLength;
  if (size < BATCH_HEADER_BYTES) return corrupt(`batch length ${batchLength} is shorter than the header`);
  if (size > batchBytesMax) {
    return corrupt(`batch of ${size} bytes is larger than the limit of ${batchBytesMax}`);
  }
  if (available < size)
    return { ok: false, reason: 'incomplete', message: `batch needs ${size} bytes, ${available} present` };
  for (const [at, value] of MARKERS) {
    if (at < BATCH_LENGTH_PREFIX_BYTES) continue;
    if (buf[pos + at] !== value)
      return corrupt(`byte ${at} of the batch header is 0x${hex(buf[pos + at])}, not 0x${hex(value)}`);
  }
  if (checkCrc) {
    const problem = batchCrcProblem(b, pos, size);
    if (problem) return corrupt(problem);
  }
  let header: BatchHeader;
  try {
    header = readBatchHeader(buf, pos);
  } catch (error) {
    return corrupt(error instanceof Error ? error.message : String(error));
  }
  if (header.recordCount === 0) return corrupt('batch holds no records');
  const marker = buf[pos + POS.recordsArray];
  const codec = header.attributes & ATTRIBUTE_CODEC_MASK;
  // Codec numbers 5-7 name no codec: framed as uncompressed, refused by whoever must read them.
  if (codec === 0 || codec > CODEC_NAMES.length - 1) {
    if (marker !== RECORDS_ARRAY32)
      return corrupt(`byte ${POS.recordsArray} of the batch header is 0x${hex(marker)}, not 0xdd`);
    if (header.recordCount > (size - BATCH_HEADER_BYTES) / RECORD_BYTES_MIN) {
      return corrupt(`${header.recordCount} records cannot fit in a batch of ${size} bytes`);
    }
    if (b.readUInt32BE(pos + POS.recordsArray + 1) !== header.recordCount) {
      return corrupt('records array length differs from recordCount');
    }
  } else {
    // Compressed: one bin32 to the end of the batch, and no more records than a batch may hold.
    if (marker !== RECORDS_BIN32)
      return corrupt(`byte ${POS.recordsArray} of a compressed batch header is 0x${hex(marker)}, not 0xc6`);
    if (b.readUInt32BE(pos + POS.recordsArray + 1) !== size - BATCH_HEADER_BYTES)
      return corrupt('compressed records length differs from the batch length');
    if (header.recordCount > LIMITS.batchRecordsMax)
      return corrupt(`${header.recordCount} records: a batch holds at most ${LIMITS.batchRecordsMax}`);
  }
  if (header.lastOffsetDelta < header.recordCount - 1) {
    return corrupt(`lastOffsetDelta ${header.lastOffsetDelta} does not match ${header.recordCount} records`);
  }
  if (header.maxTimestamp < header.baseTimestamp) return corrupt('maxTimestamp is before baseTimestamp');
  return { ok: true, size, header };
}

/** Why the stored CRC-32C of the batch of `size` bytes at `pos` is wrong, or undefined when it is right. */
export function batchCrcProblem(buf: Uint8Array, pos: number, size: number): string | undefined {
  const b = asBuffer(buf);
  const storedCrc = b.readUInt32BE(pos + POS.crc + 1);
  const actualCrc = crc32c(b.subarray(pos + BATCH_CRC_START, pos + size));
  if (actualCrc === storedCrc) return undefined;
  return `CRC-32C mismatch: stored 0x${hex(storedCrc)}, computed 0x${hex(actualCrc)}`;
}

/** As `checkBatchAt`, but throws CORRUPT_MESSAGE (or MESSAGE_TOO_LARGE) for anything not a whole valid batch. */
export function assertValidBatch(
  buf: Uint8Array,
  pos = 0,
  end = buf.length,
  batchBytesMax?: number,
  checkCrc = true,
): BatchHeader {
  const check = checkBatchAt(buf, pos, end, batchBytesMax, checkCrc);
  if (check.ok) return check.header;
  if (check.message.includes('larger than the limit'))
    throw new SluiceError('MESSAGE_TOO_LARGE', check.message);
  throw new SluiceError('CORRUPT_MESSAGE', check.message);
}

/** A checked batch inside a larger buffer. */
export interface SplitBatch {
  pos: number;
  size: number;
  header: BatchHeader;
}

/**
 * Splits a buffer of back-to-back batches into checked batches. Throws on any invalid or partial batch.
 * With `checkCrc` false the CRCs are left to the caller (`batchCrcProblem`), everything else is checked.
 * These are the checks a stored batch passes; a client's pre-built batches go through
 * `splitProducedBatches`, which checks more.
 */
export function splitBatches(buf: Uint8Array, batchBytesMax?: number, checkCrc = true): SplitBatch[] {
  const out: SplitBatch[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const header = assertValidBatch(buf, pos, buf.length, batchBytesMax, checkCrc);
    const size = batchSize(header);
    out.push({ pos, size, header });
    pos += size;
  }
  return out;
}

export interface ProducedBatchesOptions {
  /** Largest batch in bytes (the topic's `max.message.bytes`); MESSAGE_TOO_LARGE beyond. */
  batchBytesMax?: number;
  /** Records over all the batches of the request; TOO_MANY_RECORDS beyond. */
  recordsMax?: number;
  /** Largest key plus value of one record (RECORD_TOO_LARGE beyond); no limit when absent. */
  recordBytesMax?: number;
  /** Most bytes a compressed batch may decompress to; DECOMPRESSED_TOO_LARGE beyond. */
  uncompressedBatchBytesMax?: number;
}

/**
 * Splits the body of a produce request of pre-built batches (`application/vnd.sluice.batches`) and
 * checks every batch completely before any of it may reach the log: what `splitBatches` checks,
 * CRC-32C included, then every header field against the records (`checkProducedBatch`), and the
 * records of all the batches against `recordsMax` (default `LIMITS.requestRecordsMax`). Throws a
 * SluiceError naming the batch's byte position in the body (`details.position`); returns the
 * batches and their record count.
 *
 * Stored batches may legitimately fail the stricter checks (compaction leaves offset gaps), so
 * recovery, fetch and a follower's append keep to `checkBatchAt`.
 */
export function splitProducedBatches(
  buf: Uint8Array,
  options: ProducedBatchesOptions = {},
): { batches: SplitBatch[]; recordCount: number } {
  const recordsMax = options.recordsMax ?? LIMITS.requestRecordsMax;
  const batches: SplitBatch[] = [];
  let recordCount = 0;
  let pos = 0;
  while (pos < buf.length) {
    try {
      const header = assertValidBatch(buf, pos, buf.length, options.batchBytesMax);
      recordCount += header.recordCount;
      // Counted from the headers before any record is walked, so a body far over the limit costs little.
      if (recordCount > recordsMax) {
        throw new SluiceError('TOO_MANY_RECORDS', `a request holds at most ${recordsMax} records`);
      }
      const size = batchSize(header);
      checkProducedBatch(buf, pos, header, options);
      batches.push({ pos, size, header });
      pos += size;
    } catch (error) {
      if (!isSluiceError(error)) throw error;
      throw new SluiceError(error.code, `batch at byte ${pos}: ${error.message}`, {
        details: { ...error.details, position: pos },
        cause: error,
      });
    }
  }
  return { batches, recordCount };
}

/**
 * A batch's producer fields: all -1 (no idempotent producer), or a producer id, an epoch and a base
 * sequence, none negative. INVALID_RECORD otherwise.
 */
export function checkProducerFields(
  header: Pick<BatchHeader, 'producerId' | 'producerEpoch' | 'baseSequence'>,
): void {
  const { producerId, producerEpoch, baseSequence } = header;
  if (producerId === -1 && producerEpoch === -1 && baseSequence === -1) return;
  if (producerId >= 0 && producerEpoch >= 0 && baseSequence >= 0) return;
  throw new SluiceError(
    'INVALID_RECORD',
    `producer id ${producerId}, epoch ${producerEpoch}, base sequence ${baseSequence}: ` +
      'either all are -1 (no idempotent producer) or none is negative',
    { details: { producerId, producerEpoch, baseSequence } },
  );
}

/**
 * The checks that a batch built by a client passes on top of `checkBatchAt`'s (call that first,
 * with the CRC): the leader assigns offsets from the header alone, so the header must say exactly
 * what the records hold.
 *
 * - attributes: codec none, or a codec loaded here (1-4; UNSUPPORTED_COMPRESSION_TYPE when not
 *   loaded, and for 5-7, which name no codec), and none of the log-append-time, transactional or control bits
 *   (the broker's to set; Sluice has no transactions yet), nor any unknown bit;
 * - lastOffsetDelta is recordCount - 1, and record i has offset delta i;
 * - baseTimestamp is the smallest record timestamp and maxTimestamp the largest (the timestamp
 *   type is always create time here), every one at least -1 (INVALID_TIMESTAMP);
 * - producerId, producerEpoch and baseSequence are all -1 (no idempotent producer), or a producer
 *   id in [0, 2^53), an epoch in [0, 32767] and a base sequence in [0, 2^31) (`checkProducerFields`);
 * - every record is [offsetDelta int, timestampDelta int, key bin|nil, value bin|nil,
 *   headers [[name str, value bin|nil], ...]] with at most `LIMITS.headersPerRecordMax` headers
 *   and UTF-8 names, and the records end exactly where the batch does.
 *
 * - a compressed batch decompresses (CORRUPT_MESSAGE when its codec's data is damaged) to at most
 *   `uncompressedBatchBytesMax` bytes (DECOMPRESSED_TOO_LARGE), and all of the above holds of
 *   its records, exactly `recordCount` of them;
 * - no record's key plus value is over `recordBytesMax` (RECORD_TOO_LARGE).
 *
 * baseOffset and partitionLeaderEpoch are not checked: the leader overwrites them.
 * Walks the records without allocating for them. Throws CORRUPT_MESSAGE for bytes that are not
 * records, INVALID_RECORD for fields that disagree or that Sluice does not accept.
 */
export function checkProducedBatch(
  buf: Uint8Array,
  pos: number,
  header: BatchHeader,
  limits: Pick<ProducedBatchesOptions, 'recordBytesMax' | 'uncompressedBatchBytesMax'> = {},
): void {
  checkProducedAttributes(header.attributes);
  if (header.lastOffsetDelta !== header.recordCount - 1) {
    throw new SluiceError(
      'INVALID_RECORD',
      `lastOffsetDelta ${header.lastOffsetDelta} does not match ${header.recordCount} records`,
    );
  }
  checkProducerFields(header);
  // A compressed batch is decompressed once, into the codec's reused memory, and its records
  // walked there: nothing of them is kept, and no codec is called until the walk ends.
  let records = asBuffer(buf);
  let start = pos + BATCH_HEADER_BYTES;
  let end = pos + batchSize(header);
  if ((header.attributes & ATTRIBUTE_CODEC_MASK) !== 0) {
    records = decompressRecords(
      records,
      pos,
      limits.uncompressedBatchBytesMax ?? LIMITS.uncompressedBatchBytesMax,
      true,
    );
    start = 0;
    end = records.length;
  }
  const recordBytesMax = limits.recordBytesMax ?? Number.MAX_SAFE_INTEGER;
  const reader = new Reader(records, start, end);
  let timestampDeltaMin = Number.POSITIVE_INFINITY;
  let timestampDeltaMax = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < header.recordCount; i++) {
    if (reader.arrayLength() !== 5)
      throw new SluiceError('CORRUPT_MESSAGE', `record ${i} is not a 5-element array`);
    const offsetDelta = reader.int();
    if (offsetDelta !== i) {
      throw new SluiceError(
        'INVALID_RECORD',
        `record ${i} has offset delta ${offsetDelta}; a produced batch numbers its records 0, 1, ...`,
      );
    }
    const timestampDelta = reader.int();
    if (timestampDelta < timestampDeltaMin) timestampDeltaMin = timestampDelta;
    if (timestampDelta > timestampDeltaMax) timestampDeltaMax = timestampDelta;
    const payloadBytes = reader.skipBinOrNil() + reader.skipBinOrNil();
    if (payloadBytes > recordBytesMax)
      throw new SluiceError(
        'RECORD_TOO_LARGE',
        `record ${i} is ${payloadBytes} bytes; the limit is ${recordBytesMax}`,
        { details: { index: i } },
      );
    const headerCount = reader.arrayLength();
    if (headerCount > LIMITS.headersPerRecordMax) {
      throw new SluiceError('INVALID_RECORD', `a record holds at most ${LIMITS.headersPerRecordMax} headers`);
    }
    for (let h = 0; h < headerCount; h++) {
      if (reader.arrayLength() !== 2)
        throw new SluiceError('CORRUPT_MESSAGE', 'a header is not a [name, value] pair');
      reader.skipStr();
      reader.skipBinOrNil();
    }
  }
  if (reader.pos !== end)
    throw new SluiceError('CORRUPT_MESSAGE', `${end - reader.pos} stray bytes after the last record`);
  if (timestampDeltaMin !== 0) {
    throw new SluiceError(
      'INVALID_RECORD',
      `baseTimestamp ${header.baseTimestamp} is not the smallest record timestamp ` +
        `${header.baseTimestamp + timestampDeltaMin}`,
    );
  }
  const largest = header.baseTimestamp + timestampDeltaMax;
  if (header.baseTimestamp < -1 || !Number.isSafeInteger(largest)) {
    throw new SluiceError(
      'INVALID_TIMESTAMP',
      `record timestamps ${header.baseTimestamp} to ${largest} are not valid millisecond times`,
    );
  }
  if (header.maxTimestamp !== largest) {
    throw new SluiceError(
      'INVALID_RECORD',
      `maxTimestamp ${header.maxTimestamp} is not the largest record timestamp ${largest}`,
    );
  }
}

function checkProducedAttributes(attributes: number): void {
  const codec = attributes & ATTRIBUTE_CODEC_MASK;
  if (codec > CODEC_NAMES.length - 1)
    throw new SluiceError('INVALID_RECORD', `attributes name compression codec ${codec}, which is no codec`);
  if (codec !== 0) codecs.get(codec);
  if (attributes & ~ATTRIBUTES_KNOWN) {
    throw new SluiceError(
      'INVALID_RECORD',
      `unknown attribute bits 0x${hex(attributes & ~ATTRIBUTES_KNOWN)}`,
    );
  }
  if (attributes & ATTRIBUTE_LOG_APPEND_TIME) {
    throw new SluiceError('INVALID_RECORD', "the timestamp type (log append time) is the broker's to set");
  }
  if (attributes & ATTRIBUTE_TRANSACTIONAL) {
    throw new SluiceError('INVALID_RECORD', 'a transactional batch: Sluice has no transactions yet');
  }
  if (attributes & ATTRIBUTE_CONTROL) {
    throw new SluiceError('INVALID_RECORD', 'a control batch: only the broker writes control batches');
  }
}

/** Rewrites the base offset in place; the CRC stays valid. */
export function setBaseOffset(buf: Uint8Array, pos: number, baseOffset: number): void {
  assert(Number.isSafeInteger(baseOffset) && baseOffset >= 0, `base offset ${baseOffset} out of range`);
  const b = asBuffer(buf);
  const at = pos + POS.baseOffset + 1;
  b.writeUInt32BE(Math.floor(baseOffset / 0x1_0000_0000), at);
  b.writeUInt32BE(baseOffset >>> 0, at + 4);
}

/** Rewrites the partition leader epoch in place; the CRC stays valid. */
export function setPartitionLeaderEpoch(buf: Uint8Array, pos: number, epoch: number): void {
  asBuffer(buf).writeInt32BE(epoch, pos + POS.partitionLeaderEpoch + 1);
}

/** Decodes the records of one checked batch, with absolute offsets and timestamps. */
export function decodeRecords(buf: Uint8Array, pos = 0): BatchRecord[] {
  const header = readBatchHeader(buf, pos);
  // A compressed batch's records are decoded from their decompressed bytes, views into them.
  const compressed = batchCodecAt(buf, pos) !== 0;
  const bytes = compressed
    ? decompressRecords(asBuffer(buf), pos, LIMITS.uncompressedBatchBytesMax)
    : asBuffer(buf);
  const start = compressed ? 0 : pos + BATCH_HEADER_BYTES;
  const end = compressed ? bytes.length : pos + batchSize(header);
  const reader = new Reader(bytes, start, end);
  const records: BatchRecord[] = new Array(header.recordCount);
  for (let i = 0; i < header.recordCount; i++) {
    if (reader.arrayLength() !== 5)
      throw new SluiceError('CORRUPT_MESSAGE', `record ${i} is not a 5-element array`);
    const offsetDelta = reader.int();
    const timestampDelta = reader.int();
    const key = reader.binOrNil();
    const value = reader.binOrNil();
    const headerCount = reader.arrayLength();
    const headers: Header[] = new Array(headerCount);
    for (let h = 0; h < headerCount; h++) {
      if (reader.arrayLength() !== 2)
        throw new SluiceError('CORRUPT_MESSAGE', 'a header is not a [name, value] pair');
      headers[h] = [reader.str(), reader.binOrNil()];
    }
    records[i] = {
      offset: header.baseOffset + offsetDelta,
      timestamp: header.baseTimestamp + timestampDelta,
      key,
      value,
      headers,
    };
  }
  if (reader.pos !== end)
    throw new SluiceError('CORRUPT_MESSAGE', `${end - reader.pos} stray bytes after the last record`);
  return records;
}

/**
 * Checks the batch at `pos` as `checkBatchAt` does (CRC included) and decodes its records. For the
 * decoding paths that serve what the log holds (JSON, NDJSON, SSE): a batch damaged after it was
 * written is refused with a non-retriable CORRUPT_MESSAGE that names its base offset
 * (`details.baseOffset`, when the header can be read) and byte position; a batch that names a
 * codec this build does not decode, with UNSUPPORTED_COMPRESSION_TYPE. `batchBytesMax` defaults
 * to no limit: a stored batch may predate a lowered `max.message.bytes`. `checkCrc` false leaves
 * out the CRC for bytes whose CRCs were checked already (a verified log read).
 */
export function decodeBatchChecked(
  buf: Uint8Array,
  pos = 0,
  end = buf.length,
  batchBytesMax = Number.MAX_SAFE_INTEGER,
  checkCrc = true,
): BatchRecord[] {
  const check = checkBatchAt(buf, pos, end, batchBytesMax, checkCrc);
  try {
    if (!check.ok) throw new SluiceError('CORRUPT_MESSAGE', check.message);
    return decodeRecords(buf, pos);
  } catch (error) {
    const baseOffset = peekBaseOffset(buf, pos, end);
    const where = baseOffset === undefined ? `batch at byte ${pos}` : `batch at offset ${baseOffset}`;
    const code = isSluiceError(error) ? error.code : 'CORRUPT_MESSAGE';
    const message = error instanceof Error ? error.message : String(error);
    throw new SluiceError(code, `${where}: ${message}`, {
      details: { ...(baseOffset === undefined ? {} : { baseOffset }), position: pos },
      cause: error,
      retriable: false,
    });
  }
}

/** Why a run of batches stopped before its end. */
export interface BatchRunProblem {
  /** Where the good records end: the offset after the last good batch (`fromOffset` when none was good). */
  offset: number;
  /** The base offset the bad batch claims, when its header can be read (the CRC does not cover it). */
  baseOffset: number | undefined;
  /** The bad batch's byte position in the run. */
  position: number;
  /** What `decodeBatchChecked` threw: CORRUPT_MESSAGE, or UNSUPPORTED_COMPRESSION_TYPE. */
  error: SluiceError;
}

export interface DecodedBatchRun {
  /** The records at or after `fromOffset` of every batch before the first bad one. */
  records: BatchRecord[];
  /** The offset after the last good batch, at least `fromOffset`: where a reader continues. */
  nextOffset: number;
  problem: BatchRunProblem | undefined;
}

/**
 * Decodes back-to-back stored batches (a log read) with `decodeBatchChecked`, keeping the records
 * of the batches before the first bad or undecodable one and describing that one instead of
 * throwing, so that a caller serves the good records first and reports the problem after them.
 * Records before `fromOffset` (the first batch may start earlier) are left out.
 */
export function decodeBatchRun(
  buf: Uint8Array,
  fromOffset = 0,
  batchBytesMax = Number.MAX_SAFE_INTEGER,
  checkCrc = true,
): DecodedBatchRun {
  const records: BatchRecord[] = [];
  let nextOffset = fromOffset;
  let pos = 0;
  while (pos < buf.length) {
    let decoded: BatchRecord[];
    try {
      decoded = decodeBatchChecked(buf, pos, buf.length, batchBytesMax, checkCrc);
    } catch (error) {
      assert(isSluiceError(error), 'decodeBatchChecked throws only SluiceErrors');
      const baseOffset = peekBaseOffset(buf, pos, buf.length);
      return { records, nextOffset, problem: { offset: nextOffset, baseOffset, position: pos, error } };
    }
    for (const record of decoded) if (record.offset >= fromOffset) records.push(record);
    const header = readBatchHeader(buf, pos);
    nextOffset = Math.max(nextOffset, nextOffsetOf(header));
    pos += batchSize(header);
  }
  return { records, nextOffset, problem: undefined };
}

/** The base offset of the batch at `pos`, or undefined when its first bytes are not a base offset. */
function peekBaseOffset(buf: Uint8Array, pos: number, end: number): number | undefined {
  if (
    end - pos < POS.baseOffset + 9 ||
    buf[pos + POS.arrayMarker] !== 0x9e ||
    buf[pos + POS.baseOffset] !== 0xcf
  )
    return undefined;
  const b = asBuffer(buf);
  const hi = b.readUInt32BE(pos + POS.baseOffset + 1);
  if (hi >= 0x200000) return undefined;
  return hi * 0x1_0000_0000 + b.readUInt32BE(pos + POS.baseOffset + 5);
}

class Reader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}

  #need(n: number): void {
    if (this.pos + n > this.end)
      throw new SluiceError('CORRUPT_MESSAGE', 'record runs past the end of its batch');
  }

  #byte(): number {
    this.#need(1);
    return this.buf[this.pos++]!;
  }

  arrayLength(): number {
    const m = this.#byte();
    if ((m & 0xf0) === 0x90) return m & 0x0f;
    if (m === 0xdc) return this.#u16();
    if (m === 0xdd) return this.#u32();
    throw new SluiceError('CORRUPT_MESSAGE', `expected an array, found 0x${hex(m)}`);
  }

  int(): number {
    const m = this.#byte();
    if (m < 0x80) return m;
    if (m >= 0xe0) return m - 0x100;
    const b = this.buf;
    let v: number;
    switch (m) {
      case 0xcc:
        this.#need(1);
        return b[this.pos++]!;
      case 0xcd:
        return this.#u16();
      case 0xce:
        return this.#u32();
      case 0xcf:
        this.#need(8);
        v = readUint64(b, this.pos);
        this.pos += 8;
        return v;
      case 0xd0:
        this.#need(1);
        return b.readInt8(this.pos++);
      case 0xd1:
        this.#need(2);
        v = b.readInt16BE(this.pos);
        this.pos += 2;
        return v;
      case 0xd2:
        this.#need(4);
        v = b.readInt32BE(this.pos);
        this.pos += 4;
        return v;
      case 0xd3:
        this.#need(8);
        v = readInt64(b, this.pos);
        this.pos += 8;
        return v;
      default:
        throw new SluiceError('CORRUPT_MESSAGE', `expected an integer, found 0x${hex(m)}`);
    }
  }

  binOrNil(): Buffer | null {
    const n = this.#binLength();
    if (n < 0) return null;
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Steps over a bin or nil without a view of it; returns its length (0 for nil). */
  skipBinOrNil(): number {
    const n = this.#binLength();
    if (n <= 0) return 0;
    this.pos += n;
    return n;
  }

  /** The length of the bin that follows (its bytes present), or -1 for nil. */
  #binLength(): number {
    const m = this.#byte();
    let n: number;
    if (m === 0xc0) return -1;
    if (m === 0xc4) n = this.#byte();
    else if (m === 0xc5) n = this.#u16();
    else if (m === 0xc6) n = this.#u32();
    else throw new SluiceError('CORRUPT_MESSAGE', `expected bin or nil, found 0x${hex(m)}`);
    this.#need(n);
    return n;
  }

  str(): string {
    const n = this.#strLength();
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  /**
   * Steps over a str, refusing one that is not UTF-8 (a stock decoder may refuse it, and the
   * decoding path would replace its bytes). ASCII, the usual header name, costs no allocation.
   */
  skipStr(): void {
    const n = this.#strLength();
    const start = this.pos;
    this.pos += n;
    for (let i = start; i < this.pos; i++) {
      if (this.buf[i]! < 0x80) continue;
      if (!isUtf8(this.buf.subarray(start, this.pos)))
        throw new SluiceError('INVALID_RECORD', 'a header name is not UTF-8');
      return;
    }
  }

  /** The length of the str that follows, its bytes present. */
  #strLength(): number {
    const m = this.#byte();
    let n: number;
    if ((m & 0xe0) === 0xa0) n = m & 0x1f;
    else if (m === 0xd9) n = this.#byte();
    else if (m === 0xda) n = this.#u16();
    else if (m === 0xdb) n = this.#u32();
    else throw new SluiceError('CORRUPT_MESSAGE', `expected a string, found 0x${hex(m)}`);
    this.#need(n);
    return n;
  }

  #u16(): number {
    this.#need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  #u32(): number {
    this.#need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
}

function readUint64(b: Buffer, at: number): number {
  const hi = b.readUInt32BE(at);
  const lo = b.readUInt32BE(at + 4);
  const v = hi * 0x1_0000_0000 + lo;
  if (hi >= 0x200000) throw new SluiceError('CORRUPT_MESSAGE', 'a 64-bit value exceeds 2^53');
  return v;
}

function readInt64(b: Buffer, at: number): number {
  const hi = b.readInt32BE(at);
  const lo = b.readUInt32BE(at + 4);
  if (hi >= 0x200000 || hi < -0x200000)
    throw new SluiceError('CORRUPT_MESSAGE', 'a 64-bit value exceeds 2^53');
  return hi * 0x1_0000_0000 + lo;
}

function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

function hex(n: number | undefined): string {
  return (n ?? 0).toString(16).padStart(2, '0');
}

function corrupt(message: string): BatchCheck {
  return { ok: false, reason: 'corrupt', message };
}
