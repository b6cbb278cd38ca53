import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { dualProtocolServerFactory } from '../../src/http/server.js';
import { PromMetricsRegistry } from '../../src/node/metrics.js';
import { startNode } from '../../src/node/node.js';
import { encodeBatch } from '../../src/protocol/batch.js';
import { SimulatedFileSystem } from '../../src/storage/fs.js';
import { type Harness, makeHarness, packr } from './harness.js';
import { type MetricFamily, parsePrometheusText, sampleValue } from './prometheus-text.js';

/**
 * /metrics under a scripted workload: every count is exact (records and bytes in and out per
 * partition, requests per route, acks and status, append groups, damaged batches, storage
 * errors), the offsets and sizes read at scrape time match the log, histograms are filled, and
 * the exposition parses with a strict reader of the Prometheus text format.
 */
let h: Harness;
afterEach(async () => {
  await h?.close();
});

async function scrape(): Promise<Map<string, MetricFamily>> {
  const response = await h.app.inject({ method: 'GET', url: '/metrics' });
  expect(response.statusCode).toBe(200);
  expect(response.headers['content-type']).toContain('text/plain; version=0.0.4');
  return parsePrometheusText(response.body);
}

const json = { 'content-type': 'application/json' };
const produce = (url: string, records: object[]) =>
  h.app.inject({ method: 'POST', url, headers: json, payload: JSON.stringify({ records }) });
const p = (topic: string, partition: number) => ({ topic, partition: String(partition) });

describe('/metrics', () => {
  it('counts records and bytes in and out, requests by route, acks and status, exactly', async () => {
    h = await makeHarness({}, {}, { metrics: new PromMetricsRegistry() });
    await h.broker.admin.createTopic({ name: 'm', partitions: 2 });
    const empty = await scrape();
    expect(sampleValue(empty, 'sluice_log_end_offset', p('m', 0))).toBe(0);
    expect(sampleValue(empty, 'sluice_records_in_total', p('m', 0))).toBeUndefined();

    // Partition 0: 3 records (acks=1), then a pre-built batch of 4 (acks=all, the default).
    expect(
      (
        await produce('/v1/topics/m/partitions/0/records?acks=1', [
          { value: 'a' },
          { value: 'b' },
          { value: 'c' },
        ])
      ).statusCode,
    ).toBe(200);
    const batch = encodeBatch([1, 2, 3, 4].map((i) => ({ value: Buffer.from(`v${i}`), timestamp: 1 })));
    const batches = await h.app.inject({
      method: 'POST',
      url: '/v1/topics/m/partitions/0/records',
      headers: { 'content-type': 'application/vnd.sluice.batches' },
      payload: batch,
    });
    expect(batches.statusCode).toBe(200);
    // Partition 1: one record with acks=0, then two with acks=1 through the topic route; appends to
    // one partition are serialized, so the acks=0 one has landed when the second answer comes.
    expect((await produce('/v1/topics/m/partitions/1/records?acks=0', [{ value: 'z' }])).statusCode).toBe(
      202,
    );
    expect(
      (
        await produce('/v1/topics/m/records?acks=1', [
          { value: 'x', partition: 1 },
          { value: 'y', partition: 1 },
        ])
      ).statusCode,
    ).toBe(200);
    // A refused produce: an unknown topic.
    expect((await produce('/v1/topics/nope/records?acks=1', [{ value: 'n' }])).statusCode).toBe(404);

    const fetched = await h.app.inject({
      method: 'GET',
      url: '/v1/topics/m/partitions/0/records?offset=0',
      headers: { accept: 'application/vnd.msgpack' },
    });
    expect(fetched.statusCode).toBe(200);
    const fetchedJson = await h.app.inject({
      method: 'GET',
      url: '/v1/topics/m/partitions/1/records?offset=1',
    });
    expect(JSON.parse(fetchedJson.body).records).toHaveLength(2);
    expect((await h.app.inject({ method: 'GET', url: '/v1/topics/m/partitions/1/offsets' })).statusCode).toBe(
      200,
    );

    const m = await scrape();
    const size0 = statSync(join(h.dataDir, 'm-0', '00000000000000000000.log')).size;
    const size1 = statSync(join(h.dataDir, 'm-1', '00000000000000000000.log')).size;
    expect(sampleValue(m, 'sluice_records_in_total', p('m', 0))).toBe(7);
    expect(sampleValue(m, 'sluice_records_in_total', p('m', 1))).toBe(3);
    expect(sampleValue(m, 'sluice_bytes_in_total', p('m', 0))).toBe(size0);
    expect(sampleValue(m, 'sluice_bytes_in_total', p('m', 1))).toBe(size1);
    // Partition 0: both batches; partition 1 from offset 1: the batch of two only.
    expect(sampleValue(m, 'sluice_records_out_total', p('m', 0))).toBe(7);
    expect(sampleValue(m, 'sluice_bytes_out_total', p('m', 0))).toBe(size0);
    expect(sampleValue(m, 'sluice_records_out_total', p('m', 1))).toBe(2);

    expect(sampleValue(m, 'sluice_log_start_offset', p('m', 0))).toBe(0);
    expect(sampleValue(m, 'sluice_log_end_offset', p('m', 0))).toBe(7);
    expect(sampleValue(m, 'sluice_high_watermark', p('m', 1))).toBe(3);
    expect(sampleValue(m, 'sluice_log_segments', p('m', 0))).toBe(1);
    expect(sampleValue(m, 'sluice_log_size_bytes', p('m', 1))).toBe(size1);
    expect(sampleValue(m, 'sluice_partitions')).toBe(2);
    expect(sampleValue(m, 'sluice_partitions_offline')).toBe(0);

    const produceCount = (labels: Record<string, string>) =>
      sampleValue(m, 'sluice_produce_request_duration_seconds_count', labels);
    expect(produceCount({ route: 'producePartition', acks: '1', status: '200' })).toBe(1);
    expect(produceCount({ route: 'producePartition', acks: 'all', status: '200' })).toBe(1);
    expect(produceCount({ route: 'producePartition', acks: '0', status: '202' })).toBe(1);
    expect(produceCount({ route: 'produce', acks: '1', status: '200' })).toBe(1);
    expect(produceCount({ route: 'produce', acks: '1', status: '404' })).toBe(1);
    expect(
      sampleValue(m, 'sluice_produce_request_duration_seconds_sum', {
        route: 'produce',
        acks: '1',
        status: '200',
      }),
    ).toBeGreaterThan(0);
    expect(
      sampleValue(m, 'sluice_fetch_request_duration_seconds_count', { route: 'fetch', status: '200' }),
    ).toBe(2);
    expect(
      sampleValue(m, 'sluice_fetch_request_duration_seconds_count', { route: 'offsets', status: '200' }),
    ).toBe(1);

    // Every append was written in some group: the groups hold the four appends and every byte.
    expect(sampleValue(m, 'sluice_log_append_group_appends_sum')).toBe(4);
    expect(sampleValue(m, 'sluice_log_append_group_bytes_sum')).toBe(size0 + size1);
    expect(sampleValue(m, 'sluice_log_append_group_appends_count')).toBeGreaterThanOrEqual(1);
    expect(sampleValue(m, 'sluice_corrupt_batches_total', { check: 'crc' })).toBe(0);
    expect(sampleValue(m, 'sluice_storage_errors_total', { operation: 'write' })).toBe(0);
    // Only the scrape itself is in flight, and no fetch waits.
    expect(sampleValue(m, 'sluice_http_requests_in_flight')).toBe(1);
    expect(sampleValue(m, 'sluice_fetch_waiting')).toBe(0);
  });

  it('counts a waiting long-poll and the request in flight until it is answered', async () => {
    h = await makeHarness({}, {}, { metrics: new PromMetricsRegistry() });
    await h.broker.admin.createTopic({ name: 'w', partitions: 1 });
    const waiting = h.app.inject({
      method: 'GET',
      url: '/v1/topics/w/partitions/0/records?offset=0&maxWaitMs=10000',
    });
    while (h.broker.fetch.waiting === 0) await new Promise((r) => setTimeout(r, 5));
    const during = await scrape();
    expect(sampleValue(during, 'sluice_fetch_waiting')).toBe(1);
    expect(sampleValue(during, 'sluice_http_requests_in_flight')).toBe(2);
    expect((await produce('/v1/topics/w/records?acks=1', [{ value: 'wake' }])).statusCode).toBe(200);
    expect(JSON.parse((await waiting).body).records).toHaveLength(1);
    const after = await scrape();
    expect(sampleValue(after, 'sluice_fetch_waiting')).toBe(0);
    expect(sampleValue(after, 'sluice_http_requests_in_flight')).toBe(1);
    expect(
      sampleValue(after, 'sluice_fetch_request_duration_seconds_count', { route: 'fetch', status: '200' }),
    ).toBe(1);
    expect(sampleValue(after, 'sluice_records_out_total', p('w', 0))).toBe(1);
  });

  it('fills the fsync histogram under flush.policy=sync', async () => {
    h = await makeHarness({ 'flush.policy': 'sync' }, {}, { metrics: new PromMetricsRegistry() });
    await h.broker.admin.createTopic({ name: 's', partitions: 1 });
    const before = sampleValue(await scrape(), 'sluice_log_fsync_duration_seconds_count')!;
    for (let i = 0; i < 3; i++) await h.broker.produce.records('s', [{ value: Buffer.from('x') }], 1);
    const after = await scrape();
    // One group commit per sequential append at least.
    expect(sampleValue(after, 'sluice_log_fsync_duration_seconds_count')! - before).toBeGreaterThanOrEqual(3);
    expect(sampleValue(after, 'sluice_log_fsync_duration_seconds_bucket', { le: '+Inf' })).toBe(
      sampleValue(after, 'sluice_log_fsync_duration_seconds_count'),
    );
  });

  it('counts each read that meets a damaged stored batch, on the CRC check', async () => {
    h = await makeHarness({}, {}, { metrics: new PromMetricsRegistry() });
    await h.broker.admin.createTopic({ name: 'd', partitions: 1 });
    const segment = join(h.dataDir, 'd-0', '00000000000000000000.log');
    const starts: number[] = [];
    for (let b = 0; b < 2; b++) {
      starts.push(statSync(segment).size);
      await h.broker.produce.records('d', [{ value: Buffer.from(`value-${b}`), timestamp: 1 }], 1);
    }
    const at = starts[1]! + 90;
    const fd = openSync(segment, 'r+');
    writeSync(fd, Buffer.from([readFileSync(segment)[at]! ^ 0x20]), 0, 1, at);
    closeSync(fd);
    // The first read stops before the damaged batch; the second starts at it and is refused.
    expect((await h.app.inject({ url: '/v1/topics/d/partitions/0/records?offset=0' })).statusCode).toBe(200);
    expect((await h.app.inject({ url: '/v1/topics/d/partitions/0/records?offset=1' })).statusCode).toBe(400);
    const m = await scrape();
    expect(sampleValue(m, 'sluice_corrupt_batches_total', { check: 'crc' })).toBe(2);
    expect(sampleValue(m, 'sluice_corrupt_batches_total', { check: 'decode' })).toBe(0);
    expect(sampleValue(m, 'sluice_records_out_total', p('d', 0))).toBe(1);
  });

  it('counts a failed fsync as a storage error and its partition as offline', async () => {
    const fs = new SimulatedFileSystem();
    h = await makeHarness({ 'flush.policy': 'sync' }, {}, { metrics: new PromMetricsRegistry(), fs });
    await h.broker.admin.createTopic({ name: 'f', partitions: 2 });
    fs.fault = (operation, path) =>
      operation === 'sync' && path.includes('/f-1/') ? new Error('EIO') : undefined;
    await expect(
      h.broker.produce.records('f', [{ value: Buffer.from('x'), partition: 1 }], 1),
    ).rejects.toThrow();
    const m = await scrape();
    expect(sampleValue(m, 'sluice_storage_errors_total', { operation: 'write' })).toBe(1);
    expect(sampleValue(m, 'sluice_partitions_offline')).toBe(1);
  });

  it('keeps at most the configured per-partition series and adds the rest up under *', async () => {
    h = await makeHarness({}, { partitionSeriesMax: 2 }, { metrics: new PromMetricsRegistry() });
    await h.broker.admin.createTopic({ name: 'many', partitions: 4 });
    for (let partition = 0; partition < 4; partition++)
      await h.broker.produce.records('many', [{ value: Buffer.from('x'), partition }], 1);
    const m = await scrape();
    const own = m
      .get('sluice_records_in_total')!
      .samples.map((s) => `${s.labels.topic}/${s.labels.partition}`);
    expect(own.sort()).toEqual(['*/*', 'many/0', 'many/1']);
    expect(sampleValue(m, 'sluice_records_in_total', { topic: '*', partition: '*' })).toBe(2);
    expect(sampleValue(m, 'sluice_log_segments', { topic: '*', partition: '*' })).toBe(2);
    // Offsets do not add up: the partitions past the limit have none.
    expect(m.get('sluice_log_end_offset')!.samples).toHaveLength(2);

    // A deleted topic's series go, and its places are free for the next topic.
    await h.broker.admin.deleteTopic('many');
    await h.broker.admin.createTopic({ name: 'next', partitions: 1 });
    await h.broker.produce.records('next', [{ value: Buffer.from('x') }], 1);
    const later = await scrape();
    const series = later.get('sluice_records_in_total')!.samples.map((s) => s.labels.topic);
    expect(series.sort()).toEqual(['*', 'next']);
  });

  it('is not served when the app has no registry', async () => {
    h = await makeHarness();
    expect((await h.app.inject({ url: '/metrics' })).statusCode).toBe(404);
  });
});

describe('docs/observability.md and docs/grafana/sluice.json', () => {
  it('list exactly the metrics a node exports, and the dashboard queries only those', async () => {
    // A real node: its storage, broker, HTTP server and metadata quorum all export theirs.
    const dataDir = mkdtempSync(join(tmpdir(), 'sluice-metrics-'));
    const node = await startNode({ dataDir, port: 0, logLevel: 'silent' });
    let exported: string[];
    try {
      const response = await fetch(`http://127.0.0.1:${node.address.port}/metrics`);
      expect(response.status).toBe(200);
      exported = [...parsePrometheusText(await response.text()).keys()].sort();
    } finally {
      await node.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
    const root = join(import.meta.dirname, '..', '..');
    const doc = readFileSync(join(root, 'docs', 'observability.md'), 'utf8');
    // The first column of the metric tables.
    const documented = [...doc.matchAll(/^\| `(sluice_[a-z_]+)` \|/gm)].map((m) => m[1]!).sort();
    expect(documented).toEqual(exported);
    const dashboard = JSON.parse(readFileSync(join(root, 'docs', 'grafana', 'sluice.json'), 'utf8'));
    const expressions: string[] = [];
    const visit = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(visit);
      else if (node && typeof node === 'object')
        for (const [key, value] of Object.entries(node)) {
          if ((key === 'expr' || key === 'query') && typeof value === 'string') expressions.push(value);
          else visit(value);
        }
    };
    visit(dashboard);
    const used = new Set(
      expressions.flatMap((e) =>
        [...e.matchAll(/sluice_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')),
      ),
    );
    for (const name of used) expect(exported).toContain(name);
    // Every exported metric is on the dashboard somewhere.
    expect([...used].sort()).toEqual(exported);
  });
});

describe('the Prometheus text reader of these tests', () => {
  it('refuses what a Prometheus server would refuse', () => {
    const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n';
    expect(sampleValue(parsePrometheusText(ok), 'a_total', { x: '1' })).toBe(2);
    for (const bad of [
      'a_total 1\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 2\n',
      '# HELP a A.\n# TYPE a counter\na 1\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n',
      '# HELP h A.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      ok.trimEnd(),
    ])
      expect(() => parsePrometheusText(bad)).toThrow();
    expect(packr).toBeDefined();
  });
});
