import { Packr, Unpackr } from 'msgpackr';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import type { FetchedRecord } from '../protocol/api.js';
import { MEDIA } from '../protocol/api.js';
import type { BatchRecord, Header, RecordInput } from '../protocol/batch.js';

/** msgpack as every other language reads it: plain maps and arrays, no msgpackr extensions. */
export const packr = new Packr({ useRecords: false, variableMapSize: true });
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export type Format = 'json' | 'msgpack';

/** The response format `Accept` asks for; undefined when nothing acceptable is listed. */
export function negotiate(
  accept: string | undefined,
  extra: readonly string[] = [],
): Format | string | undefined {
  if (!accept) return 'json';
  const types = accept
    .split(',')
    .map((part) => {
      const [type, ...params] = part.trim().toLowerCase().split(';');
      const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      return { type: type!.trim(), q: q ? Number(q.slice(2)) : 1 };
    })
    .filter((t) => t.q > 0)
    .sort((a, b) => b.q - a.q);
  for (const { type } of types) {
    if (type === MEDIA.msgpack || type === MEDIA.msgpackAlt) return 'msgpack';
    if (type === MEDIA.json || type === 'application/*' || type === '*/*' || type === MEDIA.problem)
      return 'json';
    if (extra.includes(type)) return type;
  }
  return undefined;
}

export function mediaTypeOf(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A value as JSON shows it: a UTF-8 string, or base64 when asked. Bytes that are not valid UTF-8
 * are never turned into base64 silently: the record then says `valueEncoding: "base64"`.
 */
function bytesForJson(bytes: Uint8Array | null, base64: boolean): { text: string | null; base64: boolean } {
  if (bytes === null) return { text: null, base64 };
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (base64) return { text: buf.toString('base64'), base64: true };
  try {
    return { text: utf8.decode(buf), base64: false };
  } catch {
    return { text: buf.toString('base64'), base64: true };
  }
}

export type JsonRecord = FetchedRecord<string> & { keyEncoding?: 'base64'; valueEncoding?: 'base64' };

export function recordToJson(record: BatchRecord, base64: boolean): JsonRecord {
  const key = bytesForJson(record.key, base64);
  const value = bytesForJson(record.value, base64);
  const headers: Record<string, string | null> = {};
  for (const [name, headerValue] of record.headers) headers[name] = bytesForJson(headerValue, base64).text;
  const out: JsonRecord = {
    offset: record.offset,
    timestamp: record.timestamp,
    key: key.text,
    value: value.text,
    headers,
  };
  if (!base64 && key.base64) out.keyEncoding = 'base64';
  if (!base64 && value.base64) out.valueEncoding = 'base64';
  return out;
}

const RECORD_FIELDS = new Set(['key', 'value', 'headers', 'partition', 'timestamp']);

export interface ParsedRecord extends RecordInput {
  partition?: number;
}

function toBytes(value: unknown, field: string, encoding: 'utf8' | 'base64'): Uint8Array | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return Buffer.from(value, encoding);
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'object') {
    // JSON values other than strings are kept as their JSON text, so `{"value": {"a": 1}}` works.
    return Buffer.from(JSON.stringify(value));
  }
  throw new SluiceError('INVALID_RECORD', `${field} must be a string, bytes or null`);
}

/**
 * Validates and converts one produce record from JSON or msgpack. Bytes fields take strings
 * (UTF-8, or base64 with `encoding`), msgpack bin, or any JSON value (kept as its JSON text).
 */
export function parseRecord(
  raw: unknown,
  index: number,
  nowMs: number,
  encoding: 'utf8' | 'base64' = 'utf8',
): ParsedRecord {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new SluiceError('INVALID_RECORD', `records[${index}] must be an object`, { details: { index } });
  }
  const r = raw as Record<string, unknown>;
  for (const name of Object.keys(r)) {
    if (!RECORD_FIELDS.has(name)) {
      throw new SluiceError('INVALID_RECORD', `records[${index}] has an unknown field ${name}`, {
        details: { index, field: name },
      });
    }
  }
  let timestamp = nowMs;
  if (r.timestamp !== undefined && r.timestamp !== null) {
    if (typeof r.timestamp !== 'number' || !Number.isSafeInteger(r.timestamp) || r.timestamp < 0) {
      throw new SluiceError(
        'INVALID_TIMESTAMP',
        `records[${index}].timestamp must be a non-negative integer of milliseconds`,
        { details: { index } },
      );
    }
    timestamp = r.timestamp;
  }
  let partition: number | undefined;
  if (r.partition !== undefined && r.partition !== null) {
    if (typeof r.partition !== 'number' || !Number.isInteger(r.partition) || r.partition < 0) {
      throw new SluiceError('INVALID_RECORD', `records[${index}].partition must be a non-negative integer`, {
        details: { index },
      });
    }
    partition = r.partition;
  }
  const headers: Header[] = [];
  if (r.headers !== undefined && r.headers !== null) {
    const entries = Array.isArray(r.headers)
      ? r.headers
      : typeof r.headers === 'object'
        ? Object.entries(r.headers as object)
        : undefined;
    if (!entries)
      throw new SluiceError(
        'INVALID_RECORD',
        `records[${index}].headers must be an object or a list of [name, value]`,
      );
    if (entries.length > LIMITS.headersPerRecordMax) {
      throw new SluiceError(
        'INVALID_RECORD',
        `records[${index}] has more than ${LIMITS.headersPerRecordMax} headers`,
      );
    }
    for (const entry of entries) {
      if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== 'string') {
        throw new SluiceError(
          'INVALID_RECORD',
          `records[${index}].headers entries must be [name, value] with a string name`,
        );
      }
      headers.push([entry[0], toBytes(entry[1], `records[${index}].headers.${entry[0]}`, encoding)]);
    }
  }
  return {
    key: toBytes(r.key, `records[${index}].key`, encoding),
    value: toBytes(r.value, `records[${index}].value`, encoding),
    headers,
    timestamp,
    ...(partition === undefined ? {} : { partition }),
  };
}

/** Room a fetch leaves around its batches for `msgpackFetchResponse` to frame them in place. */
export const FETCH_FRAME_RESERVE = { before: 16, after: 64 };

/**
 * A msgpack fetch response built around the stored batches without decoding or re-encoding them:
 *   {"batches": [<batch>, ...], "nextOffset": n, "highWatermark": n, "logStartOffset": n}
 * When the read left room around the batches (`reserved`, asked for with `FETCH_FRAME_RESERVE`),
 * the header and trailer are written there and the response is a view of that one buffer;
 * otherwise the three parts are copied into a new one.
 */
export function msgpackFetchResponse(
  data: Buffer,
  batchCount: number,
  fields: { nextOffset: number; highWatermark: number; logStartOffset: number },
  reserved?: { before: number; after: number },
): Buffer {
  const head = Buffer.allocUnsafe(1 + 8 + 5);
  let pos = 0;
  head[pos++] = 0x84;
  head[pos++] = 0xa7;
  pos += head.write('batches', pos, 'latin1');
  head[pos++] = 0xdd;
  head.writeUInt32BE(batchCount, pos);
  pos += 4;
  // The tail is a 3-entry map; its entries follow the head's map header directly.
  const tail = packr
    .pack({
      nextOffset: fields.nextOffset,
      highWatermark: fields.highWatermark,
      logStartOffset: fields.logStartOffset,
    })
    .subarray(1);
  if (reserved && reserved.before >= pos && reserved.after >= tail.length) {
    const framed = Buffer.from(data.buffer, data.byteOffset - pos, pos + data.length + tail.length);
    head.copy(framed, 0, 0, pos);
    tail.copy(framed, pos + data.length);
    return framed;
  }
  return Buffer.concat([head.subarray(0, pos), data, tail]);
}

/** The msgpack str keys of every offset entry, encoded once. */
const PARTITION_KEY = Buffer.from([0xa9, ...Buffer.from('partition')]);
const OFFSET_KEY = Buffer.from([0xa6, ...Buffer.from('offset')]);

/**
 * `{"offsets": [{"partition": p, "offset": o}, ...]}` in msgpack, written by hand: a produce of
 * 1,000 records answers with 1,000 offsets, and the generic encoder spent more time on them than
 * the append itself.
 */
export function msgpackOffsetsResponse(produced: {
  count: number;
  partitions: Int32Array;
  offsets: Float64Array;
}): Buffer {
  const buf = Buffer.allocUnsafe(
    14 + produced.count * (1 + PARTITION_KEY.length + 5 + OFFSET_KEY.length + 9),
  );
  let pos = 0;
  buf[pos++] = 0x81;
  buf[pos++] = 0xa7;
  pos += buf.write('offsets', pos, 'latin1');
  buf[pos++] = 0xdd;
  buf.writeUInt32BE(produced.count, pos);
  pos += 4;
  for (let i = 0; i < produced.count; i++) {
    buf[pos++] = 0x82;
    pos += PARTITION_KEY.copy(buf, pos);
    pos = writeUint(buf, pos, produced.partitions[i]!);
    pos += OFFSET_KEY.copy(buf, pos);
    pos = writeUint(buf, pos, produced.offsets[i]!);
  }
  return buf.subarray(0, pos);
}

function writeUint(buf: Buffer, pos: number, n: number): number {
  if (n < 0x80) {
    buf[pos] = n;
    return pos + 1;
  }
  if (n < 0x100000000) {
    buf[pos] = 0xce;
    buf.writeUInt32BE(n, pos + 1);
    return pos + 5;
  }
  buf[pos] = 0xcf;
  buf.writeBigUInt64BE(BigInt(n), pos + 1);
  return pos + 9;
}
