import * as http2 from 'node:http2';
import { Unpackr } from 'msgpackr';
import { PartitionConsumer, Producer } from '../src/client/index.js';
import { ENDPOINTS, endpointUrl, MEDIA } from '../src/protocol/api.js';
import { encodeBatch } from '../src/protocol/batch.js';

/**
 * The SDK against bare node:http2 clients doing the same work, against one broker at `bootstrap`
 * (bench/sdk-send.ts and bench/run.ts):
 *
 * - produce: `Producer.send()` of one 100-byte record at a time (acks=1, batches of 1000 records,
 *   5 in flight), against a bare http2 session posting batches of 1000 such records built before
 *   the clock starts, 5 in flight, to the same endpoint in the same stored layout;
 * - fetch: `PartitionConsumer` handing out every record (checked and decoded), against a bare
 *   http2 loop of the same fetches whose answers are unpacked by msgpackr and not decoded further.
 *
 * Each side runs `SDK_ROUNDS` times (alternating which goes first) and the median is kept.
 */
export interface SdkFigures {
  producerRecordsPerSecond: number;
  producerArraysRecordsPerSecond: number;
  bareProduceRecordsPerSecond: number;
  consumerRecordsPerSecond: number;
  bareFetchRecordsPerSecond: number;
  rows: { name: string; figure: string; ratio: string }[];
}

const RECORD_BYTES = 100;
const BATCH_RECORDS = 1000;
const IN_FLIGHT = 5;
const FETCH_MAX_BYTES = 1024 * 1024;
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function values(): Buffer[] {
  return Array.from({ length: BATCH_RECORDS }, (_, i) => {
    const value = Buffer.alloc(RECORD_BYTES, 0x61);
    value.write(String(i).padStart(12, '0'));
    return value;
  });
}

export async function createTopic(bootstrap: string, name: string): Promise<void> {
  const response = await fetch(`${bootstrap}/v1/topics`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, partitions: 1 }),
  });
  if (response.status !== 201) throw new Error(`creating ${name}: ${response.status}`);
}

function request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    const chunks: Buffer[] = [];
    let status = 0;
    stream.on('response', (h) => {
      status = Number(h[':status']);
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      const answer = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      if (status >= 400) reject(new Error(`${headers[':path']}: ${status} ${answer.toString()}`));
      else resolve(answer);
    });
    stream.on('error', reject);
    if (body) stream.end(body);
  });
}

/** Records per second of a bare http2 client posting one pre-built batch `batches` times, IN_FLIGHT at once. */
export async function bareProduce(bootstrap: string, topic: string, batches: number): Promise<number> {
  const body = encodeBatch(values().map((value) => ({ key: null, value, timestamp: Date.now() })));
  const session = http2.connect(bootstrap);
  const headers = {
    ':method': 'POST',
    ':path': endpointUrl(ENDPOINTS.producePartition, { topic, partition: 0 }, { acks: 1 }),
    'content-type': MEDIA.batches,
    accept: MEDIA.msgpack,
  };
  await request(session, headers, body);
  let sent = 0;
  const started = performance.now();
  const lane = async () => {
    while (sent < batches) {
      sent++;
      await request(session, headers, body);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  const seconds = (performance.now() - started) / 1000;
  session.close();
  return (batches * BATCH_RECORDS) / seconds;
}

/**
 * Records per second of `Producer.send()` of single records, as a program that produces as fast
 * as it can would send them: a sliding window of sends not yet answered, as many as the producer
 * keeps in flight plus the batch it is filling, each answer counted by one shared callback.
 */
export async function producerSend(bootstrap: string, topic: string, records: number): Promise<number> {
  const producer = new Producer({
    bootstrap,
    acks: 1,
    maxInFlight: IN_FLIGHT,
    // A batch is full at 1000 records: each record counts its key and value bytes plus 16.
    batchBytes: BATCH_RECORDS * (RECORD_BYTES + 16),
    bufferBytesMax: 256 * 1024 * 1024,
  });
  const made = values();
  await producer.send({ topic, partition: 0, value: made[0]! });
  const window = (IN_FLIGHT + 1) * BATCH_RECORDS;
  let answered = 0;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const onAnswer = () => {
    answered++;
    if (wake !== undefined && answered % BATCH_RECORDS === 0) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  const onFailure = (error: unknown) => {
    failure ??= error;
    onAnswer();
  };
  const started = performance.now();
  for (let sent = 0; sent < records; sent++) {
    while (sent - answered >= window) await new Promise<void>((resolve) => (wake = resolve));
    producer.send({ topic, partition: 0, value: made[sent % BATCH_RECORDS]! }).then(onAnswer, onFailure);
  }
  await producer.flush();
  const seconds = (performance.now() - started) / 1000;
  await producer.close();
  if (failure) throw failure;
  return records / seconds;
}

/** Records per second of `Producer.send()` of arrays of 1000 records, IN_FLIGHT + 1 arrays awaited at once. */
export async function producerSendArrays(bootstrap: string, topic: string, records: number): Promise<number> {
  const producer = new Producer({
    bootstrap,
    acks: 1,
    maxInFlight: IN_FLIGHT,
    batchBytes: BATCH_RECORDS * (RECORD_BYTES + 16),
    bufferBytesMax: 256 * 1024 * 1024,
  });
  const batch = values().map((value) => ({ topic, partition: 0, value }));
  await producer.send(batch);
  let sent = 0;
  const started = performance.now();
  const lane = async () => {
    while (sent < records) {
      sent += BATCH_RECORDS;
      await producer.send(batch);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT + 1 }, lane));
  const seconds = (performance.now() - started) / 1000;
  await producer.close();
  return records / seconds;
}

/** Records per second of a PartitionConsumer reading `topic` from 0 to its end. */
export async function consumerRead(bootstrap: string, topic: string): Promise<number> {
  const consumer = new PartitionConsumer({
    bootstrap,
    topic,
    partition: 0,
    stopAtEnd: true,
    maxWaitMs: 0,
    maxBytes: FETCH_MAX_BYTES,
  });
  let read = 0;
  let bytes = 0;
  const started = performance.now();
  for await (const r of consumer) {
    read++;
    bytes += r.value?.length ?? 0;
  }
  const seconds = (performance.now() - started) / 1000;
  await consumer.close();
  if (bytes === 0) throw new Error('nothing read');
  return read / seconds;
}

/** Records per second of bare http2 fetches of `topic` from 0 to its end, msgpack-unpacked only. */
export async function bareFetch(bootstrap: string, topic: string): Promise<number> {
  const session = http2.connect(bootstrap);
  let offset = 0;
  let end = Number.POSITIVE_INFINITY;
  const started = performance.now();
  while (offset < end) {
    const answer = await request(session, {
      ':method': 'GET',
      ':path': endpointUrl(
        ENDPOINTS.fetch,
        { topic, partition: 0 },
        { offset, maxWaitMs: 0, maxBytes: FETCH_MAX_BYTES },
      ),
      accept: MEDIA.msgpack,
    });
    const page = unpackr.unpack(answer) as { nextOffset: number; highWatermark: number; batches: unknown[] };
    if (page.batches.length === 0) break;
    offset = page.nextOffset;
    end = page.highWatermark;
  }
  const seconds = (performance.now() - started) / 1000;
  session.close();
  return offset / seconds;
}

export async function sdkThroughput(
  bootstrap: string,
  options: { records?: number; rounds?: number } = {},
): Promise<SdkFigures> {
  const records = options.records ?? Number(process.env.SDK_RECORDS ?? 300_000);
  const rounds = options.rounds ?? Number(process.env.SDK_ROUNDS ?? 3);
  type Side = 'producer' | 'arrays' | 'bare' | 'consumer' | 'fetch';
  const sides: Record<Side, number[]> = { producer: [], arrays: [], bare: [], consumer: [], fetch: [] };
  /** Client CPU (this process, user + system) per record in microseconds, by side. */
  const cpu: Record<Side, number[]> = { producer: [], arrays: [], bare: [], consumer: [], fetch: [] };
  const measured = async (side: Side, run: () => Promise<number>) => {
    const before = process.cpuUsage();
    const started = performance.now();
    const rate = await run();
    const used = process.cpuUsage(before);
    const seconds = (performance.now() - started) / 1000;
    sides[side].push(rate);
    cpu[side].push((used.user + used.system) / (rate * seconds));
  };
  let topics = 0;
  for (let round = 0; round < rounds; round++) {
    const producerTopic = `sdk-producer-${topics}`;
    const arraysTopic = `sdk-arrays-${topics}`;
    const bareTopic = `sdk-bare-${topics++}`;
    for (const name of [producerTopic, arraysTopic, bareTopic]) await createTopic(bootstrap, name);
    const produce = [
      () => measured('producer', () => producerSend(bootstrap, producerTopic, records)),
      () => measured('bare', () => bareProduce(bootstrap, bareTopic, records / BATCH_RECORDS)),
      () => measured('arrays', () => producerSendArrays(bootstrap, arraysTopic, records)),
    ];
    for (const step of round % 2 === 0 ? produce : produce.reverse()) await step();
    const read = [
      () => measured('consumer', () => consumerRead(bootstrap, producerTopic)),
      () => measured('fetch', () => bareFetch(bootstrap, producerTopic)),
    ];
    for (const step of round % 2 === 0 ? read : read.reverse()) await step();
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  const figures = {
    producerRecordsPerSecond: median(sides.producer),
    producerArraysRecordsPerSecond: median(sides.arrays),
    bareProduceRecordsPerSecond: median(sides.bare),
    consumerRecordsPerSecond: median(sides.consumer),
    bareFetchRecordsPerSecond: median(sides.fetch),
  };
  const f = (n: number) => Math.round(n).toLocaleString('en-US');
  const us = (side: Side) => `${median(cpu[side]).toFixed(2)} us`;
  const produceRatio = figures.producerRecordsPerSecond / figures.bareProduceRecordsPerSecond;
  const arraysRatio = figures.producerArraysRecordsPerSecond / figures.bareProduceRecordsPerSecond;
  const fetchRatio = figures.consumerRecordsPerSecond / figures.bareFetchRecordsPerSecond;
  return {
    ...figures,
    rows: [
      {
        name: `SDK Producer.send() of single 100 B records (acks=1, 1000/batch, ${IN_FLIGHT} in flight, ${f(records)} records, ${rounds} rounds)`,
        figure: `${f(figures.producerRecordsPerSecond)} rec/s, client CPU ${us('producer')}/record`,
        ratio: `${produceRatio.toFixed(2)}x a bare node:http2 client posting pre-built 1000-record batches, ${IN_FLIGHT} in flight (${f(figures.bareProduceRecordsPerSecond)} rec/s, client CPU ${us('bare')}/record); ${produceRatio >= 0.8 ? 'met' : 'NOT met'}: target >= 0.8`,
      },
      {
        name: `SDK Producer.send() of arrays of 1000 records (${IN_FLIGHT + 1} awaited at once)`,
        figure: `${f(figures.producerArraysRecordsPerSecond)} rec/s, client CPU ${us('arrays')}/record`,
        ratio: `${arraysRatio.toFixed(2)}x the bare http2 client`,
      },
      {
        name: `SDK PartitionConsumer reading and decoding every record (maxBytes ${FETCH_MAX_BYTES})`,
        figure: `${f(figures.consumerRecordsPerSecond)} rec/s, client CPU ${us('consumer')}/record`,
        ratio: `${fetchRatio.toFixed(2)}x bare node:http2 fetches unpacked by msgpackr (${f(figures.bareFetchRecordsPerSecond)} rec/s, client CPU ${us('fetch')}/record); ${fetchRatio >= 0.5 ? 'met' : 'NOT met'}: target >= 0.5`,
      },
    ],
  };
}
