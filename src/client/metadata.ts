import { Backoff } from '../common/backoff.js';
import { type ErrorCode, isSluiceError, SluiceError } from '../common/errors.js';
import type { Random } from '../common/random.js';
import { ENDPOINTS, endpointPath, endpointUrl, type MetadataResponse } from '../protocol/api.js';
import { Connection, decodeResponse, errorFromResponse, type Response } from './connection.js';

/**
 * Answers from the leader that mean the client's view of a partition is out of date: the node no
 * longer leads it, the partition has no leader (or its leader cannot be reached), or the node does
 * not know it (yet). The client looks the topic up again before it retries.
 */
export const STALE_METADATA_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'NOT_LEADER_OR_FOLLOWER',
  'LEADER_NOT_AVAILABLE',
  'UNKNOWN_TOPIC_OR_PARTITION',
]);

/** What the client knows of one topic. */
export interface TopicRoute {
  /**
   * The partition count; undefined when the node serves no metadata and the client did not ask
   * for the topic's description (`describeTopics`).
   */
  readonly partitions: number | undefined;
  /** The leader of each partition, -1 when it has none; empty when the nodes serve no metadata. */
  readonly leaders: readonly number[];
  /** When it was looked up, and when it is to be looked up again (the client's clock). */
  readonly fetchedAtMs: number;
  readonly refreshAtMs: number;
}

export interface ClusterMetadataOptions {
  /** A topic's route is looked up again when it is older than this. */
  maxAgeMs: number;
  requestTimeoutMs: number;
  /** Tries after the first of a lookup that fails with a retriable error (the node is not up yet). */
  retries: number;
  retryBackoffMs: number;
  /**
   * Without metadata (an older node), whether to read the partition count from the topic's
   * description: a producer partitions by it, a consumer names its partition and does not need it.
   */
  describeTopics: boolean;
}

/**
 * Where a client sends each partition's requests: the topics' leaders from `GET /v1/metadata`, and
 * one connection per node (from the answer's `nodes`). The bootstrap node is asked first, then, when
 * it cannot answer, the other nodes it named, so that a client outlives the node it started from.
 * Lookups of one topic that overlap share one request. A bootstrap node of an older release answers
 * 404 there: then the partition count comes from the topic's description and every request goes to
 * the bootstrap node, as before there was metadata; the metadata is asked for again after
 * `maxAgeMs`.
 */
export class ClusterMetadata {
  readonly #bootstrap: Connection;
  readonly #options: ClusterMetadataOptions;
  readonly #random: Random;
  readonly #routes = new Map<string, TopicRoute>();
  readonly #lookups = new Map<string, Promise<TopicRoute>>();
  /** Each node's client endpoint, from the last metadata answer. */
  readonly #nodeUrls = new Map<number, string>();
  /** Connections by origin; the bootstrap node's among them. */
  readonly #connections = new Map<string, Connection>();
  /** Until when the bootstrap node is taken to serve no metadata (it answered 404). */
  #noMetadataUntilMs = 0;

  constructor(bootstrap: Connection, options: ClusterMetadataOptions, random: Random) {
    this.#bootstrap = bootstrap;
    this.#options = options;
    this.#random = random;
    this.#connections.set(new URL(bootstrap.baseUrl).origin, bootstrap);
  }

  /** The topic's route when it is known and not older than `maxAgeMs`; no request. */
  fresh(topic: string, nowMs: number): TopicRoute | undefined {
    const route = this.#routes.get(topic);
    return route && nowMs < route.refreshAtMs ? route : undefined;
  }

  /**
   * The topic's route, looked up when unknown or too old. The first lookup retries with backoff;
   * when a later one fails for any reason but an unknown topic, what was known serves on and the
   * lookup is tried again after `retryBackoffMs`.
   */
  route(topic: string): Promise<TopicRoute> {
    const route = this.fresh(topic, Date.now());
    if (route) return Promise.resolve(route);
    const known = this.#routes.get(topic);
    if (!known) return this.#firstLookup(topic);
    return this.refresh(topic).catch((error: unknown) => {
      if (isSluiceError(error, 'UNKNOWN_TOPIC_OR_PARTITION')) throw error;
      const kept = { ...known, refreshAtMs: Date.now() + this.#options.retryBackoffMs };
      this.#routes.set(topic, kept);
      return kept;
    });
  }

  /**
   * Looks the topic up now (or joins the lookup under way). A failed lookup of a topic known
   * before keeps what was known; an unknown topic is UNKNOWN_TOPIC_OR_PARTITION and forgotten.
   */
  refresh(topic: string): Promise<TopicRoute> {
    let lookup = this.#lookups.get(topic);
    if (!lookup) {
      lookup = this.#lookUp(topic).then(
        (route) => {
          this.#routes.set(topic, route);
          return route;
        },
        (error: unknown) => {
          if (isSluiceError(error, 'UNKNOWN_TOPIC_OR_PARTITION')) this.#routes.delete(topic);
          throw error;
        },
      );
      const settled = () => {
        if (this.#lookups.get(topic) === lookup) this.#lookups.delete(topic);
      };
      lookup.then(settled, settled);
      this.#lookups.set(topic, lookup);
    }
    return lookup;
  }

  /** The connection to the node the client was given. */
  get bootstrap(): Connection {
    return this.#bootstrap;
  }

  /** The topic's route as last looked up, however old; no request. */
  known(topic: string): TopicRoute | undefined {
    return this.#routes.get(topic);
  }

  /** Makes the next `route()` of the topic look it up again (its leader answered that it moved). */
  invalidate(topic: string): void {
    const route = this.#routes.get(topic);
    if (route) this.#routes.set(topic, { ...route, refreshAtMs: 0 });
  }

  /** The connection to the partition's leader; the bootstrap node's when the leader is unknown. */
  leader(route: TopicRoute, partition: number): Connection {
    const url = this.#nodeUrls.get(route.leaders[partition] ?? -1);
    return url === undefined ? this.#bootstrap : this.#connection(url);
  }

  #connection(url: string): Connection {
    let connection = this.#connections.get(url);
    if (!connection)
      this.#connections.set(url, (connection = new Connection(url, this.#bootstrap.transport)));
    return connection;
  }

  close(): void {
    for (const connection of this.#connections.values()) connection.close();
  }

  async #firstLookup(topic: string): Promise<TopicRoute> {
    const initialMs = this.#options.retryBackoffMs;
    const backoff = new Backoff({ initialMs, maxMs: initialMs * 32 }, this.#random);
    for (;;) {
      try {
        return await this.refresh(topic);
      } catch (error) {
        const retriable = error instanceof SluiceError && error.retriable;
        if (!retriable || backoff.attempts >= this.#options.retries) throw error;
        await new Promise((resolve) => setTimeout(resolve, backoff.next()));
      }
    }
  }

  async #lookUp(topic: string): Promise<TopicRoute> {
    const timeoutMs = this.#options.requestTimeoutMs;
    if (Date.now() >= this.#noMetadataUntilMs) {
      const response = await this.#askMetadata(topic);
      if (response.status !== 404)
        return this.#fromMetadata(topic, decodeResponse<MetadataResponse>(response));
      this.#noMetadataUntilMs = Date.now() + this.#options.maxAgeMs;
    }
    if (!this.#options.describeTopics) return this.#route(undefined, []);
    const description = await this.#bootstrap.call<{ partitions: unknown[] }>(
      ENDPOINTS.describeTopic.method,
      endpointPath(ENDPOINTS.describeTopic, { topic }),
      undefined,
      { timeoutMs },
    );
    return this.#route(description.partitions.length, []);
  }

  /**
   * The metadata answer of the first node that gives one: the bootstrap node, then the others in
   * the order of their ids. A node that cannot be reached or answers a retriable problem (it shuts
   * down) is passed over; a 404 of the bootstrap node (no metadata) is the answer.
   */
  async #askMetadata(topic: string): Promise<Response> {
    const path = endpointUrl(ENDPOINTS.metadata, {}, { topics: topic });
    const bootstrapUrl = new URL(this.#bootstrap.baseUrl).origin;
    const others = [...this.#nodeUrls]
      .sort(([a], [b]) => a - b)
      .map(([, url]) => url)
      .filter((url) => url !== bootstrapUrl);
    let failure: unknown;
    for (const connection of [this.#bootstrap, ...others.map((url) => this.#connection(url))]) {
      try {
        const response = await connection.request(ENDPOINTS.metadata.method, path, {
          timeoutMs: this.#options.requestTimeoutMs,
        });
        if (response.status < 400 || (response.status === 404 && connection === this.#bootstrap))
          return response;
        const problem = errorFromResponse(response);
        // Another node without metadata (an older release, in a rolling upgrade) is passed over too.
        if (!problem.retriable && response.status !== 404) throw problem;
        failure = problem;
      } catch (error) {
        if (!(error instanceof SluiceError && error.retriable)) throw error;
        failure = error;
      }
    }
    throw failure;
  }

  #fromMetadata(topic: string, metadata: MetadataResponse): TopicRoute {
    if (!Array.isArray(metadata?.nodes) || !Array.isArray(metadata.topics))
      throw new SluiceError('UNKNOWN_SERVER_ERROR', `${this.#bootstrap.baseUrl} answered no metadata`);
    const scheme = new URL(this.#bootstrap.baseUrl).protocol;
    for (const node of metadata.nodes) this.#nodeUrls.set(node.id, nodeUrl(scheme, node.host, node.port));
    const found = metadata.topics.find((t) => t.name === topic);
    if (!found)
      throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${topic} does not exist`, {
        details: { topic },
      });
    const leaders: number[] = [];
    for (const p of found.partitions) leaders[p.partition] = p.leader;
    return this.#route(found.partitions.length, leaders);
  }

  #route(partitions: number | undefined, leaders: number[]): TopicRoute {
    const nowMs = Date.now();
    return { partitions, leaders, fetchedAtMs: nowMs, refreshAtMs: nowMs + this.#options.maxAgeMs };
  }
}

/**
 * A node's base URL, in the bootstrap address's scheme (a client that reaches the cluster over
 * TLS reaches every node so); an IPv6 host goes in brackets.
 */
function nodeUrl(scheme: string, host: string, port: number): string {
  return `${scheme}//${host.includes(':') ? `[${host}]` : host}:${port}`;
}
