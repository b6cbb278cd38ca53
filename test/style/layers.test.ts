import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Proves that the layer table of DESIGN.md holds and that the core layers take time and chance as
 * parameters. It fails on the first import that crosses a layer the wrong way and on any wall-clock,
 * timer or Math.random use inside raft, metadata, storage or replication.
 */

const SRC = join(import.meta.dirname, '..', '..', 'src');

/** Which layers each layer may import values from; `types` may be imported with `import type` only. */
const LAYERS: Record<string, { values: string[]; types?: string[] }> = {
  common: { values: [] },
  protocol: { values: ['common'] },
  storage: { values: ['common', 'protocol'] },
  raft: { values: ['common', 'protocol'] },
  metadata: { values: ['common', 'protocol', 'raft'] },
  replication: { values: ['common', 'protocol', 'storage', 'metadata'] },
  groups: { values: ['common', 'protocol', 'replication', 'metadata'] },
  broker: { values: ['common', 'protocol', 'storage', 'raft', 'metadata', 'replication', 'groups', 'http'] },
  http: {
    values: ['common', 'protocol'],
    types: ['broker', 'raft', 'storage', 'metadata', 'replication', 'groups'],
  },
  client: { values: ['common', 'protocol'] },
  cli: { values: ['common', 'protocol', 'client', 'broker', 'http'] },
};

const CORE = ['raft', 'metadata', 'storage', 'replication'];
const BANNED = [
  /\bDate\.now\s*\(/,
  // `clock.setTimeout(...)` is the injected clock and allowed; a bare timer is not.
  /(?<![.\w])setTimeout\s*\(/,
  /(?<![.\w])setInterval\s*\(/,
  /(?<![.\w])setImmediate\s*\(/,
  /\bglobalThis\.set(Timeout|Interval|Immediate)\b/,
  /\bMath\.random\s*\(/,
  /\bperformance\.now\s*\(/,
  /\bnew Date\s*\(\s*\)/,
];

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

const IMPORT = /^\s*(import|export)\s+(type\s+)?[^'"]*?from\s+['"]([^'"]+)['"]/gm;

describe('layer rules', () => {
  const files = filesUnder(SRC);

  it('finds the source tree', () => {
    expect(files.length).toBeGreaterThan(3);
  });

  it('every import goes only to a layer the importing layer may use', () => {
    const violations: string[] = [];
    for (const file of files) {
      const layer = relative(SRC, file).split('/')[0]!;
      const rule = LAYERS[layer];
      if (!rule) {
        violations.push(`${relative(SRC, file)}: folder ${layer} is not in the layer table`);
        continue;
      }
      const source = stripComments(readFileSync(file, 'utf8'));
      for (const match of source.matchAll(IMPORT)) {
        const isType = Boolean(match[2]);
        const target = match[3]!;
        if (!target.startsWith('.')) continue;
        const targetPath = relative(SRC, join(file, '..', target));
        const targetLayer = targetPath.split('/')[0]!;
        if (targetLayer === layer) continue;
        const allowed =
          rule.values.includes(targetLayer) || (isType && (rule.types ?? []).includes(targetLayer));
        if (!allowed)
          violations.push(
            `${relative(SRC, file)} imports ${isType ? 'type ' : ''}${target} (layer ${targetLayer})`,
          );
      }
    }
    expect(violations).toEqual([]);
  });

  it('core layers never read the wall clock, start timers or use Math.random', () => {
    const violations: string[] = [];
    for (const file of files) {
      const layer = relative(SRC, file).split('/')[0]!;
      if (!CORE.includes(layer)) continue;
      const lines = stripComments(readFileSync(file, 'utf8')).split('\n');
      lines.forEach((line, i) => {
        for (const pattern of BANNED)
          if (pattern.test(line)) violations.push(`${relative(SRC, file)}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(violations).toEqual([]);
  });
});
