import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeFetchResponse } from '../../src/protocol/fetch-response.js';
import { type Harness, makeHarness } from './harness.js';

/**
 * A stored batch damaged on disk (one byte changed) is never served as good data on the paths
 * that decode records (JSON, NDJSON, server-sent events): the records before it are served, then
 * the read that reaches it answers a non-retriable error. The zero-copy msgpack path checks each
 * stored batch's CRC as well, and the SDK checks them again (test/client/consumer.test.ts).
 */
let h: Harness;
afterEach(async () => {
  await h.close();
});

/** Three batches of three records each at offsets 0-2, 3-5, 6-8; returns where each batch starts. */
async function threeBatches(): Promise<{ segment: string; starts: number[] }> {
  await h.broker.admin.createTopic({ name: 'damaged', partitions: 1 });
  const segment = join(h.dataDir, 'damaged-0', '00000000000000000000.log');
  const starts: number[] = [];
  for (let b = 0; b < 3; b++) {
    starts.push(statSync(segment).size);
    const records = [0, 1, 2].map((i) => ({ value: Buffer.from(`value-${b * 3 + i}`), timestamp: 1 }));
    await h.broker.produce.records('damaged', records, 1);
  }
  return { segment, starts };
}

/** Changes one byte inside the records of the batch starting at `start`. */
function damage(segment: string, start: number): void {
  const at = start + 90;
  const byte = readFileSync(segment).subarray(at, at + 1);
  const fd = openSync(segment, 'r+');
  writeSync(fd, Buffer.from([byte[0]! ^ 0x20]), 0, 1, at);
  closeSync(fd);
}

const get = (url: string, accept = 'application/json') =>
  h.app.inject({ method: 'GET', url, headers: { accept } });

describe('a damaged stored batch', () => {
  it('is not served in JSON: the good records before it are, then its read answers CORRUPT_MESSAGE', async () => {
    h = await makeHarness();
    const { segment, starts } = await threeBatches();
    damage(segment, starts[1]!);
    const first = await get('/v1/topics/damaged/partitions/0/records?offset=0');
    expect(first.statusCode).toBe(200);
    const body = JSON.parse(first.body);
    expect(body.records.map((r: { offset: number }) => r.offset)).toEqual([0, 1, 2]);
    expect(body.nextOffset).toBe(3);
    const bad = await get('/v1/topics/damaged/partitions/0/records?offset=3');
    expect(bad.headers['content-type']).toContain('application/problem+json');
    expect(JSON.parse(bad.body)).toMatchObject({ code: 'CORRUPT_MESSAGE', retriable: false });
    expect(bad.body).not.toContain(h.dataDir);
    // Past the damaged batch the log reads again.
    const after = JSON.parse((await get('/v1/topics/damaged/partitions/0/records?offset=6')).body);
    expect(after.records.map((r: { offset: number }) => r.offset)).toEqual([6, 7, 8]);
  });

  it('is not served in NDJSON, and a server-sent-events follow ends with the error after the good records', async () => {
    h = await makeHarness();
    const { segment, starts } = await threeBatches();
    damage(segment, starts[2]!);
    const ndjson = await get('/v1/topics/damaged/partitions/0/records?offset=0', 'application/x-ndjson');
    const lines = ndjson.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((r: { offset: number }) => r.offset)).toEqual([0, 1, 2, 3, 4, 5]);
    const sse = await get('/v1/topics/damaged/partitions/0/records?offset=0', 'text/event-stream');
    const ids = [...sse.body.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids).toEqual([0, 1, 2, 3, 4, 5]);
    const error = /event: error\ndata: (.*)\n/.exec(sse.body);
    expect(error).not.toBeNull();
    expect(JSON.parse(error![1]!)).toMatchObject({ code: 'CORRUPT_MESSAGE', retriable: false });
    // An NDJSON follow ends the same way, with the problem as its last line.
    const follow = await get(
      '/v1/topics/damaged/partitions/0/records?offset=0&follow=true',
      'application/x-ndjson',
    );
    const last = JSON.parse(follow.body.trim().split('\n').at(-1)!);
    expect(last.error).toMatchObject({ code: 'CORRUPT_MESSAGE', retriable: false });
  });

  it('is not served in msgpack either: the read ends before it, and one that starts at it is refused', async () => {
    h = await makeHarness();
    const { segment, starts } = await threeBatches();
    damage(segment, starts[1]!);
    const first = await get('/v1/topics/damaged/partitions/0/records?offset=0', 'application/vnd.msgpack');
    expect(first.statusCode).toBe(200);
    const page = decodeFetchResponse(first.rawPayload, 0);
    expect(page.records.map((r) => r.offset)).toEqual([0, 1, 2]);
    expect(page.nextOffset).toBe(3);
    const bad = await get('/v1/topics/damaged/partitions/0/records?offset=3', 'application/vnd.msgpack');
    expect(JSON.parse(bad.body)).toMatchObject({ code: 'CORRUPT_MESSAGE', retriable: false });
  });
});
