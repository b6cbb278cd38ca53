import { type CodecStatus, codecs } from '../protocol/compression.js';

export type { CodecName, CodecStatus } from '../protocol/compression.js';

/**
 * Loads the batch compression codecs of this process (snappy, lz4, zstd; gzip is always there) and
 * tells which could be loaded. The producer and consumer call it themselves; call it before
 * `parseFetchResponse` on an answer that may hold compressed batches.
 */
export function loadCodecs(): Promise<CodecStatus[]> {
  return codecs.load();
}
