import { SeededRandom } from '../../src/common/random.js';
import { RaftCore } from '../../src/raft/core.js';
import type { Entry, HardState, Message, NodeId, Snapshot } from '../../src/raft/types.js';

/**
 * Runs a Raft scenario written as commands, returning the transcript the commands print. Every
 * Ready is persisted and applied at once; messages wait in the network until `deliver`.
 *
 *   cluster voters=1,2,3 [learners=4]     a new cluster (nodes start as followers)
 *   tick <node> [n]                       n ticks on one node
 *   tick-all [n]
 *   deliver [n]                           deliver messages (and their answers) until none is left,
 *                                         or only the next n messages
 *   queue                                 the messages waiting, in order, as type from>to
 *   run [n]                               n rounds of: every node ticks, then deliver
 *   partition 1 / 2 3                     only nodes on the same side hear each other
 *   heal                                  undoes partition and every block
 *   block <type> <from> <to>              drop messages of one type on one directed link
 *   hold <type> <from> <to>               keep such messages back (those queued and later ones)
 *   release                               queue the held messages again, in order, and stop holding
 *   propose <node> <data>                 prints the index, or the error code
 *   transfer <node> <to>
 *   add-voter|remove-voter|add-learner <node> <target>
 *   compact <node>                        snapshot at the applied index
 *   crash <node> / restart <node>         restart reloads what was persisted
 *   read <node> <context>                 ReadIndex; prints readStates on deliver
 *   status                                one line per node
 *   log <node>                            the node's entries as index/term:data
 *   applied <node>                        the data the node's state machine applied, in order
 */
interface ScriptNode {
  core: RaftCore | undefined;
  hardState: HardState;
  snapshot: Snapshot | undefined;
  entries: Entry[];
  applied: string[];
}

export class ScriptCluster {
  nodes = new Map<NodeId, ScriptNode>();
  voters: NodeId[] = [];
  learners: NodeId[] = [];
  queue: Message[] = [];
  sides: Set<NodeId>[] | undefined;
  blocked = new Set<string>();
  holding = new Set<string>();
  held: Message[] = [];
  out: string[] = [];

  run(command: string): void {
    const [verb, ...args] = command.trim().split(/\s+/);
    const n = (i: number) => Number(args[i]);
    switch (verb) {
      case 'cluster': {
        for (const arg of args) {
          const [k, v] = arg.split('=');
          const ids = v!.split(',').map(Number);
          if (k === 'voters') this.voters = ids;
          if (k === 'learners') this.learners = ids;
        }
        for (const id of [...this.voters, ...this.learners]) {
          const node: ScriptNode = {
            core: undefined,
            hardState: { term: 0, vote: null, commit: 0 },
            snapshot: undefined,
            entries: [],
            applied: [],
          };
          this.nodes.set(id, node);
          this.#start(id, node);
        }
        break;
      }
      case 'tick':
        for (let i = 0; i < (args[1] ? n(1) : 1); i++) {
          this.#node(n(0)).core!.tick();
          this.#flush(n(0));
        }
        break;
      case 'tick-all':
        for (let i = 0; i < (args[0] ? n(0) : 1); i++) {
          for (const id of this.nodes.keys()) {
            const core = this.nodes.get(id)!.core;
            if (core) {
              core.tick();
              this.#flush(id);
            }
          }
        }
        break;
      case 'deliver':
        this.#deliverAll(args[0] ? n(0) : 100_000);
        break;
      case 'queue':
        this.out.push(`queue: ${this.queue.map((m) => `${m.type} ${m.from}>${m.to}`).join(', ') || 'empty'}`);
        break;
      case 'run':
        for (let i = 0; i < (args[0] ? n(0) : 1); i++) {
          this.run('tick-all');
          this.#deliverAll();
        }
        break;
      case 'partition': {
        const text = args.join(' ');
        this.sides = text.split('/').map((side) => new Set(side.trim().split(/\s+/).map(Number)));
        break;
      }
      case 'heal':
        this.sides = undefined;
        this.blocked.clear();
        break;
      case 'block':
        this.blocked.add(`${args[0]} ${n(1)} ${n(2)}`);
        break;
      case 'hold':
        this.holding.add(`${args[0]} ${n(1)} ${n(2)}`);
        break;
      case 'release':
        this.holding.clear();
        this.queue.push(...this.held.splice(0));
        break;
      case 'applied':
        this.out.push(`${n(0)} applied: ${this.#node(n(0)).applied.join(',')}`);
        break;
      case 'propose':
        try {
          const { index } = this.#node(n(0)).core!.propose(Buffer.from(args[1] ?? ''));
          this.out.push(`proposed at ${index}`);
        } catch (error) {
          this.out.push(`refused: ${(error as { code?: string }).code}`);
        }
        this.#flush(n(0));
        break;
      case 'transfer':
        this.#node(n(0)).core!.transferLeadership(n(1));
        this.#flush(n(0));
        break;
      case 'add-voter':
      case 'remove-voter':
      case 'add-learner': {
        const kind =
          verb === 'add-voter' ? 'addVoter' : verb === 'remove-voter' ? 'removeVoter' : 'addLearner';
        try {
          const { index } = this.#node(n(0)).core!.proposeConfigChange({ kind, node: n(1) });
          this.out.push(`config change at ${index}`);
        } catch (error) {
          this.out.push(`refused: ${(error as { code?: string }).code}`);
        }
        if (!this.nodes.has(n(1))) {
          const node: ScriptNode = {
            core: undefined,
            hardState: { term: 0, vote: null, commit: 0 },
            snapshot: undefined,
            entries: [],
            applied: [],
          };
          this.nodes.set(n(1), node);
          // A joining node starts from the bootstrap membership; the log's changes apply on top.
          this.#start(n(1), node);
        }
        this.#flush(n(0));
        break;
      }
      case 'compact': {
        const core = this.#node(n(0)).core!;
        const node = this.#node(n(0));
        const index = core.appliedIndex;
        const data = Buffer.from(node.applied.join(','));
        const snapshot = core.compact(index, data);
        if (snapshot) {
          node.snapshot = snapshot;
          node.entries = node.entries.filter((e) => e.index > index);
        }
        this.out.push(`node ${n(0)} snapshot at ${index}`);
        break;
      }
      case 'crash':
        this.#node(n(0)).core = undefined;
        break;
      case 'restart':
        this.#start(n(0), this.#node(n(0)));
        break;
      case 'read':
        this.#node(n(0)).core!.readIndex(n(1));
        this.#flush(n(0));
        break;
      case 'status':
        for (const [id, node] of [...this.nodes].sort((a, b) => a[0] - b[0])) {
          const c = node.core;
          if (!c) {
            this.out.push(`${id}: down`);
            continue;
          }
          this.out.push(
            `${id}: ${c.role} term=${c.term} leader=${c.leaderId ?? '-'} last=${c.lastIndex()} commit=${c.commitIndex} applied=${c.appliedIndex} voters=${c.membership.voters.join(',')}${c.membership.learners.length ? ` learners=${c.membership.learners.join(',')}` : ''}`,
          );
        }
        break;
      case 'log': {
        const c = this.#node(n(0)).core!;
        const parts = c
          .entriesFrom(c.snapshotIndex + 1)
          .map(
            (e) =>
              `${e.index}/${e.term}${e.type === 'config' ? ':config' : e.data.length ? `:${Buffer.from(e.data).toString()}` : ''}`,
          );
        this.out.push(
          `${n(0)}: ${[c.snapshotIndex > 0 ? `[snapshot ${c.snapshotIndex}]` : '', ...parts].filter(Boolean).join(' ')}`,
        );
        break;
      }
      default:
        throw new Error(`unknown command ${verb}`);
    }
  }

  #node(id: NodeId): ScriptNode {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  #start(id: NodeId, node: ScriptNode, membership = { voters: this.voters, learners: this.learners }): void {
    node.core = new RaftCore(
      { id, electionTicks: 10, heartbeatTicks: 1 },
      { hardState: node.hardState, membership, snapshot: node.snapshot, entries: node.entries },
      new SeededRandom(id),
    );
    node.applied = node.applied.slice(0, node.snapshot?.index ?? 0);
  }

  #flush(id: NodeId): void {
    const node = this.#node(id);
    const core = node.core;
    if (!core) return;
    while (core.hasReady()) {
      const ready = core.ready();
      if (ready.hardState) node.hardState = ready.hardState;
      if (ready.snapshot) {
        node.snapshot = ready.snapshot;
        node.entries = [];
        node.applied = Buffer.from(ready.snapshot.data).toString().split(',').filter(Boolean);
      }
      if (ready.entries.length) {
        const first = ready.entries[0]!.index;
        node.entries = node.entries.filter((e) => e.index < first).concat(ready.entries);
      }
      this.queue.push(...ready.messages);
      for (const e of ready.committed)
        if (e.data.length && e.type === 'normal') node.applied.push(Buffer.from(e.data).toString());
      for (const r of ready.readStates)
        this.out.push(`node ${id} read ${r.context} ready at index ${r.index}`);
      for (const c of ready.readsRejected) this.out.push(`node ${id} read ${c} rejected`);
      core.advance(ready);
    }
  }

  #deliverAll(limit = 100_000): void {
    for (let guard = 0; this.queue.length > 0 && guard < limit; guard++) {
      const m = this.queue.shift()!;
      const to = this.nodes.get(m.to);
      if (!to?.core) continue;
      if (this.sides && !this.sides.some((s) => s.has(m.from) && s.has(m.to))) continue;
      const link = `${m.type} ${m.from} ${m.to}`;
      if (this.blocked.has(link)) continue;
      if (this.holding.has(link)) {
        this.held.push(m);
        continue;
      }
      to.core.step(m);
      this.#flush(m.to);
    }
  }
}

/** Runs a script file's text; returns it with every `----` block replaced by the actual output. */
export function runScript(text: string): string {
  const cluster = new ScriptCluster();
  const blocks = text.trimEnd().split(/\n\n+/);
  const rendered: string[] = [];
  for (const block of blocks) {
    const [commandPart] = block.split('\n----\n');
    const commands = commandPart!.split('\n').filter((l) => l.trim() !== '');
    const comments = commands.filter((l) => l.startsWith('#'));
    cluster.out = [];
    for (const command of commands) if (!command.startsWith('#')) cluster.run(command);
    const body = commands.join('\n');
    rendered.push(
      cluster.out.length > 0 || block.includes('\n----\n')
        ? `${body}\n----\n${cluster.out.join('\n')}`
        : body,
    );
    void comments;
  }
  return `${rendered.join('\n\n')}\n`;
}
