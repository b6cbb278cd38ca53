import { Backoff } from '../common/backoff.js';
import { SluiceError } from '../common/errors.js';
import { partitionForKey } from '../common/murmur2.js';
import { SeededRandom } from '../common/random.js';
import { type Acks, ENDPOINTS, endpointPath, endpointUrl, MEDIA } from '../protocol/api.js';
import { encodeBatch, type Header, type RecordInput } from '../protocol/batch.js';
import { Connection, decodeResponse } from './connection.js';

export interface ProducerOptions {
  bootstrap: string;
  /** 0, 1 or 'all' (default 'all'). */
  acks?: 0 | 1 | 'all';
  /** How long a partition's batch waits for more records before it is sent. */
  lingerMs?: number;
  /** A batch is sent once it holds this many bytes of keys and values. */
  batchBytes?: number;
  /** Tries after the first for a retriable error. */
  retries?: number;
  retryBackoffMs?: number;
  /** Batches in flight per partition; 1 keeps order across retries. */
  maxInFlight?: number;
  /** Bytes of records waiting to be sent or answered; past it, send() waits for room. */
  bufferBytesMax?: number;
  /** How long send() waits for room in the buffer before it rejects with LIMIT_EXCEEDED (0: at once). */
  maxBlockMs?: number;
  requestTimeoutMs?: number;
}

export interface ProducerRecord {
  topic: string;
  key?: Uint8Array | string | null;
  value: Uint8Array | string | null;
  headers?: Record<string, Uint8Array | string | null> | [string, Uint8Array | string | null][];
  partition?: number;
  timestamp?: number;
}

export interface RecordMetadata {
  topic: string;
  partition: number;
  offset: number;
}

interface Pending {
  record: RecordInput;
  bytes: number;
  resolve: (metadata: RecordMetadata) => void;
  reject: (error: unknown) => void;
}

interface PartitionQueue {
  records: Pending[];
  bytes: number;
  timer: NodeJS.Timeout | undefined;
  inFlight: number;
  waiting: (() => void)[];
}

const toBytes = (v: Uint8Array | string | null | undefined): Uint8Array | null =>
  v === null || v === undefined ? null : typeof v === 'string' ? Buffer.from(v) : v;

/**
 * Batches records per partition and sends each batch in the stored layout
 * (`application/vnd.sluice.batches`), so the broker appends it without decoding a record.
 * The partition of a record: the given one, else murmur2(key) as Kafka's default partitioner,
 * else a sticky partition that changes with each new batch.
 */
export class Producer {
  readonly #connection: Connection;
  readonly #options: Required<Omit<ProducerOptions, 'bootstrap'>>;
  /** Per topic, the queue of each partition that has had records. */
  readonly #queues = new Map<string, PartitionQueue[]>();
  readonly #partitionCounts = new Map<string, Promise<number>>();
  readonly #knownCounts = new Map<string, number>();
  readonly #sticky = new Map<string, number>();
  readonly #random = new SeededRandom(Date.now() >>> 0);
  #bufferedBytes = 0;
  /** send() calls waiting for room in the buffer, woken in order as batches are answered. */
  readonly #roomWaiters: (() => void)[] = [];
  #inFlight = new Set<Promise<void>>();
  #closed = false;

  constructor(options: ProducerOptions) {
    this.#connection = new Connection(options.bootstrap);
    this.#options = {
      acks: options.acks ?? 'all',
      lingerMs: options.lingerMs ?? 5,
      batchBytes: options.batchBytes ?? 64 * 1024,
      retries: options.retries ?? 5,
      retryBackoffMs: options.retryBackoffMs ?? 100,
      maxInFlight: options.maxInFlight ?? 1,
      bufferBytesMax: options.bufferBytesMax ?? 32 * 1024 * 1024,
      maxBlockMs: options.maxBlockMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
    };
  }

  /**
   * Resolves with the record's partition and offset once the broker has acknowledged it (per acks);
   * given an array, with one result per record in the same order. With acks=0 the offset is -1.
   */
  send(record: ProducerRecord): Promise<RecordMetadata>;
  send(records: readonly ProducerRecord[]): Promise<RecordMetadata[]>;
  send(input: ProducerRecord | readonly ProducerRecord[]): Promise<RecordMetadata | RecordMetadata[]> {
    if (Array.isArray(input)) return Promise.all(input.map((r: ProducerRecord) => this.#sendOne(r)));
    return this.#sendOne(input as ProducerRecord);
  }

  #sendOne(record: ProducerRecord): Promise<RecordMetadata> {
    if (this.#closed) return Promise.reject(new SluiceError('SHUTTING_DOWN', 'the producer is closed'));
    const key = toBytes(record.key);
    const value = toBytes(record.value);
    const input: RecordInput = { key, value, timestamp: record.timestamp ?? Date.now() };
    if (record.headers) {
      const headers: Header[] = [];
      const entries = Array.isArray(record.headers) ? record.headers : Object.entries(record.headers);
      for (const [name, v] of entries) headers.push([name, toBytes(v)]);
      input.headers = headers;
    }
    const bytes = (key?.length ?? 0) + (value?.length ?? 0) + 16;
    // Room is reserved before anything asynchronous, so concurrent sends cannot overfill the buffer.
    if (this.#bufferedBytes + bytes > this.#options.bufferBytesMax)
      return this.#waitForRoom(bytes).then(() => this.#place(record, input, bytes));
    this.#bufferedBytes += bytes;
    return this.#place(record, input, bytes);
  }

  /** Finds the partition (reading the topic's partition count once) and queues the record. */
  #place(record: ProducerRecord, input: RecordInput, bytes: number): Promise<RecordMetadata> {
    // Known counts are read synchronously: an await per record costs more than the rest of send().
    const known = this.#knownCounts.get(record.topic);
    if (known !== undefined) return this.#queue(record, input, bytes, known);
    return this.#partitionCount(record.topic).then(
      (partitions) => this.#queue(record, input, bytes, partitions),
      (error) => {
        this.#release(bytes);
        throw error;
      },
    );
  }

  #queue(
    record: ProducerRecord,
    input: RecordInput,
    bytes: number,
    partitions: number,
  ): Promise<RecordMetadata> {
    let partition: number;
    if (record.partition !== undefined) {
      if (!Number.isInteger(record.partition) || record.partition < 0 || record.partition >= partitions) {
        this.#release(bytes);
        return Promise.reject(
          new SluiceError(
            'UNKNOWN_TOPIC_OR_PARTITION',
            `topic ${record.topic} has no partition ${record.partition}`,
          ),
        );
      }
      partition = record.partition;
    } else if (input.key) {
      partition = partitionForKey(input.key, partitions);
    } else {
      partition = this.#sticky.get(record.topic) ?? this.#random.int(partitions);
      this.#sticky.set(record.topic, partition);
    }
    return new Promise<RecordMetadata>((resolve, reject) => {
      let queues = this.#queues.get(record.topic);
      if (!queues) this.#queues.set(record.topic, (queues = []));
      let queue = queues[partition];
      if (!queue)
        queues[partition] = queue = { records: [], bytes: 0, timer: undefined, inFlight: 0, waiting: [] };
      queue.records.push({ record: input, bytes, resolve, reject });
      queue.bytes += bytes;
      if (queue.bytes >= this.#options.batchBytes) this.#drain(record.topic, partition, queue);
      else
        queue.timer ??= setTimeout(() => this.#drain(record.topic, partition, queue), this.#options.lingerMs);
    });
  }

  /** Sends everything buffered and waits for every answer. */
  async flush(): Promise<void> {
    this.#drainAll();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
    this.#connection.close();
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
        if (queue.records.length > 0) this.#drain(topic, partition, queue);
      });
    }
  }

  #partitionCount(topic: string): Promise<number> {
    let count = this.#partitionCounts.get(topic);
    if (!count) {
      count = this.#connection
        .call<{ partitions: unknown[] }>(
          ENDPOINTS.describeTopic.method,
          endpointPath(ENDPOINTS.describeTopic, { topic }),
          undefined,
          {
            timeoutMs: this.#options.requestTimeoutMs,
          },
        )
        .then((d) => {
          this.#knownCounts.set(topic, d.partitions.length);
          return d.partitions.length;
        });
      count.catch(() => this.#partitionCounts.delete(topic));
      this.#partitionCounts.set(topic, count);
    }
    return count;
  }

  #drain(topic: string, partition: number, queue: PartitionQueue): void {
    if (queue.timer) clearTimeout(queue.timer);
    queue.timer = undefined;
    if (queue.records.length === 0) return;
    const batch = queue.records;
    queue.records = [];
    queue.bytes = 0;
    // A new batch of keyless records may go to another partition (sticky partitioning).
    this.#sticky.delete(topic);
    const sending = this.#sendBatch(topic, partition, queue, batch).finally(() =>
      this.#inFlight.delete(sending),
    );
    this.#inFlight.add(sending);
  }

  async #sendBatch(topic: string, partition: number, queue: PartitionQueue, batch: Pending[]): Promise<void> {
    while (queue.inFlight >= this.#options.maxInFlight)
      await new Promise<void>((resolve) => queue.waiting.push(resolve));
    queue.inFlight++;
    const bytes = batch.reduce((sum, p) => sum + p.bytes, 0);
    try {
      const body = encodeBatch(batch.map((p) => p.record));
      const acks: Acks = this.#options.acks === 'all' ? -1 : this.#options.acks;
      const endpoint = ENDPOINTS.producePartition;
      const path = endpointUrl(endpoint, { topic, partition }, { acks: acks === -1 ? 'all' : acks });
      const backoff = new Backoff(
        { initialMs: this.#options.retryBackoffMs, maxMs: this.#options.retryBackoffMs * 32 },
        this.#random,
      );
      for (let attempt = 0; ; attempt++) {
        try {
          const response = await this.#connection.request(endpoint.method, path, {
            body,
            contentType: MEDIA.batches,
            timeoutMs: this.#options.requestTimeoutMs,
          });
          const result = decodeResponse<{ baseOffset?: number } | undefined>(response);
          const baseOffset = result?.baseOffset ?? -1;
          batch.forEach((p, i) => {
            p.resolve({ topic, partition, offset: baseOffset < 0 ? -1 : baseOffset + i });
          });
          return;
        } catch (error) {
          const retriable = error instanceof SluiceError && error.retriable;
          if (!retriable || attempt >= this.#options.retries) throw error;
          await new Promise((r) => setTimeout(r, backoff.next()));
        }
      }
    } catch (error) {
      for (const p of batch) p.reject(error);
    } finally {
      this.#release(bytes);
      queue.inFlight--;
      queue.waiting.shift()?.();
    }
  }
}
