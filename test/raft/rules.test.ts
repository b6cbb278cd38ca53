import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/common/random.js';
import { RaftCore } from '../../src/raft/core.js';
import { type Entry, encodeConfigChange, type Message } from '../../src/raft/types.js';

/** One test per rule of the Raft paper's Figure 2 and section 5, on the pure core. */
const entry = (index: number, term: number, data = ''): Entry => ({
  index,
  term,
  type: 'normal',
  data: Buffer.from(data),
});

function node(
  id: number,
  options: {
    term?: number;
    vote?: number | null;
    commit?: number;
    entries?: Entry[];
    voters?: number[];
  } = {},
) {
  return new RaftCore(
    { id, electionTicks: 10, heartbeatTicks: 1, preVote: false, checkQuorum: false },
    {
      hardState: { term: options.term ?? 0, vote: options.vote ?? null, commit: options.commit ?? 0 },
      membership: { voters: options.voters ?? [1, 2, 3], learners: [] },
      entries: options.entries ?? [],
    },
    new SeededRandom(id),
  );
}

function drain(core: RaftCore): Message[] {
  const messages: Message[] = [];
  while (core.hasReady()) {
    const ready = core.ready();
    messages.push(...ready.messages);
    core.advance(ready);
  }
  return messages;
}

function elect(core: RaftCore): void {
  for (let i = 0; i < 20 && core.role !== 'candidate'; i++) core.tick();
  const votes = drain(core).filter((m) => m.type === 'vote');
  for (const v of votes)
    core.step({ type: 'voteResponse', from: v.to, to: core.id, term: core.term, granted: true });
  drain(core);
}

describe('Figure 2, rules for all servers', () => {
  it('§5.1: a message with a higher term makes the receiver adopt it and become a follower', () => {
    const leader = node(1);
    elect(leader);
    expect(leader.role).toBe('leader');
    leader.step({
      type: 'append',
      from: 2,
      to: 1,
      term: leader.term + 3,
      prevIndex: 0,
      prevTerm: 0,
      entries: [],
      commit: 0,
    });
    expect(leader.role).toBe('follower');
    expect(leader.term).toBe(4);
    expect(leader.leaderId).toBe(2);
  });

  it('§5.1: a request with an older term is refused with the current term', () => {
    const follower = node(1, { term: 5 });
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 3,
      prevIndex: 0,
      prevTerm: 0,
      entries: [entry(1, 3)],
      commit: 0,
    });
    const [answer] = drain(follower);
    expect(answer).toMatchObject({ type: 'appendResponse', success: false, term: 5 });
    expect(follower.lastIndex()).toBe(0);
  });

  it('applies committed entries in order, each once', () => {
    const follower = node(1);
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 1,
      prevIndex: 0,
      prevTerm: 0,
      entries: [entry(1, 1, 'a'), entry(2, 1, 'b')],
      commit: 2,
    });
    const ready = follower.ready();
    expect(ready.committed.map((e) => e.index)).toEqual([1, 2]);
    follower.advance(ready);
    expect(follower.ready().committed).toEqual([]);
  });
});

describe('Figure 2, RequestVote', () => {
  it('§5.2: a candidate increments its term and votes for itself; the vote is persisted with the request', () => {
    const candidate = node(1);
    for (let i = 0; i < 20 && candidate.role !== 'candidate'; i++) candidate.tick();
    const ready = candidate.ready();
    expect(ready.hardState).toEqual({ term: 1, vote: 1, commit: 0 });
    expect(ready.messages.filter((m) => m.type === 'vote').map((m) => m.to)).toEqual([2, 3]);
  });

  it('§5.2: a server grants at most one vote per term, and the grant leaves with the persisted vote', () => {
    const voter = node(3);
    voter.step({ type: 'vote', from: 1, to: 3, term: 1, lastIndex: 0, lastTerm: 0, transfer: false });
    const first = voter.ready();
    expect(first.hardState).toMatchObject({ term: 1, vote: 1 });
    expect(first.messages).toEqual([{ type: 'voteResponse', from: 3, to: 1, term: 1, granted: true }]);
    voter.advance(first);
    voter.step({ type: 'vote', from: 2, to: 3, term: 1, lastIndex: 5, lastTerm: 1, transfer: false });
    expect(drain(voter)).toEqual([{ type: 'voteResponse', from: 3, to: 2, term: 1, granted: false }]);
  });

  it('§5.4.1: a vote is denied to a candidate whose log is less up to date', () => {
    const voter = node(3, { term: 2, entries: [entry(1, 1), entry(2, 2)] });
    voter.step({ type: 'vote', from: 1, to: 3, term: 3, lastIndex: 5, lastTerm: 1, transfer: false });
    expect(drain(voter).at(-1)).toMatchObject({ granted: false });
    voter.step({ type: 'vote', from: 2, to: 3, term: 3, lastIndex: 2, lastTerm: 2, transfer: false });
    expect(drain(voter).at(-1)).toMatchObject({ granted: true, to: 2 });
  });

  it('§5.2: a candidate that wins a majority becomes leader and appends an entry of its term (§5.4.2)', () => {
    const candidate = node(1);
    elect(candidate);
    expect(candidate.role).toBe('leader');
    expect(candidate.termAt(candidate.lastIndex())).toBe(candidate.term);
  });
});

describe('Figure 2, AppendEntries', () => {
  it('§5.3: refuses when the log has no entry at prevIndex with prevTerm, with a hint to back up', () => {
    const follower = node(1, { term: 3, entries: [entry(1, 1), entry(2, 2), entry(3, 2)] });
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 3,
      prevIndex: 3,
      prevTerm: 3,
      entries: [entry(4, 3)],
      commit: 0,
    });
    const [answer] = drain(follower);
    // The follower's conflicting term 2 starts at index 2: the leader can skip the whole term.
    expect(answer).toMatchObject({ type: 'appendResponse', success: false, index: 2, conflictTerm: 2 });
  });

  it('§5.3: deletes a conflicting entry and all that follow it, then appends the new ones', () => {
    const follower = node(1, { term: 2, entries: [entry(1, 1), entry(2, 1, 'old'), entry(3, 1, 'old')] });
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 2,
      prevIndex: 1,
      prevTerm: 1,
      entries: [entry(2, 2, 'new')],
      commit: 0,
    });
    const ready = follower.ready();
    // The replaced suffix is persisted from its first index: storage drops 2..3 and writes 2.
    expect(ready.entries.map((e) => [e.index, e.term])).toEqual([[2, 2]]);
    follower.advance(ready);
    expect(follower.lastIndex()).toBe(2);
    expect(Buffer.from(follower.entriesFrom(2)[0]!.data).toString()).toBe('new');
  });

  it('§5.3: sets commit to min(leaderCommit, index of the last new entry)', () => {
    const follower = node(1);
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 1,
      prevIndex: 0,
      prevTerm: 0,
      entries: [entry(1, 1), entry(2, 1)],
      commit: 10,
    });
    expect(follower.commitIndex).toBe(2);
  });
});

describe('Figure 2, rules for leaders', () => {
  it('§5.3: commits an entry once a majority stores it, and tells followers', () => {
    const leader = node(1);
    elect(leader);
    const { index } = leader.propose(Buffer.from('x'));
    drain(leader);
    expect(leader.commitIndex).toBeLessThan(index);
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: leader.term,
      success: true,
      index,
      conflictTerm: 0,
    });
    expect(leader.commitIndex).toBe(index);
  });

  it('§5.4.2 (Figure 8): an entry of an older term is not committed by counting replicas', () => {
    // Node 1 leads term 4 with an entry of term 2 at index 2 that a majority now holds.
    const leader = node(1, { term: 3, entries: [entry(1, 1), entry(2, 2)], commit: 1 });
    elect(leader);
    expect(leader.term).toBe(4);
    const noop = leader.lastIndex();
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: 4,
      success: true,
      index: 2,
      conflictTerm: 0,
    });
    expect(leader.commitIndex).toBe(1);
    // Once the leader's own entry (term 4) is on a majority, everything before it commits too.
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: 4,
      success: true,
      index: noop,
      conflictTerm: 0,
    });
    expect(leader.commitIndex).toBe(noop);
  });

  it('§5.3: on a refusal the leader backs up past the whole conflicting term and retries', () => {
    const leader = node(1, { term: 5, entries: [entry(1, 1), entry(2, 3), entry(3, 3), entry(4, 5)] });
    elect(leader);
    drain(leader);
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: leader.term,
      success: false,
      index: 2,
      conflictTerm: 2,
    });
    const retry = drain(leader).find((m) => m.type === 'append' && m.to === 2);
    expect(retry).toMatchObject({ prevIndex: 1, prevTerm: 1 });
  });

  it('refuses proposals on a follower with NOT_LEADER naming the known leader', () => {
    const follower = node(1);
    follower.step({ type: 'heartbeat', from: 2, to: 1, term: 1, commit: 0, context: 0 });
    expect(() => follower.propose(Buffer.from('x'))).toThrow(
      expect.objectContaining({ code: 'NOT_LEADER', details: { leaderId: 2 } }),
    );
  });

  it('bounds the uncommitted proposals it accepts', () => {
    const leader = new RaftCore(
      { id: 1, electionTicks: 10, heartbeatTicks: 1, uncommittedMax: 3, preVote: false },
      {
        hardState: { term: 0, vote: null, commit: 0 },
        membership: { voters: [1, 2, 3], learners: [] },
        entries: [],
      },
      new SeededRandom(1),
    );
    elect(leader);
    leader.propose(Buffer.from('a'));
    leader.propose(Buffer.from('b'));
    expect(() => leader.propose(Buffer.from('c'))).toThrow(
      expect.objectContaining({ code: 'LIMIT_EXCEEDED' }),
    );
  });
});

describe('learners', () => {
  it('a learner never campaigns and is not counted for commit', () => {
    const learner = new RaftCore(
      { id: 4, electionTicks: 10 },
      {
        hardState: { term: 0, vote: null, commit: 0 },
        membership: { voters: [1, 2, 3], learners: [4] },
        entries: [],
      },
      new SeededRandom(4),
    );
    for (let i = 0; i < 100; i++) learner.tick();
    expect(learner.role).toBe('follower');
    expect(drain(learner)).toEqual([]);
  });
});

describe('membership changes and snapshots (found by the simulation)', () => {
  it('a voter grants its vote to an up-to-date candidate its own log does not list as a voter yet', () => {
    // Seed 546: voters {4, 5} after changes that node 4 had not received; with a membership check
    // on votes, neither could ever be elected.
    const voter = node(4, { voters: [1, 4] });
    voter.step({ type: 'vote', from: 5, to: 4, term: 1, lastIndex: 3, lastTerm: 1, transfer: false });
    expect(drain(voter).at(-1)).toMatchObject({ type: 'voteResponse', to: 5, granted: true });
  });

  it('a new leader refuses a membership change until an entry of its own term commits', () => {
    const leader = node(1, { term: 1, entries: [entry(1, 1)] });
    elect(leader);
    expect(leader.role).toBe('leader');
    expect(() => leader.proposeConfigChange({ kind: 'removeVoter', node: 3 })).toThrow(/not committed/);
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: leader.term,
      success: true,
      index: 2,
      conflictTerm: 0,
    });
    drain(leader);
    expect(leader.commitIndex).toBe(2);
    expect(leader.proposeConfigChange({ kind: 'removeVoter', node: 3 }).index).toBe(3);
  });

  it('a leader sends a snapshot again when neither it nor its answer arrives within an election timeout', () => {
    // Seed 269: the snapshot was lost and the follower was never caught up.
    const leader = node(1);
    elect(leader);
    for (let i = 0; i < 3; i++) leader.propose(Buffer.from(`x${i}`));
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: leader.term,
      success: true,
      index: 4,
      conflictTerm: 0,
    });
    drain(leader);
    // Applied everything: compact, so that node 3 (which acknowledged nothing) needs the snapshot.
    expect(leader.compact(4, Buffer.from('s4'))?.index).toBe(4);
    leader.step({
      type: 'appendResponse',
      from: 3,
      to: 1,
      term: leader.term,
      success: false,
      index: 0,
      conflictTerm: 1,
    });
    const first = drain(leader).filter((m) => m.type === 'snapshot');
    expect(first.map((m) => m.to)).toEqual([3]);
    // The snapshot is lost. Heartbeats answered by node 3 alone do not resend it...
    let resent: Message[] = [];
    for (let i = 0; i < 9; i++) {
      leader.tick();
      resent = drain(leader).filter((m) => m.type === 'snapshot');
      expect(resent).toEqual([]);
    }
    // ...but an election timeout later, it goes out again.
    leader.tick();
    resent = drain(leader).filter((m) => m.type === 'snapshot');
    expect(resent.map((m) => m.to)).toEqual([3]);
  });
});

describe('replication pipeline', () => {
  it('a heartbeat answer frees a slot of a window filled by lost appends (seed 264 stalled without it)', () => {
    const leader = new RaftCore(
      { id: 1, electionTicks: 10, heartbeatTicks: 1, preVote: false, checkQuorum: false, inflightMax: 2 },
      {
        hardState: { term: 0, vote: null, commit: 0 },
        membership: { voters: [1, 2, 3], learners: [] },
        entries: [],
      },
      new SeededRandom(1),
    );
    elect(leader);
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: leader.term,
      success: true,
      index: 1,
      conflictTerm: 0,
    });
    drain(leader);
    const appendsTo2 = () => drain(leader).filter((m) => m.type === 'append' && m.to === 2).length;
    leader.propose(Buffer.from('a'));
    leader.propose(Buffer.from('b'));
    expect(appendsTo2()).toBe(2);
    // The window of 2 is full and both appends are lost: a third proposal does not go to node 2.
    leader.propose(Buffer.from('c'));
    expect(appendsTo2()).toBe(0);
    leader.step({ type: 'heartbeatResponse', from: 2, to: 1, term: leader.term, context: 0 });
    expect(appendsTo2()).toBe(1);
  });
});

/**
 * Rules a mutation run of core.ts showed no test guarding: each test names the rule, and fails when
 * the line that keeps it is changed.
 */
describe('rules the mutation run found unguarded', () => {
  it('§5.2: a candidate that steps down within its term keeps its vote, so it cannot vote twice in that term', () => {
    const candidate = node(1);
    for (let i = 0; i < 30 && candidate.role !== 'candidate'; i++) candidate.tick();
    expect(candidate.role).toBe('candidate');
    const term = candidate.term;
    drain(candidate);
    // A quorum refuses: it returns to follower in the same term, with no leader known.
    for (const from of [2, 3]) candidate.step({ type: 'voteResponse', from, to: 1, term, granted: false });
    drain(candidate);
    expect(candidate.role).toBe('follower');
    expect(candidate.term).toBe(term);
    expect(candidate.hardState().vote).toBe(1);
    candidate.step({ type: 'vote', from: 3, to: 1, term, lastIndex: 5, lastTerm: term, transfer: false });
    const answers = drain(candidate).filter((m) => m.type === 'voteResponse');
    expect(answers).toEqual([expect.objectContaining({ to: 3, granted: false })]);
    expect(candidate.hardState().vote).toBe(1);
  });

  it('persist before send: a granted vote leaves in the same Ready as the hard state that records it', () => {
    const voter = node(1, { term: 2 });
    drain(voter);
    voter.step({ type: 'vote', from: 2, to: 1, term: 2, lastIndex: 0, lastTerm: 0, transfer: false });
    const ready = voter.ready();
    expect(ready.messages).toEqual([expect.objectContaining({ type: 'voteResponse', granted: true })]);
    // Only the vote changed (same term, same commit): the hard state must still be in the Ready.
    expect(ready.hardState).toEqual({ term: 2, vote: 2, commit: 0 });
    voter.advance(ready);
    expect(voter.hasReady()).toBe(false);
  });

  it('a snapshot records the membership in force at its index, not a change made after it', () => {
    const addVoter4: Entry = {
      index: 3,
      term: 1,
      type: 'config',
      data: encodeConfigChange({ kind: 'addVoter', node: 4 }),
    };
    const core = node(1, { term: 1, commit: 3, entries: [entry(1, 1), entry(2, 1, 'a'), addVoter4] });
    drain(core);
    expect(core.appliedIndex).toBe(3);
    expect(core.membership.voters).toEqual([1, 2, 3, 4]);
    const snapshot = core.compact(2, Buffer.from('a'));
    expect(snapshot?.membership.voters).toEqual([1, 2, 3]);
    expect(core.membership.voters).toEqual([1, 2, 3, 4]);
  });

  it('§5.4.1: a vote is refused to a candidate whose last term is equal but whose log is shorter', () => {
    const voter = node(1, { term: 1, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
    drain(voter);
    voter.step({ type: 'vote', from: 2, to: 1, term: 2, lastIndex: 2, lastTerm: 1, transfer: false });
    expect(drain(voter).find((m) => m.type === 'voteResponse')).toMatchObject({ granted: false });
    voter.step({ type: 'vote', from: 3, to: 1, term: 3, lastIndex: 3, lastTerm: 1, transfer: false });
    expect(drain(voter).find((m) => m.type === 'voteResponse')).toMatchObject({ granted: true });
  });

  it('a follower never commits past its own log from a heartbeat', () => {
    const follower = node(1, { term: 1, entries: [entry(1, 1), entry(2, 1)] });
    drain(follower);
    follower.step({ type: 'heartbeat', from: 2, to: 1, term: 1, commit: 10, context: 0 });
    drain(follower);
    expect(follower.commitIndex).toBe(2);
  });

  it("a leader's heartbeat carries commit no higher than what that follower is known to hold", () => {
    const leader = node(1);
    elect(leader);
    leader.propose(Buffer.from('a'));
    leader.propose(Buffer.from('b'));
    drain(leader);
    // Node 2 holds everything; node 3 has answered nothing. The leader commits with node 2.
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: leader.term,
      success: true,
      index: 3,
      conflictTerm: 0,
    });
    drain(leader);
    expect(leader.commitIndex).toBe(3);
    for (let i = 0; i < 3; i++) leader.tick();
    const beats = drain(leader).filter((m) => m.type === 'heartbeat');
    expect(beats.find((m) => m.to === 2)).toMatchObject({ commit: 3 });
    // Node 3's log may differ after index 0: telling it commit 3 would let it commit entries it
    // does not share with the leader.
    expect(beats.find((m) => m.to === 3)).toMatchObject({ commit: 0 });
  });
});
