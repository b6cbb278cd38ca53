import { describe, expect, it } from 'vitest';
import { encodeBatch, splitBatches } from '../../src/protocol/batch.js';
import { type PendingAppend, planGroup } from '../../src/storage/partition-log.js';
import { batchOf } from './helpers.js';

/** Proves that planning a group write is a pure function of the queue and the log end. */
function pending(data: Buffer, assignOffsets: boolean): PendingAppend {
  return {
    data,
    batches: splitBatches(data),
    options: { assignOffsets },
    resolve: () => {},
    reject: () => {},
  };
}

describe('planGroup', () => {
  it('gives leader appends contiguous offsets from the log end and rewrites nothing', () => {
    const a = pending(Buffer.concat([batchOf(['a0', 'a1']), batchOf(['a2'])]), true);
    const b = pending(batchOf(['b0']), true);
    const before = Buffer.from(a.data);
    const plan = planGroup([a, b], 10);
    expect(plan.taken).toBe(2);
    expect(plan.rejected).toEqual([]);
    expect(plan.accepted.map((p) => [p.baseOffset, p.result])).toEqual([
      [10, { baseOffset: 10, lastOffset: 12, logEndOffset: 13, batchCount: 2 }],
      [13, { baseOffset: 13, lastOffset: 13, logEndOffset: 14, batchCount: 1 }],
    ]);
    expect(a.data).toEqual(before);
  });

  it('rejects a follower append that does not continue the log, alone', () => {
    const at = (base: number) =>
      encodeBatch([{ value: Buffer.from('x'), timestamp: 1 }], { baseOffset: base });
    const plan = planGroup([pending(at(5), false), pending(at(9), false), pending(at(6), false)], 5);
    expect(plan.accepted.map((p) => p.baseOffset)).toEqual([5, 6]);
    expect(plan.rejected.map((r) => [r.error.code, r.error.details])).toEqual([
      ['INVALID_REQUEST', { logEndOffset: 6 }],
    ]);
  });

  it('takes appends up to the group byte limit, at least one', () => {
    const big = pending(batchOf(['x'.repeat(500)]), true);
    const queue = [big, pending(batchOf(['y'.repeat(500)]), true), pending(batchOf(['z']), true)];
    expect(planGroup(queue, 0, 10).taken).toBe(1);
    expect(planGroup(queue, 0, big.data.length * 2).taken).toBe(2);
    expect(planGroup(queue, 0).taken).toBe(3);
  });
});
