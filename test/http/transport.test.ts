import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SluiceNode, startNode } from '../../src/node/node.js';
import { packr, unpackr } from './harness.js';

/**
 * Real sockets: one port answers HTTP/1.1 and cleartext HTTP/2 (prior knowledge), from Node's
 * clients, from curl, and from a Python client (httpx over HTTP/2 with msgpack bodies).
 */
const run = promisify(execFile);
let node: SluiceNode;
let dataDir: string;
let base: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'sluice-transport-'));
  node = await startNode({ dataDir, port: 0 });
  base = `http://127.0.0.1:${node.address.port}`;
  await node.broker.admin.createTopic({ name: 'wire', partitions: 1 });
});
afterAll(async () => {
  await node.close();
  await rm(dataDir, { recursive: true, force: true });
});

function h1(
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; version: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, headers }, (res) => {
      let data = '';
      res.on('data', (c) => {
        data += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data, version: res.httpVersion }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function h2(
  session: http2.ClientHttp2Session,
  method: string,
  path: string,
  body?: Buffer,
  contentType?: string,
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': method,
      ':path': path,
      accept: 'application/vnd.msgpack',
      ...(contentType ? { 'content-type': contentType } : {}),
    });
    const chunks: Buffer[] = [];
    let status = 0;
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
    });
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => resolve({ status, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    stream.end(body);
  });
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('one port, two protocols', () => {
  it('speaks HTTP/1.1 and HTTP/2 prior knowledge from Node clients', async () => {
    const one = await h1(
      'POST',
      '/v1/topics/wire/records',
      JSON.stringify({ records: [{ value: 'over-h1' }] }),
      { 'content-type': 'application/json' },
    );
    expect(one.version).toBe('1.1');
    expect(JSON.parse(one.body).offsets).toEqual([{ partition: 0, offset: 0 }]);
    const session = http2.connect(base);
    try {
      const produced = await h2(
        session,
        'POST',
        '/v1/topics/wire/records',
        Buffer.from(packr.pack({ records: [{ value: Buffer.from('over-h2') }] })),
        'application/vnd.msgpack',
      );
      expect(produced.status).toBe(200);
      expect(unpackr.unpack(produced.body).offsets).toEqual([{ partition: 0, offset: 1 }]);
      const fetched = await h2(session, 'GET', '/v1/topics/wire/partitions/0/records?offset=0');
      const batches = unpackr.unpack(fetched.body).batches as unknown[][];
      const values = batches.flatMap((b) =>
        (b[13] as unknown[][]).map((r) => Buffer.from(r[3] as Uint8Array).toString()),
      );
      expect(values).toEqual(['over-h1', 'over-h2']);
    } finally {
      session.close();
    }
  });

  it('works with curl over HTTP/1.1 and --http2-prior-knowledge', async () => {
    const produced = await run('curl', [
      '-sS',
      '-X',
      'POST',
      `${base}/v1/topics/wire/records`,
      '-H',
      'content-type: application/json',
      '-d',
      '{"records":[{"key":"c","value":"from-curl"}]}',
    ]);
    expect(JSON.parse(produced.stdout).offsets[0].partition).toBe(0);
    const fetched = await run('curl', [
      '-sS',
      '--http2-prior-knowledge',
      '-w',
      '\\n%{http_version}',
      `${base}/v1/topics/wire/partitions/0/records?offset=2`,
    ]);
    const [body, version] = fetched.stdout.split('\n');
    expect(version).toBe('2');
    expect(JSON.parse(body!).records[0]).toMatchObject({ key: 'c', value: 'from-curl' });
    const file = join(dataDir, 'payload.bin');
    await writeFile(file, Buffer.from([1, 2, 3, 250]));
    const raw = await run('curl', [
      '-sS',
      '--data-binary',
      `@${file}`,
      '-H',
      'content-type: application/octet-stream',
      `${base}/v1/topics/wire/partitions/0/records`,
    ]);
    expect(JSON.parse(raw.stdout).offsets).toEqual([{ partition: 0, offset: 3 }]);
  });

  it('streams new records to curl -N with follow=true and as server-sent events', async () => {
    const follower = run('curl', [
      '-sS',
      '-N',
      '--max-time',
      '2',
      `${base}/v1/topics/wire/partitions/0/records?offset=4&follow=true`,
    ]).catch((e) => e);
    const events = run('curl', [
      '-sS',
      '-N',
      '--max-time',
      '2',
      '-H',
      'accept: text/event-stream',
      '-H',
      'last-event-id: 3',
      `${base}/v1/topics/wire/partitions/0/records`,
    ]).catch((e) => e);
    await new Promise((r) => setTimeout(r, 300));
    await h1(
      'POST',
      '/v1/topics/wire/records',
      JSON.stringify({ records: [{ value: 'tail-1' }, { value: 'tail-2' }] }),
      { 'content-type': 'application/json' },
    );
    const ndjson = (await follower).stdout as string;
    expect(
      ndjson
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).value),
    ).toEqual(['tail-1', 'tail-2']);
    const sse = (await events).stdout as string;
    expect(sse).toContain('id: 4\nevent: record\n');
    expect(sse).toContain('id: 5\nevent: record\n');
  });

  it('streams msgpack fetch responses over HTTP/2 and stops waiting when the client goes away', async () => {
    await node.broker.admin.createTopic({ name: 'h2follow', partitions: 1 });
    const session = http2.connect(base);
    try {
      const stream = session.request({
        ':method': 'GET',
        ':path': '/v1/topics/h2follow/partitions/0/records?offset=0&follow=true',
        accept: 'application/vnd.msgpack',
      });
      const messages: { batches: unknown[][]; nextOffset: number }[] = [];
      let pending = Buffer.alloc(0);
      const gotTwo = new Promise<void>((resolve) => {
        stream.on('data', (chunk: Buffer) => {
          pending = Buffer.concat([pending, chunk]);
          // A follow stream is a sequence of msgpack values; decode every complete one.
          try {
            for (const value of unpackr.unpackMultiple(pending) as typeof messages) messages.push(value);
            pending = Buffer.alloc(0);
          } catch {
            return;
          }
          if (messages.length >= 2) resolve();
        });
      });
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) =>
        stream.once('response', resolve),
      );
      expect(headers['content-type']).toBe('application/vnd.msgpack');
      await node.broker.produce.records('h2follow', [{ value: Buffer.from('first') }], 1);
      await waitFor(() => messages.length >= 1);
      await node.broker.produce.records('h2follow', [{ value: Buffer.from('second') }], 1);
      await gotTwo;
      expect(messages.map((m) => m.nextOffset)).toEqual([1, 2]);
      // Each message carries the stored batch: element 13 is its records, a record's element 3 its value.
      const values = messages.map((m) => {
        const records = m.batches[0]![13] as [number, number, Uint8Array | null, Uint8Array][];
        return Buffer.from(records[0]![3]).toString();
      });
      expect(values).toEqual(['first', 'second']);
      await waitFor(() => node.broker.fetch.waiting === 1);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await waitFor(() => node.broker.fetch.waiting === 0);
    } finally {
      session.close();
    }
  });

  it('serves a Python client over HTTP/2 with msgpack bodies', async () => {
    const script = `
import httpx, msgpack, sys
base = sys.argv[1]
with httpx.Client(http1=False, http2=True) as c:
    c.post(base + "/v1/topics", content=msgpack.packb({"name": "py", "partitions": 1}), headers={"content-type": "application/vnd.msgpack"}).raise_for_status()
    r = c.post(base + "/v1/topics/py/records?acks=all", content=msgpack.packb({"records": [{"key": b"k", "value": b"from-python", "headers": {"lang": b"py"}}]}),
               headers={"content-type": "application/vnd.msgpack", "accept": "application/vnd.msgpack"})
    r.raise_for_status()
    assert r.http_version == "HTTP/2", r.http_version
    offset = msgpack.unpackb(r.content)["offsets"][0]["offset"]
    f = c.get(base + "/v1/topics/py/partitions/0/records?offset=0", headers={"accept": "application/vnd.msgpack"})
    body = msgpack.unpackb(f.content)
    batch = body["batches"][0]
    record = batch[13][0]
    print(offset, batch[0] + record[0], record[2].decode(), record[3].decode(), record[4][0][0], body["highWatermark"])
`;
    const file = join(dataDir, 'client.py');
    await writeFile(file, script);
    const { stdout } = await run('/usr/bin/python3', [file, base]);
    expect(stdout.trim()).toBe('0 0 k from-python lang 1');
  });
});
