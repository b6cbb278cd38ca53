import type { FastifyInstance, FastifyReply } from 'fastify';
import type { GroupPollResult, GroupsApi, NodeApi } from '../../broker/api.js';
import { SluiceError } from '../../common/errors.js';
import { ENDPOINTS, MEDIA, NODE_ID_HEADER } from '../../protocol/api.js';
import { encodeGroupPoll } from '../../protocol/group-poll.js';
import { FORWARDED_BY_HEADER } from '../../protocol/internal-api.js';
import { recordToJson } from '../../protocol/json-record.js';
import { packr } from '../../protocol/msgpack.js';
import { negotiate, sendNegotiated } from '../content.js';
import { problemFor } from '../problem.js';
import { addRoute, type EndpointFastifyRequest } from './route.js';
import { decodeStoredRecords } from './stored-records.js';

type PollRequest = EndpointFastifyRequest<typeof ENDPOINTS.pollGroup>;

/** How long one poll of a follow stream waits for records before it polls (and heartbeats) again. */
const FOLLOW_POLL_WAIT_MS = 5_000;

function groupsOf(options: { groups: GroupsApi | undefined }): GroupsApi {
  if (!options.groups) throw new SluiceError('INVALID_REQUEST', 'this node has no group coordinator');
  return options.groups;
}

/** Consumer groups: membership, polls, commits and the group admin (docs/groups.md). */
export async function groupRoutes(
  app: FastifyInstance,
  options: { groups: GroupsApi | undefined; node: NodeApi },
): Promise<void> {
  const groups = () => groupsOf(options);
  addRoute(app, ENDPOINTS.joinGroup, async (request, reply) =>
    sendNegotiated(request, reply, 201, await groups().join(request.params.group, request.body ?? {})),
  );
  addRoute(app, ENDPOINTS.heartbeatGroup, async (request, reply) =>
    sendNegotiated(
      request,
      reply,
      200,
      await groups().heartbeat(request.params.group, request.params.member, request.body ?? {}),
    ),
  );
  addRoute(app, ENDPOINTS.leaveGroup, async (request, reply) => {
    const { group, member } = request.params;
    await groups().leave(group, member);
    return sendNegotiated(request, reply, 200, { group, memberId: member, left: true });
  });
  addRoute(app, ENDPOINTS.commitOffsets, async (request, reply) => {
    const committed = await groups().commit(request.params.group, request.body);
    return sendNegotiated(request, reply, 200, { group: request.params.group, committed });
  });
  addRoute(app, ENDPOINTS.listGroups, async (request, reply) => {
    // A node asked by another node answers for its own coordinators only.
    const scope = request.headers[FORWARDED_BY_HEADER] === undefined ? 'cluster' : 'local';
    return sendNegotiated(request, reply, 200, { groups: await groups().list(scope) });
  });
  addRoute(app, ENDPOINTS.describeGroup, async (request, reply) =>
    sendNegotiated(request, reply, 200, await groups().describe(request.params.group)),
  );
  addRoute(app, ENDPOINTS.resetGroupOffsets, async (request, reply) => {
    const offsets = await groups().resetOffsets(request.params.group, request.body);
    return sendNegotiated(request, reply, 200, { group: request.params.group, offsets });
  });
  addRoute(app, ENDPOINTS.deleteGroup, async (request, reply) => {
    await groups().delete(request.params.group);
    return sendNegotiated(request, reply, 200, { group: request.params.group, deleted: true });
  });
  addRoute(app, ENDPOINTS.pollGroup, async (request, reply) => {
    const format = negotiate(request.headers.accept, [MEDIA.eventStream, MEDIA.ndjson]);
    if (format === undefined)
      throw new SluiceError('NOT_ACCEPTABLE', `none of ${request.headers.accept} can be produced`);
    if (request.query.follow || format === MEDIA.eventStream)
      return followGroup(request, reply, groups(), options.node, format);
    const controller = new AbortController();
    const onClose = () => controller.abort();
    request.raw.once('close', onClose);
    let result: GroupPollResult;
    try {
      result = await pollOnce(request, groups(), request.query.maxWaitMs ?? 0, controller.signal);
    } finally {
      request.raw.off('close', onClose);
    }
    if (format === 'msgpack') {
      reply.code(200).type(MEDIA.msgpack);
      return reply.send(encodeGroupPoll(result.memberEpoch, result.assignment, result.partitions));
    }
    const base64 = request.query.valueEncoding === 'base64';
    const records = decodeRecords(request, result, base64);
    if (format === MEDIA.ndjson) {
      reply.code(200).type(MEDIA.ndjson);
      return reply.send(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
    }
    return sendNegotiated(request, reply, 200, {
      memberEpoch: result.memberEpoch,
      assignment: result.assignment,
      records,
      partitions: result.partitions.map((p) => ({
        topic: p.topic,
        partition: p.partition,
        nextOffset: p.nextOffset,
        highWatermark: Math.max(0, p.highWatermark),
      })),
    });
  });
}

function pollOnce(request: PollRequest, groups: GroupsApi, maxWaitMs: number, signal: AbortSignal) {
  const { group, member } = request.params;
  const { query } = request;
  return groups.poll(group, member, {
    ...(query.memberEpoch !== undefined ? { memberEpoch: query.memberEpoch } : {}),
    maxBytes: query.maxBytes ?? 1024 * 1024,
    maxWaitMs,
    autoCommit: query.autoCommit ?? false,
    signal,
  });
}

function decodeRecords(request: PollRequest, result: GroupPollResult, base64: boolean) {
  const out = [];
  for (const p of result.partitions) {
    if (p.batchCount === 0) continue;
    const run = decodeStoredRecords(request, p, p.data, p.offset, request.server.httpMetrics.corruptDecoded);
    for (const r of run.records)
      out.push({ topic: p.topic, partition: p.partition, ...recordToJson(r, base64) });
  }
  return out;
}

/**
 * A follow stream of a member: polls again and again (each poll is also the member's heartbeat)
 * and writes each record as it comes, NDJSON or server-sent events, or each poll's msgpack answer,
 * until the client goes away or the member is gone.
 */
async function followGroup(
  request: PollRequest,
  reply: FastifyReply,
  groups: GroupsApi,
  node: NodeApi,
  format: string,
): Promise<void> {
  // The first poll answers the member's errors (unknown member, fenced epoch) as a plain problem.
  const controller = new AbortController();
  let result = await pollOnce(request, groups, 0, controller.signal);
  const contentType =
    format === MEDIA.eventStream ? MEDIA.eventStream : format === 'msgpack' ? MEDIA.msgpack : MEDIA.ndjson;
  reply.hijack();
  const raw = reply.raw;
  const closed = request.server.httpMetrics.streamOpened(request);
  raw.writeHead(200, {
    'content-type': contentType,
    'cache-control': 'no-cache',
    'x-request-id': request.id,
    [NODE_ID_HEADER]: String(node.nodeId),
  });
  const stop = () => controller.abort();
  request.raw.once('close', stop);
  raw.once('close', stop);
  const base64 = request.query.valueEncoding === 'base64';
  try {
    for (;;) {
      let chunk: string | Buffer;
      if (format === 'msgpack')
        chunk = encodeGroupPoll(result.memberEpoch, result.assignment, result.partitions);
      else {
        const records = decodeRecords(request, result, base64);
        chunk =
          format === MEDIA.eventStream
            ? records.length === 0
              ? ': keep-alive\n\n'
              : records
                  .map(
                    (r) =>
                      `id: ${r.topic}/${r.partition}/${r.offset}\nevent: record\ndata: ${JSON.stringify(r)}\n\n`,
                  )
                  .join('')
            : records.map((r) => `${JSON.stringify(r)}\n`).join('');
      }
      if (chunk.length > 0 && !raw.write(chunk))
        await new Promise<void>((resolve) => {
          raw.once('drain', resolve);
          controller.signal.addEventListener('abort', () => resolve(), { once: true });
        });
      if (controller.signal.aborted || node.shuttingDown) break;
      result = await pollOnce(request, groups, FOLLOW_POLL_WAIT_MS, controller.signal);
      if (controller.signal.aborted) break;
    }
  } catch (error) {
    const problem = problemFor(error, request.url).body;
    if (!raw.destroyed) {
      if (format === MEDIA.eventStream) raw.write(`event: error\ndata: ${JSON.stringify(problem)}\n\n`);
      else if (format === 'msgpack') raw.write(packr.pack({ error: problem }));
      else raw.write(`${JSON.stringify({ error: problem })}\n`);
    }
  } finally {
    closed();
    request.raw.off('close', stop);
    if (!raw.destroyed) raw.end();
  }
}
