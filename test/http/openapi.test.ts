import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import createClient from 'openapi-fetch';
import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/common/errors.js';
import { endpointErrorCodes, openApiDocument } from '../../src/http/openapi.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';
import { ENDPOINTS, type Endpoint } from '../../src/protocol/api.js';

/**
 * /openapi.json as a client generator uses it: it validates against the OpenAPI 3.1 schema, the
 * produce routes describe every body and answer (202 of acks=0, problem+json by status), schemas
 * are named components, and a client generated with openapi-typescript typechecks a topic create,
 * a produce and a fetch (and refuses a mistyped one), then runs them against a node.
 */
const ROOT = join(import.meta.dirname, '..', '..');
type Doc = {
  // biome-ignore lint/suspicious/noExplicitAny: the document is walked by its paths, as JSON
  paths: Record<string, Record<string, any>>;
  components: { schemas: Record<string, unknown> };
};
const doc = openApiDocument('0.1.0') as unknown as Doc;

let dir: string;
let node: SluiceNode;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-openapi-'));
  node = await startNode({ dataDir: join(dir, 'data'), port: 0, logLevel: 'silent' });
});
afterAll(async () => {
  await node.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the OpenAPI document', () => {
  it('validates against the OpenAPI 3.1 schema (and the validator refuses a broken one)', async () => {
    const result = await new Validator().validate(structuredClone(doc) as never);
    expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
    expect(result.valid).toBe(true);
    const broken = structuredClone(doc);
    broken.paths['/v1/topics']!.post.responses = 'none';
    expect((await new Validator().validate(broken as never)).valid).toBe(false);
  });

  it('is the one the node serves', async () => {
    const served = await fetch(`http://127.0.0.1:${node.address.port}/openapi.json`);
    const body = (await served.json()) as Doc;
    expect(Object.keys(body.paths)).toEqual(Object.keys(doc.paths));
    expect(Object.keys(body.components.schemas)).toEqual(Object.keys(doc.components.schemas));
  });

  it('describes every produce body and answer: the media types, the 202 of acks=0, each problem status', () => {
    for (const path of ['/v1/topics/{topic}/records', '/v1/topics/{topic}/partitions/{partition}/records']) {
      const post = doc.paths[path]!.post;
      expect(Object.keys(post.requestBody.content).sort()).toEqual(
        [
          'application/json',
          'application/msgpack',
          'application/octet-stream',
          'application/vnd.msgpack',
          'application/vnd.sluice.batches',
          'application/x-ndjson',
        ].sort(),
      );
      expect(post.requestBody.content['application/json'].schema).toEqual({
        $ref: '#/components/schemas/ProduceRequest',
      });
      expect(post.responses['202'].description).toMatch(/acks=0/);
      for (const status of ['400', '404', '409', '412', '413', '415', '429', '500', '503', '504'])
        expect(
          post.responses[status]?.content['application/problem+json'].schema,
          `${path} ${status}`,
        ).toEqual({
          $ref: '#/components/schemas/Problem',
        });
      expect(post.responses['413'].description).toContain('RECORD_TOO_LARGE');
      expect(post.responses['503'].description).toContain('NOT_ENOUGH_REPLICAS');
    }
  });

  it('answers every endpoint with named schemas and problem statuses that match the codes it names', () => {
    for (const endpoint of Object.values(ENDPOINTS) as Endpoint[]) {
      const path = endpoint.path.replace(/:([a-zA-Z]+)/g, '{$1}');
      const op = doc.paths[path]![endpoint.method.toLowerCase()];
      const success = op.responses[String(endpoint.successStatus)].content;
      const json = success['application/json'].schema;
      expect(json.$ref, endpoint.id).toMatch(/^#\/components\/schemas\/[A-Z]\w+$/);
      // The named schema is exactly the one the server's answers are checked against.
      expect(doc.components.schemas[json.$ref.split('/').pop()], endpoint.id).toEqual(
        endpoint.response ?? { type: 'object' },
      );
      const statuses = new Set(endpointErrorCodes(endpoint).map((code) => String(ERROR_CODES[code].status)));
      const described = Object.keys(op.responses).filter((s) => /^[45]/.test(s));
      expect(described.sort(), endpoint.id).toEqual([...statuses].sort());
    }
    expect(doc.components.schemas.TopicDescription).toEqual(ENDPOINTS.describeTopic.response);
  });
});

describe('a client generated with openapi-typescript', () => {
  const usage = `
import createClient from 'openapi-fetch';
import type { components, paths } from './sluice-api.js';

export async function run(baseUrl: string) {
  const client = createClient<paths>({ baseUrl });
  const created = await client.POST('/v1/topics', {
    body: { name: 'generated', partitions: 2, configs: { 'retention.ms': 60000 } },
  });
  const topic: components['schemas']['TopicDescription'] | undefined = created.data;
  const produced = await client.POST('/v1/topics/{topic}/records', {
    params: { path: { topic: 'generated' }, query: { acks: 'all' } },
    body: { records: [{ key: 'k', value: 'v', headers: { trace: 't' } }, { value: 'w', partition: 1 }] },
  });
  const offsets: { partition: number; offset: number }[] | undefined = produced.data?.offsets;
  const fetched = await client.GET('/v1/topics/{topic}/partitions/{partition}/records', {
    params: { path: { topic: 'generated', partition: 1 }, query: { offset: 'earliest', maxWaitMs: 0 } },
  });
  // The answer is JSON, msgpack batches or a stream by Accept: JSON has the records.
  const page = fetched.data;
  const values: (string | null)[] =
    page !== undefined && typeof page !== 'string' && 'records' in page ? page.records.map((r) => r.value) : [];
  const problem: components['schemas']['Problem'] | undefined = (
    await client.GET('/v1/topics/{topic}', { params: { path: { topic: 'missing' } } })
  ).error;
  return { partitions: topic?.partitions.length, offsets, values, problem: problem?.code };
}
`;
  const mistake = `
import createClient from 'openapi-fetch';
import type { paths } from './sluice-api.js';
const client = createClient<paths>({ baseUrl: 'http://x' });
void client.POST('/v1/topics', { body: { name: 'x', partitions: 'two' } });
void client.POST('/v1/topics/{topic}/records', { params: { path: { topic: 'x' } }, body: { records: [{ value: 1 }] } });
`;

  async function typecheck(files: Record<string, string>): Promise<string[]> {
    const out = await mkdtemp(join(dir, 'client-'));
    for (const [name, text] of Object.entries(files)) await writeFile(join(out, name), text);
    const program = ts.createProgram(
      Object.keys(files).map((name) => join(out, name)),
      {
        strict: true,
        noEmit: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
        types: [],
        skipLibCheck: true,
        baseUrl: out,
        paths: { 'openapi-fetch': [join(ROOT, 'node_modules', 'openapi-fetch')] },
      },
    );
    return ts
      .getPreEmitDiagnostics(program)
      .map(
        (d) =>
          `${d.file?.fileName.split('/').pop() ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`,
      );
  }

  let generated: string;
  beforeAll(async () => {
    generated = astToString(await openapiTS(structuredClone(doc) as never));
  });

  it('has named types for the schemas', () => {
    for (const name of ['TopicDescription', 'ProduceRequest', 'ProduceRecord', 'FetchResponse', 'Problem'])
      expect(generated).toContain(`${name}: {`);
  });

  it('typechecks a topic create, a produce and a fetch, and refuses mistyped bodies', async () => {
    expect(await typecheck({ 'sluice-api.ts': generated, 'usage.ts': usage })).toEqual([]);
    const errors = await typecheck({ 'sluice-api.ts': generated, 'mistake.ts': mistake });
    expect(errors.length, errors.join('\n')).toBeGreaterThanOrEqual(2);
    expect(errors.every((e) => e.startsWith('mistake.ts: '))).toBe(true);
  }, 60_000);

  it('runs those calls against a node and gets what the types say', async () => {
    // Untyped here: the typed calls are the ones typechecked above; this runs the same requests.
    // biome-ignore lint/suspicious/noExplicitAny: no generated types at run time
    const client = createClient<any>({ baseUrl: `http://127.0.0.1:${node.address.port}` });
    const created = await client.POST('/v1/topics', { body: { name: 'generated-run', partitions: 2 } });
    expect(created.response.status).toBe(201);
    const produced = await client.POST('/v1/topics/{topic}/records', {
      params: { path: { topic: 'generated-run' } },
      body: { records: [{ value: 'w', partition: 1 }] },
    });
    expect(produced.data).toMatchObject({ offsets: [{ partition: 1, offset: 0 }] });
    const fast = await client.POST('/v1/topics/{topic}/records', {
      params: { path: { topic: 'generated-run' }, query: { acks: '0' } },
      body: { records: [{ value: 'x', partition: 1 }] },
    });
    expect(fast.response.status).toBe(202);
    const fetched = await client.GET('/v1/topics/{topic}/partitions/{partition}/records', {
      params: { path: { topic: 'generated-run', partition: 1 }, query: { offset: 'earliest' } },
    });
    expect(fetched.data.records[0]).toMatchObject({ offset: 0, value: 'w' });
    const missing = await client.GET('/v1/topics/{topic}', { params: { path: { topic: 'missing' } } });
    expect([missing.response.status, missing.error.code]).toEqual([404, 'UNKNOWN_TOPIC_OR_PARTITION']);
  });
});
