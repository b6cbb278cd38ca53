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
 * npm package) for lz4: it compresses frames, and decodes each block for the frame reader below,
 * which parses the frame in TypeScript and gives each block a room of at most its block maximum
 * and what is left of the limit, so that the limit holds (its TypeScript block decoder is the
 * reference the native one is tested against); @bokuweb/zstd-wasm (WebAssembly shipped in the
 * package) for zstd, through its module's C API with one reused context.
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
  /**
   * `decompress`, into memory the codec reuses: the result is valid only until the codec's next
   * call, and nobody may keep it. For a caller that reads the bytes once and keeps nothing (the
   * leader's check of a produced batch, a copy into a decompressed batch), it saves an allocation
   * and a copy of the output.
   */
  decompressTransient(data: Uint8Array, limitBytes: number): Buffer;
}

export interface CodecStatus {
  name: CompressedCodecName;
  available: boolean;
  /** Why the codec could not be loaded. */
  problem?: string;
}

/**
 * Loads a package by name, or with `file` one module of it, relative to its main module (a
 * package's exports map lets no other path in): `require` in production; tests pass one that fails.
 */
export type PackageLoader = (name: string, file?: string) => Promise<unknown>;

const require = createRequire(import.meta.url);
const defaultLoader: PackageLoader = async (name, file) =>
  file === undefined ? require(name) : createRequire(require.resolve(name))(file);

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
      [
        'zstd',
        async () =>
          zstdCodec(await loader('@bokuweb/zstd-wasm'), await loader('@bokuweb/zstd-wasm', './module.js')),
      ],
    ];
    for (const [name, make] of makers) {
      try {
        const codec = await make();
        // A codec that loads but cannot round-trip a few bytes is as good as absent.
        const probe = Buffer.from('sluice codec probe sluice codec probe');
        const compressed = codec.compress(probe);
        if (
          !codec.decompress(compressed, 1024).equals(probe) ||
          !codec.decompressTransient(compressed, 1024).equals(probe)
        )
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
  decompressTransient(data, limitBytes) {
    return this.decompress(data, limitBytes);
  },
};

interface SnappyJs {
  compress(data: Uint8Array): Uint8Array;
  uncompress(data: Uint8Array, maxLength?: number): Uint8Array;
}

function snappyCodec(module: unknown): Codec {
  const snappy = module as SnappyJs;
  if (typeof snappy.compress !== 'function') throw new Error('snappyjs has no compress()');
  const decompress = (data: Uint8Array, limitBytes: number): Buffer => {
    // The declared length comes first: a bomb is refused before anything is allocated.
    const declared = readVarint32(data);
    if (declared === undefined) throw corrupt('snappy', 'no valid length varint');
    if (declared > limitBytes) throw tooLarge('snappy', limitBytes, declared);
    try {
      return asBuffer(snappy.uncompress(asBuffer(data), limitBytes));
    } catch (error) {
      throw corrupt('snappy', (error as Error).message);
    }
  };
  return {
    name: 'snappy',
    id: 2,
    levels: undefined,
    compress: (data) => asBuffer(snappy.compress(asBuffer(data))),
    decompress,
    decompressTransient: decompress,
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
  /** lz4_flex's block decoder: `data` is a little-endian u32 output room, then one block. */
  uncompressSync(data: Uint8Array, dict?: Uint8Array): Buffer;
}

function lz4Codec(module: unknown): Codec {
  const lz4 = module as Lz4Napi;
  if (typeof lz4.compressFrameSync !== 'function') throw new Error('lz4-napi has no compressFrameSync()');
  if (typeof lz4.uncompressSync !== 'function') throw new Error('lz4-napi has no uncompressSync()');
  const decodeBlock = nativeLz4BlockDecoder(lz4);
  let transient = Buffer.allocUnsafe(0);
  return {
    name: 'lz4',
    id: 3,
    levels: undefined,
    compress: (data) => lz4.compressFrameSync(asBuffer(data)),
    decompress: (data, limitBytes) => decompressLz4Frame(asBuffer(data), limitBytes, { decodeBlock }),
    decompressTransient: (data, limitBytes) =>
      decompressLz4Frame(asBuffer(data), limitBytes, {
        decodeBlock,
        output: (bytes) => {
          if (transient.length < bytes) transient = Buffer.allocUnsafe(bytes);
          return transient.subarray(0, bytes);
        },
      }),
  };
}

const LZ4_MAGIC = 0x184d2204;
const LZ4_BLOCK_MAX_BYTES = [0, 0, 0, 0, 64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024];
/** How far back a match may reach: a linked block's matches reach this far into earlier blocks. */
const LZ4_WINDOW_BYTES = 64 * 1024;
/**
 * Most output bytes per input byte of an LZ4 block: a sequence of k >= 1 match-length bytes after
 * its token and offset (k + 3 bytes) gives at most 255k + 18 bytes; literals give at most one
 * byte per byte. Bounds the room a block is decoded into below its frame's block maximum.
 */
const LZ4_EXPANSION_MAX = 255;
/**
 * The native decoder's first room: 16 times the compressed block (JSON log lines compress 4-7
 * times), at least 64 KiB; a block that needs more is decoded again in the full room.
 */
const LZ4_FIRST_ROOM_RATIO = 16;
const LZ4_FIRST_ROOM_MIN_BYTES = 64 * 1024;

/**
 * Decodes one LZ4 block, `src[s, end)`, into `out` from `d`, writing at most `room` bytes, and
 * returns the output position after it. Matches reach back to `floor` at most: the frame's first
 * byte for linked blocks, the block's own first byte for independent ones. A block that needs
 * more than `room` throws `Lz4RoomExceeded`; bytes that are no LZ4 block, CORRUPT_MESSAGE.
 */
export type Lz4BlockDecoder = (
  src: Buffer,
  s: number,
  end: number,
  out: Buffer,
  d: number,
  room: number,
  floor: number,
) => number;

/** Thrown by an `Lz4BlockDecoder` whose block does not fit its room; the frame reader says why. */
class Lz4RoomExceeded extends Error {}

export interface Lz4FrameOptions {
  /** The block decoder: the TypeScript one (`decodeLz4Block`) unless given. */
  decodeBlock?: Lz4BlockDecoder;
  /** Where the output goes: `bytes` bytes to write into (a new buffer unless given). */
  output?: (bytes: number) => Buffer;
}

/**
 * Reads one LZ4 frame into at most `limitBytes` bytes. The frame is walked once first (header
 * checksum, block sizes, end mark, nothing after the frame) so that the output is allocated once,
 * at the smaller of the limit, the declared content size and what the blocks can hold; then each
 * block is decoded into a room of at most the block maximum and what is left of the output.
 * Matches of linked blocks may reach into earlier blocks, never before the frame's first byte;
 * those of independent blocks stay in their block.
 */
export function decompressLz4Frame(src: Buffer, limitBytes: number, options: Lz4FrameOptions = {}): Buffer {
  const fail = (why: string) => corrupt('lz4', why);
  const decodeBlock = options.decodeBlock ?? decodeLz4Block;
  const frame = readLz4FrameHeader(src, limitBytes);
  const { blockMax, blockChecksums, contentChecksum, contentSize } = frame;
  const bound = walkLz4Blocks(src, frame);
  const capacity = Math.min(bound, limitBytes, contentSize ?? Number.MAX_SAFE_INTEGER);
  const out = options.output ? options.output(capacity) : Buffer.allocUnsafe(capacity);
  let d = 0;
  let pos = frame.blocksStart;
  for (;;) {
    const word = src.readUInt32LE(pos);
    pos += 4;
    if (word === 0) break;
    const size = word & 0x7fffffff;
    const room = Math.min(blockMax, capacity - d);
    if (word & 0x80000000) {
      if (size > room) throw roomExceeded(room);
      src.copy(out, d, pos, pos + size);
      d += size;
    } else {
      try {
        d = decodeBlock(src, pos, pos + size, out, d, room, frame.independent ? d : 0);
      } catch (error) {
        if (error instanceof Lz4RoomExceeded) throw roomExceeded(room);
        throw error;
      }
    }
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

  /** Why a block did not fit: its block maximum, the declared content size, or the limit. */
  function roomExceeded(room: number): SluiceError {
    if (room === blockMax) return fail('a block decodes to more than its maximum size');
    if (contentSize !== undefined && capacity === contentSize && contentSize < limitBytes)
      return fail(`frame declares ${contentSize} bytes, holds more`);
    return tooLarge('lz4', limitBytes);
  }
}

/**
 * The block decoder of lz4-napi (lz4_flex, native): its size-prepended block API allocates the
 * room it is given and never writes past it, so the room bounds its output as the TypeScript
 * decoder's does. The block is copied after the room word into one reused input buffer; a linked
 * block gets the last 64 KiB of output before it as its dictionary.
 */
export function nativeLz4BlockDecoder(lz4: Pick<Lz4Napi, 'uncompressSync'>): Lz4BlockDecoder {
  let input = Buffer.allocUnsafe(4 + LZ4_BLOCK_MAX_BYTES[4]!);
  return (src, s, end, out, d, room, floor) => {
    const size = end - s;
    if (input.length < 4 + size) input = Buffer.allocUnsafe(4 + size);
    src.copy(input, 4, s, end);
    const block = input.subarray(0, 4 + size);
    const dictionary = d > floor ? out.subarray(Math.max(floor, d - LZ4_WINDOW_BYTES), d) : undefined;
    const full = Math.min(room, size * LZ4_EXPANSION_MAX);
    // The decoder zeroes the whole room first, which for a 4 MiB block maximum costs more than
    // decoding a batch: a first try gets a room that fits the usual ratios, the full room only
    // when the block needs more.
    const first = Math.min(full, Math.max(LZ4_FIRST_ROOM_MIN_BYTES, size * LZ4_FIRST_ROOM_RATIO));
    let decoded = decodeIn(block, first, dictionary);
    if (decoded === undefined && first < full) decoded = decodeIn(block, full, dictionary);
    // The room is exceeded only when it was the room given; past LZ4_EXPANSION_MAX, no block is valid.
    if (decoded === undefined) {
      if (full === room) throw new Lz4RoomExceeded();
      throw corrupt(
        'lz4',
        `a block of ${size} bytes decodes to more than ${LZ4_EXPANSION_MAX} times its size`,
      );
    }
    decoded.copy(out, d);
    return d + decoded.length;
  };

  /** The block decoded into a room of `room` bytes, or undefined when it needs more. */
  function decodeIn(block: Buffer, room: number, dictionary: Buffer | undefined): Buffer | undefined {
    block.writeUInt32LE(room, 0);
    try {
      return dictionary ? lz4.uncompressSync(block, dictionary) : lz4.uncompressSync(block);
    } catch (error) {
      const message = (error as Error).message;
      if (/output is too small/.test(message)) return undefined;
      throw corrupt('lz4', message);
    }
  }
}

interface Lz4Frame {
  blockMax: number;
  /** Blocks whose matches stay within the block (FLG bit 5), else linked to the earlier blocks. */
  independent: boolean;
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
    independent: (flg & 0x20) !== 0,
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

/** The TypeScript `Lz4BlockDecoder`: every read and write bounds-checked. */
export const decodeLz4Block: Lz4BlockDecoder = (src, s, end, out, d, room, floor) => {
  const fail = (why: string) => corrupt('lz4', why);
  const capacity = d + room;
  for (;;) {
    // A block ends with a sequence of literals only (the format's rule, and the native decoder's).
    if (s >= end) throw fail('the block ends with a match, not with literals');
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
    if (d + literals > capacity) throw new Lz4RoomExceeded();
    if (literals < 16) for (let i = 0; i < literals; i++) out[d + i] = src[s + i]!;
    else src.copy(out, d, s, s + literals);
    s += literals;
    d += literals;
    if (s === end) break; // the last sequence holds literals only
    if (s + 2 > end) throw fail('truncated match offset');
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || offset > d - floor) throw fail(`match offset ${offset} outside the output`);
    let length = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (s >= end) throw fail('truncated match length');
        b = src[s++]!;
        length += b;
      } while (b === 255);
    }
    if (d + length > capacity) throw new Lz4RoomExceeded();
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
};

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
}

/** The Emscripten module inside @bokuweb/zstd-wasm: zstd's C API over one WebAssembly memory. */
interface ZstdModule {
  /** The memory's bytes; a new view after the memory grows (any `_malloc` may grow it). */
  HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
  _free(at: number): void;
  _ZSTD_createDCtx(): number;
  _ZSTD_decompress_usingDict(
    dctx: number,
    dst: number,
    dstCapacity: number,
    src: number,
    srcSize: number,
    dict: number,
    dictSize: number,
  ): number;
  _ZSTD_isError(code: number): number;
}

const ZSTD_MAGIC = 0xfd2fb528;
/** ZSTD_error_dstSize_tooSmall: the output would not fit the room given. */
const ZSTD_DST_TOO_SMALL = 70;
/** zstd's error codes (zstd_errors.h) that damaged input gives, as its ZSTD_getErrorName says them. */
const ZSTD_ERRORS: Record<number, string> = {
  10: 'unknown frame descriptor',
  14: 'unsupported frame parameter',
  16: 'frame requires too much memory for decoding',
  20: 'data corruption detected',
  22: 'restored data does not match checksum',
  32: 'dictionary mismatch',
  72: 'source size wrong (truncated, or bytes after the frames)',
};

/**
 * zstd through the package's Emscripten module rather than its `decompress()`, which creates a
 * decompression context per call, copies into a room of the declared size (so more than one frame
 * does not fit) and copies the output out again: here one context, input and output rooms reused
 * (grown to the largest seen, at most the limit for the output), and the output read in place.
 */
async function zstdCodec(module: unknown, internals: unknown): Promise<Codec> {
  const zstd = module as ZstdWasm;
  if (typeof zstd.init !== 'function') throw new Error('@bokuweb/zstd-wasm has no init()');
  await zstd.init();
  const wasm = (internals as { Module?: ZstdModule }).Module;
  if (typeof wasm?._ZSTD_decompress_usingDict !== 'function' || typeof wasm._ZSTD_createDCtx !== 'function')
    throw new Error('@bokuweb/zstd-wasm has no ZSTD_decompress_usingDict in its module');
  const decoder = new ZstdDecoder(wasm);
  return {
    name: 'zstd',
    id: 4,
    levels: CODEC_LEVELS.zstd,
    compress: (data, level) => asBuffer(zstd.compress(data, level ?? 3)),
    decompress: (data, limitBytes) => Buffer.from(decoder.decompress(asBuffer(data), limitBytes)),
    decompressTransient: (data, limitBytes) => decoder.decompress(asBuffer(data), limitBytes),
  };
}

class ZstdDecoder {
  readonly #wasm: ZstdModule;
  readonly #dctx: number;
  #src = 0;
  #srcBytes = 0;
  #dst = 0;
  #dstBytes = 0;

  constructor(wasm: ZstdModule) {
    this.#wasm = wasm;
    this.#dctx = wasm._ZSTD_createDCtx();
    if (this.#dctx === 0) throw new Error('ZSTD_createDCtx failed');
  }

  /**
   * The frames of `data` decompressed, as a view of the WebAssembly memory valid until the next
   * call. The first frame's declared size is checked against the limit before anything is
   * decoded, and is the output room; when later frames need more, the room is the limit.
   */
  decompress(data: Buffer, limitBytes: number): Buffer {
    const declared = zstdFrameContentSize(data);
    if (declared !== undefined && declared > limitBytes) throw tooLarge('zstd', limitBytes, declared);
    const room = declared ?? limitBytes;
    if (data.length > this.#srcBytes) {
      this.#wasm._free(this.#src);
      this.#src = this.#alloc(data.length);
      this.#srcBytes = data.length;
    }
    this.#wasm.HEAPU8.set(data, this.#src);
    let written = this.#decode(data.length, room);
    if (written === -ZSTD_DST_TOO_SMALL && room < limitBytes) written = this.#decode(data.length, limitBytes);
    if (written === -ZSTD_DST_TOO_SMALL) throw tooLarge('zstd', limitBytes);
    if (written < 0) throw corrupt('zstd', ZSTD_ERRORS[-written] ?? `zstd error ${-written}`);
    const heap = this.#wasm.HEAPU8;
    return Buffer.from(heap.buffer, heap.byteOffset + this.#dst, written);
  }

  /** Bytes written into a room of `room` bytes, or minus zstd's error code. */
  #decode(srcBytes: number, room: number): number {
    if (room > this.#dstBytes) {
      this.#wasm._free(this.#dst);
      this.#dst = 0;
      this.#dstBytes = 0;
      this.#dst = this.#alloc(Math.max(1, room));
      this.#dstBytes = Math.max(1, room);
    }
    const result = this.#wasm._ZSTD_decompress_usingDict(
      this.#dctx,
      this.#dst,
      Math.max(1, room),
      this.#src,
      srcBytes,
      0,
      0,
    );
    // size_t comes back as a 32-bit number, signed or not: an error is (size_t)-code.
    return this.#wasm._ZSTD_isError(result) ? -(-result >>> 0) : result >>> 0;
  }

  #alloc(bytes: number): number {
    const at = this.#wasm._malloc(bytes);
    if (at === 0) throw new Error(`zstd: no room for ${bytes} bytes in the WebAssembly memory`);
    return at;
  }
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
