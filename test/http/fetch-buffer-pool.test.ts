import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeFetchResponse } from '../../src/protocol/fetch-response.js';
import { type Harness, makeHarness, packr } from './harness.js';

/**
 * The msgpack fetch reads into pooled buffers that go back to the pool when the response closes.
 * These tests read many fetches at once over real sockets, one of them held unread while others
 * are answered, and check every answer against the records produced: a buffer reused while a
 * response still referenced it would show up as another fetch's bytes in that answer.
 */
const RECORDS_PER_BATCH = 100;
const VALUE_BYTES = 1000;
const BATCHES = 90;

function value(batch: number, i: number): string {
  return `b${batch}-r${i}-`.padEnd(VALUE_BYTES, String.fromCharCode(97 + ((batch + i) % 26)));
}

async function produceAll(h: Harness): Promise<void> {
  await h.broker.admin.createTopic({ name: 'p', partitions: 1 });
  for (let batch = 0; batch < BATCHES; batch++) {
    const records = Array.from({ length: RECORDS_PER_BATCH }, (_, i) => ({
      value: Buffer.from(value(batch, i)),
    }));
    const answer = await h.app.inject({
      method: 'POST',
      url: '/v1/topics/p/partitions/0/records?acks=1',
      headers: { 'content-type': 'application/vnd.msgpack' },
      payload: packr.pack({ records }),
    });
    expect(answer.statusCode).toBe(200);
  }
}

/** Every record in a msgpack fetch answer, checked against what was produced at its offset. */
function checkAnswer(body: Buffer, from: number): number {
  const page = decodeFetchResponse(body, from);
  expect(page.records.length).toBeGreaterThan(0);
  for (const record of page.records) {
    const batch = Math.floor(record.offset / RECORDS_PER_BATCH);
    const i = record.offset % RECORDS_PER_BATCH;
    expect(Buffer.from(record.value!).toString()).toBe(value(batch, i));
  }
  return page.records.length;
}

/** Sends one HTTP/1.1 GET on a raw socket, paused: nothing is read until `read()` is called. */
function heldFetch(port: number, path: string): { read(): Promise<Buffer> } {
  const socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.write(
    `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: application/vnd.msgpack\r\nconnection: close\r\n\r\n`,
  );
  socket.pause();
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    socket.on('end', resolve);
    socket.on('error', reject);
  });
  return {
    async read() {
      socket.resume();
      await ended;
      const whole = Buffer.concat(chunks);
      const split = whole.indexOf('\r\n\r\n');
      const head = whole.subarray(0, split).toString();
      expect(head).toMatch(/^HTTP\/1.1 200/);
      const length = Number(/content-length: (\d+)/i.exec(head)![1]);
      const body = whole.subarray(split + 4);
      expect(body.length).toBe(length);
      return body;
    },
  };
}

describe('fetch through pooled read buffers', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('answers byte-identical records to concurrent fetches while one large answer is held unread', async () => {
    h = await makeHarness();
    await produceAll(h);
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (h.app.server.address() as { port: number }).port;
    // About 9 MB of batches: more than the loopback socket buffers take, so the server's write of
    // it stays pending, its buffer out of the pool, while the other fetches run.
    const held = heldFetch(port, '/v1/topics/p/partitions/0/records?offset=0&maxBytes=8388608');
    await new Promise((resolve) => setTimeout(resolve, 100));
    // The same size class as the held answer's buffer (8 MiB and more: the 16 MiB class), so that
    // a buffer given back too early would be handed to one of these and overwritten.
    const many = async (round: number) => {
      const offsets = Array.from({ length: 4 }, (_, i) => 1 + (((round * 4 + i) * 97) % 900));
      const bodies = await Promise.all(
        offsets.map(async (offset) => {
          const answer = await fetch(
            `http://127.0.0.1:${port}/v1/topics/p/partitions/0/records?offset=${offset}&maxBytes=8388608`,
            { headers: { accept: 'application/vnd.msgpack' } },
          );
          expect(answer.status).toBe(200);
          return Buffer.from(await answer.arrayBuffer());
        }),
      );
      for (const [i, body] of bodies.entries()) checkAnswer(body, offsets[i]!);
    };
    for (let round = 0; round < 4; round++) await many(round);
    const heldBody = await held.read();
    // Every record up to the byte budget, each one what was produced at its offset.
    expect(checkAnswer(heldBody, 0)).toBeGreaterThan(70 * RECORDS_PER_BATCH);
    await many(99);
  });

  it('answers the same bytes for the same fetch however often the buffers were reused', async () => {
    h = await makeHarness();
    await produceAll(h);
    const url = '/v1/topics/p/partitions/0/records?offset=550&maxBytes=300000';
    const get = () => h!.app.inject({ method: 'GET', url, headers: { accept: 'application/vnd.msgpack' } });
    const first = (await get()).rawPayload;
    checkAnswer(first, 550);
    for (let i = 0; i < 20; i++) {
      const [a, b] = await Promise.all([get(), get()]);
      expect(a.rawPayload.equals(first)).toBe(true);
      expect(b.rawPayload.equals(first)).toBe(true);
    }
  });
});
