import { readFile } from 'node:fs/promises';
import { type Command, InvalidArgumentError } from 'commander';
import type { Admin } from '../client/admin.js';
import { SluiceError } from '../common/errors.js';
import type { ReassignmentInfo, ReassignRequest } from '../protocol/api.js';
import {
  BOOTSTRAP_OPTION,
  type Io,
  integer,
  OUTPUT_OPTION,
  type OutputFormat,
  print,
  render,
  withAdmin,
} from './io.js';

/** How often `--wait` asks how far the reassignments are. */
const WAIT_POLL_MS = 500;

/** `sluice partition reassign` and `sluice partition reassignments`. */
export function addPartitionCommand(program: Command, io: Io): void {
  const partition = program.command('partition').description('move partition replicas between brokers');
  partition
    .command('reassign [topicPartition]')
    .description(
      'reassign TOPIC/PARTITION to --replicas, or every partition of a JSON --plan file ({"partitions": [{"topic", "partition", "replicas"}]}); --cancel stops one in progress',
    )
    .option('--replicas <ids>', 'the target replicas, preferred leader first: 1,2,3', brokerList)
    .option('--plan <file>', 'a JSON plan file (replicas null cancels that partition)')
    .option('--cancel', 'cancel the reassignment of TOPIC/PARTITION in progress')
    .option('--wait', 'wait until every reassignment asked for has completed, showing progress')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(
      async (
        topicPartition: string | undefined,
        opts: {
          replicas?: number[];
          plan?: string;
          cancel?: boolean;
          wait?: boolean;
          bootstrap: string;
          output: OutputFormat;
        },
      ) => {
        const partitions = await planOf(topicPartition, opts);
        await withAdmin(opts.bootstrap, async (admin) => {
          const answer = await admin.reassignPartitions(partitions);
          render(io, opts.output, answer, (a) => describeReassignments(a.reassignments));
          if (opts.wait) {
            const keys = new Set(partitions.map((p) => `${p.topic}/${p.partition}`));
            await waitFor(
              io,
              admin,
              (r) => keys.has(`${r.topic}/${r.partition}`),
              () => Promise.resolve(0),
              opts.output,
            );
          }
        });
      },
    );
  partition
    .command('reassignments')
    .description('the reassignments in progress, with how far each replica being added has caught up')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (opts: { bootstrap: string; output: OutputFormat }) => {
      const answer = await withAdmin(opts.bootstrap, (admin) => admin.listReassignments());
      render(io, opts.output, answer, (a) => describeReassignments(a.reassignments));
    });
}

/** `sluice broker decommission`. */
export function addBrokerCommand(program: Command, io: Io): void {
  const broker = program.command('broker').description('brokers of a cluster');
  broker
    .command('decommission <brokerId>')
    .description(
      'move every partition replica off the broker (refused when the others cannot hold the replication factors)',
    )
    .option('--wait', 'wait until the broker holds no replica, showing progress')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (brokerId: string, opts: { wait?: boolean; bootstrap: string; output: OutputFormat }) => {
      const id = integer('brokerId')(brokerId);
      await withAdmin(opts.bootstrap, async (admin) => {
        const answer = await admin.decommissionBroker(id);
        render(io, opts.output, answer, (a) => [
          `broker ${id}: ${a.partitionsHeld} partition(s) still hold a replica there`,
          ...describeReassignments(a.reassignments),
        ]);
        if (opts.wait) {
          await waitFor(
            io,
            admin,
            (r) => r.removingReplicas.includes(id),
            async () => heldBy(await admin.metadata(), id),
            opts.output,
          );
          if (opts.output === 'table') print(io, `broker ${id} holds no replica`);
        }
      });
    });
}

/** Partitions whose replicas include the broker (a reassignment in progress counts both sides). */
function heldBy(metadata: Awaited<ReturnType<Admin['metadata']>>, brokerId: number): number {
  let held = 0;
  for (const topic of metadata.topics)
    for (const p of topic.partitions) if (p.replicas.includes(brokerId)) held++;
  return held;
}

/**
 * Polls until no reassignment matching `mine` is in progress and `remaining` says 0, printing
 * progress: on standard output for people, on standard error beside JSON or YAML, so that the
 * output stays one document.
 */
async function waitFor(
  io: Io,
  admin: Admin,
  mine: (r: ReassignmentInfo) => boolean,
  remaining: () => Promise<number>,
  output: OutputFormat,
): Promise<void> {
  const say = (line: string) => (output === 'table' ? print(io, line) : io.stderr.write(`${line}\n`));
  let last = '';
  for (;;) {
    const pending = (await admin.listReassignments()).reassignments.filter(mine);
    if (pending.length === 0 && (await remaining()) === 0) return;
    const line = `${pending.length} reassignment(s) in progress: ${pending
      .slice(0, 5)
      .map((r) => `${r.topic}/${r.partition} ${progressOf(r)}`)
      .join('; ')}`;
    if (line !== last) say(line);
    last = line;
    await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
  }
}

function progressOf(r: ReassignmentInfo): string {
  return r.progress
    .map((p) => `${p.id}:${p.inSync ? 'in sync' : p.lag < 0 ? 'not fetched yet' : `lag ${p.lag}`}`)
    .join(',');
}

export function describeReassignments(list: readonly ReassignmentInfo[]): string[] {
  if (list.length === 0) return ['no reassignment in progress'];
  return list.map(
    (r) =>
      `${r.topic}/${r.partition}  ${r.replicas.join(',')} -> ${r.targetReplicas.join(',')}  leader ${r.leader}  isr ${r.isr.join(',')}  adding ${progressOf(r) || '-'}  removing ${r.removingReplicas.join(',') || '-'}`,
  );
}

function brokerList(value: string): number[] {
  if (!/^\d+(,\d+)*$/.test(value))
    throw new InvalidArgumentError(`--replicas takes broker ids separated by commas, got ${value}`);
  return value.split(',').map(Number);
}

function topicPartitionOf(value: string): { topic: string; partition: number } {
  const at = value.lastIndexOf('/');
  const partition = Number(value.slice(at + 1));
  if (at <= 0 || !/^\d+$/.test(value.slice(at + 1)) || partition > 9999)
    throw new SluiceError('INVALID_REQUEST', `expected TOPIC/PARTITION, got ${value}`);
  return { topic: value.slice(0, at), partition };
}

async function planOf(
  topicPartition: string | undefined,
  opts: { replicas?: number[]; plan?: string; cancel?: boolean },
): Promise<ReassignRequest['partitions']> {
  const usage = 'give TOPIC/PARTITION with --replicas or --cancel, or --plan FILE';
  if (opts.plan !== undefined) {
    if (topicPartition !== undefined || opts.replicas || opts.cancel)
      throw new SluiceError('INVALID_REQUEST', `--plan goes alone: ${usage}`);
    return parsePlan(await readFile(opts.plan, 'utf8'), opts.plan);
  }
  if (topicPartition === undefined || (opts.replicas === undefined) === !opts.cancel)
    throw new SluiceError('INVALID_REQUEST', usage);
  return [{ ...topicPartitionOf(topicPartition), replicas: opts.cancel ? null : opts.replicas! }];
}

/** A plan file: `{"version": 1 (optional), "partitions": [{"topic", "partition", "replicas"}...]}`. */
export function parsePlan(text: string, name = 'the plan'): ReassignRequest['partitions'] {
  const bad = (what: string) => new SluiceError('INVALID_REQUEST', `${name}: ${what}`);
  let plan: unknown;
  try {
    plan = JSON.parse(text);
  } catch (error) {
    throw bad(`not JSON (${(error as Error).message})`);
  }
  const partitions = (plan as { partitions?: unknown } | null)?.partitions;
  if (!Array.isArray(partitions) || partitions.length === 0)
    throw bad('must be an object with a non-empty "partitions" list');
  return partitions.map((p: unknown, i) => {
    const entry = p as { topic?: unknown; partition?: unknown; replicas?: unknown } | null;
    if (typeof entry?.topic !== 'string' || entry.topic.length === 0)
      throw bad(`partitions[${i}].topic must be a name`);
    if (!Number.isInteger(entry.partition) || (entry.partition as number) < 0)
      throw bad(`partitions[${i}].partition must be a partition number`);
    const replicas = entry.replicas;
    if (
      replicas !== null &&
      !(Array.isArray(replicas) && replicas.every((id) => Number.isInteger(id) && (id as number) >= 0))
    )
      throw bad(`partitions[${i}].replicas must be a list of broker ids, or null to cancel`);
    return {
      topic: entry.topic,
      partition: entry.partition as number,
      replicas: replicas as number[] | null,
    };
  });
}
