import { Backoff } from '../common/backoff.js';
import { isSluiceError, SluiceError } from '../common/errors.js';
import { SeededRandom } from '../common/random.js';
import { CONSUMER_FETCH_WAIT_MS, ENDPOINTS, endpointUrl, queryDefault } from '../protocol/api.js';
import type { Header } from '../protocol/batch.js';
import { ACCEPT_COMPRESSION_HEADER, codecs } from '../protocol/compression.js';
import { decodeFetchResponse, type FetchPage } from '../protocol/fetch-response.js';
import { Connection, errorFromResponse, type Response } from './connection.js';
import { ClusterMetadata, STALE_METADATA_CODES } from './metadata.js';

export interface PartitionConsumerOptions {
  bootstrap: string;
  topic: string;
  partition: number;
  /** Where to start: an offset, 'earliest' (default) or 'latest'. */
  offset?: number | 'earliest' | 'latest';
  /** Longest wait of one fetch for new records (default `CONSUMER_FETCH_WAIT_MS`, 1000). */
  maxWaitMs?: number;
  maxBytes?: number;
  /** Stop (end the iteration) once the high watermark is reached, instead of waiting for more. */
  stopAtEnd?: boolean;
  /** Fetches retried in a row after retriable errors (lost connection, no leader) before the iterator throws. */
  retries?: number;
  retryBackoffMs?: number;
  /** How old the partition's leader may be known before a fetch looks it up again (default 30 s). */
  metadataMaxAgeMs?: number;
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

/**
 * Reads one partition from an offset as an async iterator, long-polling for new records. Fetches go
 * to the partition's leader, found in the topic's metadata (`GET /v1/metadata`, asked of the
 * bootstrap node), and the leader is looked up again when a fetch is answered that it moved
 * (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION) or could not reach it.
 * A node without metadata (an older release) is fetched from directly, as before.
 */
export class PartitionConsumer implements AsyncIterable<ConsumedRecord> {
  readonly #metadata: ClusterMetadata;
  #offset: number | 'earliest' | 'latest';
  #closed = false;
  readonly #abort = new AbortController();

  constructor(readonly options: PartitionConsumerOptions) {
    this.#metadata = new ClusterMetadata(
      new Connection(options.bootstrap),
      {
        maxAgeMs: options.metadataMaxAgeMs ?? 30_000,
        requestTimeoutMs: 30_000,
        // The iterator retries a failed poll, lookup included.
        retries: 0,
        retryBackoffMs: options.retryBackoffMs ?? 100,
        describeTopics: false,
      },
      new SeededRandom(options.partition + 7),
    );
    this.#offset = options.offset ?? 'earliest';
  }

  /** The next offset this consumer will read. */
  get position(): number | 'earliest' | 'latest' {
    return this.#offset;
  }

  /** One fetch: the records at and after the current position (possibly none after maxWaitMs). */
  async poll(): Promise<FetchPage> {
    const { topic, partition } = this.options;
    const maxWaitMs = this.options.maxWaitMs ?? CONSUMER_FETCH_WAIT_MS;
    const endpoint = ENDPOINTS.fetch;
    const url = endpointUrl(
      endpoint,
      { topic, partition },
      {
        offset: this.#offset,
        maxWaitMs,
        maxBytes: this.options.maxBytes ?? queryDefault(endpoint, 'maxBytes'),
      },
    );
    const leader = this.#metadata.leader(await this.#metadata.route(topic), partition);
    // Compressed batches come as stored in every codec this process reads, and are decoded here.
    await codecs.load();
    const accepted = codecs.available().filter((name) => name !== 'none');
    let response: Response;
    try {
      response = await leader.request(endpoint.method, url, {
        headers: { [ACCEPT_COMPRESSION_HEADER]: accepted.join(',') },
        signal: this.#abort.signal,
        timeoutMs: maxWaitMs + 30_000,
      });
      if (response.status >= 400) throw errorFromResponse(response);
    } catch (error) {
      if (isSluiceError(error) && STALE_METADATA_CODES.has(error.code)) this.#metadata.invalidate(topic);
      throw error;
    }
    const from = typeof this.#offset === 'number' ? this.#offset : 0;
    const page = decodeFetchResponse(response.body, from);
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
    this.#metadata.close();
  }
}
