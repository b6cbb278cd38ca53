import { isSluiceError, type SluiceError } from '../../src/common/errors.js';
import { encodeBatch, type RecordInput } from '../../src/protocol/batch.js';

/** A batch of `count` records whose values name their producer-side sequence numbers. */
export function batchOf(
  values: readonly string[],
  options: { timestamp?: number; keys?: readonly (string | null)[] } = {},
): Buffer {
  const records: RecordInput[] = values.map((v, i) => ({
    key: options.keys?.[i] != null ? Buffer.from(options.keys[i]!) : null,
    value: v === '\u0000tombstone' ? null : Buffer.from(v),
    timestamp: (options.timestamp ?? 1_000) + i,
  }));
  return encodeBatch(records);
}

export function valuesOf(records: readonly { value: Uint8Array | null }[]): (string | null)[] {
  return records.map((r) => (r.value === null ? null : Buffer.from(r.value).toString()));
}

/** The SluiceError `promise` rejects with; any other outcome fails the test. */
export async function refusal(promise: Promise<unknown>): Promise<SluiceError> {
  try {
    await promise;
  } catch (error) {
    if (isSluiceError(error)) return error;
    throw error;
  }
  throw new Error('expected a refusal, the call succeeded');
}
