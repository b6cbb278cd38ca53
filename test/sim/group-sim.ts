import type { Broker } from '../../src/broker/broker.js';
import { isSluiceError } from '../../src/common/errors.js';
import type { SeededRandom } from '../../src/common/random.js';
import type { GroupCoordinator } from '../../src/groups/coordinator.js';
import type { GroupMemberView } from '../../src/protocol/api.js';

/**
 * Consumer-group members and their coordinators in the whole-cluster simulation (cluster-sim.ts).
 *
 * The coordinator is the real one: each broker's `GroupsService` with its `GroupCoordinator`s,
 * writing every change (acks=all) to the simulated, replicated `__consumer_offsets` partition
 * before answering, and a new leader of that partition replaying what is below its high watermark
 * before it answers (COORDINATOR_LOAD_IN_PROGRESS meanwhile). Crashes, partitions, loss and pauses
 * of the node that leads it move the coordinator as they move any leader.
 *
 * Members are clients outside the cluster (on the clients' host, node 0), one request in flight
 * each: they join, heartbeat (naming the partitions they hold), poll the group's topic through the
 * coordinator, commit what they polled (some at once, some late, from an older poll and epoch, as
 * a slow processor does), auto-commit, leave, crash (stop without leaving, so that their sessions
 * expire) and stall (stop for a while and come back with the same member id). A member refused
 * with UNKNOWN_MEMBER_ID or FENCED_MEMBER_EPOCH joins again as a new member. A reader client asks
 * for the group's committed offsets now and then.
 *
 * What "two owners at once" means. An owner of a partition is a member whose assignment holds it,
 * or that is revoking it (told to give it up, not yet acknowledged), in a coordinator's state: it
 * is the member the coordinator returns the partition's records to and whose commits of it it
 * accepts. Each coordinator incarnation is one node's coordinator for one leader epoch of the
 * offsets partition. Across a failover there are two states at one simulated instant (the old
 * leader may not yet know it was deposed), but they are not the same time of the group's
 * history: the history is the offsets partition's log, the new incarnation starts from what was
 * acknowledged there, and the old one can no longer have a change acknowledged. The states that
 * are "at once" are those of the incarnations that would answer a request now: loaded, on a node
 * that is up, still leading the offsets partition at their epoch and within their leadership
 * lease (the broker reached the controller within its session, `canLead`). So, after every step:
 * - within each loaded incarnation, every partition is held (assigned or revoking) by at most one
 *   member, and its owner map agrees with the members' holdings;
 * - across the incarnations that would answer now, no partition is held by two different members.
 *
 * "No committed offset goes back as seen by readers": the readers are the committers (an
 * acknowledged commit says the committed offset is now that), the reader client (the committed
 * offsets of a group description) and the members' polls (a poll of a partition starts at the
 * committed offset or past it). Causally ordered on the simulation's clock: what a reader is
 * answered must be at least every committed offset acknowledged or read before its request was
 * sent.
 */

export const GROUP = 'g';
export const GROUP_TOPIC = 't';
export const HEARTBEAT_MS = 60;
const SESSION_MS_MIN = 400;
const MEMBERS = 3;

export interface GroupSimHost {
  readonly random: SeededRandom;
  now(): number;
  schedule(delayMs: number, fn: () => void): void;
  trace(line: string): void;
  fail(message: string): void;
  /** The node that leads the offsets partition as some live node's metadata says, if any. */
  coordinatorNode(): number | undefined;
  request<T>(
    to: number,
    run: (broker: Broker) => Promise<T>,
    done: (outcome: { ok: T } | { error: unknown }) => void,
  ): void;
  /**
   * Reads a partition of the group's topic from its leader as node `from` knows it (a group poll
   * reads only the partitions its node leads here): the next offset, or undefined when it cannot.
   */
  readPartition(from: number, partition: number, offset: number): Promise<number | undefined>;
  /** Every coordinator incarnation loaded on a live broker, and whether it would answer now. */
  incarnations(): {
    node: number;
    leaderEpoch: number;
    answers: boolean;
    coordinator: GroupCoordinator;
  }[];
}

export interface GroupSimStats {
  joins: number;
  heartbeats: number;
  polls: number;
  polledRecords: number;
  commits: number;
  /** Commits refused as stale (an older epoch, a partition given up, an expired member). */
  staleRefused: number;
  describes: number;
  crashes: number;
  stalls: number;
  leaves: number;
  fenced: number;
  /** Partitions moved from one member to another (as the coordinators' states show). */
  moves: number;
  /** Coordinator incarnations seen loaded (more than one: a failover). */
  incarnations: number;
}

interface SimMember {
  slot: number;
  id: string | undefined;
  epoch: number;
  state: 'out' | 'joining' | 'in';
  inflight: boolean;
  autoCommit: boolean;
  /** How long it takes to process a poll's records before it commits them. */
  processMs: number;
  stalledUntil: number;
  /** Back from a stall: it first commits what it had processed before (as a paused process does). */
  resumed: boolean;
  /** What its last answer assigned it. */
  owned: string[];
  /** Polled and processed, not yet committed: each with the epoch of the poll. */
  pending: {
    epoch: number;
    readyAt: number;
    offsets: { topic: string; partition: number; offset: number }[];
  }[];
}

const tpKey = (topic: string, partition: number) => `${topic}/${partition}`;

export class GroupSim {
  readonly stats: GroupSimStats = {
    joins: 0,
    heartbeats: 0,
    polls: 0,
    polledRecords: 0,
    commits: 0,
    staleRefused: 0,
    describes: 0,
    crashes: 0,
    stalls: 0,
    leaves: 0,
    fenced: 0,
    moves: 0,
    incarnations: 0,
  };
  readonly #members: SimMember[] = [];
  /** Per partition: the highest committed offset acknowledged to or read by a reader. */
  readonly #committed = new Map<string, number>();
  #active = true;
  #readerInflight = false;
  readonly #assignor: 'range' | 'roundrobin' | 'sticky';
  /** The holder of each partition in the newest incarnation seen, to count moves. */
  readonly #lastHolder = new Map<string, string>();
  readonly #seen = new Set<string>();
  /** Per incarnation, per partition: the committed offset its state held at the last step. */
  readonly #stateCommitted = new WeakMap<GroupCoordinator, Map<string, number>>();

  constructor(readonly host: GroupSimHost) {
    const r = host.random;
    this.#assignor = r.pick(['range', 'roundrobin', 'sticky'] as const);
    for (let slot = 0; slot < MEMBERS; slot++)
      this.#members.push({
        slot,
        id: undefined,
        epoch: 0,
        state: 'out',
        inflight: false,
        autoCommit: r.chance(0.3),
        processMs: r.chance(0.5) ? 0 : 100 + r.int(700),
        stalledUntil: 0,
        resumed: false,
        owned: [],
        pending: [],
      });
  }

  /** Members act every few milliseconds until `untilMs`, then stop (some leave first). */
  start(untilMs: number): void {
    const r = this.host.random;
    for (const m of this.#members)
      for (let t = 1 + r.int(20); t < untilMs; t += 8 + r.int(25)) this.host.schedule(t, () => this.#act(m));
    for (let t = 30; t < untilMs; t += 40 + r.int(80)) this.host.schedule(t, () => this.#describe());
    this.host.schedule(untilMs, () => {
      this.#active = false;
    });
  }

  /** No member or reader request in flight after the members stopped. */
  get done(): boolean {
    return !this.#active && !this.#readerInflight && this.#members.every((m) => !m.inflight);
  }

  #trace(line: string): void {
    this.host.trace(`group: ${line}`);
  }

  // ---- members ----

  #act(m: SimMember): void {
    if (!this.#active || m.inflight || m.stalledUntil > this.host.now()) return;
    const r = this.host.random;
    if (m.state === 'out') {
      if (r.chance(0.5)) this.#join(m);
      return;
    }
    if (m.state !== 'in') return;
    if (m.resumed) {
      m.resumed = false;
      if (m.pending.length > 0) {
        this.#commit(m, true);
        return;
      }
    }
    const roll = r.int(200);
    if (roll < 2) {
      // A crash: gone without leaving; its session expires on the coordinator.
      this.#trace(`member ${m.slot} (${m.id}) crashes holding [${m.owned}]`);
      this.stats.crashes++;
      this.#reset(m);
    } else if (roll < 3) {
      // A stall (a long pause in processing): it comes back with the same id and epoch.
      m.stalledUntil = this.host.now() + 200 + r.int(800);
      m.resumed = true;
      this.stats.stalls++;
      this.#trace(`member ${m.slot} (${m.id}) stalls until ${m.stalledUntil}`);
    } else if (roll < 7) {
      this.#leave(m);
    } else if (roll < 120 && (m.pending[0]?.readyAt ?? Number.POSITIVE_INFINITY) <= this.host.now()) {
      this.#commit(m);
    } else if (roll < 60 || roll >= 170) {
      this.#heartbeat(m);
    } else {
      this.#poll(m);
    }
  }

  #reset(m: SimMember): void {
    m.state = 'out';
    m.id = undefined;
    m.epoch = 0;
    m.owned = [];
    m.pending = [];
  }

  /** A request of member `m` to the coordinator; `ok` with its answer, `refused` with an error code. */
  #send<T>(
    m: SimMember,
    what: string,
    run: (broker: Broker) => Promise<T>,
    ok: (answer: T) => void,
    refused?: (code: string | undefined) => void,
  ): void {
    const to = this.host.coordinatorNode();
    if (to === undefined) return;
    m.inflight = true;
    const id = m.id;
    this.host.request(to, run, (outcome) => {
      m.inflight = false;
      if (m.id !== id) return;
      if ('ok' in outcome) {
        ok(outcome.ok);
        return;
      }
      const code = isSluiceError(outcome.error) ? outcome.error.code : undefined;
      if (code === undefined)
        this.host.fail(`group ${what} of member ${m.slot} failed: ${(outcome.error as Error).stack}`);
      if (code === 'UNKNOWN_MEMBER_ID' || code === 'FENCED_MEMBER_EPOCH') {
        // Fenced: whatever it held is not its own any more; it joins again as a new member.
        this.stats.fenced++;
        this.#trace(`member ${m.slot} (${id}) fenced on ${what}: ${code}`);
        this.#reset(m);
        return;
      }
      refused?.(code);
    });
  }

  #adopt(
    m: SimMember,
    view: { memberEpoch: number; assignment: { topic: string; partition: number }[] },
  ): void {
    m.epoch = view.memberEpoch;
    const owned = view.assignment.map((tp) => tpKey(tp.topic, tp.partition));
    if (owned.join() !== m.owned.join())
      this.#trace(`member ${m.slot} (${m.id}) epoch ${m.epoch} holds [${owned}]`);
    m.owned = owned;
  }

  #join(m: SimMember): void {
    const r = this.host.random;
    m.state = 'joining';
    const sessionTimeoutMs = SESSION_MS_MIN + r.int(400);
    this.#send(
      m,
      'join',
      (broker) =>
        broker.groups.join(GROUP, { topics: [GROUP_TOPIC], sessionTimeoutMs, assignor: this.#assignor }),
      (view: GroupMemberView) => {
        if (m.state !== 'joining') return;
        m.state = 'in';
        m.id = view.memberId;
        this.stats.joins++;
        this.#trace(`member ${m.slot} joined as ${view.memberId}`);
        this.#adopt(m, view);
      },
      () => {
        // Not answered (or not here): it may have joined anyway; the orphan's session expires.
        if (m.state === 'joining') m.state = 'out';
      },
    );
    if (!m.inflight) m.state = 'out';
  }

  #heartbeat(m: SimMember): void {
    const id = m.id!;
    const epoch = m.epoch;
    const owned = m.owned.map(parseTp);
    this.#send(
      m,
      'heartbeat',
      (broker) => broker.groups.heartbeat(GROUP, id, { memberEpoch: epoch, owned }),
      (view) => {
        this.stats.heartbeats++;
        this.#adopt(m, view);
      },
    );
  }

  #poll(m: SimMember): void {
    const id = m.id!;
    const epoch = m.epoch;
    const sent = new Map(this.#committed);
    const had = new Set(m.owned);
    this.#send(
      m,
      'poll',
      async (broker) => {
        const result = await broker.groups.poll(GROUP, id, {
          memberEpoch: epoch,
          maxBytes: 4096,
          maxWaitMs: 0,
          autoCommit: m.autoCommit,
        });
        // What travels back: the reads' offsets, not their bytes. A partition this node does not
        // lead comes back empty at the offset the member's read starts at; it is read from its
        // leader (as the HTTP layer's forwarding would).
        const partitions = [];
        for (const p of result.partitions) {
          let nextOffset = p.nextOffset;
          if (p.batchCount === 0)
            nextOffset =
              (await this.host.readPartition(broker.node.nodeId, p.partition, p.offset)) ?? nextOffset;
          partitions.push({
            topic: p.topic,
            partition: p.partition,
            offset: p.offset,
            nextOffset,
            first: !had.has(tpKey(p.topic, p.partition)),
          });
        }
        return { memberEpoch: result.memberEpoch, assignment: result.assignment, partitions };
      },
      (answer) => {
        this.stats.polls++;
        this.#adopt(m, answer);
        const offsets: { topic: string; partition: number; offset: number }[] = [];
        for (const p of answer.partitions) {
          const k = tpKey(p.topic, p.partition);
          // A partition the member did not hold before is read from its committed offset (the
          // coordinator keeps a member's position only while it holds the partition).
          const floor = sent.get(k);
          if (p.first && floor !== undefined && p.offset < floor)
            this.host.fail(
              `group: member ${m.slot} (${id}) started reading ${k} at ${p.offset}, below its committed offset ${floor} acknowledged before the poll`,
            );
          if (p.nextOffset <= p.offset) continue;
          this.stats.polledRecords += p.nextOffset - p.offset;
          offsets.push({ topic: p.topic, partition: p.partition, offset: p.nextOffset });
        }
        if (m.autoCommit) {
          // The next poll committed the previous one's offsets: what it committed is the floor now.
          return;
        }
        if (offsets.length === 0) return;
        m.pending.push({ epoch: answer.memberEpoch, readyAt: this.host.now() + m.processMs, offsets });
        this.#trace(
          `member ${m.slot} (${id}) processes ${offsets.map((o) => `${o.topic}/${o.partition}<${o.offset}`)}`,
        );
        if (this.host.random.chance(0.06)) {
          // These records take long to process (a long GC pause, a slow batch): the member goes
          // quiet, its session may expire and its partitions move; back, it commits them first.
          m.stalledUntil = this.host.now() + 300 + this.host.random.int(700);
          m.resumed = true;
          this.stats.stalls++;
          this.#trace(`member ${m.slot} (${id}) processes until ${m.stalledUntil}`);
        }
      },
    );
  }

  #commit(m: SimMember, newest = false): void {
    const id = m.id!;
    const r = this.host.random;
    // Most commit the oldest processed poll; some wait and commit a later one first (the older is
    // then dropped): either way with the epoch of the poll that returned the records.
    const entry = !newest && r.chance(0.8) ? m.pending.shift()! : m.pending.splice(0).at(-1)!;
    const floor = new Map(this.#committed);
    this.#send(
      m,
      'commit',
      (broker) =>
        broker.groups.commit(GROUP, { memberId: id, memberEpoch: entry.epoch, offsets: entry.offsets }),
      () => {
        this.stats.commits++;
        for (const o of entry.offsets) {
          const k = tpKey(o.topic, o.partition);
          this.#trace(`member ${m.slot} (${id}) committed ${k} at ${o.offset} (epoch ${entry.epoch})`);
          this.#read(
            k,
            o.offset,
            floor,
            `an acknowledged commit by member ${m.slot} (${id}, epoch ${entry.epoch})`,
          );
        }
      },
      (code) => {
        this.#trace(`member ${m.slot} (${id}) commit refused: ${code}`);
        if (code === 'STALE_MEMBER_EPOCH') this.stats.staleRefused++;
      },
    );
  }

  #leave(m: SimMember): void {
    const id = m.id!;
    this.#send(
      m,
      'leave',
      (broker) => broker.groups.leave(GROUP, id),
      () => {
        this.stats.leaves++;
        this.#trace(`member ${m.slot} (${id}) left`);
        this.#reset(m);
      },
    );
  }

  // ---- the reader ----

  #describe(): void {
    if (!this.#active || this.#readerInflight) return;
    const to = this.host.coordinatorNode();
    if (to === undefined) return;
    this.#readerInflight = true;
    const floor = new Map(this.#committed);
    this.host.request(
      to,
      async (broker) => {
        const d = await broker.groups.describe(GROUP);
        return d.partitions.map((p) => ({ k: tpKey(p.topic, p.partition), committed: p.committed }));
      },
      (outcome) => {
        this.#readerInflight = false;
        if (!('ok' in outcome)) {
          if (!isSluiceError(outcome.error))
            this.host.fail(`group describe failed: ${(outcome.error as Error).stack}`);
          return;
        }
        this.stats.describes++;
        for (const { k, committed } of outcome.ok) {
          if (committed === null) {
            if (floor.has(k))
              this.host.fail(
                `group: the committed offset of ${k} went back from ${floor.get(k)} to none (a description by node ${to})`,
              );
            continue;
          }
          this.#read(k, committed, floor, `a description by node ${to}`);
        }
      },
    );
  }

  /**
   * A reader saw `offset` committed for partition `k`: at least what was acknowledged or read
   * before its request was sent (`floor`); answers overtaking each other in flight are not ordered.
   */
  #read(k: string, offset: number, floor: ReadonlyMap<string, number>, how: string): void {
    const before = floor.get(k);
    if (before !== undefined && offset < before)
      this.host.fail(`group: the committed offset of ${k} went back from ${before} to ${offset} (${how})`);
    this.#committed.set(k, Math.max(this.#committed.get(k) ?? offset, offset));
  }

  // ---- the owners ----

  /** After every step: no partition has two owners in any state that is "now" (see above). */
  check(): void {
    const holders = new Map<string, { member: string; where: string }>();
    for (const inc of this.host.incarnations()) {
      const c = inc.coordinator;
      const where = `node ${inc.node} epoch ${inc.leaderEpoch}`;
      if (!this.#seen.has(where)) {
        this.#seen.add(where);
        this.stats.incarnations++;
        this.#trace(`coordinator loaded on ${where}`);
      }
      if (!c.has(GROUP)) continue;
      const d = c.describe(GROUP);
      // Within one incarnation the committed offsets only move forward (what it has not written
      // yet may be lost with it, but it never goes back in its own state).
      let was = this.#stateCommitted.get(c);
      if (!was) {
        was = new Map();
        this.#stateCommitted.set(c, was);
      }
      for (const o of d.offsets) {
        const k = tpKey(o.topic, o.partition);
        const before = was.get(k);
        if (before !== undefined && o.offset < before)
          this.host.fail(
            `group: the committed offset of ${k} went back from ${before} to ${o.offset} on the coordinator at ${where}`,
          );
        was.set(k, o.offset);
      }
      const mine = new Map<string, string>();
      for (const member of d.members)
        for (const tp of [...member.assignment, ...member.revoking]) {
          const k = tpKey(tp.topic, tp.partition);
          const other = mine.get(k);
          if (other !== undefined && other !== member.memberId)
            this.host.fail(
              `group: ${k} has two owners on the coordinator at ${where}: ${other} and ${member.memberId}`,
            );
          mine.set(k, member.memberId);
        }
      const owners = c.owners(GROUP);
      for (const [raw, member] of owners) {
        const [topic, partition] = raw.split('\u0000') as [string, string];
        const k = tpKey(topic, Number(partition));
        if (mine.get(k) !== member)
          this.host.fail(
            `group: the coordinator at ${where} records ${member} as the owner of ${k}, held by ${mine.get(k) ?? 'no member'}`,
          );
      }
      for (const [k, member] of mine)
        if (!owners.has(`${k.slice(0, k.lastIndexOf('/'))}\u0000${k.slice(k.lastIndexOf('/') + 1)}`))
          this.host.fail(
            `group: ${member} holds ${k} on the coordinator at ${where}, which records no owner`,
          );
      if (!inc.answers) continue;
      for (const [k, member] of mine) {
        const other = holders.get(k);
        if (other && other.member !== member)
          this.host.fail(
            `group: ${k} has two owners at once: ${other.member} on the coordinator at ${other.where} and ${member} at ${where}`,
          );
        holders.set(k, { member, where });
        const last = this.#lastHolder.get(k);
        if (last !== member) {
          if (last !== undefined) this.stats.moves++;
          this.#lastHolder.set(k, member);
        }
      }
    }
  }
}

function parseTp(k: string): { topic: string; partition: number } {
  const at = k.lastIndexOf('/');
  return { topic: k.slice(0, at), partition: Number(k.slice(at + 1)) };
}
