import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import type { FetchedRecord } from './api.js';
import type { BatchRecord, Header, RecordInput } from './batch.js';

/**
 * Records as JSON shows them, both ways: a produce record from a JSON or msgpack body into the
 * fields of a batch, and a stored record into the JSON a fetch answers with.
 */

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

/**
 * A key or header value: a string (UTF-8, or base64 under `valueEncoding: "base64"`), bytes
 * (msgpack bin) or null. Anything else would have to be turned into text, which is a guess.
 */
function bytesOf(
  value: unknown,
  field: string,
  index: number,
  encoding: 'utf8' | 'base64',
): Uint8Array | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') {
    if (!isWellFormed(value)) throw loneSurrogate(field, index);
    return encoding === 'base64' ? base64Bytes(value, field, index) : Buffer.from(value, 'utf8');
  }
  if (value instanceof Uint8Array) return value;
  const what = encoding === 'base64' ? 'a base64 string' : 'a string';
  throw invalidField(field, index, `must be ${what}, bytes or null`);
}

/**
 * A value: as a key is, or (the documented convenience, not under base64) an object, array,
 * number or boolean, kept as its JSON text so that `{"value": {"a": 1}}` works.
 */
function valueBytes(
  value: unknown,
  field: string,
  index: number,
  encoding: 'utf8' | 'base64',
): Uint8Array | null {
  if (
    encoding === 'utf8' &&
    (typeof value === 'number' ||
      typeof value === 'boolean' ||
      (typeof value === 'object' && value !== null && !(value instanceof Uint8Array)))
  )
    return jsonText(value, field, index);
  return bytesOf(value, field, index, encoding);
}

/**
 * Strict base64 (RFC 4648 §4): the standard alphabet, no whitespace, the length a multiple of 4,
 * padding only at the end and only as needed, and zero bits past the last byte. Node's decoder
 * skips what it does not know, so `"!!!*"` would be stored as an empty value; a text is taken only
 * when it is exactly the encoding of the bytes it decodes to.
 */
function base64Bytes(text: string, field: string, index: number): Buffer {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.toString('base64') !== text) throw invalidField(field, index, 'is not strict base64');
  return bytes;
}

/**
 * Whether a string has no lone surrogate (as JSON's `\ud800` escape can write). UTF-8 cannot hold
 * one, so encoding it would store U+FFFD in its place: such a string is refused instead.
 */
function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

function loneSurrogate(field: string, index: number): SluiceError {
  return invalidField(field, index, 'holds a lone surrogate, which UTF-8 cannot encode');
}

function invalidField(field: string, index: number, what: string): SluiceError {
  return new SluiceError('INVALID_RECORD', `${field} ${what}`, { details: { index, field } });
}

/**
 * The JSON text of a value that is not a string. The value is walked first, by a loop rather than
 * by recursion, so that a value nested thousands of levels deep is refused with its field's name
 * instead of overflowing the stack in JSON.stringify; the walk also refuses what JSON cannot hold
 * as it is (bytes, a number that is not finite, a msgpack extension such as a timestamp), which
 * JSON.stringify would change without a word.
 */
function jsonText(value: unknown, field: string, index: number): Buffer {
  const pending: unknown[] = [value];
  const depths: number[] = [0];
  while (pending.length > 0) {
    const node = pending.pop();
    const enclosing = depths.pop()!;
    if (node === null || typeof node === 'string' || typeof node === 'boolean') continue;
    if (typeof node === 'number') {
      if (!Number.isFinite(node)) throw invalidField(field, index, 'holds a number JSON cannot write');
      continue;
    }
    const isArray = Array.isArray(node);
    if (typeof node !== 'object' || (!isArray && Object.getPrototypeOf(node) !== Object.prototype))
      throw invalidField(field, index, 'holds something JSON cannot write (bytes, an extension)');
    if (enclosing >= LIMITS.jsonDepthMax)
      throw invalidField(field, index, `nests arrays and objects deeper than ${LIMITS.jsonDepthMax} levels`);
    for (const child of isArray ? node : Object.values(node)) {
      pending.push(child);
      depths.push(enclosing + 1);
    }
  }
  return Buffer.from(JSON.stringify(value));
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
        details: { index, field: `records[${index}].${name}` },
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
    const field = `records[${index}].headers`;
    for (const entry of entries) {
      if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== 'string')
        throw invalidField(field, index, 'entries must be [name, value] with a string name');
      const name = entry[0];
      if (!isWellFormed(name)) throw loneSurrogate(field, index);
      if (name.length === 0 || Buffer.byteLength(name) > LIMITS.headerNameBytesMax)
        throw invalidField(field, index, `names must be 1 to ${LIMITS.headerNameBytesMax} bytes of UTF-8`);
      headers.push([name, bytesOf(entry[1], `${field}.${name}`, index, encoding)]);
    }
  }
  return {
    key: bytesOf(r.key, `records[${index}].key`, index, encoding),
    value: valueBytes(r.value, `records[${index}].value`, index, encoding),
    headers,
    timestamp,
    ...(partition === undefined ? {} : { partition }),
  };
}

/**
 * The records of a decoded produce body (JSON, NDJSON as `{records}`, or msgpack decoded the
 * general way): `{records: [...], valueEncoding?}`, each record checked by `parseRecord`.
 */
export function parseProduceRecords(decoded: unknown, nowMs: number): ParsedRecord[] {
  const body = decoded as { records?: unknown; valueEncoding?: unknown } | undefined;
  if (!body || typeof body !== 'object' || !Array.isArray(body.records)) {
    throw new SluiceError('INVALID_REQUEST', 'the body must be an object with a "records" list');
  }
  if (body.records.length > LIMITS.requestRecordsMax) {
    throw new SluiceError('TOO_MANY_RECORDS', `a request holds at most ${LIMITS.requestRecordsMax} records`);
  }
  for (const name of Object.keys(body)) {
    if (name !== 'records' && name !== 'valueEncoding') {
      throw new SluiceError('INVALID_REQUEST', `the body has an unknown field ${name}`, {
        details: { field: name },
      });
    }
  }
  const encoding = body.valueEncoding ?? 'utf8';
  if (encoding !== 'utf8' && encoding !== 'base64') {
    throw new SluiceError('INVALID_REQUEST', 'valueEncoding must be "utf8" or "base64"', {
      details: { field: 'valueEncoding' },
    });
  }
  return body.records.map((raw, i) => parseRecord(raw, i, nowMs, encoding));
}
