import { Backoff } from '../common/backoff.js';
import { SluiceError } from '../common/errors.js';
import { SeededRandom } from '../common/random.js';
import { ENDPOINTS, endpointPath } from '../protocol/api.js';
import {
  assertValidBatch,
  type BatchRecord,
  batchSize,
  decodeRecords,
  type Header,
} from '../protocol/batch.js';
import { Connection, errorFromResponse, unpackr } from './connection.js';

export interface PartitionConsumerOptions {
  bootstrap: string;
  topic: string;
  partition: number;
  /** Where to start: an offset, 'earliest' (default) or 'latest'. */
  offset?: number | 'earliest' | 'latest';
  /** Longest wait of one fetch for new records. */
  maxWaitMs?: number;
  maxBytes?: number;
  /** Stop (end the iteration) once the high watermark is reached, instead of waiting for more. */
  stopAtEnd?: boolean;
  /** Fetches retried in a row after retriable errors (lost connection, no leader) before the iterator throws. */
  retries?: number;
  retryBackoffMs?: number;
}

export interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Header[];
}

export interface FetchPage {
  records: BatchRecord[];
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

/**
 * Reads a msgpack fetch response: `{batches: [stored batch, ...], nextOffset, highWatermark,
 * logStartOffset}` with `batches` first, as the broker sends it. Each stored batch is checked
 * (CRC-32C) and decoded here; records before `fromOffset` are skipped.
 */
export function parseFetchResponse(body: Buffer, fromOffset: number): FetchPage {
  // The map header: a fixmap or a map16, whose first key must be `batches`.
  let pos: number;
  let entries: number;
  if (body.length > 0 && (body[0]! & 0xf0) === 0x80) {
    entries = body[0]! & 0x0f;
    pos = 1;
  } else if (body[0] === 0xde && body.length >= 3) {
    entries = body.readUInt16BE(1);
    pos = 3;
  } else {
    entries = 0;
    pos = 0;
  }
  if (entries === 0 || body.toString('latin1', pos, pos + 8) !== '\xa7batches') {
    let shown: string;
    try {
      shown = JSON.stringify(unpackr.unpack(body)).slice(0, 200);
    } catch {
      shown = `${body.length} bytes that are not msgpack`;
    }
    throw new SluiceError('INVALID_REQUEST', `unexpected fetch response: ${shown}`);
  }
  pos += 8;
  const marker = body[pos]!;
  let count: number;
  if (marker === 0xdd) {
    count = body.readUInt32BE(pos + 1);
    pos += 5;
  } else if (marker === 0xdc) {
    count = body.readUInt16BE(pos + 1);
    pos += 3;
  } else if ((marker & 0xf0) === 0x90) {
    count = marker & 0x0f;
    pos += 1;
  } else {
    throw new SluiceError('CORRUPT_MESSAGE', 'fetch response batches is not an array');
  }
  const records: BatchRecord[] = [];
  for (let i = 0; i < count; i++) {
    const header = assertValidBatch(body, pos, body.length, Number.MAX_SAFE_INTEGER);
    for (const record of decodeRecords(body, pos)) if (record.offset >= fromOffset) records.push(record);
    pos += batchSize(header);
  }
  // The other fields follow the batches as key, value, key, value...
  const rest = entries > 1 ? (unpackr.unpackMultiple(body.subarray(pos)) as unknown[]) : [];
  const fields: Record<string, unknown> = {};
  for (let i = 0; i + 1 < rest.length; i += 2) fields[String(rest[i])] = rest[i + 1];
  const number = (name: string): number => {
    const v = fields[name];
    if (typeof v !== 'number') throw new SluiceError('INVALID_REQUEST', `fetch response without ${name}`);
    return v;
  };
  return {
    records,
    nextOffset: number('nextOffset'),
    highWatermark: number('highWatermark'),
    logStartOffset: number('logStartOffset'),
  };
}

/** Reads one partition from an offset as an async iterator, long-polling for new records. */
export class PartitionConsumer implements AsyncIterable<ConsumedRecord> {
  readonly #connection: Connection;
  #offset: number | 'earliest' | 'latest';
  #closed = false;
  readonly #abort = new AbortController();

  constructor(readonly options: PartitionConsumerOptions) {
    this.#connection = new Connection(options.bootstrap);
    this.#offset = options.offset ?? 'earliest';
  }

  /** The next offset this consumer will read. */
  get position(): number | 'earliest' | 'latest' {
    return this.#offset;
  }

  /** One fetch: the records at and after the current position (possibly none after maxWaitMs). */
  async poll(): Promise<FetchPage> {
    const { topic, partition } = this.options;
    const query = `?offset=${this.#offset}&maxWaitMs=${this.options.maxWaitMs ?? 1000}&maxBytes=${this.options.maxBytes ?? 1024 * 1024}`;
    const response = await this.#connection.request(
      'GET',
      endpointPath(ENDPOINTS.fetch, { topic, partition }) + query,
      {
        signal: this.#abort.signal,
        timeoutMs: (this.options.maxWaitMs ?? 1000) + 30_000,
      },
    );
    if (response.status >= 400) throw errorFromResponse(response);
    const from = typeof this.#offset === 'number' ? this.#offset : 0;
    const page = parseFetchResponse(response.body, from);
    if (typeof this.#offset !== 'number' && page.records.length === 0) {
      // 'latest' and 'earliest' resolve to a number on the first answer.
      this.#offset = this.#offset === 'latest' ? page.highWatermark : page.logStartOffset;
    } else {
      this.#offset = Math.max(from, page.nextOffset);
    }
    return page;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ConsumedRecord> {
    const { topic, partition } = this.options;
    const retries = this.options.retries ?? 5;
    const initialMs = this.options.retryBackoffMs ?? 100;
    const backoff = new Backoff({ initialMs, maxMs: initialMs * 32 }, new SeededRandom(partition + 1));
    while (!this.#closed) {
      let page: FetchPage;
      try {
        page = await this.poll();
        backoff.reset();
      } catch (error) {
        if (this.#closed) return;
        const retriable = error instanceof SluiceError && error.retriable;
        if (!retriable || backoff.attempts >= retries) throw error;
        await new Promise((resolve) => setTimeout(resolve, backoff.next()));
        continue;
      }
      for (const r of page.records) {
        yield {
          topic,
          partition,
          offset: r.offset,
          timestamp: r.timestamp,
          key: r.key,
          value: r.value,
          headers: r.headers,
        };
      }
      if (this.options.stopAtEnd && typeof this.#offset === 'number' && this.#offset >= page.highWatermark)
        return;
    }
  }

  close(): void {
    this.#closed = true;
    this.#abort.abort();
    this.#connection.close();
  }
}
