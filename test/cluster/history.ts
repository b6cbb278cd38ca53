/**
 * The history of a fault test and the checks run over it at the end.
 *
 * Every record value is unique (a writer never sends a value twice, not even on retry), so a value
 * seen at two offsets is a duplicate the cluster made, and an offset seen with two values is a
 * divergence. A send is `ok` (acknowledged with its offset), `failed` (a definite refusal: nothing
 * was appended) or `unknown` (a timeout, a lost connection, an indeterminate error): an unknown
 * send may or may not be in the log, and is never counted as failed.
 */

export type SendOutcome = 'ok' | 'failed' | 'unknown';

export interface Send {
  writer: number;
  partition: number;
  value: string;
  outcome: SendOutcome;
  /** The offset acknowledged (outcome `ok`). */
  offset?: number;
  /** The error code or message, for the report. */
  error?: string;
  /** The node the request went to and when it was sent (ms since the test began), for the report. */
  via?: number;
  sentAtMs?: number;
}

/** One successful poll of a consumer: what it asked for, what it got, and the answer's high watermark. */
export interface Poll {
  consumer: number;
  partition: number;
  /** The offset asked for: the consumer's position. */
  fromOffset: number;
  records: { offset: number; value: string }[];
  nextOffset: number;
  highWatermark: number;
  node: number;
}

/** One replica's log of one partition, read directly at the end, with its high watermark. */
export interface ReplicaLog {
  node: number;
  partition: number;
  records: { offset: number; value: string }[];
  /** The log's raw bytes (its stored batches), compared byte for byte between replicas. */
  bytes?: Buffer;
  /** Its batches' headers, for a failing test's report. */
  batches?: { baseOffset: number; lastOffset: number; leaderEpoch: number; maxTimestamp: number }[];
  highWatermark: number;
  inSync: boolean;
}

export type AnomalyKind =
  | 'lost'
  | 'duplicate'
  | 'two-values'
  | 'failed-present'
  | 'read-above-high-watermark'
  | 'consumer-went-back'
  | 'consumer-skipped'
  | 'out-of-order'
  | 'replicas-differ';

export interface Anomaly {
  kind: AnomalyKind;
  partition: number;
  message: string;
}

export interface History {
  sends: Send[];
  polls: Poll[];
  /** At the end: every replica's log of every partition. */
  replicas: ReplicaLog[];
}

/** Every anomaly in the history; empty when the cluster kept every promise. */
export function checkHistory(history: History): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const add = (kind: AnomalyKind, partition: number, message: string) =>
    anomalies.push({ kind, partition, message });
  const partitions = new Set<number>([
    ...history.sends.map((s) => s.partition),
    ...history.polls.map((p) => p.partition),
    ...history.replicas.map((r) => r.partition),
  ]);
  for (const partition of [...partitions].sort((a, b) => a - b)) {
    const sends = history.sends.filter((s) => s.partition === partition);
    const polls = history.polls.filter((p) => p.partition === partition);
    const replicas = history.replicas.filter((r) => r.partition === partition);
    checkReplicas(replicas, (kind, message) => add(kind, partition, message));
    const committed = committedLog(replicas);
    checkOffsets(sends, polls, replicas, (kind, message) => add(kind, partition, message));
    checkSends(sends, committed, (kind, message) => add(kind, partition, message));
    checkPolls(polls, committed, (kind, message) => add(kind, partition, message));
  }
  return anomalies;
}

type Report = (kind: AnomalyKind, message: string) => void;

/**
 * The committed log: the in-sync replicas' records below the highest high watermark among them.
 * `checkReplicas` reports where they disagree; here the longest one is taken.
 */
function committedLog(replicas: ReplicaLog[]): Map<number, string> {
  const inSync = replicas.filter((r) => r.inSync);
  const highWatermark = Math.max(0, ...inSync.map((r) => r.highWatermark));
  const log = new Map<number, string>();
  for (const replica of inSync)
    for (const r of replica.records)
      if (r.offset < highWatermark && !log.has(r.offset)) log.set(r.offset, r.value);
  return log;
}

/** In-sync replicas are identical below the high watermark, each holds it all, and offsets are gapless. */
function checkReplicas(replicas: ReplicaLog[], report: Report): void {
  const inSync = replicas.filter((r) => r.inSync);
  const highWatermark = Math.max(0, ...inSync.map((r) => r.highWatermark));
  const below = (r: ReplicaLog) => r.records.filter((x) => x.offset < highWatermark);
  const reference = inSync[0];
  for (const replica of inSync) {
    const records = below(replica);
    if (records.length !== highWatermark || records.some((r, i) => r.offset !== i))
      report(
        'replicas-differ',
        `node ${replica.node} holds ${records.length} records below the high watermark ${highWatermark}, not offsets 0-${highWatermark - 1}`,
      );
    if (!reference || replica === reference) continue;
    const ours = new Map(records.map((r) => [r.offset, r.value]));
    for (const r of below(reference)) {
      if (ours.has(r.offset) && ours.get(r.offset) !== r.value) {
        report(
          'replicas-differ',
          `offset ${r.offset}: node ${reference.node} holds ${r.value}, node ${replica.node} holds ${ours.get(r.offset)}`,
        );
        break;
      }
    }
    if (reference.bytes && replica.bytes && !reference.bytes.equals(replica.bytes))
      report(
        'replicas-differ',
        `the logs of nodes ${reference.node} and ${replica.node} are not byte-identical`,
      );
  }
}

/** Every observation of an offset (acks, reads, replicas below their high watermark) names one value; every value has one offset. */
function checkOffsets(sends: Send[], polls: Poll[], replicas: ReplicaLog[], report: Report): void {
  const valuesAt = new Map<number, Set<string>>();
  const offsetsOf = new Map<string, Set<number>>();
  const see = (offset: number, value: string) => {
    valuesAt.set(offset, (valuesAt.get(offset) ?? new Set()).add(value));
    offsetsOf.set(value, (offsetsOf.get(value) ?? new Set()).add(offset));
  };
  for (const s of sends) if (s.outcome === 'ok' && s.offset !== undefined) see(s.offset, s.value);
  for (const p of polls) for (const r of p.records) see(r.offset, r.value);
  for (const replica of replicas)
    for (const r of replica.records) if (r.offset < replica.highWatermark) see(r.offset, r.value);
  for (const [offset, values] of valuesAt)
    if (values.size > 1) report('two-values', `offset ${offset} holds ${[...values].join(', ')}`);
  for (const [value, offsets] of offsetsOf)
    if (offsets.size > 1) report('duplicate', `${value} is at offsets ${[...offsets].join(', ')}`);
  // Within one log a value twice is a duplicate even at offsets no one else saw.
  for (const replica of replicas) {
    const seen = new Map<string, number>();
    for (const r of replica.records) {
      const first = seen.get(r.value);
      if (first !== undefined && first !== r.offset)
        report('duplicate', `node ${replica.node} holds ${r.value} at offsets ${first} and ${r.offset}`);
      seen.set(r.value, r.offset);
    }
  }
}

/** Acknowledged writes are committed at their offsets, in each writer's order; refused ones are absent. */
function checkSends(sends: Send[], committed: Map<number, string>, report: Report): void {
  const committedValues = new Set(committed.values());
  const lastOffset = new Map<number, { offset: number; value: string }>();
  for (const s of sends) {
    if (s.outcome === 'failed' && committedValues.has(s.value))
      report('failed-present', `${s.value} was refused (${s.error ?? 'no code'}) but is in the log`);
    if (s.outcome !== 'ok' || s.offset === undefined) continue;
    if (committed.get(s.offset) !== s.value && !committedValues.has(s.value))
      report('lost', `${s.value}, acknowledged at offset ${s.offset}, is not in the committed log`);
    const before = lastOffset.get(s.writer);
    if (before && before.offset >= s.offset)
      report(
        'out-of-order',
        `writer ${s.writer}: ${s.value} acknowledged at offset ${s.offset}, after ${before.value} at ${before.offset}`,
      );
    lastOffset.set(s.writer, { offset: s.offset, value: s.value });
  }
}

/** Consumers read only committed records, below the high watermark they were told, without going back or skipping. */
function checkPolls(polls: Poll[], committed: Map<number, string>, report: Report): void {
  const position = new Map<number, number>();
  for (const p of polls) {
    for (const r of p.records) {
      if (r.offset >= p.highWatermark)
        report(
          'read-above-high-watermark',
          `consumer ${p.consumer} read offset ${r.offset} from node ${p.node}, whose high watermark was ${p.highWatermark}`,
        );
      else if (committed.get(r.offset) !== r.value)
        report(
          'read-above-high-watermark',
          `consumer ${p.consumer} read ${r.value} at offset ${r.offset} from node ${p.node}, which the committed log does not hold there`,
        );
    }
    const at = position.get(p.consumer);
    if (at !== undefined && p.fromOffset < at)
      report(
        'consumer-went-back',
        `consumer ${p.consumer} asked for offset ${p.fromOffset} after reaching ${at}`,
      );
    if (at !== undefined && p.fromOffset > at)
      report(
        'consumer-skipped',
        `consumer ${p.consumer} asked for offset ${p.fromOffset} after reaching ${at}`,
      );
    let expected = p.fromOffset;
    for (const r of p.records) {
      if (r.offset < expected)
        report('consumer-went-back', `consumer ${p.consumer} got offset ${r.offset} after ${expected - 1}`);
      else if (r.offset > expected)
        report('consumer-skipped', `consumer ${p.consumer} got offset ${r.offset}, expected ${expected}`);
      expected = r.offset + 1;
    }
    if (p.nextOffset < expected)
      report(
        'consumer-went-back',
        `consumer ${p.consumer} was sent back to ${p.nextOffset} after ${expected - 1}`,
      );
    else if (p.nextOffset > expected && p.records.length > 0)
      report('consumer-skipped', `consumer ${p.consumer} was sent on to ${p.nextOffset}, past ${expected}`);
    position.set(p.consumer, Math.max(expected, p.nextOffset));
  }
}

/** The anomalies for a failing test's message, at most `max` of them. */
export function describeAnomalies(anomalies: Anomaly[], max = 30): string {
  const lines = anomalies.slice(0, max).map((a) => `  [${a.kind}] partition ${a.partition}: ${a.message}`);
  if (anomalies.length > max) lines.push(`  ... and ${anomalies.length - max} more`);
  return lines.join('\n');
}
