import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../common/errors.js';
import { unpackr } from '../protocol/msgpack.js';
import type { RaftStatus } from '../raft/driver.js';
import type { Message } from '../raft/types.js';
import { problemFor } from './app.js';

const SECRET_HEADER = 'sluice-cluster-secret';
const MESSAGES_MAX = 4096;
const MESSAGE_TYPES = new Set<string>([
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

export interface InternalRaftOptions {
  clusterSecret: string;
  /** Hands the messages to the node's transport (Http2RaftTransport.deliver). */
  deliver: (messages: Message[]) => void;
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
  app.setErrorHandler((error, request, reply) => {
    const problem = problemFor(error, request.url);
    reply.code(problem.status).type('application/problem+json').send(JSON.stringify(problem.body));
  });
  app.addContentTypeParser('application/vnd.msgpack', { parseAs: 'buffer' }, (_r, body, done) =>
    done(null, body),
  );
  const checkSecret = (headers: Record<string, unknown>) => {
    const presented = Buffer.from(String(headers[SECRET_HEADER] ?? ''));
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      throw new SluiceError('CLUSTER_AUTHORIZATION_FAILED', 'the cluster secret is missing or wrong');
    }
  };
  app.get('/internal/raft/status', async (request) => {
    checkSecret(request.headers);
    if (!options.driver) throw new SluiceError('NOT_FOUND', 'this node runs no Raft driver');
    return options.driver.status();
  });
  app.post('/internal/raft/messages', async (request, reply) => {
    checkSecret(request.headers);
    let messages: unknown;
    try {
      messages = unpackr.unpack(request.body as Buffer);
    } catch {
      throw new SluiceError('INVALID_REQUEST', 'the body is not a msgpack array of Raft messages');
    }
    if (!Array.isArray(messages) || messages.length > MESSAGES_MAX) {
      throw new SluiceError(
        'INVALID_REQUEST',
        `the body must be an array of at most ${MESSAGES_MAX} Raft messages`,
      );
    }
    const wellFormed = (m: unknown): m is Message => {
      const r = m as Record<string, unknown>;
      return (
        typeof r === 'object' &&
        r !== null &&
        typeof r.type === 'string' &&
        MESSAGE_TYPES.has(r.type) &&
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
