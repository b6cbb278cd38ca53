import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import {
  decodeImage,
  encodeImage,
  MetadataImage,
  rejectionOf,
  replay,
  replayAll,
  replayRecord,
} from '../../src/metadata/image.js';
import { type MetadataRecord, topicIdFromBytes } from '../../src/metadata/records.js';
import { packr, unpackr } from '../../src/protocol/msgpack.js';

/**
 * Replay: each record's rule, the records it ignores (never a throw), the delta a listener reads,
 * the snapshot format, and the property restarts depend on: a snapshot plus the rest of the log
 * gives the image the whole log gives.
 */

const idOf = (n: number) =>
  topicIdFromBytes(Uint8Array.from({ length: 16 }, (_, i) => (i === 15 ? n + 1 : 7)));
const T1 = idOf(1);
const T2 = idOf(2);

const R = {
  cluster: (clusterId = 'c1'): MetadataRecord => ({ type: 'clusterId', version: 0, clusterId }),
  register: (
    brokerId: number,
    rack: string | null = null,
    incarnationId = `inc-${brokerId}`,
  ): MetadataRecord => ({
    type: 'registerBroker',
    version: 0,
    brokerId,
    incarnationId,
    endpoints: [{ name: 'client', host: `h${brokerId}`, port: 9000 + brokerId }],
    rack,
  }),
  fence: (brokerId: number, brokerEpoch: number): MetadataRecord => ({
    type: 'fenceBroker',
    version: 0,
    brokerId,
    brokerEpoch,
  }),
  unfence: (brokerId: number, brokerEpoch: number): MetadataRecord => ({
    type: 'unfenceBroker',
    version: 0,
    brokerId,
    brokerEpoch,
  }),
  unregister: (brokerId: number, brokerEpoch: number): MetadataRecord => ({
    type: 'unregisterBroker',
    version: 0,
    brokerId,
    brokerEpoch,
  }),
  topic: (name: string, topicId: string): MetadataRecord => ({ type: 'topic', version: 0, name, topicId }),
  partition: (
    topicId: string,
    partition: number,
    replicas: number[],
    leader = replicas[0]!,
  ): MetadataRecord => ({
    type: 'partition',
    version: 0,
    topicId,
    partition,
    replicas,
    isr: replicas,
    leader,
    leaderEpoch: 0,
    partitionEpoch: 0,
  }),
  change: (
    topicId: string,
    partition: number,
    change: { leader?: number; isr?: number[]; replicas?: number[] },
  ): MetadataRecord => ({ type: 'partitionChange', version: 0, topicId, partition, ...change }),
  config: (name: string, value: string | null, topic?: string): MetadataRecord => ({
    type: 'config',
    version: 0,
    resource: topic === undefined ? { type: 'brokerDefaults' } : { type: 'topic', name: topic },
    name,
    value,
  }),
  pids: (firstProducerId: number, size: number): MetadataRecord => ({
    type: 'producerIdBlock',
    version: 0,
    brokerId: 1,
    firstProducerId,
    size,
  }),
  remove: (topicId: string): MetadataRecord => ({ type: 'removeTopic', version: 0, topicId }),
  level: (level: number): MetadataRecord => ({
    type: 'featureLevel',
    version: 0,
    name: 'metadata.version',
    level,
  }),
};

/** Replays records at offsets 1, 2, ... */
function build(records: MetadataRecord[], image = MetadataImage.EMPTY) {
  return replayAll(
    image,
    records.map((record, i) => ({ record, offset: image.lastOffset + i + 1 })),
  );
}

const hex = (image: MetadataImage) => Buffer.from(encodeImage(image)).toString('hex');

describe('replay rules', () => {
  it('a broker registers fenced, with its record offset as its epoch; fence and unfence need that epoch', () => {
    const { after, ignored } = build([R.cluster(), R.register(1, 'r1'), R.unfence(1, 2), R.unfence(1, 9)]);
    expect(after.broker(1)).toMatchObject({
      brokerEpoch: 2,
      fenced: false,
      rack: 'r1',
      incarnationId: 'inc-1',
    });
    expect(ignored.map((i) => [i.offset, i.reason.code])).toEqual([[4, 'INVALID_REQUEST']]);
    expect(ignored[0]!.reason.message).toMatch(/stale/);
    const again = build([R.register(1, 'r2', 'inc-b'), R.unfence(1, 2), R.fence(1, 5)], after).after;
    expect(again.broker(1)).toMatchObject({
      brokerEpoch: 5,
      fenced: true,
      rack: 'r2',
      incarnationId: 'inc-b',
    });
    expect(build([R.unregister(1, 2), R.unregister(1, 5)], again).after.broker(1)).toBeUndefined();
  });

  it('keeps the first cluster id and refuses a second', () => {
    const { after, ignored } = build([R.cluster('a'), R.cluster('b')]);
    expect(after.clusterId).toBe('a');
    expect(after.lastOffset).toBe(2);
    expect(ignored).toHaveLength(1);
  });

  it('creates topics by name and id; partitions come in order and keep the ISR and leader rules', () => {
    const { after, ignored } = build([
      R.topic('a', T1),
      R.partition(T1, 0, [1, 2, 3]),
      R.partition(T1, 2, [1]), // a gap
      R.partition(T2, 0, [1]), // unknown topic
      { ...R.partition(T1, 1, [1, 2]), isr: [1, 3] } as MetadataRecord, // 3 not a replica
      { ...R.partition(T1, 1, [1, 2]), isr: [2] } as MetadataRecord, // leader 1 not in the ISR
      R.partition(T1, 1, [2, 3]),
      R.topic('a', T2), // name in use
      R.topic('b', T1), // id in use
    ]);
    expect(ignored.map((i) => [i.offset, i.reason.code])).toEqual([
      [3, 'INVALID_PARTITIONS'],
      [4, 'UNKNOWN_TOPIC_OR_PARTITION'],
      [5, 'INVALID_REQUEST'],
      [6, 'INVALID_REQUEST'],
      [8, 'TOPIC_ALREADY_EXISTS'],
      [9, 'INVALID_REQUEST'],
    ]);
    expect(after.topic('a')?.topicId).toBe(T1);
    expect(after.topic('a')?.partitions.size).toBe(2);
    expect(after.partition(T1, 1)).toMatchObject({ replicas: [2, 3], leader: 2 });
    expect(after.topic('b')).toBeUndefined();
  });

  it('a partition change bumps the partition epoch, and the leader epoch only for a new leader', () => {
    const base = build([R.topic('a', T1), R.partition(T1, 0, [1, 2, 3])]).after;
    const steps = build(
      [
        R.change(T1, 0, { isr: [1, 2] }),
        R.change(T1, 0, { leader: 1 }), // the same leader
        R.change(T1, 0, { leader: 2 }),
        R.change(T1, 0, { isr: [1] }), // would drop the leader from the ISR
        R.change(T1, 0, { leader: -1, isr: [] }),
        R.change(T1, 1, { leader: 1 }),
        R.change(T1, 0, { replicas: [4], isr: [4], leader: 4 }),
      ],
      base,
    );
    expect(steps.ignored.map((i) => [i.offset, i.reason.code])).toEqual([
      [6, 'INVALID_REQUEST'],
      [8, 'UNKNOWN_TOPIC_OR_PARTITION'],
    ]);
    expect(steps.after.partition(T1, 0)).toEqual({
      topicId: T1,
      partition: 0,
      replicas: [4],
      isr: [4],
      leader: 4,
      leaderEpoch: 3,
      partitionEpoch: 5,
      addingReplicas: [],
      removingReplicas: [],
      elr: [],
    });
  });

  it('sets and deletes configs of topics and of the broker defaults; a topic takes its configs away', () => {
    const { after, ignored } = build([
      R.topic('a', T1),
      R.config('retention.ms', '1', 'a'),
      R.config('retention.ms', '2', 'a'),
      R.config('x', '3', 'nope'),
      R.config('num.partitions', '3'),
      R.config('num.partitions', null),
      R.config('absent', null),
      R.config('segment.ms', '9'),
    ]);
    expect(ignored.map((i) => i.offset)).toEqual([4]);
    expect(after.topic('a')!.configs.sorted()).toEqual([['retention.ms', '2']]);
    expect(after.brokerDefaultConfigs.sorted()).toEqual([['segment.ms', '9']]);
    const recreated = build([R.remove(T1), R.topic('a', T2)], after).after;
    expect(recreated.topic('a')!.configs.size).toBe(0);
    expect(recreated.topicById(T1)).toBeUndefined();
  });

  it('hands out producer ids in blocks that never overlap', () => {
    const { after, ignored } = build([R.pids(0, 1000), R.pids(500, 10), R.pids(2000, 10)]);
    expect(after.nextProducerId).toBe(2010);
    expect(ignored.map((i) => i.offset)).toEqual([2]);
    expect(build([R.pids(2 ** 53 - 5, 10)], after).ignored).toHaveLength(1);
  });

  it('raises metadata.version and never lowers it', () => {
    const { after, ignored } = build([R.level(1), R.level(1)]);
    expect(after.metadataVersion).toBe(1);
    expect(ignored).toEqual([]);
    expect(rejectionOf(after.with({ metadataVersion: 2 }), R.level(1))?.code).toBe('INVALID_REQUEST');
  });

  it('skips a record at or below the last offset (replayed already), and refuses a non-index offset', () => {
    const image = replay(MetadataImage.EMPTY, R.cluster('a'), 5);
    expect(replay(image, R.topic('t', T1), 5)).toBe(image);
    expect(replay(image, R.topic('t', T1), 3)).toBe(image);
    expect(replay(image, R.topic('t', T1), 6).topic('t')).toBeDefined();
    expect(() => replay(image, R.cluster(), 0)).toThrow(/Raft index/);
    expect(() => replay(image, R.cluster(), 1.5)).toThrow(/Raft index/);
  });

  it('tells the controller, as a typed error, what replay would ignore', () => {
    const image = build([R.topic('a', T1)]).after;
    expect(rejectionOf(image, R.topic('a', T2))?.code).toBe('TOPIC_ALREADY_EXISTS');
    expect(rejectionOf(image, R.remove(T2))?.code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    expect(rejectionOf(image, R.partition(T1, 0, [1]))).toBeUndefined();
    const result = replayRecord(image, R.remove(T2), 2);
    expect(result.ignored?.details).toMatchObject({ recordType: 'removeTopic', offset: 2 });
    expect(result.image.lastOffset).toBe(2);
  });
});

describe('the delta', () => {
  it('names what changed: topics, partitions, brokers, configs', () => {
    const base = build([
      R.register(1),
      R.unfence(1, 1),
      R.register(2),
      R.unfence(2, 3),
      R.topic('old', T2),
      R.partition(T2, 0, [1]),
      R.config('x', '1', 'old'),
    ]).after;
    const delta = build(
      [
        R.topic('a', T1),
        R.partition(T1, 0, [1, 2]),
        R.partition(T1, 1, [2, 1]),
        R.change(T1, 1, { isr: [2] }),
        R.remove(T2),
        R.fence(1, 1),
        R.register(2), // a new incarnation: registered again, fenced
        R.register(3),
        R.unfence(3, 15),
        R.config('y', '2'),
      ],
      base,
    );
    expect(delta.ignored).toEqual([]);
    expect(delta.topicsCreated.map((t) => t.name)).toEqual(['a']);
    expect(delta.topicsRemoved.map((t) => t.name)).toEqual(['old']);
    expect(delta.partitionsChanged.map((p) => [p.topicName, p.partition, !!p.before, !!p.after])).toEqual(
      [
        ['a', 0, false, true],
        ['a', 1, false, true],
        ['old', 0, true, false],
      ].sort((x, y) => ((x[0] === 'a' ? T1 : T2) < (y[0] === 'a' ? T1 : T2) ? -1 : 1)),
    );
    expect(delta.partitionsChanged.find((p) => p.topicId === T1 && p.partition === 1)?.after?.isr).toEqual([
      2,
    ]);
    expect(delta.brokersRegistered.map((b) => [b.brokerId, b.brokerEpoch])).toEqual([
      [2, 14],
      [3, 15],
    ]);
    expect(delta.brokersUnregistered.map((b) => [b.brokerId, b.brokerEpoch])).toEqual([[2, 3]]);
    expect(delta.brokersFenced).toEqual([1, 2]);
    expect(delta.brokersUnfenced).toEqual([3]);
    expect(delta.configsChanged).toEqual([{ type: 'topic', name: 'old' }, { type: 'brokerDefaults' }]);
    expect(delta.clusterIdChanged).toBe(false);
  });

  it('lists nothing for a topic created and removed within it, or for records ignored', () => {
    const delta = build([R.topic('a', T1), R.partition(T1, 0, [1]), R.remove(T1), R.fence(9, 1)]);
    expect(delta.topicsCreated).toEqual([]);
    expect(delta.topicsRemoved).toEqual([]);
    expect(delta.partitionsChanged).toEqual([]);
    expect(delta.brokersFenced).toEqual([]);
    expect(delta.ignored.map((i) => i.offset)).toEqual([4]);
  });
});

describe('snapshots', () => {
  it('round-trip an image to the same image and the same bytes', () => {
    const image = build([
      R.cluster(),
      R.level(1),
      R.register(1, 'r1'),
      R.unfence(1, 3),
      R.register(2),
      R.topic('a', T1),
      R.partition(T1, 0, [1, 2]),
      R.change(T1, 0, { leader: 2 }),
      R.config('retention.ms', '5', 'a'),
      R.config('num.partitions', '3'),
      R.pids(0, 1000),
    ]).after;
    const decoded = decodeImage(encodeImage(image));
    expect(hex(decoded)).toBe(hex(image));
    expect(decoded.lastOffset).toBe(11);
    expect(decoded.partition(T1, 0)).toEqual(image.partition(T1, 0));
    expect(decoded.broker(1)).toEqual(image.broker(1));
    expect(decoded.topic('a')?.configs.get('retention.ms')).toBe('5');
    expect(decodeImage(encodeImage(MetadataImage.EMPTY))).toEqual(MetadataImage.EMPTY);
  });

  it('format 2 (metadata.version 3) holds the eligible leader replicas; replay keeps them outside the ISR', () => {
    const elr = (isr: number[], eligible: number[]): MetadataRecord => ({
      type: 'partitionChange',
      version: 2,
      topicId: T1,
      partition: 0,
      isr,
      elr: eligible,
    });
    const { after, ignored } = build([
      R.cluster(),
      R.level(3),
      R.register(1),
      R.topic('a', T1),
      R.partition(T1, 0, [1, 2, 3]),
      elr([1], [2, 3]),
    ]);
    expect(ignored).toEqual([]);
    expect(after.partition(T1, 0)?.elr).toEqual([2, 3]);
    // 2 back in sync: replay drops it from the eligible set.
    const back = build([R.change(T1, 0, { isr: [1, 2] })], after).after;
    expect(back.partition(T1, 0)?.elr).toEqual([3]);
    const decoded = decodeImage(encodeImage(back));
    expect(decoded.partition(T1, 0)).toEqual(back.partition(T1, 0));
    expect(hex(decoded)).toBe(hex(back));
    expect((unpackr.unpack(encodeImage(back)) as unknown[])[0]).toBe(2);
    // A version 2 change below metadata.version 3 is refused, and so is a format that does not go
    // with the level, or an eligible replica that is in sync.
    const low = build([R.cluster(), R.level(2), R.register(1), R.topic('a', T1), R.partition(T1, 0, [1, 2])]);
    const refused = build([elr([1], [2])], low.after);
    expect(refused.ignored.map((i) => i.reason.code)).toEqual(['UNSUPPORTED_VERSION']);
    const fields = unpackr.unpack(encodeImage(back)) as unknown[];
    const wrongLevel = [...fields];
    wrongLevel[3] = 2;
    expect(() => decodeImage(packr.pack(wrongLevel))).toThrow(
      expect.objectContaining({ code: 'CORRUPT_MESSAGE' }),
    );
    const inSync = structuredClone(fields) as unknown[];
    ((inSync[6] as unknown[][])[0]![2] as unknown[][])[0]![7] = [1];
    expect(() => decodeImage(packr.pack(inSync))).toThrow(
      expect.objectContaining({ code: 'CORRUPT_MESSAGE' }),
    );
  });

  it('has the documented layout', () => {
    const image = build([R.cluster('c'), R.register(1), R.topic('t', T1), R.partition(T1, 0, [1])]).after;
    expect(hex(image)).toBe(
      Buffer.from(
        packr.pack([
          0,
          4,
          'c',
          0,
          0,
          [[1, 'inc-1', 2, true, null, [['client', 'h1', 9001]]]],
          [[T1, 't', [[[1], [1], 1, 0, 0]], []]],
          [],
        ]),
      ).toString('hex'),
    );
  });

  it('refuses a damaged snapshot with CORRUPT_MESSAGE, never a crash', () => {
    const good = encodeImage(build([R.register(1), R.topic('t', T1), R.partition(T1, 0, [1])]).after);
    const bad = [
      new Uint8Array(),
      packr.pack([1, 0, null, 0, 0, [], [], []]),
      packr.pack([0, 0, null, 0, 0, [], []]),
      packr.pack([0, -1, null, 0, 0, [], [], []]),
      packr.pack([0, 0, null, 0, 0, [[1, 'i', 0, false, null, []]], [], []]),
      packr.pack([0, 0, null, 0, 0, [], [[T1, 't', [[[1], [2], 1, 0, 0]], []]], []]),
      packr.pack([0, 0, null, 0, 0, [], [[T1, 't', [], [['a', null]]]], []]),
      packr.pack([
        0,
        0,
        null,
        0,
        0,
        [],
        [
          [T1, 't', [], []],
          [T1, 'u', [], []],
        ],
        [],
      ]),
    ];
    for (const bytes of bad)
      expect(() => decodeImage(bytes)).toThrow(expect.objectContaining({ code: 'CORRUPT_MESSAGE' }));
    fc.assert(
      fc.property(fc.nat(), fc.integer({ min: 0, max: 255 }), (at, byte) => {
        const bytes = Buffer.from(good);
        bytes[at % bytes.length] = byte;
        try {
          decodeImage(bytes);
        } catch (error) {
          if (!isSluiceError(error, 'CORRUPT_MESSAGE')) throw error;
        }
      }),
    );
  });
});

/**
 * Intents, turned into records against the image as it stands, so that most of them apply (a
 * fence with the broker's real epoch, a change to a partition that exists) and some do not.
 */
interface Intent {
  kind: number;
  a: number;
  b: number;
  c: number;
  stale: boolean;
}
const intent: fc.Arbitrary<Intent> = fc.record({
  kind: fc.nat(11),
  a: fc.nat(5),
  b: fc.nat(5),
  c: fc.nat(5),
  stale: fc.boolean(),
});

function recordFor(image: MetadataImage, { kind, a, b, c, stale }: Intent): MetadataRecord {
  const brokerId = a % 4;
  const epoch = (image.broker(brokerId)?.brokerEpoch ?? 1) + (stale && c === 0 ? 1 : 0);
  const existing = [...image.topicsById.keys()].sort();
  // Mostly a topic that exists, sometimes any id of a small set (which may not).
  const topicId = existing.length > 0 && !(stale && c < 2) ? existing[a % existing.length]! : idOf(a);
  const topic = image.topicById(topicId);
  const count = topic?.partitions.size ?? 0;
  const replicas = [b % 4, (b + 1 + (c % 3)) % 4];
  switch (kind) {
    case 0:
      return image.clusterId === null || (stale && c === 0) ? R.cluster(`c${a}`) : R.level(1);
    case 1:
      return R.register(brokerId, b % 2 ? `r${b}` : null, `i${c}`);
    case 2:
      return R.fence(brokerId, epoch);
    case 3:
      return R.unfence(brokerId, epoch);
    case 4:
      return c === 0 ? R.unregister(brokerId, epoch) : R.level(1);
    case 5:
      return R.topic(`t${b}`, idOf(a + 6 * c));
    case 6:
    case 7:
      return R.partition(topicId, stale && c === 0 ? count + 1 : count, replicas);
    case 8: {
      const current = topic?.partitions.get(b % Math.max(count, 1));
      const isr = current ? current.replicas.slice(0, 1 + (c % current.replicas.length)) : [b];
      return R.change(
        topicId,
        b % Math.max(count, 1),
        c % 2 ? { isr, leader: isr[0]! } : { leader: isr[0]! },
      );
    }
    case 9:
      return R.config(`n${b}`, c === 0 ? null : `v${c}`, c % 2 ? undefined : (topic?.name ?? `t${a}`));
    case 10:
      return R.pids(image.nextProducerId - (stale ? 1 : 0), 1 + c);
    default:
      return R.remove(topicId);
  }
}

function recordsFor(intents: Intent[]): MetadataRecord[] {
  let image = MetadataImage.EMPTY;
  return intents.map((i, n) => {
    const record = recordFor(image, i);
    image = replay(image, record, n + 1);
    return record;
  });
}

describe('replay and snapshots together', () => {
  it('a snapshot after any prefix, decoded, plus the rest of the log, gives the image the whole log gives', () => {
    fc.assert(
      fc.property(fc.array(intent, { maxLength: 80 }), fc.nat(), fc.nat(), (intents, cut, back) => {
        const records = recordsFor(intents);
        const whole = build(records).after;
        const at = cut % (records.length + 1);
        const snapshot = decodeImage(encodeImage(build(records.slice(0, at)).after));
        // After a restart the driver may apply again entries the snapshot already holds.
        const from = Math.max(0, at - (back % 4));
        let image = snapshot;
        for (let i = from; i < records.length; i++) image = replay(image, records[i]!, i + 1);
        expect(hex(image)).toBe(hex(whole));
      }),
      { numRuns: 600 },
    );
  });

  it('the generator of that property writes records that apply, not only ignored ones', () => {
    const sample = fc.sample(fc.array(intent, { minLength: 80, maxLength: 80 }), { numRuns: 20, seed: 1 });
    let applied = 0;
    let total = 0;
    for (const intents of sample) {
      const delta = build(recordsFor(intents));
      total += intents.length;
      applied += intents.length - delta.ignored.length;
    }
    expect(applied / total).toBeGreaterThan(0.6);
  });
});

describe('scale', () => {
  it('a change to one partition shares every other topic and partition with the image before', () => {
    const records: MetadataRecord[] = [];
    for (let t = 0; t < 50; t++) {
      records.push(R.topic(`t${t}`, idOf(t)));
      for (let p = 0; p < 10; p++) records.push(R.partition(idOf(t), p, [p % 3, (p + 1) % 3]));
    }
    const before = build(records).after;
    const after = replay(before, R.change(idOf(7), 3, { leader: 1 }), before.lastOffset + 1);
    for (let t = 0; t < 50; t++) {
      if (t !== 7) expect(after.topicById(idOf(t))).toBe(before.topicById(idOf(t)));
    }
    for (let p = 0; p < 10; p++) {
      const same = after.partition(idOf(7), p) === before.partition(idOf(7), p);
      expect(same).toBe(p !== 3);
    }
    expect(after.brokers).toBe(before.brokers);
    expect(after.topicIdsByName).toBe(before.topicIdsByName);
  });

  it('replays 1,000 topics of 10 partitions (11,000 records) and a snapshot of them', () => {
    // Fewer under mutation testing (stryker/vitest.metadata.config.ts), where it runs per mutant.
    const topics = Number(process.env.SLUICE_SCALE_TOPICS ?? 1000);
    const records: MetadataRecord[] = [];
    for (let t = 0; t < topics; t++) {
      const topicId = topicIdFromBytes(
        Uint8Array.from({ length: 16 }, (_, i) => (i < 2 ? (t >> (8 * i)) & 255 : 9)),
      );
      records.push(R.topic(`topic-${t}`, topicId));
      for (let p = 0; p < 10; p++) records.push(R.partition(topicId, p, [p % 5, (p + 1) % 5, (p + 2) % 5]));
    }
    const { after, ignored } = build(records);
    expect(ignored).toEqual([]);
    expect(after.topicsById.size).toBe(topics);
    expect([...after.topicsById.values()].reduce((n, t) => n + t.partitions.size, 0)).toBe(10 * topics);
    expect(hex(decodeImage(encodeImage(after)))).toBe(hex(after));
  });
});
