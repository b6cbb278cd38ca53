import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import { SluiceError } from '../common/errors.js';

/**
 * Batch compression: one interface over the codecs a batch's attributes may name (Kafka's
 * numbers: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd). A compressed batch holds its records as one
 * msgpack bin of the codec's output (see batch.ts); this module knows only bytes in, bytes out.
 *
 * Framing, exactly (docs/storage-format.md pins each with golden bytes):
 * - gzip: one or more RFC 1952 gzip members (Node's zlib writes one: mtime 0, OS 3).
 * - snappy: raw snappy (the block format: a varint of the uncompressed length, then elements),
 *   not the framing format and not Kafka's xerial framing.
 * - lz4: one LZ4 frame (magic 0x184D2204, frame descriptor with header checksum, blocks, end
 *   mark, optional content checksum). Linked and independent blocks, with or without block and
 *   content checksums, are read; dictionaries and skippable frames are refused.
 * - zstd: one or more zstd frames (magic 0xFD2FB528); dictionaries and skippable frames refused.
 *
 * Every decompressor takes a limit and never produces more than it: past it, DECOMPRESSED_TOO_LARGE
 * (a decompression bomb), before allocating the output where the framing declares its size
 * (snappy, zstd, lz4 with content size), else while decoding. Input that is not the codec's
 * framing is CORRUPT_MESSAGE.
 *
 * Packages (chosen by measured speed, docs/storage-format.md): Node's zlib for gzip (Node 20 has
 * no zstd), snappyjs (pure JavaScript) for snappy, lz4-napi (a native binary shipped inside the
 * npm package) to compress lz4 with the frame reader below (pure TypeScript, so that the output
 * limit holds), @bokuweb/zstd-wasm (WebAssembly shipped in the package) for zstd.
 */

export const CODEC_NAMES = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;
export type CodecName = (typeof CODEC_NAMES)[number];
export type CompressedCodecName = Exclude<CodecName, 'none'>;

/** The codec number in a batch's attributes (bits 0-2). */
export function codecId(name: CodecName): number {
  return CODEC_NAMES.indexOf(name);
}

export function isCodecName(name: string): name is CodecName {
  return (CODEC_NAMES as readonly string[]).includes(name);
}

/**
 * The request header in which a msgpack fetch names the codecs it reads (`lz4,zstd`): stored
 * batches in those codecs come as stored, others decompressed. The SDK always sends it; a client
 * without it gets uncompressed batches only, so that a plain msgpack decoder keeps working.
 */
export const ACCEPT_COMPRESSION_HEADER = 'sluice-accept-compression';

/** The codec numbers an `Sluice-Accept-Compression` value names; unknown names and `none` are ignored. */
export function parseAcceptCompression(header: string | string[] | undefined): Set<number> {
  const accepted = new Set<number>();
  if (header === undefined) return accepted;
  for (const part of String(header).split(',')) {
    const name = part.trim().toLowerCase();
    if (name !== 'none' && isCodecName(name)) accepted.add(codecId(name));
  }
  return accepted;
}

/** The compression levels of the codecs that have them, and each one's default. */
export const CODEC_LEVELS: Partial<Record<CodecName, { min: number; max: number; default: number }>> = {
  gzip: { min: 1, max: 9, default: 6 },
  zstd: { min: 1, max: 22, default: 3 },
};

export interface Codec {
  readonly name: CompressedCodecName;
  readonly id: number;
  /** Compression levels the codec takes, and the one it uses when none is given. */
  readonly levels: { min: number; max: number; default: number } | undefined;
  compress(data: Uint8Array, level?: number): Buffer;
  /** At most `limitBytes` bytes out: DECOMPRESSED_TOO_LARGE past it, CORRUPT_MESSAGE for bad input. */
  decompress(data: Uint8Array, limitBytes: number): Buffer;
}

export interface CodecStatus {
  name: CompressedCodecName;
  available: boolean;
  /** Why the codec could not be loaded. */
  problem?: string;
}

/** Loads a package by name: `import()` in production; tests pass one that fails. */
export type PackageLoader = (name: string) => Promise<unknown>;

const require = createRequire(import.meta.url);
const defaultLoader: PackageLoader = async (name) => require(name);

/**
 * The codecs this process can use. gzip is always there (zlib); the others are loaded by `load()`
 * once, at start (the broker logs what could not be loaded, and a batch naming such a codec is
 * refused with UNSUPPORTED_COMPRESSION_TYPE saying why). The process has one default registry,
 * `codecs`: codecs are pure functions of bytes, like CRC-32C, and the batch functions that every
 * layer calls (decoding, compaction, the SDK) reach it without a parameter threaded through each.
 */
export class CodecRegistry {
  readonly #byId = new Map<number, Codec>([[GZIP.id, GZIP]]);
  readonly #problems = new Map<CompressedCodecName, string>();
  #loading: Promise<CodecStatus[]> | undefined;

  /** Loads snappy, lz4 and zstd; resolves with every codec's status. Later calls share the first. */
  load(loader: PackageLoader = defaultLoader): Promise<CodecStatus[]> {
    this.#loading ??= this.#load(loader);
    return this.#loading;
  }

  async #load(loader: PackageLoader): Promise<CodecStatus[]> {
    const makers: [CompressedCodecName, () => Promise<Codec>][] = [
      ['snappy', async () => snappyCodec(await loader('snappyjs'))],
      ['lz4', async () => lz4Codec(await loader('lz4-napi'))],
      ['zstd', async () => zstdCodec(await loader('@bokuweb/zstd-wasm'))],
    ];
    for (const [name, make] of makers) {
      try {
        const codec = await make();
        // A codec that loads but cannot round-trip a few bytes is as good as absent.
        const probe = Buffer.from('sluice codec probe sluice codec probe');
        if (!codec.decompress(codec.compress(probe), 1024).equals(probe))
          throw new Error('round trip of a probe failed');
        this.#byId.set(codec.id, codec);
      } catch (error) {
        this.#problems.set(name, error instanceof Error ? error.message : String(error));
      }
    }
    return this.status();
  }

  status(): CodecStatus[] {
    return (CODEC_NAMES.slice(1) as CompressedCodecName[]).map((name) => {
      const problem = this.#problems.get(name);
      return {
        name,
        available: this.#byId.has(codecId(name)),
        ...(problem === undefined ? {} : { problem }),
      };
    });
  }

  /** The names of the codecs that can be used now, `none` first. */
  available(): CodecName[] {
    return CODEC_NAMES.filter((name) => name === 'none' || this.#byId.has(codecId(name)));
  }

  /** The codec of number `id` (1-4); UNSUPPORTED_COMPRESSION_TYPE when it is not loaded or is no codec. */
  get(id: number): Codec {
    const codec = this.#byId.get(id);
    if (codec) return codec;
    const name = CODEC_NAMES[id];
    if (name === undefined || name === 'none')
      throw new SluiceError('UNSUPPORTED_COMPRESSION_TYPE', `compression codec ${id} is no codec`, {
        details: { codec: id },
      });
    const problem = this.#problems.get(name);
    throw new SluiceError(
      'UNSUPPORTED_COMPRESSION_TYPE',
      problem === undefined
        ? `compression codec ${name} is not loaded in this process (codecs load at start)`
        : `compression codec ${name} could not be loaded on this node: ${problem}`,
      { details: { codec: name } },
    );
  }
}

function tooLarge(codec: string, limitBytes: number, size?: number): SluiceError {
  return new SluiceError(
    'DECOMPRESSED_TOO_LARGE',
    size === undefined
      ? `the ${codec} data decompresses to more than the limit of ${limitBytes} bytes`
      : `the ${codec} data declares ${size} bytes decompressed; the limit is ${limitBytes}`,
    { details: { codec, limitBytes } },
  );
}

function corrupt(codec: string, why: string): SluiceError {
  return new SluiceError('CORRUPT_MESSAGE', `the ${codec} data does not decompress: ${why}`, {
    details: { codec },
  });
}

function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

const GZIP: Codec = {
  name: 'gzip',
  id: 1,
  levels: CODEC_LEVELS.gzip,
  compress: (data, level) => zlib.gzipSync(data, { level: level ?? 6 }),
  decompress(data, limitBytes) {
    try {
      return zlib.gunzipSync(data, { maxOutputLength: Math.max(1, limitBytes) });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge('gzip', limitBytes);
      throw corrupt('gzip', (error as Error).message);
    }
  },
};

interface SnappyJs {
  compress(data: Uint8Array): Uint8Array;
  uncompress(data: Uint8Array, maxLength?: number): Uint8Array;
}

function snappyCodec(module: unknown): Codec {
  const snappy = module as SnappyJs;
  if (typeof snappy.compress !== 'function') throw new Error('snappyjs has no compress()');
  return {
    name: 'snappy',
    id: 2,
    levels: undefined,
    compress: (data) => asBuffer(snappy.compress(asBuffer(data))),
    decompress(data, limitBytes) {
      // The declared length comes first: a bomb is refused before anything is allocated.
      const declared = readVarint32(data);
      if (declared === undefined) throw corrupt('snappy', 'no valid length varint');
      if (declared > limitBytes) throw tooLarge('snappy', limitBytes, declared);
      try {
        return asBuffer(snappy.uncompress(asBuffer(data), limitBytes));
      } catch (error) {
        throw corrupt('snappy', (error as Error).message);
      }
    },
  };
}

/** The little-endian base-128 varint at the start of `data` (at most 5 bytes, below 2^32). */
function readVarint32(data: Uint8Array): number | undefined {
  let value = 0;
  for (let i = 0; i < 5 && i < data.length; i++) {
    const b = data[i]!;
    value += (b & 0x7f) * 2 ** (7 * i);
    if ((b & 0x80) === 0) return value < 2 ** 32 ? value : undefined;
  }
  return undefined;
}

interface Lz4Napi {
  compressFrameSync(data: Buffer): Buffer;
}

function lz4Codec(module: unknown): Codec {
  const lz4 = module as Lz4Napi;
  if (typeof lz4.compressFrameSync !== 'function') throw new Error('lz4-napi has no compressFrameSync()');
  return {
    name: 'lz4',
    id: 3,
    levels: undefined,
    compress: (data) => lz4.compressFrameSync(asBuffer(data)),
    decompress: (data, limitBytes) => decompressLz4Frame(asBuffer(data), limitBytes),
  };
}

const LZ4_MAGIC = 0x184d2204;
const LZ4_BLOCK_MAX_BYTES = [0, 0, 0, 0, 64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024];

/**
 * Reads one LZ4 frame into at most `limitBytes` bytes. The frame is walked once first (header
 * checksum, block sizes, end mark, nothing after the frame) so that the output is allocated once,
 * at the smaller of the limit and what the blocks can hold; then each block is decoded with every
 * read and write bounds-checked. Matches may reach into earlier blocks (linked blocks), never
 * before the frame's first byte.
 */
export function decompressLz4Frame(src: Buffer, limitBytes: number): Buffer {
  const fail = (why: string) => corrupt('lz4', why);
  const frame = readLz4FrameHeader(src, limitBytes);
  const { blockMax, blockChecksums, contentChecksum, contentSize } = frame;
  const bound = walkLz4Blocks(src, frame);
  const out = Buffer.allocUnsafe(Math.min(bound, limitBytes, contentSize ?? Number.MAX_SAFE_INTEGER));
  let d = 0;
  let pos = frame.blocksStart;
  for (;;) {
    const word = src.readUInt32LE(pos);
    pos += 4;
    if (word === 0) break;
    const size = word & 0x7fffffff;
    const blockStart = d;
    if (word & 0x80000000) {
      if (d + size > out.length) throw tooLarge('lz4', limitBytes);
      src.copy(out, d, pos, pos + size);
      d += size;
    } else {
      d = decodeLz4Block(src, pos, pos + size, out, d, limitBytes);
    }
    if (d - blockStart > blockMax) throw fail('a block decodes to more than its maximum size');
    pos += size;
    if (blockChecksums) {
      if (src.readUInt32LE(pos) !== xxh32(src, pos - size, pos)) throw fail('block checksum mismatch');
      pos += 4;
    }
  }
  if (contentSize !== undefined && d !== contentSize)
    throw fail(`frame declares ${contentSize} bytes, holds ${d}`);
  if (contentChecksum && src.readUInt32LE(pos) !== xxh32(out, 0, d)) throw fail('content checksum mismatch');
  return out.subarray(0, d);
}

interface Lz4Frame {
  blockMax: number;
  blockChecksums: boolean;
  contentChecksum: boolean;
  contentSize: number | undefined;
  /** Where the first block's size word is. */
  blocksStart: number;
}

/** The frame descriptor: magic, flags, block maximum, content size (a bomb past the limit), header checksum. */
function readLz4FrameHeader(src: Buffer, limitBytes: number): Lz4Frame {
  const fail = (why: string) => corrupt('lz4', why);
  if (src.length < 7 || src.readUInt32LE(0) !== LZ4_MAGIC) throw fail('no LZ4 frame magic');
  const flg = src[4]!;
  const bd = src[5]!;
  if (flg >> 6 !== 1) throw fail(`frame version ${flg >> 6}`);
  if (flg & 0x02 || bd & 0x8f) throw fail('reserved bits set in the frame descriptor');
  if (flg & 0x01) throw fail('dictionaries are not supported');
  const blockMax = LZ4_BLOCK_MAX_BYTES[(bd >> 4) & 7]!;
  if (blockMax === 0) throw fail('invalid block maximum size');
  let pos = 6;
  let contentSize: number | undefined;
  if (flg & 0x08) {
    if (src.length < pos + 9) throw fail('truncated frame descriptor');
    const size = src.readUInt32LE(pos + 4) * 2 ** 32 + src.readUInt32LE(pos);
    if (size > limitBytes) throw tooLarge('lz4', limitBytes, size);
    contentSize = size;
    pos += 8;
  }
  if (src.length < pos + 1) throw fail('truncated frame descriptor');
  if (src[pos] !== ((xxh32(src, 4, pos) >>> 8) & 0xff)) throw fail('frame header checksum mismatch');
  return {
    blockMax,
    blockChecksums: (flg & 0x10) !== 0,
    contentChecksum: (flg & 0x04) !== 0,
    contentSize,
    blocksStart: pos + 1,
  };
}

/**
 * Steps over the blocks without decoding them: each within the block maximum and the input, the
 * end mark, the content checksum, nothing after. Returns an upper bound of the output.
 */
function walkLz4Blocks(src: Buffer, frame: Lz4Frame): number {
  const fail = (why: string) => corrupt('lz4', why);
  let pos = frame.blocksStart;
  let bound = 0;
  for (;;) {
    if (src.length < pos + 4) throw fail('truncated block');
    const word = src.readUInt32LE(pos);
    pos += 4;
    if (word === 0) break;
    const size = word & 0x7fffffff;
    if (size > frame.blockMax) throw fail(`block of ${size} bytes over the maximum ${frame.blockMax}`);
    pos += size + (frame.blockChecksums ? 4 : 0);
    if (pos > src.length) throw fail('truncated block');
    bound += word & 0x80000000 ? size : frame.blockMax;
  }
  if (frame.contentChecksum) pos += 4;
  if (pos !== src.length)
    throw fail(pos > src.length ? 'truncated content checksum' : 'bytes after the frame');
  return bound;
}

/** One LZ4 block `src[s, end)` decoded into `out` from `d`; returns the output position after it. */
function decodeLz4Block(
  src: Buffer,
  s: number,
  end: number,
  out: Buffer,
  d: number,
  limitBytes: number,
): number {
  const fail = (why: string) => corrupt('lz4', why);
  const capacity = out.length;
  while (s < end) {
    const token = src[s++]!;
    let literals = token >> 4;
    if (literals === 15) {
      let b: number;
      do {
        if (s >= end) throw fail('truncated literal length');
        b = src[s++]!;
        literals += b;
      } while (b === 255);
    }
    if (s + literals > end) throw fail('literals run past the block');
    if (d + literals > capacity) throw tooLarge('lz4', limitBytes);
    if (literals < 16) for (let i = 0; i < literals; i++) out[d + i] = src[s + i]!;
    else src.copy(out, d, s, s + literals);
    s += literals;
    d += literals;
    if (s === end) break; // the last sequence holds literals only
    if (s + 2 > end) throw fail('truncated match offset');
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || offset > d) throw fail(`match offset ${offset} outside the output`);
    let length = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (s >= end) throw fail('truncated match length');
        b = src[s++]!;
        length += b;
      } while (b === 255);
    }
    if (d + length > capacity) throw tooLarge('lz4', limitBytes);
    let from = d - offset;
    if (offset >= length && length >= 32) {
      out.copy(out, d, from, from + length);
      d += length;
    } else {
      // Short matches (most of them) cost less as a loop than as a native copy; an overlapping
      // one must be copied byte by byte, each byte possibly one this match wrote.
      for (const stop = d + length; d < stop; ) out[d++] = out[from++]!;
    }
  }
  return d;
}

const PRIME32_1 = 0x9e3779b1;
const PRIME32_2 = 0x85ebca77;
const PRIME32_3 = 0xc2b2ae3d;
const PRIME32_4 = 0x27d4eb2f;
const PRIME32_5 = 0x165667b1;

function rotl32(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/** XXH32 with seed 0 of `b[start, end)`, as the LZ4 frame format's checksums use it. */
export function xxh32(b: Uint8Array, start: number, end: number): number {
  let p = start;
  let h: number;
  const round = (acc: number, lane: number) =>
    Math.imul(rotl32((acc + Math.imul(lane, PRIME32_2)) | 0, 13), PRIME32_1);
  const u32 = (at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
  if (end - start >= 16) {
    let v1 = (PRIME32_1 + PRIME32_2) | 0;
    let v2 = PRIME32_2;
    let v3 = 0;
    let v4 = -PRIME32_1 | 0;
    for (const limit = end - 16; p <= limit; p += 16) {
      v1 = round(v1, u32(p));
      v2 = round(v2, u32(p + 4));
      v3 = round(v3, u32(p + 8));
      v4 = round(v4, u32(p + 12));
    }
    h = (rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18)) | 0;
  } else {
    h = PRIME32_5;
  }
  h = (h + (end - start)) | 0;
  for (; p + 4 <= end; p += 4) h = Math.imul(rotl32((h + Math.imul(u32(p), PRIME32_3)) | 0, 17), PRIME32_4);
  for (; p < end; p++) h = Math.imul(rotl32((h + Math.imul(b[p]!, PRIME32_5)) | 0, 11), PRIME32_1);
  h = Math.imul(h ^ (h >>> 15), PRIME32_2);
  h = Math.imul(h ^ (h >>> 13), PRIME32_3);
  return (h ^ (h >>> 16)) >>> 0;
}

interface ZstdWasm {
  init(): Promise<void>;
  compress(data: Uint8Array, level?: number): Uint8Array;
  decompress(data: Uint8Array, options?: { defaultHeapSize: number }): Uint8Array;
}

const ZSTD_MAGIC = 0xfd2fb528;
/** ZSTD_error_dstSize_tooSmall: the output would not fit the room given. */
const ZSTD_DST_TOO_SMALL = 70;

async function zstdCodec(module: unknown): Promise<Codec> {
  const zstd = module as ZstdWasm;
  if (typeof zstd.init !== 'function') throw new Error('@bokuweb/zstd-wasm has no init()');
  await zstd.init();
  return {
    name: 'zstd',
    id: 4,
    levels: CODEC_LEVELS.zstd,
    compress: (data, level) => asBuffer(zstd.compress(data, level ?? 3)),
    decompress(data, limitBytes) {
      const declared = zstdFrameContentSize(asBuffer(data));
      if (declared !== undefined && declared > limitBytes) throw tooLarge('zstd', limitBytes, declared);
      try {
        // The output room is the declared size, or the limit when the frame declares none: the
        // decoder never writes past it.
        return asBuffer(zstd.decompress(data, { defaultHeapSize: Math.max(1, limitBytes) }));
      } catch (error) {
        const code = /code (-?\d+)/.exec((error as Error).message)?.[1];
        if (
          code !== undefined &&
          (Number(code) === -ZSTD_DST_TOO_SMALL || Number(code) === 2 ** 32 - ZSTD_DST_TOO_SMALL)
        )
          throw declared === undefined
            ? tooLarge('zstd', limitBytes)
            : corrupt('zstd', 'more data than the frame declares');
        throw corrupt('zstd', (error as Error).message);
      }
    },
  };
}

/**
 * The content size the first zstd frame's header declares, or undefined when it declares none.
 * CORRUPT_MESSAGE for what is not a zstd frame header (skippable frames and dictionaries included).
 */
export function zstdFrameContentSize(src: Buffer): number | undefined {
  const fail = (why: string) => corrupt('zstd', why);
  if (src.length < 6 || src.readUInt32LE(0) !== ZSTD_MAGIC) throw fail('no zstd frame magic');
  const fhd = src[4]!;
  if (fhd & 0x08) throw fail('reserved bit set in the frame header');
  const singleSegment = (fhd & 0x20) !== 0;
  const dictionaryBytes = [0, 1, 2, 4][fhd & 3]!;
  const fcsFlag = fhd >> 6;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  let pos = 5 + (singleSegment ? 0 : 1);
  if (src.length < pos + dictionaryBytes + fcsBytes) throw fail('truncated frame header');
  for (let i = 0; i < dictionaryBytes; i++)
    if (src[pos + i] !== 0) throw fail('dictionaries are not supported');
  pos += dictionaryBytes;
  switch (fcsBytes) {
    case 0:
      return undefined;
    case 1:
      return src[pos]!;
    case 2:
      return src.readUInt16LE(pos) + 256;
    case 4:
      return src.readUInt32LE(pos);
    default:
      return src.readUInt32LE(pos + 4) * 2 ** 32 + src.readUInt32LE(pos);
  }
}

/** The process's codecs (see `CodecRegistry`). */
export const codecs = new CodecRegistry();
