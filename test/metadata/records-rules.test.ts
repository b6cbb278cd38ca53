import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import {
  checkRecord,
  decodeRecord,
  encodeRecord,
  isTopicId,
  type MetadataRecord,
  RECORD_LIMITS,
  topicIdToBytes,
} from '../../src/metadata/records.js';
import { packr } from '../../src/protocol/msgpack.js';

/**
 * The metadata record codec's field ranges, each at its edge: the largest value a field takes is
 * accepted and round-trips to the same bytes, one past it is refused with INVALID_RECORD naming the
 * field, on the way out (encodeRecord) as on the way in (decodeRecord of the same fields packed by
 * hand). Then the version rules of partition and partitionChange (which fields each version may
 * carry), the config resources, and the canonical encoding.
 */
const ID = 'AAAAAAAAAAAAAAAAAAAAAQ';

function refusal(run: () => unknown): { reason: unknown; field: unknown; message: string } {
  try {
    run();
  } catch (error) {
    if (isSluiceError(error, 'INVALID_RECORD'))
      return { reason: error.details.reason, field: error.details.field, message: error.message };
    throw error;
  }
  throw new Error('expected INVALID_RECORD, the record was accepted');
}

/** Accepted, and the same record after a round trip through its bytes. */
function accepted(record: MetadataRecord): void {
  const bytes = encodeRecord(record);
  expect(decodeRecord(bytes)).toEqual(checkRecord(record));
}

/** Refused naming `field` when encoded, and when its hand-packed wire form is decoded. */
function refusedBoth(record: MetadataRecord, wire: unknown[], field: string): void {
  expect(refusal(() => encodeRecord(record))).toMatchObject({ reason: 'field', field });
  expect(refusal(() => decodeRecord(packr.pack(wire)))).toMatchObject({ reason: 'field', field });
}

const fence = (brokerId: number, brokerEpoch: number): MetadataRecord => ({
  type: 'fenceBroker',
  version: 0,
  brokerId,
  brokerEpoch,
});

const register = (fields: Partial<Record<string, unknown>>): MetadataRecord =>
  ({
    type: 'registerBroker',
    version: 0,
    brokerId: 1,
    incarnationId: 'i',
    endpoints: [{ name: 'h', host: 'a', port: 9092 }],
    rack: null,
    ...fields,
  }) as MetadataRecord;

const partition = (fields: Partial<Record<string, unknown>>): MetadataRecord =>
  ({
    type: 'partition',
    version: 0,
    topicId: ID,
    partition: 0,
    replicas: [1],
    isr: [1],
    leader: 1,
    leaderEpoch: 0,
    partitionEpoch: 0,
    ...fields,
  }) as MetadataRecord;

const change = (fields: Partial<Record<string, unknown>>): MetadataRecord =>
  ({ type: 'partitionChange', version: 0, topicId: ID, partition: 0, ...fields }) as MetadataRecord;

const config = (fields: Partial<Record<string, unknown>>): MetadataRecord =>
  ({
    type: 'config',
    version: 0,
    resource: { type: 'topic', name: 't' },
    name: 'retention.ms',
    value: '1',
    ...fields,
  }) as MetadataRecord;

const ids = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

describe('record field ranges, each at its edge', () => {
  it('broker ids are int32: 2^31-1 is one, 2^31 is not, and 0 is', () => {
    accepted(fence(RECORD_LIMITS.int32Max, 0));
    accepted(fence(0, 0));
    refusedBoth(fence(RECORD_LIMITS.int32Max + 1, 0), [5, 0, RECORD_LIMITS.int32Max + 1, 0], 'brokerId');
    refusedBoth(fence(-1, 0), [5, 0, -1, 0], 'brokerId');
  });

  it('epochs and producer ids take every safe integer, none past it, none negative', () => {
    accepted(fence(1, Number.MAX_SAFE_INTEGER));
    refusedBoth(fence(1, -1), [5, 0, 1, -1], 'brokerEpoch');
    refusedBoth(fence(1, 0.5), [5, 0, 1, 0.5], 'brokerEpoch');
    const block = { type: 'producerIdBlock', version: 0, brokerId: 1, firstProducerId: 0, size: 1 } as const;
    accepted({ ...block, firstProducerId: Number.MAX_SAFE_INTEGER });
  });

  it('a producer-id block holds 1 to a million ids', () => {
    const block = { type: 'producerIdBlock', version: 0, brokerId: 1, firstProducerId: 0 } as const;
    accepted({ ...block, size: 1 });
    accepted({ ...block, size: RECORD_LIMITS.producerIdBlockSizeMax });
    refusedBoth(
      { ...block, size: RECORD_LIMITS.producerIdBlockSizeMax + 1 },
      [11, 0, 1, 0, RECORD_LIMITS.producerIdBlockSizeMax + 1],
      'size',
    );
    refusedBoth({ ...block, size: 0 }, [11, 0, 1, 0, 0], 'size');
  });

  it('labels are 1 to 255 well-formed characters', () => {
    accepted({ type: 'clusterId', version: 0, clusterId: 'x'.repeat(255) });
    accepted({ type: 'clusterId', version: 0, clusterId: 'x' });
    refusedBoth(
      { type: 'clusterId', version: 0, clusterId: 'x'.repeat(256) },
      [1, 0, 'x'.repeat(256)],
      'clusterId',
    );
    refusedBoth({ type: 'clusterId', version: 0, clusterId: '' }, [1, 0, ''], 'clusterId');
    expect(
      refusal(() => encodeRecord({ type: 'clusterId', version: 0, clusterId: 'a\udc00' })),
    ).toMatchObject({
      field: 'clusterId',
    });
    expect(
      refusal(() => encodeRecord({ type: 'clusterId', version: 0, clusterId: 5 as never })),
    ).toMatchObject({
      field: 'clusterId',
    });
    expect(refusal(() => encodeRecord({ type: 'clusterId', version: 0, clusterId: '' })).message).toContain(
      'of 1 to 255 characters',
    );
  });

  it('a rack is a label or null, an incarnation id a label', () => {
    accepted(register({ rack: 'r'.repeat(255) }));
    refusedBoth(register({ rack: '' }), [3, 0, 1, 'i', [['h', 'a', 9092]], ''], 'rack');
    refusedBoth(register({ incarnationId: '' }), [3, 0, 1, '', [['h', 'a', 9092]], null], 'incarnationId');
  });

  it('topic names are 1 to 249 well-formed characters', () => {
    const topic = (name: string): MetadataRecord => ({ type: 'topic', version: 0, name, topicId: ID });
    accepted(topic('t'.repeat(249)));
    refusedBoth(topic('t'.repeat(250)), [7, 0, 't'.repeat(250), ID], 'name');
    // A lone surrogate cannot be UTF-8: refused on the way out (msgpack would write U+FFFD).
    expect(refusal(() => encodeRecord(topic('\ud800')))).toMatchObject({ field: 'name' });
    expect(refusal(() => encodeRecord(topic(7 as never)))).toMatchObject({ field: 'name' });
  });

  it('endpoints: at most 16, ports 1 to 65535, names and hosts labels, names distinct', () => {
    const endpoints = (n: number) => ids(n).map((i) => ({ name: `e${i}`, host: 'h', port: 1 + i }));
    accepted(register({ endpoints: endpoints(16) }));
    accepted(register({ endpoints: [] }));
    refusedBoth(
      register({ endpoints: endpoints(17) }),
      [3, 0, 1, 'i', endpoints(17).map((e) => [e.name, e.host, e.port]), null],
      'endpoints',
    );
    accepted(register({ endpoints: [{ name: 'h', host: 'a', port: 65_535 }] }));
    refusedBoth(
      register({ endpoints: [{ name: 'h', host: 'a', port: 65_536 }] }),
      [3, 0, 1, 'i', [['h', 'a', 65_536]], null],
      'endpoints[].port',
    );
    refusedBoth(
      register({ endpoints: [{ name: 'h', host: '', port: 1 }] }),
      [3, 0, 1, 'i', [['h', '', 1]], null],
      'endpoints[].host',
    );
    refusedBoth(
      register({ endpoints: [{ name: '', host: 'a', port: 1 }] }),
      [3, 0, 1, 'i', [['', 'a', 1]], null],
      'endpoints[].name',
    );
    for (const bad of [null, ['h', 'a', 1], 5])
      expect(refusal(() => encodeRecord(register({ endpoints: [bad] })))).toMatchObject({
        field: 'endpoints[]',
      });
    expect(refusal(() => encodeRecord(register({ endpoints: 'x' })))).toMatchObject({ field: 'endpoints' });
    // Endpoints come back frozen, as every checked record.
    const checked = checkRecord(register({})) as Extract<MetadataRecord, { type: 'registerBroker' }>;
    expect(Object.isFrozen(checked.endpoints)).toBe(true);
    expect(Object.isFrozen(checked.endpoints[0])).toBe(true);
  });

  it('a partition has 1 to 64 distinct replicas, an in-sync set of 0 to 64, an index below the partition limit', () => {
    accepted(partition({ replicas: ids(64), isr: ids(64) }));
    accepted(partition({ replicas: [1], isr: [] }));
    refusedBoth(partition({ replicas: ids(65) }), [8, 0, ID, 0, ids(65), [1], 1, 0, 0], 'replicas');
    refusedBoth(partition({ isr: ids(65) }), [8, 0, ID, 0, [1], ids(65), 1, 0, 0], 'isr');
    refusedBoth(partition({ isr: [2, 2] }), [8, 0, ID, 0, [1], [2, 2], 1, 0, 0], 'isr');
    refusedBoth(partition({ isr: [-1] }), [8, 0, ID, 0, [1], [-1], 1, 0, 0], 'isr[]');
    accepted(partition({ partition: 9_999 }));
    accepted(partition({ leader: -1 }));
    accepted(partition({ leader: RECORD_LIMITS.int32Max, replicas: [RECORD_LIMITS.int32Max] }));
    refusedBoth(partition({ partition: -1 }), [8, 0, ID, -1, [1], [1], 1, 0, 0], 'partition');
    refusedBoth(partition({ leaderEpoch: -1 }), [8, 0, ID, 0, [1], [1], 1, -1, 0], 'leaderEpoch');
    refusedBoth(partition({ partitionEpoch: -1 }), [8, 0, ID, 0, [1], [1], 1, 0, -1], 'partitionEpoch');
    refusedBoth(partition({ topicId: 'x' }), [8, 0, 'x', 0, [1], [1], 1, 0, 0], 'topicId');
    expect(refusal(() => encodeRecord(partition({ replicas: 'x' }))).message).toContain(
      'an array of 1 to 64 broker ids',
    );
    expect(refusal(() => encodeRecord(partition({ isr: 'x' }))).message).toContain(
      'an array of 0 to 64 broker ids',
    );
  });

  it('a change’s leader is -1 or a broker id; nil fields are unchanged', () => {
    accepted(change({ leader: -1 }));
    refusedBoth(change({ leader: -2 }), [9, 0, ID, 0, -2, null, null], 'leader');
    refusedBoth(change({ replicas: [] }), [9, 0, ID, 0, null, null, []], 'replicas');
    refusedBoth(change({ partition: 10_000, leader: 1 }), [9, 0, ID, 10_000, 1, null, null], 'partition');
    const decoded = decodeRecord(packr.pack([9, 0, ID, 0, null, [1, 2], null]));
    expect(decoded).toEqual({ type: 'partitionChange', version: 0, topicId: ID, partition: 0, isr: [1, 2] });
    expect(decodeRecord(packr.pack([9, 0, ID, 0, null, null, [3]]))).toEqual({
      type: 'partitionChange',
      version: 0,
      topicId: ID,
      partition: 0,
      replicas: [3],
    });
  });

  it('a config value is null or at most 65536 well-formed characters; its name a label', () => {
    accepted(config({ value: 'v'.repeat(RECORD_LIMITS.configValueLengthMax) }));
    accepted(config({ value: null }));
    accepted(config({ value: '' }));
    refusedBoth(
      config({ value: 'v'.repeat(RECORD_LIMITS.configValueLengthMax + 1) }),
      [10, 0, 1, 't', 'retention.ms', 'v'.repeat(RECORD_LIMITS.configValueLengthMax + 1)],
      'value',
    );
    expect(refusal(() => encodeRecord(config({ value: '\ud800' })))).toMatchObject({ field: 'value' });
    refusedBoth(config({ name: '' }), [10, 0, 1, 't', '', '1'], 'name');
    refusedBoth(
      config({ resource: { type: 'topic', name: '' } }),
      [10, 0, 1, '', 'retention.ms', '1'],
      'resource.name',
    );
    expect(refusal(() => encodeRecord(config({ resource: null })))).toMatchObject({ field: 'resource' });
    expect(refusal(() => encodeRecord(config({ resource: { type: 'broker' } })))).toMatchObject({
      field: 'resource',
    });
  });

  it('the broker defaults are resource type 2 with an empty name; a topic is type 1 with its name', () => {
    const defaults = config({ resource: { type: 'brokerDefaults' } });
    expect(Buffer.from(encodeRecord(defaults)).equals(packr.pack([10, 0, 2, '', 'retention.ms', '1']))).toBe(
      true,
    );
    expect(decodeRecord(encodeRecord(defaults))).toEqual(defaults);
    expect(
      Buffer.from(encodeRecord(config({}))).equals(packr.pack([10, 0, 1, 't', 'retention.ms', '1'])),
    ).toBe(true);
    // A topic resource's name is dropped from the broker defaults' form: nothing but its own fields.
    const stray = checkRecord(config({ resource: { type: 'brokerDefaults', name: 'x' } })) as Extract<
      MetadataRecord,
      { type: 'config' }
    >;
    expect(stray.resource).toEqual({ type: 'brokerDefaults' });
  });

  it('metadata.version levels are 1 to the highest this code knows', () => {
    const level = (n: number): MetadataRecord => ({
      type: 'featureLevel',
      version: 0,
      name: 'metadata.version',
      level: n,
    });
    accepted(level(1));
    accepted(level(3));
    refusedBoth(level(0), [2, 0, 'metadata.version', 0], 'level');
  });
});

describe('record versions: which fields each may carry', () => {
  it('a version 0 partition has no reassignment fields; version 1 has both', () => {
    expect(refusal(() => encodeRecord(partition({ addingReplicas: [2] })))).toMatchObject({
      field: 'addingReplicas',
    });
    expect(refusal(() => encodeRecord(partition({ removingReplicas: [2] })))).toMatchObject({
      field: 'removingReplicas',
    });
    const v1 = partition({ version: 1, replicas: [1, 2], addingReplicas: [2], removingReplicas: [] });
    accepted(v1);
    expect(
      Buffer.from(encodeRecord(v1)).equals(packr.pack([8, 1, ID, 0, [1, 2], [1], 1, 0, 0, [2], []])),
    ).toBe(true);
    expect(refusal(() => decodeRecord(packr.pack([8, 1, ID, 0, [1], [1], 1, 0, 0, [2]])))).toMatchObject({
      reason: 'shape',
    });
    expect(refusal(() => encodeRecord(partition({ version: 1, addingReplicas: [2] })))).toMatchObject({
      field: 'removingReplicas',
    });
    expect(refusal(() => encodeRecord(partition({ version: 1, removingReplicas: [2] })))).toMatchObject({
      field: 'addingReplicas',
    });
    // An eligible set is no field of a partition record: dropped, not stored.
    expect(checkRecord(partition({ elr: [2] }))).not.toHaveProperty('elr');
  });

  it('a version 0 change has no reassignment or eligible fields; each field alone is a change', () => {
    for (const field of ['addingReplicas', 'removingReplicas', 'elr'])
      expect(refusal(() => encodeRecord(change({ leader: 1, [field]: [2] })))).toMatchObject({ field });
    for (const fields of [{ leader: 1 }, { isr: [1] }, { replicas: [1] }]) accepted(change(fields));
    expect(refusal(() => encodeRecord(change({})))).toMatchObject({ reason: 'field', field: 'leader' });
    expect(
      Buffer.from(encodeRecord(change({ isr: [1] }))).equals(packr.pack([9, 0, ID, 0, null, [1], null])),
    ).toBe(true);
  });

  it('a version 1 change sets at least one reassignment field and no eligible set', () => {
    const v1 = (fields: Partial<Record<string, unknown>>) => change({ version: 1, ...fields });
    expect(refusal(() => encodeRecord(v1({ leader: 1 })))).toMatchObject({ field: 'addingReplicas' });
    expect(refusal(() => encodeRecord(v1({ addingReplicas: [2], elr: [3] })))).toMatchObject({
      field: 'elr',
    });
    accepted(v1({ addingReplicas: [2] }));
    accepted(v1({ removingReplicas: [] }));
    accepted(v1({ addingReplicas: [2], removingReplicas: [1], leader: 2 }));
    expect(
      Buffer.from(encodeRecord(v1({ removingReplicas: [1] }))).equals(
        packr.pack([9, 1, ID, 0, null, null, null, null, [1]]),
      ),
    ).toBe(true);
    expect(decodeRecord(packr.pack([9, 1, ID, 0, null, null, null, [4], null]))).toEqual({
      type: 'partitionChange',
      version: 1,
      topicId: ID,
      partition: 0,
      addingReplicas: [4],
    });
    refusedBoth(
      v1({ addingReplicas: [2, 2] }),
      [9, 1, ID, 0, null, null, null, [2, 2], null],
      'addingReplicas',
    );
    refusedBoth(
      v1({ removingReplicas: [2, 2] }),
      [9, 1, ID, 0, null, null, null, null, [2, 2]],
      'removingReplicas',
    );
  });

  it('a version 2 change may carry any field alone, the eligible set included', () => {
    const v2 = (fields: Partial<Record<string, unknown>>) => change({ version: 2, ...fields });
    for (const fields of [
      { elr: [] },
      { elr: [2, 3] },
      { leader: 1 },
      { addingReplicas: [2] },
      { removingReplicas: [2] },
      { isr: [1], elr: [2] },
    ])
      accepted(v2(fields));
    expect(
      Buffer.from(encodeRecord(v2({ elr: [2] }))).equals(
        packr.pack([9, 2, ID, 0, null, null, null, null, null, [2]]),
      ),
    ).toBe(true);
    expect(decodeRecord(packr.pack([9, 2, ID, 0, null, null, null, [5], [6], [7]]))).toEqual({
      type: 'partitionChange',
      version: 2,
      topicId: ID,
      partition: 0,
      addingReplicas: [5],
      removingReplicas: [6],
      elr: [7],
    });
    refusedBoth(v2({ elr: [1, 1] }), [9, 2, ID, 0, null, null, null, null, null, [1, 1]], 'elr');
    refusedBoth(
      v2({ addingReplicas: [1, 1] }),
      [9, 2, ID, 0, null, null, null, [1, 1], null, null],
      'addingReplicas',
    );
    refusedBoth(
      v2({ removingReplicas: [1, 1] }),
      [9, 2, ID, 0, null, null, null, null, [1, 1], null],
      'removingReplicas',
    );
    expect(
      refusal(() => decodeRecord(packr.pack([9, 2, ID, 0, null, null, null, null, null]))),
    ).toMatchObject({
      reason: 'shape',
    });
    expect(
      refusal(() => decodeRecord(packr.pack([9, 2, ID, 0, null, null, null, null, null, null]))),
    ).toMatchObject({
      reason: 'field',
    });
  });

  it('an unknown version of a known type names the type', () => {
    expect(refusal(() => decodeRecord(packr.pack([9, 3, ID, 0, 1, null, null])))).toMatchObject({
      reason: 'unknownVersion',
    });
    try {
      decodeRecord(packr.pack([8, 2, ID, 0, [1], [1], 1, 0, 0]));
      expect.unreachable();
    } catch (error) {
      expect(isSluiceError(error, 'INVALID_RECORD') && error.details).toEqual({
        reason: 'unknownVersion',
        recordType: 'partition',
      });
    }
    expect(refusal(() => encodeRecord(null as never))).toMatchObject({ reason: 'shape' });
    expect(refusal(() => encodeRecord({ type: 'toString', version: 0 } as never))).toMatchObject({
      reason: 'unknownType',
    });
  });
});

describe('canonical encoding', () => {
  it('a record that decodes but re-encodes to other bytes is refused, naming its type', () => {
    // fenceBroker 7 at epoch 5 with the epoch as a uint8 (cc 05) rather than a positive fixint.
    try {
      decodeRecord(Buffer.from('94050007cc05', 'hex'));
      expect.unreachable();
    } catch (error) {
      expect(isSluiceError(error, 'INVALID_RECORD') && error.details).toEqual({
        reason: 'encoding',
        recordType: 'fenceBroker',
      });
    }
  });

  it('a field count off by one names the type and both counts', () => {
    const shape = refusal(() => decodeRecord(packr.pack([12, 0])));
    expect(shape.reason).toBe('shape');
    expect(shape.message).toContain('removeTopic v0 has 1 fields, got 0');
  });

  it('topic ids round-trip through their 16 bytes and nothing else is one', () => {
    expect(Buffer.from(topicIdToBytes(ID)).toString('hex')).toBe('00000000000000000000000000000001');
    expect(() => topicIdToBytes('not-an-id')).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });
});

describe('what a refusal says', () => {
  const message = (run: () => unknown) => refusal(run).message;

  it('names the field, what it must be and what it got, whatever the value', () => {
    expect(message(() => encodeRecord(fence(-1, 0)))).toBe(
      'metadata record: brokerId must be an integer in [0, 2147483647], got -1',
    );
    const got = (value: unknown) => message(() => encodeRecord(fence(value as number, 0))).split(', got ')[1];
    expect(got(null)).toBe('null');
    expect(got(undefined)).toBe('nothing');
    expect(got([1])).toBe('an array');
    expect(got(new Uint8Array(1))).toBe('bytes');
    expect(got({})).toBe('object');
    expect(got(true)).toBe('boolean');
    // A string is shown quoted, cut to its first 40 characters.
    expect(got(`${'x'.repeat(40)}tail`)).toBe(JSON.stringify('x'.repeat(40)));
  });

  it('says what each kind of field must be', () => {
    const want = (run: () => unknown) => message(run).split(' must be ')[1]?.split(', got ')[0];
    expect(want(() => encodeRecord({ type: 'clusterId', version: 0, clusterId: '' }))).toBe(
      'a well-formed string of 1 to 255 characters',
    );
    expect(want(() => encodeRecord({ type: 'topic', version: 0, name: '', topicId: ID }))).toBe(
      'a topic name of 1 to 249 characters',
    );
    expect(want(() => encodeRecord({ type: 'topic', version: 0, name: 't', topicId: 'x' }))).toBe(
      'a topic id (22 characters of base64url, not zero)',
    );
    expect(want(() => encodeRecord(partition({ isr: [1, 1] })))).toBe('an array of distinct broker ids');
    expect(want(() => encodeRecord(partition({ isr: [-1] })))).toBe('an integer in [0, 2147483647]');
    expect(message(() => encodeRecord(partition({ isr: [-1] })))).toContain('isr[] must be');
    expect(want(() => encodeRecord(register({ endpoints: ids(17) })))).toBe(
      'an array of at most 16 endpoints',
    );
    expect(want(() => encodeRecord(register({ endpoints: [null] })))).toBe('an endpoint {name, host, port}');
    expect(
      want(() =>
        encodeRecord(
          register({
            endpoints: [
              { name: 'h', host: 'a', port: 1 },
              { name: 'h', host: 'b', port: 2 },
            ],
          }),
        ),
      ),
    ).toBe('a name no other endpoint has');
    expect(want(() => encodeRecord(partition({ addingReplicas: [2] })))).toBe('absent in version 0');
    expect(want(() => encodeRecord(change({ version: 1, addingReplicas: [2], elr: [1] })))).toBe(
      'absent in version 1',
    );
    expect(want(() => encodeRecord(change({ version: 1, leader: 1 })))).toBe(
      'set in a version 1 change (or the change is version 0)',
    );
    expect(want(() => encodeRecord(config({ resource: null })))).toBe('a topic or the broker defaults');
    expect(want(() => encodeRecord(config({ value: 5 })))).toBe(
      'a well-formed string of at most 65536 characters, or null',
    );
    expect(want(() => encodeRecord({ type: 'featureLevel', version: 0, name: 'x' as never, level: 1 }))).toBe(
      '"metadata.version"',
    );
    expect(want(() => decodeRecord(packr.pack([3, 0, 1, 'i', 5, null])))).toBe('an array of endpoints');
    expect(want(() => decodeRecord(packr.pack([3, 0, 1, 'i', [5], null])))).toBe(
      'an endpoint [name, host, port]',
    );
    expect(want(() => decodeRecord(packr.pack([10, 0, 2, 'x', 'n', 'v'])))).toBe(
      '"" for the broker defaults',
    );
    expect(want(() => decodeRecord(packr.pack([10, 0, 3, '', 'n', 'v'])))).toBe(
      '1 (topic) or 2 (broker defaults)',
    );
  });

  it('says what is wrong with a record as a whole', () => {
    expect(message(() => decodeRecord(new Uint8Array()))).toBe('metadata record: not one msgpack value');
    expect(message(() => decodeRecord(packr.pack([1])))).toBe(
      'metadata record: a record is an array [type code, version, fields...]',
    );
    expect(message(() => decodeRecord(packr.pack([99, 0])))).toBe(
      'metadata record: unknown record type code 99',
    );
    expect(message(() => decodeRecord(packr.pack([1, 7, 'x'])))).toBe(
      'metadata record: clusterId has no version 7',
    );
    expect(message(() => encodeRecord({ type: 'clusterId', version: 7 } as never))).toBe(
      'metadata record: clusterId has no version 7',
    );
    expect(message(() => encodeRecord({ type: 'nope', version: 0 } as never))).toBe(
      'metadata record: unknown record type string',
    );
    expect(message(() => encodeRecord(5 as never))).toBe('metadata record: a record is an object');
    expect(message(() => encodeRecord(change({})))).toBe(
      'metadata record: a partitionChange changes at least one of leader, isr, replicas',
    );
    expect(message(() => decodeRecord(Buffer.from('94050007cc05', 'hex')))).toBe(
      'metadata record: fenceBroker is not in its canonical encoding',
    );
    expect(refusal(() => decodeRecord(packr.pack([5, 0, 1]))).message).toBe(
      'metadata record: fenceBroker v0 has 2 fields, got 1',
    );
  });

  it('records the type of a record whose version or shape is refused', () => {
    const details = (run: () => unknown) => {
      try {
        run();
      } catch (error) {
        if (isSluiceError(error, 'INVALID_RECORD')) return error.details;
      }
      return undefined;
    };
    expect(details(() => decodeRecord(packr.pack([5, 0, 1])))).toEqual({
      reason: 'shape',
      recordType: 'fenceBroker',
    });
    expect(details(() => decodeRecord(packr.pack([5, 1, 1, 2])))).toEqual({
      reason: 'unknownVersion',
      recordType: 'fenceBroker',
    });
    expect(details(() => encodeRecord({ type: 'fenceBroker', version: 1 } as never))).toEqual({
      reason: 'unknownVersion',
      recordType: 'fenceBroker',
    });
    expect(details(() => decodeRecord(packr.pack(['5', 0, 1, 2])))).toEqual({ reason: 'unknownType' });
    expect(details(() => decodeRecord(packr.pack([5, '0', 1, 2])))).toEqual({
      reason: 'unknownVersion',
      recordType: 'fenceBroker',
    });
  });
});

describe('every field is named when refused', () => {
  it('names the field of each record type that holds it', () => {
    const cases: [MetadataRecord, string][] = [
      [register({ brokerId: -1 }), 'brokerId'],
      [change({ topicId: 'x', leader: 1 }), 'topicId'],
      [change({ isr: [1, 1] }), 'isr'],
      [{ type: 'producerIdBlock', version: 0, brokerId: -1, firstProducerId: 0, size: 1 }, 'brokerId'],
      [{ type: 'producerIdBlock', version: 0, brokerId: 1, firstProducerId: -1, size: 1 }, 'firstProducerId'],
      [{ type: 'removeTopic', version: 0, topicId: 'x' }, 'topicId'],
      [{ type: 'unfenceBroker', version: 0, brokerId: 1, brokerEpoch: -1 }, 'brokerEpoch'],
      [{ type: 'unregisterBroker', version: 0, brokerId: -1, brokerEpoch: 0 }, 'brokerId'],
    ];
    for (const [record, field] of cases)
      expect(
        refusal(() => encodeRecord(record)),
        `${record.type} ${field}`,
      ).toMatchObject({ reason: 'field', field });
  });

  it('a topic id is a string: an array holding one is not', () => {
    expect(isTopicId([ID])).toBe(false);
    expect(
      refusal(() => encodeRecord({ type: 'removeTopic', version: 0, topicId: [ID] as never })),
    ).toMatchObject({
      field: 'topicId',
    });
  });
});
