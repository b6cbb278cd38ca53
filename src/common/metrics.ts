/**
 * The metrics interface every component counts through. A component receives a `Metrics` as a
 * dependency, declares the families it needs (counters, gauges, histograms by name and label
 * names) and keeps the labelled children it uses on its hot paths, so that a request pays one
 * `inc` or `observe` on a child it already holds: no label object, no lookup, no allocation.
 *
 * The composition root (`node/`) gives each node its own registry; tests that do not look at
 * metrics pass `noopMetrics`. Declaring a family twice under the same name returns the same
 * family, so that every partition log, say, may declare the storage families it shares.
 *
 * Names follow Prometheus conventions: `sluice_` first, the unit last (`_seconds`, `_bytes`),
 * counters end in `_total`. docs/observability.md lists every metric.
 */

export interface MetricSpec<L extends string = string> {
  name: string;
  help: string;
  /** Label names, in the order `labels(...)` takes their values. */
  labelNames?: readonly L[];
}

export interface HistogramSpec<L extends string = string> extends MetricSpec<L> {
  /** Upper bounds of the buckets, ascending, in the metric's unit. */
  buckets: readonly number[];
}

export interface Counter {
  inc(amount?: number): void;
}

export interface Gauge {
  set(value: number): void;
  inc(amount?: number): void;
  dec(amount?: number): void;
}

export interface Histogram {
  observe(value: number): void;
}

/** A metric family: the child for one combination of label values, given in `labelNames` order. */
export interface Family<T> {
  labels(...values: string[]): T;
  /** Drops the child of these label values (a deleted topic's partition). */
  remove(...values: string[]): void;
}

/** Adds one sample of a scrape-time gauge: label values in `labelNames` order, and the value. */
export type Sample = (labelValues: readonly string[], value: number) => void;

export interface Metrics {
  counter(spec: MetricSpec): Family<Counter>;
  gauge(spec: MetricSpec): Family<Gauge>;
  histogram(spec: HistogramSpec): Family<Histogram>;
  /**
   * A gauge computed when scraped rather than kept up to date: `collect` adds one sample per
   * series (offsets, sizes and counts that the components already hold).
   */
  collectedGauge(spec: MetricSpec, collect: (sample: Sample) => void): void;
}

/** A registry that can also render what it holds, as `/metrics` answers it. */
export interface MetricsRegistry extends Metrics {
  readonly contentType: string;
  render(): Promise<string>;
}

const noopChild: Counter & Gauge & Histogram = {
  inc() {},
  dec() {},
  set() {},
  observe() {},
};
const noopFamily: Family<Counter & Gauge & Histogram> = {
  labels: () => noopChild,
  remove() {},
};

/** Counts nothing: for tests and tools that do not look at metrics. */
export const noopMetrics: Metrics = {
  counter: () => noopFamily,
  gauge: () => noopFamily,
  histogram: () => noopFamily,
  collectedGauge() {},
};

/** Latency buckets in seconds, from 100 µs to 10 s. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Size buckets in bytes, powers of four from 256 B to 64 MiB. */
export const SIZE_BUCKETS_BYTES: readonly number[] = [
  256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
];

/** Count buckets, powers of two from 1 to 4096. */
export const COUNT_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/**
 * The label values of the partitions past the per-partition series limit, added up together: `*`
 * is in no topic name and no partition number, so the series cannot be mistaken for a partition.
 */
export const OTHER_PARTITIONS: readonly [topic: string, partition: string] = ['*', '*'];

/**
 * Bounds the number of per-partition series: the first `seriesMax` partitions seen get their own
 * `topic` and `partition` label values, later ones are counted together under `OTHER_PARTITIONS`
 * (counters and sizes add up there; offsets, which do not add up, are not reported for them).
 * A deleted topic's partitions give their places back (`forget`).
 */
export class PartitionSeries {
  readonly #seriesMax: number;
  readonly #admitted = new Map<string, Set<number>>();
  #count = 0;

  constructor(seriesMax: number) {
    if (!Number.isSafeInteger(seriesMax) || seriesMax < 0)
      throw new Error(`the per-partition series limit ${seriesMax} is not a non-negative integer`);
    this.#seriesMax = seriesMax;
  }

  /** The label values of the partition's series, admitting it when there is room. */
  labelsOf(topic: string, partition: number): readonly [topic: string, partition: string] {
    let partitions = this.#admitted.get(topic);
    if (partitions?.has(partition)) return [topic, String(partition)];
    if (this.#count >= this.#seriesMax) return OTHER_PARTITIONS;
    if (!partitions) this.#admitted.set(topic, (partitions = new Set()));
    partitions.add(partition);
    this.#count++;
    return [topic, String(partition)];
  }

  /** Whether the partition has its own series. */
  has(topic: string, partition: number): boolean {
    return this.#admitted.get(topic)?.has(partition) ?? false;
  }

  /** Gives back the places of a deleted topic; returns the partitions that had one. */
  forget(topic: string): number[] {
    const partitions = this.#admitted.get(topic);
    if (!partitions) return [];
    this.#admitted.delete(topic);
    this.#count -= partitions.size;
    return [...partitions];
  }
}

/**
 * Stored batches found damaged when read: declared here because storage (the CRC check of every
 * read for consumers) and the HTTP layer (records that pass the CRC but do not decode) both count
 * them, under `check`.
 */
export const CORRUPT_BATCHES: MetricSpec = {
  name: 'sluice_corrupt_batches_total',
  help: 'Reads that met a damaged stored batch (it was not served), by the check that found it: crc or decode',
  labelNames: ['check'],
};
