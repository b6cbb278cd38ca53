import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/common/random.js';
import {
  applyUpdate,
  LevelRaftStorage,
  MemoryRaftStorage,
  type RaftPersistentState,
  type RaftStorage,
  type RaftUpdate,
} from '../../src/raft/storage.js';
import type { Entry } from '../../src/raft/types.js';

/** One conformance suite for both Raft storages: any sequence of saves reloads exactly. */
const root = await mkdtemp(join(tmpdir(), 'sluice-raft-storage-'));
afterAll(() => rm(root, { recursive: true, force: true }));
let dbCount = 0;

const implementations: [
  string,
  () => Promise<{ storage: RaftStorage; reopen: () => Promise<RaftStorage> }>,
][] = [
  [
    'level',
    async () => {
      const path = join(root, `db-${dbCount++}`);
      const storage = await LevelRaftStorage.open(path);
      return {
        storage,
        reopen: async () => {
          await storage.close();
          const again = await LevelRaftStorage.open(path);
          return again;
        },
      };
    },
  ],
  [
    'memory',
    async () => {
      const storage = new MemoryRaftStorage();
      return {
        storage,
        reopen: async () => {
          const again = new MemoryRaftStorage();
          again.durable = storage.durable;
          return again;
        },
      };
    },
  ],
];

const entry = (index: number, term: number, data = `d${index}`): Entry => ({
  index,
  term,
  type: index % 7 === 0 ? 'config' : 'normal',
  data: Buffer.from(data),
});

/** Random updates that a Raft node could produce: appends, suffix replacements, snapshots. */
function updatesArb(): fc.Arbitrary<
  { kind: 'append' | 'replace' | 'snapshot' | 'hard'; n: number; term: number }[]
> {
  return fc.array(
    fc.record({
      kind: fc.constantFrom('append' as const, 'replace' as const, 'snapshot' as const, 'hard' as const),
      n: fc.integer({ min: 1, max: 5 }),
      term: fc.integer({ min: 1, max: 9 }),
    }),
    { maxLength: 25 },
  );
}

function toUpdate(
  model: RaftPersistentState,
  op: { kind: string; n: number; term: number },
): RaftUpdate | undefined {
  const base = model.snapshot?.index ?? 0;
  const last = model.entries.at(-1)?.index ?? base;
  switch (op.kind) {
    case 'append':
      return { entries: Array.from({ length: op.n }, (_, i) => entry(last + 1 + i, op.term)) };
    case 'replace': {
      const from = Math.max(base + 1, last - op.n + 1);
      return { entries: [entry(from, op.term + 10, `r${from}`)] };
    }
    case 'snapshot': {
      if (last === base) return undefined;
      const index = Math.min(last, base + op.n);
      return {
        snapshot: {
          index,
          term: op.term,
          membership: { voters: [1, 2, 3], learners: [] },
          data: Buffer.from(`s${index}`),
        },
      };
    }
    default:
      return { hardState: { term: op.term, vote: op.n % 3 === 0 ? null : op.n, commit: base } };
  }
}

describe.each(implementations)('Raft storage conformance: %s', (_name, make) => {
  it('reopens to exactly the state the saves describe', async () => {
    await fc.assert(
      fc.asyncProperty(updatesArb(), async (ops) => {
        const { storage, reopen } = await make();
        let model: RaftPersistentState = await storage.load();
        for (const op of ops) {
          const update = toUpdate(model, op);
          if (!update) continue;
          await storage.save(update);
          model = applyUpdate(model, update);
        }
        const again = await reopen();
        const loaded = await again.load();
        expect(loaded.hardState).toEqual(model.hardState);
        expect(loaded.snapshot?.index).toEqual(model.snapshot?.index);
        expect(loaded.entries.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString()])).toEqual(
          model.entries.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString()]),
        );
        await again.close();
      }),
      { numRuns: 25 },
    );
  });
});

describe('MemoryRaftStorage power loss', () => {
  it('an unsynced save resolves at once and is lost in a crash unless a synced one follows', async () => {
    const lost = new MemoryRaftStorage({ autoSync: false });
    void lost.save({ hardState: { term: 1, vote: 2, commit: 0 } });
    lost.sync();
    await lost.save({ hardState: { term: 1, vote: 2, commit: 5 }, sync: false });
    lost.crash({ int: () => 0 } as unknown as SeededRandom);
    expect((await lost.load()).hardState.commit).toBe(0);
    const kept = new MemoryRaftStorage({ autoSync: false });
    await kept.save({ hardState: { term: 1, vote: 2, commit: 5 }, sync: false });
    void kept.save({ entries: [entry(1, 1)] });
    kept.sync();
    kept.crash({ int: () => 0 } as unknown as SeededRandom);
    expect((await kept.load()).hardState.commit).toBe(5);
  });

  it('keeps a prefix of the unsynced saves, each whole', async () => {
    const kept = new Set<number>();
    for (let seed = 0; seed < 30; seed++) {
      const storage = new MemoryRaftStorage({ autoSync: false });
      void storage.save({ entries: [entry(1, 1)] });
      storage.sync();
      void storage.save({ entries: [entry(2, 1), entry(3, 1)] });
      void storage.save({ hardState: { term: 2, vote: 1, commit: 1 } });
      void storage.save({ entries: [entry(3, 2)] });
      storage.crash(new SeededRandom(seed));
      const state = await storage.load();
      const shape = `${state.entries.map((e) => `${e.index}/${e.term}`).join(' ')} t${state.hardState.term}`;
      expect(['1/1 t0', '1/1 2/1 3/1 t0', '1/1 2/1 3/1 t2', '1/1 2/1 3/2 t2']).toContain(shape);
      kept.add(state.entries.length * 10 + state.hardState.term);
    }
    expect(kept.size).toBeGreaterThan(2);
  });
});

describe.each(implementations)('Raft storage snapshots and ordering: %s', (_name, make) => {
  it('a snapshot over a divergent log replaces all of it; a local compaction keeps what follows', async () => {
    const { storage, reopen } = await make();
    const membership = { voters: [1, 2, 3], learners: [] };
    await storage.save({ entries: [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)] });
    // Local compaction at 2 (the stored entry 2 has term 1): entries 3 and 4 stay.
    await storage.save({ snapshot: { index: 2, term: 1, membership, data: Buffer.from('s2') } });
    await storage.save({ entries: [entry(5, 1)] });
    // A leader's snapshot at 4 of term 3: our entry 4 has term 1, so 5 is stale and must go.
    await storage.save({ snapshot: { index: 4, term: 3, membership, data: Buffer.from('s4') } });
    const again = await reopen();
    const loaded = await again.load();
    expect(loaded.snapshot?.index).toBe(4);
    expect(loaded.entries).toEqual([]);
    await again.save({ entries: [entry(5, 3)] });
    expect((await again.load()).entries.map((e) => `${e.index}/${e.term}`)).toEqual(['5/3']);
    await again.close();
  });

  it('saves issued without waiting apply in the order they were issued', async () => {
    const { storage, reopen } = await make();
    const membership = { voters: [1], learners: [] };
    const saves = [
      storage.save({ entries: [entry(1, 1), entry(2, 1), entry(3, 1)] }),
      storage.save({ snapshot: { index: 2, term: 1, membership, data: Buffer.from('s2') } }),
      storage.save({ entries: [entry(4, 1), entry(5, 1)] }),
      storage.save({ entries: [entry(4, 2)] }),
      storage.save({ hardState: { term: 2, vote: 1, commit: 3 } }),
    ];
    await Promise.all(saves);
    const again = await reopen();
    const loaded = await again.load();
    expect(loaded.hardState).toEqual({ term: 2, vote: 1, commit: 3 });
    expect(loaded.snapshot?.index).toBe(2);
    expect(loaded.entries.map((e) => `${e.index}/${e.term}`)).toEqual(['3/1', '4/2']);
    await again.close();
  });
});
