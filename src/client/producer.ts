import { assert } from '../common/assert.js';
import { Backoff } from '../common/backoff.js';
import { isSluiceError, SluiceError } from '../common/errors.js';
import { partitionForKey } from '../common/murmur2.js';
import { SeededRandom } from '../common/random.js';
import { type Acks, ENDPOINTS, endpointUrl, MEDIA } from '../protocol/api.js';
import { encodeBatch, type Header, type RecordInput } from '../protocol/batch.js';
import { CODEC_LEVELS, type CodecName, codecs, isCodecName } from '../protocol/compression.js';
import { Connection, decodeResponse, type TransportOptions, transportOf } from './connection.js';
import { ClusterMetadata, STALE_METADATA_CODES, type TopicRoute } from './metadata.js';

/** What a record's key and value are sent as: bytes, UTF-8 text, or null. */
export type RecordBytes = Uint8Array | string | null;

export interface ProducerOptions<K = RecordBytes, V = RecordBytes> extends TransportOptions {
  bootstrap: string;
  /**
   * Turns each record's key into bytes or text (e.g. `JSON.stringify`); a null or absent key is
   * sent as null without a call. Default: the key is bytes or text already.
   */
  keySerializer?: (key: K) => RecordBytes;
  /** The same for values; a null value (a tombstone) is sent as null without a call. */
  valueSerializer?: (value: V) => RecordBytes;
  /** 0, 1 or 'all' (default 'all'). */
  acks?: 0 | 1 | 'all';
  /** How long a partition's batch waits for more records before it is sent. */
  lingerMs?: number;
  /** A batch is sent once it holds this many bytes of keys and values. */
  batchBytes?: number;
  /** Tries after the first for a retriable error. */
  retries?: number;
  retryBackoffMs?: number;
  /**
   * Batches in flight per partition (default 5 when idempotent, else 1). An idempotent producer
   * keeps order with up to 5; without idempotence only 1 keeps order across retries.
   */
  maxInFlight?: number;
  /**
   * Idempotent delivery (the default with acks 'all'): the producer takes a producer id from the
   * cluster and numbers each partition's batches, so that a batch retried after a timeout or a
   * leader change lands once, in order. Needs acks 'all'.
   */
  idempotent?: boolean;
  /**
   * Compresses each batch with this codec (default `none`): `gzip`, `snappy`, `lz4` or `zstd`. The
   * broker validates the batch and stores it as sent; consumers decompress.
   */
  compression?: CodecName;
  /** The codec's level where it has levels (gzip 1-9, zstd 1-22); its default otherwise. */
  compressionLevel?: number;
  /** Bytes of records waiting to be sent or answered; past it, send() waits for room. */
  bufferBytesMax?: number;
  /** How long send() waits for room in the buffer before it rejects with LIMIT_EXCEEDED (0: at once). */
  maxBlockMs?: number;
  requestTimeoutMs?: number;
  /**
   * How old a topic's metadata (partition count, leaders) may get before the next send looks it up
   * again, so that added partitions and moved leaders are seen (default 30 s).
   */
  metadataMaxAgeMs?: number;
}

export interface ProducerRecord<K = RecordBytes, V = RecordBytes> {
  topic: string;
  key?: K | null;
  value: V | null;
  headers?: Record<string, Uint8Array | string | null> | [string, Uint8Array | string | null][];
  partition?: number;
  timestamp?: number;
}

export interface RecordMetadata {
  topic: string;
  partition: number;
  offset: number;
}

/**
 * Records queued for one batch, in parallel arrays rather than an object per record: the send path
 * allocates what the API hands out (one promise per record) and the record itself, nothing more.
 */
interface Batch {
  records: RecordInput[];
  /** Per record, where its answer goes: see `Answer`. */
  answers: Answer[];
  /** Per record, the other half of its `Answer`: its promise's reject, or its index in its group. */
  slots: Slot[];
  /** Bytes of the records, as counted against `batchBytes` and `bufferBytesMax`. */
  bytes: number;
}

const emptyBatch = (): Batch => ({ records: [], answers: [], slots: [], bytes: 0 });

/**
 * The records of one `send()` of an array: one promise for all of them, resolved with their
 * results in order once every one is acknowledged, or rejected with the first failure (the others
 * are still sent, as each record of the array is a send of its own).
 */
class Group {
  readonly results: RecordMetadata[];
  #left: number;
  #failed = false;

  constructor(
    count: number,
    readonly resolve: (results: RecordMetadata[]) => void,
    readonly reject: (error: unknown) => void,
  ) {
    this.results = new Array(count);
    this.#left = count;
  }

  answer(index: number, metadata: RecordMetadata): void {
    this.results[index] = metadata;
    if (--this.#left === 0 && !this.#failed) this.resolve(this.results);
  }

  fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.reject(error);
  }
}

/**
 * Where a record's answer goes: the resolve function of its own promise (a `send()` of one record,
 * with its reject in the record's `Slot`), or the `Group` of a `send()` of an array (with the
 * record's index in the `Slot`). No object is made per record for it.
 */
type Answer = ((metadata: RecordMetadata) => void) | Group;
type Slot = ((error: unknown) => void) | number;

function answerTo(answer: Answer, slot: Slot, metadata: RecordMetadata): void {
  if (typeof answer === 'function') answer(metadata);
  else answer.answer(slot as number, metadata);
}

function failTo(answer: Answer, slot: Slot, error: unknown): void {
  if (typeof answer === 'function') (slot as (error: unknown) => void)(error);
  else answer.fail(error);
}

/**
 * The executor of every record's promise: one shared function (no closure per record) that hands
 * its resolving functions over through these two variables, read right after `new Promise`.
 */
let capturedResolve: (metadata: RecordMetadata) => void = () => {};
let capturedReject: (error: unknown) => void = () => {};
function capture(resolve: (metadata: RecordMetadata) => void, reject: (error: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

interface PartitionQueue {
  batch: Batch;
  /** The batch's linger timer. */
  timer: NodeJS.Timeout | undefined;
  /**
   * Instead of the linger timer, when the record that opened the batch found the partition idle
   * (nothing queued, nothing in flight): a lone send is not held for `lingerMs`, while the sends
   * made in the same turn of the event loop still share its batch.
   */
  immediate: NodeJS.Immediate | undefined;
  /**
   * The batches sent and not yet retired, oldest first: a batch retires once it and every batch
   * before it are answered, so that the batches in flight are always consecutive ones (the broker
   * recognises a retry only among a producer's last 5 batches).
   */
  window: { answered: boolean }[];
  waiting: (() => void)[];
  /** Idempotent: the base sequences of this partition's batches sent and not yet answered. */
  unanswered: Set<number>;
  /** Batches refused for overtaking an unanswered one, woken when any batch of the partition is answered. */
  overtaken: (() => void)[];
}

/** An idempotent producer's identity; a new one (after UNKNOWN_PRODUCER_ID) numbers from 0 again. */
interface ProducerSession {
  producerId: number;
  producerEpoch: number;
  /** The next sequence number of each `topic\0partition`. */
  sequences: Map<string, number>;
}

/** Sequence numbers are int32 and wrap to 0, as the broker's do. */
const SEQUENCE_LIMIT = 2 ** 31;
/** The broker keeps the last 5 batches of each producer: more in flight could not be told apart. */
const IDEMPOTENT_IN_FLIGHT_MAX = 5;

const toBytes = (v: Uint8Array | string | null | undefined): Uint8Array | null =>
  v === null || v === undefined ? null : typeof v === 'string' ? Buffer.from(v) : v;

/** The producer's `compression` and `compressionLevel`, checked. */
function producerCompression(
  codec: string | undefined,
  level: number | undefined,
): { codec: CodecName; level?: number } {
  const name = codec ?? 'none';
  if (!isCodecName(name))
    throw new SluiceError(
      'INVALID_REQUEST',
      `compression ${JSON.stringify(codec)} is not none, gzip, snappy, lz4 or zstd`,
    );
  if (level === undefined) return { codec: name };
  const levels = CODEC_LEVELS[name];
  if (!levels || !Number.isInteger(level) || level < levels.min || level > levels.max)
    throw new SluiceError(
      'INVALID_REQUEST',
      levels
        ? `compressionLevel for ${name} is an integer from ${levels.min} to ${levels.max}`
        : `${name} has no compression levels`,
    );
  return { codec: name, level };
}

/** The partition count of a producer's route, which always asks for it. */
function partitionsOf(route: TopicRoute): number {
  assert(route.partitions !== undefined, 'a producer looks up partition counts');
  return route.partitions;
}

/**
 * Batches records per partition and sends each batch in the stored layout
 * (`application/vnd.sluice.batches`), so the broker appends it without decoding a record.
 * The partition of a record: the given one, else murmur2(key) as Kafka's default partitioner,
 * else a sticky partition that changes with each new batch. Each batch goes to its partition's
 * leader, found in the topic's metadata (`GET /v1/metadata`, asked of the bootstrap node): one
 * connection per node. An answer that says the leader moved (NOT_LEADER_OR_FOLLOWER,
 * LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION) looks the topic up again before the retry,
 * and metadata older than `metadataMaxAgeMs` is looked up again by the next send, so that
 * partitions added to a topic get their share of keys. A node without metadata (an older
 * release) gets everything, as before.
 */
export class Producer<K = RecordBytes, V = RecordBytes> {
  readonly #options: Required<
    Omit<
      ProducerOptions,
      | 'bootstrap'
      | 'compression'
      | 'compressionLevel'
      | 'headers'
      | 'tls'
      | 'keySerializer'
      | 'valueSerializer'
    >
  >;
  readonly #keySerializer: ((key: K) => RecordBytes) | undefined;
  readonly #valueSerializer: ((value: V) => RecordBytes) | undefined;
  readonly #compression: { codec: CodecName; level?: number };
  /** Idempotent: the producer id (asked for with the first batch), replaced after UNKNOWN_PRODUCER_ID. */
  #session: Promise<ProducerSession> | undefined;
  readonly #metadata: ClusterMetadata;
  /** Per topic, the queue of each partition that has had records. */
  readonly #queues = new Map<string, PartitionQueue[]>();
  readonly #sticky = new Map<string, number>();
  readonly #random = new SeededRandom(Date.now() >>> 0);
  #bufferedBytes = 0;
  /** send() calls waiting for room in the buffer, woken in order as batches are answered. */
  readonly #roomWaiters: (() => void)[] = [];
  #inFlight = new Set<Promise<void>>();
  /**
   * Sends not queued yet: waiting for their topic's metadata or for room in the buffer. flush()
   * and close() wait for them too, so that a send not awaited before close() is not lost.
   */
  readonly #placing = new Set<Promise<unknown>>();
  #closed = false;

  constructor(options: ProducerOptions<K, V>) {
    this.#keySerializer = options.keySerializer;
    this.#valueSerializer = options.valueSerializer;
    const acks = options.acks ?? 'all';
    const idempotent = options.idempotent ?? acks === 'all';
    if (idempotent && acks !== 'all')
      throw new SluiceError('INVALID_REQUEST', "an idempotent producer needs acks 'all'");
    const maxInFlight = options.maxInFlight ?? (idempotent ? IDEMPOTENT_IN_FLIGHT_MAX : 1);
    if (idempotent && maxInFlight > IDEMPOTENT_IN_FLIGHT_MAX)
      throw new SluiceError(
        'INVALID_REQUEST',
        `an idempotent producer keeps at most ${IDEMPOTENT_IN_FLIGHT_MAX} batches in flight per partition`,
      );
    this.#compression = producerCompression(options.compression, options.compressionLevel);
    this.#options = {
      acks,
      idempotent,
      lingerMs: options.lingerMs ?? 5,
      batchBytes: options.batchBytes ?? 64 * 1024,
      retries: options.retries ?? 5,
      retryBackoffMs: options.retryBackoffMs ?? 100,
      maxInFlight,
      bufferBytesMax: options.bufferBytesMax ?? 32 * 1024 * 1024,
      maxBlockMs: options.maxBlockMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      metadataMaxAgeMs: options.metadataMaxAgeMs ?? 30_000,
    };
    this.#metadata = new ClusterMetadata(
      new Connection(options.bootstrap, transportOf(options)),
      {
        maxAgeMs: this.#options.metadataMaxAgeMs,
        requestTimeoutMs: this.#options.requestTimeoutMs,
        retries: this.#options.retries,
        retryBackoffMs: this.#options.retryBackoffMs,
        describeTopics: true,
      },
      this.#random.fork(),
    );
  }

  /**
   * Resolves with the record's partition and offset once the broker has acknowledged it (per acks);
   * given an array, with one result per record in the same order. With acks=0 the offset is -1.
   */
  send(record: ProducerRecord<K, V>): Promise<RecordMetadata>;
  send(records: readonly ProducerRecord<K, V>[]): Promise<RecordMetadata[]>;
  send(
    input: ProducerRecord<K, V> | readonly ProducerRecord<K, V>[],
  ): Promise<RecordMetadata | RecordMetadata[]> {
    if (Array.isArray(input)) {
      const records = input as readonly ProducerRecord<K, V>[];
      if (records.length === 0) return Promise.resolve([]);
      return new Promise<RecordMetadata[]>((resolve, reject) => {
        const group = new Group(records.length, resolve, reject);
        for (let i = 0; i < records.length; i++) this.#enqueue(records[i]!, group, i);
      });
    }
    const promise = new Promise<RecordMetadata>(capture);
    this.#enqueue(input as ProducerRecord<K, V>, capturedResolve, capturedReject);
    return promise;
  }

  /** A record's key and value as bytes, through the serializers when there are any. */
  #serializeKey(key: K | null | undefined): Uint8Array | null {
    if (key === null || key === undefined) return null;
    return toBytes(this.#keySerializer ? this.#keySerializer(key) : (key as RecordBytes));
  }

  #serializeValue(value: V | null | undefined): Uint8Array | null {
    if (value === null || value === undefined) return null;
    return toBytes(this.#valueSerializer ? this.#valueSerializer(value) : (value as RecordBytes));
  }

  /** Serializes a record, reserves its room in the buffer, and places it; its answer or failure goes to `answer`. */
  #enqueue(record: ProducerRecord<K, V>, answer: Answer, slot: Slot): void {
    if (this.#closed) {
      failTo(answer, slot, new SluiceError('SHUTTING_DOWN', 'the producer is closed'));
      return;
    }
    let key: Uint8Array | null;
    let value: Uint8Array | null;
    try {
      key = this.#serializeKey(record.key);
      value = this.#serializeValue(record.value);
    } catch (error) {
      failTo(
        answer,
        slot,
        new SluiceError('INVALID_RECORD', `the serializer failed: ${(error as Error)?.message ?? error}`, {
          cause: error,
        }),
      );
      return;
    }
    const nowMs = Date.now();
    const input: RecordInput = { key, value, timestamp: record.timestamp ?? nowMs };
    if (record.headers) {
      const headers: Header[] = [];
      const entries = Array.isArray(record.headers) ? record.headers : Object.entries(record.headers);
      for (const [name, v] of entries) headers.push([name, toBytes(v)]);
      input.headers = headers;
    }
    const bytes = (key?.length ?? 0) + (value?.length ?? 0) + 16;
    // Room is reserved before anything asynchronous, so concurrent sends cannot overfill the buffer.
    if (this.#bufferedBytes + bytes > this.#options.bufferBytesMax) {
      this.#tracked(this.#waitForRoom(bytes)).then(
        () => this.#place(record, input, bytes, answer, slot, Date.now()),
        (error) => failTo(answer, slot, error),
      );
      return;
    }
    this.#bufferedBytes += bytes;
    this.#place(record, input, bytes, answer, slot, nowMs);
  }

  /** `step`, counted among the sends not queued yet until it settles. */
  #tracked<T>(step: Promise<T>): Promise<T> {
    this.#placing.add(step);
    const settled = () => this.#placing.delete(step);
    step.then(settled, settled);
    return step;
  }

  /** Finds the partition (from the topic's metadata, looked up when unknown or old) and queues the record. */
  #place(
    record: ProducerRecord<K, V>,
    input: RecordInput,
    bytes: number,
    answer: Answer,
    slot: Slot,
    nowMs: number,
  ): void {
    // Fresh metadata is read synchronously: an await per record costs more than the rest of send().
    const fresh = this.#metadata.fresh(record.topic, nowMs);
    let lookup: Promise<TopicRoute>;
    if (!fresh) lookup = this.#metadata.route(record.topic);
    else if (!this.#partitionAddedSince(fresh, record.partition, nowMs)) {
      this.#queue(record, input, bytes, partitionsOf(fresh), answer, slot);
      return;
    }
    // A partition beyond the known count may have been added since: look once more before refusing.
    else lookup = this.#metadata.refresh(record.topic).catch(() => fresh);
    this.#tracked(lookup).then(
      (route) => this.#queue(record, input, bytes, partitionsOf(route), answer, slot),
      (error) => {
        this.#release(bytes);
        failTo(answer, slot, error);
      },
    );
  }

  /**
   * Whether a record names a partition the metadata does not have, and the metadata is old enough
   * (over `retryBackoffMs`) that a lookup may find it: sends to a partition that does not exist
   * look up at most once per backoff.
   */
  #partitionAddedSince(route: TopicRoute, partition: number | undefined, nowMs: number): boolean {
    return (
      partition !== undefined &&
      partition >= partitionsOf(route) &&
      nowMs - route.fetchedAtMs >= this.#options.retryBackoffMs
    );
  }

  #queue(
    record: ProducerRecord<K, V>,
    input: RecordInput,
    bytes: number,
    partitions: number,
    answer: Answer,
    slot: Slot,
  ): void {
    let partition: number;
    if (record.partition !== undefined) {
      if (!Number.isInteger(record.partition) || record.partition < 0 || record.partition >= partitions) {
        this.#release(bytes);
        failTo(
          answer,
          slot,
          new SluiceError(
            'UNKNOWN_TOPIC_OR_PARTITION',
            `topic ${record.topic} has no partition ${record.partition}`,
          ),
        );
        return;
      }
      partition = record.partition;
    } else if (input.key) {
      partition = partitionForKey(input.key, partitions);
    } else {
      partition = this.#sticky.get(record.topic) ?? this.#random.int(partitions);
      this.#sticky.set(record.topic, partition);
    }
    let queues = this.#queues.get(record.topic);
    if (!queues) this.#queues.set(record.topic, (queues = []));
    let queue = queues[partition];
    if (!queue)
      queues[partition] = queue = {
        batch: emptyBatch(),
        timer: undefined,
        immediate: undefined,
        window: [],
        waiting: [],
        unanswered: new Set(),
        overtaken: [],
      };
    const batch = queue.batch;
    batch.records.push(input);
    batch.answers.push(answer);
    batch.slots.push(slot);
    batch.bytes += bytes;
    if (batch.bytes >= this.#options.batchBytes) this.#drain(record.topic, partition, queue);
    else if (batch.records.length === 1) {
      const topic = record.topic;
      const opened = queue;
      if (queue.window.length === 0)
        queue.immediate = setImmediate(() => this.#drain(topic, partition, opened));
      else queue.timer = setTimeout(() => this.#drain(topic, partition, opened), this.#options.lingerMs);
    }
  }

  /** Sends everything buffered and waits for every answer. */
  async flush(): Promise<void> {
    // What is queued goes first: a send waiting for room in the buffer waits for those answers.
    this.#drainAll();
    while (this.#placing.size > 0) {
      await Promise.allSettled([...this.#placing]);
      // A send queues its record in the reaction after its lookup: let those reactions run.
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.#drainAll();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Sends what is buffered, waits for every answer, then closes the connections. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
    this.#metadata.close();
  }

  /** `await using producer = new Producer(...)` flushes and closes it at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Waits until `bytes` more fit in the buffer, at most maxBlockMs. */
  async #waitForRoom(bytes: number): Promise<void> {
    const { bufferBytesMax, maxBlockMs } = this.#options;
    const full = () =>
      new SluiceError('LIMIT_EXCEEDED', `more than ${bufferBytesMax} bytes are waiting to be sent`, {
        details: { bufferBytesMax },
      });
    if (bytes > bufferBytesMax || maxBlockMs <= 0) throw full();
    const deadline = Date.now() + maxBlockMs;
    // Buffered batches are sent now rather than after their linger, so that room comes sooner.
    this.#drainAll();
    for (;;) {
      if (this.#bufferedBytes + bytes <= bufferBytesMax) {
        this.#bufferedBytes += bytes;
        return;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw full();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          const at = this.#roomWaiters.indexOf(wake);
          if (at >= 0) this.#roomWaiters.splice(at, 1);
          resolve();
        }, left);
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        this.#roomWaiters.push(wake);
      });
      if (this.#closed) throw new SluiceError('SHUTTING_DOWN', 'the producer is closed');
    }
  }

  #release(bytes: number): void {
    this.#bufferedBytes -= bytes;
    // Every waiter re-checks the room it needs; the ones that still do not fit wait again.
    for (const wake of this.#roomWaiters.splice(0)) wake();
  }

  #drainAll(): void {
    for (const [topic, queues] of this.#queues) {
      queues.forEach((queue, partition) => {
        if (queue.batch.records.length > 0) this.#drain(topic, partition, queue);
      });
    }
  }

  #drain(topic: string, partition: number, queue: PartitionQueue): void {
    if (queue.timer !== undefined) clearTimeout(queue.timer);
    if (queue.immediate !== undefined) clearImmediate(queue.immediate);
    queue.timer = undefined;
    queue.immediate = undefined;
    if (queue.batch.records.length === 0) return;
    const batch = queue.batch;
    queue.batch = emptyBatch();
    // A new batch of keyless records may go to another partition (sticky partitioning).
    this.#sticky.delete(topic);
    const sending = this.#sendBatch(topic, partition, queue, batch).finally(() =>
      this.#inFlight.delete(sending),
    );
    this.#inFlight.add(sending);
  }

  async #sendBatch(topic: string, partition: number, queue: PartitionQueue, batch: Batch): Promise<void> {
    while (queue.window.length >= this.#options.maxInFlight)
      await new Promise<void>((resolve) => queue.waiting.push(resolve));
    const slot = { answered: false };
    queue.window.push(slot);
    const { records, bytes } = batch;
    let numbered: { session: ProducerSession; baseSequence: number } | undefined;
    try {
      if (this.#options.idempotent) {
        // Batches get their sequence numbers in the order they are sent: the session resolves its
        // waiters in the order they asked.
        const session = await this.#producerSession();
        const key = `${topic}\u0000${partition}`;
        const baseSequence = session.sequences.get(key) ?? 0;
        session.sequences.set(key, (baseSequence + records.length) % SEQUENCE_LIMIT);
        numbered = { session, baseSequence };
        queue.unanswered.add(baseSequence);
      }
      if (this.#compression.codec !== 'none') await codecs.load();
      const body = encodeBatch(records, {
        ...(numbered
          ? {
              producerId: numbered.session.producerId,
              producerEpoch: numbered.session.producerEpoch,
              baseSequence: numbered.baseSequence,
            }
          : {}),
        compression: this.#compression,
      });
      const acks: Acks = this.#options.acks === 'all' ? -1 : this.#options.acks;
      const endpoint = ENDPOINTS.producePartition;
      const path = endpointUrl(endpoint, { topic, partition }, { acks: acks === -1 ? 'all' : acks });
      const backoff = new Backoff(
        { initialMs: this.#options.retryBackoffMs, maxMs: this.#options.retryBackoffMs * 32 },
        this.#random,
      );
      for (let attempt = 0; ; attempt++) {
        const route = this.#metadata.known(topic);
        const leader = route ? this.#metadata.leader(route, partition) : undefined;
        try {
          assert(leader !== undefined, 'a batch is queued only after its topic was looked up');
          const response = await leader.request(endpoint.method, path, {
            body,
            contentType: MEDIA.batches,
            timeoutMs: this.#options.requestTimeoutMs,
          });
          const result = decodeResponse<{ baseOffset?: number } | undefined>(response);
          // An acknowledged append names its offsets: an answer without them (an intermediary's
          // empty 200, say) says nothing of whether the batch landed, and the batch is sent again.
          if (acks !== 0 && typeof result?.baseOffset !== 'number')
            throw new SluiceError('NETWORK_EXCEPTION', `the answer to ${path} names no offsets`, {
              retriable: true,
            });
          const baseOffset = result?.baseOffset ?? -1;
          const { answers, slots } = batch;
          for (let i = 0; i < answers.length; i++)
            answerTo(answers[i]!, slots[i]!, {
              topic,
              partition,
              offset: baseOffset < 0 ? -1 : baseOffset + i,
            });
          return;
        } catch (error) {
          // A batch that went ahead of an earlier one still unanswered (timed out and being
          // retried, say) waits for it: those tries are not its own failures and do not count
          // against `retries`. The wait is bounded by the earlier batch, whose own retries are.
          // It is sent again as soon as a batch of the partition is answered: waiting out a
          // backoff instead made overlapped sends 50 times slower than one batch in flight
          // (bench/sdk-send.ts), as batches of one connection often arrive out of order.
          if (this.#waitsForEarlier(error, queue, numbered)) {
            attempt--;
            await new Promise<void>((resolve) => {
              const timer = setTimeout(wake, this.#options.retryBackoffMs * 32);
              function wake() {
                clearTimeout(timer);
                resolve();
              }
              queue.overtaken.push(wake);
            });
            continue;
          }
          const retriable = await this.#retriable(error, topic, partition);
          if (!retriable || attempt >= this.#options.retries) throw error;
          await new Promise((r) => setTimeout(r, backoff.next()));
        }
      }
    } catch (error) {
      // A batch that fails leaves a gap in its partition's sequence numbers (and UNKNOWN_PRODUCER_ID
      // means the cluster forgot this producer): the next batches start over with a new producer id.
      if (numbered) this.#resetSession(numbered.session);
      for (let i = 0; i < batch.answers.length; i++) failTo(batch.answers[i]!, batch.slots[i]!, error);
    } finally {
      if (numbered) queue.unanswered.delete(numbered.baseSequence);
      for (const wake of queue.overtaken.splice(0)) wake();
      this.#release(bytes);
      slot.answered = true;
      while (queue.window[0]?.answered) queue.window.shift();
      // As many waiting batches as there is room for (each takes its slot when it runs).
      const room = this.#options.maxInFlight - queue.window.length;
      for (const wake of queue.waiting.splice(0, Math.max(0, room))) wake();
    }
  }

  /**
   * An idempotent batch refused as out of order (or as of an unknown producer) while a batch
   * before it of the same partition is still unanswered (being retried or overtaken): it went
   * ahead of that one, and is sent again after it.
   */
  #waitsForEarlier(
    error: unknown,
    queue: PartitionQueue,
    numbered: { session: ProducerSession; baseSequence: number } | undefined,
  ): boolean {
    // Before its first batch of a partition lands, the partition has no state of the producer.
    const overtook =
      isSluiceError(error, 'OUT_OF_ORDER_SEQUENCE_NUMBER') || isSluiceError(error, 'UNKNOWN_PRODUCER_ID');
    if (!numbered || !overtook) return false;
    for (const sequence of queue.unanswered) if (precedes(sequence, numbered.baseSequence)) return true;
    return false;
  }

  /** The producer id for this producer's batches, asked of the cluster once (and again after a reset). */
  #producerSession(): Promise<ProducerSession> {
    this.#session ??= this.#initProducer().catch((error: unknown) => {
      this.#session = undefined;
      throw error;
    });
    return this.#session;
  }

  async #initProducer(): Promise<ProducerSession> {
    const initialMs = this.#options.retryBackoffMs;
    const backoff = new Backoff({ initialMs, maxMs: initialMs * 32 }, this.#random);
    const endpoint = ENDPOINTS.initProducer;
    for (;;) {
      try {
        const answer = await this.#metadata.bootstrap.call<{ producerId: number; producerEpoch: number }>(
          endpoint.method,
          endpoint.path,
          undefined,
          { timeoutMs: this.#options.requestTimeoutMs },
        );
        return { producerId: answer.producerId, producerEpoch: answer.producerEpoch, sequences: new Map() };
      } catch (error) {
        const retriable = isSluiceError(error) && error.retriable;
        if (!retriable || backoff.attempts >= this.#options.retries) throw error;
        await new Promise((r) => setTimeout(r, backoff.next()));
      }
    }
  }

  #resetSession(stale: ProducerSession): void {
    void this.#session?.then(
      (current) => {
        if (current === stale) this.#session = undefined;
      },
      () => {},
    );
  }

  /**
   * Whether a failed batch is sent again. An answer that says the partition's leader moved looks
   * the topic up first; then UNKNOWN_TOPIC_OR_PARTITION, which the table calls final, is retried
   * when the metadata still has the partition (a new leader that has not opened it yet).
   */
  async #retriable(error: unknown, topic: string, partition: number): Promise<boolean> {
    if (!isSluiceError(error)) return false;
    if (!STALE_METADATA_CODES.has(error.code)) return error.retriable;
    const route = await this.#metadata.refresh(topic).catch(() => undefined);
    if (error.code !== 'UNKNOWN_TOPIC_OR_PARTITION') return error.retriable;
    return route !== undefined && route.leaders.length > 0 && partition < partitionsOf(route);
  }
}

/** Whether sequence `a` comes before `b`, within the window of batches in flight (they wrap at 2^31). */
function precedes(a: number, b: number): boolean {
  const distance = (b - a + SEQUENCE_LIMIT) % SEQUENCE_LIMIT;
  return distance > 0 && distance < SEQUENCE_LIMIT / 2;
}
