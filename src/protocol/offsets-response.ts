import { writeUint } from './msgpack.js';

/** The msgpack answer to a produce of records: one partition and offset per record, in request order. */

/** The msgpack str keys of every offset entry, encoded once. */
const PARTITION_KEY = Buffer.from([0xa9, ...Buffer.from('partition')]);
const OFFSET_KEY = Buffer.from([0xa6, ...Buffer.from('offset')]);

/**
 * `{"offsets": [{"partition": p, "offset": o}, ...]}` in msgpack, written by hand: a produce of
 * 1,000 records answers with 1,000 offsets, and the generic encoder spent more time on them than
 * the append itself.
 */
export function encodeOffsetsResponse(produced: {
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
