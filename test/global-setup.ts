import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * What the tests need from the system: curl (HTTP/1.1 and HTTP/2 prior knowledge), Debian's
 * Python with httpx, h2 and msgpack (a non-JavaScript client) and Debian's chromium (the web
 * console's browser test; about 35 s to install with its apt update, measured on the 2-core
 * machine, nothing when present). Installed here when missing and running
 * as root, so that `npm test` does all set-up on a fresh machine (`SLUICE_TEST_INSTALL=0` opts
 * out). Without root the run stops with the command to run, rather than skipping the tests that
 * need them.
 */
const PYTHON = '/usr/bin/python3';
const CHROMIUM = '/usr/bin/chromium';

function haveCurlWithHttp2(): boolean {
  const result = spawnSync('curl', ['--version'], { encoding: 'utf8' });
  return result.status === 0 && /HTTP2/.test(result.stdout);
}

function havePython(): boolean {
  return spawnSync(PYTHON, ['-c', 'import httpx, h2, msgpack'], { stdio: 'ignore' }).status === 0;
}

function haveChromium(): boolean {
  return existsSync(CHROMIUM);
}

/** Python's lz4 and zstd bindings, for the compression tests' Python client (gzip is stock zlib). */
function havePythonCodecs(): boolean {
  return spawnSync(PYTHON, ['-c', 'import lz4.frame, zstandard'], { stdio: 'ignore' }).status === 0;
}

/**
 * python3-lz4 and python3-zstandard (a few seconds to install): wanted, not required. When apt
 * cannot install them, the Python lz4 and zstd cases of test/client/compression.test.ts are
 * skipped with a note, and the rest of the run goes on.
 */
function installPythonCodecs(): void {
  if (havePythonCodecs() || process.getuid?.() !== 0 || process.env.SLUICE_TEST_INSTALL === '0') return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const packages = ['python3-lz4', 'python3-zstandard'];
  process.stdout.write(`installing test tools: ${packages.join(' ')}\n`);
  let result = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
    stdio: 'inherit',
    env,
  });
  if (result.status !== 0) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    result = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
      stdio: 'inherit',
      env,
    });
  }
  if (result.status !== 0)
    process.stdout.write(`note: could not install ${packages.join(', ')}; their Python cases are skipped\n`);
}

/** zsh and fish, whose completion scripts test/cli/ux.test.ts loads (about 10 s): wanted, not required. */
function installShells(): void {
  const have = ['zsh', 'fish'].every((shell) => spawnSync('sh', ['-c', `command -v ${shell}`]).status === 0);
  if (have || process.getuid?.() !== 0 || process.env.SLUICE_TEST_INSTALL === '0') return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  process.stdout.write('installing test tools: zsh fish\n');
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'zsh', 'fish'], {
      stdio: 'inherit',
      env,
    }).status === 0;
  if (install()) return;
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  if (!install())
    process.stdout.write('note: could not install zsh and fish; their completion cases are skipped\n');
}

export default function setup(): void {
  installPythonCodecs();
  installShells();
  if (haveCurlWithHttp2() && havePython() && haveChromium()) return;
  const packages = ['curl', 'python3', 'python3-httpx', 'python3-h2', 'python3-msgpack', 'chromium'];
  const asked = process.env.SLUICE_TEST_INSTALL !== '0';
  if (process.getuid?.() !== 0 || !asked) {
    throw new Error(
      `the tests need ${packages.join(', ')}: run  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${packages.join(' ')}` +
        '  (as root, npm test installs them itself unless SLUICE_TEST_INSTALL=0)',
    );
  }
  process.stdout.write(`installing test tools: ${packages.join(' ')}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
    stdio: 'inherit',
    env,
  });
  if (!haveCurlWithHttp2() || !havePython() || !haveChromium())
    throw new Error('installing the test tools did not make them available');
}
