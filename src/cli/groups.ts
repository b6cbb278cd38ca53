import type { Command } from 'commander';
import { type ConsumedRecord, Consumer } from '../client/consumer.js';
import { SluiceError } from '../common/errors.js';
import { BOOTSTRAP_OPTION, type Io, integer, outputFormat, print, withAdmin } from './io.js';

/** `sluice group list|describe|reset-offsets|delete`: consumer groups (docs/groups.md). */
export function addGroupCommand(program: Command, io: Io): void {
  const group = program
    .command('group')
    .description('list, describe, reset the offsets of and delete consumer groups');
  group
    .command('list')
    .description('every group of the cluster: state, members, coordinator')
    .option(...BOOTSTRAP_OPTION)
    .option('-o, --output <format>', 'text or json', outputFormat, 'text' as const)
    .action(async (opts: { bootstrap: string; output: 'text' | 'json' }) => {
      const groups = await withAdmin(opts.bootstrap, (admin) => admin.listGroups());
      if (opts.output === 'json') return print(io, JSON.stringify(groups, null, 2));
      print(io, 'GROUP\tSTATE\tMEMBERS\tCOORDINATOR');
      for (const g of groups) print(io, `${g.group}\t${g.state}\t${g.members}\t${g.coordinator}`);
    });
  group
    .command('describe <group>')
    .description('members and, per partition, the owner, committed offset, log end and lag')
    .option(...BOOTSTRAP_OPTION)
    .option('-o, --output <format>', 'text or json', outputFormat, 'text' as const)
    .action(async (name: string, opts: { bootstrap: string; output: 'text' | 'json' }) => {
      const d = await withAdmin(opts.bootstrap, (admin) => admin.describeGroup(name));
      if (opts.output === 'json') return print(io, JSON.stringify(d, null, 2));
      print(
        io,
        `group ${d.group}: ${d.state}, epoch ${d.groupEpoch}, assignor ${d.assignor}, ${d.members.length} member(s), coordinator ${d.coordinator}`,
      );
      print(io, 'TOPIC\tPARTITION\tCOMMITTED\tLOG-END\tLAG\tOWNER');
      for (const p of d.partitions)
        print(
          io,
          `${p.topic}\t${p.partition}\t${p.committed ?? '-'}\t${p.logEndOffset}\t${p.lag}\t${p.owner ?? '-'}`,
        );
    });
  group
    .command('reset-offsets <group>')
    .description('set the committed offsets of an empty group for one topic')
    .option(...BOOTSTRAP_OPTION)
    .requiredOption('--topic <topic>', 'the topic')
    .option('--partition <p>', 'only this partition (default: all)', integer('partition'))
    .option('--to-earliest', 'to the log start')
    .option('--to-latest', 'to the log end')
    .option('--to-offset <n>', 'to this offset', integer('offset'))
    .option(
      '--to-datetime <time>',
      'to the first record at or after this time (ISO 8601 or ms since the epoch)',
    )
    .option('--shift-by <n>', 'move the committed offsets by n (negative: back)', (v) => {
      if (!/^-?\d+$/.test(v))
        throw new SluiceError('INVALID_REQUEST', `--shift-by must be an integer, got ${v}`);
      return Number(v);
    })
    .action(async (name: string, opts: ResetFlags) => {
      const request = resetRequest(opts);
      const offsets = await withAdmin(opts.bootstrap, (admin) => admin.resetGroupOffsets(name, request));
      for (const o of offsets) print(io, `${o.topic}\t${o.partition}\t${o.offset}`);
    });
  group
    .command('delete <group>')
    .description('delete an empty group and its committed offsets')
    .option(...BOOTSTRAP_OPTION)
    .action(async (name: string, opts: { bootstrap: string }) => {
      await withAdmin(opts.bootstrap, (admin) => admin.deleteGroup(name));
      io.stderr.write(`deleted group ${name}\n`);
    });
}

interface ResetFlags {
  bootstrap: string;
  topic: string;
  partition?: number;
  toEarliest?: boolean;
  toLatest?: boolean;
  toOffset?: number;
  toDatetime?: string;
  shiftBy?: number;
}

function resetRequest(opts: ResetFlags) {
  const partitions = opts.partition === undefined ? {} : { partitions: [opts.partition] };
  const chosen = [opts.toEarliest, opts.toLatest, opts.toOffset, opts.toDatetime, opts.shiftBy].filter(
    (v) => v !== undefined,
  );
  if (chosen.length !== 1)
    throw new SluiceError(
      'INVALID_REQUEST',
      'give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by',
    );
  const base = { topic: opts.topic, ...partitions };
  if (opts.toEarliest) return { ...base, to: 'earliest' as const };
  if (opts.toLatest) return { ...base, to: 'latest' as const };
  if (opts.toOffset !== undefined) return { ...base, to: 'offset' as const, offset: opts.toOffset };
  if (opts.shiftBy !== undefined) return { ...base, to: 'shift' as const, shift: opts.shiftBy };
  const time = /^\d+$/.test(opts.toDatetime!) ? Number(opts.toDatetime) : Date.parse(opts.toDatetime!);
  if (!Number.isFinite(time))
    throw new SluiceError('INVALID_REQUEST', `--to-datetime must be ISO 8601 or ms, got ${opts.toDatetime}`);
  return { ...base, to: 'timestamp' as const, timestamp: time };
}

/**
 * `sluice consume TOPIC --group G`: a group member that prints the records of the partitions the
 * group gives it, committing each poll's records at the next (at-least-once); without --follow it
 * ends at the first empty poll and leaves the group.
 */
export async function consumeAsGroupMember(
  io: Io,
  topic: string,
  opts: { bootstrap: string; group: string; follow?: boolean; maxMessages?: number },
  format: (record: ConsumedRecord) => string,
): Promise<void> {
  const consumer = new Consumer({
    bootstrap: opts.bootstrap,
    group: opts.group,
    topics: [topic],
    maxWaitMs: 1000,
    autoCommit: false,
  });
  const stop = () => {
    consumer.close().catch(() => {});
  };
  process.once('SIGINT', stop);
  let printed = 0;
  try {
    for (;;) {
      const records = await consumer.poll();
      if (records.length === 0 && !opts.follow) break;
      // Commits exactly what was printed (with --max-messages, maybe not the whole poll).
      const next = new Map<string, { topic: string; partition: number; offset: number }>();
      for (const r of records) {
        if (opts.maxMessages !== undefined && printed >= opts.maxMessages) break;
        print(io, format(r));
        printed++;
        next.set(`${r.topic}/${r.partition}`, {
          topic: r.topic,
          partition: r.partition,
          offset: r.offset + 1,
        });
      }
      if (next.size > 0) await consumer.commit([...next.values()]);
      if (opts.maxMessages !== undefined && printed >= opts.maxMessages) break;
    }
  } finally {
    process.off('SIGINT', stop);
    await consumer.close();
  }
}
