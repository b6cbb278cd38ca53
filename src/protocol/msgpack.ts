import { Packr, Unpackr } from 'msgpackr';

/**
 * The one msgpack encoder and decoder of Sluice, for every wire and disk use (HTTP bodies, the SDK,
 * Raft messages and storage): msgpack as every other language reads it, plain maps and arrays with
 * no msgpackr extensions, and 64-bit integers read as numbers (offsets stay below 2^53).
 */
export const packr = new Packr({ useRecords: false, variableMapSize: true });
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/**
 * Writes a msgpack unsigned integer in its shortest form at `pos` and returns the position after
 * it. `n` is a non-negative safe integer.
 */
export function writeUint(buf: Buffer, pos: number, n: number): number {
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
