import type { FastifyInstance } from 'fastify';
import type { AdminApi, NodeApi } from '../../broker/api.js';
import { SluiceError } from '../../common/errors.js';
import { ENDPOINTS, MEDIA } from '../../protocol/api.js';
import { sendNegotiated } from '../content.js';
import { openApiDocument } from '../openapi.js';
import { addRoute } from './route.js';

/** Health (liveness, readiness), the cluster view and the OpenAPI document. */
export async function clusterRoutes(
  app: FastifyInstance,
  options: { node: NodeApi; admin: AdminApi },
): Promise<void> {
  const { node, admin } = options;
  addRoute(app, ENDPOINTS.health, async (request, reply) =>
    sendNegotiated(request, reply, 200, { status: 'ok', nodeId: node.nodeId }),
  );
  addRoute(app, ENDPOINTS.livez, async (request, reply) =>
    sendNegotiated(request, reply, 200, { status: 'alive', nodeId: node.nodeId }),
  );
  addRoute(app, ENDPOINTS.readyz, async (request, reply) => {
    // During a shutdown the request hook answers SHUTTING_DOWN before this runs.
    if (!node.ready) {
      throw node.shuttingDown
        ? new SluiceError('SHUTTING_DOWN', 'the node is shutting down')
        : new SluiceError('LEADER_NOT_AVAILABLE', 'the node is still opening its logs');
    }
    return sendNegotiated(request, reply, 200, { status: 'ready', nodeId: node.nodeId });
  });
  addRoute(app, ENDPOINTS.cluster, async (request, reply) =>
    sendNegotiated(request, reply, 200, await admin.describeCluster()),
  );
  addRoute(app, ENDPOINTS.addVoter, async (request, reply) =>
    sendNegotiated(request, reply, 200, await admin.addVoter(request.body.nodeId)),
  );
  addRoute(app, ENDPOINTS.removeVoter, async (request, reply) =>
    sendNegotiated(request, reply, 200, await admin.removeVoter(request.params.nodeId)),
  );
  app.get('/openapi.json', async (_request, reply) =>
    reply.type(MEDIA.json).send(JSON.stringify(openApiDocument(node.version))),
  );
}
