import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Broker } from '../broker/broker.js';
import { ClusterMetrics } from '../broker/cluster-metrics.js';
import { RemotePartitions } from '../broker/remote-partitions.js';
import { HttpReplicaFetchTransport } from '../broker/replication.js';
import { installLeanAsyncResourceBind } from '../common/async-resource-bind.js';
import { systemClock } from '../common/clock.js';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { MetricsRegistry } from '../common/metrics.js';
import { buildApp, internalListenerHandler } from '../http/app.js';
import { internalRaftRoutes } from '../http/routes/internal-raft.js';
import { dualProtocolServerFactory } from '../http/server.js';
import { type CodecStatus, codecs } from '../protocol/compression.js';
import type { ControllerCommand } from '../protocol/internal-api.js';
import { type ConfigValue, parseTopicConfigDefaults } from '../protocol/topic-config.js';
import { FileCache } from '../storage/file-cache.js';
import { nodeFileSystem } from '../storage/fs.js';
import { LogManager } from '../storage/log-manager.js';
import {
  parseAdvertise,
  parseControllerQuorum,
  parseListen,
  parseRoles,
  resolveClusterSecret,
  resolveRoles,
} from './cluster-config.js';
import { lockDataDir, processEnvironment } from './data-dir-lock.js';
import { listenInternal } from './internal-listener.js';
import { textLogStream } from './log-format.js';
import { openMetadata } from './metadata.js';
import { PromMetricsRegistry } from './metrics.js';
import { beginRun, endRunCleanly, machineBootId } from './run-state.js';
import { VERSION } from './version.js';

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
const LOG_FORMATS = new Set(['json', 'text']);

/** Whether a node at this level logs its start and stop lines itself (info and below). */
export function logsLifecycle(logLevel: string | undefined): boolean {
  return ['info', 'debug', 'trace'].includes(logLevel ?? 'info');
}

export interface NodeOptions {
  nodeId?: number;
  host?: string;
  port?: number;
  dataDir: string;
  /** Defaults for every topic, in Kafka names: `flush.policy`, `retention.ms`, `num.partitions`, ... */
  configs?: Record<string, ConfigValue>;
  /** `info` when absent: start, stop, topic changes, recovery and slow requests (docs/observability.md). */
  logLevel?: string;
  /** `json` lines, or `text` for a person; `text` when absent and stdout is a terminal, else `json`. */
  logFormat?: 'json' | 'text';
  /** Where log lines go instead of stdout (tests). */
  logStream?: { write(line: string): unknown };
  /** A request slower than this (past its long-poll wait) is logged at info; 1000 when absent. */
  slowRequestMs?: number;
  /** Partitions with metric series of their own; later ones are added up. 1000 when absent. */
  metricsPartitionSeriesMax?: number;
  /**
   * Segment files (log, index, time index) kept open at once (`FileCache`); others are opened
   * again when used. 4096 when absent: 10,000 partitions hold 30,000 files, above the descriptor limit.
   */
  openSegmentFilesMax?: number;
  /**
   * The voters of the metadata quorum, `id@host:port,...` (`--controller-quorum`); absent: this
   * node alone, a one-voter quorum. A node whose id is among them votes; any other is broker only.
   */
  controllerQuorum?: string;
  /** The address other nodes and clients reach this node at, `host[:port]`; the listen address when absent. */
  advertise?: string;
  /** The rack (or zone) the node is in; replicas of a partition are spread over racks. */
  rack?: string;
  /** The secret nodes present to each other on the internal API; required with a controller quorum. */
  clusterSecret?: string;
  /** A file holding the cluster secret, instead of `clusterSecret`. */
  clusterSecretFile?: string;
  /** How long a broker may go unheard before the controller fences it; 9000 when absent. */
  sessionTimeoutMs?: number;
  /** A follower not caught up with its leader for this long leaves the in-sync set; 30000 when absent. */
  replicaLagTimeMaxMs?: number;
  /**
   * Test and advanced use only, not a CLI flag nor a config file setting: node id to the address
   * this node reaches that node at, instead of its quorum or registered address (the fault tests
   * put a proxy on every link).
   */
  peerAddressOverrides?: Readonly<Record<number, { host: string; port: number }>>;
  /**
   * Bytes per second a leader sends to the replicas reassignments are adding, until they are in
   * sync (`--replication-throttle-bytes-per-second`); in-sync followers are never throttled. 0 or
   * absent: no throttle.
   */
  replicationThrottleBytesPerSecond?: number;
  /**
   * `host:port` of a listener of its own for the cluster-internal API (`--internal-listen`); the
   * public port then refuses `/internal/*`, and the quorum names internal addresses. Absent: the
   * internal API shares the public port.
   */
  internalListen?: string;
  /** The address other nodes reach the internal listener at, `host[:port]`; needs `internalListen`. */
  advertiseInternal?: string;
  /** `controller`, `broker` or `controller,broker`; both for a node the quorum names, else broker. */
  roles?: string;
}

export interface SluiceNode {
  readonly address: { host: string; port: number };
  /** Where the cluster-internal API listens, when it has a listener of its own. */
  readonly internalAddress?: { host: string; port: number };
  readonly nodeId: number;
  readonly broker: Broker;
  /** This node's metrics, as `/metrics` serves them; no other node shares them. */
  readonly metrics: MetricsRegistry;
  close(): Promise<void>;
}

/**
 * The composition root of a Sluice node: storage, the metadata quorum (one voter on this node for
 * now) with its controller, the broker, HTTP on one port for HTTP/1.1 and HTTP/2. Everything it
 * opens it closes, in reverse order.
 */
export async function startNode(options: NodeOptions): Promise<SluiceNode> {
  // The node's own timers never hold a process open (a closed node must let it exit), and while
  // the node starts nothing else may: the metadata quorum waits for its next tick between writes.
  // This one keeps a process that is only starting a node alive until the server listens.
  const starting = setInterval(() => {}, 60_000);
  try {
    return await startNodeHeld(options);
  } finally {
    clearInterval(starting);
  }
}

async function startNodeHeld(options: NodeOptions): Promise<SluiceNode> {
  const nodeId = options.nodeId ?? 1;
  const host = options.host ?? '127.0.0.1';
  const logLevel = options.logLevel ?? 'info';
  if (!LOG_LEVELS.has(logLevel)) {
    throw new SluiceError(
      'INVALID_CONFIG',
      `log level ${logLevel} is not one of ${[...LOG_LEVELS].join(', ')}`,
    );
  }
  if (options.logFormat !== undefined && !LOG_FORMATS.has(options.logFormat))
    throw new SluiceError('INVALID_CONFIG', `log format ${options.logFormat} is not json or text`);
  const openFilesMax = options.openSegmentFilesMax;
  if (openFilesMax !== undefined && (!Number.isSafeInteger(openFilesMax) || openFilesMax < 1))
    throw new SluiceError(
      'INVALID_CONFIG',
      `openSegmentFilesMax ${openFilesMax} is not a whole number from 1`,
      {
        details: { config: 'openSegmentFilesMax' },
      },
    );
  // Every http2 client request (forwarding, replica fetches, Raft) calls it: see the module.
  installLeanAsyncResourceBind();
  const dataDir = resolve(options.dataDir);
  const clock = systemClock;
  const defaults = parseTopicConfigDefaults(options.configs ?? {});
  // Codecs load once, before any log is read: one that cannot load is told at start (below), and
  // a batch naming it is refused with UNSUPPORTED_COMPRESSION_TYPE saying why.
  const codecStatus = await codecs.load();
  const metrics = new PromMetricsRegistry();
  // Everything logs through the app's logger once it exists; before that (while the logs open)
  // errors go to stderr, so that a partition taken offline at start is never silent.
  let target: Logger = {
    error: (fields, message) =>
      process.stderr.write(`${JSON.stringify({ level: 'error', msg: message, ...fields })}\n`),
    warn: () => {},
    info: () => {},
    debug: () => {},
  };
  const logger: Logger = {
    error: (fields, message) => target.error(fields, message),
    warn: (fields, message) => target.warn(fields, message),
    info: (fields, message) => target.info(fields, message),
    debug: (fields, message) => target.debug(fields, message),
  };
  const fileCache = new FileCache(openFilesMax !== undefined ? { openFilesMax } : {});
  const bootId = machineBootId();
  // Before anything of the directory is read: a second node on it would recover its logs.
  const lock = await lockDataDir(dataDir, processEnvironment(bootId));
  let logs: LogManager;
  // Nothing else runs while the logs open: their reads go on this thread (`synchronousReads`).
  fileCache.synchronousReads = true;
  try {
    logs = await LogManager.open(
      { dataDir, retentionCheckMs: defaults.retentionCheckMs },
      { fs: fileCache.fileSystem(), clock, logger, metrics },
    );
  } catch (error) {
    await lock.release();
    throw error;
  } finally {
    fileCache.synchronousReads = false;
  }
  // How the last run ended (for the controller's unclean-restart rule), recorded as begun now.
  let logsClosed = false;
  const closers: (() => Promise<void>)[] = [
    async () => {
      await logs.close();
      logsClosed = true;
    },
    // Only once every log closed: a run that ends otherwise stays unclean.
    async () => {
      if (logsClosed) await endRunCleanly(dataDir, nodeFileSystem, bootId);
    },
    // Last: the directory is free for the next node once nothing of this one writes to it.
    () => lock.release(),
  ];
  try {
    const lastShutdown = await beginRun(dataDir, nodeFileSystem, bootId);
    const listenPort = options.port ?? 8092;
    const voters =
      options.controllerQuorum !== undefined ? parseControllerQuorum(options.controllerQuorum) : undefined;
    const clusterSecret = resolveClusterSecret(options);
    const advertised =
      options.advertise !== undefined ? parseAdvertise(options.advertise, listenPort) : undefined;
    const roles = resolveRoles(
      options.roles !== undefined ? parseRoles(options.roles) : undefined,
      nodeId,
      voters,
    );
    const internalListen =
      options.internalListen !== undefined ? parseListen(options.internalListen) : undefined;
    if (options.advertiseInternal !== undefined && internalListen === undefined)
      throw new SluiceError('INVALID_CONFIG', 'advertiseInternal needs internalListen', {
        details: { config: 'advertiseInternal' },
      });
    if (internalListen && voters === undefined)
      throw new SluiceError(
        'INVALID_CONFIG',
        'an internal listener serves the other nodes of a cluster: it needs a controller quorum (--controller-quorum)',
        { details: { config: 'internalListen' } },
      );
    if (internalListen && clusterSecret === undefined)
      throw new SluiceError(
        'INVALID_CONFIG',
        'an internal listener needs a cluster secret (--cluster-secret)',
        {
          details: { config: 'internalListen' },
        },
      );
    const advertisedInternal =
      options.advertiseInternal !== undefined ? parseAdvertise(options.advertiseInternal, 0) : undefined;
    // Topics live in the metadata log (a Raft quorum: this node alone, or the voters named),
    // replayed into the image.
    const metadata = await openMetadata(
      {
        nodeId,
        dataDir,
        ...(voters ? { voters } : {}),
        ...(clusterSecret !== undefined ? { clusterSecret } : {}),
        sessionTimeoutMs: options.sessionTimeoutMs ?? 9000,
        topicDefaults: defaults.raw,
        rack: options.rack ?? null,
        ...(options.peerAddressOverrides ? { peerAddressOverrides: options.peerAddressOverrides } : {}),
      },
      { fs: nodeFileSystem, clock, logger },
    );
    closers.unshift(() => metadata.close());
    const clusterMetrics = new ClusterMetrics({
      metrics,
      status: () => metadata.driver.status(),
      image: () => metadata.log.image,
      controllerActive: () => metadata.controller.active,
    });
    metadata.controller.countWith(clusterMetrics);
    const leaderWatch = clock.setInterval(() => clusterMetrics.observeLeader(), 100);
    closers.unshift(async () => leaderWatch.cancel());
    // The port is known once the server is bound; the cluster view asks for it when it answers.
    let boundPort = listenPort;
    const advertisedAddress = () => ({
      host: advertised?.host ?? host,
      port: advertised && advertised.port !== 0 ? advertised.port : boundPort,
    });
    const remote =
      metadata.peers && clusterSecret !== undefined
        ? new RemotePartitions(
            { nodeId, clusterSecret },
            {
              directory: metadata.directory,
              peers: metadata.peers,
              catchUp: () => metadata.controller.catchUp(),
            },
          )
        : undefined;
    const broker = new Broker(
      {
        nodeId,
        version: VERSION,
        address: advertisedAddress,
        clusterView: () => metadata.clusterView(),
        ...(voters ? { quorum: metadata.quorumAdmin, quorumStatus: () => metadata.quorumStatus() } : {}),
        reassignment: metadata.reassignment,
        defaultConfigs: options.configs ?? {},
        ...(options.metricsPartitionSeriesMax !== undefined
          ? { partitionSeriesMax: options.metricsPartitionSeriesMax }
          : {}),
      },
      {
        registry: metadata.registry,
        logs,
        clock,
        metrics,
        logger,
        allocateProducerIds: async () => {
          const brokerEpoch = metadata.log.image.broker(nodeId)?.brokerEpoch;
          if (brokerEpoch === undefined)
            throw new SluiceError(
              'LEADER_NOT_AVAILABLE',
              'this broker has not registered with the controller yet',
            );
          const result = await metadata.controller.submit({
            type: 'allocateProducerIds',
            brokerId: nodeId,
            brokerEpoch,
          });
          if (!result.producerIds)
            throw new SluiceError('UNKNOWN_SERVER_ERROR', 'the controller answered no producer id block');
          return result.producerIds;
        },
        ...(remote
          ? { remote, catchUp: () => metadata.controller.catchUp(), canLead: () => metadata.canLead() }
          : {}),
        ...(metadata.peers
          ? {
              replication: {
                transport: new HttpReplicaFetchTransport({
                  peers: metadata.peers,
                  urlOf: (id: number) => metadata.directory.urlOf(id),
                }),
                cluster: {
                  brokerEpoch: () => {
                    const b = metadata.log.image.broker(nodeId);
                    return b && !b.fenced ? b.brokerEpoch : undefined;
                  },
                  isLive: (id: number, brokerEpoch?: number) => {
                    const broker = metadata.log.image.broker(id);
                    return (
                      broker?.fenced === false &&
                      (brokerEpoch === undefined || broker.brokerEpoch === brokerEpoch)
                    );
                  },
                  submit: (command: ControllerCommand) => metadata.controller.submit(command),
                  isReassignmentTarget: (topicId: string, partition: number, id: number) =>
                    metadata.log.image.partition(topicId, partition)?.addingReplicas.includes(id) === true,
                },
                options: {
                  replicaLagTimeMaxMs: options.replicaLagTimeMaxMs ?? 30_000,
                  fetchMaxWaitMs: 500,
                  fetchMaxBytes: 8 * 1024 * 1024,
                  throttleBytesPerSecond: options.replicationThrottleBytesPerSecond ?? 0,
                },
              },
            }
          : {}),
      },
    );
    const app = buildApp(
      {
        logger: logLevel === 'silent' ? false : { level: logLevel, ...logStreamOf(options) },
        serverFactory: dualProtocolServerFactory({ metrics }),
        ...(options.slowRequestMs !== undefined ? { slowRequestMs: options.slowRequestMs } : {}),
        ...(internalListen ? { internalListener: true } : {}),
      },
      { broker, metrics },
    );
    if (metadata.transport && clusterSecret !== undefined) {
      // The cluster-internal API shares the public port, behind the cluster secret, unless it has
      // a listener of its own (the same app's routes, which tell the two listeners apart).
      const receiver = metadata.transport.receiver();
      app.register(internalRaftRoutes, {
        clusterSecret,
        ...receiver,
        driver: metadata.driver,
        executeCommand: (command) => metadata.controller.execute(command),
        leaderOffsets: (topic) => broker.admin.leaderOffsets(topic),
        ...(broker.replication
          ? { answerReplicaFetch: (request, signal) => broker.replication!.answerFetch(request, signal) }
          : {}),
      });
    }
    let internal: Awaited<ReturnType<typeof listenInternal>> | undefined;
    if (logLevel !== 'silent') target = app.log;
    logCodecs(logger, codecStatus);
    logRecovery(logger, logs);
    closers.unshift(async () => {
      logger.info({ nodeId }, 'node stopping');
      await metadata.shutdownBroker();
      // Answer waiting fetches and end follow streams first, so that the server can drain.
      broker.beginShutdown();
      await app.close();
      await internal?.close();
      await broker.replication?.checkpoint();
    });
    await app.listen({
      host,
      port: listenPort,
      listenTextResolver: (address) => `listening on ${address} (HTTP/1.1 and HTTP/2)`,
    });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : boundPort;
    boundPort = port;
    // Peers reach the internal listener, so it listens before this node joins the quorum.
    if (internalListen) {
      internal = await listenInternal(internalListen, internalListenerHandler(app));
      logger.info({ host: internalListen.host, port: internal.port }, 'internal listener open');
    }
    const internalEndpoint = internal
      ? {
          host: advertisedInternal?.host ?? advertised?.host ?? internalListen!.host,
          port: advertisedInternal && advertisedInternal.port !== 0 ? advertisedInternal.port : internal.port,
        }
      : undefined;
    // The public API answers once the node has joined: the cluster id committed, this broker
    // registered and unfenced, the single-node release's topics imported, the logs open.
    await metadata.start();
    if (lastShutdown !== 'clean')
      logger.warn(
        { nodeId, lastShutdown },
        lastShutdown === 'new'
          ? 'the data directory is new: this broker joins no in-sync set until it has caught up'
          : 'the last run ended with the machine: this broker leaves the in-sync sets of asynchronously flushed topics until it has caught up',
      );
    if (roles.broker) await metadata.startBroker(advertisedAddress(), internalEndpoint, lastShutdown);
    await metadata.importLegacyTopics();
    await broker.start();
    logger.info(
      { version: VERSION, nodeId, host, port, dataDir, partitions: logs.list().length },
      'node started',
    );
    let closing: Promise<void> | undefined;
    return {
      address: { host, port },
      ...(internal && internalListen
        ? { internalAddress: { host: internalListen.host, port: internal.port } }
        : {}),
      nodeId,
      broker,
      metrics,
      close() {
        closing ??= (async () => {
          for (const close of closers) await close();
          logger.info({ nodeId }, 'node stopped');
        })();
        return closing;
      },
    };
  } catch (error) {
    for (const close of closers) await close().catch(() => {});
    throw error;
  }
}

/** pino's destination: the text format on a terminal (or when asked), else JSON to the stream given or stdout. */
function logStreamOf(options: NodeOptions): { stream?: { write(line: string): void } } {
  const out = options.logStream ?? process.stdout;
  const format =
    options.logFormat ?? (options.logStream === undefined && process.stdout.isTTY ? 'text' : 'json');
  if (format === 'text') return { stream: textLogStream(out) };
  return options.logStream ? { stream: { write: (line) => void out.write(line) } } : {};
}

/** Which batch compression codecs this node has; one that could not be loaded is a warning. */
function logCodecs(logger: Logger, status: readonly CodecStatus[]): void {
  for (const codec of status) {
    if (!codec.available)
      logger.warn(
        { codec: codec.name, problem: codec.problem },
        'compression codec unavailable: batches in it are refused (UNSUPPORTED_COMPRESSION_TYPE)',
      );
  }
  logger.info(
    { codecs: ['none', ...status.filter((c) => c.available).map((c) => c.name)] },
    'compression codecs loaded',
  );
}

/** What recovery found in each partition log that was not shut down cleanly. */
function logRecovery(logger: Logger, logs: LogManager): void {
  for (const { topic, partition, log } of logs.list()) {
    const report = log.recoveryReport;
    if (!report) continue;
    logger.info(
      {
        topic,
        partition,
        segmentsScanned: report.segmentsScanned,
        scannedBytes: report.scannedBytes,
        truncatedBytes: report.truncatedBytes,
        ...(report.problem !== undefined ? { problem: report.problem } : {}),
        logEndOffset: log.logEndOffset,
      },
      'partition log recovered after an unclean shutdown',
    );
  }
}

/** Reads a JSON config file: `{ "port": 8092, "dataDir": "...", "configs": { "flush.policy": "sync" } }`. */
export async function loadConfigFile(path: string): Promise<Partial<NodeOptions>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new SluiceError('INVALID_CONFIG', `cannot read config file ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SluiceError(
      'INVALID_CONFIG',
      `config file ${path} is not valid JSON: ${(error as Error).message}`,
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SluiceError('INVALID_CONFIG', `config file ${path} must hold a JSON object`);
  }
  const allowed = new Set([
    'nodeId',
    'host',
    'port',
    'dataDir',
    'configs',
    'logLevel',
    'logFormat',
    'slowRequestMs',
    'metricsPartitionSeriesMax',
    'controllerQuorum',
    'advertise',
    'rack',
    'clusterSecret',
    'clusterSecretFile',
    'sessionTimeoutMs',
    'replicaLagTimeMaxMs',
    'replicationThrottleBytesPerSecond',
    'internalListen',
    'advertiseInternal',
    'roles',
  ]);
  for (const key of Object.keys(parsed)) {
    if (!allowed.has(key))
      throw new SluiceError('INVALID_CONFIG', `config file ${path}: unknown setting ${key}`);
  }
  const settings = parsed as Record<string, unknown>;
  const bad = (key: string, what: string) =>
    new SluiceError('INVALID_CONFIG', `config file ${path}: ${key} must be ${what}`, {
      details: { config: key },
    });
  const isInt = (v: unknown, min: number, max: number) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
  if (settings.port !== undefined && !isInt(settings.port, 0, 65535)) throw bad('port', 'an integer port');
  if (settings.nodeId !== undefined && !isInt(settings.nodeId, 0, 2 ** 31 - 1))
    throw bad('nodeId', 'a non-negative integer');
  for (const key of [
    'slowRequestMs',
    'metricsPartitionSeriesMax',
    'sessionTimeoutMs',
    'replicaLagTimeMaxMs',
  ]) {
    if (settings[key] !== undefined && !isInt(settings[key], 0, 2 ** 31 - 1))
      throw bad(key, 'a non-negative integer');
  }
  for (const key of ['replicationThrottleBytesPerSecond']) {
    if (settings[key] !== undefined && !isInt(settings[key], 0, Number.MAX_SAFE_INTEGER))
      throw bad(key, 'a non-negative integer');
  }
  for (const key of [
    'host',
    'dataDir',
    'logLevel',
    'logFormat',
    'controllerQuorum',
    'advertise',
    'rack',
    'clusterSecret',
    'clusterSecretFile',
    'internalListen',
    'advertiseInternal',
    'roles',
  ]) {
    if (settings[key] !== undefined && (typeof settings[key] !== 'string' || settings[key] === ''))
      throw bad(key, 'a non-empty string');
  }
  if (settings.configs !== undefined) {
    const configs = settings.configs;
    if (typeof configs !== 'object' || configs === null || Array.isArray(configs))
      throw bad('configs', 'an object of topic configs');
    for (const [name, value] of Object.entries(configs)) {
      if (!['string', 'number', 'boolean'].includes(typeof value))
        throw bad(`configs.${name}`, 'a string, number or boolean');
    }
  }
  return settings as Partial<NodeOptions>;
}
