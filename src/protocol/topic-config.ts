import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { type CodecName, isCodecName } from './compression.js';

/**
 * Every topic config Sluice knows, in Kafka's names: its parser, its default, and the typed form the
 * broker and the log use. A config set is parsed once when it changes (create, alter, start) and the
 * parsed form is what the rest of the node reads.
 */

/** A config value as a client sends it. */
export type ConfigValue = string | number | boolean;

export type FlushPolicy = 'sync' | 'async';
export type CleanupPolicy = 'delete' | 'compact' | 'compact,delete';

/** How one partition's log is kept. Field names are the camel-case forms of Kafka's topic configs. */
export interface LogConfig {
  segmentBytes: number;
  segmentMs: number;
  indexIntervalBytes: number;
  /** `sync`: an append resolves after fsync. `async`: fsync every `flushMs` and on close. */
  flushPolicy: FlushPolicy;
  flushMs: number;
  /** -1: unlimited. */
  retentionMs: number;
  /** -1: unlimited. */
  retentionBytes: number;
  cleanupPolicy: CleanupPolicy;
  deleteRetentionMs: number;
  batchBytesMax: number;
  /** An idempotent producer not heard of for this long (by its batches' timestamps) is forgotten. */
  producerIdExpirationMs: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

export const DEFAULT_LOG_CONFIG: LogConfig = Object.freeze({
  segmentBytes: 1024 * 1024 * 1024,
  segmentMs: 7 * DAY_MS,
  indexIntervalBytes: 4096,
  flushPolicy: 'async',
  flushMs: 1000,
  retentionMs: 7 * DAY_MS,
  retentionBytes: -1,
  cleanupPolicy: 'delete',
  deleteRetentionMs: DAY_MS,
  batchBytesMax: LIMITS.batchBytesMax,
  producerIdExpirationMs: DAY_MS,
});

type Parser = (value: ConfigValue, name: string) => Partial<LogConfig>;

function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: ConfigValue, name: string): number => {
    const n =
      typeof value === 'number'
        ? value
        : typeof value === 'string' && /^-?\d+$/.test(value.trim())
          ? Number(value)
          : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new SluiceError(
        'INVALID_CONFIG',
        `${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`,
        {
          details: { config: name },
        },
      );
    }
    return n;
  };
}

function oneOf<T extends string>(values: readonly T[]) {
  return (value: ConfigValue, name: string): T => {
    const s = String(value).replace(/\s+/g, '');
    const found = values.find((v) => v === s || (s === 'delete,compact' && v === 'compact,delete'));
    if (!found) {
      throw new SluiceError(
        'INVALID_CONFIG',
        `${name} must be one of ${values.join(' | ')}, got ${JSON.stringify(value)}`,
        {
          details: { config: name },
        },
      );
    }
    return found;
  };
}

/** Topic config names (Kafka's) that map to the log, with their parsers. */
export const LOG_CONFIG_NAMES: Record<string, Parser> = {
  'segment.bytes': (v, n) => ({ segmentBytes: integer(1024, 2 ** 31 - 1)(v, n) }),
  'segment.ms': (v, n) => ({ segmentMs: integer(1)(v, n) }),
  'index.interval.bytes': (v, n) => ({ indexIntervalBytes: integer(0, 2 ** 31 - 1)(v, n) }),
  'flush.policy': (v, n) => ({ flushPolicy: oneOf(['sync', 'async'] as const)(v, n) }),
  'flush.ms': (v, n) => ({ flushMs: integer(1)(v, n) }),
  'retention.ms': (v, n) => ({ retentionMs: integer(-1)(v, n) }),
  'retention.bytes': (v, n) => ({ retentionBytes: integer(-1)(v, n) }),
  'cleanup.policy': (v, n) => ({
    cleanupPolicy: oneOf(['delete', 'compact', 'compact,delete'] as const)(v, n),
  }),
  'delete.retention.ms': (v, n) => ({ deleteRetentionMs: integer(0)(v, n) }),
  'max.message.bytes': (v, n) => ({ batchBytesMax: integer(128, LIMITS.requestBodyBytesMax)(v, n) }),
  'producer.id.expiration.ms': (v, n) => ({ producerIdExpirationMs: integer(1, 2 ** 31 - 1)(v, n) }),
};

/**
 * Turns Kafka-named topic configs into a LogConfig on top of `base`. Names that do not concern the
 * log (for example `min.insync.replicas`) are ignored here; the caller validates those.
 */
export function logConfigFromTopicConfigs(
  configs: Record<string, ConfigValue>,
  base: LogConfig = DEFAULT_LOG_CONFIG,
): LogConfig {
  let out: LogConfig = { ...base };
  for (const [name, value] of Object.entries(configs)) {
    const parse = LOG_CONFIG_NAMES[name];
    if (parse) out = { ...out, ...parse(value, name) };
  }
  return out;
}

/**
 * `compression.type`: `producer` keeps every batch in the codec it came in (the default); a codec
 * name (`none` or its Kafka name `uncompressed`, `gzip`, `snappy`, `lz4`, `zstd`) makes the leader
 * recompress batches that arrive in another codec, as Kafka does.
 */
export type CompressionType = 'producer' | CodecName;

export function parseCompressionType(value: ConfigValue, name = 'compression.type'): CompressionType {
  const s = String(value).trim();
  if (s === 'producer') return 'producer';
  if (s === 'uncompressed') return 'none';
  if (isCodecName(s)) return s;
  throw new SluiceError(
    'INVALID_CONFIG',
    `${name} must be one of producer | uncompressed | none | gzip | snappy | lz4 | zstd, got ${JSON.stringify(value)}`,
    { details: { config: name } },
  );
}

function bool(value: ConfigValue, name: string): boolean {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new SluiceError('INVALID_CONFIG', `${name} must be true or false, got ${JSON.stringify(value)}`, {
    details: { config: name },
  });
}

const minInsync = integer(1, 2 ** 31 - 1);

/** Topic configs beyond the log's own, with their parsers. */
const REPLICATION_CONFIG_NAMES: Record<string, (value: ConfigValue, name: string) => unknown> = {
  'min.insync.replicas': minInsync,
  'unclean.leader.election.enable': bool,
};

/**
 * The replication configs the controller decides by, from a topic's raw configs over raw defaults
 * (values that do not parse fall back to the default: they were validated when they were set).
 */
export function replicationConfigOf(
  configs: Readonly<Record<string, ConfigValue>>,
  defaults: Readonly<Record<string, ConfigValue>> = {},
): { minInsyncReplicas: number; uncleanLeaderElection: boolean; flushPolicy: FlushPolicy } {
  const pick = <T>(name: string, parse: (v: ConfigValue, n: string) => T, fallback: T): T => {
    for (const source of [configs, defaults]) {
      const value = source[name];
      if (value === undefined) continue;
      try {
        return parse(value, name);
      } catch {}
    }
    return fallback;
  };
  return {
    minInsyncReplicas: pick('min.insync.replicas', minInsync, 1),
    uncleanLeaderElection: pick('unclean.leader.election.enable', bool, false),
    flushPolicy: pick(
      'flush.policy',
      (v, n) => oneOf(['sync', 'async'] as const)(v, n),
      DEFAULT_LOG_CONFIG.flushPolicy,
    ),
  };
}

/** Broker-level defaults that are not topic configs. */
const BROKER_ONLY_CONFIG_NAMES: Record<string, (value: ConfigValue, name: string) => number> = {
  'num.partitions': integer(1, LIMITS.partitionsMax),
  // How often every partition's retention and compaction run; size retention also runs at every
  // segment roll.
  'log.retention.check.interval.ms': integer(1, 2 ** 31 - 1),
  // Consumer groups (docs/groups.md): the partitions of __consumer_offsets when it is created, and
  // how long an empty group's committed offsets are kept.
  'offsets.topic.num.partitions': integer(1, LIMITS.partitionsMax),
  'offsets.retention.minutes': integer(1, 2 ** 31 - 1),
};

/** `log.retention.check.interval.ms` when not set. */
export const RETENTION_CHECK_MS_DEFAULT = 60_000;

/** A topic's configs as the node uses them, parsed once per change. */
export interface TopicConfig {
  log: LogConfig;
  minInsyncReplicas: number;
  compressionType: CompressionType;
  /** Whether a replica out of the in-sync set may lead when no in-sync one can (losing records). */
  uncleanLeaderElection: boolean;
}

/** The broker's defaults for topics, parsed once at start. */
export interface TopicConfigDefaults {
  /** What a topic config that is not set takes. */
  topic: TopicConfig;
  /** Partitions of a topic created without a count. */
  numPartitions: number;
  /** How often retention and compaction run over every partition. */
  retentionCheckMs: number;
  /** The raw defaults, over which a topic's own configs are laid. */
  raw: Record<string, ConfigValue>;
}

/**
 * Checks that every name is known and every value parses. `brokerLevel` also allows the broker-only
 * names (`num.partitions`).
 */
export function validateTopicConfigs(configs: Record<string, ConfigValue>, brokerLevel: boolean): void {
  for (const [name, value] of Object.entries(configs)) {
    if (LOG_CONFIG_NAMES[name]) continue;
    if (name === 'compression.type') {
      parseCompressionType(value, name);
      continue;
    }
    const parse =
      REPLICATION_CONFIG_NAMES[name] ?? (brokerLevel ? BROKER_ONLY_CONFIG_NAMES[name] : undefined);
    if (!parse)
      throw new SluiceError('INVALID_CONFIG', `unknown config ${name}`, { details: { config: name } });
    parse(value, name);
  }
  logConfigFromTopicConfigs(configs);
}

/** Parses the broker's topic defaults once; throws INVALID_CONFIG on an unknown name or a bad value. */
export function parseTopicConfigDefaults(raw: Record<string, ConfigValue>): TopicConfigDefaults {
  validateTopicConfigs(raw, true);
  const numPartitions = raw['num.partitions'];
  return {
    topic: {
      log: logConfigFromTopicConfigs(raw, DEFAULT_LOG_CONFIG),
      minInsyncReplicas:
        raw['min.insync.replicas'] === undefined
          ? 1
          : minInsync(raw['min.insync.replicas'], 'min.insync.replicas'),
      uncleanLeaderElection:
        raw['unclean.leader.election.enable'] === undefined
          ? false
          : bool(raw['unclean.leader.election.enable'], 'unclean.leader.election.enable'),
      compressionType:
        raw['compression.type'] === undefined ? 'producer' : parseCompressionType(raw['compression.type']),
    },
    numPartitions:
      numPartitions === undefined
        ? 1
        : BROKER_ONLY_CONFIG_NAMES['num.partitions']!(numPartitions, 'num.partitions'),
    retentionCheckMs:
      raw['log.retention.check.interval.ms'] === undefined
        ? RETENTION_CHECK_MS_DEFAULT
        : BROKER_ONLY_CONFIG_NAMES['log.retention.check.interval.ms']!(
            raw['log.retention.check.interval.ms'],
            'log.retention.check.interval.ms',
          ),
    raw: { ...raw },
  };
}

/** Parses a topic's own configs over the broker's defaults; throws INVALID_CONFIG as validation does. */
export function parseTopicConfig(
  configs: Record<string, ConfigValue>,
  defaults: TopicConfigDefaults,
): TopicConfig {
  validateTopicConfigs(configs, false);
  const min = configs['min.insync.replicas'];
  const unclean = configs['unclean.leader.election.enable'];
  return {
    log: logConfigFromTopicConfigs(configs, defaults.topic.log),
    minInsyncReplicas:
      min === undefined ? defaults.topic.minInsyncReplicas : minInsync(min, 'min.insync.replicas'),
    uncleanLeaderElection:
      unclean === undefined
        ? defaults.topic.uncleanLeaderElection
        : bool(unclean, 'unclean.leader.election.enable'),
    compressionType:
      configs['compression.type'] === undefined
        ? defaults.topic.compressionType
        : parseCompressionType(configs['compression.type']),
  };
}
