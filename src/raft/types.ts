/** Raft's vocabulary: *term* and *index* are Raft words (partitions use epoch and offset). */

export type NodeId = number;

export type EntryType = 'normal' | 'config';

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Opaque for `normal` entries (the state machine's command); a ConfigChange for `config`. */
  data: Uint8Array;
}

export interface HardState {
  term: number;
  vote: NodeId | null;
  commit: number;
}

export interface Membership {
  voters: NodeId[];
  learners: NodeId[];
}

export interface Snapshot {
  index: number;
  term: number;
  membership: Membership;
  data: Uint8Array;
}

/** One server at a time, as the Raft dissertation's single-server changes. */
export type ConfigChange =
  | { kind: 'addVoter'; node: NodeId }
  | { kind: 'removeVoter'; node: NodeId }
  | { kind: 'addLearner'; node: NodeId }
  | { kind: 'removeLearner'; node: NodeId };

export type Message =
  | { type: 'preVote'; from: NodeId; to: NodeId; term: number; lastIndex: number; lastTerm: number }
  | { type: 'preVoteResponse'; from: NodeId; to: NodeId; term: number; granted: boolean }
  | {
      type: 'vote';
      from: NodeId;
      to: NodeId;
      term: number;
      lastIndex: number;
      lastTerm: number;
      transfer: boolean;
    }
  | { type: 'voteResponse'; from: NodeId; to: NodeId; term: number; granted: boolean }
  | {
      type: 'append';
      from: NodeId;
      to: NodeId;
      term: number;
      prevIndex: number;
      prevTerm: number;
      entries: Entry[];
      commit: number;
    }
  | {
      type: 'appendResponse';
      from: NodeId;
      to: NodeId;
      term: number;
      success: boolean;
      /** On success the last index now matching; on failure the follower's hint (see conflictTerm). */
      index: number;
      /** On failure: the term of the follower's entry at prevIndex (0 if it has none), for fast backtracking. */
      conflictTerm: number;
    }
  | { type: 'heartbeat'; from: NodeId; to: NodeId; term: number; commit: number; context: number }
  | { type: 'heartbeatResponse'; from: NodeId; to: NodeId; term: number; context: number }
  | { type: 'snapshot'; from: NodeId; to: NodeId; term: number; snapshot: Snapshot }
  | { type: 'timeoutNow'; from: NodeId; to: NodeId; term: number };

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface ReadState {
  /** Reads may be served once the state machine has applied this index. */
  index: number;
  /** The caller's token for the read request. */
  context: number;
}

/**
 * What the core asks the driver to do, in this order: persist `hardState`, `snapshot` and
 * `entries` (entries replace any stored suffix from their first index) durably; then send
 * `messages`; then apply `snapshot` (if any) and `committed` to the state machine; then `advance`.
 */
export interface Ready {
  hardState: HardState | undefined;
  snapshot: Snapshot | undefined;
  entries: Entry[];
  messages: Message[];
  committed: Entry[];
  readStates: ReadState[];
  /** Read requests that cannot be served here (not the leader): their contexts. */
  readsRejected: number[];
}

export function encodeConfigChange(change: ConfigChange): Uint8Array {
  return Buffer.from(JSON.stringify(change), 'utf8');
}

export function decodeConfigChange(data: Uint8Array): ConfigChange {
  return JSON.parse(
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'),
  ) as ConfigChange;
}

export function applyConfigChange(membership: Membership, change: ConfigChange): Membership {
  const voters = new Set(membership.voters);
  const learners = new Set(membership.learners);
  switch (change.kind) {
    case 'addVoter':
      learners.delete(change.node);
      voters.add(change.node);
      break;
    case 'removeVoter':
      voters.delete(change.node);
      break;
    case 'addLearner':
      if (!voters.has(change.node)) learners.add(change.node);
      break;
    case 'removeLearner':
      learners.delete(change.node);
      break;
  }
  return { voters: [...voters].sort((a, b) => a - b), learners: [...learners].sort((a, b) => a - b) };
}
