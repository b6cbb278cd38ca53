import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import type { AssignorName } from '../../src/groups/assignors.js';
import { compilePattern, GroupCoordinator } from '../../src/groups/coordinator.js';
import { codeOf, Topics } from './fixtures.js';

/**
 * The coordinator's reconciliation and bookkeeping rules one by one: static members (a new instance
 * id is a new member; a static member back with another subscription is a rebalance, with the
 * same one it is not; its partitions' owner is its new member id; static members order by
 * instance id in the assignment); seeks, pauses and the poll plan; a heartbeat that changes
 * nothing writes nothing and the previous member epoch stays usable; auto-commit on acknowledged
 * revocations; what a tick bumps and drops; when a group counts as empty; sticky keeping what a
 * member holds; a replayed member's revocations and pattern.
 */

function setup(assignor?: AssignorName) {
  const clock = new ManualClock();
  const topics = new Topics({ t: 4 });
  let next = 0;
  const coordinator = new GroupCoordinator(
    {
      heartbeatIntervalMs: 1000,
      sessionTimeoutMsDefault: 10_000,
      ...(assignor ? { assignorDefault: assignor } : {}),
    },
    { clock, topics, newMemberId: () => `m${++next}` },
  );
  return { clock, topics, coordinator };
}

const names = (list: readonly { topic: string; partition: number }[]) =>
  list.map((tp) => `${tp.topic}-${tp.partition}`).join(' ');

describe('static members', () => {
  it('a join with another instance id is another member; the same instance id takes over the slot and its partitions', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'], instanceId: 'i1' });
    coordinator.join('g', { topics: ['t'], instanceId: 'i2' });
    expect(coordinator.describe('g').members.map((m) => m.instanceId)).toEqual(['i1', 'i2']);
    const back = coordinator.join('g', { topics: ['t'], instanceId: 'i1' });
    expect(
      coordinator
        .describe('g')
        .members.map((m) => m.instanceId)
        .sort(),
    ).toEqual(['i1', 'i2']);
    expect([...coordinator.owners('g').values()]).not.toContain(a.memberId);
    expect(coordinator.owners('g').size).toBeGreaterThan(0);
    for (const [, owner] of coordinator.owners('g')) expect(['m2', back.memberId]).toContain(owner);
  });

  it('back with the same topics is no rebalance; with other topics or another pattern it is one', () => {
    const { coordinator, topics } = setup();
    topics.counts.set('a', 1);
    topics.counts.set('b', 1);
    topics.counts.set('ab', 1);
    coordinator.join('g', { topics: ['b', 'a'], instanceId: 'i' });
    const epoch = coordinator.describe('g').groupEpoch;
    expect(coordinator.describe('g').members[0]!.topics).toEqual(['a', 'b']);
    coordinator.join('g', { topics: ['a', 'b'], instanceId: 'i' });
    expect(coordinator.describe('g').groupEpoch).toBe(epoch);
    coordinator.join('g', { topics: ['ab'], instanceId: 'i' });
    expect(coordinator.describe('g').groupEpoch).toBe(epoch + 1);
    coordinator.join('g', { pattern: 'a.*', instanceId: 'i' });
    expect(coordinator.describe('g').groupEpoch).toBe(epoch + 2);
    coordinator.join('g', { pattern: 'b.*', instanceId: 'i' });
    expect(coordinator.describe('g').groupEpoch).toBe(epoch + 3);
  });

  it('orders static members by instance id for the assignor, ahead of member ids', () => {
    const { coordinator } = setup();
    const z = coordinator.join('g', { topics: ['t'], instanceId: 'z' });
    const a = coordinator.join('g', { topics: ['t'], instanceId: 'a' });
    coordinator.heartbeat('g', z.memberId);
    coordinator.heartbeat('g', z.memberId);
    expect(names(coordinator.heartbeat('g', a.memberId).assignment)).toBe('t-0 t-1');
    expect(names(coordinator.heartbeat('g', z.memberId).assignment)).toBe('t-2 t-3');
  });
});

describe('seeks, pauses and polls', () => {
  it('a seek of a held partition moves its position; a paused partition is left out of polls until resumed', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.commit('g', {
      memberId: a.memberId,
      memberEpoch: a.memberEpoch,
      offsets: [{ topic: 't', partition: 1, offset: 8 }],
    });
    coordinator.heartbeat('g', a.memberId, {
      seek: [{ topic: 't', partition: 0, offset: 42 }],
      paused: [{ topic: 't', partition: 2 }],
    });
    const plan = coordinator.pollPlan('g', a.memberId, a.memberEpoch);
    expect(plan.partitions).toEqual([
      { topic: 't', partition: 0, position: 42, committed: undefined },
      { topic: 't', partition: 1, position: undefined, committed: 8 },
      { topic: 't', partition: 3, position: undefined, committed: undefined },
    ]);
    coordinator.heartbeat('g', a.memberId, { paused: [] });
    expect(coordinator.pollPlan('g', a.memberId, undefined).partitions.map((p) => p.partition)).toEqual([
      0, 1, 2, 3,
    ]);
  });

  it('a poll at a fenced epoch is refused as a heartbeat would be', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    expect(codeOf(() => coordinator.pollPlan('g', a.memberId, a.memberEpoch + 7))).toBe(
      'FENCED_MEMBER_EPOCH',
    );
  });

  it('advance for a group or member that is not there holds nothing and throws nothing', () => {
    const { coordinator } = setup();
    expect(coordinator.advance('nope', 'm1', [{ topic: 't', partition: 0, offset: 1 }]).size).toBe(0);
    coordinator.join('g', { topics: ['t'] });
    expect(coordinator.advance('g', 'm9', [{ topic: 't', partition: 0, offset: 1 }]).size).toBe(0);
    expect(coordinator.owners('nope').size).toBe(0);
    expect(codeOf(() => coordinator.heartbeat('nope', 'm1'))).toBe('UNKNOWN_MEMBER_ID');
  });
});

describe('epochs and writes', () => {
  it('a heartbeat that changes nothing writes nothing, and the previous member epoch stays usable', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    const b = coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    const a2 = coordinator.heartbeat('g', a.memberId);
    expect(a2.memberEpoch).toBeGreaterThan(a.memberEpoch);
    coordinator.heartbeat('g', b.memberId);
    coordinator.drainWrites();
    coordinator.heartbeat('g', a.memberId, { memberEpoch: a2.memberEpoch });
    coordinator.heartbeat('g', a.memberId, { memberEpoch: a2.memberEpoch });
    expect(coordinator.drainWrites()).toEqual([]);
    // Its answer may have been lost: the epoch before is still accepted.
    expect(coordinator.heartbeat('g', a.memberId, { memberEpoch: a.memberEpoch }).memberEpoch).toBe(
      a2.memberEpoch,
    );
  });

  it('auto-commit: an acknowledged revocation commits the position the member’s polls reached, once', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    expect(coordinator.commitPositions('g', a.memberId)).toBe(0);
    coordinator.advance('g', a.memberId, [
      { topic: 't', partition: 2, offset: 5 },
      { topic: 't', partition: 3, offset: 6 },
    ]);
    // commitPositions commits what moved, and only that.
    expect(coordinator.commitPositions('g', a.memberId)).toBe(2);
    expect(coordinator.commitPositions('g', a.memberId)).toBe(0);
    coordinator.advance('g', a.memberId, [{ topic: 't', partition: 3, offset: 9 }]);
    const commits = coordinator.commits;
    coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId); // told to give up t-2 and t-3
    coordinator.heartbeat('g', a.memberId); // acknowledges: t-3's position 9 is committed
    const offsets = coordinator.describe('g').offsets.map((o) => `${o.partition}:${o.offset}:${o.metadata}`);
    expect(offsets).toEqual(['2:5:', '3:9:']);
    expect(coordinator.commits).toBe(commits + 1);
    expect(coordinator.describe('g').members[0]!.revoking).toEqual([]);
  });

  it('a member naming what it owns commits nothing on acknowledging', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.commitPositions('g', a.memberId);
    coordinator.advance('g', a.memberId, [{ topic: 't', partition: 3, offset: 9 }]);
    coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    coordinator.heartbeat('g', a.memberId, {
      owned: [
        { topic: 't', partition: 0 },
        { topic: 't', partition: 1 },
      ],
    });
    expect(coordinator.describe('g').offsets).toEqual([]);
  });

  it('a commit without metadata stores the empty string', () => {
    const { coordinator } = setup();
    coordinator.commit('g', { offsets: [{ topic: 't', partition: 0, offset: 1 }] });
    expect(coordinator.describe('g').offsets[0]!.metadata).toBe('');
  });

  it('a partition never read but committed by someone before is revoked to its committed offset: free at once', () => {
    const { coordinator } = setup();
    coordinator.commit('g', { offsets: [{ topic: 't', partition: 3, offset: 4 }] });
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.advance('g', a.memberId, [{ topic: 't', partition: 3, offset: 4 }]);
    coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    expect(coordinator.describe('g').members[0]!.revoking).toEqual([]);
  });

  it('a member waiting for another’s revocations is told them as pending', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.advance('g', a.memberId, [{ topic: 't', partition: 3, offset: 1 }]);
    const b = coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    const view = coordinator.heartbeat('g', b.memberId);
    expect(names(view.assignment)).toBe('t-2');
    expect(names(view.pending)).toBe('t-3');
  });
});

describe('ticks and states', () => {
  it('a tick with nothing changed bumps nothing, also for a group its members left', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    const epoch = coordinator.describe('g').groupEpoch;
    coordinator.tick();
    coordinator.tick();
    expect(coordinator.describe('g').groupEpoch).toBe(epoch);
    coordinator.leave('g', a.memberId);
    const left = coordinator.describe('g').groupEpoch;
    coordinator.tick();
    expect(coordinator.describe('g').groupEpoch).toBe(left);
  });

  it('drops the offsets of partitions past a topic’s count, keeps the last one inside it', () => {
    const { coordinator, topics } = setup();
    coordinator.commit('g', {
      offsets: [
        { topic: 't', partition: 1, offset: 1 },
        { topic: 't', partition: 2, offset: 2 },
      ],
    });
    topics.counts.set('t', 2);
    coordinator.tick();
    expect(coordinator.describe('g').offsets.map((o) => o.partition)).toEqual([1]);
  });

  it('a topic that grows is assigned at the next heartbeat, before any tick; until then the group reconciles', () => {
    const { coordinator, topics } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    expect(coordinator.describe('g').state).toBe('stable');
    topics.counts.set('t', 5);
    coordinator.tick();
    expect(coordinator.describe('g').state).toBe('reconciling');
    expect(coordinator.heartbeat('g', a.memberId).assignment).toHaveLength(5);
    const b = setup();
    const m = b.coordinator.join('g', { topics: ['t'] });
    b.topics.counts.set('t', 6);
    expect(b.coordinator.heartbeat('g', m.memberId).assignment).toHaveLength(6);
  });

  it('counts a member that has not picked up its free partitions as reconciling', () => {
    const { coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    coordinator.advance('g', a.memberId, [{ topic: 't', partition: 3, offset: 1 }]);
    coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    coordinator.heartbeat('g', a.memberId);
    // a is done; b has not come back for t-2 and t-3.
    expect(coordinator.describe('g').state).toBe('reconciling');
  });

  it('an empty group dates from its last member’s leaving, and a later commit does not move that date', () => {
    const { clock, coordinator } = setup();
    const a = coordinator.join('g', { topics: ['t'] });
    const b = coordinator.join('g', { topics: ['t'] });
    coordinator.leave('g', a.memberId);
    const snapshot = coordinator.drainWrites().find((w) => w.kind === 'group')!;
    expect(snapshot.value).toMatchObject({ emptySinceMs: null });
    clock.advance(1_000);
    coordinator.leave('g', b.memberId);
    clock.advance(6 * 24 * 3_600_000);
    coordinator.commit('g', { offsets: [{ topic: 't', partition: 0, offset: 1 }] });
    clock.advance(24 * 3_600_000);
    coordinator.tick();
    expect(coordinator.has('g')).toBe(false);
  });
});

describe('assignors and replay', () => {
  it('sticky: a member keeps what it holds when another joins', () => {
    const { coordinator } = setup('sticky');
    const a = coordinator.join('g', { topics: ['t'] });
    const b = coordinator.join('g', { topics: ['t'] });
    coordinator.heartbeat('g', a.memberId);
    expect(names(coordinator.heartbeat('g', a.memberId).assignment)).toBe('t-0 t-1');
    expect(names(coordinator.heartbeat('g', b.memberId).assignment)).toBe('t-2 t-3');
  });

  it('a replayed member keeps its pattern, and acknowledges its revocations by a heartbeat without `owned`', () => {
    const { coordinator, topics } = setup();
    topics.counts.set('x1', 2);
    const a = coordinator.join('g', { pattern: 'x.*' });
    coordinator.advance('g', a.memberId, [{ topic: 'x1', partition: 1, offset: 3 }]);
    const b = coordinator.join('g', { pattern: 'x.*' });
    coordinator.heartbeat('g', a.memberId);
    const copy = setup();
    copy.topics.counts.set('x1', 2);
    for (const w of coordinator.drainWrites()) copy.coordinator.apply(w);
    expect(copy.coordinator.describe('g').members.map((m) => m.pattern)).toEqual(['x.*', 'x.*']);
    copy.coordinator.heartbeat('g', a.memberId);
    expect(names(copy.coordinator.heartbeat('g', b.memberId).assignment)).toBe('x1-1');
    // An offset tombstone of a group this coordinator does not know is a no-op.
    copy.coordinator.apply({ kind: 'offset', group: 'other', topic: 't', partition: 0, value: null });
    expect(copy.coordinator.has('other')).toBe(false);
  });

  it('patterns are Unicode regular expressions', () => {
    expect(compilePattern('\\p{L}+').test('grüße')).toBe(true);
  });
});
