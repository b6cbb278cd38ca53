import { SluiceError } from '../common/errors.js';
import type { Counter, Family, Metrics } from '../common/metrics.js';
import {
  batchCodecAt,
  batchSize,
  compressBatch,
  decompressBatch,
  nextOffsetOf,
  readBatchHeader,
  type SplitBatch,
} from '../protocol/batch.js';
import { CODEC_NAMES, type CodecName, codecId } from '../protocol/compression.js';
import type { CompressionType } from '../protocol/topic-config.js';

/**
 * What the broker does with compressed batches: counts them, recompresses a produce to the topic's
 * `compression.type`, and decompresses a fetch's batches for a client that does not accept their
 * codec. Followers never come here: they store the leader's bytes as they are.
 */
export class CompressionMetrics {
  readonly #appended: Family<Counter>;
  readonly #recompressedIn: Family<Counter>;
  readonly #recompressedOut: Family<Counter>;
  readonly #fetchDecompressed: Family<Counter>;

  constructor(metrics: Metrics) {
    this.#appended = metrics.counter({
      name: 'sluice_batches_compressed_total',
      help: 'Compressed batches appended as partition leader, by codec',
      labelNames: ['codec'],
    });
    this.#recompressedIn = metrics.counter({
      name: 'sluice_recompression_in_bytes_total',
      help: "Bytes of produced batches recompressed to their topic's compression.type, before, by target codec",
      labelNames: ['codec'],
    });
    this.#recompressedOut = metrics.counter({
      name: 'sluice_recompression_out_bytes_total',
      help: "Bytes of produced batches recompressed to their topic's compression.type, after, by target codec",
      labelNames: ['codec'],
    });
    this.#fetchDecompressed = metrics.counter({
      name: 'sluice_fetch_decompressed_batches_total',
      help: 'Stored batches decompressed for fetch clients that do not accept their codec, by codec',
      labelNames: ['codec'],
    });
  }

  /** Counts the compressed batches among `data`'s whole batches. */
  appended(data: Buffer): void {
    for (let pos = 0; pos < data.length; ) {
      const codec = batchCodecAt(data, pos);
      if (codec !== 0) this.#appended.labels(CODEC_NAMES[codec] ?? String(codec)).inc();
      pos += batchSize(readBatchHeader(data, pos));
    }
  }

  recompressed(codec: CodecName, bytesIn: number, bytesOut: number): void {
    this.#recompressedIn.labels(codec).inc(bytesIn);
    this.#recompressedOut.labels(codec).inc(bytesOut);
  }

  fetchDecompressed(codec: number): void {
    this.#fetchDecompressed.labels(CODEC_NAMES[codec] ?? String(codec)).inc();
  }
}

/**
 * The checked batches of a produce (`batches` of `data`) in the topic's `compression.type`:
 * `data` itself when every batch is in it already (or the type is `producer`), else the batches
 * recompressed where they differ. A recompressed batch over `batchBytesMax` (decompressing to
 * `none` grows it) is MESSAGE_TOO_LARGE and nothing is appended.
 */
export function toCompressionType(
  data: Buffer,
  batches: readonly SplitBatch[],
  type: CompressionType,
  batchBytesMax: number,
  metrics: CompressionMetrics | undefined,
): Buffer {
  if (type === 'producer') return data;
  const target = codecId(type);
  if (batches.every((b) => (b.header.attributes & 7) === target)) return data;
  const parts = batches.map(({ pos, size, header }) => {
    const stored = data.subarray(pos, pos + size);
    if ((header.attributes & 7) === target) return stored;
    const out = compressBatch(decompressBatch(stored), type);
    if (out.length > batchBytesMax)
      throw new SluiceError(
        'MESSAGE_TOO_LARGE',
        `the batch at offset delta 0..${header.lastOffsetDelta} is ${out.length} bytes in ${type}; the limit is ${batchBytesMax}`,
      );
    metrics?.recompressed(type, size, out.length);
    return out;
  });
  return Buffer.concat(parts);
}

/**
 * Whole stored batches as a client that accepts the codecs `accepted` (numbers) can read them:
 * `data` itself when every batch is uncompressed or in an accepted codec, else the others
 * decompressed (header, offsets and leader epoch as stored, a new CRC). Decompressed data grows:
 * batches after the first stop once the output passes `maxBytes`, and `nextOffset` says where the
 * next fetch starts.
 */
export function forClientCodecs(
  data: Buffer,
  accepted: ReadonlySet<number>,
  maxBytes: number,
  metrics: CompressionMetrics | undefined,
): { data: Buffer; batchCount: number; nextOffset: number | undefined; changed: boolean } {
  let needs = false;
  let batchCount = 0;
  for (let pos = 0; pos < data.length; batchCount++) {
    const codec = batchCodecAt(data, pos);
    if (codec !== 0 && !accepted.has(codec)) needs = true;
    pos += batchSize(readBatchHeader(data, pos));
  }
  if (!needs) return { data, batchCount, nextOffset: undefined, changed: false };
  const parts: Buffer[] = [];
  let bytes = 0;
  let nextOffset: number | undefined;
  for (let pos = 0; pos < data.length; ) {
    const header = readBatchHeader(data, pos);
    const size = batchSize(header);
    const codec = batchCodecAt(data, pos);
    const decompress = codec !== 0 && !accepted.has(codec);
    const part = decompress ? decompressBatch(data, pos) : data.subarray(pos, pos + size);
    if (parts.length > 0 && bytes + part.length > maxBytes) break;
    if (decompress) metrics?.fetchDecompressed(codec);
    parts.push(part);
    bytes += part.length;
    nextOffset = nextOffsetOf(header);
    pos += size;
  }
  return {
    data: Buffer.concat(parts),
    batchCount: parts.length,
    nextOffset: parts.length < batchCount ? nextOffset : undefined,
    changed: true,
  };
}
