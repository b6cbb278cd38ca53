import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { startNode } from '../../src/node/node.js';

/**
 * `sluice log verify DIR` on a stopped broker's data directory: exit 0 and one `ok` line per
 * partition when every batch checks out; exit 1 and the damaged segment, byte position and the
 * offset it is readable up to when one byte was changed.
 */
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: {
      write: (s: string) => {
        stdout += s;
        return true;
      },
    },
    stderr: {
      write: (s: string) => {
        stderr += s;
        return true;
      },
    },
    stdin: process.stdin,
  } as unknown as Parameters<typeof main>[1];
  const code = await main(args, io);
  return { code, stdout, stderr };
}

async function dataDirWithRecords(): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-verify-'));
  dirs.push(dataDir);
  const node = await startNode({ dataDir, port: 0, logLevel: 'silent' });
  await node.broker.admin.createTopic({ name: 'audit', partitions: 2 });
  for (let i = 0; i < 3; i++)
    await node.broker.produce.records('audit', [{ value: Buffer.from(`record-${i}`), partition: 0 }], 1);
  await node.close();
  return dataDir;
}

describe('sluice log verify', () => {
  it('passes an intact data directory', async () => {
    const dataDir = await dataDirWithRecords();
    const result = await run(['log', 'verify', dataDir]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^audit-0\tok\tsegments=1\tbatches=3$/m);
    expect(result.stdout).toMatch(/^audit-1\tok\tsegments=1\tbatches=0$/m);
    const json = await run(['log', 'verify', dataDir, '-o', 'json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true });
  });

  it('finds one changed byte, names where, and exits 1', async () => {
    const dataDir = await dataDirWithRecords();
    const segment = join(dataDir, 'audit-0', '00000000000000000000.log');
    const bytes = readFileSync(segment);
    const at = bytes.length - 3;
    const fd = openSync(segment, 'r+');
    writeSync(fd, Buffer.from([bytes[at]! ^ 0x01]), 0, 1, at);
    closeSync(fd);
    const result = await run(['log', 'verify', dataDir]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^audit-0\tPROBLEMS/m);
    expect(result.stdout).toMatch(
      /00000000000000000000\.log: corrupt batch at byte \d+: .*readable up to offset 2/,
    );
    expect(result.stderr).toContain('1 of 2 partitions have problems');
  });
});
