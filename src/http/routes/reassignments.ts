import type { FastifyInstance } from 'fastify';
import type { AdminApi } from '../../broker/api.js';
import { ENDPOINTS, type ReassignRequest } from '../../protocol/api.js';
import { sendNegotiated } from '../content.js';
import { addRoute } from './route.js';

/** Partition reassignments (list, start, cancel) and broker decommission. */
export async function reassignmentRoutes(app: FastifyInstance, options: { admin: AdminApi }): Promise<void> {
  const { admin } = options;
  addRoute(app, ENDPOINTS.listReassignments, async (request, reply) =>
    sendNegotiated(request, reply, 200, await admin.listReassignments()),
  );
  addRoute(app, ENDPOINTS.reassignPartitions, async (request, reply) =>
    sendNegotiated(
      request,
      reply,
      200,
      // The route's schema checked the body: a list of {topic, partition, replicas}.
      await admin.reassignPartitions(request.body as ReassignRequest),
    ),
  );
  addRoute(app, ENDPOINTS.decommissionBroker, async (request, reply) =>
    sendNegotiated(request, reply, 200, await admin.decommissionBroker(request.params.brokerId)),
  );
}
