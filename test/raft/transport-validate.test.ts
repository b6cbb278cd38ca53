import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { pack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnapshotAssembler } from '../../src/broker/raft-transport.js';
import { ManualClock } from '../../src/common/clock.js';
import { SeededRandom } from '../../src/common/random.js';
import { internalRaftRoutes } from '../../src/http/routes/internal-raft.js';
import {
  checkRaftMessage,
  checkSnapshotChunk,
  FieldError,
  RAFT_ENTRIES_PER_MESSAGE_MAX,
  RAFT_MESSAGES_PATH,
  type SnapshotChunk,
  type WireRaftMessage,
} from '../../src/protocol/internal-api.js';
import { RaftCore } from '../../src/raft/core.js';
import { encodeConfigChange, type Message } from '../../src/raft/types.js';

/**
 * The receiver checks every field of every Raft message before any of it reaches the driver: one
 * well-formed message and a set of malformed ones per type, the sender and receiver checks, and a
 * property that random mutations of valid messages are refused or still well-formed, and never
 * crash the route or the core they are stepped into.
 */

// Both directions: the wire shapes are exactly Raft's message type.
const toWire = (m: Message): WireRaftMessage => m;
const fromWire = (m: WireRaftMessage): Message => m;
void toWire;
void fromWire;

const bytes = (text: string) => new Uint8Array(Buffer.from(text));
const VALID: Record<Message['type'], Message> = {
  preVote: { type: 'preVote', from: 1, to: 2, term: 4, lastIndex: 10, lastTerm: 3 },
  preVoteResponse: { type: 'preVoteResponse', from: 1, to: 2, term: 4, granted: true },
  vote: { type: 'vote', from: 1, to: 2, term: 4, lastIndex: 10, lastTerm: 3, transfer: false },
  voteResponse: { type: 'voteResponse', from: 1, to: 2, term: 4, granted: false },
  append: {
    type: 'append',
    from: 1,
    to: 2,
    term: 4,
    prevIndex: 0,
    prevTerm: 0,
    entries: [
      { index: 1, term: 2, type: 'normal', data: bytes('a') },
      {
        index: 2,
        term: 4,
        type: 'config',
        data: encodeConfigChange({ kind: 'addVoter', node: 3 }),
      },
    ],
    commit: 1,
  },
  appendResponse: {
    type: 'appendResponse',
    from: 1,
    to: 2,
    term: 4,
    success: false,
    index: 3,
    conflictTerm: 2,
  },
  heartbeat: { type: 'heartbeat', from: 1, to: 2, term: 4, commit: 7, context: 9 },
  heartbeatResponse: { type: 'heartbeatResponse', from: 1, to: 2, term: 4, context: 9 },
  snapshot: {
    type: 'snapshot',
    from: 1,
    to: 2,
    term: 4,
    snapshot: { index: 20, term: 3, membership: { voters: [1, 2, 3], learners: [4] }, data: bytes('state') },
  },
  timeoutNow: { type: 'timeoutNow', from: 1, to: 2, term: 4 },
};

type Mutation = [string, (m: Record<string, unknown>) => void];
const common: Mutation[] = [
  ['from is negative', (m) => void (m.from = -1)],
  ['to is a string', (m) => void (m.to = '2')],
  ['term is fractional', (m) => void (m.term = 1.5)],
  ['term is past 2^53', (m) => void (m.term = 2 ** 53)],
  ['an unknown field', (m) => void (m.extra = 1)],
  ['term is missing', (m) => void delete m.term],
];
const entries = (m: Record<string, unknown>) => m.entries as Record<string, unknown>[];
const snap = (m: Record<string, unknown>) => m.snapshot as Record<string, unknown>;
const MALFORMED: Record<Message['type'], Mutation[]> = {
  preVote: [
    ['lastIndex is null', (m) => void (m.lastIndex = null)],
    ['lastTerm is above term', (m) => void (m.lastTerm = 5)],
  ],
  preVoteResponse: [['granted is 1', (m) => void (m.granted = 1)]],
  vote: [
    ['transfer is missing', (m) => void delete m.transfer],
    ['lastIndex is NaN', (m) => void (m.lastIndex = Number.NaN)],
  ],
  voteResponse: [['granted is a string', (m) => void (m.granted = 'true')]],
  append: [
    ['entries is a map', (m) => void (m.entries = {})],
    ['an entry index skips', (m) => void (entries(m)[1]!.index = 3)],
    ['an entry term falls', (m) => void (entries(m)[1]!.term = 1)],
    ['an entry term is above the message term', (m) => void (entries(m)[1]!.term = 5)],
    ['an entry type is unknown', (m) => void (entries(m)[0]!.type = 'other')],
    ['an entry has text data', (m) => void (entries(m)[0]!.data = 'a')],
    ['a config entry is not JSON', (m) => void (entries(m)[1]!.data = bytes('{'))],
    [
      'a config entry has an unknown kind',
      (m) => void (entries(m)[1]!.data = bytes('{"kind":"x","node":1}')),
    ],
    ['an entry is null', (m) => void (entries(m)[0] = null as never)],
    ['prevTerm is above term', (m) => void (m.prevTerm = 9)],
    ['commit is negative', (m) => void (m.commit = -3)],
    [
      'too many entries',
      (m) =>
        void (m.entries = Array.from({ length: RAFT_ENTRIES_PER_MESSAGE_MAX + 1 }, (_, i) => ({
          index: i + 1,
          term: 1,
          type: 'normal',
          data: bytes(''),
        }))),
    ],
  ],
  appendResponse: [
    ['success is missing', (m) => void delete m.success],
    ['conflictTerm is a string', (m) => void (m.conflictTerm = '2')],
  ],
  heartbeat: [['context is negative', (m) => void (m.context = -1)]],
  heartbeatResponse: [['context is missing', (m) => void delete m.context]],
  snapshot: [
    ['snapshot is missing', (m) => void delete m.snapshot],
    ['data is a string', (m) => void (snap(m).data = 'state')],
    ['the snapshot term is above the message term', (m) => void (snap(m).term = 5)],
    ['membership lacks learners', (m) => void (snap(m).membership = { voters: [1] })],
    ['a voter is a string', (m) => void (snap(m).membership = { voters: ['1'], learners: [] })],
  ],
  timeoutNow: [['a lastIndex rides along', (m) => void (m.lastIndex = 3)]],
};

const copy = (m: Message): Record<string, unknown> =>
  structuredClone(m) as unknown as Record<string, unknown>;

let app: FastifyInstance;
const got: Message[] = [];
const post = (payload: Buffer) =>
  app.inject({
    method: 'POST',
    url: RAFT_MESSAGES_PATH,
    headers: { 'content-type': 'application/vnd.msgpack', 'sluice-cluster-secret': 's' },
    payload,
  });
beforeAll(async () => {
  app = Fastify();
  await app.register(internalRaftRoutes, {
    clusterSecret: 's',
    nodeId: 2,
    isKnownMember: (id) => id === 1 || id === 3,
    deliver: (m) => got.push(...m),
  });
});
afterAll(async () => {
  await app.close();
});

describe('checkRaftMessage, per message type', () => {
  for (const type of Object.keys(VALID) as Message['type'][]) {
    it(`${type}: the well-formed message passes the route; each malformed field is refused before deliver`, async () => {
      got.length = 0;
      const ok = await post(pack([VALID[type]]));
      expect(ok.statusCode).toBe(204);
      expect(got).toHaveLength(1);
      expect(got[0]).toMatchObject({ type, from: 1, to: 2 });
      got.length = 0;
      for (const [name, mutate] of [...common, ...MALFORMED[type]]) {
        const bad = copy(VALID[type]);
        mutate(bad);
        expect(() => checkRaftMessage(bad), name).toThrow(FieldError);
        const answer = await post(pack([VALID.heartbeat, bad]));
        expect(answer.statusCode, name).toBe(400);
        const problem = JSON.parse(answer.body);
        expect(problem.code).toBe('INVALID_REQUEST');
        expect(problem.field, name).toMatch(/^1\//);
      }
      expect(got).toEqual([]);
    });
  }
});

describe('who may send', () => {
  it('refuses a sender that is not a known member, a message for another node, and mixed senders', async () => {
    got.length = 0;
    const cases: [Record<string, unknown>[], string][] = [
      [[{ ...VALID.heartbeat, from: 7 }], '0/from'],
      [[{ ...VALID.heartbeat, to: 3 }], '0/to'],
      [[VALID.heartbeat, { ...VALID.heartbeat, from: 3 }], '1/from'],
    ];
    for (const [body, field] of cases) {
      const answer = await post(pack(body));
      expect(answer.statusCode).toBe(400);
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'INVALID_REQUEST', field });
    }
    expect(got).toEqual([]);
    expect((await post(pack([]))).statusCode).toBe(204);
    expect((await post(pack([{ ...VALID.heartbeat, from: 3 }]))).statusCode).toBe(204);
    expect(got).toHaveLength(1);
  });
});

describe('checkSnapshotChunk', () => {
  const chunk: SnapshotChunk = {
    from: 1,
    to: 2,
    term: 4,
    snapshot: { index: 20, term: 3, membership: { voters: [1, 2], learners: [] } },
    totalBytes: 10,
    crc32c: 0xffffffff,
    offset: 4,
    data: bytes('abcdef'),
  };
  it('passes a well-formed chunk and refuses each malformed field', () => {
    expect(checkSnapshotChunk(structuredClone(chunk))).toEqual(chunk);
    const mutations: ((c: Record<string, unknown>) => void)[] = [
      (c) => void (c.crc32c = 2 ** 32),
      (c) => void (c.offset = 5),
      (c) => void (c.data = bytes('')),
      (c) => void (c.totalBytes = 2 ** 40),
      (c) =>
        void (c.snapshot = {
          index: 20,
          term: 3,
          membership: { voters: [1], learners: [] },
          data: bytes(''),
        }),
      (c) => void delete c.from,
      (c) => void (c.data = 'abcdef'),
    ];
    for (const mutate of mutations) {
      const bad = structuredClone(chunk) as unknown as Record<string, unknown>;
      mutate(bad);
      expect(() => checkSnapshotChunk(bad)).toThrow(FieldError);
    }
  });
});

/** Replaces one value somewhere inside `value` (path chosen by `pick`) with `replacement`. */
function mutateAt(value: unknown, pick: number, replacement: unknown): unknown {
  const slots: { holder: Record<string | number, unknown>; key: string | number }[] = [];
  const walk = (v: unknown) => {
    if (v instanceof Uint8Array || typeof v !== 'object' || v === null) return;
    for (const key of Object.keys(v)) {
      slots.push({ holder: v as Record<string, unknown>, key });
      walk((v as Record<string, unknown>)[key]);
    }
  };
  walk(value);
  const slot = slots[pick % slots.length]!;
  if (replacement === '<delete>') delete slot.holder[slot.key];
  else slot.holder[slot.key] = replacement;
  return value;
}

const replacements = fc.oneof(
  fc.integer({ min: -5, max: 30 }),
  fc.double(),
  fc.boolean(),
  fc.string({ maxLength: 5 }),
  fc.constant(null),
  fc.constant('<delete>'),
  fc.constant(2 ** 53),
  fc.uint8Array({ maxLength: 8 }),
  fc.constant([]),
  fc.constant({}),
);

describe('mutations of valid messages', () => {
  it('are refused with a FieldError, or pass and step a fresh core without an exception', () => {
    const types = Object.keys(VALID) as Message['type'][];
    fc.assert(
      fc.property(
        fc.constantFrom(...types),
        fc.array(fc.tuple(fc.nat(), replacements), { minLength: 1, maxLength: 3 }),
        (type, edits) => {
          let m: unknown = copy(VALID[type]);
          for (const [pick, replacement] of edits) m = mutateAt(m, pick, replacement);
          let message: WireRaftMessage;
          try {
            message = checkRaftMessage(m);
          } catch (error) {
            expect(error).toBeInstanceOf(FieldError);
            return;
          }
          const core = new RaftCore(
            { id: message.to },
            {
              hardState: { term: 0, vote: null, commit: 0 },
              membership: { voters: [1, 2, 3], learners: [] },
              entries: [],
            },
            new SeededRandom(1),
          );
          core.step(message as Message);
          if (core.hasReady()) core.advance(core.ready());
        },
      ),
      { seed: 20261201, numRuns: 2000 },
    );
  });

  it('of a snapshot chunk are refused with a FieldError, or pass and are taken by an assembler', () => {
    const chunk = {
      from: 1,
      to: 2,
      term: 4,
      snapshot: { index: 20, term: 3, membership: { voters: [1, 2], learners: [] } },
      totalBytes: 10,
      crc32c: 7,
      offset: 0,
      data: bytes('abcdef'),
    };
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), replacements), { minLength: 1, maxLength: 3 }), (edits) => {
        let c: unknown = structuredClone(chunk);
        for (const [pick, replacement] of edits) c = mutateAt(c, pick, replacement);
        let checkedChunk: SnapshotChunk;
        try {
          checkedChunk = checkSnapshotChunk(c);
        } catch (error) {
          expect(error).toBeInstanceOf(FieldError);
          return;
        }
        const assembler = new SnapshotAssembler(
          { timeoutMs: 1000 },
          { clock: new ManualClock(), deliver: () => {} },
        );
        expect(['accepted', 'complete', 'corrupt', 'outOfOrder']).toContain(assembler.receive(checkedChunk));
        assembler.close();
      }),
      { seed: 20261203, numRuns: 1000 },
    );
  });

  it('sent to the route are answered 204 or 400, never a server error', async () => {
    const types = Object.keys(VALID) as Message['type'][];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...types),
        fc.tuple(fc.nat(), replacements),
        async (type, [pick, replacement]) => {
          const m = mutateAt(copy(VALID[type]), pick, replacement);
          const answer = await post(pack([m]));
          expect([204, 400]).toContain(answer.statusCode);
        },
      ),
      { seed: 20261202, numRuns: 200 },
    );
  });
});
