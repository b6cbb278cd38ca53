import { describe, expect, it } from 'vitest';
import { type Random, SeededRandom } from '../../src/common/random.js';
import { RaftCore, type RaftCoreOptions } from '../../src/raft/core.js';
import {
  type Entry,
  encodeConfigChange,
  type Message,
  type ReadState,
  type Snapshot,
} from '../../src/raft/types.js';

/**
 * Rules of the core that a mutation run of src/raft/core.ts found unguarded (docs/testing-mutation-raft.md),
 * one test each, grouped as the survivors were: options and restore, elections and votes, log
 * matching on the follower, commit, snapshots, ReadIndex, leadership transfer, membership changes,
 * flow control on the leader, and the Ready/advance bookkeeping. Each test states the rule it holds.
 */
const entry = (index: number, term: number, data = ''): Entry => ({
  index,
  term,
  type: 'normal',
  data: Buffer.from(data),
});

const configEntry = (index: number, term: number, node: number): Entry => ({
  index,
  term,
  type: 'config',
  data: encodeConfigChange({ kind: 'addVoter', node }),
});

const threeVoters = { voters: [1, 2, 3], learners: [] };

interface Setup {
  term?: number;
  vote?: number | null;
  commit?: number;
  entries?: Entry[];
  voters?: number[];
  learners?: number[];
  snapshot?: Snapshot;
  options?: Partial<RaftCoreOptions>;
  random?: Random;
}

function node(id: number, setup: Setup = {}): RaftCore {
  return new RaftCore(
    { id, electionTicks: 10, heartbeatTicks: 1, preVote: false, checkQuorum: false, ...setup.options },
    {
      hardState: { term: setup.term ?? 0, vote: setup.vote ?? null, commit: setup.commit ?? 0 },
      membership: { voters: setup.voters ?? [1, 2, 3], learners: setup.learners ?? [] },
      snapshot: setup.snapshot,
      entries: setup.entries ?? [],
    },
    setup.random ?? new SeededRandom(id),
  );
}

/** A Random whose every integer draw is chosen by the test. */
class FixedRandom implements Random {
  constructor(private readonly draw: (bound: number) => number) {}
  next(): number {
    return 0;
  }
  int(bound: number): number {
    return this.draw(bound);
  }
  between(min: number): number {
    return min;
  }
  chance(): boolean {
    return false;
  }
  pick<T>(items: readonly T[]): T {
    return items[0]!;
  }
  fork(): Random {
    return this;
  }
}

interface Output {
  messages: Message[];
  readStates: ReadState[];
  committed: Entry[];
}

/** Persists, "sends" and applies every Ready at once. */
function drain(core: RaftCore): Output {
  const out: Output = { messages: [], readStates: [], committed: [] };
  while (core.hasReady()) {
    const ready = core.ready();
    out.messages.push(...ready.messages);
    out.readStates.push(...ready.readStates);
    out.committed.push(...ready.committed);
    core.advance(ready);
  }
  return out;
}

const sent = (core: RaftCore) => drain(core).messages;

function elect(core: RaftCore): void {
  for (let i = 0; i < 40 && core.role === 'follower'; i++) core.tick();
  for (const v of sent(core).filter((m) => m.type === 'vote'))
    core.step({ type: 'voteResponse', from: v.to, to: core.id, term: core.term, granted: true });
  drain(core);
}

function ack(core: RaftCore, from: number, index: number): void {
  core.step({
    type: 'appendResponse',
    from,
    to: core.id,
    term: core.term,
    success: true,
    index,
    conflictTerm: 0,
  });
}

function heartbeatAnswer(core: RaftCore, from: number, context = 0): void {
  core.step({ type: 'heartbeatResponse', from, to: core.id, term: core.term, context });
}

/** Node 1 leads voters 1, 2, 3; both followers hold its first entry, so both are in the replicate state. */
function leaderWithFollowers(options: Partial<RaftCoreOptions> = {}): RaftCore {
  const leader = node(1, { options });
  elect(leader);
  ack(leader, 2, 1);
  ack(leader, 3, 1);
  drain(leader);
  expect(leader.commitIndex).toBe(1);
  return leader;
}

type AppendMessage = Extract<Message, { type: 'append' }>;
const appendsTo = (messages: Message[], to: number) =>
  messages.filter((m): m is AppendMessage => m.type === 'append' && m.to === to);
const indices = (messages: AppendMessage[]) => messages.map((m) => m.entries.map((e) => e.index));

describe('options and restored state', () => {
  it('the election timeout is drawn from [electionTicks, 2 × electionTicks)', () => {
    const lowest = node(1, { options: { electionTicks: 20 }, random: new FixedRandom(() => 0) });
    for (let i = 0; i < 19; i++) lowest.tick();
    expect(lowest.role).toBe('follower');
    lowest.tick();
    expect(lowest.role).toBe('candidate');

    const highest = node(1, {
      options: { electionTicks: 20 },
      random: new FixedRandom((bound) => bound - 1),
    });
    for (let i = 0; i < 38; i++) highest.tick();
    expect(highest.role).toBe('follower');
    highest.tick();
    expect(highest.role).toBe('candidate');
  });

  it('a leader sends heartbeats every heartbeatTicks ticks', () => {
    const leader = node(1, { options: { heartbeatTicks: 3 } });
    elect(leader);
    const beats = () =>
      sent(leader)
        .filter((m) => m.type === 'heartbeat')
        .map((m) => m.to);
    leader.tick();
    expect(beats()).toEqual([]);
    leader.tick();
    expect(beats()).toEqual([]);
    leader.tick();
    expect(beats()).toEqual([2, 3]);
  });

  it('refuses options where a heartbeat is not shorter than an election timeout', () => {
    expect(() => node(1, { options: { heartbeatTicks: 10, electionTicks: 10 } })).toThrow(
      /heartbeat ticks must be below election ticks/,
    );
  });

  it('refuses a restored log with a gap, or a commit index beyond the log', () => {
    expect(() => node(1, { term: 1, entries: [entry(1, 1), entry(3, 1)] })).toThrow(
      /restored entries must follow the snapshot without gaps/,
    );
    expect(() => node(1, { term: 1, commit: 5, entries: [entry(1, 1), entry(2, 1)] })).toThrow(
      /commit 5 beyond the log 2/,
    );
  });

  it('after a snapshot, entriesFrom and the committed entries hold only what the log still has', () => {
    const core = node(1, {
      term: 1,
      commit: 3,
      snapshot: { index: 2, term: 1, membership: threeVoters, data: Buffer.from('s') },
      entries: [entry(3, 1), entry(4, 1), entry(5, 1)],
    });
    expect(core.entriesFrom(1).map((e) => e.index)).toEqual([3, 4, 5]);
    // Figure 2: apply only up to commitIndex, although 4 and 5 are in the log.
    expect(core.ready().committed.map((e) => e.index)).toEqual([3]);
  });
});

describe('elections and votes', () => {
  it('§5.1: adopting a newer term is persisted with the answer, even when vote and commit are unchanged', () => {
    const follower = node(1, { term: 1 });
    drain(follower);
    follower.step({ type: 'heartbeat', from: 2, to: 1, term: 2, commit: 0, context: 0 });
    expect(follower.ready().hardState).toEqual({ term: 2, vote: null, commit: 0 });
  });

  it('§5.1: a stale pre-vote or append gets the current term back; other stale messages get nothing', () => {
    const n = node(1, { term: 5 });
    drain(n);
    n.step({ type: 'preVote', from: 2, to: 1, term: 3, lastIndex: 9, lastTerm: 4 });
    expect(sent(n)).toEqual([{ type: 'preVoteResponse', from: 1, to: 2, term: 5, granted: false }]);
    n.step({ type: 'heartbeat', from: 2, to: 1, term: 4, commit: 0, context: 0 });
    expect(sent(n)).toEqual([
      { type: 'appendResponse', from: 1, to: 2, term: 5, success: false, index: 0, conflictTerm: 0 },
    ]);
    n.step({ type: 'vote', from: 2, to: 1, term: 4, lastIndex: 9, lastTerm: 4, transfer: false });
    n.step({ type: 'voteResponse', from: 2, to: 1, term: 4, granted: true });
    n.step({ type: 'heartbeatResponse', from: 2, to: 1, term: 4, context: 1 });
    n.step({ type: 'timeoutNow', from: 2, to: 1, term: 4 });
    expect(sent(n)).toEqual([]);
    expect(n.term).toBe(5);
  });

  it('a message addressed to another node changes nothing', () => {
    const n = node(1);
    n.step({ type: 'vote', from: 2, to: 3, term: 7, lastIndex: 0, lastTerm: 0, transfer: false });
    expect(n.term).toBe(0);
    expect(n.hasReady()).toBe(false);
  });

  it('PreVote: a pre-candidate asks each other voter once, for term + 1, without raising its term', () => {
    const n = node(1, { options: { preVote: true } });
    for (let i = 0; i < 40 && n.role === 'follower'; i++) n.tick();
    expect(n.role).toBe('preCandidate');
    const ready = n.ready();
    expect(ready.hardState).toBeUndefined();
    expect(ready.messages).toEqual([
      { type: 'preVote', from: 1, to: 2, term: 1, lastIndex: 0, lastTerm: 0 },
      { type: 'preVote', from: 1, to: 3, term: 1, lastIndex: 0, lastTerm: 0 },
    ]);
    n.advance(ready);
    // Winning the pre-vote starts a real election; its requests are not transfers (the lease holds).
    n.step({ type: 'preVoteResponse', from: 2, to: 1, term: 1, granted: true });
    expect(n.role).toBe('candidate');
    expect(n.term).toBe(1);
    expect(sent(n).filter((m) => m.type === 'vote')).toEqual([
      { type: 'vote', from: 1, to: 2, term: 1, lastIndex: 0, lastTerm: 0, transfer: false },
      { type: 'vote', from: 1, to: 3, term: 1, lastIndex: 0, lastTerm: 0, transfer: false },
    ]);
  });

  it('PreVote: a refusal that carries a newer term makes the pre-candidate adopt it', () => {
    const n = node(1, { options: { preVote: true } });
    for (let i = 0; i < 40 && n.role === 'follower'; i++) n.tick();
    drain(n);
    n.step({ type: 'preVoteResponse', from: 2, to: 1, term: 3, granted: false });
    expect(n.role).toBe('follower');
    expect(n.term).toBe(3);
  });

  it('PreVote: a pre-candidate counts only grants for the term it asks about, and no vote answers', () => {
    const n = node(1, { term: 1, options: { preVote: true } });
    for (let i = 0; i < 40 && n.role === 'follower'; i++) n.tick();
    expect(n.role).toBe('preCandidate');
    drain(n);
    // A grant from an earlier round (for term 1), and a vote answer from an earlier candidacy.
    n.step({ type: 'preVoteResponse', from: 2, to: 1, term: 1, granted: true });
    n.step({ type: 'voteResponse', from: 3, to: 1, term: 1, granted: true });
    expect(n.role).toBe('preCandidate');
    expect(n.term).toBe(1);
    n.step({ type: 'preVoteResponse', from: 2, to: 1, term: 2, granted: true });
    expect(n.role).toBe('candidate');
    expect(n.term).toBe(2);
  });

  it('a candidate counts only vote answers: a late pre-vote refusal does not count against it', () => {
    const n = node(1, { options: { preVote: true } });
    for (let i = 0; i < 40 && n.role === 'follower'; i++) n.tick();
    n.step({ type: 'preVoteResponse', from: 2, to: 1, term: 1, granted: true });
    expect(n.role).toBe('candidate');
    drain(n);
    n.step({ type: 'preVoteResponse', from: 2, to: 1, term: 1, granted: false });
    n.step({ type: 'voteResponse', from: 3, to: 1, term: 1, granted: false });
    expect(n.role).toBe('candidate');
  });

  it('PreVote: granted only for a higher term, to an up-to-date log, when no live leader is known', () => {
    const voter = node(2, { term: 1, entries: [entry(1, 1)], options: { preVote: true } });
    drain(voter);
    const answer = () => sent(voter).find((m) => m.type === 'preVoteResponse');
    voter.step({ type: 'preVote', from: 1, to: 2, term: 2, lastIndex: 0, lastTerm: 0 });
    expect(answer()).toMatchObject({ to: 1, term: 1, granted: false });
    voter.step({ type: 'preVote', from: 3, to: 2, term: 1, lastIndex: 1, lastTerm: 1 });
    expect(answer()).toMatchObject({ to: 3, term: 1, granted: false });
    voter.step({ type: 'preVote', from: 3, to: 2, term: 2, lastIndex: 1, lastTerm: 1 });
    expect(answer()).toMatchObject({ to: 3, term: 2, granted: true });
    expect(voter.hardState()).toEqual({ term: 1, vote: null, commit: 0 });
    // Once it hears from a live leader, it refuses a pre-vote that would otherwise win.
    voter.step({ type: 'heartbeat', from: 3, to: 2, term: 1, commit: 0, context: 0 });
    drain(voter);
    voter.step({ type: 'preVote', from: 1, to: 2, term: 2, lastIndex: 1, lastTerm: 1 });
    expect(answer()).toMatchObject({ to: 1, term: 1, granted: false });
  });

  it('§5.2: a voter grants again a repeated request from the candidate it voted for', () => {
    const voter = node(3);
    const request: Message = {
      type: 'vote',
      from: 1,
      to: 3,
      term: 1,
      lastIndex: 0,
      lastTerm: 0,
      transfer: false,
    };
    voter.step(request);
    expect(sent(voter)).toEqual([{ type: 'voteResponse', from: 3, to: 1, term: 1, granted: true }]);
    voter.step(request);
    expect(sent(voter)).toEqual([{ type: 'voteResponse', from: 3, to: 1, term: 1, granted: true }]);
  });

  it('§5.2: a follower that knows the leader of its term votes for no other candidate in it', () => {
    const follower = node(3);
    follower.step({ type: 'heartbeat', from: 2, to: 3, term: 1, commit: 0, context: 0 });
    drain(follower);
    expect(follower.hardState().vote).toBeNull();
    follower.step({ type: 'vote', from: 1, to: 3, term: 1, lastIndex: 5, lastTerm: 1, transfer: false });
    expect(sent(follower)).toEqual([{ type: 'voteResponse', from: 3, to: 1, term: 1, granted: false }]);
  });

  it('CheckQuorum lease: a follower that heard from a live leader ignores a vote of a newer term, unless it is a transfer', () => {
    const follower = node(3, { options: { checkQuorum: true } });
    follower.step({ type: 'heartbeat', from: 2, to: 3, term: 1, commit: 0, context: 0 });
    drain(follower);
    follower.step({ type: 'vote', from: 1, to: 3, term: 2, lastIndex: 1, lastTerm: 1, transfer: false });
    expect(sent(follower)).toEqual([]);
    expect(follower.term).toBe(1);
    expect(follower.leaderId).toBe(2);
    follower.step({ type: 'vote', from: 1, to: 3, term: 2, lastIndex: 1, lastTerm: 1, transfer: true });
    expect(sent(follower)).toEqual([{ type: 'voteResponse', from: 3, to: 1, term: 2, granted: true }]);
  });

  it('CheckQuorum lease: it ends an election timeout after the leader was last heard', () => {
    // The draw puts this follower's own timeout at 19 ticks, so it does not campaign first.
    const follower = node(3, { options: { checkQuorum: true }, random: new FixedRandom((b) => b - 1) });
    follower.step({ type: 'heartbeat', from: 2, to: 3, term: 1, commit: 0, context: 0 });
    drain(follower);
    for (let i = 0; i < 10; i++) follower.tick();
    expect(follower.role).toBe('follower');
    follower.step({ type: 'vote', from: 1, to: 3, term: 2, lastIndex: 1, lastTerm: 1, transfer: false });
    expect(sent(follower)).toEqual([{ type: 'voteResponse', from: 3, to: 1, term: 2, granted: true }]);
  });

  it('CheckQuorum lease: the lease does not keep out the leader of a newer term', () => {
    const follower = node(3, { options: { checkQuorum: true } });
    follower.step({ type: 'heartbeat', from: 2, to: 3, term: 1, commit: 0, context: 0 });
    drain(follower);
    follower.step({
      type: 'append',
      from: 1,
      to: 3,
      term: 2,
      prevIndex: 0,
      prevTerm: 0,
      entries: [],
      commit: 0,
    });
    expect(follower.term).toBe(2);
    expect(follower.leaderId).toBe(1);
    expect(sent(follower)).toEqual([
      { type: 'appendResponse', from: 3, to: 1, term: 2, success: true, index: 0, conflictTerm: 0 },
    ]);
  });

  it('a leader ignores a timeoutNow of its own term (a duplicate from a finished transfer)', () => {
    const leader = node(1);
    elect(leader);
    const term = leader.term;
    leader.step({ type: 'timeoutNow', from: 2, to: 1, term });
    expect(leader.role).toBe('leader');
    expect(leader.term).toBe(term);
  });

  it('§5.2/§5.4.2: a new leader appends an empty normal entry of its term', () => {
    const leader = node(1);
    elect(leader);
    expect(leader.entriesFrom(leader.lastIndex())).toEqual([
      { term: leader.term, index: 1, type: 'normal', data: new Uint8Array() },
    ]);
  });
});

describe('CheckQuorum on the leader', () => {
  it('a new leader gives its peers one election timeout to answer, and steps down at the end of the second', () => {
    const leader = node(1, { options: { checkQuorum: true } });
    elect(leader);
    const term = leader.term;
    for (let i = 0; i < 19; i++) leader.tick();
    expect(leader.role).toBe('leader');
    leader.tick();
    expect(leader.role).toBe('follower');
    expect(leader.term).toBe(term);
    drain(leader);
    // Answers that arrive after it stepped down (same term) count for nothing.
    heartbeatAnswer(leader, 3);
    ack(leader, 2, 1);
    expect(sent(leader)).toEqual([]);
    expect(leader.commitIndex).toBe(0);
  });

  it('without CheckQuorum a leader that hears nothing keeps leading', () => {
    const leader = node(1);
    elect(leader);
    for (let i = 0; i < 100; i++) leader.tick();
    expect(leader.role).toBe('leader');
  });

  it('a voter just added gets a whole election timeout before CheckQuorum counts it as lost', () => {
    const leader = node(1, { options: { checkQuorum: true } });
    elect(leader);
    ack(leader, 2, 1);
    drain(leader);
    const tickAnswered = (n: number) => {
      for (let i = 0; i < n; i++) {
        leader.tick();
        heartbeatAnswer(leader, 2);
        drain(leader);
      }
    };
    tickAnswered(10);
    leader.proposeConfigChange({ kind: 'addVoter', node: 4 });
    drain(leader);
    // Voters 1..4, quorum 3: node 3 is silent, node 2 answers, node 4 is new.
    tickAnswered(10);
    expect(leader.role).toBe('leader');
    tickAnswered(10);
    expect(leader.role).toBe('follower');
  });

  it('acknowledgements from a node outside the configuration are ignored', () => {
    const leader = leaderWithFollowers();
    ack(leader, 9, 1);
    heartbeatAnswer(leader, 9, 1);
    expect(sent(leader)).toEqual([]);
  });
});

describe('log matching on the follower (§5.3)', () => {
  it('an append at or below the commit index is acknowledged with the commit index and changes nothing', () => {
    const follower = node(1, { term: 1, commit: 3, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
    drain(follower);
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 1,
      prevIndex: 1,
      prevTerm: 1,
      entries: [entry(2, 1)],
      commit: 3,
    });
    const out = follower.ready();
    expect(out.messages).toEqual([
      { type: 'appendResponse', from: 1, to: 2, term: 1, success: true, index: 3, conflictTerm: 0 },
    ]);
    expect(out.entries).toEqual([]);
    expect(follower.lastIndex()).toBe(3);
  });

  it('a refusal for a prevIndex beyond the log names no term and the log end + 1', () => {
    const follower = node(1, { term: 1, entries: [entry(1, 1), entry(2, 1)] });
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 1,
      prevIndex: 5,
      prevTerm: 1,
      entries: [],
      commit: 0,
    });
    expect(sent(follower)).toEqual([
      { type: 'appendResponse', from: 1, to: 2, term: 1, success: false, index: 3, conflictTerm: 0 },
    ]);
  });

  it('the backtracking hint stops at the first index after the snapshot', () => {
    const follower = node(1, {
      term: 2,
      commit: 2,
      snapshot: { index: 2, term: 2, membership: threeVoters, data: new Uint8Array() },
      entries: [entry(3, 2), entry(4, 2)],
    });
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 3,
      prevIndex: 4,
      prevTerm: 3,
      entries: [entry(5, 3)],
      commit: 2,
    });
    expect(sent(follower)).toEqual([
      { type: 'appendResponse', from: 1, to: 2, term: 3, success: false, index: 3, conflictTerm: 2 },
    ]);
  });

  it('entries the follower already holds are kept: a delayed append truncates nothing', () => {
    const follower = node(1, { term: 1, entries: [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)] });
    drain(follower);
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 1,
      prevIndex: 1,
      prevTerm: 1,
      entries: [entry(2, 1)],
      commit: 0,
    });
    const out = follower.ready();
    expect(out.entries).toEqual([]);
    expect(out.messages).toEqual([
      { type: 'appendResponse', from: 1, to: 2, term: 1, success: true, index: 2, conflictTerm: 0 },
    ]);
    expect(follower.lastIndex()).toBe(4);
  });

  it('the commit index never moves back, though a new leader may send a lower one', () => {
    const follower = node(1, { term: 1, commit: 3, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
    drain(follower);
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 2,
      prevIndex: 3,
      prevTerm: 1,
      entries: [entry(4, 2)],
      commit: 1,
    });
    expect(follower.commitIndex).toBe(3);
  });

  it('persist before acknowledging: a replaced entry at the last persisted index is persisted again', () => {
    const follower = node(1, { term: 2, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
    drain(follower);
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 2,
      prevIndex: 2,
      prevTerm: 1,
      entries: [entry(3, 2)],
      commit: 0,
    });
    expect(follower.ready().entries.map((e) => [e.index, e.term])).toEqual([[3, 2]]);
  });

  it('a configuration change that is truncated away no longer applies', () => {
    const follower = node(1, { term: 1, commit: 1, entries: [entry(1, 1), configEntry(2, 1, 4)] });
    expect(follower.membership.voters).toEqual([1, 2, 3, 4]);
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 2,
      prevIndex: 1,
      prevTerm: 1,
      entries: [entry(2, 2)],
      commit: 1,
    });
    expect(follower.membership.voters).toEqual([1, 2, 3]);
  });

  it('fail-stop: an append that would overwrite a committed entry trips an assertion', () => {
    const follower = node(1, { term: 2, commit: 2, entries: [entry(1, 1), entry(2, 1)] });
    expect(() =>
      follower.step({
        type: 'append',
        from: 2,
        to: 1,
        term: 2,
        prevIndex: 2,
        prevTerm: 1,
        entries: [entry(2, 2)],
        commit: 2,
      }),
    ).toThrow(/leader 2 asks to overwrite committed entry 2/);
  });

  it('fail-stop: an append whose entries leave a gap, or rewrite the snapshot, trips an assertion', () => {
    const follower = node(1, { term: 1, entries: [entry(1, 1)] });
    expect(() =>
      follower.step({
        type: 'append',
        from: 2,
        to: 1,
        term: 1,
        prevIndex: 1,
        prevTerm: 1,
        entries: [entry(3, 1)],
        commit: 0,
      }),
    ).toThrow(/append at 3 leaves a gap or rewrites the snapshot/);
    const compacted = node(1, {
      term: 1,
      commit: 2,
      snapshot: { index: 2, term: 1, membership: threeVoters, data: new Uint8Array() },
    });
    expect(() =>
      compacted.step({
        type: 'append',
        from: 2,
        to: 1,
        term: 1,
        prevIndex: 2,
        prevTerm: 1,
        entries: [entry(1, 1)],
        commit: 2,
      }),
    ).toThrow(/append at 1 leaves a gap or rewrites the snapshot/);
  });
});

describe('commit', () => {
  it('the limit on proposals counts only uncommitted entries', () => {
    const leader = node(1, { options: { uncommittedMax: 3 } });
    elect(leader);
    ack(leader, 2, 1);
    leader.propose(Buffer.from('a'));
    leader.propose(Buffer.from('b'));
    ack(leader, 2, 3);
    drain(leader);
    expect(leader.commitIndex).toBe(3);
    for (const data of ['c', 'd', 'e']) leader.propose(Buffer.from(data));
    expect(() => leader.propose(Buffer.from('f'))).toThrow(/3 entries are waiting to commit/);
  });

  it('a commit is announced at once to each follower that holds the whole log, and to no other', () => {
    const leader = leaderWithFollowers();
    leader.propose(Buffer.from('x'));
    drain(leader);
    ack(leader, 2, 2);
    // Node 3's append is still in flight; it learns the commit with its next append or heartbeat.
    expect(sent(leader)).toEqual([
      { type: 'heartbeat', from: 1, to: 2, term: leader.term, commit: 2, context: 0 },
    ]);
  });

  it('refuses proposals on a follower with a message that names the node', () => {
    const follower = node(1);
    expect(() => follower.propose(Buffer.from('x'))).toThrow(/node 1 is not the leader/);
  });
});

describe('snapshots', () => {
  it('compact: only up to the applied index, and only forward', () => {
    const core = node(1, {
      term: 1,
      commit: 4,
      entries: [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)],
    });
    drain(core);
    expect(() => core.compact(5, Buffer.from('s'))).toThrow(/cannot snapshot at 5, applied only 4/);
    expect(core.compact(3, Buffer.from('s3'))?.index).toBe(3);
    expect(core.compact(3, Buffer.from('again'))).toBeUndefined();
    expect(core.compact(2, Buffer.from('older'))).toBeUndefined();
    expect(core.snapshotIndex).toBe(3);
    expect(core.entriesFrom(4).map((e) => e.index)).toEqual([4]);
  });

  it('a snapshot records a membership change made at or before its index', () => {
    const core = node(1, { term: 1, commit: 3, entries: [entry(1, 1), configEntry(2, 1, 4), entry(3, 1)] });
    drain(core);
    expect(core.compact(2, Buffer.from('s'))?.membership.voters).toEqual([1, 2, 3, 4]);
  });

  it('a snapshot at or below the commit index changes nothing and is acknowledged with the commit index', () => {
    const follower = node(1, { term: 1, commit: 3, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
    drain(follower);
    follower.step({
      type: 'snapshot',
      from: 2,
      to: 1,
      term: 1,
      snapshot: { index: 2, term: 1, membership: threeVoters, data: Buffer.from('s') },
    });
    const out = follower.ready();
    expect(out.snapshot).toBeUndefined();
    expect(out.messages).toEqual([
      { type: 'appendResponse', from: 1, to: 2, term: 1, success: true, index: 3, conflictTerm: 0 },
    ]);
    expect(follower.commitIndex).toBe(3);
    expect(follower.lastIndex()).toBe(3);
  });

  it('a follower that holds the snapshot’s last entry commits up to it and applies its own entries', () => {
    const follower = node(1, { term: 1, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
    drain(follower);
    follower.step({
      type: 'snapshot',
      from: 2,
      to: 1,
      term: 1,
      snapshot: { index: 2, term: 1, membership: threeVoters, data: Buffer.from('s') },
    });
    const out = follower.ready();
    expect(out.snapshot).toBeUndefined();
    expect(out.committed.map((e) => e.index)).toEqual([1, 2]);
    expect(out.messages).toEqual([
      { type: 'appendResponse', from: 1, to: 2, term: 1, success: true, index: 2, conflictTerm: 0 },
    ]);
  });

  it("a leader's new entry is handed out to persist even when no message goes with it", () => {
    const leader = node(1);
    elect(leader);
    // Both followers have the first append outstanding (probe state): the proposal sends nothing.
    leader.propose(Buffer.from('x'));
    expect(leader.hasReady()).toBe(true);
    const ready = leader.ready();
    expect(ready.messages).toEqual([]);
    expect(ready.entries.map((e) => e.index)).toEqual([2]);
  });

  it('a snapshot installed while a Ready is in flight is handed out after that Ready is advanced', () => {
    const follower = node(1);
    const first: Snapshot = { index: 2, term: 1, membership: threeVoters, data: Buffer.from('s2') };
    const second: Snapshot = { index: 4, term: 1, membership: threeVoters, data: Buffer.from('s4') };
    follower.step({ type: 'snapshot', from: 2, to: 1, term: 1, snapshot: first });
    const inFlight = follower.ready();
    expect(inFlight.snapshot).toEqual(first);
    follower.step({ type: 'snapshot', from: 2, to: 1, term: 1, snapshot: second });
    follower.advance(inFlight);
    expect(follower.hasReady()).toBe(true);
    expect(follower.ready().snapshot).toEqual(second);
  });

  it('entries replaced while a Ready is in flight are persisted again', () => {
    const follower = node(1);
    follower.step({
      type: 'append',
      from: 2,
      to: 1,
      term: 1,
      prevIndex: 0,
      prevTerm: 0,
      entries: [entry(1, 1), entry(2, 1)],
      commit: 0,
    });
    const inFlight = follower.ready();
    follower.step({
      type: 'append',
      from: 3,
      to: 1,
      term: 2,
      prevIndex: 1,
      prevTerm: 1,
      entries: [entry(2, 2)],
      commit: 0,
    });
    follower.advance(inFlight);
    expect(follower.ready().entries.map((e) => [e.index, e.term])).toEqual([
      [1, 1],
      [2, 2],
    ]);
  });

  describe('sending a snapshot', () => {
    /** Node 1 leads, has compacted at 4, and has sent node 3 (which holds nothing) its snapshot. */
    function leaderSendingSnapshot(): RaftCore {
      const leader = node(1);
      elect(leader);
      for (let i = 0; i < 3; i++) leader.propose(Buffer.from(`x${i}`));
      ack(leader, 2, 4);
      drain(leader);
      leader.compact(4, Buffer.from('s4'));
      leader.step({
        type: 'appendResponse',
        from: 3,
        to: 1,
        term: leader.term,
        success: false,
        index: 1,
        conflictTerm: 0,
      });
      expect(sent(leader).filter((m) => m.type === 'snapshot' && m.to === 3)).toHaveLength(1);
      return leader;
    }

    it('while a snapshot is in flight, that follower is sent nothing else', () => {
      const leader = leaderSendingSnapshot();
      leader.propose(Buffer.from('y'));
      heartbeatAnswer(leader, 3);
      expect(sent(leader).filter((m) => m.to === 3 && m.type !== 'heartbeat')).toEqual([]);
    });

    it('a late acknowledgement below the snapshot does not send it again', () => {
      const leader = leaderSendingSnapshot();
      ack(leader, 3, 1);
      expect(sent(leader).filter((m) => m.to === 3)).toEqual([]);
    });
  });
});

describe('ReadIndex (§6.4)', () => {
  it('a new leader holds reads until an entry of its own term commits, then serves them at that index', () => {
    const leader = node(1);
    elect(leader);
    leader.readIndex(7);
    const before = drain(leader);
    expect(before.readStates).toEqual([]);
    expect(before.messages.filter((m) => m.type === 'heartbeat')).toEqual([]);
    ack(leader, 2, 1);
    const beats = drain(leader).messages.filter((m) => m.type === 'heartbeat' && m.context === 7);
    expect(beats.map((m) => m.to)).toEqual([2, 3]);
    heartbeatAnswer(leader, 2, 7);
    expect(drain(leader).readStates).toEqual([{ index: 1, context: 7 }]);
  });

  it('a quorum confirms a read counting the leader itself; an answer to an earlier heartbeat confirms no later read', () => {
    const leader = leaderWithFollowers();
    leader.readIndex(1);
    leader.readIndex(2);
    drain(leader);
    heartbeatAnswer(leader, 2, 1);
    expect(drain(leader).readStates).toEqual([{ index: 1, context: 1 }]);
    heartbeatAnswer(leader, 2, 2);
    expect(drain(leader).readStates).toEqual([{ index: 1, context: 2 }]);
  });

  it("a tick's heartbeat carries the newest pending read, so a lost read heartbeat is made good", () => {
    const leader = leaderWithFollowers();
    leader.readIndex(4);
    drain(leader);
    leader.tick();
    const beats = drain(leader).messages.filter((m) => m.type === 'heartbeat');
    expect(beats.map((m) => [m.to, m.type === 'heartbeat' && m.context])).toEqual([
      [2, 4],
      [3, 4],
    ]);
    heartbeatAnswer(leader, 3, 4);
    expect(drain(leader).readStates).toEqual([{ index: 1, context: 4 }]);
  });

  it('a single voter serves a read at once, without a round of heartbeats', () => {
    const leader = node(1, { voters: [1], learners: [2] });
    elect(leader);
    expect(leader.role).toBe('leader');
    expect(leader.commitIndex).toBe(1);
    leader.readIndex(5);
    const out = drain(leader);
    expect(out.readStates).toEqual([{ index: 1, context: 5 }]);
    expect(out.messages.filter((m) => m.type === 'heartbeat')).toEqual([]);
  });
});

describe('leadership transfer', () => {
  it('only the leader transfers; a follower refuses with NOT_LEADER naming the leader', () => {
    const follower = node(1);
    follower.step({ type: 'heartbeat', from: 2, to: 1, term: 1, commit: 0, context: 0 });
    expect(() => follower.transferLeadership(3)).toThrow(
      expect.objectContaining({
        code: 'NOT_LEADER',
        message: expect.stringMatching(/only the leader can transfer leadership/),
        details: { leaderId: 2 },
      }),
    );
  });

  it('a transfer to the leader itself changes nothing; one to a non-voter is refused', () => {
    const leader = leaderWithFollowers();
    leader.transferLeadership(1);
    expect(leader.transferee).toBeNull();
    expect(leader.propose(Buffer.from('x')).index).toBe(2);
    expect(() => leader.transferLeadership(4)).toThrow(
      expect.objectContaining({
        code: 'INVALID_REQUEST',
        message: expect.stringMatching(/node 4 is not a voter/),
      }),
    );
  });

  it('a target that holds the whole log is sent timeoutNow at once', () => {
    const leader = leaderWithFollowers();
    leader.transferLeadership(3);
    expect(leader.transferee).toBe(3);
    expect(sent(leader)).toEqual([{ type: 'timeoutNow', from: 1, to: 3, term: leader.term }]);
  });

  it('a lagging target is sent timeoutNow only once it holds the whole log; proposals meanwhile name it', () => {
    const leader = node(1);
    elect(leader);
    leader.propose(Buffer.from('a'));
    leader.propose(Buffer.from('b'));
    ack(leader, 2, 3);
    drain(leader);
    leader.transferLeadership(3);
    expect(() => leader.propose(Buffer.from('c'))).toThrow(
      expect.objectContaining({
        code: 'NOT_LEADER',
        message: expect.stringMatching(/leadership is moving to node 3/),
        details: { leaderId: 3 },
      }),
    );
    ack(leader, 3, 1);
    expect(sent(leader).filter((m) => m.type === 'timeoutNow')).toEqual([]);
    ack(leader, 3, 3);
    expect(sent(leader).filter((m) => m.type === 'timeoutNow')).toEqual([
      { type: 'timeoutNow', from: 1, to: 3, term: leader.term },
    ]);
  });

  it('a transfer that does not finish within an election timeout is abandoned', () => {
    const leader = node(1);
    elect(leader);
    leader.transferLeadership(3);
    for (let i = 0; i < 9; i++) {
      leader.tick();
      expect(() => leader.propose(Buffer.from('x'))).toThrow(expect.objectContaining({ code: 'NOT_LEADER' }));
    }
    leader.tick();
    expect(leader.transferee).toBeNull();
    expect(leader.propose(Buffer.from('x')).index).toBe(2);
  });
});

describe('membership changes', () => {
  it('a follower refuses a change with NOT_LEADER', () => {
    const follower = node(1);
    follower.step({ type: 'heartbeat', from: 2, to: 1, term: 1, commit: 0, context: 0 });
    expect(() => follower.proposeConfigChange({ kind: 'addLearner', node: 4 })).toThrow(
      expect.objectContaining({ code: 'NOT_LEADER', details: { leaderId: 2 } }),
    );
  });

  // Found by the mutation run: the check for a change in progress ran before the leader check, so
  // a follower holding an uncommitted change answered LIMIT_EXCEEDED and a client that follows
  // NOT_LEADER to the leader was not redirected. proposeConfigChange now checks the role first.
  it('a follower that holds an uncommitted change still refuses a change with NOT_LEADER', () => {
    const follower = node(1, { term: 1, commit: 1, entries: [entry(1, 1), configEntry(2, 1, 4)] });
    follower.step({ type: 'heartbeat', from: 2, to: 1, term: 1, commit: 1, context: 0 });
    expect(() => follower.proposeConfigChange({ kind: 'addLearner', node: 5 })).toThrow(
      expect.objectContaining({ code: 'NOT_LEADER', details: { leaderId: 2 } }),
    );
  });

  it('one server at a time: the next change waits until the previous one is applied, not only committed', () => {
    const leader = leaderWithFollowers();
    expect(leader.proposeConfigChange({ kind: 'addLearner', node: 4 }).index).toBe(2);
    ack(leader, 2, 2);
    expect(leader.commitIndex).toBe(2);
    expect(leader.appliedIndex).toBe(1);
    expect(() => leader.proposeConfigChange({ kind: 'addLearner', node: 5 })).toThrow(
      expect.objectContaining({
        code: 'LIMIT_EXCEEDED',
        message: expect.stringMatching(/one server at a time/),
      }),
    );
    drain(leader);
    expect(leader.proposeConfigChange({ kind: 'addLearner', node: 5 }).index).toBe(3);
  });

  it('a removed voter is sent nothing more', () => {
    const leader = leaderWithFollowers();
    leader.proposeConfigChange({ kind: 'removeVoter', node: 3 });
    const out = sent(leader);
    for (let i = 0; i < 3; i++) {
      leader.tick();
      out.push(...sent(leader));
    }
    expect(out.filter((m) => m.to === 3)).toEqual([]);
    expect(out.filter((m) => m.to === 2).length).toBeGreaterThan(0);
  });

  it('a new learner is probed one append at a time until it answers', () => {
    const leader = leaderWithFollowers();
    leader.proposeConfigChange({ kind: 'addLearner', node: 4 });
    expect(appendsTo(sent(leader), 4)).toHaveLength(1);
    leader.propose(Buffer.from('x'));
    expect(appendsTo(sent(leader), 4)).toEqual([]);
  });
});

describe('flow control on the leader', () => {
  it('a caught-up follower whose heartbeats are answered is sent only heartbeats', () => {
    const leader = leaderWithFollowers();
    const out: Message[] = [];
    for (let i = 0; i < 25; i++) {
      leader.tick();
      out.push(...sent(leader));
      heartbeatAnswer(leader, 2);
      heartbeatAnswer(leader, 3);
      out.push(...sent(leader));
    }
    expect(new Set(out.map((m) => m.type))).toEqual(new Set(['heartbeat']));
  });

  it('acknowledgements slide the window: each frees one slot, and only what was not sent goes next', () => {
    const leader = leaderWithFollowers({ inflightMax: 2 });
    for (const data of ['a', 'b', 'c']) leader.propose(Buffer.from(data));
    expect(indices(appendsTo(sent(leader), 2))).toEqual([[2], [3]]);
    ack(leader, 2, 2);
    expect(indices(appendsTo(sent(leader), 2))).toEqual([[4]]);
  });

  it('duplicated acknowledgements never widen the window beyond inflightMax', () => {
    const leader = leaderWithFollowers({ inflightMax: 2 });
    leader.propose(Buffer.from('a'));
    leader.propose(Buffer.from('b'));
    for (let i = 0; i < 3; i++) ack(leader, 2, 3);
    drain(leader);
    for (const data of ['c', 'd', 'e']) leader.propose(Buffer.from(data));
    expect(indices(appendsTo(sent(leader), 2))).toEqual([[4], [5]]);
  });

  it('a heartbeat answer frees a slot only when the window is full', () => {
    const leader = leaderWithFollowers({ inflightMax: 2 });
    leader.propose(Buffer.from('a'));
    heartbeatAnswer(leader, 2);
    drain(leader);
    leader.propose(Buffer.from('b'));
    leader.propose(Buffer.from('c'));
    expect(indices(appendsTo(sent(leader), 2))).toEqual([[3]]);
  });

  it('once a probe is answered the leader fills the window at once, entriesPerAppendMax entries each', () => {
    const leader = node(1, { options: { entriesPerAppendMax: 1, inflightMax: 3 } });
    elect(leader);
    for (const data of ['a', 'b', 'c', 'd']) leader.propose(Buffer.from(data));
    expect(appendsTo(sent(leader), 2)).toEqual([]);
    ack(leader, 2, 1);
    expect(indices(appendsTo(sent(leader), 2))).toEqual([[2], [3], [4]]);
  });

  it('a late acknowledgement never lowers what the follower is known to hold', () => {
    const leader = leaderWithFollowers();
    leader.propose(Buffer.from('a'));
    leader.propose(Buffer.from('b'));
    ack(leader, 2, 3);
    drain(leader);
    ack(leader, 2, 2);
    drain(leader);
    leader.tick();
    expect(sent(leader).find((m) => m.type === 'heartbeat' && m.to === 2)).toMatchObject({ commit: 3 });
  });

  it('a late refusal never moves the next index to or below what the follower holds', () => {
    const leader = leaderWithFollowers();
    leader.propose(Buffer.from('a'));
    leader.propose(Buffer.from('b'));
    ack(leader, 2, 3);
    drain(leader);
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: leader.term,
      success: false,
      index: 2,
      conflictTerm: 0,
    });
    expect(appendsTo(sent(leader), 2)).toEqual([expect.objectContaining({ prevIndex: 3, prevTerm: 1 })]);
  });

  it('a refusal that only reports a newer term leaves the follower’s progress alone', () => {
    const leader = leaderWithFollowers();
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: leader.term,
      success: false,
      index: 0,
      conflictTerm: 0,
    });
    expect(sent(leader)).toEqual([]);
    leader.propose(Buffer.from('x'));
    expect(appendsTo(sent(leader), 2)).toEqual([expect.objectContaining({ prevIndex: 1 })]);
  });

  it('§5.3 fast backtracking: when this log holds the conflicting term at the hint, resume right after it', () => {
    const leader = node(1, { term: 3, entries: [entry(1, 1), entry(2, 2), entry(3, 3)] });
    elect(leader);
    expect(leader.term).toBe(4);
    // Node 2 holds 1/1 2/2 3/2: it refused prevIndex 3 (term 3); its term 2 starts at index 2.
    leader.step({
      type: 'appendResponse',
      from: 2,
      to: 1,
      term: 4,
      success: false,
      index: 2,
      conflictTerm: 2,
    });
    expect(appendsTo(sent(leader), 2)).toEqual([expect.objectContaining({ prevIndex: 2, prevTerm: 2 })]);
  });
});
