import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ReplicaFetchPartitionAnswer } from '../../src/protocol/internal-api.js';
import { packr, unpackr } from '../../src/protocol/msgpack.js';
import { encodeReplicaFetchAnswer } from '../../src/protocol/replica-fetch-answer.js';

const answer: fc.Arbitrary<ReplicaFetchPartitionAnswer> = fc.record(
  {
    topic: fc.string({ minLength: 1, maxLength: 40 }),
    partition: fc.nat({ max: 9999 }),
    error: fc.constantFrom('NOT_LEADER_OR_FOLLOWER', 'OFFSET_OUT_OF_RANGE', 'FENCED_LEADER_EPOCH'),
    highWatermark: fc.maxSafeNat(),
    logStartOffset: fc.maxSafeNat(),
    logEndOffset: fc.maxSafeNat(),
    divergingEpoch: fc.record({ epoch: fc.nat(), endOffset: fc.maxSafeNat() }),
    // Across the inline limit (16 KiB) and the 8-, 16- and 32-bit bin forms.
    records: fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc
        .tuple(fc.integer({ min: 16 * 1024 - 2, max: 70_000 }), fc.nat({ max: 255 }))
        .map(([n, fill]) => new Uint8Array(Buffer.alloc(n, fill))),
    ),
  },
  { requiredKeys: ['topic', 'partition', 'highWatermark', 'logStartOffset', 'logEndOffset', 'records'] },
);

function decoded(bytes: Uint8Array): unknown {
  return unpackr.unpack(Buffer.from(bytes));
}

/** The decoded answer with each partition's records as hex (deep equality of large arrays is slow). */
function comparable(bytes: Uint8Array): unknown {
  const { partitions } = decoded(bytes) as { partitions: ReplicaFetchPartitionAnswer[] };
  return partitions.map((p) => ({ ...p, records: Buffer.from(p.records).toString('hex') }));
}

describe('a replica fetch answer sent in pieces', () => {
  it('decodes to what the same answer packed whole decodes to, for any answer', () => {
    fc.assert(
      fc.property(fc.array(answer, { maxLength: 20 }), (partitions) => {
        const joined = Buffer.concat(encodeReplicaFetchAnswer(partitions));
        expect(comparable(joined)).toEqual(comparable(packr.pack({ partitions })));
      }),
      { numRuns: 100 },
    );
  });

  it('carries large batches as the very buffers it was given (no copy)', () => {
    const records = Buffer.alloc(100_000, 0x61);
    // The records field first, as the leader's answers have it: not where the encoding puts it.
    const chunks = encodeReplicaFetchAnswer([
      { records, topic: 't', partition: 0, highWatermark: 5, logStartOffset: 0, logEndOffset: 9 },
    ]);
    expect(chunks.every((c) => c.length < 1000 || c === records)).toBe(true);
    expect(chunks.some((c) => c.buffer === records.buffer && c.byteOffset === records.byteOffset)).toBe(true);
    const [first] = (decoded(Buffer.concat(chunks)) as { partitions: ReplicaFetchPartitionAnswer[] })
      .partitions;
    expect(Buffer.from(first!.records).equals(records)).toBe(true);
  });

  it('writes the array header in its 16- and 32-bit forms past 15 and past 65,535 partitions', () => {
    for (const count of [15, 16, 65_536]) {
      const partitions = Array.from({ length: count }, (_, i) => ({
        topic: 't',
        partition: i % 10_000,
        highWatermark: 0,
        logStartOffset: 0,
        logEndOffset: 0,
        records: new Uint8Array(0),
      }));
      const out = decoded(Buffer.concat(encodeReplicaFetchAnswer(partitions))) as { partitions: unknown[] };
      expect(out.partitions).toHaveLength(count);
    }
  });
});
