import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { isSluiceError } from '../../src/common/errors.js';
import {
  type CoordinatorOptions,
  checkJoin,
  compilePattern,
  GroupCoordinator,
} from '../../src/groups/coordinator.js';
import { Topics } from './fixtures.js';

/**
 * The rules of the group coordinator at their edges, one by one: its defaults (heartbeat interval,
 * session timeout and its bounds, retention, the assignor), a session timeout exactly at each bound,
 * a session that expires only once past its deadline, a group deleted exactly at the retention,
 * the member and group limits (a static member coming back is not a new member), the assignor of
 * a group with members, each refusal's code, message and details, the order of what `list` and
 * `drainWrites` return, and what a replayed group starts from.
 */

function setup(options: CoordinatorOptions = {}) {
  const clock = new ManualClock();
  const topics = new Topics({ t: 4 });
  let next = 0;
  const coordinator = new GroupCoordinator(options, { clock, topics, newMemberId: () => `m${++next}` });
  return { clock, topics, coordinator };
}

function refusal(code: string, run: () => unknown): { message: string; details: Record<string, unknown> } {
  try {
    run();
  } catch (error) {
    if (isSluiceError(error, code as never)) return { message: error.message, details: error.details };
    throw error;
  }
  throw new Error(`expected ${code}, nothing was refused`);
}

const DAY = 24 * 3_600_000;

describe('defaults', () => {
  it('a 3 s heartbeat interval, a 45 s session, the range assignor, offsets reset to the earliest', () => {
    const { coordinator } = setup();
    const view = coordinator.join('g', { topics: ['t'] });
    expect([view.heartbeatIntervalMs, view.sessionTimeoutMs]).toEqual([3_000, 45_000]);
    expect(coordinator.describe('g').assignor).toBe('range');
    expect(coordinator.pollPlan('g', view.memberId, view.memberEpoch).autoOffsetReset).toBe('earliest');
  });

  it('session timeouts from 1 s to 5 min, both bounds included', () => {
    const { coordinator } = setup();
    for (const sessionTimeoutMs of [1_000, 300_000])
      expect(coordinator.join('g', { topics: ['t'], sessionTimeoutMs }).sessionTimeoutMs).toBe(
        sessionTimeoutMs,
      );
    for (const sessionTimeoutMs of [999, 300_001])
      expect(
        refusal('INVALID_REQUEST', () => coordinator.join('g', { topics: ['t'], sessionTimeoutMs })),
      ).toEqual({
        message: 'sessionTimeoutMs must be between 1000 and 300000',
        details: { field: 'sessionTimeoutMs' },
      });
  });

  it('keeps an empty group’s offsets for 7 days, to the millisecond', () => {
    const { clock, coordinator } = setup();
    coordinator.commit('g', { offsets: [{ topic: 't', partition: 0, offset: 3 }] });
    clock.advance(7 * DAY - 1);
    coordinator.tick();
    expect(coordinator.has('g')).toBe(true);
    clock.advance(1);
    coordinator.tick();
    expect(coordinator.has('g')).toBe(false);
  });
});

describe('sessions and limits', () => {
  it('a member heard from exactly a session ago is still in; a millisecond later it is out', () => {
    const { clock, coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'], sessionTimeoutMs: 5_000 });
    clock.advance(5_000);
    coordinator.tick();
    expect(coordinator.describe('g').members.map((m) => m.memberId)).toEqual([a.memberId]);
    clock.advance(1);
    coordinator.tick();
    expect(coordinator.describe('g').members).toEqual([]);
    expect(coordinator.describe('g').state).toBe('empty');
  });

  it('refuses the member past membersPerGroupMax, but lets a static member come back at the limit', () => {
    const { coordinator } = setup({ membersPerGroupMax: 2 });
    coordinator.join('g', { topics: ['t'], instanceId: 'i1' });
    coordinator.join('g', { topics: ['t'] });
    expect(refusal('LIMIT_EXCEEDED', () => coordinator.join('g', { topics: ['t'] }))).toEqual({
      message: 'group g has 2 members, the most it may have',
      details: {},
    });
    const back = coordinator.join('g', { topics: ['t'], instanceId: 'i1' });
    expect(coordinator.describe('g').members.map((m) => m.memberId)).toContain(back.memberId);
    expect(coordinator.memberCount()).toBe(2);
  });

  it('refuses a group past groupsMax, and counts members over every group', () => {
    const { coordinator } = setup({ groupsMax: 2 });
    coordinator.join('a', { topics: ['t'] });
    coordinator.join('b', { topics: ['t'] });
    coordinator.join('b', { topics: ['t'] });
    expect(refusal('LIMIT_EXCEEDED', () => coordinator.join('c', { topics: ['t'] }))).toEqual({
      message: 'this coordinator holds 2 groups, the most it may',
      details: {},
    });
    expect(coordinator.memberCount()).toBe(3);
  });
});

describe('subscriptions and assignors', () => {
  it('takes exactly one of topics and a pattern, and refuses a pattern that is not a regular expression', () => {
    const { coordinator } = setup();
    for (const request of [{}, { topics: [] }, { topics: ['t'], pattern: 't.*' }]) {
      const want = {
        message: 'a member subscribes to topics or to a pattern: give exactly one',
        details: { field: 'topics' },
      };
      expect(refusal('INVALID_REQUEST', () => checkJoin(request))).toEqual(want);
      expect(refusal('INVALID_REQUEST', () => coordinator.join('g', request))).toEqual(want);
    }
    expect(refusal('INVALID_REQUEST', () => checkJoin({ pattern: '(' }))).toEqual({
      message: 'pattern "(" is not a valid regular expression',
      details: { field: 'pattern' },
    });
    expect(() => checkJoin({ pattern: 't-.*' })).not.toThrow();
    expect(() => checkJoin({ topics: ['t'] })).not.toThrow();
    expect(coordinator.has('g')).toBe(false);
  });

  it('anchors a pattern at both ends, and describes it as given', () => {
    expect(
      ['orders-eu', 'old-orders-eu', 'orders-eu-2'].filter((t) => compilePattern('orders-eu').test(t)),
    ).toEqual(['orders-eu']);
    const { coordinator, topics } = setup();
    topics.counts.set('orders-eu', 1);
    topics.counts.set('xorders-eu', 1);
    const view = coordinator.join('g', { pattern: 'orders-.*' });
    expect(view.assignment).toEqual([{ topic: 'orders-eu', partition: 0 }]);
    expect(coordinator.describe('g').members[0]!.pattern).toBe('orders-.*');
  });

  it('keeps the assignor of a group with members, and lets an empty group take another', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'], assignor: 'roundrobin' });
    expect(coordinator.describe('g').assignor).toBe('roundrobin');
    expect(
      refusal('INVALID_REQUEST', () => coordinator.join('g', { topics: ['t'], assignor: 'sticky' })),
    ).toEqual({
      message: 'group g uses the roundrobin assignor',
      details: { field: 'assignor' },
    });
    coordinator.join('g', { topics: ['t'], assignor: 'roundrobin' });
    coordinator.leave('g', a.memberId);
    for (const m of coordinator.describe('g').members) coordinator.leave('g', m.memberId);
    coordinator.join('g', { topics: ['t'], assignor: 'sticky' });
    expect(coordinator.describe('g').assignor).toBe('sticky');
  });
});

describe('refusals', () => {
  it('a commit of a partition that does not exist, changing nothing', () => {
    const { coordinator } = setup();
    for (const [topic, partition] of [
      ['t', 4],
      ['nope', 0],
    ] as const)
      expect(
        refusal('UNKNOWN_TOPIC_OR_PARTITION', () =>
          coordinator.commit('g', {
            offsets: [
              { topic: 't', partition: 0, offset: 1 },
              { topic, partition, offset: 1 },
            ],
          }),
        ),
      ).toEqual({ message: `${topic}/${partition} does not exist`, details: { topic, partition } });
    expect(coordinator.has('g')).toBe(false);
  });

  it('a member commit without an epoch, with a newer or an older one, of a partition it does not hold', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    const offsets = [{ topic: 't', partition: 0, offset: 1 }];
    const epoch = a.memberEpoch;
    expect(
      refusal('INVALID_REQUEST', () => coordinator.commit('g', { memberId: a.memberId, offsets })),
    ).toEqual({
      message: 'a member commit names its memberEpoch',
      details: { field: 'memberEpoch' },
    });
    expect(
      refusal('FENCED_MEMBER_EPOCH', () =>
        coordinator.commit('g', { memberId: a.memberId, memberEpoch: epoch + 1, offsets }),
      ),
    ).toEqual({
      message: `member epoch ${epoch + 1} is newer than ${epoch}`,
      details: { memberEpoch: epoch },
    });
    expect(
      refusal('STALE_MEMBER_EPOCH', () =>
        coordinator.commit('g', { memberId: a.memberId, memberEpoch: epoch - 1, offsets }),
      ),
    ).toEqual({
      message: `member epoch ${epoch - 1} is older than ${epoch}`,
      details: { memberEpoch: epoch },
    });
    // b joins: range gives a t-0 and t-1, b t-2 and t-3; t-3 is not a's any more.
    const b = coordinator.join('g', { topics: ['t'] });
    const a2 = coordinator.heartbeat('g', a.memberId);
    expect(
      refusal('STALE_MEMBER_EPOCH', () =>
        coordinator.commit('g', {
          memberId: a.memberId,
          memberEpoch: a2.memberEpoch,
          offsets: [{ topic: 't', partition: 3, offset: 1 }],
        }),
      ),
    ).toEqual({
      message: `t/3 is not assigned to member ${a.memberId}`,
      details: { topic: 't', partition: 3, memberEpoch: a2.memberEpoch },
    });
    expect(refusal('NON_EMPTY_GROUP', () => coordinator.commit('g', { offsets }))).toEqual({
      message: 'group g has members: commit as one of them',
      details: {},
    });
    expect(
      refusal('UNKNOWN_MEMBER_ID', () => coordinator.commit('g', { memberId: 'x', memberEpoch: 1, offsets })),
    ).toEqual({
      message: 'group g has no member x',
      details: { memberId: 'x' },
    });
    expect(coordinator.describe('g').offsets).toEqual([]);
    expect(b.memberId).not.toBe(a.memberId);
  });

  it('a heartbeat at an epoch neither current nor previous; a seek of a partition the member does not hold', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    expect(
      refusal('FENCED_MEMBER_EPOCH', () =>
        coordinator.heartbeat('g', a.memberId, { memberEpoch: a.memberEpoch + 5 }),
      ),
    ).toEqual({
      message: `member epoch ${a.memberEpoch + 5} is not ${a.memberEpoch}, the member's current epoch`,
      details: { memberEpoch: a.memberEpoch },
    });
    expect(
      refusal('STALE_MEMBER_EPOCH', () =>
        coordinator.heartbeat('g', a.memberId, { seek: [{ topic: 't', partition: 9, offset: 0 }] }),
      ),
    ).toEqual({
      message: `t/9 is not assigned to member ${a.memberId}`,
      details: { topic: 't', partition: 9 },
    });
  });

  it('reset, delete and describe of a group that does not exist or has members', () => {
    const { coordinator } = setup();
    const offsets = [{ topic: 't', partition: 0, offset: 1 }];
    for (const run of [
      () => coordinator.resetOffsets('g', offsets),
      () => coordinator.deleteGroup('g'),
      () => coordinator.describe('g'),
    ])
      expect(refusal('GROUP_ID_NOT_FOUND', run)).toEqual({ message: 'group g does not exist', details: {} });
    coordinator.join('g', { topics: ['t'] });
    for (const run of [() => coordinator.resetOffsets('g', offsets), () => coordinator.deleteGroup('g')])
      expect(refusal('NON_EMPTY_GROUP', run)).toEqual({
        message: 'group g has 1 members: stop them first',
        details: {},
      });
  });
});

describe('views and records', () => {
  it('lists groups by id with their state and member count', () => {
    const { coordinator } = setup();
    coordinator.join('b', { topics: ['t'] });
    coordinator.commit('a', { offsets: [{ topic: 't', partition: 0, offset: 1 }] });
    coordinator.join('c', { topics: ['t'] });
    coordinator.join('c', { topics: ['t'] });
    expect(coordinator.list()).toEqual([
      { group: 'a', state: 'empty', members: 0 },
      { group: 'b', state: 'stable', members: 1 },
      { group: 'c', state: 'reconciling', members: 2 },
    ]);
  });

  it('drains the committed offsets first, then each changed group once, then nothing', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.commit('g', {
      memberId: a.memberId,
      memberEpoch: a.memberEpoch,
      offsets: [{ topic: 't', partition: 1, offset: 4 }],
    });
    coordinator.commit('h', { offsets: [{ topic: 't', partition: 2, offset: 5 }] });
    const writes = coordinator.drainWrites();
    expect(writes.map((w) => `${w.kind}:${w.group}`)).toEqual(['offset:g', 'offset:h', 'group:g', 'group:h']);
    expect(coordinator.drainWrites()).toEqual([]);
    coordinator.deleteGroup('h');
    expect(coordinator.drainWrites()).toEqual([
      { kind: 'offset', group: 'h', topic: 't', partition: 2, value: null },
      { kind: 'group', group: 'h', value: null },
    ]);
  });

  it('counts rebalances and accepted commits', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    expect(coordinator.rebalances).toBe(1);
    coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    expect(coordinator.rebalances).toBe(2);
    coordinator.commit('h', { offsets: [{ topic: 't', partition: 2, offset: 5 }] });
    expect(coordinator.commits).toBe(1);
  });

  it('a replayed group recomputes its target before it answers, and its members start a full session', () => {
    const { clock, coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'], sessionTimeoutMs: 5_000 });
    const writes = coordinator.drainWrites();
    const copy = setup();
    copy.clock.advance(clock.nowMs() + 60_000);
    for (const w of writes) copy.coordinator.apply(w);
    expect(copy.coordinator.describe('g').state).toBe('reconciling');
    copy.clock.advance(5_000);
    copy.coordinator.tick();
    const view = copy.coordinator.heartbeat('g', a.memberId);
    expect(view.assignment.length).toBe(4);
    expect(copy.coordinator.describe('g').state).toBe('stable');
  });
});
