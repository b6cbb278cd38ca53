import type { FastifyInstance } from 'fastify';
import type { AdminApi } from '../../broker/api.js';
import { SluiceError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { ENDPOINTS } from '../../protocol/api.js';
import { sendNegotiated } from '../content.js';
import { addRoute } from './route.js';

/**
 * `GET /v1/metadata?topics=a,b`: each partition's leader, epoch, replicas and in-sync set, and
 * every node's client endpoint, which is what a client needs to send each partition's requests to
 * its leader. Without `topics` every topic; with an empty `topics=` none (the nodes only). A name
 * no topic has is listed in `unknownTopics`, not refused, so that one lookup answers for many.
 */
export async function metadataRoutes(app: FastifyInstance, options: { admin: AdminApi }): Promise<void> {
  const { admin } = options;
  addRoute(app, ENDPOINTS.metadata, async (request, reply) =>
    sendNegotiated(request, reply, 200, await admin.metadata(topicList(request.query.topics))),
  );
}

/** The names asked for, each once, in the order given; undefined for every topic. */
function topicList(topics: string | undefined): string[] | undefined {
  if (topics === undefined) return undefined;
  const names = [...new Set(topics.split(',').filter((name) => name !== ''))];
  const long = names.find((name) => name.length > LIMITS.topicNameLengthMax);
  if (long !== undefined)
    throw new SluiceError(
      'INVALID_TOPIC_EXCEPTION',
      `a topic name is longer than ${LIMITS.topicNameLengthMax} characters`,
      { details: { field: 'querystring/topics' } },
    );
  return names;
}
