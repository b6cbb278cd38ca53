import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The package as npm and its users see it (dist/ is built by `npm test` before vitest): what
 * `npm pack` and a git dependency carry, runtime dependencies that are exactly what src/ loads,
 * the `exports` map with its types, and a build that is skipped when nothing changed.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const run = promisify(execFile);
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  scripts: Record<string, string>;
  exports: Record<string, unknown>;
  engines: { node: string };
};

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sources(path)));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** `lodash/fp` is `lodash`, `@scope/name/x` is `@scope/name`. */
const packageOf = (specifier: string) =>
  specifier
    .split('/')
    .slice(0, specifier.startsWith('@') ? 2 : 1)
    .join('/');

describe('the package', () => {
  it('depends at run time on exactly the packages src/ imports or loads', async () => {
    const used = new Set<string>();
    for (const file of await sources(join(ROOT, 'src'))) {
      const text = await readFile(file, 'utf8');
      // Static imports, and the codecs' loader('name') of packages loaded when first used.
      for (const m of text.matchAll(/(?:from |import\(|loader\()'([^.'][^']*)'/g)) {
        const name = packageOf(m[1]!);
        if (!name.startsWith('node:') && !builtinModules.includes(name)) used.add(name);
      }
    }
    expect([...used].sort()).toEqual(Object.keys(pkg.dependencies).sort());
    expect(pkg.devDependencies['hdr-histogram-js']).toBeDefined();
  });

  it('builds on prepare and prepack, and npm pack carries bin, dist with types, docs and deploy only', async () => {
    expect(pkg.scripts.prepare).toContain('build-if-stale');
    expect(pkg.scripts.prepack).toBe('npm run --silent build');
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const needed of [
      'bin/sluice.js',
      'dist/cli/main.js',
      'dist/client/index.js',
      'dist/client/index.d.ts',
      'dist/http/console/assets/app.js',
      'deploy/sluice.service',
      'docs/sdk.md',
    ])
      expect(files, needed).toContain(needed);
    const tops = new Set(files.map((f) => f.split('/')[0]));
    expect([...tops].sort()).toEqual(['README.md', 'bin', 'deploy', 'dist', 'docs', 'package.json']);
    expect(files.filter((f) => f.endsWith('.map') || f.endsWith('.build-stamp'))).toEqual([]);
  }, 60_000);

  it('exports sluice/client for import, with its types', async () => {
    for (const entry of ['.', './client'])
      expect(pkg.exports[entry], entry).toEqual({
        types: './dist/client/index.d.ts',
        import: './dist/client/index.js',
        default: './dist/client/index.js',
      });
    // The package imports itself by name, as a dependent would.
    const { stdout } = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "const m = await import('sluice/client'); console.log(['Producer','PartitionConsumer','Consumer','Admin','SluiceError','isSluiceError'].map((n) => typeof m[n]).join(','))",
      ],
      { cwd: ROOT },
    );
    expect(stdout.trim()).toBe('function,function,function,function,function,function');
    const resolved = ts.resolveModuleName(
      'sluice/client',
      join(ROOT, 'test', 'package', 'consumer.ts'),
      { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext },
      ts.sys,
    );
    expect(resolved.resolvedModule?.resolvedFileName).toBe(join(ROOT, 'dist', 'client', 'index.d.ts'));
    expect(pkg.engines.node).toBe('>=20');
  });

  it('npm start builds only when a source is newer than the last build', async () => {
    expect(pkg.scripts.start).toBe('node scripts/build-if-stale.mjs && node bin/sluice.js start');
    expect(pkg.scripts.build).toMatch(/build-if-stale\.mjs --stamp$/);
    // A copy of the script in a tree of its own, so that nothing here is touched.
    const dir = await mkdtemp(join(tmpdir(), 'sluice-stale-'));
    try {
      await mkdir(join(dir, 'scripts'));
      await cp(join(ROOT, 'scripts', 'build-if-stale.mjs'), join(dir, 'scripts', 'build-if-stale.mjs'));
      await mkdir(join(dir, 'src', 'cli'), { recursive: true });
      await mkdir(join(dir, 'dist'));
      const at = (file: string, seconds: number) => utimes(file, seconds, seconds);
      await writeFile(join(dir, 'src', 'cli', 'main.ts'), '');
      for (const path of [join(dir, 'src', 'cli', 'main.ts'), join(dir, 'src', 'cli'), join(dir, 'src')])
        await at(path, 1000);
      const { staleReason } = (await import(join(dir, 'scripts', 'build-if-stale.mjs'))) as {
        staleReason: () => string | undefined;
      };
      expect(staleReason()).toBe('no build yet');
      await writeFile(join(dir, 'dist', '.build-stamp'), '');
      await at(join(dir, 'dist', '.build-stamp'), 2000);
      await at(join(dir, 'scripts', 'build-if-stale.mjs'), 1000);
      expect(staleReason()).toBeUndefined();
      await at(join(dir, 'src', 'cli', 'main.ts'), 3000);
      expect(staleReason()).toBe('src changed since the last build');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
