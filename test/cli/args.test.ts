import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { VERSION } from '../../src/node/version.js';

/** Argument parsing and error lines of the CLI, run in-process with no broker. */
async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  stdin.end();
  let out = '';
  let err = '';
  stdout.on('data', (d) => {
    out += d;
  });
  stderr.on('data', (d) => {
    err += d;
  });
  const code = await main(argv, { stdout, stderr, stdin });
  return { code, stdout: out, stderr: err };
}

describe('sluice arguments', () => {
  it('refuses a bad --acks and a bad --offset with one line and their codes', async () => {
    const acks = await run(['produce', 't', '--acks', '2', '--bootstrap', 'http://127.0.0.1:1']);
    expect(acks).toEqual({
      code: 1,
      stdout: '',
      stderr: 'sluice: --acks must be 0, 1 or all (INVALID_REQUEST)\n',
    });
    const offset = await run(['consume', 't', '--offset', 'soon', '--bootstrap', 'http://127.0.0.1:1']);
    expect(offset.code).toBe(1);
    expect(offset.stderr).toBe(
      'sluice: --offset must be a number, earliest or latest, got soon (INVALID_OFFSET)\n',
    );
  });

  it('refuses non-integers, negative ports, a malformed --config and an https bootstrap', async () => {
    for (const argv of [
      ['start', '--port', '-1'],
      ['start', '--port', '80.5'],
      ['consume', 't', '--partition', 'one'],
      ['topic', 'create', 't', '--partitions', '0'],
      ['topic', 'create', 't', '-c', 'novalue'],
      ['cluster', 'describe', '-o', 'yaml'],
      ['log', 'verify', '.', '-o', 'yaml'],
    ]) {
      const result = await run(argv);
      expect(result.code, argv.join(' ')).not.toBe(0);
      expect(result.stderr, argv.join(' ')).toMatch(/^sluice: [^\n]+ \(see --help\)\n$/);
      expect(result.stderr).not.toContain('    at ');
    }
    const https = await run(['topic', 'list', '--bootstrap', 'https://127.0.0.1:1']);
    expect(https).toMatchObject({ code: 1, stderr: expect.stringMatching(/^sluice: only http:\/\/ URLs/) });
  });

  it('reports unknown commands and missing arguments, and prints its version', async () => {
    expect((await run(['bogus'])).stderr).toContain("unknown command 'bogus'");
    expect((await run(['bogus'])).code).not.toBe(0);
    const missing = await run(['topic', 'create']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain("missing required argument 'name'");
    expect(await run(['--version'])).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
  });

  it('lists every command in the help', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    for (const command of ['start', 'dev-cluster', 'cluster', 'topic', 'produce', 'consume', 'log'])
      expect(help.stdout).toContain(command);
    const topicHelp = await run(['topic', '--help']);
    for (const sub of ['create', 'list', 'describe', 'alter', 'delete'])
      expect(topicHelp.stdout).toContain(sub);
  });
});
