import { randomInt, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { ReassignmentControl } from '../broker/admin.js';
import { ControllerService } from '../broker/controller-service.js';
import { MetadataTopicRegistry } from '../broker/metadata-registry.js';
import { PeerClient } from '../broker/peer-client.js';
import { electionTimeoutMs, Http2RaftTransport } from '../broker/raft-transport.js';
import type { ClusterDirectory } from '../broker/remote-partitions.js';
import { FileTopicRegistry } from '../broker/topic-registry.js';
import type { Clock, TimerHandle } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { SeededRandom } from '../common/random.js';
import { Controller, type ShutdownKind } from '../metadata/controller.js';
import { reassigning, targetReplicas } from '../metadata/image.js';
import { MetadataLog } from '../metadata/metadata-log.js';
import { METADATA_VERSION_FEATURE, METADATA_VERSION_MAX, type MetadataRecord } from '../metadata/records.js';
import type { ClusterResponse, NodeRole, QuorumStatus } from '../protocol/api.js';
import { RAFT_STATUS_PATH } from '../protocol/internal-api.js';
import type { ConfigValue } from '../protocol/topic-config.js';
import { RaftDriver, type RaftDriverOptions, type RaftStatus, type RaftTransport } from '../raft/driver.js';
import { LevelRaftStorage } from '../raft/storage.js';
import type { Message } from '../raft/types.js';
import { type FileSystem, mkdirDurable } from '../storage/fs.js';
import type { QuorumVoter } from './cluster-config.js';

/** Where the metadata quorum keeps its Raft log (LevelDB) in a data directory. */
export const METADATA_DIR = '__cluster_metadata';
/** Which cluster and node a data directory belongs to, written once the node has joined. */
const IDENTITY_FILE = join('__cluster', 'node.json');
/** The single-node release's topic file; imported into the metadata log at the first start. */
const LEGACY_TOPICS = join('__cluster', 'topics.json');
/** A one-voter quorum ticks fast: it elects itself in one election timeout (10 × 10 ms). */
const SINGLE_VOTER_TIMING = { tickMs: 10, electionTicks: 10, heartbeatTicks: 1 };
/** Several voters: a one-second election timeout, heartbeats every 100 ms. */
const QUORUM_TIMING = { tickMs: 50, electionTicks: 20, heartbeatTicks: 2 };
/** How long a start waits for the cluster (a leader, the cluster id, its own registration). */
const JOIN_WAIT_MS = 60_000;
/** How long `GET /v1/cluster` waits for each voter's status before it reports the voter unreachable. */
const VOTER_STATUS_TIMEOUT_MS = 1000;
/** The endpoint of a registration that clients use, and the one peers use when there is one. */
const PUBLIC_ENDPOINT = 'public';
const INTERNAL_ENDPOINT = 'internal';
/** The metadata.version this release writes. */
const METADATA_VERSION = METADATA_VERSION_MAX;

export interface MetadataOptions {
  nodeId: number;
  dataDir: string;
  /** The voters of the metadata quorum; absent: this node alone. */
  voters?: readonly QuorumVoter[];
  clusterSecret?: string;
  /** How long a broker may go unheard before the controller fences it. */
  sessionTimeoutMs: number;
  /** The node's topic config defaults (raw), which the controller decides replication by. */
  topicDefaults?: Readonly<Record<string, ConfigValue>>;
  rack: string | null;
  /**
   * Test and advanced use only (no CLI flag): the address this node uses to reach another node,
   * in place of the one the quorum names or the node registered. The fault tests route each
   * directed link through a proxy they can cut or delay this way.
   */
  peerAddressOverrides?: Readonly<Record<number, { host: string; port: number }>>;
}

/** Every voter's status, and the active controller's followers (learners too) when it answered. */
export interface VoterStatuses {
  quorum: QuorumStatus;
  followers?: { id: number; matchIndex: number; lag: number }[];
}

export interface NodeMetadata {
  log: MetadataLog;
  controller: ControllerService;
  registry: MetadataTopicRegistry;
  driver: RaftDriver;
  /** Present with more than one voter: the Raft transport the internal routes deliver to. */
  transport: Http2RaftTransport | undefined;
  /** Present in a cluster: requests to other nodes. */
  peers: PeerClient | undefined;
  directory: ClusterDirectory;
  /** The cluster as this node's image and Raft status show it, for `/v1/cluster`. */
  clusterView(): Pick<ClusterResponse, 'controllerId' | 'nodes' | 'metadata'>;
  /**
   * Joins the quorum: starts Raft, waits until the cluster id is committed (the first leader
   * commits it), checks it against the data directory, and records the node's identity there.
   */
  start(): Promise<void>;
  /**
   * Registers this broker at `endpoint` (a new incarnation and broker epoch), waits until the
   * controller unfences it, then heartbeats until close.
   */
  startBroker(
    endpoint: { host: string; port: number },
    internalEndpoint?: { host: string; port: number },
    lastShutdown?: ShutdownKind,
  ): Promise<void>;
  /** Each voter's status, asked of every voter at once (a short timeout each), for `/v1/cluster`. */
  quorumStatus(): Promise<VoterStatuses>;
  /** Voter changes through the active controller; each resolves with the members as applied here. */
  quorumAdmin: {
    addVoter(nodeId: number): Promise<{ voters: number[]; learners: number[] }>;
    removeVoter(nodeId: number): Promise<{ voters: number[]; learners: number[] }>;
  };
  /** Partition reassignment and broker decommission through the active controller. */
  reassignment: ReassignmentControl;
  /**
   * Whether this broker may act as a partition leader: in a cluster, only while the controller has
   * answered one of its heartbeats within the session timeout (a leader cut off longer has been, or
   * is about to be, replaced, and must not take writes that would be lost).
   */
  canLead(): boolean;
  /** Imports the single-node release's topic file, if there is one (a one-voter quorum only). */
  importLegacyTopics(): Promise<void>;
  /**
   * Controlled shutdown: asks the controller to fence this broker now and move its leaderships
   * (up to 5 s), instead of letting its session expire; heartbeats stop.
   */
  shutdownBroker(): Promise<void>;
  close(): Promise<void>;
}

/** A one-voter quorum has nobody to talk to; the core never addresses itself. */
class NoPeersTransport implements RaftTransport {
  send(message: Message): void {
    throw new SluiceError(
      'UNKNOWN_SERVER_ERROR',
      `a one-voter quorum sent a ${message.type} to ${message.to}`,
    );
  }
  onMessage(): void {}
  async close(): Promise<void> {}
}

/**
 * Opens this node's part of the metadata quorum without starting it: the Raft log in
 * `__cluster_metadata` (replayed into the image when started), its transport to the other voters,
 * the controller service and the topic registry over the log. The node starts it once its HTTP
 * server listens, since the other voters reach it there.
 */
export async function openMetadata(
  options: MetadataOptions,
  deps: { fs: FileSystem; clock: Clock; logger: Logger },
): Promise<NodeMetadata> {
  const { nodeId, dataDir } = options;
  const voters = options.voters ?? [];
  const clustered = voters.length > 0;
  // A node the quorum does not name is broker only: it registers with the controller, which adds it
  // as a learner of the metadata log, and follows the log without voting.
  const voter = !clustered || voters.some((v) => v.id === nodeId);
  if (clustered && options.clusterSecret === undefined)
    throw new SluiceError('INVALID_CONFIG', 'a controller quorum needs a cluster secret (--cluster-secret)');
  // A node that has taken part in a cluster says so in its data directory. Its metadata log lost
  // then must not start afresh: a new cluster id and an empty image would make the broker delete
  // every partition directory as unowned.
  const identityPath = join(dataDir, IDENTITY_FILE);
  const identity = await readIdentity(identityPath, deps.fs);
  if (identity && identity.nodeId !== nodeId) {
    throw new SluiceError(
      'INVALID_CONFIG',
      `${dataDir} belongs to node ${identity.nodeId} of cluster ${identity.clusterId}, not node ${nodeId}`,
    );
  }
  // Every URL of another node goes through here, so that an override covers Raft, the controller,
  // forwarding and replica fetches alike.
  const peerUrl = (id: number, host: string, port: number) => {
    const override = id === nodeId ? undefined : options.peerAddressOverrides?.[id];
    return override ? urlOf(override.host, override.port) : urlOf(host, port);
  };
  const voterUrls = new Map<number, string>(voters.map((v) => [v.id, peerUrl(v.id, v.host, v.port)]));
  const timing = clustered ? QUORUM_TIMING : SINGLE_VOTER_TIMING;
  const driverOptions: RaftDriverOptions = {
    id: nodeId,
    membership: { voters: clustered ? voters.map((v) => v.id) : [nodeId], learners: [] },
    ...timing,
    snapshotEntries: 10_000,
    storedStateRequired: identity !== undefined,
  };
  const transport = clustered
    ? new Http2RaftTransport(
        {
          id: nodeId,
          peers: Object.fromEntries(voterUrls),
          clusterSecret: options.clusterSecret!,
          electionTimeoutMs: electionTimeoutMs(timing),
        },
        { clock: deps.clock, random: new SeededRandom(randomInt(2 ** 31)) },
      )
    : undefined;
  const peers = clustered ? new PeerClient({ clusterSecret: options.clusterSecret! }) : undefined;
  const storage = await LevelRaftStorage.open(join(dataDir, METADATA_DIR));
  const driver = new RaftDriver(driverOptions, {
    storage,
    transport: transport ?? new NoPeersTransport(),
    clock: deps.clock,
    random: new SeededRandom(randomInt(2 ** 31)),
  });
  const log = new MetadataLog({ raft: driver });
  const legacyPath = join(dataDir, LEGACY_TOPICS);
  const legacy =
    !clustered && (await deps.fs.readFile(legacyPath)) !== undefined
      ? await FileTopicRegistry.open(dataDir, deps.fs)
      : undefined;
  const controller = new ControllerService(
    {
      nodeId,
      urlOf: (id) => voterUrls.get(id) ?? directory.urlOf(id),
      seeds: [...voterUrls.values()],
      tickMs: clustered ? 250 : 100,
      submitTimeoutMs: 15_000,
      bootstrapRecords: (): MetadataRecord[] => [
        { type: 'clusterId', version: 0, clusterId: legacy?.clusterId ?? randomUUID() },
        { type: 'featureLevel', version: 0, name: METADATA_VERSION_FEATURE, level: METADATA_VERSION },
      ],
    },
    {
      log,
      controller: new Controller(
        {
          sessionTimeoutMs: options.sessionTimeoutMs,
          ...(options.topicDefaults ? { topicDefaults: options.topicDefaults } : {}),
        },
        { clock: deps.clock, random: new SeededRandom(randomInt(2 ** 31)) },
      ),
      quorum: driver,
      ...(peers ? { peers } : {}),
      clock: deps.clock,
      logger: deps.logger,
    },
  );
  const registry = new MetadataTopicRegistry({ log, controller });
  let heartbeat: TimerHandle | undefined;
  /** When the controller last answered this broker's heartbeat (monotonic ms). */
  let lastBeatMs = deps.clock.monotonicMs();
  let closed = false;

  const waitUntil = async (what: string, done: () => boolean) => {
    const deadline = deps.clock.monotonicMs() + JOIN_WAIT_MS;
    while (!done()) {
      if (closed) throw new SluiceError('SHUTTING_DOWN', 'the node is stopping');
      if (deps.clock.monotonicMs() > deadline)
        throw new SluiceError('LEADER_NOT_AVAILABLE', `${what} did not happen within ${JOIN_WAIT_MS} ms`);
      await new Promise<void>((resolve) => deps.clock.setTimeout(resolve, timing.tickMs));
    }
  };

  // Every registered broker is in the transport's address book, so that a leader can send the log
  // to a learner and any node can hear a voter added after it started.
  const known = new Map<number, string>(voterUrls);
  log.onChange(() => {
    if (!transport) return;
    for (const broker of log.image.brokers.values()) {
      const url = directory.urlOf(broker.brokerId);
      if (broker.brokerId === nodeId || url === undefined || known.get(broker.brokerId) === url) continue;
      known.set(broker.brokerId, url);
      transport.setPeer(broker.brokerId, url);
    }
  });

  const start = async () => {
    await driver.start();
    controller.start();
    // A broker-only node learns the cluster id once it is a learner, after it registered.
    if (voter) await joined();
  };

  const joined = async () => {
    await waitUntil('the metadata quorum committing the cluster id', () => log.image.clusterId !== null);
    const clusterId = log.image.clusterId!;
    if (identity && identity.clusterId !== clusterId) {
      throw new SluiceError(
        'INVALID_CONFIG',
        `${dataDir} holds data of cluster ${identity.clusterId}, but its metadata log is of cluster ${clusterId}`,
      );
    }
    if (!identity) {
      await mkdirDurable(deps.fs, join(dataDir, '__cluster'));
      await deps.fs.writeFileAtomic(identityPath, Buffer.from(`${JSON.stringify({ clusterId, nodeId })}\n`));
    }
  };

  const startBroker = async (
    endpoint: { host: string; port: number },
    internalEndpoint?: { host: string; port: number },
    lastShutdown: ShutdownKind = 'clean',
  ) => {
    const incarnationId = randomUUID();
    // Peers reach this node at its internal endpoint when it has one (`--internal-listen`).
    const endpoints = [
      { name: PUBLIC_ENDPOINT, host: endpoint.host, port: endpoint.port },
      ...(internalEndpoint
        ? [{ name: INTERNAL_ENDPOINT, host: internalEndpoint.host, port: internalEndpoint.port }]
        : []),
    ];
    const register = () =>
      controller.submit({
        type: 'registerBroker',
        brokerId: nodeId,
        incarnationId,
        endpoints,
        rack: options.rack,
        ...(lastShutdown !== 'clean' ? { shutdown: lastShutdown } : {}),
      });
    await register();
    if (!voter) await joined();
    const beat = async (timeoutMs: number) => {
      const broker = log.image.broker(nodeId);
      if (!broker || broker.incarnationId !== incarnationId) {
        await register();
        return;
      }
      // The lease counts from the send: the controller heard the beat after it, so this node's
      // lease ends no later than the session the controller keeps for it.
      const sentMs = deps.clock.monotonicMs();
      await controller.submit(
        { type: 'heartbeat', brokerId: nodeId, brokerEpoch: broker.brokerEpoch, caughtUp: true },
        { timeoutMs },
      );
      lastBeatMs = Math.max(lastBeatMs, sentMs);
    };
    // The first one may wait while this node catches up with the log; later ones give up within
    // half a session, so that a stuck one never keeps the next from going.
    await beat(JOIN_WAIT_MS);
    const beatTimeoutMs = Math.max(100, Math.floor(options.sessionTimeoutMs / 2));
    await waitUntil('the controller unfencing this broker', () => log.image.broker(nodeId)?.fenced === false);
    let beating = false;
    const interval = Math.max(100, Math.min(1000, Math.floor(options.sessionTimeoutMs / 4)));
    heartbeat = deps.clock.setInterval(() => {
      if (beating || closed) return;
      beating = true;
      beat(beatTimeoutMs)
        .catch((error) => deps.logger.warn({ err: error }, 'the broker heartbeat failed'))
        .finally(() => {
          beating = false;
        });
    }, interval);
  };

  const importLegacyTopics = async () => {
    if (!legacy) return;
    // Every topic of the file, before the broker opens its logs: a partition directory no topic
    // owns is deleted at start, so nothing may start before the import has committed.
    for (const topic of legacy.list()) if (!log.image.topic(topic.name)) await registry.put(topic);
    await deps.fs.rename(legacyPath, `${legacyPath}.imported`);
  };

  const directory: ClusterDirectory = {
    leaderOf: (topic, partition) => log.image.topic(topic)?.partitions.get(partition)?.leader,
    // Every caller is a peer (forwarding, follower fetches, leader offsets, controller commands).
    urlOf: (id) => {
      const endpoints = log.image.broker(id)?.endpoints;
      const endpoint = endpoints?.find((e) => e.name === INTERNAL_ENDPOINT) ?? publicEndpoint(endpoints);
      return endpoint ? peerUrl(id, endpoint.host, endpoint.port) : (voterUrls.get(id) ?? undefined);
    },
  };

  const clusterView = () => {
    const status = driver.status();
    const image = log.image;
    const votes = (id: number) => status.membership.voters.includes(id);
    const rolesOf = (id: number, broker: boolean): NodeRole[] => [
      ...(votes(id) ? (['controller'] as const) : []),
      ...(broker ? (['broker'] as const) : []),
    ];
    const brokers = [...image.brokers.values()].map((b) => ({
      id: b.brokerId,
      host: publicEndpoint(b.endpoints)?.host ?? '',
      port: publicEndpoint(b.endpoints)?.port ?? 0,
      rack: b.rack,
      fenced: b.fenced,
      brokerEpoch: b.brokerEpoch,
      roles: rolesOf(b.brokerId, true),
    }));
    // A voter that has not registered a broker (a controller-only node): at its quorum address.
    const controllersOnly = [...status.membership.voters]
      .filter((id) => !image.brokers.has(id))
      .map((id) => {
        const voter = voters.find((v) => v.id === id);
        return { id, host: voter?.host ?? '', port: voter?.port ?? 0, roles: rolesOf(id, false) };
      });
    return {
      controllerId: status.leaderId,
      nodes: [...brokers, ...controllersOnly].sort((a, b) => a.id - b.id),
      metadata: {
        role: status.role,
        term: status.term,
        commitIndex: status.commitIndex,
        appliedIndex: status.appliedIndex,
        voters: [...status.membership.voters],
        lastOffset: image.lastOffset,
        lastIndex: status.lastIndex,
        followers: status.followers.map((f) => ({ ...f, lag: Math.max(0, status.lastIndex - f.matchIndex) })),
      },
    };
  };

  const voterStatus = async (id: number): Promise<RaftStatus | undefined> => {
    if (id === nodeId) return driver.status();
    const url = voterUrls.get(id) ?? directory.urlOf(id);
    if (!peers || url === undefined) return undefined;
    try {
      const answer = await peers.request(url, {
        method: 'GET',
        path: RAFT_STATUS_PATH,
        headers: { accept: 'application/json' },
        timeoutMs: VOTER_STATUS_TIMEOUT_MS,
      });
      return answer.status === 200 ? (JSON.parse(answer.body.toString('utf8')) as RaftStatus) : undefined;
    } catch {
      return undefined;
    }
  };

  const quorumStatus = async (): Promise<VoterStatuses> => {
    const local = driver.status();
    const ids = [...local.membership.voters].sort((a, b) => a - b);
    const statuses = new Map<number, RaftStatus | undefined>(
      await Promise.all(ids.map(async (id) => [id, await voterStatus(id)] as const)),
    );
    // The active controller as the voters see it: this node's view, else the highest term's.
    const heard = [...statuses.values()].filter((s): s is RaftStatus => s !== undefined);
    const controllerId =
      local.leaderId ??
      heard.sort((a, b) => b.term - a.term).find((s) => s.leaderId !== null)?.leaderId ??
      null;
    let leader = controllerId !== null ? statuses.get(controllerId) : undefined;
    if (controllerId !== null && !statuses.has(controllerId)) leader = await voterStatus(controllerId);
    if (leader && leader.role !== 'leader') leader = undefined;
    const longest = Math.max(0, ...heard.map((s) => s.lastIndex));
    const quorum: QuorumStatus = {
      source: leader ? 'controller' : 'local',
      controllerId: leader ? leader.id : controllerId,
      voters: ids.map((id) => {
        const own = statuses.get(id);
        const matchIndex = leader
          ? id === leader.id
            ? leader.lastIndex
            : leader.followers.find((f) => f.id === id)?.matchIndex
          : undefined;
        const lag =
          leader && matchIndex !== undefined
            ? Math.max(0, leader.lastIndex - matchIndex)
            : !leader && own
              ? Math.max(0, longest - own.lastIndex)
              : undefined;
        return {
          id,
          reachable: own !== undefined,
          ...(own
            ? {
                role: own.role,
                term: own.term,
                commitIndex: own.commitIndex,
                appliedIndex: own.appliedIndex,
                lastIndex: own.lastIndex,
              }
            : {}),
          ...(matchIndex !== undefined ? { matchIndex } : {}),
          ...(lag !== undefined ? { lag } : {}),
        };
      }),
    };
    const followers = leader?.followers.map((f) => ({
      id: f.id,
      matchIndex: f.matchIndex,
      lag: Math.max(0, leader.lastIndex - f.matchIndex),
    }));
    return { quorum, ...(followers ? { followers } : {}) };
  };

  const shutdownBroker = async () => {
    heartbeat?.cancel();
    const broker = log.image.broker(nodeId);
    if (!clustered || !broker || broker.fenced) return;
    // Bounded: a node whose controller is gone still stops.
    let timer: TimerHandle | undefined;
    await Promise.race([
      controller
        .submit({ type: 'shutdownBroker', brokerId: nodeId, brokerEpoch: broker.brokerEpoch })
        .catch((error) => deps.logger.warn({ err: error }, 'the controlled shutdown was not acknowledged')),
      new Promise<void>((resolve) => {
        timer = deps.clock.setTimeout(resolve, 5000);
      }),
    ]);
    timer?.cancel();
  };

  const close = async () => {
    closed = true;
    heartbeat?.cancel();
    controller.close();
    await driver.close();
    await transport?.close();
    peers?.close();
  };

  const members = () => {
    const { voters: v, learners } = driver.status().membership;
    return { voters: [...v], learners: [...learners] };
  };
  const quorumAdmin = {
    addVoter: async (id: number) => {
      await controller.submit({ type: 'addVoter', nodeId: id });
      // The change commits on the controller; this node applies it a moment later.
      await waitUntil(`node ${id} counted as a voter here`, () =>
        driver.status().membership.voters.includes(id),
      );
      return members();
    },
    removeVoter: async (id: number) => {
      await controller.submit({ type: 'removeVoter', nodeId: id });
      if (id !== nodeId)
        await waitUntil(
          `node ${id} no longer a voter here`,
          () => !driver.status().membership.voters.includes(id),
        );
      return members();
    },
  };

  const reassignment: ReassignmentControl = {
    reassign: async (partitions) => {
      await controller.submit({ type: 'reassignPartitions', partitions });
    },
    decommission: async (brokerId) => {
      await controller.submit({ type: 'decommissionBroker', brokerId });
    },
    inProgress: () => {
      const image = log.image;
      const out: ReturnType<ReassignmentControl['inProgress']> = [];
      for (const [name, id] of image.topicIdsByName.sorted()) {
        for (const [, p] of image.topicById(id)!.partitions.sorted()) {
          if (!reassigning(p)) continue;
          out.push({
            topic: name,
            partition: p.partition,
            replicas: [...p.replicas],
            targetReplicas: [...targetReplicas(p)],
            addingReplicas: [...p.addingReplicas],
            removingReplicas: [...p.removingReplicas],
            isr: [...p.isr],
            leader: p.leader,
          });
        }
      }
      return out;
    },
    partitionsHeld: (brokerId) => {
      let held = 0;
      for (const topic of log.image.topicsById.values())
        for (const p of topic.partitions.values()) if (p.replicas.includes(brokerId)) held++;
      return held;
    },
  };

  return {
    log,
    reassignment,
    quorumAdmin,
    controller,
    registry,
    driver,
    transport,
    peers,
    directory,
    clusterView,
    quorumStatus,
    start,
    startBroker,
    importLegacyTopics,
    shutdownBroker,
    canLead: () => !clustered || deps.clock.monotonicMs() - lastBeatMs <= options.sessionTimeoutMs,
    close,
  };
}

/** The endpoint clients use: the one named public, else the first (a registration names one at least). */
function publicEndpoint(
  endpoints: readonly { name: string; host: string; port: number }[] | undefined,
): { host: string; port: number } | undefined {
  return endpoints?.find((e) => e.name === PUBLIC_ENDPOINT) ?? endpoints?.[0];
}

function urlOf(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

async function readIdentity(
  path: string,
  fs: FileSystem,
): Promise<{ clusterId: string; nodeId: number } | undefined> {
  const data = await fs.readFile(path);
  if (data === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch (error) {
    throw new SluiceError('KAFKA_STORAGE_ERROR', `${path} is not valid JSON`, { cause: error });
  }
  const p = parsed as { clusterId?: unknown; nodeId?: unknown };
  if (typeof p.clusterId !== 'string' || !Number.isSafeInteger(p.nodeId))
    throw new SluiceError('KAFKA_STORAGE_ERROR', `${path} does not name a cluster and node`);
  return { clusterId: p.clusterId, nodeId: p.nodeId as number };
}
