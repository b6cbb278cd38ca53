import { Broker } from '../../src/broker/broker.js';
import { MetadataTopicRegistry } from '../../src/broker/metadata-registry.js';
import type { ReplicaFetchTransport } from '../../src/broker/replication.js';
import { isSluiceError, SluiceError } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import { decodeRecords, splitBatches } from '../../src/protocol/batch.js';
import type { ReplicaFetchPartitionAnswer, ReplicaFetchRequest } from '../../src/protocol/internal-api.js';
import { packr, unpackr } from '../../src/protocol/msgpack.js';
import { recordArraySource } from '../../src/protocol/produce-body.js';
import type { PartitionReplica } from '../../src/replication/replica.js';
import { type FileHandle, type FileSystem, SimulatedFileSystem } from '../../src/storage/fs.js';
import { LogManager } from '../../src/storage/log-manager.js';
import type { SimNode } from './cluster.js';
import { GroupSim, type GroupSimStats, HEARTBEAT_MS } from './group-sim.js';
import { type MetadataProcess, MetadataSim } from './metadata-sim.js';

/**
 * A seeded simulation of the whole cluster: the metadata simulation's Raft quorum, controllers and
 * broker heartbeats (metadata-sim.ts over cluster.ts), and on every node a real `Broker` (its
 * reconciler, `PartitionReplica`s, `ProduceService`, `FetchService` and `ReplicationService`)
 * over real `PartitionLog`s on a `SimulatedFileSystem` that a crash cuts back to what was synced
 * (unsynced writes and unsynced directory changes lost). Follower fetches and the leader's answers
 * travel over the simulated network (msgpack-encoded, as between real nodes) through the
 * `ReplicaFetchTransport` seam; producers (acks=all, some acks=1) and consumers reading up to the
 * high watermark are clients outside the cluster whose requests and answers travel over it too.
 * Everything runs on the simulation's clock, each node at its own rate.
 *
 * Faults: crashes (power loss; with `loseDisks`, one in ten loses the whole disk) and restarts, symmetric and one-way network partitions, message
 * loss, delays with a long tail, pauses (as SIGSTOP). Topics flush every append (`sync`) or on a
 * timer (`async`). Every restart registers as after a power loss (`unclean`, or `new` after a lost
 * disk), so the controller's unclean-restart rule and eligible leader replicas (KIP-966) decide who
 * may lead. With async flush, even seeds crash one node at a time (each recovered from before the
 * next), and every partition must converge; odd seeds crash in any order, and a partition whose
 * every replica sure to hold its committed records came back from a power loss is left offline
 * (counted, and out of the final-log checks), as it must be rather than lose them.
 *
 * After every simulated millisecond in which anything ran:
 * - one leader per (partition, leader epoch), over every replica that believes it leads;
 * - the high watermark of each replica never goes back (leader and follower alike), and the one
 *   consumers are answered with never goes back either;
 * - replicas are identical below their high watermarks (each replica's records below its high
 *   watermark equal what every other replica holds there).
 * At the end, after a heal and convergence (every replica in sync, holding the leader's log):
 * - no acknowledged acks=all record is missing from the final log;
 * - the final log's offsets are gapless from 0, no value is at two offsets, every value in it was
 *   produced to that partition;
 * - every record a consumer read is in the final log at the offset it was read at (none was later
 *   truncated).
 */
export interface ClusterSimOptions {
  seed: number;
  /** Simulated milliseconds of faults and workload before the heal. */
  faultMs?: number;
  /** Simulated milliseconds allowed for convergence after the heal. */
  settleMs?: number;
  transcript?: boolean;
  /**
   * For the simulation's own tests, set-ups the checks must catch: `ackOnAppend` counts acks=1
   * answers as acknowledged by the in-sync set (so records a failover loses are acknowledged
   * ones).
   */
  unsafe?:
    | 'ackOnAppend'
    | 'retryWithoutProducerId'
    | 'cleanRestarts'
    | 'assignBeforeRevoked'
    | 'staleCommits';
  /**
   * Consumer-group members and their coordinator over a replicated `__consumer_offsets` partition
   * (group-sim.ts). Default: on for seeds divisible by 25 (`WITH_GROUPS=1` on the command line:
   * every seed).
   */
  groups?: boolean;
  /** No faults at all (for self-tests that need a steady cluster). */
  noFaults?: boolean;
  /** One crash in ten loses the node's whole disk. Default: on for seeds divisible by 3. */
  loseDisks?: boolean;
  /**
   * With async flush, no crash while a node is down or before the last one crashed caught up: every
   * partition must then converge. Otherwise crashes come in any order, and a partition whose every
   * replica that could hold its committed records restarted after a power loss stays offline
   * (KIP-966), which the checks accept (`offline` in the result) and leave out of the final-log
   * checks. Default: on for even seeds.
   */
  oneCrashAtATime?: boolean;
}

export interface ClusterSeedResult {
  traceHash: string;
  steps: number;
  flush: 'sync' | 'async';
  produced: number;
  ackedAll: number;
  ackedOne: number;
  /** acks=1 records acknowledged and then lost (Kafka allows it; counted, not a failure). */
  ackedOneLost: number;
  refused: number;
  unknown: number;
  consumed: number;
  crashes: number;
  /** Crashes that lost the node's whole disk. */
  wipes: number;
  truncations: number;
  leaderEpochs: number;
  finalRecords: number;
  /** Partitions offline at the end: no replica sure to hold their committed records is back. */
  offline: number;
  /** Idempotent producers' records acknowledged, and their tries (every unknown outcome retried). */
  idempotentAcked: number;
  idempotentTries: number;
  /** The group members' counts (zero without `groups`). */
  group: GroupSimStats | undefined;
}

const TOPIC = 't';
const PARTITIONS = 2;
const NODES = 3;
const MIN_INSYNC = 2;
const REPLICA_LAG_MS = 300;
const FETCH_WAIT_MS = 40;
/**
 * A follower's fetch unanswered this long is sent again (the network may have lost it): above the
 * leader's long-poll at half speed plus the network, on a follower's clock at twice speed.
 */
const FETCH_TIMEOUT_MS = 400;
const PRODUCE_TIMEOUT_MS = 300;
/** A client request unanswered this long is given up as unknown. */
const CLIENT_TIMEOUT_MS = 500;
const DATA_DIR = '/data';
const OFFSETS_TOPIC = '__consumer_offsets';
/** Group members act this long after the faults stop (sessions of crashed members expire, moves settle). */
const GROUP_TAIL_MS = 800;

interface NodeBroker {
  process: MetadataProcess;
  broker: Broker | undefined;
}

interface Sent {
  value: string;
  partition: number;
  acks: 1 | -1;
  status: 'pending' | 'ok' | 'refused' | 'unknown';
  offset?: number;
}

export class ClusterSim {
  readonly meta: MetadataSim;
  readonly #disks = new Map<number, SimulatedFileSystem>();
  readonly #brokers = new Map<number, NodeBroker>();
  readonly #flush: 'sync' | 'async';
  #dropRate = 0;
  #longTailRate = 0;
  #producing = true;
  /** Client requests not yet answered or timed out. */
  #inflight = 0;
  readonly #sent: Sent[] = [];
  /** Per partition: offset → value read by a consumer. */
  readonly #reads: Map<number, string>[] = [];
  /** Per partition: offset → value some replica holds below its high watermark. */
  readonly #committed: Map<number, string>[] = [];
  /** `partition/leaderEpoch` → the node that led it. */
  readonly #leaderOf = new Map<string, number>();
  readonly #roles = new WeakMap<PartitionReplica, string>();
  readonly #lastHw = new WeakMap<PartitionReplica, number>();
  /** Per partition: the highest high watermark any replica has had. */
  readonly #maxHw: number[] = Array.from({ length: PARTITIONS }, () => 0);
  readonly #checkedTo = new WeakMap<PartitionReplica, number>();
  readonly #consumers: { position: number; epoch: number; hw: number; inflight: boolean }[] = [];
  /** Per partition, its idempotent producer: records acknowledged (its next sequence), their offsets. */
  readonly #idempotent = Array.from({ length: PARTITIONS }, () => ({
    acked: 0,
    tries: 0,
    inflight: false,
    offsets: [] as number[],
  }));
  readonly stats = { crashes: 0, wipes: 0, truncations: 0, consumed: 0 };
  /** With asynchronous flush: the node the last crash hit, until it has caught up (see `#crash`). */
  #recovering: number | undefined;
  /** Nodes that have started once; nodes whose disk was lost since they last started. */
  readonly #started = new Set<number>();
  readonly #oneCrashAtATime: boolean;
  readonly #wiped = new Set<number>();
  #failure: string | undefined;
  readonly #groups: GroupSim | undefined;
  /** Per node: whether its broker would lead now (reached the controller within its session). */
  readonly #canLead = new Map<number, () => boolean>();
  #memberIds = 0;

  constructor(readonly options: ClusterSimOptions) {
    for (let p = 0; p < PARTITIONS; p++) {
      this.#reads.push(new Map());
      this.#committed.push(new Map());
      this.#consumers.push({ position: 0, epoch: -1, hw: 0, inflight: false });
    }
    this.meta = new MetadataSim({
      seed: options.seed,
      nodes: NODES,
      transcript: options.transcript ?? false,
      onProcess: (process) => this.#startBroker(process),
    });
    this.#flush = this.meta.cluster.random.chance(0.25) ? 'async' : 'sync';
    this.#oneCrashAtATime = options.oneCrashAtATime ?? options.seed % 2 === 0;
    if (options.groups ?? options.seed % 25 === 0) this.#groups = this.#groupSim();
  }

  get transcript(): string[] {
    return this.meta.transcript;
  }

  #fail(message: string): void {
    this.#failure ??= message;
    this.meta.cluster.fail(message);
  }

  #trace(line: string): void {
    this.meta.cluster.trace(line);
  }

  // ---- nodes ----

  #disk(id: number): SimulatedFileSystem {
    let disk = this.#disks.get(id);
    if (!disk) {
      disk = new SimulatedFileSystem();
      this.#disks.set(id, disk);
    }
    return disk;
  }

  #startBroker(process: MetadataProcess): void {
    const id = process.node.id;
    // Every crash here is a power loss: a restart registers as unclean, a first start or one after
    // a lost disk as new (the node's run-state file says so in a real node: src/node/run-state.ts).
    process.shutdown = !this.#started.has(id) || this.#wiped.has(id) ? 'new' : 'unclean';
    // For the simulation's own tests: brokers that claim every restart was clean.
    if (this.options.unsafe === 'cleanRestarts') process.shutdown = 'clean';
    this.#started.add(id);
    this.#wiped.delete(id);
    const slot: NodeBroker = { process, broker: undefined };
    this.#brokers.set(id, slot);
    const life = process.life;
    const fs = fencedFileSystem(this.#disk(id), () => life.dead);
    const clock = life.clock;
    const logger = this.#logger(id);
    void (async () => {
      const logs = await LogManager.open(
        { dataDir: DATA_DIR, retentionCheckMs: 1_000_000_000 },
        { fs, clock },
      );
      const registry = new MetadataTopicRegistry({
        log: process.log,
        controller: { submit: (command) => this.meta.submitFrom(process, command).then(() => {}) },
      });
      const canLead = () => clock.monotonicMs() - process.lastBeatMs <= 400;
      this.#canLead.set(id, canLead);
      const broker = new Broker(
        {
          nodeId: id,
          version: 'sim',
          address: () => ({ host: `node-${id}`, port: 9092 }),
          ...(this.#groups ? { groups: this.#groupOptions() } : {}),
        },
        {
          registry,
          logs,
          clock,
          logger,
          canLead,
          replication: {
            cluster: {
              brokerEpoch: () => {
                const b = process.log.image.broker(id);
                return b && !b.fenced && b.incarnationId === process.incarnationId
                  ? b.brokerEpoch
                  : undefined;
              },
              isLive: (brokerId, brokerEpoch) => {
                const broker = process.log.image.broker(brokerId);
                return (
                  broker?.fenced === false &&
                  (brokerEpoch === undefined || broker.brokerEpoch === brokerEpoch)
                );
              },
              submit: (command) => this.meta.submitFrom(process, command).then(() => {}),
            },
            transport: this.#transport(process),
            options: {
              replicaLagTimeMaxMs: REPLICA_LAG_MS,
              fetchMaxWaitMs: FETCH_WAIT_MS,
              fetchMaxBytes: 64 * 1024,
              fetchTimeoutMs: FETCH_TIMEOUT_MS,
            },
          },
        },
      );
      // As a real node: the broker starts once this process's registration is in its image, so
      // that the reconciler works from metadata at least that recent (an image still replaying
      // would show no topics, and the reconciler would delete every partition on disk).
      await new Promise<void>((resolve) => {
        const poll = () => {
          if (process.log.image.broker(id)?.incarnationId === process.incarnationId) resolve();
          else clock.setTimeout(poll, 5);
        };
        poll();
      });
      if (life.dead) return;
      await broker.start();
      if (life.dead) return;
      slot.broker = broker;
      const held = logs
        .list()
        .map(
          ({ topic, partition, log }) =>
            `${topic}/${partition} leo ${log.logEndOffset} hwc ${log.highWatermarkCheckpoint} epochs ${JSON.stringify(log.leaderEpochs.entries())}`,
        );
      this.#trace(`broker ${id}#${life.number} started: ${held.join('; ')}`);
    })().catch((error: unknown) => {
      if (!life.dead) this.#fail(`broker ${id} failed to start: ${(error as Error).stack ?? error}`);
    });
  }

  #logger(id: number): Logger {
    return {
      error: (fields, message) => {
        const err = fields.err as Error | undefined;
        this.#fail(`node ${id} logged an error "${message}": ${err?.stack ?? JSON.stringify(fields)}`);
      },
      warn: (_fields, message) => this.#trace(`${id}: warn ${message}`),
      info: (fields, message) => {
        if (message.startsWith('follower log truncated')) this.stats.truncations++;
        this.#trace(`${id}: ${message} ${JSON.stringify(fields, jsonSafe)}`);
      },
      debug: () => {},
    };
  }

  #live(id: number): Broker | undefined {
    const slot = this.#brokers.get(id);
    if (!slot || slot.process.life.dead || slot.process.node.state !== 'up') return undefined;
    return slot.broker;
  }

  #node(id: number): SimNode {
    return this.meta.cluster.nodes[id - 1]!;
  }

  /**
   * A message over the simulated network: dropped by a blocked link or loss, delivered after
   * 1-15 ms (rarely 100-800 ms) on `to`'s side, waiting while `to` is paused, lost when `to` is down
   * then. Node 0 is the clients' host, outside every partition.
   */
  #send(from: number, to: number, deliver: () => void): void {
    const c = this.meta.cluster;
    const link = `${from}->${to}`;
    if (c.blocked.has(link) || c.random.chance(this.#dropRate)) return;
    let delay = 1 + c.random.int(15);
    if (c.random.chance(this.#longTailRate)) delay = 100 + c.random.int(700);
    if (to === 0) {
      c.schedule(delay, deliver);
      return;
    }
    const node = this.#node(to);
    const life = node.life;
    c.at(node, delay, () => {
      if (!life.dead && node.life === life && !c.blocked.has(link)) deliver();
    });
  }

  #transport(process: MetadataProcess): ReplicaFetchTransport {
    const from = process.node.id;
    const life = process.life;
    return {
      fetch: (leader, request, timeoutMs) =>
        new Promise<ReplicaFetchPartitionAnswer[]>((resolve, reject) => {
          let settled = false;
          const settle = (fn: () => void) => {
            if (settled || life.dead) return;
            settled = true;
            timer.cancel();
            fn();
          };
          const timer = life.clock.setTimeout(
            () =>
              settle(() =>
                reject(
                  new SluiceError('NETWORK_EXCEPTION', `node ${leader} did not answer in ${timeoutMs} ms`),
                ),
              ),
            timeoutMs,
          );
          const bytes = packr.pack(request);
          this.#send(from, leader, () => {
            const broker = this.#live(leader);
            const back = (fn: () => void) => this.#send(leader, from, () => settle(fn));
            if (!broker?.replication) {
              back(() => reject(new SluiceError('NETWORK_EXCEPTION', `node ${leader} refuses connections`)));
              return;
            }
            broker.replication.answerFetch(unpackr.unpack(bytes) as ReplicaFetchRequest).then(
              (answers) => {
                const out = packr.pack({ partitions: answers });
                back(() =>
                  resolve((unpackr.unpack(out) as { partitions: ReplicaFetchPartitionAnswer[] }).partitions),
                );
              },
              (error: unknown) => back(() => reject(error)),
            );
          });
        }),
    };
  }

  // ---- groups ----

  #groupOptions() {
    const unsafe = this.options.unsafe;
    return {
      offsetsPartitions: 1,
      tickMs: 20,
      loadWaitMs: 100,
      newMemberId: () => `m${++this.#memberIds}`,
      coordinator: {
        heartbeatIntervalMs: HEARTBEAT_MS,
        sessionTimeoutMsMin: 100,
        ...(unsafe === 'assignBeforeRevoked' || unsafe === 'staleCommits' ? { unsafe } : {}),
      },
    };
  }

  /** The node that leads the offsets partition, as the quorum leader's image says. */
  #offsetsLeader(): SimNode | undefined {
    const leader = this.meta.cluster.leader();
    const image = leader && this.#brokers.get(leader.id)?.process.log.image;
    const id = image?.topic(OFFSETS_TOPIC)?.partitions.get(0)?.leader;
    return id === undefined || id < 0 ? undefined : this.#node(id);
  }

  #groupSim(): GroupSim {
    const c = this.meta.cluster;
    return new GroupSim({
      random: c.random,
      now: () => c.now,
      schedule: (delay, fn) => c.schedule(delay, fn),
      trace: (line) => this.#trace(line),
      fail: (message) => this.#fail(message),
      request: (to, run, done) => this.#request(to, run, done),
      coordinatorNode: () => {
        const up = c.nodes.filter((n) => n.state === 'up' && this.#brokers.has(n.id));
        if (up.length === 0) return undefined;
        const node = c.random.pick(up);
        const p = this.#brokers.get(node.id)!.process.log.image.topic(OFFSETS_TOPIC)?.partitions.get(0);
        // Before the offsets topic exists any node answers (and refuses); with no leader, none.
        if (!p) return node.id;
        return p.leader < 0 ? undefined : p.leader;
      },
      readPartition: async (from, partition, offset) => {
        const p = this.#brokers.get(from)?.process.log.image.topic(TOPIC)?.partitions.get(partition);
        if (
          !p ||
          p.leader < 0 ||
          c.blocked.has(`${from}->${p.leader}`) ||
          c.blocked.has(`${p.leader}->${from}`)
        )
          return undefined;
        const broker = this.#live(p.leader);
        if (!broker) return undefined;
        try {
          const read = await broker.fetch.read(TOPIC, partition, {
            offset,
            maxBytes: 4096,
            maxWaitMs: 0,
            minBytes: 1,
            leaderEpoch: p.leaderEpoch,
          });
          return read.batchCount > 0 ? read.nextOffset : undefined;
        } catch (error) {
          if (!isSluiceError(error)) throw error;
          return undefined;
        }
      },
      incarnations: () => {
        const out: ReturnType<ConstructorParameters<typeof GroupSim>[0]['incarnations']> = [];
        for (const node of c.nodes) {
          const broker = this.#live(node.id);
          if (!broker) continue;
          for (const s of broker.groups.coordinators()) {
            if (!s.loaded) continue;
            out.push({
              node: node.id,
              leaderEpoch: s.leaderEpoch,
              answers: s.leads && !node.paused && this.#canLead.get(node.id)!(),
              coordinator: s.coordinator,
            });
          }
        }
        return out;
      },
    });
  }

  // ---- faults ----

  #crash(node: SimNode): void {
    const c = this.meta.cluster;
    if (node.state !== 'up') return;
    if (this.#oneCrashAtATime && this.#flush === 'async') {
      if (c.nodes.some((n) => n.state !== 'up')) return;
      if (this.#recovering !== undefined && !this.#caughtUp(this.#recovering)) return;
      // Nor of a partition's last in-sync replica (the others fenced by a network partition, say):
      // back from a power loss it may lead no more, and the partition would be offline (seed 112
      // with groups).
      if (this.#soleInSync(node.id)) return;
      this.#recovering = node.id;
    }
    c.crash(node);
    this.stats.crashes++;
    const disk = this.#disk(node.id);
    if (c.random.chance(0.1) && (this.options.loseDisks ?? this.options.seed % 3 === 0)) {
      // The disk is lost with the power: the node comes back with an empty data directory. Off
      // by default: a broker that comes back empty while still in an in-sync set (its session not
      // yet expired, or as the set's last member) is elected and leads with nothing, losing
      // committed records (seeds 102, 1516 and 2161 with this on). The guard is KIP-966's
      // unclean-restart rule (a broker whose data directory is new, or that did not shut down
      // cleanly, leaves every in-sync set when it registers), not built yet.
      this.#disks.set(node.id, new SimulatedFileSystem());
      this.#wiped.add(node.id);
      this.stats.wipes++;
      this.#trace(`disk of ${node.id} lost`);
      return;
    }
    if (c.random.chance(0.5)) disk.crash(c.random);
    else disk.crashLosingAllUnsynced();
  }

  #soleInSync(id: number): boolean {
    const leader = this.meta.cluster.leader();
    const image = leader && this.#brokers.get(leader.id)?.process.log.image;
    for (const name of [TOPIC, OFFSETS_TOPIC])
      for (const p of image?.topic(name)?.partitions.values() ?? [])
        if (p.isr.length === 1 && p.isr[0] === id) return true;
    return false;
  }

  #restart(node: SimNode): void {
    this.meta.cluster.restart(node);
  }

  #fault(): void {
    const c = this.meta.cluster;
    const r = c.random;
    const choice = r.int(20);
    const up = c.nodes.filter((n) => n.state === 'up');
    // With groups, three in ten crashes and partitions hit the coordinator's node (the offsets leader).
    const coordinator = this.#groups && r.chance(0.3) ? this.#offsetsLeader() : undefined;
    if (choice < 3) {
      const node = coordinator ?? r.pick(c.nodes);
      if (node.state === 'up' && up.length > 1) this.#crash(node);
      else this.#restart(node);
    } else if (choice < 7) {
      c.blocked.clear();
      const a = coordinator?.id ?? 1 + r.int(NODES);
      const oneWay = r.chance(0.3);
      for (const b of c.nodes) {
        if (b.id === a) continue;
        if (r.chance(0.8)) {
          c.blocked.add(`${a}->${b.id}`);
          if (!oneWay) c.blocked.add(`${b.id}->${a}`);
        }
      }
      this.#trace(`partition ${[...c.blocked].join(' ')}`);
    } else if (choice < 10) {
      c.blocked.clear();
      this.#trace('links healed');
    } else if (choice < 12) {
      this.#dropRate = r.chance(0.5) ? 0 : r.next() * 0.2;
      this.#longTailRate = r.chance(0.5) ? 0 : r.next() * 0.05;
      c.dropRate = this.#dropRate;
      this.#trace(`loss ${this.#dropRate.toFixed(2)} long tail ${this.#longTailRate.toFixed(2)}`);
    } else if (choice < 14) {
      c.pause(r.pick(c.nodes), 50 + r.int(800));
    } else {
      for (const node of c.nodes) if (node.state !== 'up' && r.chance(0.6)) this.#restart(node);
    }
  }

  #heal(): void {
    this.#dropRate = 0;
    this.#longTailRate = 0;
    this.meta.cluster.heal();
  }

  // ---- clients ----

  /** The partition's leader and epoch as some live node's metadata says (a client's stale view). */
  #view(partition: number): { leader: number; epoch: number } | undefined {
    const c = this.meta.cluster;
    const up = c.nodes.filter((n) => n.state === 'up' && this.#brokers.has(n.id));
    if (up.length === 0) return undefined;
    const node = c.random.pick(up);
    const p = this.#brokers.get(node.id)!.process.log.image.topic(TOPIC)?.partitions.get(partition);
    if (!p || p.leader < 0) return undefined;
    return { leader: p.leader, epoch: p.leaderEpoch };
  }

  /** A client request to node `to`, run there by `run`, answered back; `done` at most once. */
  #request<T>(
    to: number,
    run: (broker: Broker) => Promise<T>,
    done: (outcome: { ok: T } | { error: unknown }) => void,
  ) {
    const c = this.meta.cluster;
    let settled = false;
    this.#inflight++;
    const settle = (outcome: { ok: T } | { error: unknown }) => {
      if (settled) return;
      settled = true;
      this.#inflight--;
      done(outcome);
    };
    c.schedule(CLIENT_TIMEOUT_MS, () => settle({ error: new SluiceError('REQUEST_TIMED_OUT', 'no answer') }));
    this.#send(0, to, () => {
      const broker = this.#live(to);
      if (!broker) {
        this.#send(to, 0, () => settle({ error: new SluiceError('NETWORK_EXCEPTION', 'refused') }));
        return;
      }
      run(broker).then(
        (ok) => this.#send(to, 0, () => settle({ ok })),
        (error: unknown) => this.#send(to, 0, () => settle({ error })),
      );
    });
  }

  /**
   * One idempotent producer per partition (producer id 100 + partition), one request in flight:
   * record `i{partition}-{n}` has sequence n, and every outcome but success (a refusal, a timeout,
   * NOT_ENOUGH_REPLICAS_AFTER_APPEND) is retried unchanged until it succeeds or production stops.
   * A refusal of the sequence itself would mean the leader lost the producer's acknowledged state.
   */
  #produceIdempotent(partition: number): void {
    const producer = this.#idempotent[partition]!;
    if (!this.#producing || producer.inflight) return;
    const view = this.#view(partition);
    if (!view) return;
    producer.inflight = true;
    producer.tries++;
    const sequence = producer.acked;
    const value = `i${partition}-${sequence}`;
    this.#request(
      view.leader,
      (broker) =>
        broker.produce.from(TOPIC, recordArraySource([{ partition, value: Buffer.from(value) }]), -1, {
          timeoutMs: PRODUCE_TIMEOUT_MS,
          ...(this.options.unsafe === 'retryWithoutProducerId'
            ? {}
            : { producer: { producerId: 100 + partition, producerEpoch: 0, baseSequence: sequence } }),
        }),
      (outcome) => {
        producer.inflight = false;
        if ('ok' in outcome) {
          producer.acked++;
          producer.offsets.push(outcome.ok.offsets[0]!);
          this.#trace(
            `idempotent ${value} at ${partition}/${outcome.ok.offsets[0]}${outcome.ok.duplicate ? ' (a retry)' : ''}`,
          );
          return;
        }
        const code = isSluiceError(outcome.error) ? outcome.error.code : undefined;
        if (
          code === undefined ||
          code === 'OUT_OF_ORDER_SEQUENCE_NUMBER' ||
          code === 'UNKNOWN_PRODUCER_ID' ||
          code === 'PRODUCER_FENCED'
        )
          this.#fail(
            `idempotent ${value} on ${partition} failed with ${code ?? (outcome.error as Error).stack}`,
          );
      },
    );
  }

  #produce(): void {
    if (!this.#producing) return;
    const c = this.meta.cluster;
    const partition = c.random.int(PARTITIONS);
    const view = this.#view(partition);
    if (!view) return;
    const sent: Sent = {
      value: `v${this.#sent.length}`,
      partition,
      acks: c.random.chance(0.8) ? -1 : 1,
      status: 'pending',
    };
    this.#sent.push(sent);
    this.#request(
      view.leader,
      (broker) =>
        broker.produce.from(
          TOPIC,
          recordArraySource([{ partition, value: Buffer.from(sent.value) }]),
          sent.acks,
          { timeoutMs: PRODUCE_TIMEOUT_MS },
        ),
      (outcome) => {
        if ('ok' in outcome) {
          sent.status = 'ok';
          sent.offset = outcome.ok.offsets[0]!;
          this.#trace(`produced ${sent.value} acks=${sent.acks} at ${partition}/${sent.offset}`);
        } else {
          const code = isSluiceError(outcome.error) ? outcome.error.code : undefined;
          if (code === undefined) this.#fail(`produce failed with ${(outcome.error as Error).stack}`);
          // Refused before anything was appended: the only definite failures.
          sent.status =
            code === 'NOT_ENOUGH_REPLICAS' || code === 'LEADER_NOT_AVAILABLE' ? 'refused' : 'unknown';
        }
      },
    );
  }

  #consume(partition: number): void {
    const consumer = this.#consumers[partition]!;
    if (consumer.inflight) return;
    const view = this.#view(partition);
    if (!view || view.epoch < consumer.epoch) return;
    consumer.inflight = true;
    const position = consumer.position;
    this.#request(
      view.leader,
      async (broker) => {
        const result = await broker.fetch.read(TOPIC, partition, {
          offset: position,
          maxBytes: 4096,
          maxWaitMs: 0,
          minBytes: 1,
          leaderEpoch: view.epoch,
        });
        return { ...result, data: Buffer.from(result.data) };
      },
      (outcome) => {
        consumer.inflight = false;
        if (!('ok' in outcome)) {
          const code = isSluiceError(outcome.error) ? outcome.error.code : undefined;
          if (code === undefined) this.#fail(`fetch failed with ${(outcome.error as Error).stack}`);
          if (code === 'OFFSET_OUT_OF_RANGE')
            this.#fail(
              `consumer of ${partition} at ${position} (high watermark seen ${consumer.hw}) was answered OFFSET_OUT_OF_RANGE by node ${view.leader} at epoch ${view.epoch}`,
            );
          return;
        }
        const result = outcome.ok;
        consumer.epoch = Math.max(consumer.epoch, view.epoch);
        if (result.highWatermark < consumer.hw)
          this.#fail(
            `consumer of ${partition}: high watermark went back from ${consumer.hw} to ${result.highWatermark} (node ${view.leader}, epoch ${view.epoch})`,
          );
        consumer.hw = Math.max(consumer.hw, result.highWatermark);
        let next = position;
        for (const batch of splitBatches(result.data)) {
          for (const record of decodeRecords(result.data, batch.pos)) {
            if (record.offset < position) continue;
            if (record.offset !== next)
              this.#fail(`consumer of ${partition} read offset ${record.offset} after ${next - 1}`);
            if (record.offset >= result.highWatermark)
              this.#fail(
                `consumer of ${partition} read ${record.offset}, at or above the high watermark ${result.highWatermark}`,
              );
            const value = Buffer.from(record.value ?? []).toString();
            this.#reads[partition]!.set(record.offset, value);
            this.stats.consumed++;
            next = record.offset + 1;
          }
        }
        if (consumer.position === position) consumer.position = next;
      },
    );
  }

  // ---- invariants ----

  /**
   * Whether node `id` holds every partition at least up to its leader's high watermark, and up
   * to the highest one any replica had: just after a failover the new leader's high watermark may
   * still be below what was committed (seed 112 with groups crashed a second node then, and the
   * partition went offline with one crash at a time).
   */
  #caughtUp(id: number): boolean {
    const all = this.#replicasNow();
    for (let p = 0; p < PARTITIONS; p++) {
      const leader = all.find((x) => x.replica.partition === p && x.replica.isLeader)?.replica;
      const mine = all.find((x) => x.id === id && x.replica.partition === p)?.replica;
      if (!leader || !mine || mine.logEndOffset < Math.max(leader.highWatermark, this.#maxHw[p]!))
        return false;
    }
    return true;
  }

  #replicasNow(): { id: number; replica: PartitionReplica }[] {
    const out: { id: number; replica: PartitionReplica }[] = [];
    for (const node of this.meta.cluster.nodes) {
      const broker = this.#live(node.id);
      if (!broker) continue;
      for (const { replica } of broker.replicas.all())
        if (replica.topic === TOPIC) out.push({ id: node.id, replica });
    }
    return out;
  }

  async #check(): Promise<void> {
    for (const { id, replica } of this.#replicasNow()) {
      const p = replica.partition;
      const role = `${replica.isLeader ? 'L' : 'f'}${replica.leaderId}e${replica.leaderEpoch}[${replica.inSyncReplicas}]`;
      if (this.#roles.get(replica) !== role) {
        this.#roles.set(replica, role);
        this.#trace(`role ${id}:${p} ${role} leo ${replica.logEndOffset} hw ${replica.highWatermark}`);
      }
      if (replica.isLeader) {
        const key = `${p}/${replica.leaderEpoch}`;
        const known = this.#leaderOf.get(key);
        if (known === undefined) this.#leaderOf.set(key, id);
        else if (known !== id)
          this.#fail(`partition ${p}: leader epoch ${replica.leaderEpoch} led by ${known} and ${id}`);
      }
      const hw = replica.highWatermark;
      const last = this.#lastHw.get(replica);
      if (last !== undefined && hw < last)
        this.#fail(
          `node ${id} partition ${p}: high watermark went back from ${last} to ${hw} (${replica.isLeader ? 'leader' : 'follower'}, epoch ${replica.leaderEpoch})`,
        );
      this.#lastHw.set(replica, hw);
      if (hw > this.#maxHw[p]!) this.#maxHw[p] = hw;
      if (replica.log.offlineReason !== undefined) continue;
      const from = Math.max(this.#checkedTo.get(replica) ?? 0, replica.logStartOffset);
      if (hw <= from) continue;
      const records = await readRecords(replica, from, hw);
      const committed = this.#committed[p]!;
      for (const [offset, value] of records) {
        const known = committed.get(offset);
        if (known === undefined) committed.set(offset, value);
        else if (known !== value)
          this.#fail(
            `node ${id} partition ${p} holds ${value} at ${offset}, below its high watermark ${hw}; another replica holds ${known} there`,
          );
      }
      this.#checkedTo.set(replica, hw);
    }
  }

  // ---- the run ----

  async #step(): Promise<void> {
    await this.meta.cluster.step();
    await this.#check();
    this.#groups?.check();
  }

  async #until(what: string, timeoutMs: number, done: () => boolean): Promise<void> {
    const c = this.meta.cluster;
    const deadline = c.now + timeoutMs;
    while (!done()) {
      if (c.now >= deadline) this.#fail(`liveness: ${what} within ${timeoutMs} ms (${this.#report()})`);
      for (let i = 0; i < 10; i++) await this.#step();
    }
  }

  #report(): string {
    return this.#replicasNow()
      .map(
        ({ id, replica: r }) =>
          `${id}:${r.partition} ${r.isLeader ? 'L' : 'f'}e${r.leaderEpoch} isr[${r.inSyncReplicas}] leo ${r.logEndOffset} hw ${r.highWatermark}`,
      )
      .join(', ');
  }

  async #createTopic(): Promise<void> {
    const c = this.meta.cluster;
    let sent = false;
    await this.#until('the topic was not created', 5000, () => {
      const leader = c.leader();
      const process = leader && this.#brokers.get(leader.id)?.process;
      const image = process?.log.image;
      const needed = this.#groups ? [TOPIC, OFFSETS_TOPIC] : [TOPIC];
      const missing = needed.find((name) => !image?.topic(name));
      if (missing === undefined) return true;
      const registered = image ? [...c.nodes].filter((n) => image.broker(n.id)?.fenced === false).length : 0;
      if (!sent && process && registered === NODES) {
        sent = true;
        const configs: Record<string, string> = {
          'min.insync.replicas': JSON.stringify(MIN_INSYNC),
          'flush.policy': JSON.stringify(this.#flush),
          'flush.ms': JSON.stringify(50),
        };
        if (missing === OFFSETS_TOPIC) configs['cleanup.policy'] = JSON.stringify('compact');
        this.meta
          .submitFrom(process, {
            type: 'createTopic',
            name: missing,
            partitions: missing === TOPIC ? PARTITIONS : 1,
            replicationFactor: NODES,
            configs,
          })
          .catch(() => {})
          .finally(() => {
            sent = false;
          });
      }
      return false;
    });
  }

  /** Every partition led, its ISR every replica, every replica at the leader's log end and high watermark. */
  /**
   * Whether partition `p` is offline for good as the quorum leader's image shows it: no leader and
   * an empty in-sync set (its last in-sync replica came back after a power loss) and no eligible
   * replica. Only where crashes come in any order; otherwise it is a failure.
   */
  #offline(p: number): boolean {
    const leader = this.meta.cluster.leader();
    const image = leader && this.#brokers.get(leader.id)?.process.log.image;
    const partition = image?.topic(TOPIC)?.partitions.get(p);
    if (!partition || partition.leader !== -1 || partition.isr.length > 0 || partition.elr.length > 0)
      return false;
    if (this.#oneCrashAtATime || this.#flush === 'sync')
      this.#fail(`partition ${p} went offline (no in-sync or eligible replica) with one crash at a time`);
    return true;
  }

  #converged(): boolean {
    const all = this.#replicasNow();
    if (all.length !== PARTITIONS * NODES) return false;
    for (let p = 0; p < PARTITIONS; p++) {
      if (this.#offline(p)) continue;
      const replicas = all.filter((x) => x.replica.partition === p).map((x) => x.replica);
      const leaders = replicas.filter((r) => r.isLeader);
      if (leaders.length !== 1) return false;
      const leader = leaders[0]!;
      if (leader.inSyncReplicas.length !== NODES || leader.highWatermark !== leader.logEndOffset)
        return false;
      for (const r of replicas)
        if (
          r.leaderEpoch !== leader.leaderEpoch ||
          r.logEndOffset !== leader.logEndOffset ||
          r.highWatermark !== leader.highWatermark
        )
          return false;
    }
    return true;
  }

  async run(): Promise<ClusterSeedResult> {
    const c = this.meta.cluster;
    const r = c.random;
    // With groups, twice as long: members then poll, commit and move partitions while records
    // are still being produced and faults still strike.
    const faultMs = this.options.faultMs ?? (this.#groups ? 1600 : 800);
    const settleMs = this.options.settleMs ?? 6000;
    await this.#createTopic();
    const start = c.now;
    this.#trace(`topic created, flush ${this.#flush}`);
    if (!this.options.noFaults)
      for (let t = 50; t < faultMs; t += 40 + r.int(200)) c.schedule(t, () => this.#fault());
    for (let t = 1; t < faultMs; t += 3 + r.int(14)) c.schedule(t, () => this.#produce());
    for (let t = 2; t < faultMs; t += 4 + r.int(10))
      c.schedule(t, () => this.#produceIdempotent(r.int(PARTITIONS)));
    for (let t = 5; t < faultMs + settleMs; t += 5 + r.int(25))
      c.schedule(t, () => this.#consume(r.int(PARTITIONS)));
    this.#groups?.start(faultMs + GROUP_TAIL_MS);
    while (c.now < start + faultMs) await this.#step();
    this.#producing = false;
    this.#heal();
    this.#trace('heal');
    await this.#until('no convergence after the heal', settleMs, () => this.#converged());
    if (this.#groups) {
      const groups = this.#groups;
      await this.#until(
        'group members still busy',
        GROUP_TAIL_MS + CLIENT_TIMEOUT_MS + 100,
        () => groups.done,
      );
    }
    // Let the clients' last answers arrive (or time out).
    await this.#until('client requests unsettled', CLIENT_TIMEOUT_MS + 50, () => this.#inflight === 0);
    // A produce still in flight at the first convergence may have landed since: replicas then
    // hold records past the high watermark until the followers' next fetches.
    await this.#until('no convergence after the last requests', settleMs, () => this.#converged());
    const result = await this.#checkHistory();
    this.#trace('done');
    if (this.#failure) throw new Error(this.#failure);
    return { traceHash: c.traceHash, steps: c.steps, flush: this.#flush, ...result };
  }

  async #checkHistory(): Promise<Omit<ClusterSeedResult, 'traceHash' | 'steps' | 'flush'>> {
    const all = this.#replicasNow();
    let finalRecords = 0;
    let ackedOneLost = 0;
    const sentByValue = new Map(this.#sent.map((s) => [s.value, s]));
    let offline = 0;
    for (let p = 0; p < PARTITIONS; p++) {
      if (this.#offline(p)) {
        offline++;
        this.#trace(`partition ${p} is offline at the end`);
        continue;
      }
      const replicas = all.filter((x) => x.replica.partition === p);
      const leader = replicas.find((x) => x.replica.isLeader)!.replica;
      const log = await readRecords(leader, leader.logStartOffset, leader.highWatermark);
      finalRecords += log.length;
      const where = new Map<string, number>();
      let expected = 0;
      for (const [offset, value] of log) {
        if (offset !== expected)
          this.#fail(`partition ${p}: the final log jumps from ${expected - 1} to ${offset}`);
        expected = offset + 1;
        const before = where.get(value);
        if (before !== undefined)
          this.#fail(`partition ${p}: ${value} is at offsets ${before} and ${offset}`);
        where.set(value, offset);
        if (value.startsWith('i')) continue;
        const sent = sentByValue.get(value);
        if (!sent || sent.partition !== p)
          this.#fail(`partition ${p}: ${value} at ${offset} was never produced there`);
        else if (sent.status === 'refused')
          this.#fail(`partition ${p}: ${value} at ${offset} was refused (NOT_ENOUGH_REPLICAS or no leader)`);
      }
      for (const { id, replica } of replicas) {
        if (replica === leader) continue;
        const other = await readRecords(replica, replica.logStartOffset, replica.logEndOffset);
        if (JSON.stringify(other) !== JSON.stringify(log)) {
          const at = other.findIndex((r, i) => JSON.stringify(r) !== JSON.stringify(log[i]));
          const first = at < 0 ? Math.min(other.length, log.length) : at;
          this.#fail(
            `partition ${p}: node ${id}'s log differs from the leader's after convergence: ` +
              `${other.length} records [${replica.logStartOffset}, ${replica.logEndOffset}) against the leader's ` +
              `${log.length} [${leader.logStartOffset}, ${leader.highWatermark}) (log end ${leader.logEndOffset}, epoch ${leader.leaderEpoch}, isr ${leader.inSyncReplicas.join(',')}); first difference at index ${first}: ` +
              `${JSON.stringify(other[first])} against ${JSON.stringify(log[first])}`,
          );
        }
      }
      for (const s of this.#sent) {
        if (s.partition !== p || s.status !== 'ok') continue;
        const at = where.get(s.value);
        if (at === undefined) {
          if (s.acks === -1 || this.options.unsafe === 'ackOnAppend')
            this.#fail(`partition ${p}: acknowledged (acks=all) ${s.value} at ${s.offset} was lost`);
          else ackedOneLost++;
        } else if (at !== s.offset)
          this.#fail(`partition ${p}: ${s.value} was acknowledged at ${s.offset} but is at ${at}`);
      }
      // The idempotent producer's records: each once, in sequence order, every acknowledged one at
      // the offset it was acknowledged at, and at most the one in flight at the end beyond them.
      const producer = this.#idempotent[p]!;
      const mine = log.filter(([, value]) => value.startsWith(`i${p}-`));
      mine.forEach(([offset, value], n) => {
        if (value !== `i${p}-${n}`)
          this.#fail(
            `partition ${p}: the idempotent producer's record ${n} is ${value} (at ${offset}): a duplicate, gap or reorder`,
          );
        else if (n < producer.acked && producer.offsets[n] !== offset)
          this.#fail(
            `partition ${p}: ${value} was acknowledged at ${producer.offsets[n]} but is at ${offset}`,
          );
      });
      if (mine.length < producer.acked)
        this.#fail(
          `partition ${p}: ${producer.acked} idempotent records acknowledged, ${mine.length} in the log`,
        );
      if (mine.length > producer.acked + 1)
        this.#fail(
          `partition ${p}: ${mine.length} idempotent records in the log, ${producer.acked} acknowledged and one at most in flight`,
        );
      for (const [offset, value] of this.#reads[p]!) {
        const now = log[offset - (log[0]?.[0] ?? 0)];
        if (!now || now[0] !== offset || now[1] !== value)
          this.#fail(
            `partition ${p}: a consumer read ${value} at ${offset}, which the final log holds as ${now?.[1] ?? 'nothing'}`,
          );
      }
    }
    const count = (f: (s: Sent) => boolean) => this.#sent.filter(f).length;
    return {
      produced: this.#sent.length,
      ackedAll: count((s) => s.status === 'ok' && s.acks === -1),
      ackedOne: count((s) => s.status === 'ok' && s.acks === 1),
      ackedOneLost,
      refused: count((s) => s.status === 'refused'),
      unknown: count((s) => s.status !== 'ok' && s.status !== 'refused'),
      consumed: this.stats.consumed,
      crashes: this.stats.crashes,
      wipes: this.stats.wipes,
      truncations: this.stats.truncations,
      leaderEpochs: this.#leaderOf.size,
      finalRecords,
      offline,
      idempotentAcked: this.#idempotent.reduce((n, x) => n + x.acked, 0),
      idempotentTries: this.#idempotent.reduce((n, x) => n + x.tries, 0),
      group: this.#groups ? { ...this.#groups.stats } : undefined,
    };
  }
}

/** Records [from, to) of a replica's log as [offset, value] pairs. */
async function readRecords(replica: PartitionReplica, from: number, to: number): Promise<[number, string][]> {
  const out: [number, string][] = [];
  let offset = from;
  while (offset < to) {
    const read = await replica.log.read(offset, { maxBytes: 1 << 20, maxOffset: to });
    if (read.batchCount === 0) break;
    for (const batch of splitBatches(read.data))
      for (const record of decodeRecords(read.data, batch.pos))
        if (record.offset >= offset && record.offset < to)
          out.push([record.offset, Buffer.from(record.value ?? []).toString()]);
    if (read.nextOffset <= offset) break;
    offset = read.nextOffset;
  }
  return out;
}

function jsonSafe(_key: string, value: unknown): unknown {
  return value instanceof Error ? value.message : value;
}

/**
 * The node's disk as one process lifetime sees it: once that process is dead, nothing it still
 * has in flight reaches the disk (its operations never complete), as after a power loss.
 */
function fencedFileSystem(disk: SimulatedFileSystem, dead: () => boolean): FileSystem {
  const never = new Promise<never>(() => {});
  const guard =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      dead() ? never : fn(...args);
  const handle = (h: FileHandle): FileHandle => ({
    read: guard((b: Buffer, o: number, l: number, p: number) => h.read(b, o, l, p)),
    readSync: (b, o, l, p) => h.readSync(b, o, l, p),
    write: guard((d: Uint8Array, p: number) => h.write(d, p)),
    writeSync: (d, p) => {
      if (dead()) throw new Error('the process is dead');
      h.writeSync(d, p);
    },
    sync: guard(() => h.sync()),
    truncate: guard((l: number) => h.truncate(l)),
    size: guard(() => h.size()),
    close: guard(() => h.close()),
  });
  return {
    open: guard(async (path: string) => handle(await disk.open(path))),
    readFile: guard((path: string) => disk.readFile(path)),
    writeFileAtomic: guard((path: string, data: Uint8Array, options?: { syncDir?: boolean }) =>
      disk.writeFileAtomic(path, data, options),
    ),
    exists: guard((path: string) => disk.exists(path)),
    readdir: guard((path: string) => disk.readdir(path)),
    mkdir: guard((path: string) => disk.mkdir(path)),
    unlink: guard((path: string) => disk.unlink(path)),
    rename: guard((from: string, to: string) => disk.rename(from, to)),
    removeDir: guard((path: string) => disk.removeDir(path)),
    syncDir: guard((path: string) => disk.syncDir(path)),
  };
}

export async function runClusterSeed(
  seed: number,
  options: Partial<ClusterSimOptions> = {},
): Promise<ClusterSeedResult> {
  return new ClusterSim({ seed, ...options }).run();
}

export function clusterReplayCommand(seed: number, options: Partial<ClusterSimOptions> = {}): string {
  const env = [
    ...(options.groups === undefined ? [] : [`WITH_GROUPS=${options.groups ? 1 : 0}`]),
    ...(options.loseDisks === undefined ? [] : [`LOSE_DISKS=${options.loseDisks ? 1 : 0}`]),
  ];
  return `${[...env, `SEED=${seed}`].join(' ')} npm run sim:cluster`;
}
