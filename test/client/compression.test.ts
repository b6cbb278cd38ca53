import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionConsumer, Producer } from '../../src/client/index.js';
import { isSluiceError } from '../../src/common/errors.js';
import { type SluiceNode, startNode } from '../../src/node/node.js';
import type { CodecName } from '../../src/protocol/compression.js';

/**
 * Compression end to end against a real node: the SDK producer compresses per batch in every
 * codec and the SDK consumer reads the batches as stored (it names every codec it has), a curl-like
 * JSON follow stream decodes them, and a Python client builds, sends and reads compressed batches
 * with stock libraries.
 */
const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const PYTHON_SCRIPT = new URL('./python/compressed_batches.py', import.meta.url).pathname;
let node: SluiceNode;
let dataDir: string;
let bootstrap: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'sluice-compression-'));
  node = await startNode({ dataDir, port: 0, logLevel: 'silent' });
  bootstrap = `http://127.0.0.1:${node.address.port}`;
});
afterAll(async () => {
  await node.close();
  await rm(dataDir, { recursive: true, force: true });
});

async function metric(name: string, codec: string): Promise<number> {
  const text = await (await fetch(`${bootstrap}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{codec="${codec}"}`));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

describe('SDK', () => {
  it.each(['none', 'gzip', 'snappy', 'lz4', 'zstd'] as CodecName[])(
    'producer compression %s: stored in that codec, read back in order by the consumer',
    async (codec) => {
      const topic = `sdk-${codec}`;
      const admin = new Admin({ bootstrap });
      await admin.createTopic({ name: topic, partitions: 1 });
      admin.close();
      const producer = new Producer({ bootstrap, compression: codec, lingerMs: 5, batchBytes: 16 * 1024 });
      const values = Array.from(
        { length: 400 },
        (_, i) => `{"i":${i},"level":"INFO","msg":"handled ${codec}"}`,
      );
      const sent = await producer.send(values.map((value, i) => ({ topic, key: `k${i % 3}`, value })));
      await producer.close();
      expect(sent.map((s) => s.offset)).toEqual(values.map((_, i) => i));
      const before = await metric('sluice_fetch_decompressed_batches_total', codec);
      const consumer = new PartitionConsumer({
        bootstrap,
        topic,
        partition: 0,
        stopAtEnd: true,
        maxWaitMs: 50,
      });
      const read: string[] = [];
      for await (const record of consumer) read.push(Buffer.from(record.value!).toString());
      consumer.close();
      expect(read).toEqual(values);
      // The consumer named the codec: nothing was decompressed for it on the broker.
      expect(await metric('sluice_fetch_decompressed_batches_total', codec)).toBe(before);
      if (codec !== 'none') expect(await metric('sluice_batches_compressed_total', codec)).toBeGreaterThan(0);
    },
  );

  it('refuses an unknown codec and a level out of range at construction', () => {
    expect(() => new Producer({ bootstrap, compression: 'brotli' as CodecName })).toThrow(/not none, gzip/);
    expect(() => new Producer({ bootstrap, compression: 'zstd', compressionLevel: 23 })).toThrow(/1 to 22/);
    expect(() => new Producer({ bootstrap, compression: 'lz4', compressionLevel: 1 })).toThrow(
      /no compression levels/,
    );
    const error = (() => {
      try {
        new Producer({ bootstrap, compression: 'gzip', compressionLevel: 0 });
      } catch (e) {
        return e;
      }
    })();
    expect(isSluiceError(error, 'INVALID_REQUEST')).toBe(true);
  });

  it('a JSON follow stream (NDJSON, as curl reads it) decodes compressed batches', async () => {
    const topic = 'follow-zstd';
    const admin = new Admin({ bootstrap });
    await admin.createTopic({ name: topic, partitions: 1 });
    admin.close();
    const producer = new Producer({ bootstrap, compression: 'zstd', compressionLevel: 9 });
    await producer.send(Array.from({ length: 30 }, (_, i) => ({ topic, value: `followed ${i}` })));
    await producer.close();
    const lines = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      let buffered = '';
      const request = http.get(
        `${bootstrap}/v1/topics/${topic}/partitions/0/records?offset=0&follow=true`,
        { headers: { accept: 'application/x-ndjson' } },
        (response) => {
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => {
            buffered += chunk;
            const parts = buffered.split('\n');
            buffered = parts.pop()!;
            got.push(...parts);
            if (got.length >= 30) {
              request.destroy();
              resolve(got);
            }
          });
        },
      );
      request.on('error', (error) => (got.length >= 30 ? undefined : reject(error)));
    });
    expect(lines.map((l) => JSON.parse(l).value)).toEqual(
      Array.from({ length: 30 }, (_, i) => `followed ${i}`),
    );
  });
});

function pythonHas(module: string): boolean {
  return spawnSync(PYTHON, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0;
}

describe('a Python client with stock libraries', () => {
  const cases: [string, string][] = [
    ['none', 'msgpack'],
    ['gzip', 'zlib'],
    ['lz4', 'lz4.frame'],
    ['zstd', 'zstandard'],
  ];
  for (const [codec, module] of cases) {
    const available = pythonHas(module);
    // test/global-setup.ts installs python3-lz4 and python3-zstandard; without them (apt could
    // not install them) the lz4 and zstd cases are skipped and say so.
    if (!available)
      process.stdout.write(
        `skipped: the Python ${codec} case needs ${module} (python3-${module.split('.')[0]})\n`,
      );
    it.runIf(available)(
      `builds a ${codec} batch, produces it, reads it back as stored, decompressed and as JSON`,
      async () => {
        const topic = `py-${codec}`;
        const admin = new Admin({ bootstrap });
        await admin.createTopic({ name: topic, partitions: 1 });
        admin.close();
        const { stdout } = await run(PYTHON, [PYTHON_SCRIPT, bootstrap, topic, codec]);
        const result = JSON.parse(stdout) as Record<string, unknown>;
        const codecNumber = { none: 0, gzip: 1, lz4: 3, zstd: 4 }[codec];
        expect(result.storedCodec).toBe(codecNumber);
        expect(result.plainCodec).toBe(0);
        expect(result.storedValues).toEqual(result.sent);
        expect(result.plainValues).toEqual(result.sent);
        expect(result.jsonValues).toEqual(result.sent);
        expect((result.sent as string[]).length).toBe(25);
      },
    );
  }
});
