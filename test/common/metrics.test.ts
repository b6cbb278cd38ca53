import { describe, expect, it } from 'vitest';
import { noopMetrics, OTHER_PARTITIONS, PartitionSeries } from '../../src/common/metrics.js';
import { PromMetricsRegistry } from '../../src/node/metrics.js';
import { parsePrometheusText, sampleValue } from '../http/prometheus-text.js';

/** The metrics interface: the series limit, the registry's families and what it renders. */
describe('PartitionSeries', () => {
  it('admits partitions up to the limit, puts later ones under *, and frees a forgotten topic’s places', () => {
    const series = new PartitionSeries(2);
    expect(series.labelsOf('a', 0)).toEqual(['a', '0']);
    expect(series.labelsOf('a', 1)).toEqual(['a', '1']);
    expect(series.labelsOf('b', 0)).toBe(OTHER_PARTITIONS);
    expect(series.labelsOf('a', 0)).toEqual(['a', '0']);
    expect(series.has('b', 0)).toBe(false);
    expect(series.forget('a').sort()).toEqual([0, 1]);
    expect(series.labelsOf('b', 0)).toEqual(['b', '0']);
    expect(() => new PartitionSeries(-1)).toThrow();
  });
});

describe('PromMetricsRegistry', () => {
  it('returns the same family for the same name, refuses another type, renders valid text', async () => {
    const registry = new PromMetricsRegistry();
    const spec = { name: 'sluice_test_total', help: 'A test counter', labelNames: ['k'] };
    registry.counter(spec).labels('x').inc(2);
    registry.counter(spec).labels('x').inc();
    expect(() => registry.gauge(spec)).toThrow(/already declared/);
    expect(() => registry.counter({ ...spec, name: 'bad name' })).toThrow();
    expect(() => registry.counter(spec).labels()).toThrow(/label values/);
    const h = registry.histogram({
      name: 'sluice_test_seconds',
      help: 'A test histogram',
      buckets: [0.1, 1],
    });
    for (const v of [0.05, 0.5, 5]) h.labels().observe(v);
    registry.collectedGauge({ name: 'sluice_test_items', help: 'Collected', labelNames: ['k'] }, (sample) => {
      sample(['a'], 1);
      sample(['a'], 2);
    });
    const text = parsePrometheusText(await registry.render());
    expect(sampleValue(text, 'sluice_test_total', { k: 'x' })).toBe(3);
    expect(sampleValue(text, 'sluice_test_seconds_bucket', { le: '0.1' })).toBe(1);
    expect(sampleValue(text, 'sluice_test_seconds_bucket', { le: '1' })).toBe(2);
    expect(sampleValue(text, 'sluice_test_seconds_bucket', { le: '+Inf' })).toBe(3);
    expect(sampleValue(text, 'sluice_test_seconds_sum')).toBeCloseTo(5.55);
    // Samples with the same labels add up.
    expect(sampleValue(text, 'sluice_test_items', { k: 'a' })).toBe(3);
    // Two registries never share a number.
    expect(await new PromMetricsRegistry().render()).not.toContain('sluice_test_total');
  });

  it('the no-op metrics take every call and count nothing', () => {
    const counter = noopMetrics.counter({ name: 'x_total', help: 'x', labelNames: ['a'] });
    counter.labels('1').inc();
    counter.remove('1');
    noopMetrics
      .histogram({ name: 'y', help: 'y', buckets: [1] })
      .labels()
      .observe(1);
    noopMetrics.collectedGauge({ name: 'z', help: 'z' }, () => {
      throw new Error('never collected');
    });
  });
});
