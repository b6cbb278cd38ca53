import { Packr } from 'msgpackr';
import { crc32c } from '../../src/common/crc32c.js';
import { isSluiceError, type SluiceError } from '../../src/common/errors.js';
import { encodeBatch } from '../../src/protocol/batch.js';

/**
 * Helpers for tests that damage one field of a batch and then make its CRC and length right again,
 * so that what refuses the batch is the check on that field, not the CRC.
 */

/** Byte positions of the header values (one past each msgpack marker), as docs/storage-format.md lays them out. */
export const AT = {
  batchLength: 11,
  crc: 22,
  attributes: 27,
  lastOffsetDelta: 30,
  baseTimestamp: 35,
  maxTimestamp: 44,
  producerId: 53,
  producerEpoch: 62,
  baseSequence: 65,
  recordCount: 70,
  recordsArray: 75,
  records: 79,
} as const;

/** A copy of `batch` changed by `edit`, with batchLength and CRC-32C computed again. */
export function resealed(batch: Buffer, edit: (b: Buffer) => Buffer | undefined = () => undefined): Buffer {
  const b = edit(Buffer.from(batch)) ?? Buffer.from(batch);
  return reseal(b);
}

/** Puts the right batchLength and CRC-32C into `b` in place, and returns it. */
export function reseal(b: Buffer): Buffer {
  b.writeUInt32BE(b.length - 15, AT.batchLength);
  b.writeUInt32BE(crc32c(b.subarray(26)), AT.crc);
  return b;
}

const packr = new Packr({ useRecords: false, variableMapSize: true });

/** msgpack bytes of any value; Buffers become bin, strings str, integers their shortest form. */
export function pack(value: unknown): Buffer {
  return packr.pack(value);
}

/**
 * A batch whose header comes from `encodeBatch` and whose records are the given msgpack bytes,
 * resealed. The record count and the records array header are `count` (default: the number of
 * records), lastOffsetDelta `count - 1`; the timestamps are as given (default 1000, and
 * maxTimestamp the base).
 */
export function withRecords(
  records: readonly Buffer[],
  header: { count?: number; baseTimestamp?: number; maxTimestamp?: number } = {},
): Buffer {
  const count = header.count ?? records.length;
  const baseTimestamp = header.baseTimestamp ?? 1000;
  const template = encodeBatch([{ value: null, timestamp: 0 }]);
  const b = Buffer.concat([template.subarray(0, AT.records), ...records]);
  b.writeUInt32BE(count, AT.recordCount);
  b.writeUInt32BE(count, AT.recordsArray);
  b.writeUInt32BE(Math.max(0, count - 1), AT.lastOffsetDelta);
  b.writeBigInt64BE(BigInt(baseTimestamp), AT.baseTimestamp);
  b.writeBigInt64BE(BigInt(header.maxTimestamp ?? baseTimestamp), AT.maxTimestamp);
  return reseal(b);
}

/** The error `f` throws, or undefined when it returns. */
export function thrown(f: () => unknown): SluiceError | undefined {
  try {
    f();
  } catch (error) {
    if (isSluiceError(error)) return error;
    throw error;
  }
  return undefined;
}
