import type { FastifyInstance } from 'fastify';
import type { MetricsRegistry } from '../../common/metrics.js';

/**
 * `GET /metrics`: the node's metrics in the Prometheus text format. Not in the endpoint table,
 * which holds the JSON and msgpack API; docs/observability.md lists every metric.
 */
export async function metricsRoutes(
  app: FastifyInstance,
  options: { registry: MetricsRegistry },
): Promise<void> {
  const { registry } = options;
  app.get('/metrics', async (_request, reply) =>
    reply.type(registry.contentType).send(await registry.render()),
  );
}
