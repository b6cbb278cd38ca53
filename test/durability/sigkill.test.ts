import { mkdtemp, rm } from 'node:fs/promises';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeBatch } from '../../src/protocol/batch.js';
import { startBrokerProcess, waitForExit } from './process.js';

/**
 * A broker with flush.policy=sync is killed with SIGKILL in the middle of a produce stream. After a
 * restart every acknowledged record is in the log exactly once and in order; records that were
 * sent but not acknowledged may or may not be there, but only after all acknowledged ones.
 */
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** One HTTP/1.1 request: a JSON body, or raw bytes with their content type. */
function send(
  port: number,
  method: string,
  path: string,
  data: Buffer | undefined,
  contentType: string,
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field by the tests
): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        headers: data ? { 'content-type': contentType, 'content-length': data.length } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString() || 'null'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

function request(port: number, method: string, path: string, body?: unknown) {
  return send(
    port,
    method,
    path,
    body === undefined ? undefined : Buffer.from(JSON.stringify(body)),
    'application/json',
  );
}

function postBatches(
  port: number,
  path: string,
  body: Buffer,
): Promise<{ status: number; body: { baseOffset: number } }> {
  return send(port, 'POST', path, body, 'application/vnd.sluice.batches');
}

async function readAll(port: number, partition: number): Promise<{ offset: number; value: string }[]> {
  const stored: { offset: number; value: string }[] = [];
  let offset = 0;
  for (;;) {
    const page = await request(
      port,
      'GET',
      `/v1/topics/durable/partitions/${partition}/records?offset=${offset}`,
    );
    expect(page.status).toBe(200);
    stored.push(
      ...page.body.records.map((r: { offset: number; value: string }) => ({
        offset: r.offset,
        value: r.value,
      })),
    );
    if (page.body.nextOffset >= page.body.highWatermark) break;
    offset = page.body.nextOffset;
  }
  return stored;
}

/** Every acknowledged value at its acknowledged offset, no value twice, offsets 0..n-1 in order. */
function checkLog(
  stored: { offset: number; value: string }[],
  acknowledged: { value: string; offset: number }[],
) {
  const byValue = new Map(stored.map((r) => [r.value, r.offset]));
  expect(new Set(stored.map((r) => r.value)).size).toBe(stored.length);
  for (const a of acknowledged)
    expect(byValue.get(a.value), `acknowledged ${a.value} at ${a.offset}`).toBe(a.offset);
  expect(stored.map((r) => r.offset)).toEqual(stored.map((_, i) => i));
}

describe('durability under SIGKILL', () => {
  it('keeps every acknowledged record exactly once, in order', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sluice-kill-'));
    dirs.push(dataDir);
    const first = await startBrokerProcess(dataDir, { 'flush.policy': 'sync' });
    expect((await request(first.port, 'POST', '/v1/topics', { name: 'durable', partitions: 2 })).status).toBe(
      201,
    );
    // Partition 0: single JSON records from two writers. Partition 1: pre-built batches of ten
    // records (the SDK's path) from two writers.
    const acknowledged: { value: string; offset: number }[][] = [[], []];
    let sent = 0;
    const jsonWriters = Array.from({ length: 2 }, async (_, worker) => {
      for (let i = 0; ; i++) {
        const value = `w${worker}-${i}`;
        sent++;
        try {
          const response = await request(first.port, 'POST', '/v1/topics/durable/records?acks=all', {
            records: [{ value, partition: 0 }],
          });
          if (response.status !== 200) return;
          acknowledged[0]!.push({ value, offset: response.body.offsets[0].offset });
        } catch {
          return;
        }
      }
    });
    const batchWriters = Array.from({ length: 2 }, async (_, worker) => {
      for (let i = 0; ; i++) {
        const values = Array.from({ length: 10 }, (_, n) => `b${worker}-${i}-${n}`);
        const batch = encodeBatch(values.map((v) => ({ value: Buffer.from(v), timestamp: 1 })));
        try {
          const response = await postBatches(
            first.port,
            '/v1/topics/durable/partitions/1/records?acks=all',
            batch,
          );
          if (response.status !== 200) return;
          values.forEach((value, n) => {
            acknowledged[1]!.push({ value, offset: response.body.baseOffset + n });
          });
        } catch {
          return;
        }
      }
    });
    while (acknowledged[0]!.length < 150 || acknowledged[1]!.length < 500)
      await new Promise((r) => setTimeout(r, 10));
    first.child.kill('SIGKILL');
    await Promise.all([...jsonWriters, ...batchWriters]);
    await waitForExit(first.child);

    const second = await startBrokerProcess(dataDir, { 'flush.policy': 'sync' });
    try {
      const stored = await readAll(second.port, 0);
      checkLog(stored, acknowledged[0]!);
      expect(stored.length).toBeLessThanOrEqual(sent);
      const batched = await readAll(second.port, 1);
      checkLog(batched, acknowledged[1]!);
      // A batch is all or nothing: the log holds whole batches of ten.
      expect(batched.length % 10).toBe(0);
      // Appends after the restart continue the log.
      const after = await request(second.port, 'POST', '/v1/topics/durable/records', {
        records: [{ value: 'after-restart', partition: 0 }],
      });
      expect(after.body.offsets[0].offset).toBe(stored.length);
    } finally {
      second.child.kill('SIGTERM');
      await waitForExit(second.child);
    }
  });
});
