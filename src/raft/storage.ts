import { Level } from 'level';
import { assert } from '../common/assert.js';
import type { Random } from '../common/random.js';
import { packr, unpackr } from '../protocol/msgpack.js';
import type { Entry, HardState, Snapshot } from './types.js';

export interface RaftPersistentState {
  hardState: HardState;
  snapshot: Snapshot | undefined;
  /** Entries after the snapshot, in order, without gaps. */
  entries: Entry[];
}

export interface RaftUpdate {
  hardState?: HardState | undefined;
  /**
   * Replaces the snapshot; stored entries at or below its index are dropped. The entries after it
   * are kept only when the stored entry at its index has its term (a local compaction); otherwise
   * the snapshot replaces the whole log (one installed from the leader over a divergent log).
   */
  snapshot?: Snapshot | undefined;
  /** Replace every stored entry from `entries[0].index` on (a conflicting suffix goes in the same batch). */
  entries?: Entry[];
  /**
   * false: the write need not be synced before save resolves (it becomes durable with the next
   * synced one). Only for updates nothing sent depends on, such as a commit index alone. Default true.
   */
  sync?: boolean;
}

/**
 * Durable Raft state. `save` is atomic and synced before it resolves: the driver sends a vote or
 * an append acknowledgement only after the save that records it.
 */
export interface RaftStorage {
  load(): Promise<RaftPersistentState>;
  save(update: RaftUpdate): Promise<void>;
  close(): Promise<void>;
}

const HARD_STATE_KEY = 'h';
const SNAPSHOT_KEY = 's';
const entryKey = (index: number) => `e${index.toString(16).padStart(14, '0')}`;

function encodeEntry(e: Entry): Buffer {
  return packr.pack([e.term, e.index, e.type === 'config' ? 1 : 0, e.data]);
}

function decodeEntry(buf: Buffer): Entry {
  const [term, index, type, data] = unpackr.unpack(buf) as [number, number, number, Uint8Array];
  return { term, index, type: type === 1 ? 'config' : 'normal', data };
}

/** Applies an update to an in-memory copy of the state: the model both storages follow. */
export function applyUpdate(state: RaftPersistentState, update: RaftUpdate): RaftPersistentState {
  let { hardState, snapshot, entries } = state;
  if (update.hardState) hardState = update.hardState;
  if (update.snapshot) {
    const s = update.snapshot;
    const matches = entries.find((e) => e.index === s.index)?.term === s.term;
    snapshot = s;
    entries = matches ? entries.filter((e) => e.index > s.index) : [];
  }
  if (update.entries && update.entries.length > 0) {
    const first = update.entries[0]!.index;
    entries = entries.filter((e) => e.index < first);
    const base = snapshot?.index ?? 0;
    assert(
      first === base + entries.length + 1,
      `entries from ${first} would leave a gap after ${base + entries.length}`,
    );
    entries = [...entries, ...update.entries];
  }
  return { hardState, snapshot, entries };
}

/**
 * Raft state in LevelDB (`level`): the hard state, the snapshot and one key per entry. Each save is
 * one atomic batch written with sync, so a truncated suffix and the entries that replace it land
 * together or not at all.
 */
export class LevelRaftStorage implements RaftStorage {
  #first = 1;
  #last = 0;
  /** Saves run one after another: each computes its deletions from the state the previous left. */
  #tail: Promise<void> = Promise.resolve();

  private constructor(private readonly db: Level<string, Buffer>) {}

  static async open(path: string): Promise<LevelRaftStorage> {
    const db = new Level<string, Buffer>(path, { valueEncoding: 'buffer' });
    await db.open();
    return new LevelRaftStorage(db);
  }

  async load(): Promise<RaftPersistentState> {
    const hard = await this.db.get(HARD_STATE_KEY);
    const snap = await this.db.get(SNAPSHOT_KEY);
    const hardState: HardState = hard
      ? (unpackr.unpack(hard) as HardState)
      : { term: 0, vote: null, commit: 0 };
    const snapshot = snap ? (unpackr.unpack(snap) as Snapshot) : undefined;
    const entries: Entry[] = [];
    for await (const value of this.db.values({ gte: 'e', lt: 'f' })) entries.push(decodeEntry(value));
    this.#first = (snapshot?.index ?? 0) + 1;
    this.#last = entries.at(-1)?.index ?? snapshot?.index ?? 0;
    return { hardState, snapshot, entries };
  }

  save(update: RaftUpdate): Promise<void> {
    const run = this.#tail.then(() => this.#save(update));
    // A failed save fails its caller; the next one still runs after it.
    this.#tail = run.catch(() => {});
    return run;
  }

  async #save(update: RaftUpdate): Promise<void> {
    const ops: ({ type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string })[] = [];
    if (update.hardState) ops.push({ type: 'put', key: HARD_STATE_KEY, value: packr.pack(update.hardState) });
    let first = this.#first;
    let last = this.#last;
    if (update.snapshot) {
      const s = update.snapshot;
      ops.push({ type: 'put', key: SNAPSHOT_KEY, value: packr.pack(s) });
      const at = s.index >= first && s.index <= last ? await this.db.get(entryKey(s.index)) : undefined;
      const matches = at !== undefined && decodeEntry(at).term === s.term;
      // A snapshot over a divergent log replaces all of it (see RaftUpdate.snapshot).
      const dropTo = matches ? s.index : last;
      for (let i = first; i <= dropTo; i++) ops.push({ type: 'del', key: entryKey(i) });
      first = s.index + 1;
      last = matches ? last : s.index;
    }
    if (update.entries && update.entries.length > 0) {
      const from = update.entries[0]!.index;
      for (let i = Math.max(from, first); i <= last; i++) ops.push({ type: 'del', key: entryKey(i) });
      for (const entry of update.entries)
        ops.push({ type: 'put', key: entryKey(entry.index), value: encodeEntry(entry) });
      last = update.entries.at(-1)!.index;
    }
    if (ops.length === 0) return;
    await this.db.batch(ops, { sync: update.sync ?? true } as never);
    this.#first = first;
    this.#last = last;
  }

  async close(): Promise<void> {
    await this.#tail;
    await this.db.close();
  }
}

/**
 * Raft state in memory, for tests and simulations. Saves become durable only when `sync()` runs
 * (or at once with `autoSync`); `crash(random)` keeps a prefix of the unsynced saves, each whole.
 */
export class MemoryRaftStorage implements RaftStorage {
  durable: RaftPersistentState = {
    hardState: { term: 0, vote: null, commit: 0 },
    snapshot: undefined,
    entries: [],
  };
  #pending: { update: RaftUpdate; resolve: () => void }[] = [];
  saves = 0;

  constructor(readonly options: { autoSync?: boolean } = { autoSync: true }) {}

  async load(): Promise<RaftPersistentState> {
    return structuredClone(this.durable);
  }

  save(update: RaftUpdate): Promise<void> {
    this.saves++;
    const copy = structuredClone(update);
    if (this.options.autoSync ?? true) {
      this.durable = applyUpdate(this.durable, copy);
      return Promise.resolve();
    }
    if (update.sync === false) {
      // Resolves at once but stays unsynced: a crash before the next sync may lose it.
      this.#pending.push({ update: copy, resolve: () => {} });
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#pending.push({ update: copy, resolve }));
  }

  /** Makes every pending save durable, in order. */
  sync(): void {
    for (const { update, resolve } of this.#pending.splice(0)) {
      this.durable = applyUpdate(this.durable, update);
      resolve();
    }
  }

  /** Power loss: a prefix of the pending saves lands, whole; the rest is lost and never resolves. */
  crash(random: Random): void {
    const keep = random.int(this.#pending.length + 1);
    for (const { update } of this.#pending.slice(0, keep)) this.durable = applyUpdate(this.durable, update);
    this.#pending = [];
  }

  async close(): Promise<void> {}
}
