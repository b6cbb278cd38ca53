/**
 * The readable line format for a terminal: pino writes one JSON object per line, and this turns
 * each into `time LEVEL message key=value ...` with the error's stack below it. A line that is not
 * JSON passes unchanged. Only the form changes; pipes and files get the JSON lines themselves.
 */

const LEVELS: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO ',
  40: 'WARN ',
  50: 'ERROR',
  60: 'FATAL',
};

/** Fields every line has, or that the format shows in its own place. */
const SHOWN_APART = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'err']);
/** A value written bare; anything else is written as JSON (quoted, escaped). */
const BARE = /^[A-Za-z0-9._:/@+-]+$/;

export function formatLogLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  if (typeof entry !== 'object' || entry === null) return `${line.trimEnd()}\n`;
  const time = typeof entry.time === 'number' ? new Date(entry.time).toISOString() : '';
  const level = LEVELS[entry.level as number] ?? String(entry.level);
  const parts = [time, level, String(entry.msg ?? '')];
  for (const [key, value] of Object.entries(entry)) {
    if (SHOWN_APART.has(key) || value === undefined) continue;
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    parts.push(`${key}=${typeof value === 'string' && BARE.test(text) ? text : JSON.stringify(value)}`);
  }
  let out = parts.join(' ');
  const err = entry.err as { message?: unknown; stack?: unknown } | undefined;
  if (err && typeof err === 'object') {
    out += ` err=${JSON.stringify(String(err.message ?? ''))}`;
    if (typeof err.stack === 'string') out += `\n    ${err.stack.split('\n').join('\n    ')}`;
  }
  return `${out}\n`;
}

/** A stream for pino that writes each JSON line to `out` in the readable format. */
export function textLogStream(out: { write(text: string): unknown }): { write(line: string): void } {
  return {
    write(chunk: string) {
      // pino writes whole lines; a chunk with several is split so each is formatted.
      for (const line of chunk.split('\n')) if (line !== '') out.write(formatLogLine(line));
    },
  };
}
