import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SluiceNode, startNode } from '../../../src/node/node.js';

/**
 * The web console in a real browser (Debian's chromium, headless, driven by playwright-core)
 * against a started node: the cluster view names the controller, the topics table shows a topic
 * created through the API with its partitions and records, the records browser shows produced
 * records (JSON pretty-printed, hostile keys and headers as inert text: no element is made of
 * them and no script runs), a live tail shows a record produced after it opened, and no page logs
 * a console error. `SLUICE_CONSOLE_SCREENSHOTS=docs/console` saves a screenshot of each view.
 *
 * chromium comes from `apt-get install chromium`; the test setup (test/global-setup.ts) installs
 * it when running as root. Without it this test fails and says how to install it.
 */
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = process.env.SLUICE_CONSOLE_SCREENSHOTS;
const TOPIC = 'console-orders';
const HOSTILE_KEY = '<img src=x onerror="window.__sluiceXss=1">';
const HOSTILE_HEADER = '</pre><script>window.__sluiceXss=2</script>';

let dir: string;
let node: SluiceNode;
let context: BrowserContext | undefined;
let base: string;
const problems: string[] = [];

async function api(method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  expect(response.ok, `${method} ${path}: ${response.status}`).toBe(true);
  return response.json();
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `the console's browser test needs Debian's chromium at ${CHROMIUM}: run  sudo apt-get update && sudo apt-get install -y chromium  (npm test installs it itself when run as root)`,
    );
  }
  dir = await mkdtemp(join(tmpdir(), 'sluice-console-browser-'));
  node = await startNode({ dataDir: join(dir, 'data'), port: 0, logLevel: 'silent' });
  base = `http://${node.address.host}:${node.address.port}`;
  await api('POST', '/v1/topics', { name: TOPIC, partitions: 2 });
  await api('POST', `/v1/topics/${TOPIC}/partitions/0/records?acks=1`, {
    records: [
      { key: 'k1', value: { greeting: 'hello', n: 1 } },
      { key: HOSTILE_KEY, value: 'plain text', headers: { trace: HOSTILE_HEADER } },
    ],
  });
  await api('POST', `/v1/topics/${TOPIC}/partitions/1/records?acks=1`, { records: [{ value: 'other' }] });
  context = await chromium.launchPersistentContext(join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1280, height: 800 },
  });
}, 30_000);

afterAll(async () => {
  await context?.close();
  await node?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function open(hash: string): Promise<Page> {
  const page = await context!.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`${hash}: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`${hash}: ${error.message}`));
  await page.goto(`${base}/console${hash}`);
  return page;
}

async function screenshot(page: Page, name: string): Promise<void> {
  if (!SCREENSHOTS) return;
  await mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

describe('the web console in chromium', () => {
  it('shows the cluster: this node as the controller, leading every partition', async () => {
    const page = await open('#/');
    await page.locator('#nodes tbody tr').first().waitFor();
    expect(await page.locator('[data-field="controller"] .value').textContent()).toBe('node 1');
    expect(await page.locator('[data-field="leaderless"] .value').textContent()).toBe('0');
    expect(await page.locator('#nodes tbody tr').count()).toBe(1);
    expect(await page.locator('#nodes tbody tr td').nth(3).textContent()).toContain('controller');
    expect(await page.locator('[data-field="role"] .value').textContent()).toBe('leader');
    expect(await page.locator('#reassignments').textContent()).toBe('No reassignment in progress.');
    await screenshot(page, 'cluster');
    await page.close();
  });

  it('lists the topic created through the API with its partitions and records', async () => {
    const page = await open('#/topics');
    const row = page.locator(`#topics tr[data-topic="${TOPIC}"]`);
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    expect(cells[0]).toBe(TOPIC);
    expect(cells[1]).toBe('2');
    expect(cells[2]).toBe('1');
    expect(cells[3]).toBe('3');
    expect(cells[10]).toBe('ok');
    if (SCREENSHOTS) {
      // For the picture only: traffic between two refreshes, so that the rates show.
      await api('POST', `/v1/topics/${TOPIC}/records?acks=1`, {
        records: Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: `value ${i}` })),
      });
      await page.locator(`#topics tr[data-topic="${TOPIC}"] td:nth-child(6)`, { hasText: '/s' }).waitFor();
      await screenshot(page, 'topics');
    }
    await page.close();
  });

  it('shows a topic’s partitions with offsets and links to their records', async () => {
    const page = await open(`#/topics/${TOPIC}`);
    const row = page.locator('#partitions tr[data-partition="0"]');
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    // partition, leader, epoch, replicas, isr, eligible (none), log start, log end, high watermark.
    expect(cells.slice(0, 7)).toEqual(['0', '1', '0', '1', '1', '—', '0']);
    if (!SCREENSHOTS) expect(cells.slice(7, 9)).toEqual(['2', '2']);
    await screenshot(page, 'topic');
    await row.locator('a', { hasText: 'records' }).click();
    await page.locator('#records tr[data-offset="1"]').waitFor();
    expect(page.url()).toContain(`#/topics/${TOPIC}/partitions/0`);
    await page.close();
  });

  it('charts a topic’s throughput live from the leaders’ counters (refreshing every 500 ms)', async () => {
    const page = await context!.newPage();
    page.on('pageerror', (error) => problems.push(`charts: ${error.message}`));
    await page.goto(`${base}/console?refresh=500#/topics/${TOPIC}`);
    const recordsIn = page.locator('[data-chart="recordsIn"]');
    await recordsIn.waitFor();
    // Produce while the page samples, until a rate above zero shows with its line.
    const rising = recordsIn.locator('.value', { hasText: /[1-9][0-9.]*\/s/ });
    for (let attempt = 0; attempt < 20 && (await rising.count()) === 0; attempt++) {
      await api('POST', `/v1/topics/${TOPIC}/partitions/1/records?acks=1`, {
        records: Array.from({ length: 10 }, (_, i) => ({ value: `burst ${attempt}.${i}` })),
      });
      await rising.waitFor({ timeout: 600 }).catch(() => {});
    }
    expect(await rising.count()).toBe(1);
    expect(await recordsIn.locator('svg polyline').count()).toBeGreaterThan(0);
    if (SCREENSHOTS) {
      // For the picture only: a few more refreshes of traffic, so that the lines have a shape.
      for (let burst = 1; burst <= 6; burst++) {
        await api('POST', `/v1/topics/${TOPIC}/partitions/1/records?acks=1`, {
          records: Array.from({ length: 5 * burst }, (_, i) => ({ value: `shape ${burst}.${i}` })),
        });
        await page.waitForTimeout(600);
      }
    }
    await screenshot(page, 'topic-charts');
    await page.close();
  });

  it('browses records: JSON values indented, hostile keys and headers shown as text only', async () => {
    const page = await open(`#/topics/${TOPIC}/partitions/0`);
    await page.locator('#records tr[data-offset="1"]').waitFor();
    const first = page.locator('#records tr[data-offset="0"]');
    expect(await first.locator('[data-field="value"]').getAttribute('data-as')).toBe('json');
    expect(await first.locator('[data-field="value"]').textContent()).toBe(
      JSON.stringify({ greeting: 'hello', n: 1 }, null, 2),
    );
    const hostile = page.locator('#records tr[data-offset="1"]');
    expect(await hostile.locator('[data-field="key"]').textContent()).toBe(HOSTILE_KEY);
    expect(await hostile.locator('[data-field="header"]').textContent()).toBe(HOSTILE_HEADER);
    expect(await page.locator('#records img, #records script').count()).toBe(0);
    // Runs in the page: whether any injected handler or script set the flag.
    expect(await page.evaluate('typeof window.__sluiceXss')).toBe('undefined');
    await screenshot(page, 'records');
    await page.locator('select[name="mode"]').selectOption('hex');
    expect(await first.locator('[data-field="key"]').textContent()).toBe('000000  6b 31');
    await page.close();
  });

  it('tails a partition live: a record produced after the tail opened appears', async () => {
    const page = await open(`#/topics/${TOPIC}/partitions/1`);
    await page.locator('#records tr[data-offset]').first().waitFor();
    await page.locator('#tail').click();
    await page.locator('#records-status', { hasText: 'waiting for new records' }).waitFor();
    // The stream opens after the page says so; produce until the tail has one (at most a few tries).
    const tailed = page.locator('#records tr[data-offset] [data-field="value"]', { hasText: 'tailed' });
    for (let attempt = 0; attempt < 20 && (await tailed.count()) === 0; attempt++) {
      await api('POST', `/v1/topics/${TOPIC}/partitions/1/records?acks=1`, {
        records: [{ value: `tailed ${attempt}` }],
      });
      await tailed
        .first()
        .waitFor({ timeout: 500 })
        .catch(() => {});
    }
    expect(await tailed.count()).toBeGreaterThan(0);
    // Only records that arrived on the stream are shown (the page loaded before is cleared).
    for (const value of await page.locator('#records [data-field="value"]').allTextContents())
      expect(value).toMatch(/^tailed \d+$/);
    await page.close();
  });

  it('logged no console error on any page', () => {
    expect(problems).toEqual([]);
  });
});
