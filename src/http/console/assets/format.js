/**
 * Pure helpers of the console (no DOM): numbers and sizes, record bytes shown as text, JSON or hex,
 * throughput from two samples of the leaders' counters, and the cluster's partition health.
 */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '—';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

export function formatCount(n) {
  return Number.isFinite(n) && n >= 0 ? n.toLocaleString('en-US') : '—';
}

/** A rate per second; `undefined` (not measured yet) shows as a dash. */
export function formatRate(perSecond, bytes) {
  if (perSecond === undefined || !Number.isFinite(perSecond)) return '—';
  if (bytes) return `${formatBytes(Math.round(perSecond))}/s`;
  return `${perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond).toLocaleString('en-US')}/s`;
}

export function formatTime(ms) {
  if (!Number.isFinite(ms)) return '—';
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}

export function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The bytes as UTF-8 text, or null when they are not valid UTF-8. */
export function bytesToText(bytes) {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/** Hex, 16 bytes a line with an offset column; at most `limit` bytes (the rest counted). */
export function bytesToHex(bytes, limit = 4096) {
  const shown = Math.min(bytes.length, limit);
  const lines = [];
  for (let line = 0; line < shown; line += 16) {
    const cells = [];
    for (let i = line; i < Math.min(line + 16, shown); i++)
      cells.push(bytes[i].toString(16).padStart(2, '0'));
    lines.push(`${line.toString(16).padStart(6, '0')}  ${cells.join(' ')}`);
  }
  if (shown < bytes.length) lines.push(`… ${bytes.length - shown} more bytes`);
  return lines.join('\n');
}

/**
 * How a key, value or header value is shown: `text` (UTF-8; hex when it is not UTF-8), `json`
 * (indented when it parses; else as text), `hex`, or `auto` (JSON when it parses as an object or
 * array, else text, else hex). Returns the text and the form used; null stays null.
 */
export function showBytes(bytes, mode = 'auto') {
  if (bytes === null || bytes === undefined) return { text: null, as: 'null' };
  if (mode === 'hex') return { text: bytesToHex(bytes), as: 'hex' };
  const text = bytesToText(bytes);
  if (text === null) return { text: bytesToHex(bytes), as: 'hex' };
  if (mode === 'text') return { text, as: 'text' };
  const trimmed = text.trimStart();
  if (mode === 'json' || trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return { text: JSON.stringify(JSON.parse(text), null, 2), as: 'json' };
    } catch {
      return { text, as: 'text' };
    }
  }
  return { text, as: 'text' };
}

/** A fetched record (as fetched with `valueEncoding=base64`) with its key, value and headers as bytes. */
export function decodeRecord(record) {
  const bytes = (value) => (value === null || value === undefined ? null : base64ToBytes(value));
  return {
    offset: record.offset,
    timestamp: record.timestamp,
    key: bytes(record.key),
    value: bytes(record.value),
    headers: Object.entries(record.headers ?? {}).map(([name, value]) => [name, bytes(value)]),
  };
}

const COUNTERS = ['recordsIn', 'bytesIn', 'recordsOut', 'bytesOut'];

/**
 * A topic's figures summed over its partitions, from `GET /v1/topics/{topic}`: records held (high
 * watermark less log start), bytes on the leaders' disks, the leaders' counters, the followers'
 * lag in records, and how many partitions have no leader, are under-replicated, or did not say
 * (no `stats`).
 */
export function topicTotals(description) {
  const totals = {
    partitions: description.partitions.length,
    records: 0,
    sizeBytes: 0,
    segments: 0,
    recordsIn: 0,
    bytesIn: 0,
    recordsOut: 0,
    bytesOut: 0,
    leaderless: 0,
    underReplicated: 0,
    unknown: 0,
    followerLag: 0,
  };
  for (const p of description.partitions) {
    if (p.leader < 0) totals.leaderless++;
    for (const f of p.replicaStates ?? []) totals.followerLag += f.lag;
    if (p.isr.length < p.replicas.length) totals.underReplicated++;
    if (p.highWatermark >= 0 && p.logStartOffset >= 0)
      totals.records += Math.max(0, p.highWatermark - p.logStartOffset);
    if (!p.stats) {
      totals.unknown++;
      continue;
    }
    totals.sizeBytes += p.stats.sizeBytes;
    totals.segments += p.stats.segments;
    for (const name of COUNTERS) totals[name] += p.stats[name];
  }
  return totals;
}

/**
 * Rates per second between two samples `{timeMs, recordsIn, bytesIn, recordsOut, bytesOut}`.
 * A counter that went down (a new leader, a restart) gives no rate rather than a negative one.
 */
export function ratesBetween(before, after) {
  const seconds = (after.timeMs - before.timeMs) / 1000;
  const rates = {};
  for (const name of COUNTERS) {
    const delta = after[name] - before[name];
    rates[name] = seconds > 0 && delta >= 0 ? delta / seconds : undefined;
  }
  return rates;
}

/** Samples kept per topic for the charts: five minutes at one refresh every 5 s. */
export const HISTORY_SAMPLES_MAX = 60;
/** Samples closer than this to the last one are not kept (two views sampling at once; a rate over a moment is noise). */
const SAMPLE_SPACING_MS_MIN = 400;

/**
 * Adds a sample `{timeMs, ...topicTotals}` to a topic's history (the oldest leave past `max`) and
 * returns the rates between consecutive samples, oldest first, each with the follower lag at its
 * end. A sample too close to the last one is not added.
 */
export function addSample(history, sample, max = HISTORY_SAMPLES_MAX) {
  const last = history[history.length - 1];
  if (!last || sample.timeMs - last.timeMs >= SAMPLE_SPACING_MS_MIN) history.push(sample);
  if (history.length > max) history.splice(0, history.length - max);
  const series = [];
  for (let i = 1; i < history.length; i++)
    series.push({ ...ratesBetween(history[i - 1], history[i]), followerLag: history[i].followerLag });
  return series;
}

/** Partition health of the whole cluster from `GET /v1/metadata`. */
export function partitionHealth(metadata) {
  let partitions = 0;
  let leaderless = 0;
  let underReplicated = 0;
  for (const topic of metadata.topics) {
    for (const p of topic.partitions) {
      partitions++;
      if (p.leader < 0) leaderless++;
      if (p.isr.length < p.replicas.length) underReplicated++;
    }
  }
  return { topics: metadata.topics.length, partitions, leaderless, underReplicated };
}

/**
 * The reassignments in progress (`GET /v1/reassignments`) as table rows: the partition, its
 * replicas and target, its leader and in-sync set, how far each replica it adds has come, and
 * the replicas it removes once they have.
 */
export function reassignmentRows(response) {
  return response.reassignments.map((r) => ({
    partition: `${r.topic}/${r.partition}`,
    move: `${r.replicas.join(', ')} → ${r.targetReplicas.join(', ')}`,
    leader: r.leader < 0 ? 'none' : String(r.leader),
    isr: r.isr.join(', '),
    adding:
      r.progress
        .map(
          (p) =>
            `${p.id}: ${p.inSync ? 'in sync' : p.logEndOffset < 0 ? 'not started' : `${formatCount(p.lag)} behind`}`,
        )
        .join('; ') || '—',
    removing: r.removingReplicas.join(', ') || '—',
  }));
}

/** A node's role words: controller, voter of the metadata quorum, broker; fenced. */
export function nodeRoles(node, cluster) {
  const roles = [];
  if (node.id === cluster.controllerId) roles.push('controller');
  else if (cluster.metadata?.voters?.includes(node.id)) roles.push('voter');
  roles.push('broker');
  if (node.fenced) roles.push('fenced');
  return roles;
}

/** `http://host:port/console` of another node, or undefined when its address is not a plain host and port. */
export function nodeConsoleUrl(node) {
  const plainHost = /^([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])$/.test(node.host);
  const port = Number.isInteger(node.port) && node.port > 0 && node.port < 65536;
  return plainHost && port ? `http://${node.host}:${node.port}/console` : undefined;
}
