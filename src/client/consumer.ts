import { SluiceError } from '../common/errors.js';
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
  if (body[0] !== 0x84 || body.toString('latin1', 1, 9) !== '\xa7batches') {
    const decoded = unpackr.unpack(body) as Partial<FetchPage>;
    throw new SluiceError(
      'INVALID_REQUEST',
      `unexpected fetch response: ${JSON.stringify(decoded).slice(0, 200)}`,
    );
  }
  let pos = 9;
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
  const rest = Buffer.concat([Buffer.from([0x83]), body.subarray(pos)]);
  const fields = unpackr.unpack(rest) as {
    nextOffset: number;
    highWatermark: number;
    logStartOffset: number;
  };
  return { records, ...fields };
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
    while (!this.#closed) {
      let page: FetchPage;
      try {
        page = await this.poll();
      } catch (error) {
        if (this.#closed) return;
        throw error;
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
