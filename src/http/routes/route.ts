import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Endpoint, EndpointRequest } from '../../protocol/api.js';

/** A request to `E`, its params, query and body typed from the endpoint table's schemas. */
export type EndpointFastifyRequest<E extends Endpoint> = FastifyRequest<EndpointRequest<E>>;

/** Adds the route of one endpoint of the table: its method, path and schemas, and `handler`. */
export function addRoute<E extends Endpoint>(
  app: FastifyInstance,
  endpoint: E,
  handler: (request: EndpointFastifyRequest<E>, reply: FastifyReply) => Promise<unknown>,
): void {
  app.route<EndpointRequest<E>>({
    method: endpoint.method,
    url: endpoint.path,
    schema: {
      ...(endpoint.params ? { params: endpoint.params } : {}),
      ...(endpoint.querystring ? { querystring: endpoint.querystring } : {}),
      ...(endpoint.body ? { body: endpoint.body } : {}),
    },
    handler,
  });
}
