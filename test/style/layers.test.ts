import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Proves that the layer table of DESIGN.md holds and that the core layers take time and chance as
 * parameters. It fails on the first import that crosses a layer the wrong way and on any wall-clock,
 * timer or Math.random use inside raft, metadata, storage or replication.
 */

const SRC = join(import.meta.dirname, '..', '..', 'src');

/**
 * DESIGN.md's layer table, exactly: the folders (or, for `http`, the one file) each layer may import
 * from, values and types alike. `typesOnly` entries may be imported with `import type` only.
 */
const LAYERS: Record<string, { may: string[]; typesOnly?: string[] }> = {
  common: { may: [] },
  protocol: { may: ['common'] },
  storage: { may: ['common', 'protocol'] },
  raft: { may: ['common', 'protocol'] },
  metadata: { may: ['common', 'protocol', 'raft'] },
  replication: { may: ['common', 'protocol', 'storage', 'metadata'] },
  groups: { may: ['common', 'protocol', 'replication', 'metadata'] },
  broker: { may: ['common', 'protocol', 'storage', 'raft', 'metadata', 'replication', 'groups'] },
  http: { may: ['common', 'protocol'], typesOnly: ['broker/api.ts'] },
  client: { may: ['common', 'protocol'] },
  node: {
    may: ['common', 'protocol', 'storage', 'raft', 'metadata', 'replication', 'groups', 'broker', 'http'],
  },
  cli: { may: ['node', 'client', 'storage', 'common', 'protocol'] },
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

interface Import {
  from: string;
  to: string;
  typeOnly: boolean;
}

/** Every relative import of the tree, as paths relative to src/, `.js` resolved to the `.ts` source. */
function importsOf(files: string[]): Import[] {
  const out: Import[] = [];
  for (const file of files) {
    const source = stripComments(readFileSync(file, 'utf8'));
    for (const match of source.matchAll(IMPORT)) {
      const target = match[3]!;
      if (!target.startsWith('.')) continue;
      out.push({
        from: relative(SRC, file),
        to: relative(SRC, join(file, '..', target)).replace(/\.js$/, '.ts'),
        typeOnly: Boolean(match[2]),
      });
    }
  }
  return out;
}

/** Why `edge` breaks the layer table, or undefined when the table allows it. */
function violation(edge: Import): string | undefined {
  const layer = edge.from.split('/')[0]!;
  const rule = LAYERS[layer];
  if (!rule) return `${edge.from}: folder ${layer} is not in the layer table`;
  const targetLayer = edge.to.split('/')[0]!;
  if (targetLayer === layer || rule.may.includes(targetLayer)) return undefined;
  if (rule.typesOnly?.includes(edge.to)) {
    return edge.typeOnly ? undefined : `${edge.from} imports values from ${edge.to} (types only)`;
  }
  return `${edge.from} imports ${edge.typeOnly ? 'type ' : ''}${edge.to} (layer ${targetLayer})`;
}

/** The import cycles of the tree (Tarjan's strongly connected components of more than one file). */
function cyclesOf(edges: Import[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) {
    if (!next.has(e.from)) next.set(e.from, []);
    next.get(e.from)!.push(e.to);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let counter = 0;
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (next.get(v) ?? []).includes(v)) cycles.push(component.sort());
  };
  for (const v of next.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

/**
 * The layer table of docs/architecture.md as layer → what it may import, read from its words:
 * "nothing of ours", "all of the above", "everything but `x/` and `y/`", or a list.
 */
function tableOf(markdown: string): Record<string, string[]> {
  const rows = markdown
    .split('\n')
    .filter((line) => /^\| `[a-z]+\/` \|/.test(line))
    .map((line) => line.split('|').map((cell) => cell.trim()));
  const order = rows.map((cells) => cells[1]!.replace(/[`/]/g, ''));
  const table: Record<string, string[]> = {};
  rows.forEach((cells, i) => {
    const layer = order[i]!;
    const words = cells[3]!;
    let may: string[];
    if (words === 'nothing of ours') may = [];
    else if (words === 'all of the above') may = order.slice(0, i);
    else if (words.startsWith('everything but')) {
      const but = [...words.matchAll(/`([a-z]+)\/`/g)].map((m) => m[1]!);
      may = order.filter((l) => l !== layer && !but.includes(l));
    } else
      may = words.split(',').map((part) => {
        const name = part
          .trim()
          .replace(/\(types only\)/, '')
          .trim();
        return name.replace(/`/g, '');
      });
    table[layer] = may.sort();
  });
  return table;
}

describe('layer rules', () => {
  const files = filesUnder(SRC);

  it('finds the source tree', () => {
    expect(files.length).toBeGreaterThan(3);
  });

  it('every import goes only to a layer the importing layer may use', () => {
    const violations = importsOf(files)
      .map(violation)
      .filter((v) => v !== undefined);
    expect(violations).toEqual([]);
  });

  it('refuses an import that runs back up, and a value import of a types-only file', () => {
    expect(violation({ from: 'storage/segment.ts', to: 'broker/admin.ts', typeOnly: true })).toMatch(
      /layer broker/,
    );
    expect(violation({ from: 'http/app.ts', to: 'broker/api.ts', typeOnly: false })).toMatch(/types only/);
    expect(violation({ from: 'http/app.ts', to: 'broker/admin.ts', typeOnly: true })).toMatch(/layer broker/);
    expect(violation({ from: 'http/app.ts', to: 'broker/api.ts', typeOnly: true })).toBeUndefined();
    expect(violation({ from: 'extra/x.ts', to: 'common/assert.ts', typeOnly: false })).toMatch(
      /not in the layer table/,
    );
  });

  it('has no import cycle, type imports included', () => {
    expect(cyclesOf(importsOf(files))).toEqual([]);
    const a = { from: 'a.ts', to: 'b.ts', typeOnly: false };
    const b = { from: 'b.ts', to: 'c.ts', typeOnly: true };
    const c = { from: 'c.ts', to: 'a.ts', typeOnly: false };
    expect(cyclesOf([a, b, c])).toEqual([['a.ts', 'b.ts', 'c.ts']]);
    expect(cyclesOf([a, b])).toEqual([]);
  });

  it('holds the same table as docs/architecture.md', () => {
    const design = readFileSync(join(SRC, '..', 'docs', 'architecture.md'), 'utf8');
    expect(tableOf(design)).toEqual(
      Object.fromEntries(
        Object.entries(LAYERS).map(([layer, rule]) => [
          layer,
          [...rule.may, ...(rule.typesOnly ?? [])].sort(),
        ]),
      ),
    );
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
