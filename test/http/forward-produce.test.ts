import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLUSTER_SECRET_HEADER,
  FORWARDED_ANSWERS_MEDIA,
  FORWARDED_BY_HEADER,
  FORWARDED_PRODUCE_MEDIA,
  FORWARDED_PRODUCE_PATH,
  ForwardedAnswerReader,
} from '../../src/protocol/internal-api.js';
import { packr } from '../../src/protocol/msgpack.js';
import {
  type Answer,
  type FakeNode,
  FakePartition,
  h1,
  h2,
  JSON_BODY,
  json,
  produceJson,
  SECRET,
  startNode,
  TOPIC,
} from './forward-fixtures.js';
import { unpackr } from './harness.js';
import { parsePrometheusText, sampleValue } from './prometheus-text.js';

/**
 * Coalesced forwarding of produce requests (src/http/forward-produce.ts): node 1 forwards the
 * produce requests of one turn to their leader, node 2, as one internal request, and passes each
 * answer on as node 2 streams it back. Node 3 forwards each on a stream of its own (coalescing
 * off), so that the three ways to reach node 2 can be compared answer for answer.
 */

let coalescing: FakeNode;
let leader: FakeNode;
let streaming: FakeNode;
const sessions: http2.ClientHttp2Session[] = [];

/** A partition whose produce takes this long at the leader. */
const SLOW = 2;
const SLOW_MS = 400;

beforeAll(async () => {
  leader = await startNode(2, [0, SLOW]);
  leader.produceDelays.set(SLOW, SLOW_MS);
  coalescing = await startNode(1, [1]);
  streaming = await startNode(3, [1], { coalesce: false });
  for (const node of [coalescing, streaming]) {
    node.forwards.set(0, { nodeId: 2, url: leader.url });
    node.forwards.set(SLOW, { nodeId: 2, url: leader.url });
  }
});
afterAll(async () => {
  for (const session of sessions) session.close();
  for (const node of [coalescing, streaming, leader]) await node.app.close();
});

function sessionTo(node: FakeNode): http2.ClientHttp2Session {
  const session = http2.connect(node.url);
  sessions.push(session);
  return session;
}

async function coalescedCounts(node: FakeNode): Promise<{ requests: number; sent: number }> {
  const scraped = parsePrometheusText(await node.registry.render());
  return {
    requests: sampleValue(scraped, 'sluice_forward_coalesced_requests_sum') ?? 0,
    sent: sampleValue(scraped, 'sluice_forward_coalesced_requests_count') ?? 0,
  };
}

const path = (partition: number, query = '') => `/v1/topics/${TOPIC}/partitions/${partition}/records${query}`;

describe('coalesced forwarding of produce requests', () => {
  it('sends a burst to one leader as fewer requests, every record appended once and each answer its own', async () => {
    const session = sessionTo(coalescing);
    const before = await coalescedCounts(coalescing);
    const start = leader.partitions.get(0)!.end;
    const burst = 24;
    const answers = await Promise.all([
      ...Array.from({ length: burst }, (_, i) =>
        h2(session, 'POST', path(0), {
          headers: { ...JSON_BODY, 'x-request-id': `burst-h2-${i}` },
          body: produceJson([`h2-${i}-a`, `h2-${i}-b`]),
        }),
      ),
      ...Array.from({ length: 4 }, (_, i) =>
        h1(coalescing.url, 'POST', path(0), {
          headers: { ...JSON_BODY, 'x-request-id': `burst-h1-${i}` },
          body: produceJson([`h1-${i}-a`, `h1-${i}-b`]),
        }),
      ),
    ]);
    const after = await coalescedCounts(coalescing);
    expect(after.requests - before.requests).toBe(burst + 4);
    // One request carried several: the 24 HTTP/2 streams arrive in one read.
    expect(after.sent - before.sent).toBeLessThan(burst + 4);
    const offsets: number[] = [];
    answers.forEach((answer, i) => {
      expect(answer.status).toBe(200);
      expect(answer.headers['sluice-node-id']).toBe('2');
      expect(answer.headers['x-request-id']).toBe(i < burst ? `burst-h2-${i}` : `burst-h1-${i - burst}`);
      const given = json(answer).offsets as { partition: number; offset: number }[];
      expect(given.map((o) => o.partition)).toEqual([0, 0]);
      expect(given[1]!.offset).toBe(given[0]!.offset + 1);
      offsets.push(...given.map((o) => o.offset));
    });
    // Every record once, at the offsets its answer names.
    const end = leader.partitions.get(0)!.end;
    expect(end - start).toBe(2 * (burst + 4));
    expect(offsets.sort((x, y) => x - y)).toEqual(Array.from({ length: end - start }, (_, i) => start + i));
  });

  it('passes each answer on when the leader has it: a slow produce in the same request holds back no other', async () => {
    const session = sessionTo(coalescing);
    const before = await coalescedCounts(coalescing);
    const finished: string[] = [];
    const slowEnd = leader.partitions.get(SLOW)!.end;
    /** The slow partition's end when each fast answer reached the client. */
    const slowEndSeen: number[] = [];
    const tagged = (tag: string, answer: Promise<Answer>) =>
      answer.then((a) => {
        finished.push(tag);
        if (tag !== 'slow') slowEndSeen.push(leader.partitions.get(SLOW)!.end);
        return a;
      });
    const answers = await Promise.all([
      tagged('slow', h2(session, 'POST', path(SLOW), { headers: JSON_BODY, body: produceJson(['slow']) })),
      ...Array.from({ length: 5 }, (_, i) =>
        tagged(
          `fast-${i}`,
          h2(session, 'POST', path(0), { headers: JSON_BODY, body: produceJson(['fast']) }),
        ),
      ),
    ]);
    const after = await coalescedCounts(coalescing);
    expect(after.requests - before.requests).toBe(6);
    expect(after.sent - before.sent).toBeLessThan(6);
    for (const answer of answers) expect(answer.status).toBe(200);
    expect(finished.at(-1)).toBe('slow');
    // Each fast answer was passed on before the slow produce had even appended.
    expect(slowEndSeen).toEqual([slowEnd, slowEnd, slowEnd, slowEnd, slowEnd]);
    expect(leader.partitions.get(SLOW)!.end).toBe(slowEnd + 1);
    expect(finished.slice(0, 5).sort()).toEqual(['fast-0', 'fast-1', 'fast-2', 'fast-3', 'fast-4']);
  });

  // What the leader answers for each, through either forwarder and directly: refusals byte for byte.
  const VARIANTS: { name: string; query?: string; headers: Record<string, string>; body: string | Buffer }[] =
    [
      { name: 'JSON records', headers: JSON_BODY, body: produceJson(['v']) },
      {
        name: 'a msgpack answer',
        headers: { ...JSON_BODY, accept: 'application/vnd.msgpack' },
        body: produceJson(['m']),
      },
      {
        name: 'NDJSON',
        headers: { 'content-type': 'application/x-ndjson' },
        body: '{"value":"n1"}\n{"value":"n2"}\n',
      },
      { name: 'acks=0', query: '?acks=0', headers: JSON_BODY, body: produceJson(['z']) },
      { name: 'records that are not an array', headers: JSON_BODY, body: '{"records": 5}' },
      { name: 'a body that is not JSON', headers: JSON_BODY, body: '{"records": [' },
      { name: 'an acks of 7', query: '?acks=7', headers: JSON_BODY, body: produceJson(['a']) },
      { name: 'a timeoutMs in hex', query: '?timeoutMs=0x10', headers: JSON_BODY, body: produceJson(['t']) },
      {
        name: 'one producer header of three',
        headers: { ...JSON_BODY, 'sluice-producer-id': '5' },
        body: produceJson(['p']),
      },
      {
        name: 'a record naming another partition',
        headers: JSON_BODY,
        body: JSON.stringify({ records: [{ value: 'x', partition: 1 }] }),
      },
    ];

  it('answers every form as the leader answers it directly, and as a forward on a stream of its own does', async () => {
    const viaCoalescing = sessionTo(coalescing);
    const viaStreaming = sessionTo(streaming);
    const direct = sessionTo(leader);
    for (const variant of VARIANTS) {
      const send = (session: http2.ClientHttp2Session, tag: string) =>
        h2(session, 'POST', path(0, variant.query), {
          headers: { ...variant.headers, 'x-request-id': `variant-${tag}` },
          body: variant.body,
        });
      const answers = {
        coalesced: await send(viaCoalescing, 'same'),
        streamed: await send(viaStreaming, 'same'),
        direct: await send(direct, 'same'),
      };
      const shape = (answer: Answer) => {
        const type = String(answer.headers['content-type']);
        const body = type.includes('msgpack') ? unpackr.unpack(answer.body) : answer.body.toString('utf8');
        // Offsets differ from one append to the next: the refusals and the form must not.
        const normalized =
          answer.status < 300 && typeof body === 'string'
            ? JSON.parse(body, (key, value) => (key === 'offset' ? 'n' : value))
            : answer.status < 300 && typeof body === 'object'
              ? { ...body, offsets: 'n' }
              : body;
        return {
          status: answer.status,
          type,
          nodeId: answer.headers['sluice-node-id'],
          requestId: answer.headers['x-request-id'],
          body: normalized,
        };
      };
      expect(shape(answers.coalesced), variant.name).toEqual(shape(answers.direct));
      expect(shape(answers.streamed), variant.name).toEqual(shape(answers.direct));
    }
  });

  it("answers each request with the leader's refusal of the whole coalesced request (here a wrong secret)", async () => {
    const wrong = await startNode(4, [], { secret: `${SECRET}-not` });
    const wrongStreaming = await startNode(5, [], { secret: `${SECRET}-not`, coalesce: false });
    try {
      const answers: Answer[] = [];
      for (const node of [wrong, wrongStreaming]) {
        node.forwards.set(0, { nodeId: 2, url: leader.url });
        answers.push(
          await h1(node.url, 'POST', path(0), {
            headers: { ...JSON_BODY, 'x-request-id': 'wrong-secret' },
            body: produceJson(['never']),
          }),
        );
      }
      for (const answer of answers) {
        expect(answer.status).toBe(401);
        expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(json(answer).code).toBe('CLUSTER_AUTHORIZATION_FAILED');
      }
    } finally {
      await wrong.app.close();
      await wrongStreaming.app.close();
    }
  });

  it('sends each request on a stream of its own, body unchanged, to a leader that answers the coalesced path 404', async () => {
    const seen: { path: string; body: Buffer }[] = [];
    const old = http2.createServer();
    const oldSessions = new Set<http2.ServerHttp2Session>();
    old.on('session', (session) => oldSessions.add(session));
    old.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const at = String(headers[':path']);
        seen.push({ path: at, body: Buffer.concat(chunks) });
        if (at === FORWARDED_PRODUCE_PATH) {
          stream.respond({ ':status': 404, 'content-type': 'application/problem+json' });
          stream.end('{"code":"NOT_FOUND"}');
        } else {
          stream.respond({ ':status': 200, 'content-type': 'application/json', 'sluice-node-id': '9' });
          stream.end('{"offsets":[{"partition":7,"offset":41}]}');
        }
      });
    });
    await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve));
    coalescing.forwards.set(7, {
      nodeId: 9,
      url: `http://127.0.0.1:${(old.address() as net.AddressInfo).port}`,
    });
    try {
      const body = produceJson(['to an older leader']);
      const answer = await h2(sessionTo(coalescing), 'POST', path(7), { headers: JSON_BODY, body });
      expect(answer.status).toBe(200);
      expect(answer.headers['sluice-node-id']).toBe('9');
      expect(json(answer)).toEqual({ offsets: [{ partition: 7, offset: 41 }] });
      expect(seen.map((s) => s.path)).toEqual([FORWARDED_PRODUCE_PATH, path(7)]);
      expect(seen[1]!.body.toString('utf8')).toBe(body);
    } finally {
      coalescing.forwards.delete(7);
      for (const session of oldSessions) session.destroy();
      await new Promise((resolve) => old.close(resolve));
    }
  });
});

describe("the leader's coalesced-produce route", () => {
  const post = (headers: Record<string, string>, body: Buffer | string) =>
    h1(leader.url, 'POST', FORWARDED_PRODUCE_PATH, { headers, body });
  const internal = {
    'content-type': FORWARDED_PRODUCE_MEDIA,
    [CLUSTER_SECRET_HEADER]: SECRET,
    [FORWARDED_BY_HEADER]: '1',
  };
  const one = (at: string) =>
    packr.pack([[at, [['content-type', 'application/json']], Buffer.from(produceJson(['r']))]]);

  it('answers the requests it is given as frames, one per request', async () => {
    const start = leader.partitions.get(0)!.end;
    const answer = await post(
      internal,
      packr.pack([
        [path(0), [['content-type', 'application/json']], Buffer.from(produceJson(['f1']))],
        [path(0), [['content-type', 'application/json']], Buffer.from('{"records": 5}')],
      ]),
    );
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toContain(FORWARDED_ANSWERS_MEDIA);
    const frames = new ForwardedAnswerReader(2).push(answer.body);
    expect(frames.map((f) => f.index).sort()).toEqual([0, 1]);
    const byIndex = new Map(frames.map((f) => [f.index, f]));
    expect(byIndex.get(0)!.status).toBe(200);
    expect(JSON.parse(Buffer.from(byIndex.get(0)!.body).toString('utf8'))).toEqual({
      offsets: [{ partition: 0, offset: start }],
    });
    expect(byIndex.get(1)!.status).toBe(400);
    expect(leader.partitions.get(0)!.end).toBe(start + 1);
  });

  it('refuses a missing or wrong secret, a body that is not its form, and any path but a produce to one partition', async () => {
    const start = leader.partitions.get(0)!.end;
    const cases: {
      headers: Record<string, string>;
      body: Buffer | string;
      status: number;
      code: string;
      field?: string;
    }[] = [
      {
        headers: { ...internal, [CLUSTER_SECRET_HEADER]: 'wrong' },
        body: one(path(0)),
        status: 401,
        code: 'CLUSTER_AUTHORIZATION_FAILED',
      },
      {
        headers: { 'content-type': FORWARDED_PRODUCE_MEDIA, [FORWARDED_BY_HEADER]: '1' },
        body: one(path(0)),
        status: 401,
        code: 'CLUSTER_AUTHORIZATION_FAILED',
      },
      {
        headers: { ...internal, [FORWARDED_BY_HEADER]: 'me' },
        body: one(path(0)),
        status: 400,
        code: 'INVALID_REQUEST',
        field: `headers/${FORWARDED_BY_HEADER}`,
      },
      { headers: internal, body: 'not msgpack \u00c1', status: 400, code: 'INVALID_REQUEST' },
      { headers: internal, body: packr.pack([]), status: 400, code: 'INVALID_REQUEST', field: '/' },
      {
        headers: internal,
        body: one(`/v1/topics/${TOPIC}/partitions/0/records/../../../../topics`),
        status: 400,
        code: 'INVALID_REQUEST',
        field: '0/path',
      },
      {
        headers: internal,
        body: one(`/v1/topics/${TOPIC}/records`),
        status: 400,
        code: 'INVALID_REQUEST',
        field: '0/path',
      },
      {
        headers: internal,
        body: packr.pack([[path(0), [['a', 5]], Buffer.from('x')]]),
        status: 400,
        code: 'INVALID_REQUEST',
        field: '0/headers/0',
      },
      {
        headers: internal,
        body: packr.pack([[path(0), [], 'not bytes']]),
        status: 400,
        code: 'INVALID_REQUEST',
        field: '0/body',
      },
    ];
    for (const c of cases) {
      const answer = await post(c.headers, c.body);
      expect(answer.status, JSON.stringify(c.headers)).toBe(c.status);
      expect(json(answer).code).toBe(c.code);
      if (c.field) expect(json(answer).field).toBe(c.field);
    }
    expect(leader.partitions.get(0)!.end).toBe(start);
  });
});

describe('a partition this node leads', () => {
  it('is answered here, never coalesced', async () => {
    coalescing.partitions.set(1, coalescing.partitions.get(1) ?? new FakePartition());
    const before = await coalescedCounts(coalescing);
    const answer = await h2(sessionTo(coalescing), 'POST', path(1), {
      headers: JSON_BODY,
      body: produceJson(['own']),
    });
    expect(answer.status).toBe(200);
    expect(answer.headers['sluice-node-id']).toBe('1');
    expect(await coalescedCounts(coalescing)).toEqual(before);
  });
});
