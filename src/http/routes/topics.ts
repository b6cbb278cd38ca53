import type { FastifyInstance } from 'fastify';
import type { AdminApi } from '../../broker/api.js';
import { ENDPOINTS } from '../../protocol/api.js';
import { sendNegotiated } from '../content.js';
import { addRoute } from './route.js';

/** Topic admin: list, create, describe, delete, configs, partitions. */
export async function topicRoutes(app: FastifyInstance, options: { admin: AdminApi }): Promise<void> {
  const { admin } = options;
  addRoute(app, ENDPOINTS.listTopics, async (request, reply) =>
    sendNegotiated(request, reply, 200, { topics: admin.listTopics() }),
  );
  addRoute(app, ENDPOINTS.createTopic, async (request, reply) =>
    sendNegotiated(request, reply, 201, await admin.createTopic(request.body)),
  );
  addRoute(app, ENDPOINTS.describeTopic, async (request, reply) =>
    sendNegotiated(request, reply, 200, await admin.describeTopic(request.params.topic)),
  );
  addRoute(app, ENDPOINTS.deleteTopic, async (request, reply) =>
    sendNegotiated(request, reply, 200, await admin.deleteTopic(request.params.topic)),
  );
  addRoute(app, ENDPOINTS.alterTopicConfigs, async (request, reply) =>
    sendNegotiated(request, reply, 200, await admin.alterConfigs(request.params.topic, request.body ?? {})),
  );
  addRoute(app, ENDPOINTS.addPartitions, async (request, reply) =>
    sendNegotiated(
      request,
      reply,
      200,
      await admin.addPartitions(request.params.topic, request.body.partitions),
    ),
  );
}
