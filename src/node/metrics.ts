import { Registry } from 'prom-client';
import type {
  Counter,
  Family,
  Gauge,
  Histogram,
  HistogramSpec,
  MetricSpec,
  MetricsRegistry,
  Sample,
} from '../common/metrics.js';

/**
 * The metrics of one node in a prom-client `Registry` of its own (never the global one), so that
 * several nodes in one process, and tests, keep their numbers apart.
 *
 * prom-client's own labelled children hash their labels on every `inc` and `observe`; the hot
 * paths here cannot pay that per request. So each child is a plain cell (a number, or a
 * histogram's bucket counts) that the components hold and bump, and the registry reads the cells
 * only when scraped, through metric objects in the shape prom-client renders.
 */
export class PromMetricsRegistry implements MetricsRegistry {
  readonly #registry = new Registry();
  readonly #families = new Map<string, { kind: string; family: unknown }>();

  get contentType(): string {
    return this.#registry.contentType;
  }

  render(): Promise<string> {
    return this.#registry.metrics();
  }

  counter(spec: MetricSpec): Family<Counter> {
    return this.#declare(spec, 'counter', () => new CellFamily(spec, 'counter', () => new CounterCell()));
  }

  gauge(spec: MetricSpec): Family<Gauge> {
    return this.#declare(spec, 'gauge', () => new CellFamily(spec, 'gauge', () => new CounterCell()));
  }

  histogram(spec: HistogramSpec): Family<Histogram> {
    return this.#declare(spec, 'histogram', () => new HistogramFamily(spec));
  }

  collectedGauge(spec: MetricSpec, collect: (sample: Sample) => void): void {
    this.#declare(spec, 'collected', () => new CollectedGauge(spec, collect));
  }

  #declare<T extends PromMetric>(spec: MetricSpec, kind: string, make: () => T): T {
    const known = this.#families.get(spec.name);
    if (known) {
      // A collected gauge has one collector: declaring it twice would drop one of them silently.
      if (known.kind !== kind || kind === 'collected')
        throw new Error(`metric ${spec.name} is already declared as a ${known.kind}`);
      return known.family as T;
    }
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(spec.name)) throw new Error(`bad metric name ${spec.name}`);
    const family = make();
    this.#registry.registerMetric(family as never);
    this.#families.set(spec.name, { kind, family });
    return family;
  }
}

/** What prom-client's registry asks of a metric when it renders it. */
interface PromMetric {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator: string;
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: PromValue[] }>;
}

interface PromValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

class CounterCell implements Counter, Gauge {
  value = 0;
  inc(amount = 1): void {
    this.value += amount;
  }
  dec(amount = 1): void {
    this.value -= amount;
  }
  set(value: number): void {
    this.value = value;
  }
}

class HistogramCell implements Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }
  observe(value: number): void {
    const bounds = this.bounds;
    // Linear: a dozen or so bounds, and small values (the common case) stop early.
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }
}

/** The children of one family, by their label values. */
abstract class Children<C> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum';
  readonly labelNames: readonly string[];
  protected readonly cells = new Map<string, { labels: Record<string, string>; cell: C }>();

  constructor(spec: MetricSpec) {
    this.name = spec.name;
    this.help = spec.help;
    this.labelNames = spec.labelNames ?? [];
  }

  /** Called by each subclass once it can make cells: a family without labels exports 0 from the start. */
  protected init(): void {
    if (this.labelNames.length === 0) this.labels();
  }

  protected abstract make(): C;

  labels(...values: string[]): C {
    if (values.length !== this.labelNames.length)
      throw new Error(`${this.name} takes ${this.labelNames.length} label values, not ${values.length}`);
    const key = values.join('\u0000');
    let entry = this.cells.get(key);
    if (!entry) {
      const labels: Record<string, string> = {};
      for (let i = 0; i < values.length; i++) labels[this.labelNames[i]!] = values[i]!;
      entry = { labels, cell: this.make() };
      this.cells.set(key, entry);
    }
    return entry.cell;
  }

  remove(...values: string[]): void {
    this.cells.delete(values.join('\u0000'));
  }
}

class CellFamily extends Children<CounterCell> implements PromMetric {
  constructor(
    spec: MetricSpec,
    readonly type: 'counter' | 'gauge',
    private readonly makeCell: () => CounterCell,
  ) {
    super(spec);
    this.init();
  }

  protected make(): CounterCell {
    return this.makeCell();
  }

  async get() {
    const values: PromValue[] = [];
    for (const { labels, cell } of this.cells.values()) values.push({ labels, value: cell.value });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

class HistogramFamily extends Children<HistogramCell> implements PromMetric {
  readonly type = 'histogram';
  readonly #bounds: readonly number[];

  constructor(spec: HistogramSpec) {
    const bounds = [...spec.buckets];
    for (let i = 1; i < bounds.length; i++)
      if (!(bounds[i]! > bounds[i - 1]!)) throw new Error(`${spec.name}: buckets must ascend`);
    super(spec);
    this.#bounds = bounds;
    this.init();
  }

  protected make(): HistogramCell {
    return new HistogramCell(this.#bounds);
  }

  async get() {
    const values: PromValue[] = [];
    for (const { labels, cell } of this.cells.values()) {
      let cumulative = 0;
      for (let i = 0; i < cell.bounds.length; i++) {
        cumulative += cell.counts[i]!;
        values.push({
          labels: { ...labels, le: cell.bounds[i]! },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      }
      values.push({
        labels: { ...labels, le: '+Inf' },
        value: cell.count,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: cell.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

class CollectedGauge implements PromMetric {
  readonly name: string;
  readonly help: string;
  readonly type = 'gauge';
  readonly aggregator = 'sum';
  readonly #labelNames: readonly string[];

  constructor(
    spec: MetricSpec,
    private readonly collect: (sample: Sample) => void,
  ) {
    this.name = spec.name;
    this.help = spec.help;
    this.#labelNames = spec.labelNames ?? [];
  }

  async get() {
    // Samples with the same label values add up (partitions past the series limit share one).
    const byKey = new Map<string, PromValue>();
    this.collect((labelValues, value) => {
      if (labelValues.length !== this.#labelNames.length)
        throw new Error(`${this.name} takes ${this.#labelNames.length} label values`);
      const key = labelValues.join('\u0000');
      const known = byKey.get(key);
      if (known) {
        known.value += value;
        return;
      }
      const labels: Record<string, string> = {};
      for (let i = 0; i < labelValues.length; i++) labels[this.#labelNames[i]!] = labelValues[i]!;
      byKey.set(key, { labels, value });
    });
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: [...byKey.values()],
    };
  }
}
