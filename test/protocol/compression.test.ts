import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import { LIMITS } from '../../src/common/limits.js';
import {
  batchCodecAt,
  checkBatchAt,
  compressBatch,
  decodeRecords,
  decompressBatch,
  encodeBatch,
  type RecordInput,
  splitProducedBatches,
} from '../../src/protocol/batch.js';
import {
  type CodecName,
  CodecRegistry,
  type CompressedCodecName,
  codecId,
  codecs,
  decodeLz4Block,
  decompressLz4Frame,
  type Lz4BlockDecoder,
  nativeLz4BlockDecoder,
  parseAcceptCompression,
  xxh32,
} from '../../src/protocol/compression.js';
import { reseal, thrown } from './batch-helpers.js';

/**
 * Batch compression: each codec's framing pinned by golden bytes both ways (bytes Sluice writes
 * for a fixed input, and bytes another implementation wrote that Sluice must read), round trips
 * of batches in every codec, and damaged or oversized (bomb) compressed data refused with its code.
 */
const CODECS: CompressedCodecName[] = ['gzip', 'snappy', 'lz4', 'zstd'];
const GOLDEN_INPUT = Buffer.from('sluice sluice sluice sluice sluice golden');
const SEED = Number(process.env.SEED ?? 20261201);
const replay = `SEED=${SEED} npx vitest run test/protocol/compression.test.ts`;

const codec = (name: CompressedCodecName) => codecs.get(codecId(name));

beforeAll(async () => {
  const status = await codecs.load();
  expect(status.filter((s) => !s.available)).toEqual([]);
});

describe('golden bytes: what Sluice writes', () => {
  // gzip: zlib's member with mtime 0 and OS 3 (Unix), deflate at level 6, CRC-32 and size trailer.
  // snappy: raw, varint length 0x29 (41) then literal/copy elements. lz4: a frame with independent
  // 256 KiB-max blocks, no checksums, no content size. zstd: a single-segment frame with its
  // content size, level 3 (byte for byte what python3-zstandard writes at level 3).
  const golden: Record<CompressedCodecName, string> = {
    gzip: '1f8b08000000000000032bce29cd4c4e5528c643a5e7e7a4a4e601009614223729000000',
    snappy: '2918736c75696365206e070014676f6c64656e',
    lz4: '04224d18604082120000007f736c756963652007000960676f6c64656e00000000',
    zstd: '28b52ffd20299d000068736c7569636520676f6c64656e0100628a11',
  };
  it.each(CODECS)('%s of a fixed input is fixed bytes, and reads back', (name) => {
    const out = codec(name).compress(GOLDEN_INPUT);
    expect(out.toString('hex')).toBe(golden[name]);
    expect(codec(name).decompress(Buffer.from(golden[name], 'hex'), 1024).equals(GOLDEN_INPUT)).toBe(true);
  });

  it('a compressed batch is the plain header, codec 3 in the attributes, and one bin32 of the frame', () => {
    const batch = encodeBatch(
      [{ key: Buffer.from('k'), value: Buffer.from('sluice sluice sluice'), timestamp: 1_700_000_000_000 }],
      { compression: { codec: 'lz4' } },
    );
    expect(batch.toString('hex')).toBe(
      '9ecf0000000000000000ce00000069d2ffffffff02ce0c8e1000cd0003ce00000000d30000018bcfe56800' +
        'd30000018bcfe56800d3ffffffffffffffffd1ffffd2ffffffffce00000001c60000002904224d186040821a' +
        '000000f400950000c4016bc414736c75696365200700606c756963659000000000',
    );
    expect(batchCodecAt(batch)).toBe(3);
  });
});

describe('golden bytes: what other implementations write', () => {
  it('reads an lz4 frame with block and content checksums and a content size (python3-lz4)', () => {
    const frame = Buffer.from(
      '04224d187c40290000000000000047120000007f736c756963652007000960676f6c64656e4ca5ac9900000000884d8f2a',
      'hex',
    );
    expect(decompressLz4Frame(frame, 1024).equals(GOLDEN_INPUT)).toBe(true);
    expect(codec('lz4').decompress(frame, 1024).equals(GOLDEN_INPUT)).toBe(true);
    // The same frame with one content byte changed fails its block checksum.
    const damaged = Buffer.from(frame);
    damaged[20]! ^= 1;
    expect(thrown(() => decompressLz4Frame(damaged, 1024))?.message).toMatch(/checksum mismatch/);
    expect(thrown(() => codec('lz4').decompress(damaged, 1024))?.message).toMatch(/checksum mismatch/);
  });

  it('reads a zstd frame that declares no content size (python3-zstandard, write_content_size=False)', () => {
    const frame = Buffer.from('28b52ffd00009d000068736c7569636520676f6c64656e0100628a11', 'hex');
    expect(codec('zstd').decompress(frame, 1024).equals(GOLDEN_INPUT)).toBe(true);
  });

  it('xxh32 matches the reference vectors', () => {
    expect(xxh32(Buffer.alloc(0), 0, 0)).toBe(0x02cc5d05);
    expect(xxh32(Buffer.from('abc'), 0, 3)).toBe(0x32d153ff);
    const long = Buffer.from('Nobody inspects the spammish repetition');
    expect(xxh32(long, 0, long.length)).toBe(0xe2293b2f);
  });
});

const recordArbitrary = fc.record({
  key: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: null }),
  value: fc.option(
    fc.oneof(
      fc.uint8Array({ maxLength: 400 }),
      fc.string({ maxLength: 200 }).map((s) => new Uint8Array(Buffer.from(s.repeat(3)))),
    ),
    { nil: null },
  ),
  headers: fc.array(
    fc.tuple(fc.string({ maxLength: 10 }), fc.option(fc.uint8Array({ maxLength: 20 }), { nil: null })),
    {
      maxLength: 3,
    },
  ),
  timestamp: fc.integer({ min: 0, max: 2 ** 41 }),
});

describe('compressed batches', () => {
  it.each(CODECS)(
    '%s: decompressing gives the uncompressed batch byte for byte, and records read back',
    (name) => {
      fc.assert(
        fc.property(fc.array(recordArbitrary, { minLength: 1, maxLength: 30 }), (records) => {
          const plain = encodeBatch(records as RecordInput[], {
            producerId: 7,
            producerEpoch: 1,
            baseSequence: 3,
          });
          const compressed = encodeBatch(records as RecordInput[], {
            producerId: 7,
            producerEpoch: 1,
            baseSequence: 3,
            compression: { codec: name },
          });
          expect(batchCodecAt(compressed)).toBe(codecId(name));
          expect(checkBatchAt(compressed).ok).toBe(true);
          expect(decompressBatch(compressed).equals(plain)).toBe(true);
          expect(compressBatch(plain, name).equals(compressed)).toBe(true);
          expect(decodeRecords(compressed)).toEqual(decodeRecords(plain));
          expect(splitProducedBatches(compressed).recordCount).toBe(records.length);
        }),
        { seed: SEED, numRuns: 60 },
      );
    },
  );

  it('compaction re-encodes in the codec its attributes name', () => {
    const batch = encodeBatch([{ value: Buffer.from('a'), timestamp: 1 }], { attributes: codecId('zstd') });
    expect(batchCodecAt(batch)).toBe(4);
    expect(decodeRecords(batch)[0]!.value).toEqual(Buffer.from('a'));
  });

  it('checks the record count after decompressing: a header that claims more or fewer records is refused', () => {
    const three = encodeBatch(
      [0, 1, 2].map((i) => ({ value: Buffer.from(`v${i}`), timestamp: 5 })),
      { compression: { codec: 'gzip' } },
    );
    for (const count of [2, 4]) {
      const b = Buffer.from(three);
      b.writeUInt32BE(count, 70);
      b.writeUInt32BE(count - 1, 30);
      const error = thrown(() => splitProducedBatches(reseal(b)));
      expect(error?.code, `count ${count}`).toBe('CORRUPT_MESSAGE');
    }
  });

  it('refuses a record over the record size limit after decompressing, with RECORD_TOO_LARGE', () => {
    const big = encodeBatch([{ value: Buffer.alloc(5000, 1), timestamp: 1 }], {
      compression: { codec: 'zstd' },
    });
    expect(big.length).toBeLessThan(200);
    expect(thrown(() => splitProducedBatches(big, { recordBytesMax: 4096 }))?.code).toBe('RECORD_TOO_LARGE');
  });

  it.each(CODECS)(
    '%s: fuzzed damage under a valid CRC is refused with a Sluice error or reads as valid records',
    (name) => {
      const base = encodeBatch(
        Array.from({ length: 20 }, (_, i) => ({
          key: Buffer.from(`key-${i}`),
          value: Buffer.from(`value ${i} `.repeat(8)),
          timestamp: 1000 + i,
        })),
        { compression: { codec: name } },
      );
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
          fc.option(fc.nat(), { nil: undefined }),
          (flips, cut) => {
            let payload = Buffer.from(base.subarray(79));
            for (const [at, x] of flips) payload[at % payload.length]! ^= x;
            if (cut !== undefined) payload = payload.subarray(0, cut % payload.length);
            const b = Buffer.concat([base.subarray(0, 79), payload]);
            b.writeUInt32BE(payload.length, 75);
            reseal(b);
            try {
              const { recordCount } = splitProducedBatches(b);
              expect(decodeRecords(b)).toHaveLength(recordCount);
            } catch (error) {
              if (!isSluiceError(error)) throw new Error(`not a Sluice error (${replay}): ${String(error)}`);
              expect([
                'CORRUPT_MESSAGE',
                'INVALID_RECORD',
                'INVALID_TIMESTAMP',
                'DECOMPRESSED_TOO_LARGE',
              ]).toContain(error.code);
            }
          },
        ),
        { seed: SEED, numRuns: 300 },
      );
    },
  );
});

describe('decompression bombs', () => {
  const zeros = Buffer.alloc(LIMITS.uncompressedBatchBytesMax + 1024);
  /** A batch whose header is a real one-record batch's and whose payload is `payload`. */
  const withPayload = (name: CodecName, payload: Buffer) => {
    const template = encodeBatch([{ value: null, timestamp: 1 }], {
      compression: { codec: name as CompressedCodecName },
    });
    const b = Buffer.concat([template.subarray(0, 79), payload]);
    b.writeUInt32BE(payload.length, 75);
    return reseal(b);
  };

  it.each(CODECS)('%s: data that decompresses past the limit is DECOMPRESSED_TOO_LARGE', (name) => {
    const bomb = withPayload(name, codec(name).compress(zeros));
    expect(bomb.length).toBeLessThan(LIMITS.batchBytesMax);
    expect(checkBatchAt(bomb).ok).toBe(true);
    expect(thrown(() => splitProducedBatches(bomb))?.code).toBe('DECOMPRESSED_TOO_LARGE');
    expect(thrown(() => decodeRecords(bomb))?.code).toBe('DECOMPRESSED_TOO_LARGE');
  });

  it('a zstd frame that declares no size is stopped at the limit while decoding', () => {
    const frame = readFileSync(new URL('./testdata/zeros-9MiB-no-content-size.zst', import.meta.url));
    expect(thrown(() => codec('zstd').decompress(frame, LIMITS.uncompressedBatchBytesMax))?.code).toBe(
      'DECOMPRESSED_TOO_LARGE',
    );
    expect(codec('zstd').decompress(frame, 10 * 1024 * 1024).length).toBe(9 * 1024 * 1024);
  });

  it('snappy and zstd refuse by the declared size before allocating; lz4 and gzip stop at the limit', () => {
    for (const name of CODECS) {
      const error = thrown(() => codec(name).decompress(codec(name).compress(Buffer.alloc(5000)), 4999));
      expect(error?.code, name).toBe('DECOMPRESSED_TOO_LARGE');
      expect(codec(name).decompress(codec(name).compress(Buffer.alloc(5000)), 5000).length, name).toBe(5000);
    }
  });
});

describe('the lz4 frame reader', () => {
  it('refuses every truncation of a frame, and bytes after it', () => {
    const frame = codec('lz4').compress(Buffer.from('sluice '.repeat(500)));
    for (let n = 0; n < frame.length; n++)
      expect(thrown(() => decompressLz4Frame(frame.subarray(0, n), 1 << 20))?.code, `length ${n}`).toBe(
        'CORRUPT_MESSAGE',
      );
    expect(
      thrown(() => decompressLz4Frame(Buffer.concat([frame, Buffer.from([0])]), 1 << 20))?.message,
    ).toMatch(/bytes after the frame/);
  });

  it('refuses a match offset before the start of the output', () => {
    // Header of the golden frame, then one block: token 0x10 (1 literal, match 4), 'a', offset 2.
    const header = Buffer.from('04224d18604082', 'hex');
    const block = Buffer.from([0x10, 0x61, 0x02, 0x00]);
    const size = Buffer.alloc(4);
    size.writeUInt32LE(block.length);
    const frame = Buffer.concat([header, size, block, Buffer.alloc(4)]);
    expect(thrown(() => decompressLz4Frame(frame, 1024))?.message).toMatch(/offset 2 outside the output/);
  });
});

/** A frame of `blocks` (compressed LZ4 blocks), 64 KiB block maximum, `linked` or independent, no checksums. */
function lz4Frame(blocks: Buffer[], linked: boolean): Buffer {
  const descriptor = Buffer.from([0x04, 0x22, 0x4d, 0x18, linked ? 0x40 : 0x60, 0x40, 0]);
  descriptor[6] = (xxh32(descriptor, 4, 6) >>> 8) & 0xff;
  const parts: Buffer[] = [descriptor];
  for (const block of blocks) {
    const size = Buffer.alloc(4);
    size.writeUInt32LE(block.length);
    parts.push(size, block);
  }
  return Buffer.concat([...parts, Buffer.alloc(4)]);
}

describe('the native lz4 block decoder', () => {
  const require = createRequire(import.meta.url);
  const native = nativeLz4BlockDecoder(require('lz4-napi'));
  const decoders: [string, Lz4BlockDecoder][] = [
    ['TypeScript', decodeLz4Block],
    ['native', native],
  ];
  // Block 1: five literals 'hello'. Block 2: literal 'x', then a match of 5 at offset 6 (back into
  // block 1), then literal 'y': 'xhelloy' when blocks are linked.
  const hello = Buffer.from([0x50, ...Buffer.from('hello')]);
  const reachingBack = Buffer.from([0x11, 0x78, 0x06, 0x00, 0x10, 0x79]);

  it.each(decoders)(
    '%s: a linked block matches into the block before it (golden bytes)',
    (_, decodeBlock) => {
      const frame = lz4Frame([hello, reachingBack], true);
      expect(frame.toString('hex')).toBe('04224d184040c0060000005068656c6c6f0600000011780600107900000000');
      expect(decompressLz4Frame(frame, 1024, { decodeBlock }).toString()).toBe('helloxhelloy');
    },
  );

  it.each(decoders)('%s: an independent block may not match into the block before it', (_, decodeBlock) => {
    const error = thrown(() =>
      decompressLz4Frame(lz4Frame([hello, reachingBack], false), 1024, { decodeBlock }),
    );
    expect(error?.code).toBe('CORRUPT_MESSAGE');
  });

  it.each(decoders)(
    '%s: a block that decodes past its 64 KiB maximum is corrupt, not a bomb',
    (_, decodeBlock) => {
      // One literal, then a match of 4 + 15 + 255 * 258 + 0 bytes at offset 1: 65,810 bytes.
      const block = Buffer.from([0x1f, 0x61, 0x01, 0x00, ...Array(258).fill(255), 0x00, 0x10, 0x62]);
      const error = thrown(() => decompressLz4Frame(lz4Frame([block], false), 1 << 20, { decodeBlock }));
      expect(error?.code).toBe('CORRUPT_MESSAGE');
      expect(error?.message).toMatch(/more than its maximum size/);
    },
  );

  it.each(decoders)(
    '%s: a block that fits its maximum but not the limit is DECOMPRESSED_TOO_LARGE',
    (_, decodeBlock) => {
      const frame = codec('lz4').compress(Buffer.alloc(60_000));
      expect(thrown(() => decompressLz4Frame(frame, 59_999, { decodeBlock }))?.code).toBe(
        'DECOMPRESSED_TOO_LARGE',
      );
      expect(decompressLz4Frame(frame, 60_000, { decodeBlock }).equals(Buffer.alloc(60_000))).toBe(true);
    },
  );

  it.each(decoders)('%s: a block that ends with a match, not with literals, is corrupt', (_, decodeBlock) => {
    // Literal 'a', then a match of 4 at offset 1, and no literals-only sequence after it.
    const error = thrown(() =>
      decompressLz4Frame(lz4Frame([Buffer.from([0x10, 0x61, 0x01, 0x00])], false), 1024, { decodeBlock }),
    );
    expect(error?.code).toBe('CORRUPT_MESSAGE');
    expect(
      decompressLz4Frame(lz4Frame([Buffer.from([0x10, 0x61, 0x01, 0x00, 0x00])], false), 1024, {
        decodeBlock,
      }).toString(),
    ).toBe('aaaaa');
  });

  it('decodes a block that compresses more than 16 times in a second, full room', () => {
    for (const bytes of [200_000, 2_000_000]) {
      const frame = codec('lz4').compress(Buffer.alloc(bytes, 7));
      expect(frame.length * 16).toBeLessThan(bytes);
      const out = decompressLz4Frame(frame, 8 << 20, { decodeBlock: native });
      expect(out.equals(Buffer.alloc(bytes, 7)), `${bytes} bytes`).toBe(true);
      expect(thrown(() => decompressLz4Frame(frame, bytes - 1, { decodeBlock: native }))?.code).toBe(
        'DECOMPRESSED_TOO_LARGE',
      );
    }
  });

  it('agrees with the TypeScript decoder on damaged frames: the same bytes, or both refuse with the same code', () => {
    const input = Buffer.from(
      Array.from({ length: 3000 }, (_, i) => `{"i":${i % 97},"msg":"request ${(i * 7919) % 1000}"}`).join(''),
    );
    const frames = [codec('lz4').compress(input), lz4Frame([hello, reachingBack], true)];
    fc.assert(
      fc.property(
        fc.nat({ max: frames.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }),
        fc.oneof(fc.constant(1 << 20), fc.integer({ min: 1, max: 1 << 16 })),
        (which, flips, limit) => {
          const frame = Buffer.from(frames[which]!);
          // Damage past the frame descriptor (whose checksum refuses any change before both decoders run).
          for (const [at, x] of flips) frame[7 + (at % (frame.length - 7))]! ^= x;
          const run = (decodeBlock: Lz4BlockDecoder) => {
            try {
              return decompressLz4Frame(frame, limit, { decodeBlock }).toString('hex');
            } catch (error) {
              if (!isSluiceError(error)) throw new Error(`not a Sluice error (${replay}): ${String(error)}`);
              return error.code;
            }
          };
          const [byNative, byTypeScript] = [run(native), run(decodeLz4Block)];
          // Bytes both corrupt and past a small limit may be refused for either reason first.
          if (limit !== 1 << 20 && byNative !== byTypeScript)
            expect([byNative, byTypeScript].sort(), replay).toEqual([
              'CORRUPT_MESSAGE',
              'DECOMPRESSED_TOO_LARGE',
            ]);
          else expect(byNative, replay).toBe(byTypeScript);
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe('transient decompression', () => {
  it.each(CODECS)(
    '%s: decompressTransient gives what decompress gives, and the next call may reuse it',
    (name) => {
      const a = codec(name).compress(Buffer.from('a'.repeat(5000)));
      const b = codec(name).compress(Buffer.from('b'.repeat(3000)));
      expect(
        codec(name)
          .decompressTransient(a, 1 << 20)
          .equals(codec(name).decompress(a, 1 << 20)),
      ).toBe(true);
      const kept = codec(name).decompress(a, 1 << 20);
      codec(name).decompressTransient(b, 1 << 20);
      expect(kept.equals(Buffer.from('a'.repeat(5000)))).toBe(true);
      expect(
        codec(name)
          .decompressTransient(b, 1 << 20)
          .toString(),
      ).toBe('b'.repeat(3000));
    },
  );

  it.each(CODECS)('%s: batches decompressed one after another keep their own records', (name) => {
    const batches = ['first', 'second'].map((word) =>
      encodeBatch(
        Array.from({ length: 50 }, (_, i) => ({
          value: Buffer.from(`${word} ${i} `.repeat(20)),
          timestamp: i,
        })),
        { compression: { codec: name } },
      ),
    );
    const [first, second] = batches.map((b) => decompressBatch(b));
    splitProducedBatches(batches[0]!);
    expect(decodeRecords(first!)[49]!.value?.toString()).toBe('first 49 '.repeat(20));
    expect(decodeRecords(second!)[0]!.value?.toString()).toBe('second 0 '.repeat(20));
  });
});

describe('zstd through the module', () => {
  const golden = Buffer.from('28b52ffd20299d000068736c7569636520676f6c64656e0100628a11', 'hex');

  it('reads two frames back to back (golden bytes), within the limit of both together', () => {
    const twice = Buffer.concat([golden, golden]);
    expect(
      codec('zstd')
        .decompress(twice, 1024)
        .equals(Buffer.concat([GOLDEN_INPUT, GOLDEN_INPUT])),
    ).toBe(true);
    expect(thrown(() => codec('zstd').decompress(twice, 2 * GOLDEN_INPUT.length - 1))?.code).toBe(
      'DECOMPRESSED_TOO_LARGE',
    );
  });

  it('refuses a frame that declares another size than it holds, and decodes the next one', () => {
    for (const declared of [0x20, 0x30]) {
      const lying = Buffer.from(golden);
      lying[5] = declared;
      expect(thrown(() => codec('zstd').decompress(lying, 1024))?.code, `declares ${declared}`).toBe(
        'CORRUPT_MESSAGE',
      );
    }
    expect(codec('zstd').decompress(golden, 1024).equals(GOLDEN_INPUT)).toBe(true);
  });

  it('grows its rooms for a larger frame and still decodes a small one after it', () => {
    const large = Buffer.from('sluice '.repeat(300_000));
    expect(
      codec('zstd')
        .decompressTransient(codec('zstd').compress(large), 4 << 20)
        .equals(large),
    ).toBe(true);
    expect(codec('zstd').decompressTransient(golden, 1024).equals(GOLDEN_INPUT)).toBe(true);
  });
});

describe('codec loading', () => {
  it('a codec whose package cannot load is reported, and a batch in it is UNSUPPORTED_COMPRESSION_TYPE saying why', async () => {
    const require = createRequire(import.meta.url);
    const registry = new CodecRegistry();
    const status = await registry.load(async (name, file) => {
      if (name === 'lz4-napi') throw new Error('Cannot find module lz4-napi-linux-x64-gnu');
      return file === undefined ? require(name) : createRequire(require.resolve(name))(file);
    });
    expect(status.find((s) => s.name === 'lz4')).toEqual({
      name: 'lz4',
      available: false,
      problem: 'Cannot find module lz4-napi-linux-x64-gnu',
    });
    expect(registry.available()).toEqual(['none', 'gzip', 'snappy', 'zstd']);
    const error = thrown(() => registry.get(3));
    expect(error?.code).toBe('UNSUPPORTED_COMPRESSION_TYPE');
    expect(error?.message).toMatch(/lz4 could not be loaded on this node: Cannot find module/);
    expect(thrown(() => registry.get(6))?.message).toMatch(/codec 6 is no codec/);
  });

  it('Sluice-Accept-Compression names codecs; none and unknown names are ignored', () => {
    expect([...parseAcceptCompression('lz4, ZSTD,none,brotli')]).toEqual([3, 4]);
    expect([...parseAcceptCompression(undefined)]).toEqual([]);
  });
});
