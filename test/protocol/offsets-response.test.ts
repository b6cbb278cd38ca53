import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { unpackr } from '../../src/protocol/msgpack.js';
import { encodeOffsetsResponse } from '../../src/protocol/offsets-response.js';

/** The hand-written msgpack produce answer decodes to exactly what the generic encoder would give. */
describe('encodeOffsetsResponse', () => {
  it('round-trips any offsets through a stock decoder', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            partition: fc.integer({ min: 0, max: 9999 }),
            offset: fc.integer({ min: 0, max: 2 ** 53 - 1 }),
          }),
          { maxLength: 300 },
        ),
        (offsets) => {
          const produced = {
            count: offsets.length,
            partitions: Int32Array.from(offsets, (o) => o.partition),
            offsets: Float64Array.from(offsets, (o) => o.offset),
          };
          expect(unpackr.unpack(encodeOffsetsResponse(produced))).toEqual({ offsets });
        },
      ),
    );
  });
});
