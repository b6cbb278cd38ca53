import type { Clock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import type { Random } from '../common/random.js';
import { type ConfigValue, replicationConfigOf } from '../protocol/topic-config.js';
import { type MetadataImage, type PartitionImage, rejectionOf, replay } from './image.js';
import { placeReplicas } from './placement.js';
import {
  cancellation,
  checkTarget,
  completion,
  decommissionTargets,
  type ReassignmentRequest,
  requireReassignmentVersion,
  startReassignment,
} from './reassignment.js';
import {
  type ConfigResource,
  type Endpoint,
  METADATA_VERSION_ELR,
  type MetadataRecord,
  type PartitionChangeRecord,
  topicIdFromBytes,
} from './records.js';

/**
 * The active controller's decisions, as records to append to the metadata log. Every method reads
 * the image the log has applied so far and returns the records that carry the change out; nothing
 * changes until those records commit and are replayed, on this node as on every other. Decisions
 * that depend on time (a broker whose heartbeats stopped) are taken here, with the injected clock,
 * and written down as records, so that replaying the log never reads a clock.
 *
 * Each returned list is checked against the image it was computed from (`rejectionOf`, record by
 * record on the image the earlier ones leave): the controller never writes a record replay would
 * ignore.
 */
export interface ControllerOptions {
  /** A broker whose last heartbeat is older than this is fenced and loses its leaderships. */
  sessionTimeoutMs: number;
  /**
   * The topic config defaults of the nodes (raw values), under each topic's own configs: what the
   * controller reads `min.insync.replicas`, `unclean.leader.election.enable` and `flush.policy` from.
   * Every node must be started with the same ones.
   */
  topicDefaults?: Readonly<Record<string, ConfigValue>>;
}

export interface CreateTopicDecision {
  name: string;
  partitions: number;
  replicationFactor: number;
  configs: Record<string, string>;
}

export interface BrokerRegistration {
  brokerId: number;
  incarnationId: string;
  endpoints: readonly Endpoint[];
  rack: string | null;
  /**
   * How the broker's last run ended, as its data directory tells: `clean` (it shut down cleanly,
   * or only its process stopped, so the machine's page cache kept every write), `unclean` (the
   * machine went down with it: writes not yet synced may be lost), `new` (the data directory is
   * new or was replaced: everything it held is gone). Absent: `clean`.
   */
  shutdown?: ShutdownKind;
}

export type ShutdownKind = 'clean' | 'unclean' | 'new';

/** What the controller needs of a topic's configs. */
interface ReplicationConfig {
  minInsyncReplicas: number;
  uncleanLeaderElection: boolean;
  flushPolicy: 'sync' | 'async';
}

/** How many producer ids a broker gets at a time. */
export const PRODUCER_ID_BLOCK_SIZE = 1000;

export class Controller {
  readonly #options: ControllerOptions;
  readonly #clock: Clock;
  readonly #random: Random;
  /** Soft state, never logged: when each broker was last heard from (monotonic milliseconds). */
  readonly #lastHeartbeatMs = new Map<number, number>();

  constructor(options: ControllerOptions, deps: { clock: Clock; random: Random }) {
    if (!Number.isSafeInteger(options.sessionTimeoutMs) || options.sessionTimeoutMs < 1)
      throw new SluiceError('INVALID_CONFIG', `sessionTimeoutMs must be a positive integer`);
    this.#options = options;
    this.#clock = deps.clock;
    this.#random = deps.random;
  }

  /** The records of a new topic: its id, placement and configs. */
  createTopic(image: MetadataImage, request: CreateTopicDecision): MetadataRecord[] {
    if (image.topic(request.name)) {
      throw new SluiceError('TOPIC_ALREADY_EXISTS', `topic ${request.name} already exists`, {
        details: { topic: request.name },
      });
    }
    const brokers = liveBrokers(image);
    if (request.replicationFactor > brokers.length) {
      throw new SluiceError(
        'INVALID_REPLICATION_FACTOR',
        `replication factor ${request.replicationFactor} is larger than the ${brokers.length} live broker(s)`,
        { details: { availableBrokers: brokers.length } },
      );
    }
    const placement = placeReplicas(
      {
        brokers,
        partitionCount: request.partitions,
        replicationFactor: request.replicationFactor,
        existingReplicaCounts: replicaCounts(image),
      },
      this.#random,
    );
    const topicId = this.#newTopicId(image);
    const records: MetadataRecord[] = [{ type: 'topic', version: 0, name: request.name, topicId }];
    placement.forEach((replicas, partition) => {
      records.push(newPartition(topicId, partition, replicas));
    });
    for (const [name, value] of Object.entries(request.configs).sort(([a], [b]) => (a < b ? -1 : 1)))
      records.push({
        type: 'config',
        version: 0,
        resource: { type: 'topic', name: request.name },
        name,
        value,
      });
    return checked(image, records);
  }

  deleteTopic(image: MetadataImage, name: string): MetadataRecord[] {
    const topic = requireTopic(image, name);
    return checked(image, [{ type: 'removeTopic', version: 0, topicId: topic.topicId }]);
  }

  /** A null value deletes the config (the default applies again). */
  alterConfigs(image: MetadataImage, name: string, changes: Record<string, string | null>): MetadataRecord[] {
    const topic = requireTopic(image, name);
    const resource: ConfigResource = { type: 'topic', name };
    const records: MetadataRecord[] = Object.entries(changes)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([config, value]) => ({ type: 'config', version: 0, resource, name: config, value }));
    let next = image;
    for (const record of records) next = replay(next, record, next.lastOffset + 1);
    // In the same entry: a lower min.insync.replicas lets the high watermark move with the in-sync
    // set as it is, so replicas that left it are no longer sure to hold what is committed; and a
    // topic that now allows unclean elections gets leaders for its offline partitions.
    const config = this.#replicationConfig(next, topic.topicId);
    for (const p of next.topicById(topic.topicId)!.partitions.values()) {
      if (p.elr.length === 0) continue;
      const elr = this.#elrAfter(next, p, p.isr, config);
      if (elr.length === p.elr.length) continue;
      const change = this.#change(next, p, { elr });
      records.push(change);
      next = replay(next, change, next.lastOffset + 1);
    }
    records.push(...this.electLeaderless(next));
    return checked(image, records);
  }

  /** Partitions added to a topic, placed over the live brokers with the topic's replication factor. */
  addPartitions(image: MetadataImage, name: string, partitions: number): MetadataRecord[] {
    const topic = requireTopic(image, name);
    const current = topic.partitions.size;
    if (!Number.isSafeInteger(partitions) || partitions <= current || partitions > LIMITS.partitionsMax) {
      throw new SluiceError(
        'INVALID_PARTITIONS',
        `topic ${name} has ${current} partitions; the new count must be larger, at most ${LIMITS.partitionsMax}`,
        { details: { current } },
      );
    }
    const replicationFactor = topic.partitions.get(0)?.replicas.length ?? 1;
    const brokers = liveBrokers(image);
    if (replicationFactor > brokers.length) {
      throw new SluiceError(
        'INVALID_REPLICATION_FACTOR',
        `topic ${name} has replication factor ${replicationFactor}; ${brokers.length} broker(s) are live`,
        { details: { availableBrokers: brokers.length } },
      );
    }
    const placement = placeReplicas(
      {
        brokers,
        partitionCount: partitions - current,
        replicationFactor,
        existingReplicaCounts: replicaCounts(image),
      },
      this.#random,
    );
    return checked(
      image,
      placement.map((replicas, i) => newPartition(topic.topicId, current + i, replicas)),
    );
  }

  /**
   * A broker (re)registers: a new incarnation gets a new broker epoch (the offset of this record)
   * and starts fenced; its heartbeats unfence it. The session clock starts now.
   *
   * A registration that replaces an unfenced one (the broker restarted before its session expired)
   * also takes it out of the leaderships and in-sync sets it held, in the same entry, as a fence
   * does: the registration fences it, a fenced broker leads nothing, and the new process may lack
   * what the old one had not synced.
   */
  registerBroker(image: MetadataImage, registration: BrokerRegistration): MetadataRecord[] {
    const { shutdown = 'clean', ...fields } = registration;
    const registered: MetadataRecord = { type: 'registerBroker', version: 0, ...fields };
    const records: MetadataRecord[] = [registered];
    let next = replay(image, registered, image.lastOffset + 1);
    const push = (changes: readonly PartitionChangeRecord[]) => {
      for (const change of changes) {
        records.push(change);
        next = replay(next, change, next.lastOffset + 1);
      }
    };
    if (image.broker(registration.brokerId)?.fenced === false)
      push(this.#moveAway(next, registration.brokerId));
    if (shutdown !== 'clean') push(this.#forgetLost(next, registration.brokerId, shutdown));
    checked(image, records);
    this.#lastHeartbeatMs.set(registration.brokerId, this.#clock.monotonicMs());
    return records;
  }

  /**
   * A broker that may have lost writes it had acknowledged (KIP-966's unclean restart) leaves the
   * in-sync set and the eligible leader replicas of every partition whose records it may lack: all
   * of them after a new data directory, those of topics flushed asynchronously after the machine
   * went down (`flush.policy=sync` records were on disk before it counted them). It joins again
   * only by catching up from a leader. A partition it was the last in-sync replica of gets a leader
   * from its eligible replicas, or stays offline. A partition with one replica keeps it: no other
   * copy could hold more.
   */
  #forgetLost(image: MetadataImage, brokerId: number, shutdown: ShutdownKind): PartitionChangeRecord[] {
    const changes: PartitionChangeRecord[] = [];
    for (const topic of image.topicsById.values()) {
      const config = this.#replicationConfig(image, topic.topicId);
      if (shutdown === 'unclean' && config.flushPolicy === 'sync') continue;
      for (const p of topic.partitions.values()) {
        if (p.replicas.length === 1) continue;
        if (!p.isr.includes(brokerId) && !p.elr.includes(brokerId)) continue;
        const isr = p.isr.filter((id) => id !== brokerId);
        const elr = p.elr.filter((id) => id !== brokerId);
        const after: PartitionImage = { ...p, isr, elr };
        const leader =
          p.leader === brokerId || p.leader === -1 ? this.#choose(image, after, brokerId, config) : undefined;
        changes.push(
          this.#change(image, p, {
            isr: leader?.isr ?? isr,
            elr: leader?.elr ?? elr,
            ...(leader ? { leader: leader.leader } : {}),
          }),
        );
      }
    }
    return changes;
  }

  /**
   * The next block of producer ids for a registered broker (blocks never overlap: the image moves
   * its next producer id past each one).
   */
  allocateProducerIds(image: MetadataImage, brokerId: number, brokerEpoch: number): MetadataRecord[] {
    const broker = image.broker(brokerId);
    if (!broker || broker.brokerEpoch !== brokerEpoch) {
      throw new SluiceError(
        'INVALID_REQUEST',
        `broker ${brokerId} at epoch ${brokerEpoch} is not registered (register again)`,
        { details: { brokerId, brokerEpoch } },
      );
    }
    return checked(image, [
      {
        type: 'producerIdBlock',
        version: 0,
        brokerId,
        firstProducerId: image.nextProducerId,
        size: PRODUCER_ID_BLOCK_SIZE,
      },
    ]);
  }

  /**
   * A heartbeat from a broker at `brokerEpoch`. It refreshes the session (soft state); a fenced
   * broker that has caught up with the log (`caughtUp`) is unfenced. A stale epoch is refused, so a
   * broker that restarted must register again.
   */
  heartbeat(
    image: MetadataImage,
    beat: { brokerId: number; brokerEpoch: number; caughtUp: boolean },
  ): MetadataRecord[] {
    const broker = image.broker(beat.brokerId);
    if (!broker || broker.brokerEpoch !== beat.brokerEpoch) {
      throw new SluiceError(
        'INVALID_REQUEST',
        `broker ${beat.brokerId} at epoch ${beat.brokerEpoch} is not registered (register again)`,
        { details: { brokerId: beat.brokerId, brokerEpoch: beat.brokerEpoch } },
      );
    }
    this.#lastHeartbeatMs.set(beat.brokerId, this.#clock.monotonicMs());
    if (!broker.fenced || !beat.caughtUp) return [];
    const unfence: MetadataRecord = {
      type: 'unfenceBroker',
      version: 0,
      brokerId: broker.brokerId,
      brokerEpoch: broker.brokerEpoch,
    };
    // In the same entry, the partitions it was the last in-sync replica of get it back as leader:
    // a broker that restarts serves its partitions as soon as it is unfenced.
    return checked(image, [unfence, ...this.electLeaderless(replay(image, unfence, image.lastOffset + 1))]);
  }

  /**
   * Fences every unfenced broker whose session expired, and moves the leaderships it held to other
   * in-sync replicas (a new leader epoch each); a partition whose in-sync set has no other live
   * replica is left leaderless (-1) rather than handed to a replica that may lack acknowledged
   * records. The fenced broker leaves the in-sync sets too.
   */
  fenceExpired(image: MetadataImage): MetadataRecord[] {
    const now = this.#clock.monotonicMs();
    const expired: number[] = [];
    for (const broker of image.brokers.values()) {
      if (broker.fenced) continue;
      const last = this.#lastHeartbeatMs.get(broker.brokerId);
      // A broker this controller never heard from gets a full session from now (a new controller).
      if (last === undefined) this.#lastHeartbeatMs.set(broker.brokerId, now);
      else if (now - last > this.#options.sessionTimeoutMs) expired.push(broker.brokerId);
    }
    return this.#fence(
      image,
      expired.sort((a, b) => a - b),
    );
  }

  /**
   * A broker that is shutting down (controlled shutdown, SIGTERM) leaves now instead of at the end
   * of its session: it is fenced, and its leaderships and in-sync places move as for an expired
   * session. A stale epoch (an older incarnation) or a broker fenced already changes nothing.
   */
  controlledShutdown(image: MetadataImage, brokerId: number, brokerEpoch: number): MetadataRecord[] {
    const broker = image.broker(brokerId);
    if (!broker || broker.brokerEpoch !== brokerEpoch || broker.fenced) return [];
    this.#lastHeartbeatMs.delete(brokerId);
    return this.#fence(image, [brokerId]);
  }

  /**
   * A broker whose logs of `partitions` went offline on a storage error leaves their leaderships
   * (to other in-sync or eligible replicas) and in-sync sets, as a fenced broker leaves all of
   * its own: the last in-sync replica keeps its place, to lead again after a restart with a
   * healthy disk. A stale broker epoch is refused; partitions gone or no longer led or followed in
   * sync by the broker change nothing.
   */
  offlineReplicas(
    image: MetadataImage,
    request: {
      brokerId: number;
      brokerEpoch: number;
      partitions: readonly { topicId: string; partition: number }[];
    },
  ): MetadataRecord[] {
    const broker = image.broker(request.brokerId);
    if (!broker || broker.brokerEpoch !== request.brokerEpoch)
      throw new SluiceError(
        'INVALID_REQUEST',
        `broker ${request.brokerId} at epoch ${request.brokerEpoch} is not registered (register again)`,
        { details: { brokerId: request.brokerId, brokerEpoch: request.brokerEpoch } },
      );
    const records: PartitionChangeRecord[] = [];
    let next = image;
    const seen = new Set<string>();
    for (const { topicId, partition } of request.partitions) {
      const key = `${topicId}\u0000${partition}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const p = next.partition(topicId, partition);
      if (!p) continue;
      const change = this.#leave(next, p, request.brokerId, this.#replicationConfig(next, topicId));
      if (!change) continue;
      records.push(change);
      next = replay(next, change, next.lastOffset + 1);
    }
    return checked(image, records);
  }

  #fence(image: MetadataImage, brokerIds: readonly number[]): MetadataRecord[] {
    if (brokerIds.length === 0) return [];
    const records: MetadataRecord[] = [];
    let next = image;
    for (const brokerId of brokerIds) {
      const broker = next.broker(brokerId)!;
      const fence: MetadataRecord = {
        type: 'fenceBroker',
        version: 0,
        brokerId,
        brokerEpoch: broker.brokerEpoch,
      };
      records.push(fence);
      next = replay(next, fence, next.lastOffset + 1);
      for (const change of this.#moveAway(next, brokerId)) {
        records.push(change);
        next = replay(next, change, next.lastOffset + 1);
      }
    }
    return checked(image, records);
  }

  /**
   * Leaders for partitions that have none (their last in-sync replica was fenced) once an in-sync
   * replica is live again: a broker that returns leads what it held alone, at a new leader epoch.
   */
  electLeaderless(image: MetadataImage): MetadataRecord[] {
    const records: MetadataRecord[] = [];
    for (const topic of image.topicsById.values()) {
      let config: ReplicationConfig | undefined;
      for (const p of topic.partitions.values()) {
        if (p.leader !== -1) continue;
        config ??= this.#replicationConfig(image, topic.topicId);
        const chosen = this.#choose(image, p, -1, config);
        if (chosen.leader === -1) continue;
        records.push(this.#change(image, p, chosen));
      }
    }
    return checked(image, records);
  }

  /**
   * Leadership back to each partition's preferred replica (the first), where that replica is in
   * sync and unfenced and another leads now: after a failover and the return of the broker, leaders
   * spread as placed again. At most `max` changes, so that one pass moves a bounded number.
   */
  preferredLeaders(image: MetadataImage, max = 100): MetadataRecord[] {
    const records: MetadataRecord[] = [];
    for (const topic of image.topicsById.values()) {
      for (const p of topic.partitions.values()) {
        if (records.length >= max) return checked(image, records);
        const preferred = p.replicas[0]!;
        if (p.leader === preferred || p.leader === -1 || !p.isr.includes(preferred)) continue;
        const broker = image.broker(preferred);
        if (!broker || broker.fenced) continue;
        records.push({
          type: 'partitionChange',
          version: 0,
          topicId: p.topicId,
          partition: p.partition,
          leader: preferred,
        });
      }
    }
    return checked(image, records);
  }

  /**
   * A leader's new in-sync set for one of its partitions. Refused unless the asker is the current
   * incarnation of the partition's leader, at the current leader epoch and partition epoch (a
   * request computed from older state is stale), and the set holds the leader, only replicas, and
   * only unfenced brokers among those it adds.
   */
  alterPartition(
    image: MetadataImage,
    request: {
      brokerId: number;
      brokerEpoch: number;
      topicId: string;
      partition: number;
      leaderEpoch: number;
      partitionEpoch: number;
      isr: readonly number[];
    },
  ): MetadataRecord[] {
    const p = image.partition(request.topicId, request.partition);
    if (!p)
      throw new SluiceError(
        'UNKNOWN_TOPIC_OR_PARTITION',
        `no partition ${request.topicId}/${request.partition}`,
      );
    const broker = image.broker(request.brokerId);
    if (!broker || broker.brokerEpoch !== request.brokerEpoch || broker.fenced)
      throw new SluiceError(
        'INVALID_REQUEST',
        `broker ${request.brokerId} at epoch ${request.brokerEpoch} is not a current, unfenced broker`,
      );
    if (p.leader !== request.brokerId || p.leaderEpoch !== request.leaderEpoch)
      throw new SluiceError(
        'FENCED_LEADER_EPOCH',
        `broker ${request.brokerId} at leader epoch ${request.leaderEpoch} does not lead the partition (leader ${p.leader}, epoch ${p.leaderEpoch})`,
      );
    if (p.partitionEpoch !== request.partitionEpoch)
      throw new SluiceError(
        'INVALID_UPDATE_VERSION',
        `partition epoch ${request.partitionEpoch} is stale; the partition is at ${p.partitionEpoch}`,
      );
    const isr = [...new Set(request.isr)];
    if (!isr.includes(p.leader) || isr.some((id) => !p.replicas.includes(id)))
      throw new SluiceError('INVALID_REQUEST', 'the in-sync set must hold the leader and only replicas');
    for (const id of isr) {
      if (p.isr.includes(id)) continue;
      const b = image.broker(id);
      if (!b || b.fenced)
        throw new SluiceError('INVALID_REQUEST', `broker ${id} is fenced: it cannot join the in-sync set`);
    }
    const ordered = p.replicas.filter((id) => isr.includes(id));
    const isrChange: MetadataRecord = this.#change(image, p, {
      isr: ordered,
      elr: this.#elrAfter(image, p, ordered, this.#replicationConfig(image, p.topicId)),
    });
    // The in-sync set that takes in the last adding replica completes a reassignment, in the same entry.
    const after = replay(image, isrChange, image.lastOffset + 1).partition(p.topicId, p.partition)!;
    const complete = completion(image, after);
    return checked(image, complete ? [isrChange, complete] : [isrChange]);
  }

  /**
   * Starts (a target) or cancels (null) the reassignment of each partition named, all or none: a
   * request that names an unknown partition or broker, repeats a broker or a partition, asks for
   * an empty target, or meets a reassignment in progress (unless it cancels it or asks for the
   * same target) refuses the whole list. A target equal to the replicas changes nothing.
   */
  reassignPartitions(image: MetadataImage, requests: readonly ReassignmentRequest[]): MetadataRecord[] {
    requireReassignmentVersion(image);
    const records: MetadataRecord[] = [];
    const seen = new Set<string>();
    for (const request of requests) {
      const key = `${request.topic}\u0000${request.partition}`;
      if (seen.has(key))
        throw new SluiceError(
          'INVALID_REQUEST',
          `${request.topic}/${request.partition} is named twice in one reassignment`,
          { details: { topic: request.topic, partition: request.partition } },
        );
      seen.add(key);
      const topic = requireTopic(image, request.topic);
      const p = topic.partitions.get(request.partition);
      if (!p)
        throw new SluiceError(
          'UNKNOWN_TOPIC_OR_PARTITION',
          `topic ${request.topic} has no partition ${request.partition}`,
          { details: { topic: request.topic, partition: request.partition } },
        );
      if (request.partitionEpoch !== undefined && request.partitionEpoch !== p.partitionEpoch)
        throw new SluiceError(
          'INVALID_UPDATE_VERSION',
          `partition epoch ${request.partitionEpoch} of ${request.topic}/${request.partition} is stale; it is at ${p.partitionEpoch}`,
          {
            details: { topic: request.topic, partition: request.partition, partitionEpoch: p.partitionEpoch },
          },
        );
      if (request.replicas === null) {
        records.push(cancellation(image, p, request.topic));
        continue;
      }
      checkTarget(image, request.topic, request.partition, request.replicas);
      if (p.addingReplicas.length > 0 || p.removingReplicas.length > 0) {
        const target = p.replicas.filter((id) => !p.removingReplicas.includes(id));
        if (target.length === request.replicas.length && target.every((id, i) => request.replicas![i] === id))
          continue;
        throw new SluiceError(
          'REASSIGNMENT_IN_PROGRESS',
          `${request.topic}/${request.partition} is being reassigned to ${target.join(',')}: cancel that first`,
          { details: { topic: request.topic, partition: request.partition } },
        );
      }
      const start = startReassignment(image, p, request.replicas);
      if (start) records.push(start);
    }
    return checked(image, records);
  }

  /**
   * Moves every replica off `brokerId` (see `decommissionTargets`): one reassignment per partition
   * it holds, all in one entry. The broker keeps serving until each completes.
   */
  decommissionBroker(image: MetadataImage, brokerId: number): MetadataRecord[] {
    requireReassignmentVersion(image);
    return this.reassignPartitions(image, decommissionTargets(image, brokerId));
  }

  /**
   * Completes every reassignment that can complete on this image (the controller's timer): one
   * whose last adding replica joined the ISR while its leader could not move yet, for instance.
   */
  completeReassignments(image: MetadataImage, max = 100): MetadataRecord[] {
    const records: MetadataRecord[] = [];
    for (const topic of image.topicsById.values()) {
      for (const p of topic.partitions.values()) {
        if (records.length >= max) return checked(image, records);
        const complete = completion(image, p);
        if (complete) records.push(complete);
      }
    }
    return checked(image, records);
  }

  /**
   * Forgets every session: a controller that gains the leadership starts each broker's session
   * afresh (it may have missed heartbeats sent to the controller before it).
   */
  resetSessions(): void {
    this.#lastHeartbeatMs.clear();
  }

  /** Partition changes that take `brokerId` out of every in-sync set and leadership it holds. */
  #moveAway(image: MetadataImage, brokerId: number): PartitionChangeRecord[] {
    const changes: PartitionChangeRecord[] = [];
    for (const topic of image.topicsById.values()) {
      let config: ReplicationConfig | undefined;
      for (const p of topic.partitions.values()) {
        if (p.leader !== brokerId && !p.isr.includes(brokerId)) continue;
        config ??= this.#replicationConfig(image, topic.topicId);
        const change = this.#leave(image, p, brokerId, config);
        if (change) changes.push(change);
      }
    }
    return changes;
  }

  /**
   * The change that takes `brokerId` out of `p`'s leadership and in-sync set; undefined when it
   * holds neither, or only its place as the last in-sync replica. The last in-sync replica keeps its place in the ISR while leaderless, so that
   * it can lead again when it returns with everything that was acknowledged.
   */
  #leave(
    image: MetadataImage,
    p: PartitionImage,
    brokerId: number,
    config: ReplicationConfig,
  ): PartitionChangeRecord | undefined {
    if (p.leader !== brokerId && !p.isr.includes(brokerId)) return undefined;
    const left = p.isr.filter((id) => id !== brokerId);
    if (left.length === 0 && p.leader !== brokerId) return undefined;
    const isr = left.length > 0 ? left : p.isr;
    const elr = this.#elrAfter(image, p, isr, config);
    const fields =
      p.leader === brokerId ? this.#choose(image, { ...p, isr, elr }, brokerId, config) : { isr, elr };
    return this.#change(image, p, fields);
  }

  /**
   * A leader for `p` other than `leaving`, with the in-sync set and eligible replicas that go with
   * it: the first live in-sync replica in preference order (the sets unchanged); else the first
   * live eligible replica (it becomes the in-sync set alone, and the in-sync replicas it replaces
   * become eligible, as any that leave a set below `min.insync.replicas`); else, where the topic
   * allows unclean elections, the first live replica (it may lack acknowledged records; nothing is
   * eligible after it). Leader -1 and the sets unchanged when none can lead.
   */
  #choose(
    image: MetadataImage,
    p: PartitionImage,
    leaving: number,
    config: ReplicationConfig,
  ): { leader: number; isr: readonly number[]; elr: readonly number[] } {
    const live = (id: number) => id !== leaving && image.broker(id)?.fenced === false;
    const inSync = p.replicas.find((id) => p.isr.includes(id) && live(id));
    if (inSync !== undefined) return { leader: inSync, isr: p.isr, elr: p.elr };
    const eligible = p.replicas.find((id) => p.elr.includes(id) && live(id));
    if (eligible !== undefined)
      return { leader: eligible, isr: [eligible], elr: this.#elrAfter(image, p, [eligible], config) };
    const any = config.uncleanLeaderElection ? p.replicas.find(live) : undefined;
    if (any !== undefined) return { leader: any, isr: [any], elr: [] };
    return { leader: -1, isr: p.isr, elr: p.elr };
  }

  /**
   * The eligible leader replicas once `p`'s in-sync set becomes `isr`: those that leave it while it
   * is smaller than `min.insync.replicas` join the ones eligible already (the high watermark does
   * not move from then on, so each holds every committed record); a set that reaches the minimum
   * again, or a partition with fewer replicas than it (whose high watermark moves regardless),
   * has none. Always none below metadata.version 3.
   */
  #elrAfter(
    image: MetadataImage,
    p: PartitionImage,
    isr: readonly number[],
    config: ReplicationConfig,
  ): readonly number[] {
    const min = config.minInsyncReplicas;
    if (image.metadataVersion < METADATA_VERSION_ELR || isr.length >= min || p.replicas.length < min)
      return [];
    const eligible = new Set([...p.elr, ...p.isr.filter((id) => !isr.includes(id))]);
    return p.replicas.filter((id) => eligible.has(id) && !isr.includes(id));
  }

  /**
   * The change of `p` to the fields given, each only where it differs: the eligible replicas only
   * where they differ from what replay leaves of them (which drops in-sync brokers and brokers no
   * longer replicas), in a version 2 record.
   */
  #change(
    image: MetadataImage,
    p: PartitionImage,
    fields: { leader?: number; isr?: readonly number[]; elr?: readonly number[] },
  ): PartitionChangeRecord {
    const isr = fields.isr ?? p.isr;
    const leader = fields.leader ?? p.leader;
    const implicit = p.elr.filter((id) => !isr.includes(id));
    const elr = fields.elr ?? implicit;
    const elrChanged = elr.length !== implicit.length || elr.some((id, i) => implicit[i] !== id);
    const isrChanged = isr.length !== p.isr.length || isr.some((id, i) => p.isr[i] !== id);
    const withElr = elrChanged && image.metadataVersion >= METADATA_VERSION_ELR;
    return {
      type: 'partitionChange',
      version: withElr ? 2 : 0,
      topicId: p.topicId,
      partition: p.partition,
      ...(leader !== p.leader || (!isrChanged && !withElr) ? { leader } : {}),
      ...(isrChanged ? { isr: [...isr] } : {}),
      ...(withElr ? { elr: [...elr] } : {}),
    };
  }

  #replicationConfig(image: MetadataImage, topicId: string): ReplicationConfig {
    const configs: Record<string, ConfigValue> = {};
    for (const [name, text] of image.topicById(topicId)?.configs.entries() ?? []) {
      try {
        configs[name] = JSON.parse(text) as ConfigValue;
      } catch {
        configs[name] = text;
      }
    }
    return replicationConfigOf(configs, this.#options.topicDefaults);
  }

  #newTopicId(image: MetadataImage): string {
    for (;;) {
      const bytes = new Uint8Array(16);
      for (let i = 0; i < 16; i++) bytes[i] = this.#random.int(256);
      // Sixteen zero bytes are the reserved id, which topicIdFromBytes refuses: draw again.
      if (bytes.every((b) => b === 0)) continue;
      const id = topicIdFromBytes(bytes);
      if (!image.topicById(id)) return id;
    }
  }
}

function newPartition(topicId: string, partition: number, replicas: readonly number[]): MetadataRecord {
  return {
    type: 'partition',
    version: 0,
    topicId,
    partition,
    replicas: [...replicas],
    isr: [...replicas],
    leader: replicas[0]!,
    leaderEpoch: 0,
    partitionEpoch: 0,
  };
}

function requireTopic(image: MetadataImage, name: string) {
  const topic = image.topic(name);
  if (!topic)
    throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${name} does not exist`, {
      details: { topic: name },
    });
  return topic;
}

function liveBrokers(image: MetadataImage): { brokerId: number; rack: string | null }[] {
  return [...image.brokers.values()]
    .filter((b) => !b.fenced)
    .map((b) => ({ brokerId: b.brokerId, rack: b.rack }))
    .sort((a, b) => a.brokerId - b.brokerId);
}

function replicaCounts(image: MetadataImage): Map<number, number> {
  const counts = new Map<number, number>();
  for (const topic of image.topicsById.values())
    for (const p of topic.partitions.values())
      for (const id of p.replicas) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

/**
 * The records, each checked against the image the ones before it leave: a record that replay would
 * ignore is a bug in the controller, never something to write.
 */
function checked(image: MetadataImage, records: MetadataRecord[]): MetadataRecord[] {
  let next = image;
  for (const record of records) {
    const rejection = rejectionOf(next, record);
    if (rejection) {
      throw new SluiceError(
        'UNKNOWN_SERVER_ERROR',
        `the controller made a record replay refuses: ${rejection.message}`,
        {
          details: { recordType: record.type },
          cause: rejection,
        },
      );
    }
    next = replay(next, record, next.lastOffset + 1);
  }
  return records;
}
