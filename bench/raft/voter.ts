/**
 * One Raft voter for bench/raft/run.ts: LevelDB storage with real fsync, the HTTP/2 transport,
 * and a small API: POST /propose (the body is the command), GET /status.
 *   node --import tsx bench/raft/voter.ts <id> <peers as JSON {id: url}> <dataDir> <secret>
 */
import Fastify from 'fastify';
import { electionTimeoutMs, Http2RaftTransport } from '../../src/broker/raft-transport.js';
import { systemClock } from '../../src/common/clock.js';
import { isSluiceError } from '../../src/common/errors.js';
import { SeededRandom } from '../../src/common/random.js';
import { internalRaftRoutes } from '../../src/http/routes/internal-raft.js';
import { RaftDriver } from '../../src/raft/driver.js';
import { LevelRaftStorage, type RaftUpdate } from '../../src/raft/storage.js';

const [idText, peersText, dataDir, secret] = process.argv.slice(2);
const id = Number(idText);
const peers = JSON.parse(peersText!) as Record<number, string>;
const storage = await LevelRaftStorage.open(dataDir!);
let saves = 0;
const save = storage.save.bind(storage);
storage.save = (update: RaftUpdate) => {
  // Count fsyncs: a save that only moves the commit index is written without one.
  if (update.sync !== false) saves++;
  return save(update);
};
let applied = 0;
const timing = { tickMs: 50, electionTicks: 10 };
const transport = new Http2RaftTransport(
  { id, peers, clusterSecret: secret!, electionTimeoutMs: electionTimeoutMs(timing) },
  { clock: systemClock, random: new SeededRandom(id) },
);
const driver = new RaftDriver(
  {
    id,
    membership: { voters: Object.keys(peers).map(Number), learners: [] },
    ...timing,
    heartbeatTicks: 2,
    uncommittedMax: 100_000,
  },
  {
    storage,
    transport,
    clock: systemClock,
    random: new SeededRandom(id),
    stateMachine: { apply: () => void applied++, snapshot: () => Buffer.alloc(0), restore: () => {} },
  },
);
const app = Fastify({ http2: true, bodyLimit: 1024 * 1024 });
await app.register(internalRaftRoutes, { clusterSecret: secret!, ...transport.receiver() });
app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_r, body, done) =>
  done(null, body),
);
app.post('/propose', async (request, reply) => {
  try {
    const { index } = await driver.propose(request.body as Buffer);
    return reply.send({ index });
  } catch (error) {
    if (isSluiceError(error, 'NOT_LEADER')) return reply.code(421).send({ leaderId: error.details.leaderId });
    throw error;
  }
});
app.get('/status', async () => ({ ...driver.status(), saves, applied }));
app.server.on('connection', (socket: import('node:net').Socket) => socket.setNoDelay(true));
await driver.start();
await app.listen({ host: '127.0.0.1', port: Number(new URL(peers[id]!).port) });
process.stdout.write('ready\n');
const stop = () =>
  void driver
    .close()
    .then(() => app.close())
    .then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
