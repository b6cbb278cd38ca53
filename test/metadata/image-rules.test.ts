import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/common/errors.js';
import {
  decodeImage,
  encodeImage,
  MetadataDeltaBuilder,
  type MetadataImage,
  PersistentMap,
  rejectionOf,
  replay,
  replayAll,
} from '../../src/metadata/image.js';
import type { ConfigResource, MetadataRecord } from '../../src/metadata/records.js';
import { packr, unpackr } from '../../src/protocol/msgpack.js';
import { buildImage, oneTopic, partitionRecord, TOPIC_ID, topicId } from './rules-image.js';

/**
 * The rules of image.ts one by one: the persistent map's shape (distinct numbers never share a
 * hash, a collision node holds only equal hashes and distinct keys, no branch keeps a lone leaf, so
 * a path stays short; a set that changes nothing returns the map itself, also for colliding keys;
 * no undefined values); each replay refusal with its code and message (what the controller
 * answers); a record that changes nothing sharing the whole image; the eligible set losing a
 * replica that is no longer one; the delta's lists (sorted, each resource once, the net change of
 * a broker's fencing, a config set to its value not a change, the cluster id and version flags);
 * each snapshot refusal with its message.
 */

// ---- the persistent map's shape ----

interface Node {
  kind: string;
  hash?: number;
  key?: unknown;
  bitmap?: number;
  children?: Node[];
  leaves?: Node[];
}

const rootOf = (map: PersistentMap<string | number, unknown>): Node | undefined =>
  (map as unknown as { root: Node | undefined }).root;

function popcount(x: number): number {
  let n = 0;
  for (let v = x >>> 0; v !== 0; v >>>= 1) n += v & 1;
  return n;
}

/** Every rule of the trie's shape that `node` breaks; its depth and collision count. */
function shape(root: Node | undefined) {
  const problems: string[] = [];
  let depth = 0;
  let collisions = 0;
  const walk = (node: Node, level: number) => {
    depth = Math.max(depth, level);
    if (node.kind === 'leaf') return;
    if (node.kind === 'collision') {
      collisions++;
      const leaves = node.leaves ?? [];
      if (leaves.length < 2) problems.push(`a collision of ${leaves.length} leaves`);
      if (!leaves.every((l) => l.kind === 'leaf' && l.hash === node.hash))
        problems.push('a collision of unequal hashes');
      if (new Set(leaves.map((l) => l.key)).size !== leaves.length)
        problems.push('a key twice in a collision');
      return;
    }
    if (node.kind !== 'branch') {
      problems.push(`a node of kind ${JSON.stringify(node.kind)}`);
      return;
    }
    const children = node.children ?? [];
    if (popcount(node.bitmap ?? 0) !== children.length)
      problems.push('a bitmap that does not count the children');
    if (children.length === 0) problems.push('an empty branch');
    if (children.length === 1 && children[0]!.kind !== 'branch')
      problems.push('a branch keeping a lone leaf');
    for (const child of children) walk(child, level + 1);
  };
  if (root) walk(root, 0);
  return { problems, depth, collisions };
}

describe('the persistent map’s shape', () => {
  it('gives distinct 32-bit numbers distinct hashes, and strings of topic ids a path of at most 7 nodes', () => {
    let numbers = PersistentMap.empty<number, number>();
    for (let i = 0; i < 4000; i++) numbers = numbers.set(i * 7919, i);
    expect(shape(rootOf(numbers))).toMatchObject({ problems: [], collisions: 0 });
    expect(shape(rootOf(numbers)).depth).toBeLessThanOrEqual(6);
    let strings = PersistentMap.empty<string, number>();
    for (let i = 0; i < 4000; i++) strings = strings.set(topicId(i), i);
    const s = shape(rootOf(strings));
    expect(s.problems).toEqual([]);
    expect(s.collisions).toBeLessThanOrEqual(1);
    expect(s.depth).toBeLessThanOrEqual(6);
  });

  it('keeps its shape while keys come and go: no lone leaf under a branch, no empty branch', () => {
    let map = PersistentMap.empty<number, number>();
    const keys = Array.from({ length: 600 }, (_, i) => (i * 2654435761) % 100_003);
    for (const k of keys) map = map.set(k, k);
    for (let i = 0; i < keys.length; i++) {
      map = map.delete(keys[(i * 37) % keys.length]!);
      if (i % 25 === 0) expect(shape(rootOf(map)).problems).toEqual([]);
    }
    expect(map.size).toBe(0);
  });

  // Numbers are hashed as 32-bit integers: 5, 5 + 2^32 and 5 + 2^33 share a hash.
  const a = 5;
  const b = 5 + 2 ** 32;
  const c = 5 + 2 ** 33;

  it('holds three keys of one hash in one collision node, each with its own value, and deletes one at a time', () => {
    let map = PersistentMap.from<number, string>([
      [a, 'a'],
      [b, 'b'],
      [c, 'c'],
      [1, 'one'],
    ]);
    expect(shape(rootOf(map)).problems).toEqual([]);
    map = map.set(b, 'B');
    expect([map.get(a), map.get(b), map.get(c), map.size]).toEqual(['a', 'B', 'c', 4]);
    expect(shape(rootOf(map)).problems).toEqual([]);
    const without = map.delete(a);
    expect([without.get(a), without.get(b), without.get(c), without.size]).toEqual([undefined, 'B', 'c', 3]);
    expect(shape(rootOf(without)).problems).toEqual([]);
    const one = without.delete(c);
    expect([one.get(b), one.get(c), one.get(1)]).toEqual(['B', undefined, 'one']);
    expect(shape(rootOf(one)).problems).toEqual([]);
    expect(map.get(a)).toBe('a');
  });

  it('returns itself for a set of a colliding key to the value it has', () => {
    const map = PersistentMap.from<number, string>([
      [a, 'a'],
      [b, 'b'],
      [c, 'c'],
    ]);
    expect(map.set(b, 'b')).toBe(map);
    expect(map.set(c, 'c')).toBe(map);
  });

  it('refuses an undefined value (it could not be told from an absent key)', () => {
    expect(() => PersistentMap.empty<number, unknown>().set(1, undefined)).toThrow(
      'a persistent map holds no undefined values',
    );
  });
});

// ---- replay ----

const base = () =>
  oneTopic([{ id: 1 }, { id: 2 }, { id: 3 }], [{ replicas: [1, 2, 3], isr: [1, 2], leader: 1 }], 3);

function rejected(image: MetadataImage, record: MetadataRecord): { code: string; message: string } {
  const error = rejectionOf(image, record);
  if (error === undefined) throw new Error(`${record.type} applied`);
  expect(error.details).toEqual({ recordType: record.type });
  return { code: error.code, message: error.message };
}

describe('replay refusals', () => {
  it('names what is wrong, with the code the controller answers', () => {
    const image = base();
    const old = buildImage([{ id: 1 }], [], 1);
    const U = topicId(9);
    const cases: [MetadataImage, MetadataRecord, string, string][] = [
      [
        old,
        partitionRecord(U, 0, { replicas: [1], addingReplicas: [], removingReplicas: [] }),
        'UNSUPPORTED_VERSION',
        'partition v1 needs metadata.version 2; the cluster is at 1',
      ],
      [
        buildImage([{ id: 1 }], [], 2),
        { type: 'partitionChange', version: 2, topicId: U, partition: 0, elr: [] },
        'UNSUPPORTED_VERSION',
        'partitionChange v2 needs metadata.version 3; the cluster is at 2',
      ],
      [
        image,
        { type: 'clusterId', version: 0, clusterId: 'd' },
        'INVALID_REQUEST',
        'the cluster id is set already (c)',
      ],
      [
        image,
        { type: 'featureLevel', version: 0, name: 'metadata.version', level: 2 },
        'INVALID_REQUEST',
        'metadata.version 3 cannot go down',
      ],
      [
        image,
        { type: 'unregisterBroker', version: 0, brokerId: 9, brokerEpoch: 1 },
        'INVALID_REQUEST',
        'broker 9 is not registered',
      ],
      [image, { type: 'topic', version: 0, name: 't', topicId: U }, 'TOPIC_ALREADY_EXISTS', 'topic t exists'],
      [
        image,
        { type: 'topic', version: 0, name: 'u', topicId: TOPIC_ID },
        'INVALID_REQUEST',
        `topic id ${TOPIC_ID} is in use`,
      ],
      [image, partitionRecord(U, 0, { replicas: [1] }), 'UNKNOWN_TOPIC_OR_PARTITION', `no topic has id ${U}`],
      [
        image,
        partitionRecord(TOPIC_ID, 3, { replicas: [1] }),
        'INVALID_PARTITIONS',
        'topic t has 1 partitions: the next one is 1, not 3',
      ],
      [
        image,
        { type: 'partitionChange', version: 0, topicId: TOPIC_ID, partition: 5, leader: 1 },
        'UNKNOWN_TOPIC_OR_PARTITION',
        `no partition ${TOPIC_ID}/5`,
      ],
      [
        image,
        { type: 'config', version: 0, resource: { type: 'topic', name: 'nope' }, name: 'a', value: 'b' },
        'UNKNOWN_TOPIC_OR_PARTITION',
        'no topic nope',
      ],
      [
        image,
        { type: 'removeTopic', version: 0, topicId: U },
        'UNKNOWN_TOPIC_OR_PARTITION',
        `no topic has id ${U}`,
      ],
      [
        image,
        partitionRecord(TOPIC_ID, 1, { replicas: [1, 2], addingReplicas: [3], removingReplicas: [] }),
        'INVALID_REQUEST',
        'an adding replica is not a replica',
      ],
      [
        image,
        partitionRecord(TOPIC_ID, 1, { replicas: [1, 2], addingReplicas: [], removingReplicas: [3] }),
        'INVALID_REQUEST',
        'a removing replica is not a replica',
      ],
      [
        image,
        partitionRecord(TOPIC_ID, 1, { replicas: [1, 2], addingReplicas: [2], removingReplicas: [2] }),
        'INVALID_REQUEST',
        'a replica is both adding and removing',
      ],
      [
        image,
        partitionRecord(TOPIC_ID, 1, { replicas: [1, 2], addingReplicas: [], removingReplicas: [2, 1] }),
        'INVALID_REQUEST',
        'a reassignment removes every replica',
      ],
      [
        image,
        {
          type: 'partitionChange',
          version: 1,
          topicId: TOPIC_ID,
          partition: 0,
          addingReplicas: [1],
          removingReplicas: [1],
        },
        'INVALID_REQUEST',
        'a replica is both adding and removing',
      ],
    ];
    for (const [on, record, code, message] of cases) expect(rejected(on, record)).toEqual({ code, message });
  });

  it('hands out producer ids only above the last block, and never past 2^53', () => {
    const image = replay(
      base(),
      { type: 'producerIdBlock', version: 0, brokerId: 1, firstProducerId: 0, size: 1000 },
      base().lastOffset + 1,
    );
    expect(
      rejected(image, { type: 'producerIdBlock', version: 0, brokerId: 1, firstProducerId: 999, size: 1 }),
    ).toEqual({
      code: 'INVALID_REQUEST',
      message: 'producer ids below 1000 are handed out already, not 999',
    });
    expect(
      rejected(image, {
        type: 'producerIdBlock',
        version: 0,
        brokerId: 1,
        firstProducerId: Number.MAX_SAFE_INTEGER,
        size: 1,
      }),
    ).toEqual({ code: 'INVALID_REQUEST', message: 'producer ids run past 2^53' });
  });

  it('ignores an unregistration with a stale broker epoch: the broker stays', () => {
    const image = base();
    const epoch = image.broker(2)!.brokerEpoch;
    const record: MetadataRecord = {
      type: 'unregisterBroker',
      version: 0,
      brokerId: 2,
      brokerEpoch: epoch + 1,
    };
    expect(rejected(image, record)).toEqual({
      code: 'INVALID_REQUEST',
      message: `broker 2 has epoch ${epoch}, not ${epoch + 1} (a stale record)`,
    });
    expect(replay(image, record, image.lastOffset + 1).broker(2)).toBe(image.broker(2));
  });

  it('a fence of a fenced broker (an unfence of an unfenced one) shares every broker with the image before', () => {
    const image = base();
    const unfence: MetadataRecord = {
      type: 'unfenceBroker',
      version: 0,
      brokerId: 2,
      brokerEpoch: image.broker(2)!.brokerEpoch,
    };
    expect(replay(image, unfence, image.lastOffset + 1).brokers).toBe(image.brokers);
    const fenced = replay(image, { ...unfence, type: 'fenceBroker' }, image.lastOffset + 1);
    expect(replay(fenced, { ...unfence, type: 'fenceBroker' }, fenced.lastOffset + 1).brokers).toBe(
      fenced.brokers,
    );
  });

  it('drops from the eligible set a replica that stops being a replica', () => {
    let image = base();
    image = replay(
      image,
      { type: 'partitionChange', version: 2, topicId: TOPIC_ID, partition: 0, elr: [3] },
      image.lastOffset + 1,
    );
    expect(image.partition(TOPIC_ID, 0)!.elr).toEqual([3]);
    image = replay(
      image,
      { type: 'partitionChange', version: 0, topicId: TOPIC_ID, partition: 0, replicas: [1, 2] },
      image.lastOffset + 1,
    );
    expect(image.partition(TOPIC_ID, 0)!.elr).toEqual([]);
  });
});

// ---- the delta ----

function deltaOf(image: MetadataImage, records: MetadataRecord[]) {
  const delta = replayAll(
    image,
    records.map((record, i) => ({ record, offset: image.lastOffset + 1 + i })),
  );
  expect(delta.ignored.map((i) => i.reason.message)).toEqual([]);
  return delta;
}

const register = (brokerId: number): MetadataRecord => ({
  type: 'registerBroker',
  version: 0,
  brokerId,
  incarnationId: `n${brokerId}`,
  endpoints: [{ name: 'public', host: 'h', port: 9000 }],
  rack: null,
});

describe('the delta', () => {
  it('the builder’s image is the image after the records it replayed', () => {
    const image = base();
    const builder = new MetadataDeltaBuilder(image);
    builder.replay(register(7), image.lastOffset + 1);
    expect(builder.image.broker(7)?.brokerEpoch).toBe(image.lastOffset + 1);
    expect(builder.build().after).toBe(builder.image);
  });

  it('lists brokers by id, an unregistration as unregistered, an unfence as unfenced, a new broker as not unfenced', () => {
    const image = base();
    const e = (id: number) => image.broker(id)!.brokerEpoch;
    const fenced = deltaOf(image, [
      { type: 'fenceBroker', version: 0, brokerId: 3, brokerEpoch: e(3) },
    ]).after;
    const delta = deltaOf(fenced, [
      register(9),
      register(5),
      register(7),
      { type: 'unregisterBroker', version: 0, brokerId: 2, brokerEpoch: e(2) },
      { type: 'unfenceBroker', version: 0, brokerId: 3, brokerEpoch: e(3) },
    ]);
    expect(delta.brokersRegistered.map((b) => b.brokerId)).toEqual([5, 7, 9]);
    expect(delta.brokersUnregistered.map((b) => b.brokerId)).toEqual([2]);
    expect(delta.brokersUnfenced).toEqual([3]);
    expect(delta.brokersFenced).toEqual([]);
  });

  it('a broker fenced and unfenced again within the delta, or unregistered while fenced, is in neither list', () => {
    const image = base();
    const epoch = (id: number) => image.broker(id)!.brokerEpoch;
    const fence = (id: number): MetadataRecord => ({
      type: 'fenceBroker',
      version: 0,
      brokerId: id,
      brokerEpoch: epoch(id),
    });
    const start = deltaOf(image, [fence(3)]).after;
    const delta = deltaOf(start, [
      fence(1),
      { type: 'unfenceBroker', version: 0, brokerId: 1, brokerEpoch: epoch(1) },
      { type: 'unregisterBroker', version: 0, brokerId: 3, brokerEpoch: epoch(3) },
    ]);
    expect(delta.brokersFenced).toEqual([]);
    expect(delta.brokersUnfenced).toEqual([]);
  });

  it('lists topics created and removed by topic id', () => {
    const image = buildImage(
      [{ id: 1 }],
      [
        { name: 'x', topicId: topicId(8), partitions: [] },
        { name: 'y', topicId: topicId(3), partitions: [] },
      ],
    );
    const delta = deltaOf(image, [
      { type: 'topic', version: 0, name: 'a', topicId: topicId(7) },
      { type: 'topic', version: 0, name: 'b', topicId: topicId(2) },
      { type: 'topic', version: 0, name: 'c', topicId: topicId(5) },
      { type: 'removeTopic', version: 0, topicId: topicId(8) },
      { type: 'removeTopic', version: 0, topicId: topicId(3) },
    ]);
    expect(delta.topicsCreated.map((t) => t.name)).toEqual(['b', 'c', 'a']);
    expect(delta.topicsRemoved.map((t) => t.name)).toEqual(['y', 'x']);
  });

  it('lists each changed config resource once: topics apart from each other and from the broker defaults', () => {
    const image = buildImage(
      [{ id: 1 }],
      [
        { name: 't', topicId: topicId(1), partitions: [] },
        { name: 'u', topicId: topicId(2), partitions: [] },
      ],
    );
    const config = (resource: ConfigResource, name: string, value: string | null): MetadataRecord => ({
      type: 'config',
      version: 0,
      resource,
      name,
      value,
    });
    const delta = deltaOf(image, [
      config({ type: 'topic', name: 't' }, 'retention.ms', '1'),
      config({ type: 'topic', name: 'u' }, 'retention.ms', '2'),
      config({ type: 'brokerDefaults' }, 'retention.ms', '3'),
      { type: 'topic', version: 0, name: 'n', topicId: topicId(3) },
      config({ type: 'topic', name: 'n' }, 'retention.ms', '4'),
    ]);
    const names = (d: typeof delta) =>
      d.configsChanged.map((r) => (r.type === 'topic' ? `topic:${r.name}` : r.type)).sort();
    expect(names(delta)).toEqual(['brokerDefaults', 'topic:n', 'topic:t', 'topic:u']);
    // A change and then the removal of the topic: the topic once.
    const removal = deltaOf(delta.after, [
      config({ type: 'topic', name: 'u' }, 'retention.ms', '5'),
      { type: 'removeTopic', version: 0, topicId: topicId(2) },
    ]);
    expect(names(removal)).toEqual(['topic:u']);
    // A config set to the value it has changes nothing.
    expect(
      deltaOf(delta.after, [config({ type: 'topic', name: 't' }, 'retention.ms', '1')]).configsChanged,
    ).toEqual([]);
  });

  it('flags the cluster id and metadata.version only when they change', () => {
    const image = buildImage([{ id: 1 }], [], 1);
    const none = deltaOf(image, [register(4)]);
    expect([none.clusterIdChanged, none.metadataVersionChanged]).toEqual([false, false]);
    const raised = deltaOf(image, [{ type: 'featureLevel', version: 0, name: 'metadata.version', level: 2 }]);
    expect(raised.metadataVersionChanged).toBe(true);
    const fresh = replayAll(image, []).before.with({ clusterId: null, lastOffset: image.lastOffset });
    const named = deltaOf(fresh, [{ type: 'clusterId', version: 0, clusterId: 'z' }]);
    expect([named.clusterIdChanged, named.metadataVersionChanged]).toEqual([true, false]);
  });
});

// ---- snapshots ----

/** A snapshot's decoded fields, edited by hand into damaged forms. */
// biome-ignore lint/suspicious/noExplicitAny: nested msgpack arrays edited by index
type Fields = any[];

function corruptMessage(bytes: Uint8Array): { message: string; details: unknown } {
  try {
    decodeImage(bytes);
  } catch (error) {
    if (isSluiceError(error, 'CORRUPT_MESSAGE')) return { message: error.message, details: error.details };
    throw error;
  }
  throw new Error('the snapshot was accepted');
}

describe('snapshot refusals', () => {
  const image = oneTopic(
    [{ id: 1 }, { id: 2, rack: 'r' }],
    [{ replicas: [1, 2], isr: [1, 2], leader: 1 }],
    3,
  );
  const good = () => unpackr.unpack(encodeImage(image)) as unknown[];
  /** The good snapshot with `edit` applied to its decoded fields. */
  const damaged = (edit: (fields: Fields) => void) => {
    const fields = good();
    edit(fields);
    return packr.pack(fields);
  };
  const broker = (f: Fields) => f[5][0] as unknown[];
  const partition = (f: Fields) => f[6][0][2][0] as unknown[];

  it('decodes the good one (the edits below are what breaks it)', () => {
    expect(encodeImage(decodeImage(packr.pack(good())))).toEqual(encodeImage(image));
  });

  it('names what is wrong, under "metadata snapshot:", with the reason snapshot', () => {
    const cases: [Uint8Array, string][] = [
      [new Uint8Array([0x92, 0x01]), 'not one msgpack value'],
      [packr.pack(7), 'the snapshot is not an array'],
      [damaged((f) => f.push(0)), 'the snapshot has 9 fields, not 8'],
      [damaged((f) => (f[0] = 7)), 'unknown format version 7'],
      [damaged((f) => (f[5] = 'x')), 'brokers is not an array'],
      [damaged((f) => (f[6] = 'x')), 'topics is not an array'],
      [damaged((f) => broker(f).push(0)), 'a broker has 7 fields, not 6'],
      [damaged((f) => (broker(f)[3] = 1)), 'fenced is not a boolean'],
      [damaged((f) => (broker(f)[2] = 1.5)), 'a broker epoch is not a Raft index'],
      [damaged((f) => (broker(f)[2] = '3')), 'a broker epoch is not a Raft index'],
      [damaged((f) => (broker(f)[2] = 0)), 'a broker epoch is not a Raft index'],
      [damaged((f) => f[5].push([...broker(f)])), 'broker 1 appears twice'],
      [damaged((f) => f[6][0].push(0)), 'a topic has 5 fields, not 4'],
      [damaged((f) => (f[6][0][2] = 'x')), 'partitions is not an array'],
      [damaged((f) => partition(f).push(0)), 'a partition has 9 fields, not 8'],
      [
        damaged((f) => (partition(f)[1] = [1, 3])),
        'partition t/0: the ISR holds a broker that is not a replica',
      ],
      [
        damaged((f) => (partition(f)[7] = [2])),
        'partition t/0: an eligible leader replica is in sync or not a replica',
      ],
      [damaged((f) => f[6].push([...f[6][0]])), `topic t (${TOPIC_ID}) appears twice`],
      [damaged((f) => (f[6][0][3] = 'x')), 'configs is not an array'],
      [damaged((f) => (f[6][0][3] = [['a']])), 'a config has 1 fields, not 2'],
      [damaged((f) => (f[6][0][3] = [['a', null]])), 'a config has no value'],
      [
        damaged(
          (f) =>
            (f[6][0][3] = [
              ['a', '1'],
              ['a', '2'],
            ]),
        ),
        'config a appears twice',
      ],
      [
        damaged(
          (f) =>
            (f[7] = [
              ['a', '1'],
              ['a', '2'],
            ]),
        ),
        'config a appears twice',
      ],
      [damaged((f) => (f[1] = 1.5)), 'lastOffset is not a non-negative integer'],
      [damaged((f) => (f[1] = '4')), 'lastOffset is not a non-negative integer'],
      [damaged((f) => (f[4] = -1)), 'nextProducerId is not a non-negative integer'],
      [damaged((f) => (f[3] = 2.5)), 'metadataVersion is not a non-negative integer'],
      [damaged((f) => (f[3] = 2)), 'format version 2 does not go with metadata.version 2'],
    ];
    for (const [bytes, message] of cases)
      expect(corruptMessage(bytes)).toEqual({
        message: `metadata snapshot: ${message}`,
        details: { reason: 'snapshot' },
      });
  });

  it('refuses an eligible set with one good and one in-sync member', () => {
    const wide = oneTopic(
      [{ id: 1 }, { id: 2 }, { id: 3 }],
      [{ replicas: [1, 2, 3], isr: [1, 2], leader: 1 }],
      3,
    );
    const fields = unpackr.unpack(encodeImage(wide)) as Fields;
    fields[6][0][2][0][7] = [3, 1];
    expect(corruptMessage(packr.pack(fields)).message).toBe(
      'metadata snapshot: partition t/0: an eligible leader replica is in sync or not a replica',
    );
  });

  it('checks the cluster id and a metadata.version past the highest, wrapping the field’s own error', () => {
    for (const edit of [(f: Fields) => (f[2] = 5), (f: Fields) => (f[2] = ''), (f: Fields) => (f[3] = 4)]) {
      const { message, details } = corruptMessage(damaged(edit));
      expect(details).toEqual({ reason: 'snapshot' });
      expect(message).toMatch(/^metadata snapshot: /);
      expect(message).not.toMatch(/^metadata snapshot: metadata snapshot/);
    }
  });
});
