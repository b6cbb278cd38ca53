import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { RaftMessage, RaftStatus } from '../../broker/api.js';
import { SluiceError } from '../../common/errors.js';
import { MEDIA } from '../../protocol/api.js';
import {
  CLUSTER_SECRET_HEADER,
  RAFT_MESSAGE_TYPES,
  RAFT_MESSAGES_MAX,
  RAFT_MESSAGES_PATH,
  RAFT_STATUS_PATH,
} from '../../protocol/internal-api.js';
import { unpackr } from '../../protocol/msgpack.js';
import { sendProblem } from '../problem.js';

export interface InternalRaftOptions {
  clusterSecret: string;
  /** Hands the messages to the node's transport (Http2RaftTransport.deliver). */
  deliver: (messages: RaftMessage[]) => void;
  /** The node's Raft driver, for `GET /internal/raft/status`. */
  driver?: { status(): RaftStatus };
}

/**
 * The cluster-internal Raft endpoint: `POST /internal/raft/messages` with a msgpack array of
 * messages, and `GET /internal/raft/status` (the driver's status). Only peers that present the
 * shared cluster secret are heard (CLUSTER_AUTHORIZATION_FAILED otherwise).
 */
export async function internalRaftRoutes(app: FastifyInstance, options: InternalRaftOptions): Promise<void> {
  const expected = Buffer.from(options.clusterSecret);
  app.setErrorHandler((error, request, reply) => sendProblem(reply, error, request.url));
  app.addContentTypeParser(MEDIA.msgpack, { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
  const checkSecret = (headers: Record<string, unknown>) => {
    const presented = Buffer.from(String(headers[CLUSTER_SECRET_HEADER] ?? ''));
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      throw new SluiceError('CLUSTER_AUTHORIZATION_FAILED', 'the cluster secret is missing or wrong');
    }
  };
  app.get(RAFT_STATUS_PATH, async (request) => {
    checkSecret(request.headers);
    if (!options.driver) throw new SluiceError('NOT_FOUND', 'this node runs no Raft driver');
    return options.driver.status();
  });
  app.post(RAFT_MESSAGES_PATH, async (request, reply) => {
    checkSecret(request.headers);
    let messages: unknown;
    try {
      messages = unpackr.unpack(request.body as Buffer);
    } catch {
      throw new SluiceError('INVALID_REQUEST', 'the body is not a msgpack array of Raft messages');
    }
    if (!Array.isArray(messages) || messages.length > RAFT_MESSAGES_MAX) {
      throw new SluiceError(
        'INVALID_REQUEST',
        `the body must be an array of at most ${RAFT_MESSAGES_MAX} Raft messages`,
      );
    }
    const wellFormed = (m: unknown): m is RaftMessage => {
      const r = m as Record<string, unknown>;
      return (
        typeof r === 'object' &&
        r !== null &&
        typeof r.type === 'string' &&
        RAFT_MESSAGE_TYPES.has(r.type) &&
        Number.isInteger(r.from) &&
        Number.isInteger(r.to) &&
        Number.isInteger(r.term)
      );
    };
    if (!messages.every(wellFormed))
      throw new SluiceError('INVALID_REQUEST', 'a Raft message lacks type, from, to or term');
    options.deliver(messages);
    return reply.code(204).send();
  });
}
