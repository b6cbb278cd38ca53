import { type Command, InvalidArgumentError } from 'commander';
import { type ConsumedRecord, Consumer } from '../client/consumer.js';
import {
  BOOTSTRAP_OPTION,
  type Io,
  integer,
  OUTPUT_OPTION,
  type OutputFormat,
  print,
  render,
  table,
  UsageError,
  withAdmin,
} from './io.js';

/** `sluice group list|describe|reset-offsets|delete`: consumer groups (docs/groups.md). */
export function addGroupCommand(program: Command, io: Io): void {
  const group = program
    .command('group')
    .description('list, describe, reset the offsets of and delete consumer groups');
  group
    .command('list')
    .description('every group of the cluster: state, members, coordinator')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (opts: { bootstrap: string; output: OutputFormat }) => {
      const groups = await withAdmin(opts.bootstrap, (admin) => admin.listGroups());
      render(io, opts.output, groups, (list) =>
        table([
          ['GROUP', 'STATE', 'MEMBERS', 'COORDINATOR'],
          ...list.map((g) => [g.group, g.state, String(g.members), String(g.coordinator)]),
        ]),
      );
    });
  group
    .command('describe <group>')
    .description('members and, per partition, the owner, committed offset, log end and lag')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (name: string, opts: { bootstrap: string; output: OutputFormat }) => {
      const d = await withAdmin(opts.bootstrap, (admin) => admin.describeGroup(name));
      render(io, opts.output, d, (g) => [
        `group ${g.group}: ${g.state}, epoch ${g.groupEpoch}, assignor ${g.assignor}, ${g.members.length} member(s), coordinator ${g.coordinator}`,
        ...table([
          ['TOPIC', 'PARTITION', 'COMMITTED', 'LOG-END', 'LAG', 'OWNER'],
          ...g.partitions.map((p) => [
            p.topic,
            String(p.partition),
            p.committed === null || p.committed === undefined ? '-' : String(p.committed),
            String(p.logEndOffset),
            String(p.lag),
            p.owner ?? '-',
          ]),
        ]),
      ]);
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
      if (!/^-?\d+$/.test(v)) throw new InvalidArgumentError(`--shift-by must be an integer, got ${v}`);
      return Number(v);
    })
    .option(...OUTPUT_OPTION)
    .action(async (name: string, opts: ResetFlags) => {
      const request = resetRequest(opts);
      const offsets = await withAdmin(opts.bootstrap, (admin) => admin.resetGroupOffsets(name, request));
      render(io, opts.output, offsets, (list) =>
        table([
          ['TOPIC', 'PARTITION', 'OFFSET'],
          ...list.map((o) => [o.topic, String(o.partition), String(o.offset)]),
        ]),
      );
    });
  group
    .command('delete <group>')
    .description('delete an empty group and its committed offsets')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (name: string, opts: { bootstrap: string; output: OutputFormat }) => {
      const deleted = await withAdmin(opts.bootstrap, (admin) => admin.deleteGroup(name));
      if (opts.output === 'table') io.stderr.write(`deleted group ${name}\n`);
      else render(io, opts.output, deleted, () => []);
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
  output: OutputFormat;
}

function resetRequest(opts: ResetFlags) {
  const partitions = opts.partition === undefined ? {} : { partitions: [opts.partition] };
  const chosen = [opts.toEarliest, opts.toLatest, opts.toOffset, opts.toDatetime, opts.shiftBy].filter(
    (v) => v !== undefined,
  );
  if (chosen.length !== 1)
    throw new UsageError(
      'give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by',
    );
  const base = { topic: opts.topic, ...partitions };
  if (opts.toEarliest) return { ...base, to: 'earliest' as const };
  if (opts.toLatest) return { ...base, to: 'latest' as const };
  if (opts.toOffset !== undefined) return { ...base, to: 'offset' as const, offset: opts.toOffset };
  if (opts.shiftBy !== undefined) return { ...base, to: 'shift' as const, shift: opts.shiftBy };
  const time = /^\d+$/.test(opts.toDatetime!) ? Number(opts.toDatetime) : Date.parse(opts.toDatetime!);
  if (!Number.isFinite(time))
    throw new UsageError(`--to-datetime must be ISO 8601 or ms since the epoch, got ${opts.toDatetime}`);
  return { ...base, to: 'timestamp' as const, timestamp: time };
}

/**
 * `sluice consume TOPIC --group G`: a group member that prints the records of the partitions the
 * group gives it, committing each poll's records at the next (at-least-once); without --follow it
 * ends at the first empty poll and leaves the group. Resolves true when Ctrl-C stopped it.
 */
export async function consumeAsGroupMember(
  io: Io,
  topic: string,
  opts: { bootstrap: string; group: string; follow?: boolean; maxMessages?: number },
  format: (record: ConsumedRecord) => string,
  signals: Pick<NodeJS.EventEmitter, 'on' | 'off'> = process,
): Promise<boolean> {
  const consumer = new Consumer({
    bootstrap: opts.bootstrap,
    group: opts.group,
    topics: [topic],
    maxWaitMs: 1000,
    autoCommit: false,
  });
  let interrupted = false;
  const stop = () => {
    interrupted = true;
    consumer.close().catch(() => {});
  };
  signals.on('SIGINT', stop);
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
  } catch (error) {
    // A poll cancelled by Ctrl-C is the end of the command, not its failure.
    if (!interrupted) throw error;
  } finally {
    signals.off('SIGINT', stop);
    await consumer.close();
  }
  return interrupted;
}
