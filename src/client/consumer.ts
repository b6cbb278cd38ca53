import { Backoff } from '../common/backoff.js';
import { isSluiceError, SluiceError } from '../common/errors.js';
import { SeededRandom } from '../common/random.js';
import {
  CONSUMER_FETCH_WAIT_MS,
  ENDPOINTS,
  endpointPath,
  endpointUrl,
  type GroupMemberView,
  MEDIA,
  queryDefault,
} from '../protocol/api.js';
import { ACCEPT_COMPRESSION_HEADER, codecs } from '../protocol/compression.js';
import { decodeFetchResponse, type FetchPage } from '../protocol/fetch-response.js';
import { decodeGroupPoll } from '../protocol/group-poll.js';
import { packr } from '../protocol/msgpack.js';
import {
  Connection,
  decodeResponse,
  errorFromResponse,
  type Response,
  type TransportOptions,
  transportOf,
} from './connection.js';
import { ClusterMetadata, STALE_METADATA_CODES } from './metadata.js';
import { type ConsumedRecord, consumedRecord } from './record.js';

export type { ConsumedRecord } from './record.js';

export interface PartitionConsumerOptions extends TransportOptions {
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
      new Connection(options.bootstrap, transportOf(options)),
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

  /**
   * The records from the current position on, fetching again once a page is handed out; with
   * `stopAtEnd`, done at the high watermark. Written out rather than as an async generator: a
   * record of a page already fetched is handed out with one resolved promise, where a generator
   * costs several promises and microtask turns per record, and the iteration was most of the
   * cost of reading (bench/sdk-send.ts).
   */
  [Symbol.asyncIterator](): AsyncIterator<ConsumedRecord> {
    const { topic, partition } = this.options;
    const retries = this.options.retries ?? 5;
    const initialMs = this.options.retryBackoffMs ?? 100;
    const backoff = new Backoff({ initialMs, maxMs: initialMs * 32 }, new SeededRandom(partition + 1));
    let records: FetchPage['records'] = [];
    let at = 0;
    let highWatermark = Number.NaN;
    let ended = false;
    const done = (): IteratorResult<ConsumedRecord> => {
      ended = true;
      return { value: undefined, done: true };
    };
    const atEnd = () =>
      this.options.stopAtEnd === true && typeof this.#offset === 'number' && this.#offset >= highWatermark;
    const fetchPage = async (): Promise<IteratorResult<ConsumedRecord>> => {
      while (!this.#closed) {
        let page: FetchPage;
        try {
          page = await this.poll();
          backoff.reset();
        } catch (error) {
          if (this.#closed) return done();
          const retriable = error instanceof SluiceError && error.retriable;
          if (!retriable || backoff.attempts >= retries) {
            ended = true;
            throw error;
          }
          await new Promise((resolve) => setTimeout(resolve, backoff.next()));
          continue;
        }
        records = page.records;
        at = 0;
        highWatermark = page.highWatermark;
        if (at < records.length)
          return { value: consumedRecord(topic, partition, records[at++]!), done: false };
        if (atEnd()) return done();
      }
      return done();
    };
    // A fetch under way: a next() called before it settles waits for it, as an async generator's
    // calls queue, so that two fetches never race for the position.
    let fetching: Promise<IteratorResult<ConsumedRecord>> | undefined;
    const next = (): Promise<IteratorResult<ConsumedRecord>> => {
      if (fetching) return fetching.then(next, next);
      if (ended) return Promise.resolve(done());
      if (at < records.length)
        return Promise.resolve({ value: consumedRecord(topic, partition, records[at++]!), done: false });
      if (atEnd()) return Promise.resolve(done());
      const fetched = fetchPage();
      fetching = fetched;
      const settled = () => {
        fetching = undefined;
      };
      fetched.then(settled, settled);
      return fetched;
    };
    return {
      next,
      return: (): Promise<IteratorResult<ConsumedRecord>> => Promise.resolve(done()),
    };
  }

  /** Stops the iteration (a fetch waiting for records is cancelled) and closes the connections. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    this.#metadata.close();
  }

  /** `await using consumer = new PartitionConsumer(...)` closes it at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

// ---- consumer groups (docs/groups.md) ----

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface RebalanceEvent {
  /** Partitions this member holds from now on. */
  assigned: TopicPartition[];
  /** Partitions taken from it: their records are not handed out any more (with auto-commit, what was handed out is committed first). */
  revoked: TopicPartition[];
}

export interface ConsumerOptions extends TransportOptions {
  bootstrap: string;
  group: string;
  /** The topics to subscribe to; or `pattern`, an anchored regular expression over topic names. */
  topics?: string[];
  pattern?: string;
  /** How long the group waits for this member's polls and heartbeats before its partitions move (default 45 s on the server). */
  sessionTimeoutMs?: number;
  /** A static member id: the member that comes back with it gets its partitions again without a rebalance. */
  instanceId?: string;
  assignor?: 'range' | 'roundrobin' | 'sticky';
  /** Where a partition without a committed offset starts: 'earliest' (default) or 'latest'. */
  autoOffsetReset?: 'earliest' | 'latest';
  /**
   * true (default): each poll commits what the previous poll handed out, and a revoked partition's
   * records handed out are committed before it is given up (at-least-once when records are
   * processed before the next one is asked for). false: `commit()` commits.
   */
  autoCommit?: boolean;
  /** Called when partitions are assigned to or taken from this member; awaited before it acknowledges. */
  onRebalance?: (event: RebalanceEvent) => void | Promise<void>;
  /** Longest wait of one poll for records (default `CONSUMER_FETCH_WAIT_MS`). */
  maxWaitMs?: number;
  maxBytes?: number;
  /** Polls retried in a row after retriable errors before the iterator throws; commits retried likewise. */
  retries?: number;
  retryBackoffMs?: number;
}

const tpKey = (tp: TopicPartition): string => `${tp.topic}\u0000${tp.partition}`;
const tpOf = (k: string): TopicPartition => {
  const at = k.lastIndexOf('\u0000');
  return { topic: k.slice(0, at), partition: Number(k.slice(at + 1)) };
};

/**
 * A member of a consumer group: it joins, and the group's coordinator assigns it partitions of its
 * topics; `poll` and the async iterator read all of them in one request, from where the group
 * committed (or where this member has read to). Polls are the member's heartbeats, and while the
 * application works between polls a heartbeat goes out every heartbeat interval. Partitions taken
 * from it are acknowledged only after `onRebalance` (and with auto-commit, their commit), so no
 * two members ever hold one partition.
 */
export class Consumer implements AsyncIterable<ConsumedRecord> {
  readonly #connection: Connection;
  #memberId: string | undefined;
  #memberEpoch = 0;
  #heartbeatMs = 3000;
  #held = new Set<string>();
  /** Next offset after the last record handed out, per partition. */
  readonly #consumed = new Map<string, number>();
  #paused = new Set<string>();
  #buffer: ConsumedRecord[] = [];
  #heartbeat: NodeJS.Timeout | undefined;
  #closed = false;
  #polling = false;
  readonly #abort = new AbortController();
  #rebalancing: Promise<void> = Promise.resolve();

  constructor(readonly options: ConsumerOptions) {
    if ((options.topics === undefined) === (options.pattern === undefined))
      throw new SluiceError(
        'INVALID_REQUEST',
        'a consumer subscribes to topics or to a pattern: give exactly one',
      );
    this.#connection = new Connection(options.bootstrap, transportOf(options));
  }

  get memberId(): string | undefined {
    return this.#memberId;
  }

  get memberEpoch(): number {
    return this.#memberEpoch;
  }

  /** The partitions this member holds now. */
  assignment(): TopicPartition[] {
    return [...this.#held].map(tpOf);
  }

  async #call<T>(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
    const response = await this.#connection.request(method, path, {
      ...(body === undefined ? {} : { body: packr.pack(body), contentType: MEDIA.msgpack }),
      timeoutMs,
      signal: this.#abort.signal,
    });
    return decodeResponse<T>(response);
  }

  /** Joins the group (the first poll does it by itself). */
  async join(): Promise<void> {
    const o = this.options;
    const view = await this.#call<GroupMemberView>(
      'POST',
      endpointPath(ENDPOINTS.joinGroup, { group: o.group }),
      {
        ...(o.topics ? { topics: o.topics } : {}),
        ...(o.pattern !== undefined ? { pattern: o.pattern } : {}),
        ...(o.sessionTimeoutMs !== undefined ? { sessionTimeoutMs: o.sessionTimeoutMs } : {}),
        ...(o.instanceId !== undefined ? { instanceId: o.instanceId } : {}),
        ...(o.assignor !== undefined ? { assignor: o.assignor } : {}),
        ...(o.autoOffsetReset !== undefined ? { autoOffsetReset: o.autoOffsetReset } : {}),
      },
    );
    this.#memberId = view.memberId;
    this.#heartbeatMs = view.heartbeatIntervalMs;
    await this.#reconcile(view.memberEpoch, view.assignment);
    this.#startHeartbeats();
  }

  #startHeartbeats(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => {
      if (this.#polling || this.#closed) return;
      this.heartbeat().catch(() => {});
    }, this.#heartbeatMs);
    this.#heartbeat.unref();
  }

  #memberPath(endpoint: typeof ENDPOINTS.heartbeatGroup | typeof ENDPOINTS.leaveGroup): string {
    return endpointPath(endpoint, { group: this.options.group, member: this.#memberId! });
  }

  /** One heartbeat: what the member holds (acknowledging revocations), its paused partitions. */
  async heartbeat(seek?: { topic: string; partition: number; offset: number }[]): Promise<void> {
    if (this.#memberId === undefined) return;
    await this.#rebalancing;
    const view = await this.#call<GroupMemberView>('POST', this.#memberPath(ENDPOINTS.heartbeatGroup), {
      owned: this.assignment(),
      paused: [...this.#paused].map(tpOf),
      ...(seek ? { seek } : {}),
    });
    await this.#reconcile(view.memberEpoch, view.assignment);
  }

  /**
   * Takes a new assignment: the revoked partitions first (commit, callback), then the new ones.
   * Having given partitions up, the member heartbeats at once rather than at its next interval:
   * that heartbeat acknowledges the revocation, and the partitions move to their new owners a
   * heartbeat interval sooner.
   */
  #reconcile(memberEpoch: number, assignment: readonly TopicPartition[]): Promise<void> {
    let gaveUp = false;
    const run = this.#rebalancing.then(async () => {
      this.#memberEpoch = memberEpoch;
      const now = new Set(assignment.map(tpKey));
      const revoked = [...this.#held].filter((k) => !now.has(k));
      const assigned = [...now].filter((k) => !this.#held.has(k));
      gaveUp = revoked.length > 0;
      if (revoked.length === 0 && assigned.length === 0) return;
      if (revoked.length > 0) {
        const gone = new Set(revoked);
        this.#buffer = this.#buffer.filter((r) => !gone.has(tpKey(r)));
        if (this.options.autoCommit !== false) await this.#commitConsumed(revoked).catch(() => {});
        for (const k of revoked) this.#consumed.delete(k);
      }
      this.#held = now;
      await this.options.onRebalance?.({ assigned: assigned.map(tpOf), revoked: revoked.map(tpOf) });
    });
    this.#rebalancing = run.catch(() => {});
    run.then(
      () => {
        if (gaveUp && !this.#closed) this.heartbeat().catch(() => {});
      },
      () => {},
    );
    return run;
  }

  async #commitConsumed(keys: readonly string[]): Promise<number> {
    const offsets = keys
      .filter((k) => this.#consumed.has(k))
      .map((k) => ({ ...tpOf(k), offset: this.#consumed.get(k)! }));
    if (offsets.length > 0) await this.commit(offsets);
    return offsets.length;
  }

  /**
   * Commits offsets as this member: those given (the next offset to read, per partition), or the
   * next offset after every record handed out so far. A commit refused for a stale member epoch
   * (a rebalance moved on) is sent again once after a heartbeat. One refused for a retriable
   * reason (NOT_ENOUGH_REPLICAS while the offsets partition's in-sync set is short,
   * NOT_COORDINATOR while the coordinator moves, a connection lost) is sent again after a backoff,
   * up to `retries` times: a commit of the same offsets may land twice, with the same effect.
   */
  async commit(
    offsets?: { topic: string; partition: number; offset: number; metadata?: string }[],
  ): Promise<void> {
    if (this.#memberId === undefined)
      throw new SluiceError('UNKNOWN_MEMBER_ID', 'the consumer has not joined');
    const list = offsets ?? [...this.#consumed].map(([k, offset]) => ({ ...tpOf(k), offset }));
    if (list.length === 0) return;
    const send = () =>
      this.#call('POST', endpointPath(ENDPOINTS.commitOffsets, { group: this.options.group }), {
        memberId: this.#memberId,
        memberEpoch: this.#memberEpoch,
        offsets: list,
      });
    const retries = this.options.retries ?? 5;
    const initialMs = this.options.retryBackoffMs ?? 100;
    const backoff = new Backoff({ initialMs, maxMs: initialMs * 32 }, new SeededRandom(11));
    let refreshed = false;
    for (;;) {
      try {
        await send();
        return;
      } catch (error) {
        if (isSluiceError(error, 'STALE_MEMBER_EPOCH') && !refreshed) {
          refreshed = true;
          await this.#refreshEpoch();
          continue;
        }
        if (this.#closed || !isSluiceError(error) || !error.retriable || backoff.attempts >= retries)
          throw error;
        await new Promise((resolve) => setTimeout(resolve, backoff.next()));
      }
    }
  }

  /**
   * A heartbeat for the member epoch only: it acknowledges nothing new (it names every partition
   * still held) and leaves the assignment to the next poll or heartbeat, so that it may run
   * during a rebalance callback.
   */
  async #refreshEpoch(): Promise<void> {
    const view = await this.#call<GroupMemberView>('POST', this.#memberPath(ENDPOINTS.heartbeatGroup), {
      owned: this.assignment(),
    });
    this.#memberEpoch = view.memberEpoch;
  }

  /** The next poll of the partition starts at `offset`; records of it not yet handed out are dropped. */
  async seek(tp: TopicPartition, offset: number): Promise<void> {
    const k = tpKey(tp);
    this.#buffer = this.#buffer.filter((r) => tpKey(r) !== k);
    await this.heartbeat([{ topic: tp.topic, partition: tp.partition, offset }]);
  }

  /** Polls skip these partitions (the member keeps them) until `resume`. */
  async pause(partitions: readonly TopicPartition[]): Promise<void> {
    for (const tp of partitions) this.#paused.add(tpKey(tp));
    const gone = new Set(partitions.map(tpKey));
    // Records of them not handed out yet are read again after `resume`: the next read starts at
    // the first of them.
    const back = new Map<string, number>();
    for (const r of this.#buffer) {
      const k = tpKey(r);
      if (gone.has(k) && !back.has(k)) back.set(k, r.offset);
    }
    this.#buffer = this.#buffer.filter((r) => !gone.has(tpKey(r)));
    await this.heartbeat([...back].map(([k, offset]) => ({ ...tpOf(k), offset })));
  }

  async resume(partitions: readonly TopicPartition[]): Promise<void> {
    for (const tp of partitions) this.#paused.delete(tpKey(tp));
    await this.heartbeat();
  }

  /**
   * One poll of every partition the member holds (and a heartbeat): the records, in partition
   * order. They count as handed out: `commit()` (and auto-commit) commits after them.
   */
  async poll(): Promise<ConsumedRecord[]> {
    const records = await this.#poll();
    for (const r of records) this.#consumed.set(tpKey(r), r.offset + 1);
    return records;
  }

  async #poll(): Promise<ConsumedRecord[]> {
    if (this.#memberId === undefined) await this.join();
    await this.#rebalancing;
    const maxWaitMs = this.options.maxWaitMs ?? CONSUMER_FETCH_WAIT_MS;
    const url = endpointUrl(
      ENDPOINTS.pollGroup,
      { group: this.options.group, member: this.#memberId! },
      {
        memberEpoch: this.#memberEpoch,
        maxWaitMs,
        maxBytes: this.options.maxBytes ?? queryDefault(ENDPOINTS.pollGroup, 'maxBytes'),
        autoCommit: this.options.autoCommit !== false,
      },
    );
    this.#polling = true;
    let response: Response;
    try {
      response = await this.#connection.request('GET', url, {
        signal: this.#abort.signal,
        timeoutMs: maxWaitMs + 30_000,
      });
    } finally {
      this.#polling = false;
    }
    if (response.status >= 400) {
      const error = errorFromResponse(response);
      // The member is gone (its session expired): join again, as a new member.
      if (error.code === 'UNKNOWN_MEMBER_ID' || error.code === 'FENCED_MEMBER_EPOCH') await this.#rejoin();
      throw error;
    }
    const poll = decodeGroupPoll(response.body);
    await this.#reconcile(poll.memberEpoch, poll.assignment);
    const records: ConsumedRecord[] = [];
    for (const p of poll.partitions) {
      const k = tpKey(p);
      if (!this.#held.has(k) || this.#paused.has(k)) continue;
      const page = decodeFetchResponse(p.fetch, p.offset);
      for (const r of page.records) records.push(consumedRecord(p.topic, p.partition, r));
    }
    return records;
  }

  async #rejoin(): Promise<void> {
    const lost = [...this.#held];
    this.#held = new Set();
    this.#consumed.clear();
    this.#buffer = [];
    this.#memberId = undefined;
    if (lost.length > 0) await this.options.onRebalance?.({ assigned: [], revoked: lost.map(tpOf) });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ConsumedRecord> {
    const retries = this.options.retries ?? 5;
    const initialMs = this.options.retryBackoffMs ?? 100;
    const backoff = new Backoff({ initialMs, maxMs: initialMs * 32 }, new SeededRandom(7));
    while (!this.#closed) {
      if (this.#buffer.length === 0) {
        try {
          this.#buffer = await this.#poll();
          backoff.reset();
        } catch (error) {
          if (this.#closed) return;
          const again =
            error instanceof SluiceError &&
            (error.retriable || error.code === 'UNKNOWN_MEMBER_ID' || error.code === 'FENCED_MEMBER_EPOCH');
          if (!again || backoff.attempts >= retries) throw error;
          await new Promise((resolve) => setTimeout(resolve, backoff.next()));
          continue;
        }
      }
      const record = this.#buffer.shift();
      if (record === undefined) continue;
      const k = tpKey(record);
      if (!this.#held.has(k)) continue;
      this.#consumed.set(k, record.offset + 1);
      yield record;
    }
  }

  /** Leaves the group (its partitions go to the others at once) and closes the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    try {
      if (this.#memberId !== undefined) {
        if (this.options.autoCommit !== false) await this.#commitConsumed([...this.#held]).catch(() => {});
        const response = await this.#connection.request('DELETE', this.#memberPath(ENDPOINTS.leaveGroup), {
          timeoutMs: 10_000,
        });
        if (response.status >= 400 && response.status !== 404) throw errorFromResponse(response);
      }
    } finally {
      this.#abort.abort();
      this.#connection.close();
    }
  }

  /** `await using consumer = new Consumer(...)` leaves the group and closes at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
