import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  CORRUPT_BATCHES,
  type Counter,
  type Family,
  type Gauge,
  type Histogram,
  LATENCY_BUCKETS_SECONDS,
  type Metrics,
} from '../common/metrics.js';
import type { Endpoint } from '../protocol/api.js';

/** The routes a node forwards to a partition's leader (`forward.ts`). */
const FORWARDED_ROUTES = ['producePartition', 'fetch', 'offsets', 'group'] as const;
/**
 * How a forwarded request ended: `answered` (the leader's answer passed on), `unreachable` (no
 * answer from the leader: LEADER_NOT_AVAILABLE), `refused` (not sent: the forwarding limit or a
 * shutdown), `abandoned` (the client went away before the leader answered).
 */
const FORWARD_OUTCOMES = ['answered', 'unreachable', 'refused', 'abandoned'] as const;
export type ForwardOutcome = (typeof FORWARD_OUTCOMES)[number];

/** A request slower than this (past the wait a long-poll asked for) is logged at info. */
export const SLOW_REQUEST_MS_DEFAULT = 1000;

/** What an observer reads of a request: a fastify request, or what the HTTP/2 fast path knows. */
export interface ObservedRequest {
  readonly query: unknown;
  readonly log: { info(fields: object, message: string): void };
}

/**
 * The HTTP layer's metrics: request latency by route (and acks, for produce) and status, requests
 * in flight, follow streams, and stored batches that do not decode. (Connections by protocol are
 * the server's: `server.ts`.)
 * Each route gets its observer once (`observer`); per request it finds its histogram child in a
 * small map keyed by a number, and otherwise only adds.
 */
export class HttpMetrics {
  readonly inFlight: Gauge;
  readonly followStreams: Gauge;
  readonly corruptDecoded: Counter;
  readonly #produce: Family<Histogram>;
  readonly #fetch: Family<Histogram>;
  readonly #admin: Family<Histogram>;
  readonly #forwarded: Record<string, Record<ForwardOutcome, Counter>>;
  readonly #slowRequestMs: number;
  /** Follow streams, whose duration is the stream's, not a request's latency. */
  readonly #streams = new WeakSet<FastifyRequest>();

  constructor(options: { slowRequestMs?: number }, metrics: Metrics) {
    this.#slowRequestMs = options.slowRequestMs ?? SLOW_REQUEST_MS_DEFAULT;
    const histogram = (name: string, help: string, labelNames: string[]) =>
      metrics.histogram({ name, help, labelNames, buckets: LATENCY_BUCKETS_SECONDS });
    this.#produce = histogram(
      'sluice_produce_request_duration_seconds',
      'Produce requests from the first byte to the answer sent, by route, acks and status code',
      ['route', 'acks', 'status'],
    );
    this.#fetch = histogram(
      'sluice_fetch_request_duration_seconds',
      'Fetch and offsets requests (not follow streams), long-poll waits included, by route and status code',
      ['route', 'status'],
    );
    this.#admin = histogram(
      'sluice_admin_request_duration_seconds',
      'Every other request of the public API, by route and status code',
      ['route', 'status'],
    );
    this.inFlight = metrics
      .gauge({ name: 'sluice_http_requests_in_flight', help: 'Requests received and not yet answered' })
      .labels();
    this.followStreams = metrics
      .gauge({ name: 'sluice_follow_streams', help: 'Follow streams open now' })
      .labels();
    this.corruptDecoded = metrics.counter(CORRUPT_BATCHES).labels('decode');
    const forwarded = metrics.counter({
      name: 'sluice_forwarded_requests_total',
      help: 'Requests for a partition another node leads, passed to that leader, by route and outcome',
      labelNames: ['route', 'outcome'],
    });
    this.#forwarded = Object.fromEntries(
      FORWARDED_ROUTES.map((route) => [
        route,
        Object.fromEntries(FORWARD_OUTCOMES.map((outcome) => [outcome, forwarded.labels(route, outcome)])),
      ]),
    ) as Record<string, Record<ForwardOutcome, Counter>>;
  }

  /** Counts one forwarded request once its outcome is known. */
  forwarded(route: (typeof FORWARDED_ROUTES)[number], outcome: ForwardOutcome): void {
    this.#forwarded[route]![outcome].inc();
  }

  /** Marks a request as a follow stream: counted as one while it is open, not as a latency. */
  streamOpened(request: FastifyRequest): () => void {
    this.#streams.add(request);
    this.followStreams.inc();
    return () => this.followStreams.dec();
  }

  /**
   * The onResponse hook of one endpoint's route: the latency into the route's histogram, and a
   * slow request into the log (at info, with fields only).
   */
  observer(
    endpoint: Endpoint,
  ): (request: ObservedRequest, reply: Pick<FastifyReply, 'elapsedTime' | 'statusCode'>) => void {
    const route = endpoint.id;
    const produce = route === 'produce' || route === 'producePartition';
    const fetch = route === 'fetch' || route === 'offsets';
    const family = produce ? this.#produce : fetch ? this.#fetch : this.#admin;
    const children = new Map<number, Histogram>();
    const child = (status: number, acks: number): Histogram => {
      const key = status * 4 + acks;
      let histogram = children.get(key);
      if (!histogram) {
        histogram = produce
          ? family.labels(route, ACKS_LABELS[acks]!, String(status))
          : family.labels(route, String(status));
        children.set(key, histogram);
      }
      return histogram;
    };
    const slowMs = this.#slowRequestMs;
    return (request, reply) => {
      if (fetch && this.#streams.has(request as FastifyRequest)) return;
      const elapsedMs = reply.elapsedTime;
      const query = request.query as { acks?: string; maxWaitMs?: number } | undefined;
      const acks = produce ? acksIndex(query?.acks) : 0;
      child(reply.statusCode, acks).observe(elapsedMs / 1000);
      const waitedMs = fetch ? (query?.maxWaitMs ?? 0) : 0;
      if (elapsedMs - waitedMs > slowMs) {
        request.log.info(
          {
            route,
            status: reply.statusCode,
            durationMs: Math.round(elapsedMs),
            ...(produce ? { acks: ACKS_LABELS[acks] } : {}),
          },
          'slow request',
        );
      }
    };
  }
}

const ACKS_LABELS = ['all', '0', '1'] as const;

/** The query's acks as an index of ACKS_LABELS; absent is the endpoint's default, all. */
function acksIndex(acks: string | undefined): number {
  return acks === '0' ? 1 : acks === '1' ? 2 : 0;
}
