import { SluiceError } from '../common/errors.js';
import { batchSize, readBatchHeader } from './batch.js';
import { encodeFetchResponse } from './fetch-response.js';
import { packr, unpackr } from './msgpack.js';

/**
 * The msgpack answer of a group poll (`GET /v1/groups/{group}/members/{member}/records`):
 *   {memberEpoch, assignment: [{topic, partition}], partitions: [{topic, partition, offset, fetch: bin}]}
 * where each `fetch` is the partition's msgpack fetch response (fetch-response.ts: its stored
 * batches as stored, nextOffset, highWatermark, logStartOffset), so that a client decodes and
 * checks each partition's batches exactly as it does a partition fetch. `offset` is where the read
 * started (its first batch may begin before it: records before it are not the member's).
 */
export interface GroupPollPart {
  topic: string;
  partition: number;
  offset: number;
  data: Buffer;
  batchCount: number;
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

export function encodeGroupPoll(
  memberEpoch: number,
  assignment: readonly { topic: string; partition: number }[],
  parts: readonly GroupPollPart[],
): Buffer {
  return packr.pack({
    memberEpoch,
    assignment,
    partitions: parts.map((p) => ({
      topic: p.topic,
      partition: p.partition,
      offset: p.offset,
      fetch: encodeFetchResponse(p.data, p.batchCount, p),
    })),
  });
}

export interface DecodedGroupPoll {
  memberEpoch: number;
  assignment: { topic: string; partition: number }[];
  partitions: { topic: string; partition: number; offset: number; fetch: Buffer }[];
}

export function decodeGroupPoll(body: Buffer): DecodedGroupPoll {
  const decoded = unpackr.unpack(body) as Partial<DecodedGroupPoll> | null;
  if (
    decoded === null ||
    typeof decoded !== 'object' ||
    typeof decoded.memberEpoch !== 'number' ||
    !Array.isArray(decoded.partitions) ||
    !Array.isArray(decoded.assignment)
  )
    throw new SluiceError('INVALID_REQUEST', 'unexpected group poll response');
  return decoded as DecodedGroupPoll;
}

/**
 * The stored batches of a msgpack fetch response, as one buffer (a view of the response), with
 * its offsets: what a group coordinator gets back when it reads a partition another node leads.
 */
export function splitFetchResponse(body: Buffer): Omit<GroupPollPart, 'topic' | 'partition' | 'offset'> {
  let pos: number;
  if (body.length > 0 && (body[0]! & 0xf0) === 0x80) pos = 1;
  else if (body[0] === 0xde && body.length >= 3) pos = 3;
  else throw new SluiceError('CORRUPT_MESSAGE', 'a fetch response that is not a msgpack map');
  if (body.toString('latin1', pos, pos + 8) !== '\xa7batches')
    throw new SluiceError('CORRUPT_MESSAGE', 'a fetch response without batches first');
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
  } else throw new SluiceError('CORRUPT_MESSAGE', 'fetch response batches is not an array');
  const start = pos;
  for (let i = 0; i < count; i++) {
    if (pos >= body.length) throw new SluiceError('CORRUPT_MESSAGE', 'a fetch response cut short');
    pos += batchSize(readBatchHeader(body, pos));
  }
  const rest = unpackr.unpackMultiple(body.subarray(pos)) as unknown[];
  const fields: Record<string, unknown> = {};
  for (let i = 0; i + 1 < rest.length; i += 2) fields[String(rest[i])] = rest[i + 1];
  const number = (name: string): number => {
    const v = fields[name];
    if (typeof v !== 'number') throw new SluiceError('CORRUPT_MESSAGE', `a fetch response without ${name}`);
    return v;
  };
  return {
    data: body.subarray(start, pos),
    batchCount: count,
    nextOffset: number('nextOffset'),
    highWatermark: number('highWatermark'),
    logStartOffset: number('logStartOffset'),
  };
}
