/**
 * The cluster-internal HTTP API, defined once for the node that serves it and the peers that call
 * it. Every request carries the shared cluster secret; bodies are msgpack.
 *
 * - `POST /internal/raft/messages`: a msgpack array of at most `RAFT_MESSAGES_MAX` Raft messages,
 *   each a map with at least `type` (one of `RAFT_MESSAGE_TYPES`), `from`, `to` and `term`;
 *   answered 204.
 * - `GET /internal/raft/status`: the node's Raft driver status.
 */

export const CLUSTER_SECRET_HEADER = 'sluice-cluster-secret';
export const RAFT_MESSAGES_PATH = '/internal/raft/messages';
export const RAFT_STATUS_PATH = '/internal/raft/status';
/** The most messages one request carries; a sender splits longer queues. */
export const RAFT_MESSAGES_MAX = 4096;

export const RAFT_MESSAGE_TYPES: ReadonlySet<string> = new Set([
  'preVote',
  'preVoteResponse',
  'vote',
  'voteResponse',
  'append',
  'appendResponse',
  'heartbeat',
  'heartbeatResponse',
  'snapshot',
  'timeoutNow',
]);
