import { isUtf8 } from 'node:buffer';
import { SluiceError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import {
  encodeBatch,
  encodeBatchWith,
  type ProducerFields,
  type RecordInput,
  writeArrayHeader,
  writeBinHeader,
  writeInt,
  writeStrHeader,
} from './batch.js';
import { parseProduceRecords } from './json-record.js';
import { unpackr } from './msgpack.js';

/**
 * The records of a produce request, whatever body they came in: the broker partitions them, checks
 * their sizes and turns each partition's share into one stored batch.
 */
export interface ProduceRecordSource {
  readonly count: number;
  /** The partition the record names, or -1 when it names none. */
  partitionAt(i: number): number;
  /** The key bytes, or null. */
  keyAt(i: number): Uint8Array | null;
  /** Key plus value bytes, the figure `RECORD_TOO_LARGE` is about. */
  payloadBytesAt(i: number): number;
  /**
   * One batch of the records at `indexes`, in that order, offsets 0.. relative; `nowMs` for absent
   * timestamps; `producer` for an idempotent producer's batch.
   */
  encodeBatch(indexes: readonly number[], nowMs: number, producer?: ProducerFields): Buffer;
}

/** Records already decoded into objects (JSON, NDJSON, raw bodies, the unusual msgpack body). */
export function recordArraySource(
  records: readonly (Omit<RecordInput, 'timestamp'> & { timestamp?: number; partition?: number })[],
): ProduceRecordSource {
  return {
    count: records.length,
    partitionAt: (i) => records[i]!.partition ?? -1,
    keyAt: (i) => records[i]!.key ?? null,
    payloadBytesAt: (i) => (records[i]!.key?.length ?? 0) + (records[i]!.value?.length ?? 0),
    encodeBatch(indexes, nowMs, producer) {
      const out: RecordInput[] = new Array(indexes.length);
      for (let n = 0; n < indexes.length; n++) {
        const r = records[indexes[n]!]!;
        out[n] = {
          key: r.key ?? null,
          value: r.value ?? null,
          headers: r.headers ?? [],
          timestamp: r.timestamp ?? nowMs,
        };
      }
      return encodeBatch(out, producer);
    },
  };
}

/** The start position of a field that is nil or absent. */
const NIL = -1;

/**
 * A msgpack produce body read in place: `{"records": [{"key", "value", "headers", "partition",
 * "timestamp"}, ...]}` with keys and values as bin or UTF-8 str, headers as a map of names to
 * bin/str/nil or a list of [name, value] pairs, and integer partitions and timestamps. The batch
 * is written by copying each field's bytes from the body: no record becomes an object, which is
 * most of what a produce of small records cost.
 *
 * Anything else a produce body may hold (other JSON types as values, `valueEncoding`, unknown
 * fields, mistakes) gives undefined; the caller then decodes the body the general way, which
 * accepts the same bodies and gives the same batches, and words every error.
 */
export function scanMsgpackProduceBody(body: Buffer): ProduceRecordSource | undefined {
  const r = new Scanner(body);
  const topEntries = r.mapHeader();
  if (topEntries !== 1) return undefined;
  if (!r.keyIs(RECORDS)) return undefined;
  const count = r.arrayHeader();
  if (count < 1 || count > LIMITS.requestRecordsMax) return undefined;
  // Per record: its partition and timestamp, where its key, value and headers lie, a size bound.
  const partitions = new Int32Array(count).fill(-1);
  const timestamps = new Float64Array(count).fill(Number.NaN);
  const keyStarts = new Int32Array(count).fill(NIL);
  const keyLengths = new Int32Array(count);
  const valueStarts = new Int32Array(count).fill(NIL);
  const valueLengths = new Int32Array(count);
  const headerStarts = new Int32Array(count).fill(NIL);
  const bounds = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const fields = r.mapHeader();
    if (fields < 0 || fields > 5) return undefined;
    let seen = 0;
    let bound = RECORD_FIXED_BOUND;
    for (let f = 0; f < fields; f++) {
      const field = r.fieldName();
      if (field < 0 || seen & (1 << field)) return undefined;
      seen |= 1 << field;
      switch (field) {
        case KEY:
        case VALUE: {
          if (!r.bytes()) return undefined;
          if (r.bytesStart !== NIL) {
            (field === KEY ? keyStarts : valueStarts)[i] = r.bytesStart;
            (field === KEY ? keyLengths : valueLengths)[i] = r.bytesLength;
            bound += r.bytesLength;
          }
          break;
        }
        case HEADERS: {
          headerStarts[i] = r.pos;
          const headerBound = r.headers();
          if (headerBound < 0) return undefined;
          bound += headerBound;
          break;
        }
        case PARTITION: {
          const n = r.optionalUint();
          if (Number.isNaN(n)) return undefined;
          if (n >= 0) {
            if (n > 0x7fffffff) return undefined;
            partitions[i] = n;
          }
          break;
        }
        case TIMESTAMP: {
          const n = r.optionalUint();
          if (Number.isNaN(n)) return undefined;
          if (n >= 0) timestamps[i] = n;
          break;
        }
      }
    }
    bounds[i] = bound;
  }
  if (r.pos !== body.length) return undefined;

  return {
    count,
    partitionAt: (i) => partitions[i]!,
    keyAt: (i) =>
      keyStarts[i] === NIL ? null : body.subarray(keyStarts[i]!, keyStarts[i]! + keyLengths[i]!),
    payloadBytesAt: (i) => keyLengths[i]! + valueLengths[i]!,
    encodeBatch(indexes, nowMs, producer) {
      let baseTimestamp = Number.POSITIVE_INFINITY;
      let maxTimestamp = Number.NEGATIVE_INFINITY;
      let size = 0;
      for (const i of indexes) {
        const t = Number.isNaN(timestamps[i]!) ? nowMs : timestamps[i]!;
        if (t < baseTimestamp) baseTimestamp = t;
        if (t > maxTimestamp) maxTimestamp = t;
        size += bounds[i]!;
      }
      let copier: Copier | undefined;
      return encodeBatchWith(
        indexes.length,
        size,
        (buf, pos, n) => {
          if (copier?.out !== buf) copier = new Copier(body, buf);
          const i = indexes[n]!;
          const t = Number.isNaN(timestamps[i]!) ? nowMs : timestamps[i]!;
          buf[pos++] = 0x95;
          pos = writeInt(buf, pos, n);
          pos = writeInt(buf, pos, t - baseTimestamp);
          pos = copier.bin(keyStarts[i]!, keyLengths[i]!, pos);
          pos = copier.bin(valueStarts[i]!, valueLengths[i]!, pos);
          return copier.headers(headerStarts[i]!, pos);
        },
        { ...producer, baseTimestamp, maxTimestamp },
      );
    },
  };
}

/**
 * A msgpack produce body the in-place reader does not cover, decoded the general way: checked by
 * `checkMsgpackBody` first (so that the decoder, which recurses, never meets a body nested deeper
 * than a valid one can be), then decoded and every record checked by `parseProduceRecords`.
 */
export function decodeMsgpackProduceBody(body: Buffer, nowMs: number): ProduceRecordSource {
  checkMsgpackBody(body);
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(body);
  } catch (error) {
    throw invalidMsgpack(error);
  }
  return recordArraySource(parseProduceRecords(decoded, nowMs));
}

export function invalidMsgpack(error: unknown): SluiceError {
  return new SluiceError('INVALID_REQUEST', `the body is not valid msgpack: ${(error as Error).message}`);
}

/**
 * Where the first byte sequence that is not well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF, nothing cut short) starts in `bytes[start, end)`, or -1.
 * Only error paths call it: `isUtf8` answers the question, this says where.
 */
export function invalidUtf8Offset(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let i = start;
  while (i < end) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    // The sequence length, and the range of its second byte (the others are 0x80-0xbf).
    let length: number;
    let low = 0x80;
    let high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) length = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      length = 3;
      if (b === 0xe0) low = 0xa0;
      if (b === 0xed) high = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      length = 4;
      if (b === 0xf0) low = 0x90;
      if (b === 0xf4) high = 0x8f;
    } else return i;
    if (i + length > end) return i;
    const second = bytes[i + 1]!;
    if (second < low || second > high) return i;
    for (let k = 2; k < length; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i;
    i += length;
  }
  return -1;
}

/**
 * The deepest a valid produce body nests: the body map, the records list and a record map around
 * a value of `LIMITS.jsonDepthMax` levels.
 */
const BODY_DEPTH_MAX = LIMITS.jsonDepthMax + 3;

/**
 * Walks a msgpack body, with a loop and no decoding, and refuses what the decoder would hide or
 * could not survive: a str that is not valid UTF-8 (INVALID_REQUEST naming its byte offset; the
 * decoder would turn it into U+FFFD), and nesting deeper than a valid produce body can hold (a
 * value too deep is INVALID_RECORD naming its field, as `parseRecord` words it for a shallower
 * one; anything else is INVALID_REQUEST). Bytes it cannot read (truncated, reserved types) end
 * the walk: the decoder that runs next words those errors.
 */
export function checkMsgpackBody(body: Buffer): void {
  // One entry per open container: values still to read (a map entry counts two), values read,
  // whether it is a map, and where the str key of the current entry lies.
  const left: number[] = [];
  const read: number[] = [];
  const isMap: boolean[] = [];
  const keyStart: number[] = [];
  const keyLength: number[] = [];
  let pos = 0;
  while (pos < body.length) {
    const top = left.length - 1;
    if (top >= 0) {
      left[top]!--;
      read[top]!++;
    }
    const b = body[pos]!;
    const head = msgpackHead(body, pos, b);
    if (head === undefined) return;
    if (head.length < 0) {
      const depth = left.length + 1;
      // A container as a map key (which no valid body has) leaves the entry without a name.
      if (top >= 0 && isMap[top] && read[top]! % 2 === 1) keyStart[top] = -1;
      if (depth > BODY_DEPTH_MAX) throw tooDeep(body, left, read, isMap, keyStart, keyLength, pos);
      left.push(head.count);
      read.push(0);
      isMap.push(head.map);
      keyStart.push(-1);
      keyLength.push(0);
    } else if (head.str) {
      const from = pos + head.header;
      const to = from + head.length;
      // A str cut short by the end of the body is the decoder's error to word.
      if (to > body.length) return;
      if (!isUtf8(body.subarray(from, to))) {
        const at = invalidUtf8Offset(body, from, to);
        throw new SluiceError('INVALID_REQUEST', `the msgpack str at byte ${at} is not valid UTF-8`, {
          details: { offset: at },
        });
      }
    }
    if (head.length >= 0 && top >= 0 && isMap[top] && read[top]! % 2 === 1) {
      // A map key: kept so that an error below it can name the field.
      keyStart[top] = head.str ? pos + head.header : -1;
      keyLength[top] = head.length;
    }
    pos += head.header + Math.max(head.length, 0);
    while (left.length > 0 && left[left.length - 1] === 0) {
      left.pop();
      read.pop();
      isMap.pop();
      keyStart.pop();
      keyLength.pop();
    }
    if (left.length === 0) return;
  }
}

/**
 * The head of the msgpack value at `pos`: for a container its entry count (`length` -1), else the
 * size of its header and of its payload. Undefined when the bytes end first or the type is reserved.
 */
function msgpackHead(
  body: Buffer,
  pos: number,
  b: number,
): { header: number; length: number; count: number; map: boolean; str: boolean } | undefined {
  const room = body.length - pos;
  const scalar = (header: number, length: number, str = false) =>
    room < header ? undefined : { header, length, count: 0, map: false, str };
  const container = (header: number, count: number, map: boolean) =>
    room < header ? undefined : { header, length: -1, count: map ? count * 2 : count, map, str: false };
  if (b <= 0x7f || b >= 0xe0) return scalar(1, 0);
  if (b <= 0x8f) return container(1, b & 0x0f, true);
  if (b <= 0x9f) return container(1, b & 0x0f, false);
  if (b <= 0xbf) return scalar(1, b & 0x1f, true);
  switch (b) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
      return scalar(1, 0);
    case 0xc4:
      return room < 2 ? undefined : scalar(2, body[pos + 1]!);
    case 0xc5:
      return room < 3 ? undefined : scalar(3, body.readUInt16BE(pos + 1));
    case 0xc6:
      return room < 5 ? undefined : scalar(5, body.readUInt32BE(pos + 1));
    case 0xc7:
      return room < 3 ? undefined : scalar(3, body[pos + 1]!);
    case 0xc8:
      return room < 4 ? undefined : scalar(4, body.readUInt16BE(pos + 1));
    case 0xc9:
      return room < 6 ? undefined : scalar(6, body.readUInt32BE(pos + 1));
    case 0xca:
      return scalar(5, 0);
    case 0xcb:
      return scalar(9, 0);
    case 0xcc:
    case 0xd0:
      return scalar(2, 0);
    case 0xcd:
    case 0xd1:
      return scalar(3, 0);
    case 0xce:
    case 0xd2:
      return scalar(5, 0);
    case 0xcf:
    case 0xd3:
      return scalar(9, 0);
    case 0xd4:
      return scalar(3, 0);
    case 0xd5:
      return scalar(4, 0);
    case 0xd6:
      return scalar(6, 0);
    case 0xd7:
      return scalar(10, 0);
    case 0xd8:
      return scalar(18, 0);
    case 0xd9:
      return room < 2 ? undefined : scalar(2, body[pos + 1]!, true);
    case 0xda:
      return room < 3 ? undefined : scalar(3, body.readUInt16BE(pos + 1), true);
    case 0xdb:
      return room < 5 ? undefined : scalar(5, body.readUInt32BE(pos + 1), true);
    case 0xdc:
      return room < 3 ? undefined : container(3, body.readUInt16BE(pos + 1), false);
    case 0xdd:
      return room < 5 ? undefined : container(5, body.readUInt32BE(pos + 1), false);
    case 0xde:
      return room < 3 ? undefined : container(3, body.readUInt16BE(pos + 1), true);
    case 0xdf:
      return room < 5 ? undefined : container(5, body.readUInt32BE(pos + 1), true);
    default:
      return undefined;
  }
}

/** The error for a container that opens past BODY_DEPTH_MAX, naming the record field it is in. */
function tooDeep(
  body: Buffer,
  left: readonly number[],
  read: readonly number[],
  isMap: readonly boolean[],
  keyStart: readonly number[],
  keyLength: readonly number[],
  pos: number,
): SluiceError {
  const keyAt = (level: number) =>
    isMap[level] && keyStart[level]! >= 0
      ? body.toString('utf8', keyStart[level]!, keyStart[level]! + keyLength[level]!)
      : undefined;
  const inRecords = isMap[0] && keyAt(0) === 'records' && left.length > 2 && !isMap[1];
  if (!inRecords) {
    return new SluiceError('INVALID_REQUEST', `the body nests deeper than ${BODY_DEPTH_MAX} levels`, {
      details: { offset: pos },
    });
  }
  const index = read[1]! - 1;
  const name = keyAt(2);
  let field = name === undefined ? `records[${index}]` : `records[${index}].${name}`;
  const header = name === 'headers' ? keyAt(3) : undefined;
  if (header !== undefined) field += `.${header}`;
  return new SluiceError(
    'INVALID_RECORD',
    `${field} nests arrays and objects deeper than ${LIMITS.jsonDepthMax} levels`,
    { details: { index, field } },
  );
}

const RECORDS = Buffer.from('records');
const KEY = 0;
const VALUE = 1;
const HEADERS = 2;
const PARTITION = 3;
const TIMESTAMP = 4;
const FIELD_NAMES = ['key', 'value', 'headers', 'partition', 'timestamp'].map((s) => Buffer.from(s));
/** Array marker, offset and timestamp deltas, key, value and headers markers. */
const RECORD_FIXED_BOUND = 1 + 9 + 9 + 5 + 5 + 5;

/**
 * A cursor over msgpack bytes that checks as it goes. Every method returns a failure value instead
 * of throwing, so that a body it does not cover costs nothing but the way back to the general decoder.
 */
class Scanner {
  pos = 0;
  bytesStart = NIL;
  bytesLength = 0;

  constructor(readonly buf: Buffer) {}

  #has(n: number): boolean {
    return this.pos + n <= this.buf.length;
  }

  mapHeader(): number {
    return this.#containerHeader(0x80, 0xde);
  }

  arrayHeader(): number {
    return this.#containerHeader(0x90, 0xdc);
  }

  /** A map or array header: the fix form at `fix` (count in the low 4 bits), then 16 and 32 bits. */
  #containerHeader(fix: number, wide16: number): number {
    if (!this.#has(1)) return -1;
    const b = this.buf[this.pos]!;
    if (b >= fix && b <= fix + 0x0f) {
      this.pos++;
      return b & 0x0f;
    }
    if (b === wide16 && this.#has(3)) {
      this.pos += 3;
      return this.buf.readUInt16BE(this.pos - 2);
    }
    if (b === wide16 + 1 && this.#has(5)) {
      this.pos += 5;
      return this.buf.readUInt32BE(this.pos - 4);
    }
    return -1;
  }

  /** A str; sets bytesStart/bytesLength. False when the next value is not a whole str. */
  str(): boolean {
    if (!this.#has(1)) return false;
    const b = this.buf[this.pos]!;
    let length: number;
    let header: number;
    if (b >= 0xa0 && b <= 0xbf) {
      length = b & 0x1f;
      header = 1;
    } else if (b === 0xd9 && this.#has(2)) {
      length = this.buf[this.pos + 1]!;
      header = 2;
    } else if (b === 0xda && this.#has(3)) {
      length = this.buf.readUInt16BE(this.pos + 1);
      header = 3;
    } else if (b === 0xdb && this.#has(5)) {
      length = this.buf.readUInt32BE(this.pos + 1);
      header = 5;
    } else return false;
    if (!this.#has(header + length)) return false;
    this.bytesStart = this.pos + header;
    this.bytesLength = length;
    this.pos += header + length;
    return true;
  }

  keyIs(name: Buffer): boolean {
    return this.str() && this.#equals(name);
  }

  /** Which record field name comes next (KEY..TIMESTAMP), or -1. */
  fieldName(): number {
    if (!this.str()) return -1;
    let f: number;
    switch (this.bytesLength) {
      case 3:
        f = KEY;
        break;
      case 5:
        f = VALUE;
        break;
      case 7:
        f = HEADERS;
        break;
      case 9:
        f = this.buf[this.bytesStart] === 0x70 ? PARTITION : TIMESTAMP;
        break;
      default:
        return -1;
    }
    return this.#equals(FIELD_NAMES[f]!) ? f : -1;
  }

  #equals(name: Buffer): boolean {
    if (this.bytesLength !== name.length) return false;
    for (let i = 0; i < name.length; i++) if (this.buf[this.bytesStart + i] !== name[i]) return false;
    return true;
  }

  /**
   * A bytes field: nil (bytesStart = NIL), bin, or a str of valid UTF-8 (stored as its bytes).
   * False for anything else.
   */
  bytes(): boolean {
    if (!this.#has(1)) return false;
    const b = this.buf[this.pos]!;
    if (b === 0xc0) {
      this.pos++;
      this.bytesStart = NIL;
      this.bytesLength = 0;
      return true;
    }
    let length: number;
    let header: number;
    if (b === 0xc4 && this.#has(2)) {
      length = this.buf[this.pos + 1]!;
      header = 2;
    } else if (b === 0xc5 && this.#has(3)) {
      length = this.buf.readUInt16BE(this.pos + 1);
      header = 3;
    } else if (b === 0xc6 && this.#has(5)) {
      length = this.buf.readUInt32BE(this.pos + 1);
      header = 5;
    } else {
      if (!this.str()) return false;
      return isUtf8(this.buf.subarray(this.bytesStart, this.bytesStart + this.bytesLength));
    }
    if (!this.#has(header + length)) return false;
    this.bytesStart = this.pos + header;
    this.bytesLength = length;
    this.pos += header + length;
    return true;
  }

  /** nil (-1) or a non-negative integer that is safe in a double, in any msgpack number form; NaN for anything else. */
  optionalUint(): number {
    if (!this.#has(1)) return Number.NaN;
    const b = this.buf[this.pos]!;
    if (b === 0xc0) {
      this.pos++;
      return -1;
    }
    if (b <= 0x7f) {
      this.pos++;
      return b;
    }
    if (b === 0xcc && this.#has(2)) {
      this.pos += 2;
      return this.buf[this.pos - 1]!;
    }
    if (b === 0xcd && this.#has(3)) {
      this.pos += 3;
      return this.buf.readUInt16BE(this.pos - 2);
    }
    if (b === 0xce && this.#has(5)) {
      this.pos += 5;
      return this.buf.readUInt32BE(this.pos - 4);
    }
    if (b === 0xcf && this.#has(9)) {
      const hi = this.buf.readUInt32BE(this.pos + 1);
      if (hi >= 0x200000) return Number.NaN;
      this.pos += 9;
      return hi * 0x1_0000_0000 + this.buf.readUInt32BE(this.pos - 4);
    }
    // Signed and float encodings of a non-negative integer, as some encoders write them.
    let n: number;
    if (b === 0xd0 && this.#has(2)) n = this.buf.readInt8(this.pos + 1);
    else if (b === 0xd1 && this.#has(3)) n = this.buf.readInt16BE(this.pos + 1);
    else if (b === 0xd2 && this.#has(5)) n = this.buf.readInt32BE(this.pos + 1);
    else if (b === 0xd3 && this.#has(9)) n = Number(this.buf.readBigInt64BE(this.pos + 1));
    else if (b === 0xca && this.#has(5)) n = this.buf.readFloatBE(this.pos + 1);
    else if (b === 0xcb && this.#has(9)) n = this.buf.readDoubleBE(this.pos + 1);
    else return Number.NaN;
    if (!Number.isSafeInteger(n) || n < 0) return Number.NaN;
    this.pos += b === 0xd0 ? 2 : b === 0xd1 ? 3 : b === 0xd2 || b === 0xca ? 5 : 9;
    return n;
  }

  /**
   * Headers as a map of names to bytes, or a list of [name, bytes] pairs; nil for none. Returns
   * the bound of their encoded size in a batch, or -1.
   */
  headers(): number {
    if (!this.#has(1)) return -1;
    if (this.buf[this.pos] === 0xc0) {
      this.pos++;
      return 0;
    }
    const b = this.buf[this.pos]!;
    const asMap = (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf;
    const count = asMap ? this.mapHeader() : this.arrayHeader();
    if (count < 0 || count > LIMITS.headersPerRecordMax) return -1;
    let bound = 0;
    for (let h = 0; h < count; h++) {
      if (!asMap && this.arrayHeader() !== 2) return -1;
      if (!this.str()) return -1;
      const nameLength = this.bytesLength;
      if (nameLength === 0 || nameLength > LIMITS.headerNameBytesMax) return -1;
      if (!isUtf8(this.buf.subarray(this.bytesStart, this.bytesStart + nameLength))) return -1;
      if (!this.bytes()) return -1;
      bound += 1 + 5 + nameLength + 5 + (this.bytesStart === NIL ? 0 : this.bytesLength);
    }
    return bound;
  }
}

/** Copies fields of a checked body into a batch being written. */
class Copier {
  readonly #from: DataView;
  readonly #to: DataView;

  constructor(
    readonly body: Buffer,
    readonly out: Buffer,
  ) {
    this.#from = new DataView(body.buffer, body.byteOffset, body.length);
    this.#to = new DataView(out.buffer, out.byteOffset, out.length);
  }

  /** A bytes field at `start` (NIL for nil) as a stored bin. */
  bin(start: number, length: number, pos: number): number {
    if (start === NIL) {
      this.out[pos] = 0xc0;
      return pos + 1;
    }
    if (length < 0x100) {
      this.out[pos] = 0xc4;
      this.out[pos + 1] = length;
      return this.bytes(start, length, pos + 2);
    }
    return this.bytes(start, length, writeBinHeader(this.out, pos, length));
  }

  /** The headers found at `start` (NIL for none) as a stored list of [name, bin]. */
  headers(start: number, pos: number): number {
    const { body, out } = this;
    if (start === NIL || body[start] === 0xc0) {
      out[pos] = 0x90;
      return pos + 1;
    }
    const r = new Scanner(body);
    r.pos = start;
    const b = body[start]!;
    const asMap = (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf;
    const count = asMap ? r.mapHeader() : r.arrayHeader();
    pos = writeArrayHeader(out, pos, count);
    for (let h = 0; h < count; h++) {
      if (!asMap) r.arrayHeader();
      r.str();
      out[pos++] = 0x92;
      pos = this.bytes(r.bytesStart, r.bytesLength, writeStrHeader(out, pos, r.bytesLength));
      r.bytes();
      pos = this.bin(r.bytesStart, r.bytesLength, pos);
    }
    return pos;
  }

  /**
   * Copies bytes. A short run goes four bytes at a time through DataViews: a call to `copy`
   * costs about as much as 150 bytes copied this way, and most keys and values are shorter.
   */
  bytes(start: number, length: number, pos: number): number {
    if (length >= 160) {
      this.body.copy(this.out, pos, start, start + length);
      return pos + length;
    }
    let i = 0;
    for (; i + 4 <= length; i += 4) this.#to.setUint32(pos + i, this.#from.getUint32(start + i));
    for (; i < length; i++) this.out[pos + i] = this.body[start + i]!;
    return pos + length;
  }
}
