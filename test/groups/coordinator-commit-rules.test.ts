import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { GroupCoordinator } from '../../src/groups/coordinator.js';

/**
 * Two coordinator rules on their own: a member that never asked for auto-commit (no
 * `commitPositions`) commits nothing when it acknowledges a revocation, even without naming what
 * it owns; and member ids must be unique (a `newMemberId` that repeats one is a bug the
 * coordinator asserts on rather than merging two members).
 */

function setup(newMemberId: () => string) {
  const topics = { partitionCount: (t: string) => (t === 't' ? 4 : undefined), topicNames: () => ['t'] };
  return new GroupCoordinator({}, { clock: new ManualClock(), topics, newMemberId });
}

describe('commits on acknowledgement', () => {
  it('a member that does not auto-commit commits nothing when it gives a partition up', () => {
    let n = 0;
    const coordinator = setup(() => `m${++n}`);
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.advance('g', a.memberId, [{ topic: 't', partition: 3, offset: 9 }]);
    coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    coordinator.heartbeat('g', a.memberId);
    expect(coordinator.describe('g').members[0]!.revoking).toEqual([]);
    expect(coordinator.describe('g').offsets).toEqual([]);
    expect(coordinator.commits).toBe(0);
  });
});

describe('member ids', () => {
  it('asserts that a new member id is unique in its group', () => {
    const coordinator = setup(() => 'same');
    coordinator.join('g', { topics: ['t'] });
    expect(() => coordinator.join('g', { topics: ['t'] })).toThrow('member ids are unique');
  });
});
