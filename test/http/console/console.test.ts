import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CONSOLE_ASSETS_DIR,
  CONSOLE_CSP,
  type ConsoleAsset,
  loadConsoleAssets,
} from '../../../src/http/console/console.js';
import { PromMetricsRegistry } from '../../../src/node/metrics.js';
import { type Harness, makeHarness } from '../harness.js';
import { parsePrometheusText, sampleValue } from '../prometheus-text.js';

/**
 * The web console as HTTP serves it: the page and every module it imports, with their content
 * types, the cache validators (304 while unchanged) and the security headers (a script policy
 * that allows no inline code); unknown assets and other methods as problems, never reflected as
 * HTML; `/` sending a browser to the console. The console's sources build the page from text only
 * (no HTML parsing sink). The figures the console shows (records, sizes, in and out counts,
 * health) come from the API's answers and agree with `/metrics`. chromium checks the rendering
 * (browser.test.ts).
 */

interface FormatModule {
  topicTotals(description: unknown): Record<string, number>;
  ratesBetween(before: object, after: object): Record<string, number | undefined>;
  addSample(history: object[], sample: object, max?: number): Record<string, number | undefined>[];
  partitionHealth(metadata: unknown): {
    topics: number;
    partitions: number;
    leaderless: number;
    underReplicated: number;
  };
  reassignmentRows(response: unknown): Record<string, string>[];
  showBytes(bytes: Uint8Array | null, mode?: string): { text: string | null; as: string };
  decodeRecord(record: unknown): {
    key: Uint8Array | null;
    value: Uint8Array | null;
    headers: [string, Uint8Array | null][];
  };
  nodeConsoleUrl(node: { host: string; port: number }): string | undefined;
}

let h: Harness;
let format: FormatModule;
const metrics = new PromMetricsRegistry();

beforeAll(async () => {
  h = await makeHarness({}, {}, { metrics });
  format = (await import(pathToFileURL(join(CONSOLE_ASSETS_DIR, 'format.js')).href)) as FormatModule;
});
afterAll(() => h.close());

const get = (url: string, headers: Record<string, string> = {}) =>
  h.app.inject({ method: 'GET', url, headers });

async function json(method: 'GET' | 'POST', url: string, body?: unknown) {
  const response = await h.app.inject({
    method,
    url,
    ...(body === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) }),
  });
  expect(response.statusCode, response.body).toBeLessThan(300);
  return response.json();
}

describe('the console page and assets', () => {
  it('serves the page at /console and /console/ as HTML with the console headers', async () => {
    for (const url of ['/console', '/console/']) {
      const page = await get(url);
      expect(page.statusCode).toBe(200);
      expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(page.headers['cache-control']).toBe('no-cache');
      expect(page.headers.etag).toMatch(/^"[A-Za-z0-9_-]{22}"$/);
      expect(page.headers['content-security-policy']).toBe(CONSOLE_CSP);
      expect(page.headers['x-content-type-options']).toBe('nosniff');
      expect(page.body).toContain('<script type="module" src="/console/assets/app.js"></script>');
    }
    // The policy allows scripts from this origin only: no inline script, no eval.
    expect(CONSOLE_CSP).toContain("script-src 'self';");
    expect(CONSOLE_CSP).not.toContain('unsafe');
  });

  it('serves every file the page links and every module the scripts import, with its content type', async () => {
    const page = (await get('/console')).body;
    const wanted = new Set(
      [...page.matchAll(/(?:src|href)="(\/console\/assets\/[^"]+)"/g)].map((m) => m[1]!),
    );
    const seen = new Set<string>();
    const types: Record<string, string> = {
      js: 'text/javascript; charset=utf-8',
      css: 'text/css; charset=utf-8',
    };
    while (wanted.size > 0) {
      const url = wanted.values().next().value!;
      wanted.delete(url);
      seen.add(url);
      const asset = await get(url);
      expect(asset.statusCode, url).toBe(200);
      expect(asset.headers['content-type'], url).toBe(types[url.split('.').pop()!]);
      expect(asset.headers['cache-control']).toBe('no-cache');
      for (const m of asset.body.matchAll(/^import [^'"]*'\.\/([^']+)'/gm)) {
        const next = `/console/assets/${m[1]}`;
        if (!seen.has(next)) wanted.add(next);
      }
    }
    // Every module of the folder is reachable from the page: none is dead, none missing.
    const files = (await readdir(CONSOLE_ASSETS_DIR)).filter((f) => f !== 'index.html');
    expect([...seen].map((u) => u.slice('/console/assets/'.length)).sort()).toEqual(files.sort());
  });

  it('answers 304 without a body while the asset is unchanged, and the asset when the tag differs', async () => {
    const first = await get('/console/assets/app.js');
    const etag = first.headers.etag as string;
    const again = await get('/console/assets/app.js', { 'if-none-match': etag });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    expect(again.headers.etag).toBe(etag);
    const stale = await get('/console/assets/app.js', { 'if-none-match': '"an-older-release"' });
    expect(stale.statusCode).toBe(200);
    expect(stale.body).toBe(first.body);
    // Different files, different tags.
    expect((await get('/console/assets/api.js')).headers.etag).not.toBe(etag);
  });

  it('refuses unknown assets, other paths and other methods as problem+json, reflecting nothing as HTML', async () => {
    for (const url of [
      '/console/assets/%3Cscript%3Ealert(1)%3C%2Fscript%3E.js',
      '/console/assets/..%2Fconsole.ts',
      '/console/assets/',
      '/console/nothing',
    ]) {
      const answer = await get(url);
      expect(answer.statusCode, url).toBe(404);
      expect(answer.headers['content-type'], url).toMatch(/^application\/problem\+json/);
      expect(answer.json().code).toBe('NOT_FOUND');
    }
    const post = await h.app.inject({ method: 'POST', url: '/console' });
    expect(post.statusCode).toBe(405);
    expect(post.headers.allow).toBe('GET');
    expect(post.json().code).toBe('METHOD_NOT_ALLOWED');
  });

  it('sends a browser from / to the console; an API client gets the usual not-found problem', async () => {
    const browser = await get('/', { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' });
    expect(browser.statusCode).toBe(302);
    expect(browser.headers.location).toBe('/console');
    const client = await get('/', { accept: 'application/json' });
    expect(client.statusCode).toBe(404);
    expect(client.json()).toMatchObject({ code: 'NOT_FOUND', detail: expect.stringContaining('/console') });
  });

  it('builds the page from text only: no console source uses an HTML-parsing sink', async () => {
    const sinks = /innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(|new Function|srcdoc/;
    const files = (await readdir(CONSOLE_ASSETS_DIR)).filter((f) => f.endsWith('.js'));
    expect(files.length).toBeGreaterThan(3);
    for (const file of files) {
      const source = await readFile(join(CONSOLE_ASSETS_DIR, file), 'utf8');
      expect(sinks.exec(source)?.[0], file).toBeUndefined();
    }
    // The page has no inline script or handler the policy would have to allow.
    const page = await readFile(join(CONSOLE_ASSETS_DIR, 'index.html'), 'utf8');
    expect(page).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+=/);
  });

  it('loads the assets once at start and refuses a folder without the page', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-console-assets-'));
    try {
      await writeFile(join(dir, 'app.js'), 'export {};');
      await writeFile(join(dir, 'notes.txt'), 'not served');
      expect(() => loadConsoleAssets(dir)).toThrow(/index\.html is missing/);
      await writeFile(join(dir, 'index.html'), '<!doctype html>');
      const assets: Map<string, ConsoleAsset> = loadConsoleAssets(dir);
      expect([...assets.keys()].sort()).toEqual(['app.js', 'index.html']);
      expect(assets.get('app.js')!.contentType).toBe('text/javascript; charset=utf-8');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the figures the console shows come from the API', () => {
  it('sums records, sizes and in/out counts from the topic description, agreeing with /metrics', async () => {
    await json('POST', '/v1/topics', { name: 'figures', partitions: 2 });
    await json('POST', '/v1/topics/figures/partitions/0/records?acks=1', {
      records: [{ value: 'a' }, { value: 'bb' }, { value: 'ccc' }],
    });
    await json('POST', '/v1/topics/figures/partitions/1/records?acks=1', { records: [{ value: 'dddd' }] });
    await json('GET', '/v1/topics/figures/partitions/0/records?offset=0');
    const description = await json('GET', '/v1/topics/figures');
    const scraped = parsePrometheusText(await metrics.render());
    for (const p of description.partitions) {
      const labels = { topic: 'figures', partition: String(p.partition) };
      expect(p.stats).toEqual({
        segments: sampleValue(scraped, 'sluice_log_segments', labels),
        sizeBytes: sampleValue(scraped, 'sluice_log_size_bytes', labels),
        recordsIn: sampleValue(scraped, 'sluice_records_in_total', labels),
        bytesIn: sampleValue(scraped, 'sluice_bytes_in_total', labels),
        recordsOut: sampleValue(scraped, 'sluice_records_out_total', labels) ?? 0,
        bytesOut: sampleValue(scraped, 'sluice_bytes_out_total', labels) ?? 0,
        // No idempotent producer wrote here (test/producers covers the count).
        producers: 0,
      });
    }
    expect(description.partitions.map((p: { stats: { recordsIn: number } }) => p.stats.recordsIn)).toEqual([
      3, 1,
    ]);
    const totals = format.topicTotals(description);
    expect(totals).toMatchObject({
      partitions: 2,
      records: 4,
      recordsIn: 4,
      recordsOut: 3,
      leaderless: 0,
      unknown: 0,
    });
    expect(totals.sizeBytes).toBe(
      description.partitions[0].stats.sizeBytes + description.partitions[1].stats.sizeBytes,
    );
    expect(totals.sizeBytes).toBeGreaterThan(0);
  });

  it('computes rates from two samples, and none across a counter that went down', () => {
    const before = { timeMs: 1000, recordsIn: 10, bytesIn: 1000, recordsOut: 0, bytesOut: 0 };
    const after = { timeMs: 3000, recordsIn: 30, bytesIn: 5000, recordsOut: 4, bytesOut: 0 };
    expect(format.ratesBetween(before, after)).toEqual({
      recordsIn: 10,
      bytesIn: 2000,
      recordsOut: 2,
      bytesOut: 0,
    });
    // A new leader counts from 0: no negative rate.
    expect(format.ratesBetween(after, { ...before, timeMs: 5000 }).recordsIn).toBeUndefined();
  });

  it('keeps a bounded history per topic and charts the rates between its samples', () => {
    const history: object[] = [];
    const at = (timeMs: number, recordsIn: number, followerLag: number) => ({
      timeMs,
      recordsIn,
      bytesIn: 0,
      recordsOut: 0,
      bytesOut: 0,
      followerLag,
    });
    expect(format.addSample(history, at(0, 0, 0), 3)).toEqual([]);
    expect(format.addSample(history, at(5000, 50, 7), 3).map((r) => [r.recordsIn, r.followerLag])).toEqual([
      [10, 7],
    ]);
    // A sample within 400 ms of the last is not kept: the series is unchanged.
    expect(format.addSample(history, at(5300, 90, 9), 3)).toHaveLength(1);
    format.addSample(history, at(10_000, 60, 0), 3);
    const series = format.addSample(history, at(15_000, 160, 2), 3);
    // At most 3 samples kept: the two rates between the last three.
    expect(history).toHaveLength(3);
    expect(series.map((r) => r.recordsIn)).toEqual([2, 20]);
  });

  it('shows each reassignment in progress with its adding replicas’ progress', async () => {
    expect(format.reassignmentRows({ reassignments: [] })).toEqual([]);
    const rows = format.reassignmentRows({
      reassignments: [
        {
          topic: 'orders',
          partition: 3,
          replicas: [4, 5, 1, 2],
          targetReplicas: [4, 5],
          addingReplicas: [4, 5],
          removingReplicas: [1, 2],
          isr: [1, 2, 4],
          leader: 1,
          progress: [
            { id: 4, logEndOffset: 900, lag: 0, inSync: true },
            { id: 5, logEndOffset: 120, lag: 12345, inSync: false },
          ],
        },
        {
          topic: 'b',
          partition: 0,
          replicas: [2, 1],
          targetReplicas: [2, 1],
          addingReplicas: [2],
          removingReplicas: [],
          isr: [1],
          leader: -1,
          progress: [{ id: 2, logEndOffset: -1, lag: -1, inSync: false }],
        },
      ],
    });
    expect(rows).toEqual([
      {
        partition: 'orders/3',
        move: '4, 5, 1, 2 → 4, 5',
        leader: '1',
        isr: '1, 2, 4',
        adding: '4: in sync; 5: 12,345 behind',
        removing: '1, 2',
      },
      {
        partition: 'b/0',
        move: '2, 1 → 2, 1',
        leader: 'none',
        isr: '1',
        adding: '2: not started',
        removing: '—',
      },
    ]);
  });

  it('counts leaderless and under-replicated partitions from /v1/metadata', async () => {
    const metadata = await json('GET', '/v1/metadata');
    const health = format.partitionHealth(metadata);
    expect(health).toEqual({
      topics: metadata.topics.length,
      partitions: metadata.topics.reduce(
        (n: number, t: { partitions: unknown[] }) => n + t.partitions.length,
        0,
      ),
      leaderless: 0,
      underReplicated: 0,
    });
    const degraded = {
      topics: [
        {
          partitions: [
            { leader: -1, replicas: [1, 2], isr: [1] },
            { leader: 2, replicas: [1, 2], isr: [2] },
            { leader: 1, replicas: [1, 2], isr: [1, 2] },
          ],
        },
      ],
    };
    expect(format.partitionHealth(degraded)).toEqual({
      topics: 1,
      partitions: 3,
      leaderless: 1,
      underReplicated: 2,
    });
  });

  it('shows fetched bytes exactly: hostile text as the same text, JSON indented, other bytes as hex', async () => {
    const hostile = '<img src=x onerror=alert(1)>';
    await json('POST', '/v1/topics', { name: 'shown' });
    await json('POST', '/v1/topics/shown/partitions/0/records?acks=1', {
      valueEncoding: 'base64',
      records: [
        {
          key: Buffer.from(hostile).toString('base64'),
          value: Buffer.from([0xff, 0x00, 0x41]).toString('base64'),
        },
        {
          value: Buffer.from('{"a":[1,2]}').toString('base64'),
          headers: { h: Buffer.from(hostile).toString('base64') },
        },
      ],
    });
    const fetched = await json('GET', '/v1/topics/shown/partitions/0/records?offset=0&valueEncoding=base64');
    const [first, second] = fetched.records.map(format.decodeRecord);
    expect(format.showBytes(first.key)).toEqual({ text: hostile, as: 'text' });
    expect(format.showBytes(first.value)).toEqual({ text: '000000  ff 00 41', as: 'hex' });
    expect(format.showBytes(second.value)).toEqual({
      text: '{\n  "a": [\n    1,\n    2\n  ]\n}',
      as: 'json',
    });
    expect(format.showBytes(second.value, 'text')).toEqual({ text: '{"a":[1,2]}', as: 'text' });
    expect(format.showBytes(second.key)).toEqual({ text: null, as: 'null' });
    expect(second.headers).toHaveLength(1);
    expect(format.showBytes(second.headers[0]![1]).text).toBe(hostile);
  });

  it('links another node’s console only at a plain http address', () => {
    expect(format.nodeConsoleUrl({ host: '10.0.0.2', port: 8092 })).toBe('http://10.0.0.2:8092/console');
    expect(format.nodeConsoleUrl({ host: 'evil.example/x?', port: 1 })).toBe(undefined);
  });
});
