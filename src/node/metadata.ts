import { randomInt, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { MetadataTopicRegistry } from '../broker/metadata-registry.js';
import { FileTopicRegistry } from '../broker/topic-registry.js';
import type { Clock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import { SeededRandom } from '../common/random.js';
import { Controller } from '../metadata/controller.js';
import { MetadataLog } from '../metadata/metadata-log.js';
import { METADATA_VERSION_FEATURE, type MetadataRecord } from '../metadata/records.js';
import type { ClusterResponse } from '../protocol/api.js';
import { RaftDriver, type RaftTransport } from '../raft/driver.js';
import { LevelRaftStorage } from '../raft/storage.js';
import type { Message } from '../raft/types.js';
import { type FileSystem, mkdirDurable } from '../storage/fs.js';

/** Where the metadata quorum keeps its Raft log (LevelDB) in a data directory. */
export const METADATA_DIR = '__cluster_metadata';
/** Which cluster and node a data directory belongs to, written once the node has joined. */
const IDENTITY_FILE = join('__cluster', 'node.json');
/** The single-node release's topic file; imported into the metadata log at the first start. */
const LEGACY_TOPICS = join('__cluster', 'topics.json');
/** A one-voter quorum ticks fast: it elects itself in one election timeout (10 × 10 ms). */
const SINGLE_VOTER_TICK_MS = 10;
const LEADER_WAIT_MS = 15_000;
/** How long a broker may go unheard before the controller fences it. */
const SESSION_TIMEOUT_MS = 9_000;
/** The metadata.version this release writes. */
const METADATA_VERSION = 1;

export interface NodeMetadata {
  log: MetadataLog;
  controller: Controller;
  registry: MetadataTopicRegistry;
  driver: RaftDriver;
  /** The cluster as this node's image and Raft status show it, for `/v1/cluster`. */
  clusterView(): Pick<ClusterResponse, 'controllerId' | 'nodes' | 'metadata'>;
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
 * Opens this node's metadata quorum, a single voter for now: the Raft log in `__cluster_metadata`,
 * replayed into the image, and the controller over it. At the first start it commits the cluster
 * id and metadata.version (taking the cluster id and topics of a single-node release's
 * `__cluster/topics.json` when there is one, so that its topics and records stay); at every start
 * it registers this broker, which the controller then unfences.
 */
export async function openMetadata(
  options: { nodeId: number; dataDir: string; host: string; port: number },
  deps: { fs: FileSystem; clock: Clock },
): Promise<NodeMetadata> {
  // A node that has taken part in a cluster says so in its data directory. Its metadata log lost
  // then must not start afresh: a new cluster id and an empty image would make the broker delete
  // every partition directory as unowned.
  const identityPath = join(options.dataDir, IDENTITY_FILE);
  const identity = await readIdentity(identityPath, deps.fs);
  if (identity && identity.nodeId !== options.nodeId) {
    throw new SluiceError(
      'INVALID_CONFIG',
      `${options.dataDir} belongs to node ${identity.nodeId} of cluster ${identity.clusterId}, not node ${options.nodeId}`,
    );
  }
  const storage = await LevelRaftStorage.open(join(options.dataDir, METADATA_DIR));
  const driver = new RaftDriver(
    {
      id: options.nodeId,
      membership: { voters: [options.nodeId], learners: [] },
      tickMs: SINGLE_VOTER_TICK_MS,
      electionTicks: 10,
      heartbeatTicks: 1,
      snapshotEntries: 10_000,
      storedStateRequired: identity !== undefined,
    },
    {
      storage,
      transport: new NoPeersTransport(),
      clock: deps.clock,
      random: new SeededRandom(randomInt(2 ** 31)),
    },
  );
  const log = new MetadataLog({ raft: driver });
  const controller = new Controller(
    { sessionTimeoutMs: SESSION_TIMEOUT_MS },
    { clock: deps.clock, random: new SeededRandom(randomInt(2 ** 31)) },
  );
  const registry = new MetadataTopicRegistry({ log, controller });
  const close = async () => {
    await driver.close();
  };
  try {
    await driver.start();
    await waitForLeadership(driver, deps.clock);
    await bootstrap(log, controller, options, deps.fs);
    const clusterId = log.image.clusterId!;
    if (identity && identity.clusterId !== clusterId) {
      throw new SluiceError(
        'INVALID_CONFIG',
        `${options.dataDir} holds data of cluster ${identity.clusterId}, but its metadata log is of cluster ${clusterId}`,
      );
    }
    if (!identity) {
      await mkdirDurable(deps.fs, join(options.dataDir, '__cluster'));
      await deps.fs.writeFileAtomic(
        identityPath,
        Buffer.from(`${JSON.stringify({ clusterId, nodeId: options.nodeId })}\n`),
      );
    }
    const clusterView = () => {
      const status = driver.status();
      const image = log.image;
      return {
        controllerId: status.leaderId,
        nodes: [...image.brokers.values()]
          .sort((a, b) => a.brokerId - b.brokerId)
          .map((b) => ({
            id: b.brokerId,
            host: b.endpoints[0]?.host ?? '',
            port: b.endpoints[0]?.port ?? 0,
            rack: b.rack,
            fenced: b.fenced,
            brokerEpoch: b.brokerEpoch,
          })),
        metadata: {
          role: status.role,
          term: status.term,
          commitIndex: status.commitIndex,
          appliedIndex: status.appliedIndex,
          voters: [...status.membership.voters],
          lastOffset: image.lastOffset,
        },
      };
    };
    return { log, controller, registry, driver, clusterView, close };
  } catch (error) {
    await close().catch(() => {});
    throw error;
  }
}

async function waitForLeadership(driver: RaftDriver, clock: Clock): Promise<void> {
  const deadline = clock.monotonicMs() + LEADER_WAIT_MS;
  while (driver.status().role !== 'leader') {
    if (clock.monotonicMs() > deadline)
      throw new SluiceError(
        'LEADER_NOT_AVAILABLE',
        `the metadata quorum elected no leader in ${LEADER_WAIT_MS} ms`,
      );
    await new Promise<void>((resolve) => clock.setTimeout(resolve, SINGLE_VOTER_TICK_MS));
  }
  // A new leader commits an entry of its own term first; proposals and the image wait for it.
  while (driver.status().appliedIndex < driver.status().commitIndex)
    await new Promise<void>((resolve) => clock.setTimeout(resolve, SINGLE_VOTER_TICK_MS));
}

async function bootstrap(
  log: MetadataLog,
  controller: Controller,
  options: { nodeId: number; dataDir: string; host: string; port: number },
  fs: FileSystem,
): Promise<void> {
  const legacyPath = join(options.dataDir, LEGACY_TOPICS);
  const legacy =
    log.image.clusterId === null && (await fs.readFile(legacyPath)) !== undefined
      ? await FileTopicRegistry.open(options.dataDir, fs)
      : undefined;
  if (log.image.clusterId === null) {
    const first: MetadataRecord[] = [
      { type: 'clusterId', version: 0, clusterId: legacy?.clusterId ?? randomUUID() },
      { type: 'featureLevel', version: 0, name: METADATA_VERSION_FEATURE, level: METADATA_VERSION },
    ];
    await log.propose(first);
  }
  await log.propose(
    controller.registerBroker(log.image, {
      brokerId: options.nodeId,
      incarnationId: randomUUID(),
      // A port chosen at bind time (0) is not known yet; nothing reads a one-node cluster's endpoints.
      endpoints: options.port > 0 ? [{ name: 'public', host: options.host, port: options.port }] : [],
      rack: null,
    }),
  );
  const brokerEpoch = log.image.broker(options.nodeId)!.brokerEpoch;
  await log.propose(
    controller.heartbeat(log.image, { brokerId: options.nodeId, brokerEpoch, caughtUp: true }),
  );
  if (legacy) {
    // Every topic of the file, before the broker opens its logs: a partition directory no topic
    // owns is deleted at start, so nothing may start before the import has committed.
    const registry = new MetadataTopicRegistry({ log, controller });
    for (const topic of legacy.list()) if (!log.image.topic(topic.name)) await registry.put(topic);
    await fs.rename(legacyPath, `${legacyPath}.imported`);
  }
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
