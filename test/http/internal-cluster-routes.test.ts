import Fastify, { type FastifyInstance } from 'fastify';
import { pack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { internalRaftRoutes } from '../../src/http/routes/internal-raft.js';
import {
  CLUSTER_SECRET_HEADER,
  CONTROLLER_COMMANDS_PATH,
  type ControllerCommand,
  LEADER_OFFSETS_PATH,
  REPLICA_FETCH_PATH,
  type ReplicaFetchRequest,
} from '../../src/protocol/internal-api.js';
import { unpackr } from '../../src/protocol/msgpack.js';

/**
 * The cluster-internal routes beside Raft's: controller commands, follower fetches and leader
 * offsets. Each answers only the cluster secret, and every field is checked before the command or
 * fetch reaches the node (INVALID_REQUEST naming the field); a valid one gets through as sent.
 */
const SECRET = 'internal-routes-secret-0123';
let app: FastifyInstance;
const commands: ControllerCommand[] = [];
const fetches: ReplicaFetchRequest[] = [];

beforeAll(async () => {
  app = Fastify();
  await app.register(internalRaftRoutes, {
    clusterSecret: SECRET,
    nodeId: 1,
    isKnownMember: () => true,
    deliver: () => {},
    executeCommand: async (command) => {
      commands.push(command);
      return { offset: 42 };
    },
    answerReplicaFetch: async (request) => {
      fetches.push(request);
      return [];
    },
    leaderOffsets: (topic) => [
      { partition: 0, logStartOffset: 0, logEndOffset: topic.length, highWatermark: 1 },
    ],
  });
});
afterAll(() => app.close());

const post = (url: string, body: unknown, secret = SECRET) =>
  app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/vnd.msgpack', [CLUSTER_SECRET_HEADER]: secret },
    payload: pack(body),
  });

const FETCH: ReplicaFetchRequest = {
  replicaId: 2,
  brokerEpoch: 7,
  maxWaitMs: 500,
  maxBytes: 1 << 20,
  partitions: [
    { topicId: 'id', topic: 't', partition: 0, fetchOffset: 3, lastFetchedEpoch: -1, leaderEpoch: 0 },
  ],
};

describe('internal cluster routes', () => {
  it('refuse a missing or wrong cluster secret with 401 and run nothing', async () => {
    for (const secret of ['', 'wrong-secret-of-some-length']) {
      expect((await post(CONTROLLER_COMMANDS_PATH, { type: 'readIndex' }, secret)).statusCode).toBe(401);
      expect((await post(REPLICA_FETCH_PATH, FETCH, secret)).statusCode).toBe(401);
    }
    expect(
      (await app.inject({ url: `${LEADER_OFFSETS_PATH}?topic=t`, headers: { [CLUSTER_SECRET_HEADER]: 'x' } }))
        .statusCode,
    ).toBe(401);
    expect(commands).toEqual([]);
    expect(fetches).toEqual([]);
  });

  it('take a valid controller command and answer its offset in msgpack', async () => {
    const command: ControllerCommand = {
      type: 'alterPartition',
      brokerId: 1,
      brokerEpoch: 65536,
      topicId: 'AAAAAAAAAAAAAAAAAAAAAA',
      partition: 0,
      leaderEpoch: 2,
      partitionEpoch: 5,
      isr: [1, 2],
    };
    const answer = await post(CONTROLLER_COMMANDS_PATH, command);
    expect(answer.statusCode).toBe(200);
    expect(unpackr.unpack(answer.rawPayload)).toEqual({ offset: 42 });
    expect(commands.at(-1)).toEqual(command);
  });

  it('refuse a malformed controller command, naming the field', async () => {
    const before = commands.length;
    const cases: [unknown, string][] = [
      [{ type: 'nope' }, 'type'],
      [{ type: 'readIndex', extra: 1 }, 'extra'],
      [{ type: 'deleteTopic', name: '' }, 'name'],
      [{ type: 'createTopic', name: 't', partitions: -1, replicationFactor: 1, configs: {} }, 'partitions'],
      [{ type: 'alterConfigs', name: 't', changes: { 'retention.ms': 5 } }, 'changes/retention.ms'],
      [{ type: 'heartbeat', brokerId: 1, brokerEpoch: 1, caughtUp: 'yes' }, 'caughtUp'],
      [
        {
          type: 'alterPartition',
          brokerId: 1,
          brokerEpoch: 1,
          topicId: 'x',
          partition: 0,
          leaderEpoch: 0,
          partitionEpoch: 0,
          isr: [1, -2],
        },
        'isr/1',
      ],
      [
        {
          type: 'registerBroker',
          brokerId: 1,
          incarnationId: 'i',
          endpoints: [{ name: 'p', host: 'h', port: 70000 }],
          rack: null,
        },
        'endpoints/0/port',
      ],
    ];
    for (const [body, field] of cases) {
      const answer = await post(CONTROLLER_COMMANDS_PATH, body);
      expect(answer.statusCode, JSON.stringify(body)).toBe(400);
      expect(answer.json()).toMatchObject({ code: 'INVALID_REQUEST', field });
    }
    expect(
      (
        await app.inject({
          method: 'POST',
          url: CONTROLLER_COMMANDS_PATH,
          headers: { 'content-type': 'application/vnd.msgpack', [CLUSTER_SECRET_HEADER]: SECRET },
          payload: Buffer.from([0xc1]),
        })
      ).json().code,
    ).toBe('INVALID_REQUEST');
    expect(commands.length).toBe(before);
  });

  it('take a valid follower fetch and refuse a malformed one, naming the field', async () => {
    const ok = await post(REPLICA_FETCH_PATH, FETCH);
    expect(ok.statusCode).toBe(200);
    expect(unpackr.unpack(ok.rawPayload)).toEqual({ partitions: [] });
    expect(fetches.at(-1)).toEqual(FETCH);
    const p = FETCH.partitions[0]!;
    const cases: [unknown, string][] = [
      [{ ...FETCH, maxWaitMs: 60_000 }, 'maxWaitMs'],
      [{ ...FETCH, replicaId: -1 }, 'replicaId'],
      [{ ...FETCH, partitions: [{ ...p, lastFetchedEpoch: -2 }] }, 'partitions/0/lastFetchedEpoch'],
      [{ ...FETCH, partitions: [{ ...p, topic: '' }] }, 'partitions/0/topic'],
      [{ ...FETCH, partitions: [{ ...p, fetchOffset: 1.5 }] }, 'partitions/0/fetchOffset'],
      [{ ...FETCH, partitions: [{ ...p, more: 1 }] }, 'partitions/0/more'],
    ];
    const before = fetches.length;
    for (const [body, field] of cases) {
      const answer = await post(REPLICA_FETCH_PATH, body);
      expect(answer.statusCode, JSON.stringify(body)).toBe(400);
      expect(answer.json()).toMatchObject({ code: 'INVALID_REQUEST', field });
    }
    expect(fetches.length).toBe(before);
  });

  it('answer a leader-offsets request for the topic named, and refuse one that names none', async () => {
    const answer = await app.inject({
      url: `${LEADER_OFFSETS_PATH}?topic=orders`,
      headers: { [CLUSTER_SECRET_HEADER]: SECRET },
    });
    expect(answer.json()).toEqual({
      partitions: [{ partition: 0, logStartOffset: 0, logEndOffset: 6, highWatermark: 1 }],
    });
    const none = await app.inject({ url: LEADER_OFFSETS_PATH, headers: { [CLUSTER_SECRET_HEADER]: SECRET } });
    expect(none.statusCode).toBe(400);
    expect(none.json()).toMatchObject({ code: 'INVALID_REQUEST', field: 'topic' });
  });
});
