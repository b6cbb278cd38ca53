import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENDPOINTS } from '../../src/protocol/api.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { call, type Format, type Harness, makeHarness, unpackr } from './harness.js';

/**
 * Every endpoint of ENDPOINTS, in JSON and in msgpack, through the fastify app. The table at the
 * end fails if an endpoint is added without a test here.
 */
const tested = new Set<string>();
const formats: Format[] = ['json', 'msgpack'];

describe.each(formats)('API in %s', (format) => {
  let h: Harness;
  const value = (s: string) => (format === 'json' ? s : Buffer.from(s));
  const text = (v: unknown) =>
    v === null ? null : typeof v === 'string' ? v : Buffer.from(v as Uint8Array).toString();
  beforeAll(async () => {
    h = await makeHarness();
  });
  afterAll(() => h.close());

  it('liveness and readiness', async () => {
    tested.add('livez').add('readyz');
    expect(await call(h.app, format, 'GET', '/livez')).toMatchObject({
      status: 200,
      body: { status: 'alive', nodeId: 1 },
    });
    expect(await call(h.app, format, 'GET', '/readyz')).toMatchObject({
      status: 200,
      body: { status: 'ready', nodeId: 1 },
    });
  });

  it('refuses voter changes on a node alone, and a malformed node id by its schema', async () => {
    tested.add('addVoter').add('removeVoter');
    const add = await call(h.app, format, 'POST', '/v1/cluster/voters', { nodeId: 2 });
    expect(add.status).toBe(400);
    expect(add.body.code).toBe('INVALID_REQUEST');
    expect(add.body.detail).toMatch(/runs alone/);
    const remove = await call(h.app, format, 'DELETE', '/v1/cluster/voters/1');
    expect(remove.body.code).toBe('INVALID_REQUEST');
    expect((await call(h.app, format, 'POST', '/v1/cluster/voters', { nodeId: 'two' })).status).toBe(400);
    expect((await call(h.app, format, 'DELETE', '/v1/cluster/voters/x')).status).toBe(400);
  });

  it('refuses reassignments on a node without a controller, and malformed ones by their schema', async () => {
    tested.add('listReassignments').add('reassignPartitions').add('decommissionBroker');
    const list = await call(h.app, format, 'GET', '/v1/reassignments');
    expect([list.status, list.body.code]).toEqual([400, 'INVALID_REQUEST']);
    const start = await call(h.app, format, 'POST', '/v1/reassignments', {
      partitions: [{ topic: 't', partition: 0, replicas: [1] }],
    });
    expect([start.status, start.body.code]).toEqual([400, 'INVALID_REQUEST']);
    const decommission = await call(h.app, format, 'POST', '/v1/brokers/1/decommission');
    expect([decommission.status, decommission.body.code]).toEqual([400, 'INVALID_REQUEST']);
    for (const body of [
      { partitions: [] },
      { partitions: [{ topic: 't', partition: 0, replicas: 'one' }] },
      { partitions: [{ topic: 't', partition: -1, replicas: [1] }] },
      { partitions: [{ topic: 't', partition: 0 }] },
    ])
      expect((await call(h.app, format, 'POST', '/v1/reassignments', body)).status).toBe(400);
    expect((await call(h.app, format, 'POST', '/v1/brokers/x/decommission')).status).toBe(400);
  });

  it('refuses producer ids on a node without a controller (test/producers covers a real node)', async () => {
    tested.add('initProducer');
    const init = await call(h.app, format, 'POST', '/v1/producers');
    expect([init.status, init.body.code]).toEqual([400, 'INVALID_REQUEST']);
    expect(init.body.detail).toMatch(/producer ids/);
  });

  it('health, cluster and openapi', async () => {
    tested.add('health').add('cluster');
    expect((await call(h.app, format, 'GET', '/healthz')).body).toMatchObject({ status: 'ok', nodeId: 1 });
    const cluster = await call(h.app, format, 'GET', '/v1/cluster');
    expect(cluster.body).toMatchObject({ nodeId: 1, version: 'test', nodes: [{ id: 1 }] });
    expect(cluster.body.clusterId).toMatch(/^[0-9a-f-]{36}$/);
    const openapi = await h.app.inject({ url: '/openapi.json' });
    const doc = JSON.parse(openapi.body);
    expect(Object.keys(doc.paths)).toContain('/v1/topics/{topic}/partitions/{partition}/records');
    // Answers are described by the same schemas the server's answers are tested against.
    // (Named components: a schema is a $ref into components.schemas.)
    const schemaOf = (s: { $ref: string }) => doc.components.schemas[s.$ref.split('/').pop()!];
    expect(
      schemaOf(doc.paths['/v1/topics'].post.responses['201'].content['application/json'].schema),
    ).toEqual(ENDPOINTS.createTopic.response);
    expect(
      schemaOf(
        doc.paths['/v1/topics/{topic}/partitions/{partition}/records'].get.responses['200'].content[
          'application/vnd.msgpack'
        ].schema,
      ).required,
    ).toContain('batches');
  });

  it('creates, lists, describes, alters, grows and deletes topics', async () => {
    tested
      .add('createTopic')
      .add('listTopics')
      .add('describeTopic')
      .add('alterTopicConfigs')
      .add('addPartitions')
      .add('deleteTopic');
    const created = await call(h.app, format, 'POST', '/v1/topics', {
      name: 'admin',
      partitions: 2,
      configs: { 'retention.ms': 60000 },
    });
    expect(created.status).toBe(201);
    expect(created.body.partitions).toHaveLength(2);
    // Config values keep their type: a number stays a number.
    expect(created.body.configs).toEqual({ 'retention.ms': 60000 });
    expect(created.body.partitions[1]).toEqual({
      partition: 1,
      leader: 1,
      leaderEpoch: 0,
      replicas: [1],
      isr: [1],
      logStartOffset: 0,
      logEndOffset: 0,
      highWatermark: 0,
      // The leader's figures: one empty segment, nothing counted yet.
      stats: {
        segments: 1,
        sizeBytes: 0,
        recordsIn: 0,
        bytesIn: 0,
        recordsOut: 0,
        bytesOut: 0,
        producers: 0,
      },
    });
    expect((await call(h.app, format, 'GET', '/v1/topics')).body.topics).toContainEqual({
      name: 'admin',
      partitions: 2,
      replicationFactor: 1,
    });
    const altered = await call(h.app, format, 'PATCH', '/v1/topics/admin/configs', {
      'cleanup.policy': 'compact',
      'retention.ms': null,
    });
    expect(altered.status).toBe(200);
    expect(altered.body.configs).toEqual({ 'cleanup.policy': 'compact' });
    // A zero is a value, not a reset.
    const zero = await call(h.app, format, 'PATCH', '/v1/topics/admin/configs', { 'retention.bytes': 0 });
    expect(zero.body.configs).toEqual({ 'cleanup.policy': 'compact', 'retention.bytes': 0 });
    await call(h.app, format, 'PATCH', '/v1/topics/admin/configs', { 'retention.bytes': null });
    const grown = await call(h.app, format, 'POST', '/v1/topics/admin/partitions', { partitions: 3 });
    expect(grown.body.partitions).toHaveLength(3);
    expect((await call(h.app, format, 'GET', '/v1/topics/admin')).body.configs).toEqual({
      'cleanup.policy': 'compact',
    });
    expect((await call(h.app, format, 'DELETE', '/v1/topics/admin')).body).toEqual({
      name: 'admin',
      deleted: true,
    });
    expect((await call(h.app, format, 'GET', '/v1/topics/admin')).body.code).toBe(
      'UNKNOWN_TOPIC_OR_PARTITION',
    );
  });

  it('produces with explicit partition, key hashing and sticky keyless records, then fetches them in order', async () => {
    tested.add('produce').add('producePartition').add('fetch');
    await call(h.app, format, 'POST', '/v1/topics', { name: 'orders', partitions: 3 });
    const produced = await call(h.app, format, 'POST', '/v1/topics/orders/records?acks=all', {
      records: [
        {
          key: value('k1'),
          value: value('v1'),
          headers: { trace: value('t1') },
          timestamp: 1_700_000_000_000,
        },
        { value: value('explicit'), partition: 2 },
        { key: value('k1'), value: value('v2') },
        { value: value('nokey-a') },
        { value: value('nokey-b') },
      ],
    });
    expect(produced.status).toBe(200);
    const offsets = produced.body.offsets as { partition: number; offset: number }[];
    expect(offsets).toHaveLength(5);
    expect(offsets[0]!.partition).toBe(offsets[2]!.partition);
    expect(offsets[2]!.offset).toBeGreaterThan(offsets[0]!.offset);
    expect(offsets[1]!.partition).toBe(2);
    expect(offsets[3]!.partition).toBe(offsets[4]!.partition);
    const keyed = offsets[0]!.partition;
    if (format === 'json') {
      const fetched = await call(
        h.app,
        format,
        'GET',
        `/v1/topics/orders/partitions/${keyed}/records?offset=0`,
      );
      const own = fetched.body.records.filter((r: { key: string }) => r.key === 'k1');
      expect(own.map((r: { value: string }) => r.value)).toEqual(['v1', 'v2']);
      expect(own[0]).toMatchObject({ timestamp: 1_700_000_000_000, headers: { trace: 't1' } });
      expect(fetched.body.highWatermark).toBe(fetched.body.nextOffset);
    } else {
      const fetched = await call(
        h.app,
        format,
        'GET',
        `/v1/topics/orders/partitions/${keyed}/records?offset=0`,
      );
      expect(fetched.contentType).toContain('application/vnd.msgpack');
      expect(Object.keys(fetched.body)).toEqual(['batches', 'nextOffset', 'highWatermark', 'logStartOffset']);
      const batch = fetched.body.batches[0] as unknown[];
      expect(batch).toHaveLength(14);
      const records = batch[13] as unknown[][];
      expect(text(records[0]![3])).toBe('v1');
    }
    const one = await call(h.app, format, 'POST', '/v1/topics/orders/partitions/1/records', {
      records: [{ value: value('p1') }],
    });
    expect(one.body.offsets).toEqual([{ partition: 1, offset: expect.any(Number) }]);
  });

  it('answers metadata: leaders, epochs, replicas and nodes of the topics asked for, unknown names listed', async () => {
    tested.add('metadata');
    await call(h.app, format, 'POST', '/v1/topics', { name: 'meta-a', partitions: 2 });
    await call(h.app, format, 'POST', '/v1/topics', { name: 'meta-b', partitions: 1 });
    const asked = await call(h.app, format, 'GET', '/v1/metadata?topics=meta-b,nope,meta-a,meta-b');
    expect(asked.status).toBe(200);
    expect(asked.body).toMatchObject({
      controllerId: expect.toBeOneOf([1, null]),
      nodes: [{ id: 1, host: '127.0.0.1', rack: null, fenced: false }],
      unknownTopics: ['nope'],
    });
    expect(asked.body.clusterId).toMatch(/^[0-9a-f-]{36}$/);
    // In the order asked, each once.
    expect(asked.body.topics.map((t: { name: string }) => t.name)).toEqual(['meta-b', 'meta-a']);
    expect(asked.body.topics[1].partitions).toEqual(
      [0, 1].map((partition) => ({
        partition,
        leader: 1,
        leaderEpoch: 0,
        replicas: [1],
        isr: [1],
      })),
    );
    expect(asked.body.topics[1].topicId).toEqual(expect.any(String));
    const all = await call(h.app, format, 'GET', '/v1/metadata');
    expect(all.body.topics.map((t: { name: string }) => t.name)).toEqual(
      expect.arrayContaining(['meta-a', 'meta-b']),
    );
    const none = await call(h.app, format, 'GET', '/v1/metadata?topics=');
    expect(none.body).toMatchObject({ topics: [], unknownTopics: [], nodes: [{ id: 1 }] });
    const bad = await call(h.app, format, 'GET', '/v1/metadata?topics=a,,b');
    expect(bad.body).toMatchObject({ code: 'INVALID_REQUEST', field: 'querystring/topics' });
    const long = await call(h.app, format, 'GET', `/v1/metadata?topics=${'x'.repeat(250)}`);
    expect(long.body).toMatchObject({ code: 'INVALID_TOPIC_EXCEPTION', field: 'querystring/topics' });
  });

  it('answers acks=0 at once with 202', async () => {
    await call(h.app, format, 'POST', '/v1/topics', { name: 'fire', partitions: 1 });
    const response = await call(h.app, format, 'POST', '/v1/topics/fire/records?acks=0', {
      records: [{ value: value('x') }],
    });
    expect(response.status).toBe(202);
  });

  it('reports offsets: earliest, latest and by timestamp', async () => {
    tested.add('offsets');
    await call(h.app, format, 'POST', '/v1/topics', { name: 'times', partitions: 1 });
    await call(h.app, format, 'POST', '/v1/topics/times/records', {
      records: [1000, 2000, 3000].map((timestamp) => ({ value: value(`at-${timestamp}`), timestamp })),
    });
    const all = await call(h.app, format, 'GET', '/v1/topics/times/partitions/0/offsets');
    expect(all.body).toEqual({ partition: 0, earliest: 0, latest: 3, highWatermark: 3 });
    const at = await call(h.app, format, 'GET', '/v1/topics/times/partitions/0/offsets?timestamp=1500');
    expect(at.body.offset).toBe(1);
    const after = await call(h.app, format, 'GET', '/v1/topics/times/partitions/0/offsets?timestamp=9000');
    expect(after.body.offset).toBeNull();
    const latest = await call(h.app, format, 'GET', '/v1/topics/times/partitions/0/offsets?timestamp=-1');
    expect(latest.body.offset).toBe(3);
    const earliest = await call(h.app, format, 'GET', '/v1/topics/times/partitions/0/offsets?timestamp=-2');
    expect(earliest.body.offset).toBe(0);
    const bad = await call(h.app, format, 'GET', '/v1/topics/times/partitions/0/offsets?timestamp=-3');
    expect(bad.body).toMatchObject({ code: 'INVALID_REQUEST', field: 'querystring/timestamp' });
  });
  it('consumer groups: join, heartbeat, poll, commit, describe, list, reset, leave, delete', async () => {
    tested
      .add('joinGroup')
      .add('heartbeatGroup')
      .add('pollGroup')
      .add('commitOffsets')
      .add('describeGroup')
      .add('listGroups')
      .add('resetGroupOffsets')
      .add('leaveGroup')
      .add('deleteGroup');
    const group = `api-${format}`;
    const topic = `gt-${format}`;
    await call(h.app, format, 'POST', '/v1/topics', { name: topic });
    await call(h.app, format, 'POST', `/v1/topics/${topic}/records`, {
      records: [{ value: value('line1') }, { value: value('line2') }],
    });
    const join = await call(h.app, format, 'POST', `/v1/groups/${group}/members`, { topics: [topic] });
    expect(join.status).toBe(201);
    expect(join.body.assignment).toEqual([{ topic: topic, partition: 0 }]);
    const member = join.body.memberId as string;
    const beat = await call(h.app, format, 'POST', `/v1/groups/${group}/members/${member}/heartbeat`, {
      memberEpoch: join.body.memberEpoch,
    });
    expect(beat.body).toMatchObject({ memberId: member, memberEpoch: join.body.memberEpoch });
    const poll = await call(
      h.app,
      format,
      'GET',
      `/v1/groups/${group}/members/${member}/records?maxBytes=100000`,
    );
    expect(poll.status).toBe(200);
    if (format === 'json') expect(poll.body.records.map((r: { value: string }) => r.value)[0]).toBe('line1');
    else expect(poll.body.partitions[0].fetch.length).toBeGreaterThan(0);
    const commit = await call(h.app, format, 'POST', `/v1/groups/${group}/offsets`, {
      memberId: member,
      memberEpoch: join.body.memberEpoch,
      offsets: [{ topic, partition: 0, offset: 2, metadata: 'm' }],
    });
    expect(commit.body).toEqual({ group, committed: 1 });
    const described = await call(h.app, format, 'GET', `/v1/groups/${group}`);
    expect(described.body.partitions[0]).toMatchObject({ topic, committed: 2, metadata: 'm', owner: member });
    expect((await call(h.app, format, 'GET', '/v1/groups')).body.groups).toContainEqual({
      group,
      state: 'stable',
      members: 1,
      coordinator: 1,
    });
    const busy = await call(h.app, format, 'POST', `/v1/groups/${group}/offsets/reset`, {
      topic,
      to: 'earliest',
    });
    expect([busy.status, busy.body.code]).toEqual([409, 'NON_EMPTY_GROUP']);
    expect((await call(h.app, format, 'DELETE', `/v1/groups/${group}/members/${member}`)).body).toEqual({
      group,
      memberId: member,
      left: true,
    });
    const reset = await call(h.app, format, 'POST', `/v1/groups/${group}/offsets/reset`, {
      topic,
      to: 'earliest',
    });
    expect(reset.body.offsets).toEqual([{ topic, partition: 0, offset: 0 }]);
    expect((await call(h.app, format, 'DELETE', `/v1/groups/${group}`)).body).toEqual({
      group,
      deleted: true,
    });
    expect((await call(h.app, format, 'GET', `/v1/groups/${group}`)).body.code).toBe('GROUP_ID_NOT_FOUND');
  });
});

describe('API forms beyond JSON and msgpack', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness();
    await h.broker.admin.createTopic({ name: 'forms', partitions: 1 });
  });
  afterAll(() => h.close());

  it('takes NDJSON and raw bodies, and pre-built batches without decoding them', async () => {
    const ndjson = await h.app.inject({
      method: 'POST',
      url: '/v1/topics/forms/records',
      headers: { 'content-type': 'application/x-ndjson' },
      payload: '{"value":"line1"}\n{"key":"k","value":"line2"}\n',
    });
    expect(JSON.parse(ndjson.body).offsets).toEqual([
      { partition: 0, offset: 0 },
      { partition: 0, offset: 1 },
    ]);
    const raw = await h.app.inject({
      method: 'POST',
      url: '/v1/topics/forms/partitions/0/records',
      headers: {
        'content-type': 'application/octet-stream',
        'sluice-key': 'file',
        'sluice-header-origin': 'curl',
      },
      payload: Buffer.from([0xff, 0x00, 0x01]),
    });
    expect(JSON.parse(raw.body).offsets).toEqual([{ partition: 0, offset: 2 }]);
    const batches = Buffer.concat([
      encodeBatch([
        { value: Buffer.from('b1'), timestamp: 5 },
        { value: Buffer.from('b2'), timestamp: 6 },
      ]),
      encodeBatch([{ value: Buffer.from('b3'), timestamp: 7 }]),
    ]);
    const fast = await h.app.inject({
      method: 'POST',
      url: '/v1/topics/forms/partitions/0/records',
      headers: { 'content-type': 'application/vnd.sluice.batches' },
      payload: batches,
    });
    expect(JSON.parse(fast.body)).toEqual({ partition: 0, baseOffset: 3, lastOffset: 5, batchCount: 2 });
    const fetched = await h.app.inject({ url: '/v1/topics/forms/partitions/0/records?offset=0' });
    const records = JSON.parse(fetched.body).records;
    expect(records.map((r: { value: string }) => r.value)).toEqual([
      'line1',
      'line2',
      '/wAB',
      'b1',
      'b2',
      'b3',
    ]);
    expect(records[2]).toMatchObject({ key: 'file', valueEncoding: 'base64', headers: { origin: 'curl' } });
    const base64 = await h.app.inject({
      url: '/v1/topics/forms/partitions/0/records?offset=0&valueEncoding=base64',
    });
    expect(JSON.parse(base64.body).records[0].value).toBe(Buffer.from('line1').toString('base64'));
    const lines = await h.app.inject({
      url: '/v1/topics/forms/partitions/0/records?offset=4',
      headers: { accept: 'application/x-ndjson' },
    });
    expect(
      lines.body
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).value),
    ).toEqual(['b2', 'b3']);
  });

  it('carries stored batches byte for byte in a msgpack fetch', async () => {
    const response = await h.app.inject({
      url: '/v1/topics/forms/partitions/0/records?offset=3',
      headers: { accept: 'application/msgpack' },
    });
    const stored = (await h.logs.get('forms', 0)!.read(3, { maxBytes: 1 << 20 })).data;
    expect(response.rawPayload.includes(stored)).toBe(true);
    const decoded = unpackr.unpack(response.rawPayload);
    expect(decoded.batches).toHaveLength(2);
    expect(decoded.nextOffset).toBe(6);
  });

  it('long-polls until a record arrives', async () => {
    const waiting = h.app.inject({ url: '/v1/topics/forms/partitions/0/records?offset=6&maxWaitMs=5000' });
    await new Promise((r) => setTimeout(r, 50));
    await h.broker.produce.records('forms', [{ value: Buffer.from('late'), timestamp: Date.now() }], 1);
    const body = JSON.parse((await waiting).body);
    expect(body.records.map((r: { value: string }) => r.value)).toEqual(['late']);
    const empty = JSON.parse(
      (await h.app.inject({ url: '/v1/topics/forms/partitions/0/records?offset=7&maxWaitMs=50' })).body,
    );
    expect(empty).toMatchObject({ records: [], nextOffset: 7 });
  });

  it('names the node that served it in every answer: routes, problems, unknown paths and follow streams', async () => {
    for (const url of ['/healthz', '/v1/topics/forms', '/v1/topics/nope', '/nowhere'])
      expect((await h.app.inject({ url })).headers['sluice-node-id']).toBe('1');
    const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
    const controller = new AbortController();
    const stream = await fetch(`${address}/v1/topics/forms/partitions/0/records?follow=true`, {
      signal: controller.signal,
    });
    expect(stream.headers.get('sluice-node-id')).toBe('1');
    controller.abort();
  });

  it('covers every endpoint of the table', () => {
    expect(Object.keys(ENDPOINTS).sort()).toEqual([...tested].sort());
  });
});
