import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { GroupCoordinator } from '../../src/groups/coordinator.js';
import { codeOf, Topics } from './fixtures.js';

/**
 * Coordinator rules the third mutation run still found loose: a static member's new subscription
 * is a rebalance even when the group's topics stay the same; `resetOffsets` of an empty group;
 * `checkMember`; `commitPositions` with nothing moved is no commit; `describe` orders members
 * and offsets and gives a replayed member an empty target; no write after revocations are done;
 * an acknowledgement neither re-commits an offset committed already nor needs one to exist; a
 * partition never read is free at once even when committed; a member behind the assignment epoch
 * keeps the group reconciling.
 */

function setup(ids?: string[]) {
  const clock = new ManualClock();
  const topics = new Topics({ t: 4, u: 2 });
  let next = 0;
  const coordinator = new GroupCoordinator(
    {},
    { clock, topics, newMemberId: () => (ids ? ids[next++]! : `m${++next}`) },
  );
  return { clock, topics, coordinator };
}

describe('static members and epochs', () => {
  it('a static member back with another subscription is a rebalance even when the group’s topics stay the same', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t', 'u'] });
    coordinator.join('g', { topics: ['t'], instanceId: 's' });
    const epoch = coordinator.describe('g').groupEpoch;
    const back = coordinator.join('g', { topics: ['t', 'u'], instanceId: 's' });
    expect(coordinator.describe('g').groupEpoch).toBe(epoch + 1);
    coordinator.heartbeat('g', a.memberId);
    coordinator.heartbeat('g', a.memberId);
    expect(coordinator.heartbeat('g', back.memberId).assignment.map((tp) => tp.topic)).toContain('u');
  });

  it('a static member back with another pattern is a rebalance even when the topics it matches are the group’s already', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t', 'u'] });
    coordinator.join('g', { pattern: '^t$', instanceId: 's' });
    const epoch = coordinator.describe('g').groupEpoch;
    // `u` is a's already: the group's topics stay t and u, only s's subscription changed.
    const back = coordinator.join('g', { pattern: '^(t|u)$', instanceId: 's' });
    expect(coordinator.describe('g').groupEpoch).toBe(epoch + 1);
    coordinator.heartbeat('g', a.memberId);
    coordinator.heartbeat('g', a.memberId);
    expect(coordinator.heartbeat('g', back.memberId).assignment.map((tp) => tp.topic)).toContain('u');
  });

  it('a member behind the assignment epoch keeps the group reconciling, even holding its whole target', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    const s = coordinator.join('g', { topics: ['t'], instanceId: 's' });
    coordinator.heartbeat('g', a.memberId);
    coordinator.heartbeat('g', s.memberId);
    expect(coordinator.describe('g').state).toBe('stable');
    // s moves to t and u: a's target is unchanged, but a has not reached the new epoch.
    const back = coordinator.join('g', { topics: ['t', 'u'], instanceId: 's' });
    coordinator.heartbeat('g', back.memberId);
    expect(coordinator.describe('g').state).toBe('reconciling');
    coordinator.heartbeat('g', a.memberId);
    expect(coordinator.describe('g').state).toBe('stable');
  });

  it('checkMember refuses an unknown member and a fenced epoch, and accepts the current one', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    expect(codeOf(() => coordinator.checkMember('g', 'x', undefined))).toBe('UNKNOWN_MEMBER_ID');
    expect(codeOf(() => coordinator.checkMember('g', a.memberId, a.memberEpoch + 3))).toBe(
      'FENCED_MEMBER_EPOCH',
    );
    expect(codeOf(() => coordinator.checkMember('g', a.memberId, a.memberEpoch))).toBeUndefined();
  });
});

describe('offsets', () => {
  it('resets the offsets of an empty group', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.leave('g', a.memberId);
    coordinator.resetOffsets('g', [{ topic: 't', partition: 2, offset: 11 }]);
    expect(coordinator.describe('g').offsets.map((o) => [o.partition, o.offset])).toEqual([[2, 11]]);
  });

  it('commitPositions with nothing moved counts no commit', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.commitPositions('g', a.memberId);
    expect(coordinator.commits).toBe(0);
  });

  it('an acknowledgement re-commits nothing already committed, and commits where nothing was', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.commitPositions('g', a.memberId);
    coordinator.advance('g', a.memberId, [
      { topic: 't', partition: 2, offset: 5 },
      { topic: 't', partition: 3, offset: 6 },
    ]);
    coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId); // t-2 and t-3 revoking
    coordinator.commit('g', {
      memberId: a.memberId,
      memberEpoch: coordinator.describe('g').members[0]!.memberEpoch,
      offsets: [{ topic: 't', partition: 2, offset: 5 }],
    });
    expect(coordinator.commits).toBe(1);
    coordinator.heartbeat('g', a.memberId); // acknowledges: t-3 (no commit yet) is committed, t-2 is not again
    expect(coordinator.commits).toBe(2);
    expect(coordinator.describe('g').offsets.map((o) => [o.partition, o.offset])).toEqual([
      [2, 5],
      [3, 6],
    ]);
  });

  it('frees at once a partition the member never read, even one with a committed offset', () => {
    const { coordinator } = setup();
    coordinator.commit('g', { offsets: [{ topic: 't', partition: 3, offset: 4 }] });
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    expect(coordinator.describe('g').members[0]!.revoking).toEqual([]);
  });
});

describe('views and writes', () => {
  it('describes members by member id and offsets by topic and partition', () => {
    const { coordinator } = setup(['z', 'b', 'k']);
    coordinator.join('g', { topics: ['t'] });
    coordinator.join('g', { topics: ['t'] });
    coordinator.join('g', { topics: ['t'] });
    expect(coordinator.describe('g').members.map((m) => m.memberId)).toEqual(['b', 'k', 'z']);
    const h = setup();
    h.coordinator.commit('h', {
      offsets: [
        { topic: 'u', partition: 0, offset: 1 },
        { topic: 't', partition: 3, offset: 1 },
        { topic: 't', partition: 1, offset: 1 },
      ],
    });
    expect(h.coordinator.describe('h').offsets.map((o) => `${o.topic}-${o.partition}`)).toEqual([
      't-1',
      't-3',
      'u-0',
    ]);
  });

  it('a replayed member has an empty target until the group is reconciled', () => {
    const { coordinator } = setup();
    coordinator.join('g', { topics: ['t'] });
    const copy = setup();
    for (const w of coordinator.drainWrites()) copy.coordinator.apply(w);
    expect(copy.coordinator.describe('g').members[0]!.target).toEqual([]);
  });

  it('writes nothing for a heartbeat after the member’s revocations are done', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.advance('g', a.memberId, [{ topic: 't', partition: 3, offset: 1 }]);
    const b = coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    coordinator.heartbeat('g', a.memberId);
    coordinator.heartbeat('g', b.memberId);
    coordinator.drainWrites();
    coordinator.heartbeat('g', a.memberId);
    expect(coordinator.drainWrites()).toEqual([]);
  });
});
