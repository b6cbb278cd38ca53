import { timingSafeEqual } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { RaftMessage, RaftStatus } from '../../broker/api.js';
import { SluiceError } from '../../common/errors.js';
import { MEDIA } from '../../protocol/api.js';
import {
  CLUSTER_SECRET_HEADER,
  CONTROLLER_COMMAND_BYTES_MAX,
  CONTROLLER_COMMANDS_PATH,
  type ControllerCommand,
  type ControllerCommandResult,
  checkControllerCommand,
  checkRaftMessage,
  checkReplicaFetchRequest,
  checkSnapshotChunk,
  FieldError,
  LEADER_OFFSETS_PATH,
  RAFT_MESSAGES_BYTES_MAX,
  RAFT_MESSAGES_MAX,
  RAFT_MESSAGES_PATH,
  RAFT_SNAPSHOT_CHUNKS_PATH,
  RAFT_STATUS_PATH,
  REPLICA_FETCH_PATH,
  type ReplicaFetchPartitionAnswer,
  type ReplicaFetchRequest,
  SNAPSHOT_CHUNK_REQUEST_BYTES_MAX,
  type SnapshotChunk,
  type SnapshotChunkOutcome,
} from '../../protocol/internal-api.js';
import { packr, unpackr } from '../../protocol/msgpack.js';
import { encodeReplicaFetchAnswer } from '../../protocol/replica-fetch-answer.js';
import { sendProblem } from '../problem.js';

export interface InternalRaftOptions {
  clusterSecret: string;
  /** This node's id: a message addressed to another node is refused. */
  nodeId: number;
  /**
   * Whether a node may send here. Ask the address book of every node that may be a member
   * (Http2RaftTransport.isKnownMember), not the committed configuration: a voter must hear a
   * candidate whose addition it has not seen yet (docs/raft.md).
   */
  isKnownMember: (id: number) => boolean;
  /** Hands the messages to the node's transport (Http2RaftTransport.deliver). */
  deliver: (messages: RaftMessage[]) => void;
  /** Takes one chunk of a large snapshot (Http2RaftTransport.receiveSnapshotChunk). */
  receiveSnapshotChunk?: (chunk: SnapshotChunk) => SnapshotChunkOutcome;
  /** The node's Raft driver, for `GET /internal/raft/status`. */
  driver?: { status(): RaftStatus };
  /** Answers a follower's fetch (`POST /internal/replica/fetch`), long-polling; aborted when the follower goes. */
  answerReplicaFetch?: (
    request: ReplicaFetchRequest,
    signal: AbortSignal,
  ) => Promise<ReplicaFetchPartitionAnswer[]>;
  /** The offsets of a topic's partitions this node leads (`GET /internal/leader-offsets?topic=`). */
  leaderOffsets?: (topic: string) => unknown[];
  /** Carries out a controller command (`POST /internal/controller/commands`); NOT_CONTROLLER when not active. */
  executeCommand?: (command: ControllerCommand) => Promise<ControllerCommandResult>;
}

function invalid(detail: string, field?: string): SluiceError {
  return new SluiceError('INVALID_REQUEST', detail, field === undefined ? {} : { details: { field } });
}

function unpack(body: unknown, what: string): unknown {
  try {
    return unpackr.unpack(body as Buffer);
  } catch {
    throw invalid(`the body is not msgpack (${what})`);
  }
}

/** Turns a FieldError into INVALID_REQUEST naming the field; anything else passes through. */
function checked<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof FieldError) throw invalid(`${error.field} must be ${error.expected}`, error.field);
    throw error;
  }
}

/**
 * The cluster-internal Raft endpoints: `POST /internal/raft/messages` with a msgpack array of
 * messages, `POST /internal/raft/snapshot-chunks` with one chunk of a large snapshot, and
 * `GET /internal/raft/status` (the driver's status). Only peers that present the shared cluster
 * secret are heard (CLUSTER_AUTHORIZATION_FAILED otherwise). Every field of every message is
 * checked (`checkRaftMessage`) before any of it reaches `deliver`; a request from a node that is
 * not a known member, or addressed to another node, is refused as INVALID_REQUEST with
 * `details.field` `from` or `to`: the secret, not the claimed id, is what authenticates a peer,
 * so 401 keeps its one meaning.
 */
export async function internalRaftRoutes(app: FastifyInstance, options: InternalRaftOptions): Promise<void> {
  const expected = Buffer.from(options.clusterSecret);
  app.setErrorHandler((error, request, reply) => sendProblem(reply, error, request.url));
  // Internal bodies are checked field by field here, never decoded by the public parsers.
  if (app.hasContentTypeParser(MEDIA.msgpack)) app.removeContentTypeParser(MEDIA.msgpack);
  app.addContentTypeParser(MEDIA.msgpack, { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
  const checkSecret = (headers: Record<string, unknown>) => {
    const presented = Buffer.from(String(headers[CLUSTER_SECRET_HEADER] ?? ''));
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      throw new SluiceError('CLUSTER_AUTHORIZATION_FAILED', 'the cluster secret is missing or wrong');
    }
  };
  const checkAddress = (from: number, to: number, path: string) => {
    if (!options.isKnownMember(from))
      throw invalid(`node ${from} is not a known member of this cluster`, `${path}from`);
    if (to !== options.nodeId)
      throw invalid(`the message is for node ${to}, not ${options.nodeId}`, `${path}to`);
  };
  app.get(RAFT_STATUS_PATH, async (request) => {
    checkSecret(request.headers);
    if (!options.driver) throw new SluiceError('NOT_FOUND', 'this node runs no Raft driver');
    return options.driver.status();
  });
  app.post(RAFT_MESSAGES_PATH, { bodyLimit: RAFT_MESSAGES_BYTES_MAX }, async (request, reply) => {
    checkSecret(request.headers);
    const body = unpack(request.body, 'an array of Raft messages');
    if (!Array.isArray(body) || body.length > RAFT_MESSAGES_MAX) {
      throw invalid(`the body must be an array of at most ${RAFT_MESSAGES_MAX} Raft messages`);
    }
    const messages = checked(() => body.map((m, i) => checkRaftMessage(m, `${i}/`)));
    const first = messages[0];
    if (first) {
      checkAddress(first.from, first.to, '0/');
      messages.forEach((m, i) => {
        if (m.from !== first.from) throw invalid('every message of a request has one sender', `${i}/from`);
        if (m.to !== first.to) throw invalid('every message of a request has one receiver', `${i}/to`);
      });
      options.deliver(messages as RaftMessage[]);
    }
    return reply.code(204).send();
  });
  app.post(REPLICA_FETCH_PATH, { bodyLimit: RAFT_MESSAGES_BYTES_MAX }, async (request, reply) => {
    checkSecret(request.headers);
    if (!options.answerReplicaFetch) throw new SluiceError('NOT_FOUND', 'this node replicates no partitions');
    const fetch = checked(() => checkReplicaFetchRequest(unpack(request.body, 'a replica fetch')));
    const abort = new AbortController();
    const onClose = () => abort.abort();
    request.raw.once('close', onClose);
    try {
      const chunks = encodeReplicaFetchAnswer(await options.answerReplicaFetch(fetch, abort.signal));
      // The stored batches go out as the log read them: a stream of the pieces, no joined copy.
      let length = 0;
      for (const chunk of chunks) length += chunk.length;
      return reply
        .type(MEDIA.msgpack)
        .header('content-length', length)
        .send(Readable.from(chunks, { objectMode: false }));
    } finally {
      request.raw.off('close', onClose);
    }
  });
  app.get(LEADER_OFFSETS_PATH, async (request) => {
    checkSecret(request.headers);
    const topic = (request.query as { topic?: unknown }).topic;
    if (typeof topic !== 'string' || topic === '') throw invalid('topic is required', 'topic');
    if (!options.leaderOffsets) throw new SluiceError('NOT_FOUND', 'this node holds no partitions');
    return { partitions: options.leaderOffsets(topic) };
  });
  app.post(CONTROLLER_COMMANDS_PATH, { bodyLimit: CONTROLLER_COMMAND_BYTES_MAX }, async (request, reply) => {
    checkSecret(request.headers);
    if (!options.executeCommand) throw new SluiceError('NOT_CONTROLLER', 'this node is not a controller');
    const command = checked(() => checkControllerCommand(unpack(request.body, 'a controller command')));
    const result = await options.executeCommand(command);
    return reply.type(MEDIA.msgpack).send(packr.pack(result));
  });
  app.post(
    RAFT_SNAPSHOT_CHUNKS_PATH,
    { bodyLimit: SNAPSHOT_CHUNK_REQUEST_BYTES_MAX },
    async (request, reply) => {
      checkSecret(request.headers);
      if (!options.receiveSnapshotChunk)
        throw new SluiceError('NOT_FOUND', 'this node takes no snapshot chunks');
      const chunk = checked(() => checkSnapshotChunk(unpack(request.body, 'a snapshot chunk')));
      checkAddress(chunk.from, chunk.to, '');
      const outcome = options.receiveSnapshotChunk(chunk);
      if (outcome === 'outOfOrder')
        throw new SluiceError('INVALID_REQUEST', 'the chunk does not follow the bytes taken so far', {
          details: { field: 'offset', outcome },
        });
      if (outcome === 'corrupt')
        throw new SluiceError('INVALID_REQUEST', 'the assembled snapshot does not match its CRC-32C', {
          details: { field: 'crc32c', outcome },
        });
      return reply.code(204).send();
    },
  );
}
