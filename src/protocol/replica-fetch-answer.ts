import type { ReplicaFetchPartitionAnswer } from './internal-api.js';
import { packr } from './msgpack.js';

/**
 * A replica fetch answer, `{partitions: [...]}`, as msgpack in pieces: each partition's stored
 * batches are sent as the very buffers the log read returned, not copied into one packed body.
 * The pieces joined are one msgpack document that any decoder reads as `packr.pack` of the same
 * answer would read (the records field takes the 32-bit bin form whatever its length): a follower
 * of any version decodes it, and the leader's part of a catch-up costs no copy and no allocation
 * of the size of the answer.
 */
export function encodeReplicaFetchAnswer(partitions: readonly ReplicaFetchPartitionAnswer[]): Buffer[] {
  const chunks: Buffer[] = [answerHeader(partitions.length)];
  for (const answer of partitions) {
    const { records, ...rest } = answer;
    if (records.length < INLINE_RECORDS_BYTES_MAX) {
      chunks.push(packr.pack(answer));
      continue;
    }
    // Packed with the records as the last field (wherever the answer has it), empty: the packed
    // map ends with bin8 of length 0, which the real length's bin32 header and the batches replace.
    const packed = packr.pack({ ...rest, records: EMPTY });
    const n = packed.length;
    if (packed[n - 2] !== 0xc4 || packed[n - 1] !== 0x00) {
      chunks.push(packr.pack(answer));
      continue;
    }
    const bin = Buffer.allocUnsafe(5);
    bin[0] = 0xc6;
    bin.writeUInt32BE(records.length, 1);
    chunks.push(
      packed.subarray(0, n - 2),
      bin,
      Buffer.isBuffer(records)
        ? records
        : Buffer.from(records.buffer, records.byteOffset, records.byteLength),
    );
  }
  return chunks;
}

/** Below this many bytes of batches a partition's answer is packed whole (a copy costs less than a piece). */
const INLINE_RECORDS_BYTES_MAX = 16 * 1024;
const EMPTY = new Uint8Array(0);
const PARTITIONS_KEY = Buffer.from('partitions', 'latin1');

/** A map of one entry, `partitions`, and the header of an array of `count` elements. */
function answerHeader(count: number): Buffer {
  const array =
    count < 16
      ? Buffer.from([0x90 | count])
      : count < 0x10000
        ? Buffer.from([0xdc, count >>> 8, count & 0xff])
        : Buffer.from([0xdd, count >>> 24, (count >>> 16) & 0xff, (count >>> 8) & 0xff, count & 0xff]);
  return Buffer.concat([Buffer.from([0x81, 0xa0 | PARTITIONS_KEY.length]), PARTITIONS_KEY, array]);
}
