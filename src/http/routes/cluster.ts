import type { FastifyInstance } from 'fastify';
import type { AdminApi, NodeApi } from '../../broker/api.js';
import { ENDPOINTS, MEDIA } from '../../protocol/api.js';
import { sendNegotiated } from '../content.js';
import { openApiDocument } from '../openapi.js';
import { addRoute } from './route.js';

/** Health, the cluster view and the OpenAPI document. */
export async function clusterRoutes(
  app: FastifyInstance,
  options: { node: NodeApi; admin: AdminApi },
): Promise<void> {
  const { node, admin } = options;
  addRoute(app, ENDPOINTS.health, async (request, reply) =>
    sendNegotiated(request, reply, 200, { status: 'ok', nodeId: node.nodeId }),
  );
  addRoute(app, ENDPOINTS.cluster, async (request, reply) =>
    sendNegotiated(request, reply, 200, admin.cluster()),
  );
  app.get('/openapi.json', async (_request, reply) =>
    reply.type(MEDIA.json).send(JSON.stringify(openApiDocument(node.version))),
  );
}
