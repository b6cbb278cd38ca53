import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';

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
});

type Parser = (value: string | number | boolean, name: string) => Partial<LogConfig>;

function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string | number | boolean, name: string): number => {
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
  return (value: string | number | boolean, name: string): T => {
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
};

/**
 * Turns Kafka-named topic configs into a LogConfig on top of `base`. Names that do not concern the
 * log (for example `min.insync.replicas`) are ignored here; the caller validates those.
 */
export function logConfigFromTopicConfigs(
  configs: Record<string, string | number | boolean>,
  base: LogConfig = DEFAULT_LOG_CONFIG,
): LogConfig {
  let out: LogConfig = { ...base };
  for (const [name, value] of Object.entries(configs)) {
    const parse = LOG_CONFIG_NAMES[name];
    if (parse) out = { ...out, ...parse(value, name) };
  }
  return out;
}
