import { ERROR_CODES } from '../common/errors.js';
import { ENDPOINTS, type Endpoint } from '../protocol/api.js';

const FETCH_BATCHES_SCHEMA = {
  type: 'object',
  required: ['batches', 'nextOffset', 'highWatermark', 'logStartOffset'],
  properties: {
    batches: {
      type: 'array',
      description: 'stored record batches, each a msgpack array as on disk',
      items: { type: 'array' },
    },
    nextOffset: { type: 'integer' },
    highWatermark: { type: 'integer' },
    logStartOffset: { type: 'integer' },
  },
};

/** An OpenAPI 3.1 document generated from the endpoint table. */
export function openApiDocument(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const endpoint of Object.values(ENDPOINTS) as Endpoint[]) {
    const path = endpoint.path.replace(/:([a-zA-Z]+)/g, '{$1}');
    const parameters: unknown[] = [];
    const params = endpoint.params as { properties?: Record<string, unknown> } | undefined;
    for (const [name, schema] of Object.entries(params?.properties ?? {}))
      parameters.push({ name, in: 'path', required: true, schema });
    const query = endpoint.querystring as { properties?: Record<string, unknown> } | undefined;
    for (const [name, schema] of Object.entries(query?.properties ?? {}))
      parameters.push({ name, in: 'query', required: false, schema });
    const content = (schema: unknown) => ({
      'application/json': { schema },
      'application/vnd.msgpack': { schema },
    });
    paths[path] ??= {};
    paths[path]![endpoint.method.toLowerCase()] = {
      operationId: endpoint.id,
      summary: endpoint.summary,
      parameters,
      ...(endpoint.body ? { requestBody: { required: true, content: content(endpoint.body) } } : {}),
      responses: {
        [String(endpoint.successStatus)]: {
          description: 'success',
          content:
            endpoint.id === 'fetch'
              ? {
                  'application/json': { schema: endpoint.response },
                  // The zero-copy form: stored batches as stored (docs/api.md, docs/storage-format.md).
                  'application/vnd.msgpack': { schema: FETCH_BATCHES_SCHEMA },
                  'application/x-ndjson': { schema: { type: 'string' } },
                  'text/event-stream': { schema: { type: 'string' } },
                }
              : content(endpoint.response ?? { type: 'object' }),
        },
        default: {
          description: 'problem details (RFC 9457)',
          content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
        },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Sluice', version },
    paths,
    components: {
      schemas: {
        Problem: {
          type: 'object',
          required: ['type', 'title', 'status', 'detail', 'code', 'retriable'],
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            detail: { type: 'string' },
            code: { type: 'string', enum: Object.keys(ERROR_CODES) },
            retriable: { type: 'boolean' },
            instance: { type: 'string' },
          },
        },
      },
    },
  };
}
