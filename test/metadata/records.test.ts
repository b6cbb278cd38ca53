import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSluiceError, SluiceError } from '../../src/common/errors.js';
import {
  checkRecord,
  decodeRecord,
  encodeRecord,
  isTopicId,
  type MetadataRecord,
  RECORD_TYPE_CODES,
  topicIdFromBytes,
  topicIdToBytes,
  ZERO_TOPIC_ID,
} from '../../src/metadata/records.js';
import { packr } from '../../src/protocol/msgpack.js';
import { anyRecord } from './arbitraries.js';

/**
 * The metadata record codec: the bytes of docs/metadata.md exactly (golden fixtures), a round trip
 * for every valid record, and a typed INVALID_RECORD, never a crash, for anything else.
 */

const ID = 'AAAAAAAAAAAAAAAAAAAAAQ';
const ID_HEX = `b6${Buffer.from(ID).toString('hex')}`;

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

function reasonOf(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    if (isSluiceError(error, 'INVALID_RECORD')) return error.details.reason;
    throw error;
  }
  throw new Error('expected INVALID_RECORD');
}

const GOLDEN: [string, MetadataRecord, string][] = [
  ['clusterId', { type: 'clusterId', version: 0, clusterId: 'abc' }, '930100a3616263'],
  [
    'featureLevel',
    { type: 'featureLevel', version: 0, name: 'metadata.version', level: 1 },
    `940200b0${Buffer.from('metadata.version').toString('hex')}01`,
  ],
  [
    'registerBroker',
    {
      type: 'registerBroker',
      version: 0,
      brokerId: 1,
      incarnationId: 'i',
      endpoints: [{ name: 'h', host: 'a', port: 9092 }],
      rack: null,
    },
    '96030001a1699193a168a161cd2384c0',
  ],
  [
    'unregisterBroker',
    { type: 'unregisterBroker', version: 0, brokerId: 7, brokerEpoch: 300 },
    '94040007cd012c',
  ],
  ['fenceBroker', { type: 'fenceBroker', version: 0, brokerId: 7, brokerEpoch: 300 }, '94050007cd012c'],
  ['unfenceBroker', { type: 'unfenceBroker', version: 0, brokerId: 7, brokerEpoch: 5 }, '9406000705'],
  ['topic', { type: 'topic', version: 0, name: 't', topicId: ID }, `940700a174${ID_HEX}`],
  [
    'partition',
    {
      type: 'partition',
      version: 0,
      topicId: ID,
      partition: 0,
      replicas: [1, 2, 3],
      isr: [1, 2],
      leader: 1,
      leaderEpoch: 0,
      partitionEpoch: 0,
    },
    `990800${ID_HEX}0093010203920102010000`,
  ],
  [
    'partitionChange (leader only, -1)',
    { type: 'partitionChange', version: 0, topicId: ID, partition: 2, leader: -1 },
    `970900${ID_HEX}02ffc0c0`,
  ],
  [
    'partitionChange (isr and replicas)',
    { type: 'partitionChange', version: 0, topicId: ID, partition: 2, isr: [], replicas: [4] },
    `970900${ID_HEX}02c09091 04`.replace(' ', ''),
  ],
  [
    'partitionChange v2 (isr and eligible leader replicas)',
    { type: 'partitionChange', version: 2, topicId: ID, partition: 2, isr: [1], elr: [2, 3] },
    `9a0902${ID_HEX}02c09101c0c0c0920203`,
  ],
  [
    'config (broker defaults)',
    {
      type: 'config',
      version: 0,
      resource: { type: 'brokerDefaults' },
      name: 'retention.ms',
      value: '1000',
    },
    `960a0002a0ac${Buffer.from('retention.ms').toString('hex')}a431303030`,
  ],
  [
    'config (topic, delete)',
    { type: 'config', version: 0, resource: { type: 'topic', name: 't' }, name: 'x', value: null },
    '960a0001a174a178c0',
  ],
  [
    'producerIdBlock',
    { type: 'producerIdBlock', version: 0, brokerId: 1, firstProducerId: 2 ** 33, size: 1000 },
    '950b0001cb4200000000000000cd03e8',
  ],
  ['removeTopic', { type: 'removeTopic', version: 0, topicId: ID }, `930c00${ID_HEX}`],
];

describe('metadata record bytes', () => {
  it.each(GOLDEN)('%s encodes to the documented bytes and back', (_name, record, bytes) => {
    expect(hex(encodeRecord(record))).toBe(bytes);
    expect(decodeRecord(Buffer.from(bytes, 'hex'))).toEqual(record);
  });

  it('has a golden fixture for every record type', () => {
    const covered = new Set(GOLDEN.map(([, r]) => r.type));
    expect([...covered].sort()).toEqual(Object.keys(RECORD_TYPE_CODES).sort());
  });

  it('round-trips every valid record, and encodes the decoded record to the same bytes', () => {
    fc.assert(
      fc.property(anyRecord, (record) => {
        const bytes = encodeRecord(record);
        const decoded = decodeRecord(bytes);
        expect(decoded).toEqual(record);
        expect(hex(encodeRecord(decoded))).toBe(hex(bytes));
        expect(Object.isFrozen(decoded)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

describe('strict decoding', () => {
  const fence = (brokerId: unknown, brokerEpoch: unknown) => packr.pack([5, 0, brokerId, brokerEpoch]);

  it('refuses bytes that are not exactly one msgpack value', () => {
    expect(reasonOf(() => decodeRecord(new Uint8Array()))).toBe('encoding');
    expect(reasonOf(() => decodeRecord(Buffer.from('9405000705', 'hex').subarray(0, 4)))).toBe('encoding');
    expect(reasonOf(() => decodeRecord(Buffer.from('940600070500', 'hex')))).toBe('encoding');
    expect(reasonOf(() => decodeRecord(Buffer.from('d40102', 'hex')))).toBe('encoding');
  });

  it('refuses a value that is not [code, version, ...]', () => {
    for (const value of [null, 5, 'x', {}, { type: 'clusterId' }, [], [1]])
      expect(reasonOf(() => decodeRecord(packr.pack(value)))).toBe('shape');
  });

  it('refuses an unknown type code and an unknown version, naming which', () => {
    expect(reasonOf(() => decodeRecord(packr.pack([0, 0])))).toBe('unknownType');
    expect(reasonOf(() => decodeRecord(packr.pack([13, 0, 'x'])))).toBe('unknownType');
    expect(reasonOf(() => decodeRecord(packr.pack(['1', 0, 'x'])))).toBe('unknownType');
    expect(reasonOf(() => decodeRecord(packr.pack([1, 1, 'x'])))).toBe('unknownVersion');
    expect(reasonOf(() => decodeRecord(packr.pack([1, -1, 'x'])))).toBe('unknownVersion');
  });

  it('refuses bytes that are not the canonical encoding: invalid UTF-8, a longer integer form', () => {
    // 'i' as a2 ff 69: 0xff is not UTF-8, which msgpackr would read as U+FFFD.
    expect(reasonOf(() => decodeRecord(Buffer.from('96030001a2ff6990c0', 'hex')))).toBe('encoding');
    // brokerId 7 as uint16 (cd 0007) rather than a positive fixint.
    expect(reasonOf(() => decodeRecord(Buffer.from('940500cd000705', 'hex')))).toBe('encoding');
    expect(decodeRecord(Buffer.from('9405000705', 'hex'))).toMatchObject({ brokerId: 7 });
  });

  it('refuses a missing or an extra field', () => {
    expect(reasonOf(() => decodeRecord(packr.pack([5, 0, 1])))).toBe('shape');
    expect(reasonOf(() => decodeRecord(packr.pack([5, 0, 1, 2, 3])))).toBe('shape');
  });

  it('refuses wrong-typed and out-of-range fields, naming the field', () => {
    const cases: [Uint8Array, string][] = [
      [fence('1', 2), 'brokerId'],
      [fence(-1, 2), 'brokerId'],
      [fence(2 ** 31, 2), 'brokerId'],
      [fence(1.5, 2), 'brokerId'],
      [fence(1, null), 'brokerEpoch'],
      [fence(1, 2 ** 53), 'brokerEpoch'],
      [packr.pack([7, 0, '', ID]), 'name'],
      [packr.pack([7, 0, 't', 'AAAAAAAAAAAAAAAAAAAAAB']), 'topicId'],
      [packr.pack([7, 0, 't', ZERO_TOPIC_ID]), 'topicId'],
      [packr.pack([8, 0, ID, 0, [], [], -1, 0, 0]), 'replicas'],
      [packr.pack([8, 0, ID, 0, [1, 1], [], -1, 0, 0]), 'replicas'],
      [packr.pack([8, 0, ID, 0, [1], [1], -2, 0, 0]), 'leader'],
      [packr.pack([8, 0, ID, 10_000, [1], [1], 1, 0, 0]), 'partition'],
      [packr.pack([8, 0, ID, 0, [1], 'x', 1, 0, 0]), 'isr'],
      [packr.pack([9, 0, ID, 0, null, null, null]), 'leader'],
      [packr.pack([3, 0, 1, 'i', [['h', 'a', 0]], null]), 'endpoints[].port'],
      [
        packr.pack([
          3,
          0,
          1,
          'i',
          [
            ['h', 'a', 1],
            ['h', 'b', 2],
          ],
          null,
        ]),
        'endpoints[].name',
      ],
      [packr.pack([3, 0, 1, 'i', [['h', 'a']], null]), 'endpoints[]'],
      [packr.pack([3, 0, 1, 'i', {}, null]), 'endpoints'],
      [packr.pack([3, 0, 1, 'i', [], 7]), 'rack'],
      [packr.pack([10, 0, 3, '', 'n', 'v']), 'resourceType'],
      [packr.pack([10, 0, 2, 'x', 'n', 'v']), 'resource.name'],
      [packr.pack([10, 0, 1, 't', 'n', 5]), 'value'],
      [packr.pack([11, 0, 1, 0, 0]), 'size'],
      [packr.pack([2, 0, 'other.version', 1]), 'name'],
      [packr.pack([2, 0, 'metadata.version', 4]), 'level'],
    ];
    for (const [bytes, field] of cases) {
      let caught: unknown;
      try {
        decodeRecord(bytes);
      } catch (error) {
        caught = error;
      }
      expect(caught, field).toBeInstanceOf(SluiceError);
      expect((caught as SluiceError).code).toBe('INVALID_RECORD');
      expect((caught as SluiceError).details, field).toMatchObject({ reason: 'field', field });
    }
  });

  it('never throws anything but INVALID_RECORD, whatever the bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          // Mutations of valid records: the near misses a decoder is most likely to get wrong.
          fc.tuple(anyRecord, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([record, at, byte]) => {
            const bytes = Buffer.from(encodeRecord(record));
            bytes[at % bytes.length] = byte;
            return bytes;
          }),
          fc.tuple(anyRecord, fc.nat()).map(([record, cut]) => {
            const bytes = encodeRecord(record);
            return bytes.subarray(0, cut % bytes.length);
          }),
        ),
        (bytes) => {
          try {
            const record = decodeRecord(bytes);
            // Whatever decodes must be a valid record that encodes to the same bytes.
            expect(hex(encodeRecord(record))).toBe(hex(bytes));
          } catch (error) {
            if (!isSluiceError(error, 'INVALID_RECORD')) throw error;
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('checks a record on the way out too, so that none reaches the log invalid', () => {
    expect(reasonOf(() => encodeRecord({ type: 'nope' } as never))).toBe('unknownType');
    expect(reasonOf(() => encodeRecord({ type: 'clusterId', version: 1, clusterId: 'x' } as never))).toBe(
      'unknownVersion',
    );
    expect(
      reasonOf(() => encodeRecord({ type: 'fenceBroker', version: 0, brokerId: 1 } as MetadataRecord)),
    ).toBe('field');
    const loneSurrogate = { type: 'clusterId', version: 0, clusterId: '\ud800' } as const;
    expect(reasonOf(() => encodeRecord(loneSurrogate))).toBe('field');
    // Fields a record does not have are dropped, not stored.
    const checked = checkRecord({ type: 'removeTopic', version: 0, topicId: ID, extra: 1 } as MetadataRecord);
    expect(checked).toEqual({ type: 'removeTopic', version: 0, topicId: ID });
  });
});

describe('topic ids', () => {
  it('are 16 bytes as 22 characters of base64url, one spelling each', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        fc.pre(bytes.some((b) => b !== 0));
        const id = topicIdFromBytes(bytes);
        expect(id).toHaveLength(22);
        expect(isTopicId(id)).toBe(true);
        expect(topicIdToBytes(id)).toEqual(bytes);
      }),
    );
    expect(isTopicId('AAAAAAAAAAAAAAAAAAAAAB')).toBe(false);
    expect(isTopicId('AAAAAAAAAAAAAAAAAAAA=')).toBe(false);
    expect(() => topicIdFromBytes(new Uint8Array(16))).toThrow(/reserved/);
    expect(() => topicIdFromBytes(new Uint8Array(15))).toThrow(/16 bytes/);
  });
});
