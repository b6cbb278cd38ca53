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
  it('refuses a bad --acks and a bad --offset with one usage line and exit code 2', async () => {
    const acks = await run(['produce', 't', '--acks', '2', '--bootstrap', 'http://127.0.0.1:1']);
    expect(acks).toEqual({
      code: 2,
      stdout: '',
      stderr: 'sluice: --acks must be 0, 1 or all, got 2 (see --help)\n',
    });
    const offset = await run(['consume', 't', '--offset', 'soon', '--bootstrap', 'http://127.0.0.1:1']);
    expect(offset.code).toBe(2);
    expect(offset.stderr).toBe(
      'sluice: --offset must be a number, earliest or latest, got soon (see --help)\n',
    );
  });

  it('refuses non-integers, negative ports, a malformed --config, an unknown format and a bad bootstrap', async () => {
    for (const argv of [
      ['start', '--port', '-1'],
      ['start', '--port', '80.5'],
      ['consume', 't', '--partition', 'one'],
      ['topic', 'create', 't', '--partitions', '0'],
      ['topic', 'create', 't', '-c', 'novalue'],
      ['cluster', 'describe', '-o', 'xml'],
      ['log', 'verify', '.', '-o', 'csv'],
      ['consume', 't', '-o', 'table'],
      ['topic', 'list', '--bootstrap', 'notaurl'],
      ['--bootstrap', 'ftp://h:1', 'topic', 'list'],
      ['topic', 'list', '--bootstrap', 'http://h:1/some/path'],
      ['start', '--port', '70000'],
      ['completion', 'tcsh'],
    ]) {
      const result = await run(argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stderr, argv.join(' ')).toMatch(/^sluice: [^\n]+ \(see --help\)\n$/);
      expect(result.stderr).not.toContain('    at ');
    }
    expect((await run(['topic', 'list', '--bootstrap', 'notaurl'])).stderr).toBe(
      'sluice: --bootstrap: "notaurl" is not a URL: give http://HOST:PORT or https://HOST:PORT (see --help)\n',
    );
    expect((await run(['start', '--port', '70000'])).stderr).toBe(
      'sluice: --port: "70000" is not an integer in 0..65535 (see --help)\n',
    );
  });

  it('reports unknown commands and missing arguments with exit code 2, and prints its version', async () => {
    expect((await run(['bogus'])).stderr).toContain("unknown command 'bogus'");
    expect((await run(['bogus'])).code).toBe(2);
    const missing = await run(['topic', 'create']);
    expect(missing.code).toBe(2);
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
