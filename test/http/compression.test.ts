import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LIMITS } from '../../src/common/limits.js';
import { partitionForKey } from '../../src/common/murmur2.js';
import { PromMetricsRegistry } from '../../src/node/metrics.js';
import { batchCodecAt, decodeRecords, encodeBatch, readBatchHeader } from '../../src/protocol/batch.js';
import { type CompressedCodecName, codecId, codecs } from '../../src/protocol/compression.js';
import { decodeFetchResponse } from '../../src/protocol/fetch-response.js';
import { reseal } from '../protocol/batch-helpers.js';
import { type Harness, makeHarness, unpackr } from './harness.js';
import { parsePrometheusText, sampleValue } from './prometheus-text.js';

/**
 * Batch compression through the HTTP API: a compressed batch is stored byte for byte as sent
 * (after the leader's offsets), served as stored to a msgpack client that names its codec,
 * decompressed for one that does not (a stock msgpack decoder reads it) and for JSON; the topic's
 * compression.type recompresses; damaged payloads and bombs are refused and the log is unchanged;
 * HTTP Content-Encoding bodies and Accept-Encoding answers.
 */
const CODECS: CompressedCodecName[] = ['gzip', 'snappy', 'lz4', 'zstd'];
const SEED = Number(process.env.SEED ?? 1414);
const BATCHES = { 'content-type': 'application/vnd.sluice.batches' };
let h: Harness;

beforeAll(async () => {
  await codecs.load();
});
afterEach(async () => {
  await h?.close();
});

const records = (n: number, tag = 'r') =>
  Array.from({ length: n }, (_, i) => ({
    key: Buffer.from(`key-${i % 5}`),
    value: Buffer.from(`{"level":"INFO","msg":"${tag} ${i} request handled","path":"/api/v1/${i}"}`),
    headers: [['trace', Buffer.from(`t${i}`)]] as [string, Buffer][],
    timestamp: 1_700_000_000_000 + i,
  }));

const postBatches = (topic: string, body: Buffer) =>
  h.app.inject({
    method: 'POST',
    url: `/v1/topics/${topic}/partitions/0/records`,
    headers: BATCHES,
    payload: body,
  });

const fetchMsgpack = (topic: string, offset: number, accept?: string) =>
  h.app.inject({
    method: 'GET',
    url: `/v1/topics/${topic}/partitions/0/records?offset=${offset}`,
    headers: {
      accept: 'application/vnd.msgpack',
      ...(accept !== undefined ? { 'sluice-accept-compression': accept } : {}),
    },
  });

/** The stored batches of a msgpack fetch answer, as bytes (a stock decoder's view of the answer). */
function batchesOf(body: Buffer): Buffer[] {
  const raw = new (unpackr.constructor as new (o: object) => typeof unpackr)({
    useRecords: false,
    mapsAsObjects: true,
    int64AsType: 'number',
  });
  const decoded = raw.unpack(body) as { batches: unknown[] };
  // Re-find each batch's bytes: they are msgpack values back to back after the answer's head.
  const out: Buffer[] = [];
  let pos = 1 + 8 + 5;
  for (let i = 0; i < decoded.batches.length; i++) {
    const size = 15 + body.readUInt32BE(pos + 11);
    out.push(body.subarray(pos, pos + size));
    pos += size;
  }
  return out;
}

async function logEnd(topic: string): Promise<{ end: number; bytes: number }> {
  const d = await h.broker.admin.describeTopic(topic);
  const p = d.partitions[0]!;
  const log = h.logs.list().find((l) => l.topic === topic)!.log;
  return { end: p.logEndOffset, bytes: log.sizeBytes };
}

describe('compressed batches through produce and fetch', () => {
  it.each(CODECS)(
    '%s: stored as sent, served as stored to a client naming it, decompressed for others and JSON',
    async (name) => {
      h = await makeHarness();
      await h.broker.admin.createTopic({ name: 't', partitions: 1 });
      const sent = encodeBatch(records(50, name), { compression: { codec: name } });
      const produced = await postBatches('t', sent);
      expect(produced.statusCode, produced.body).toBe(200);
      // With the codec accepted: the stored bytes as sent, from the CRC on (the leader wrote only
      // the base offset and its epoch, which the CRC does not cover).
      const asStored = await fetchMsgpack('t', 0, `${name},lz4`);
      const [stored] = batchesOf(asStored.rawPayload);
      expect(stored!.subarray(21).equals(sent.subarray(21))).toBe(true);
      expect(batchCodecAt(stored!)).toBe(codecId(name));
      // A client that names no codec gets an uncompressed batch with the same records and offsets.
      const plainAnswer = await fetchMsgpack('t', 0);
      const [plain] = batchesOf(plainAnswer.rawPayload);
      expect(batchCodecAt(plain!)).toBe(0);
      expect(decodeRecords(plain!)).toEqual(decodeRecords(stored!));
      expect(decodeFetchResponse(plainAnswer.rawPayload, 0).records).toHaveLength(50);
      // A stock msgpack decoder reads the uncompressed answer: element 13 is the records array.
      const stock = unpackr.unpack(plainAnswer.rawPayload) as { batches: unknown[][] };
      expect((stock.batches[0]![13] as unknown[]).length).toBe(50);
      // JSON decodes the stored batch.
      const json = await h.app.inject({ method: 'GET', url: '/v1/topics/t/partitions/0/records?offset=0' });
      const body = JSON.parse(json.body) as { records: { value: string; key: string; offset: number }[] };
      expect(body.records.map((r) => r.value)).toEqual(records(50, name).map((r) => r.value.toString()));
      expect(body.records[49]!.offset).toBe(49);
    },
  );

  it('decompresses for a plain client only up to maxBytes after the first batch, and says where to go on', async () => {
    h = await makeHarness();
    await h.broker.admin.createTopic({ name: 'm', partitions: 1 });
    for (let i = 0; i < 4; i++)
      expect(
        (await postBatches('m', encodeBatch(records(200, `b${i}`), { compression: { codec: 'zstd' } })))
          .statusCode,
      ).toBe(200);
    const plainSize = encodeBatch(records(200, 'b0')).length;
    const answer = await h.app.inject({
      method: 'GET',
      url: `/v1/topics/m/partitions/0/records?offset=0&maxBytes=${plainSize + 10}`,
      headers: { accept: 'application/vnd.msgpack' },
    });
    const page = decodeFetchResponse(answer.rawPayload, 0);
    expect(page.records).toHaveLength(200);
    expect(page.nextOffset).toBe(200);
  });

  it("compression.type recompresses to the topic's codec; producer keeps each batch's own", async () => {
    const metrics = new PromMetricsRegistry();
    h = await makeHarness({}, {}, { metrics });
    await h.broker.admin.createTopic({ name: 'z', partitions: 1, configs: { 'compression.type': 'zstd' } });
    await h.broker.admin.createTopic({
      name: 'u',
      partitions: 1,
      configs: { 'compression.type': 'uncompressed' },
    });
    await h.broker.admin.createTopic({ name: 'p', partitions: 1 });
    const gzip = encodeBatch(records(30), { compression: { codec: 'gzip' } });
    for (const topic of ['z', 'u', 'p']) expect((await postBatches(topic, gzip)).statusCode).toBe(200);
    const json = await h.app.inject({
      method: 'POST',
      url: '/v1/topics/z/records',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ records: [{ value: 'json record' }] }),
    });
    expect(json.statusCode, json.body).toBe(200);
    const codecsOf = async (topic: string) =>
      batchesOf((await fetchMsgpack(topic, 0, 'gzip,snappy,lz4,zstd')).rawPayload).map((b) =>
        batchCodecAt(b),
      );
    expect(await codecsOf('z')).toEqual([4, 4]);
    expect(await codecsOf('u')).toEqual([0]);
    expect(await codecsOf('p')).toEqual([1]);
    const z = decodeFetchResponse((await fetchMsgpack('z', 0, 'zstd')).rawPayload, 0).records;
    expect(z.map((r) => r.value?.toString())).toEqual([
      ...records(30).map((r) => r.value.toString()),
      'json record',
    ]);
    const scraped = parsePrometheusText((await h.app.inject({ method: 'GET', url: '/metrics' })).body);
    expect(sampleValue(scraped, 'sluice_batches_compressed_total', { codec: 'zstd' })).toBe(2);
    expect(sampleValue(scraped, 'sluice_batches_compressed_total', { codec: 'gzip' })).toBe(1);
    expect(sampleValue(scraped, 'sluice_recompression_in_bytes_total', { codec: 'zstd' })).toBe(gzip.length);
    expect(
      sampleValue(scraped, 'sluice_fetch_decompressed_batches_total', { codec: 'zstd' }),
    ).toBeUndefined();
    const bad = await h.broker.admin
      .createTopic({ name: 'bad', configs: { 'compression.type': 'brotli' } })
      .catch((e) => e);
    expect(bad.code).toBe('INVALID_CONFIG');
  });
});

describe('damaged compressed batches and bombs are refused, the log unchanged', () => {
  it.each(CODECS)('%s', async (name) => {
    h = await makeHarness();
    await h.broker.admin.createTopic({ name: 'f', partitions: 1 });
    expect(
      (await postBatches('f', encodeBatch(records(3), { compression: { codec: name } }))).statusCode,
    ).toBe(200);
    const before = await logEnd('f');
    const base = encodeBatch(records(40), { compression: { codec: name } });
    // A bomb: a valid one-record header over a payload that decompresses past the limit.
    const bombPayload = codecs
      .get(codecId(name))
      .compress(Buffer.alloc(LIMITS.uncompressedBatchBytesMax + 1));
    const bomb = Buffer.concat([base.subarray(0, 79), bombPayload]);
    bomb.writeUInt32BE(bombPayload.length, 75);
    const answer = await postBatches('f', reseal(bomb));
    expect(answer.statusCode).toBe(413);
    expect(JSON.parse(answer.body).code).toBe('DECOMPRESSED_TOO_LARGE');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }),
        async (flips) => {
          const payload = Buffer.from(base.subarray(79));
          for (const [at, x] of flips) payload[at % payload.length]! ^= x;
          const damaged = Buffer.concat([base.subarray(0, 79), payload]);
          const response = await postBatches('f', reseal(damaged));
          if (response.statusCode === 200) {
            // Damage that leaves valid records (snappy and lz4 carry no checksum of their own) is a
            // different valid batch: appended whole, never in part.
            const now = await logEnd('f');
            expect(now.end - before.end).toBe(40);
            before.end = now.end;
            before.bytes = now.bytes;
            return;
          }
          expect(response.statusCode, response.body).toBeGreaterThanOrEqual(400);
          expect([
            'CORRUPT_MESSAGE',
            'INVALID_RECORD',
            'INVALID_TIMESTAMP',
            'DECOMPRESSED_TOO_LARGE',
          ]).toContain(JSON.parse(response.body).code);
          expect(await logEnd('f')).toEqual(before);
        },
      ),
      { seed: SEED, numRuns: 40 },
    );
    expect(await logEnd('f')).toEqual(before);
  });
});

describe('HTTP content codings', () => {
  const produceJson = (payload: Buffer, encoding: string) =>
    h.app.inject({
      method: 'POST',
      url: '/v1/topics/e/records',
      headers: { 'content-type': 'application/json', 'content-encoding': encoding },
      payload,
    });
  const body = Buffer.from(JSON.stringify({ records: [{ key: 'k', value: 'compressed body' }] }));

  it('reads gzip, br and zstd request bodies, refuses other codings, damaged bodies and bombs', async () => {
    h = await makeHarness();
    await h.broker.admin.createTopic({ name: 'e', partitions: 1 });
    const encoders: Record<string, (b: Buffer) => Buffer> = {
      gzip: (b) => zlib.gzipSync(b),
      br: (b) => zlib.brotliCompressSync(b),
      zstd: (b) => codecs.get(codecId('zstd')).compress(b),
    };
    for (const [encoding, encode] of Object.entries(encoders)) {
      const answer = await produceJson(encode(body), encoding);
      expect(answer.statusCode, `${encoding}: ${answer.body}`).toBe(200);
    }
    expect((await logEnd('e')).end).toBe(3);
    const unknown = await produceJson(body, 'compress');
    expect(unknown.statusCode).toBe(415);
    expect(JSON.parse(unknown.body).code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const damaged = await produceJson(Buffer.from('not gzip at all'), 'gzip');
    expect(damaged.statusCode).toBe(400);
    for (const [encoding, encode] of Object.entries(encoders)) {
      const bomb = encode(Buffer.alloc(LIMITS.requestBodyBytesMax + 1, 0x20));
      const answer = await produceJson(bomb, encoding);
      expect(answer.statusCode, encoding).toBe(413);
      expect(JSON.parse(answer.body).code, encoding).toBe('DECOMPRESSED_TOO_LARGE');
    }
    expect((await logEnd('e')).end).toBe(3);
  });

  it('compresses JSON answers per Accept-Encoding (curl --compressed), not msgpack ones', async () => {
    h = await makeHarness();
    await h.broker.admin.createTopic({ name: 'e', partitions: 1 });
    await postBatches('e', encodeBatch(records(40)));
    const url = '/v1/topics/e/partitions/0/records?offset=0';
    const plain = await h.app.inject({ method: 'GET', url });
    const decoders: Record<string, (b: Buffer) => Buffer> = {
      gzip: (b) => zlib.gunzipSync(b),
      br: (b) => zlib.brotliDecompressSync(b),
      zstd: (b) => codecs.get(codecId('zstd')).decompress(b, 1 << 24),
    };
    for (const [accept, expected] of [
      ['gzip', 'gzip'],
      ['br', 'br'],
      ['deflate, gzip, br, zstd', 'zstd'],
      ['gzip;q=0, br', 'br'],
    ] as const) {
      const answer = await h.app.inject({ method: 'GET', url, headers: { 'accept-encoding': accept } });
      expect(answer.headers['content-encoding'], accept).toBe(expected);
      expect(decoders[expected]!(answer.rawPayload).toString()).toBe(plain.body);
    }
    expect(plain.headers['content-encoding']).toBeUndefined();
    const msgpack = await h.app.inject({
      method: 'GET',
      url,
      headers: { 'accept-encoding': 'gzip', accept: 'application/vnd.msgpack' },
    });
    expect(msgpack.headers['content-encoding']).toBeUndefined();
    expect(decodeFetchResponse(msgpack.rawPayload, 0).records).toHaveLength(40);
  });
});

describe('random payloads', () => {
  it('random bytes in every codec round-trip through produce and msgpack fetch', async () => {
    h = await makeHarness();
    await h.broker.admin.createTopic({ name: 'r', partitions: 1 });
    const values = [randomBytes(3000), Buffer.alloc(0), randomBytes(70_000)];
    let offset = 0;
    for (const name of CODECS) {
      const sent = encodeBatch(
        values.map((value) => ({ value, timestamp: 5 })),
        { compression: { codec: name } },
      );
      expect((await postBatches('r', sent)).statusCode).toBe(200);
      const page = decodeFetchResponse((await fetchMsgpack('r', offset, name)).rawPayload, offset);
      expect(
        page.records.slice(0, 3).map((r) => Buffer.compare(r.value!, values[page.records.indexOf(r)]!)),
      ).toEqual([0, 0, 0]);
      expect(
        readBatchHeader(batchesOf((await fetchMsgpack('r', offset, name)).rawPayload)[0]!).baseOffset,
      ).toBe(offset);
      offset += 3;
    }
  });
});

describe('pre-built batches on the topic route, partitioned by key', () => {
  it.each(CODECS)(
    '%s: stored as sent when every key goes to one partition, else split in the same codec',
    async (name) => {
      h = await makeHarness();
      await h.broker.admin.createTopic({ name: 'k', partitions: 4 });
      const post = (body: Buffer) =>
        h.app.inject({ method: 'POST', url: '/v1/topics/k/records', headers: BATCHES, payload: body });
      const oneKey = encodeBatch(
        Array.from({ length: 10 }, (_, i) => ({
          key: Buffer.from('same'),
          value: Buffer.from(`v${i}`),
          timestamp: 9,
        })),
        { compression: { codec: name } },
      );
      const answer = await post(oneKey);
      expect(answer.statusCode, answer.body).toBe(200);
      const offsets = JSON.parse(answer.body).offsets as { partition: number; offset: number }[];
      const partition = partitionForKey(Buffer.from('same'), 4);
      expect(offsets).toEqual(Array.from({ length: 10 }, (_, i) => ({ partition, offset: i })));
      const stored = batchesOf(
        (
          await h.app.inject({
            method: 'GET',
            url: `/v1/topics/k/partitions/${partition}/records?offset=0`,
            headers: { accept: 'application/vnd.msgpack', 'sluice-accept-compression': name },
          })
        ).rawPayload,
      );
      expect(stored).toHaveLength(1);
      expect(stored[0]!.subarray(21).equals(oneKey.subarray(21))).toBe(true);
      // Many keys: each record where murmur2 puts it, each partition's share in the same codec.
      const many = encodeBatch(
        Array.from({ length: 40 }, (_, i) => ({
          key: Buffer.from(`key-${i}`),
          value: Buffer.from(`m${i}`),
          timestamp: 9,
        })),
        { compression: { codec: name } },
      );
      const spread = JSON.parse((await post(many)).body).offsets as { partition: number; offset: number }[];
      for (let i = 0; i < 40; i++)
        expect(spread[i]!.partition).toBe(partitionForKey(Buffer.from(`key-${i}`), 4));
      for (let p = 0; p < 4; p++) {
        const first = spread.find((s) => s.partition === p);
        if (!first) continue;
        const fetched = await h.app.inject({
          method: 'GET',
          url: `/v1/topics/k/partitions/${p}/records?offset=${first.offset}`,
          headers: { accept: 'application/vnd.msgpack', 'sluice-accept-compression': name },
        });
        const [batch] = batchesOf(fetched.rawPayload);
        expect(batchCodecAt(batch!)).toBe(codecId(name));
        const values = decodeRecords(batch!).map((r) => r.value!.toString());
        expect(values).toEqual(spread.flatMap((s, i) => (s.partition === p ? [`m${i}`] : [])));
      }
    },
  );
});
