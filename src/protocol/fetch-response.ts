import { SluiceError } from '../common/errors.js';
import { assertValidBatch, type BatchRecord, batchSize, decodeRecords } from './batch.js';
import { packr, unpackr } from './msgpack.js';

/**
 * The msgpack fetch response, encoded by the broker around the stored batches and decoded by the
 * SDK. Layout: a map whose first key is `batches`, an array32 of stored batches as stored, then
 * `nextOffset`, `highWatermark` and `logStartOffset`. A stock msgpack decoder reads it too (each
 * batch is itself a msgpack value; see batch.ts).
 */

/** Room a fetch leaves around its batches for `msgpackFetchResponse` to frame them in place. */
export const FETCH_FRAME_RESERVE = { before: 16, after: 64 };

/**
 * A msgpack fetch response built around the stored batches without decoding or re-encoding them:
 *   {"batches": [<batch>, ...], "nextOffset": n, "highWatermark": n, "logStartOffset": n}
 * When the read left room around the batches (`reserved`, asked for with `FETCH_FRAME_RESERVE`),
 * the header and trailer are written there and the response is a view of that one buffer;
 * otherwise the three parts are copied into a new one.
 */
export function encodeFetchResponse(
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

export interface FetchPage {
  records: BatchRecord[];
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

/**
 * Reads a msgpack fetch response: `{batches: [stored batch, ...], nextOffset, highWatermark,
 * logStartOffset}` with `batches` first, as the broker sends it. Each stored batch is checked
 * (CRC-32C) and decoded here; records before `fromOffset` are skipped.
 */
export function decodeFetchResponse(body: Buffer, fromOffset: number): FetchPage {
  // The map header: a fixmap or a map16, whose first key must be `batches`.
  let pos: number;
  let entries: number;
  if (body.length > 0 && (body[0]! & 0xf0) === 0x80) {
    entries = body[0]! & 0x0f;
    pos = 1;
  } else if (body[0] === 0xde && body.length >= 3) {
    entries = body.readUInt16BE(1);
    pos = 3;
  } else {
    entries = 0;
    pos = 0;
  }
  if (entries === 0 || body.toString('latin1', pos, pos + 8) !== '\xa7batches') {
    let shown: string;
    try {
      shown = JSON.stringify(unpackr.unpack(body)).slice(0, 200);
    } catch {
      shown = `${body.length} bytes that are not msgpack`;
    }
    throw new SluiceError('INVALID_REQUEST', `unexpected fetch response: ${shown}`);
  }
  pos += 8;
  const marker = body[pos]!;
  let count: number;
  if (marker === 0xdd) {
    count = body.readUInt32BE(pos + 1);
    pos += 5;
  } else if (marker === 0xdc) {
    count = body.readUInt16BE(pos + 1);
    pos += 3;
  } else if ((marker & 0xf0) === 0x90) {
    count = marker & 0x0f;
    pos += 1;
  } else {
    throw new SluiceError('CORRUPT_MESSAGE', 'fetch response batches is not an array');
  }
  const records: BatchRecord[] = [];
  for (let i = 0; i < count; i++) {
    const header = assertValidBatch(body, pos, body.length, Number.MAX_SAFE_INTEGER);
    for (const record of decodeRecords(body, pos)) if (record.offset >= fromOffset) records.push(record);
    pos += batchSize(header);
  }
  // The other fields follow the batches as key, value, key, value...
  const rest = entries > 1 ? (unpackr.unpackMultiple(body.subarray(pos)) as unknown[]) : [];
  const fields: Record<string, unknown> = {};
  for (let i = 0; i + 1 < rest.length; i += 2) fields[String(rest[i])] = rest[i + 1];
  const number = (name: string): number => {
    const v = fields[name];
    if (typeof v !== 'number') throw new SluiceError('INVALID_REQUEST', `fetch response without ${name}`);
    return v;
  };
  return {
    records,
    nextOffset: number('nextOffset'),
    highWatermark: number('highWatermark'),
    logStartOffset: number('logStartOffset'),
  };
}
