import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { stringify as toYaml } from 'yaml';
import { isConnectionError } from '../client/connection.js';
import { type ConsumedRecord, PartitionConsumer } from '../client/consumer.js';
import { Producer } from '../client/producer.js';
import { SluiceError } from '../common/errors.js';
import { startNode } from '../node/node.js';
import { VERSION } from '../node/version.js';
import type { OffsetsResponse, TopicDescription } from '../protocol/api.js';
import { isCodecName } from '../protocol/compression.js';
import { nodeFileSystem } from '../storage/fs.js';
import { type LogVerifyReport, verifyLogDirectory } from '../storage/log-verify.js';
import { addClusterCommand, addDevClusterCommand, type ClusterDependencies } from './cluster.js';
import { addCompletionCommand } from './completion.js';
import { spawnSluice } from './dev-cluster.js';
import { addGroupCommand, consumeAsGroupMember } from './groups.js';
import {
  BOOTSTRAP_OPTION,
  collectConfig,
  EXIT_INTERRUPTED,
  ExitCode,
  type Io,
  integer,
  OUTPUT_OPTION,
  type OutputFormat,
  PROFILE_ENV,
  Progress,
  print,
  profilePath,
  render,
  resolveBootstrap,
  table,
  UsageError,
  withAdmin,
} from './io.js';
import { addBrokerCommand, addPartitionCommand } from './reassign.js';
import { addStartCommand, type StartDependencies } from './start.js';

/** What the commands use besides their arguments and `Io`; the real ones unless a test passes others. */
export type CliDependencies = StartDependencies &
  ClusterDependencies & {
    /** The clock progress lines are timed by. */
    nowMs: () => number;
    /** How often a progress line is rewritten on a terminal (default 1 s). */
    progressIntervalMs?: number;
  };

/** How often `produce` and `consume` rewrite their progress line when standard error is a terminal. */
const PROGRESS_INTERVAL_MS = 1000;

/** Records `sluice produce` lets wait for an answer before it reads more of standard input. */
const PRODUCE_PENDING_MAX = 10_000;

function buildProgram(io: Io, dependencies: CliDependencies, done: (code: number) => void): Command {
  const program = new Command('sluice')
    .description('Sluice: a replicated log broker spoken over HTTP/2 and HTTP/1.1')
    .version(VERSION, '-V, --version')
    // Taken anywhere on the line, before the subcommand or after it (commander reads a program
    // option wherever it stands); each client command also lists it in its own help.
    .option(...BOOTSTRAP_OPTION)
    .option(
      '--profile <name>',
      `the profile of ${profilePath({ HOME: '~' })} to use (default: $${PROFILE_ENV}, else the file's "profile", else its top level)`,
    )
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      // Usage errors are one line in the same shape as the others, with a pointer to --help.
      outputError: (s, write) => write(`sluice: ${s.replace(/^error: /, '').trimEnd()} (see --help)\n`),
    });
  addStartCommand(program, io, dependencies);
  addDevClusterCommand(program, io, dependencies);
  addClusterCommand(program, io);
  addTopicCommand(program, io);
  addPartitionCommand(program, io);
  addBrokerCommand(program, io);
  addProduceCommand(program, io, dependencies);
  addConsumeCommand(program, io, dependencies);
  addGroupCommand(program, io);
  addOffsetsCommand(program, io);
  addLogCommand(program, io);
  addCompletionCommand(program, io);
  program.hook('preAction', (_program, action) => {
    // A command that talks to a node has a --bootstrap option: its value is resolved here, once.
    if (!action.options.some((o) => o.attributeName() === 'bootstrap')) return;
    const globals = action.optsWithGlobals() as { bootstrap?: string; profile?: string };
    action.setOptionValue(
      'bootstrap',
      resolveBootstrap(globals.bootstrap, globals.profile, io.env ?? process.env),
    );
  });
  program.hook('postAction', () => done(0));
  return program;
}

function addTopicCommand(program: Command, io: Io): void {
  const topic = program.command('topic').description('create, list, describe, alter and delete topics');
  addTopicCreateCommand(topic, io);
  addTopicListCommand(topic, io);
  addTopicDescribeCommand(topic, io);
  addTopicAlterCommand(topic, io);
  addTopicDeleteCommand(topic, io);
}

interface TopicCreateFlags {
  bootstrap: string;
  partitions: number;
  replicationFactor: number;
  config?: Record<string, string>;
  output: OutputFormat;
}

function addTopicCreateCommand(topic: Command, io: Io): void {
  topic
    .command('create <name>')
    .description('create a topic')
    .option(...BOOTSTRAP_OPTION)
    .option('-p, --partitions <n>', 'number of partitions', integer('partitions', 1), 1)
    .option('-r, --replication-factor <n>', 'replicas per partition', integer('replication factor', 1), 1)
    .option('-c, --config <name=value>', 'topic config, repeatable', collectConfig)
    .option(...OUTPUT_OPTION)
    .action(async (name: string, opts: TopicCreateFlags) => {
      const created = await withAdmin(opts.bootstrap, (admin) =>
        admin.createTopic({
          name,
          partitions: opts.partitions,
          replicationFactor: opts.replicationFactor,
          configs: opts.config ?? {},
        }),
      );
      render(io, opts.output, created, (t) => [
        `created topic ${t.name} with ${t.partitions.length} partition(s)`,
      ]);
    });
}

function addTopicListCommand(topic: Command, io: Io): void {
  topic
    .command('list')
    .description('list topics')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (opts: { bootstrap: string; output: OutputFormat }) => {
      const topics = await withAdmin(opts.bootstrap, (admin) => admin.listTopics());
      render(io, opts.output, topics, (list) =>
        table([
          ['TOPIC', 'PARTITIONS', 'REPLICATION'],
          ...list.map((t) => [t.name, String(t.partitions), String(t.replicationFactor)]),
        ]),
      );
    });
}

function addTopicDescribeCommand(topic: Command, io: Io): void {
  topic
    .command('describe <name>')
    .description('partitions, leaders, offsets and configs of a topic')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (name: string, opts: { bootstrap: string; output: OutputFormat }) => {
      const d = await withAdmin(opts.bootstrap, (admin) => admin.describeTopic(name));
      render(io, opts.output, d, describeTopic);
    });
}

/** `topic describe` for people: the topic, one aligned row per partition, then its configs. */
export function describeTopic(d: TopicDescription): string[] {
  const withElr = d.partitions.some((p) => (p.elr?.length ?? 0) > 0);
  const withFollowers = d.partitions.some((p) => (p.replicaStates?.length ?? 0) > 0);
  const configs = Object.entries(d.configs);
  return [
    `topic ${d.name}  partitions=${d.partitions.length}  replication=${d.replicationFactor}`,
    ...table([
      [
        'PARTITION',
        'LEADER',
        'REPLICAS',
        'ISR',
        ...(withElr ? ['ELR'] : []),
        'START',
        'END',
        'HW',
        ...(withFollowers ? ['FOLLOWERS'] : []),
      ],
      ...d.partitions.map((p) => [
        String(p.partition),
        String(p.leader),
        p.replicas.join(','),
        p.isr.join(',') || '-',
        ...(withElr ? [p.elr?.join(',') || '-'] : []),
        String(p.logStartOffset),
        String(p.logEndOffset),
        String(p.highWatermark),
        ...(withFollowers
          ? [p.replicaStates?.map((r) => `${r.id}:end=${r.logEndOffset},lag=${r.lag}`).join(' ') || '-']
          : []),
      ]),
    ]),
    configs.length === 0
      ? 'configs: (all defaults)'
      : `configs: ${configs.map(([k, v]) => `${k}=${String(v)}`).join('  ')}`,
  ];
}

function addTopicAlterCommand(topic: Command, io: Io): void {
  topic
    .command('alter <name>')
    .description('change configs (name= resets one) or grow the partition count')
    .option(...BOOTSTRAP_OPTION)
    .option('-c, --config <name=value>', 'config to set, repeatable; an empty value resets it', collectConfig)
    .option('-p, --partitions <n>', 'new, larger partition count', integer('partitions', 1))
    .option(...OUTPUT_OPTION)
    .action(
      async (
        name: string,
        opts: {
          bootstrap: string;
          config?: Record<string, string>;
          partitions?: number;
          output: OutputFormat;
        },
      ) => {
        if (!opts.config && opts.partitions === undefined)
          throw new UsageError('topic alter: give --config and/or --partitions');
        const altered = await withAdmin(opts.bootstrap, async (admin) => {
          let d: TopicDescription | undefined;
          if (opts.config) {
            const changes = Object.fromEntries(
              Object.entries(opts.config).map(([k, v]) => [k, v === '' ? null : v]),
            );
            d = await admin.alterConfigs(name, changes);
          }
          if (opts.partitions !== undefined) d = await admin.addPartitions(name, opts.partitions);
          return d!;
        });
        render(io, opts.output, altered, () => [`altered topic ${name}`]);
      },
    );
}

function addTopicDeleteCommand(topic: Command, io: Io): void {
  topic
    .command('delete <name>')
    .description('delete a topic and its data')
    .option(...BOOTSTRAP_OPTION)
    .option(...OUTPUT_OPTION)
    .action(async (name: string, opts: { bootstrap: string; output: OutputFormat }) => {
      const deleted = await withAdmin(opts.bootstrap, (admin) => admin.deleteTopic(name));
      render(io, opts.output, deleted, (d) => [`deleted topic ${d.name}`]);
    });
}

interface OffsetsFlags {
  bootstrap: string;
  partition?: number;
  time?: string;
  output: OutputFormat;
}

/** `sluice offsets TOPIC`: per partition the earliest and latest offsets, and the offset at a time. */
function addOffsetsCommand(program: Command, io: Io): void {
  program
    .command('offsets <topic>')
    .description(
      'per partition: the earliest offset, the latest (the next to be written), the high watermark and, with --time, the first offset at or after that time',
    )
    .option(...BOOTSTRAP_OPTION)
    .option('--partition <p>', 'only this partition (default: all)', integer('partition'))
    .option('--time <time>', 'also the first offset at or after this time: ISO 8601, or ms since the epoch')
    .option(...OUTPUT_OPTION)
    .action(async (topicName: string, opts: OffsetsFlags) => {
      const timestampMs = opts.time === undefined ? undefined : parseTime('--time', opts.time);
      const partitions = await withAdmin(opts.bootstrap, async (admin) => {
        const numbers =
          opts.partition !== undefined
            ? [opts.partition]
            : (await admin.describeTopic(topicName)).partitions.map((p) => p.partition);
        return Promise.all(numbers.map((p) => admin.offsets(topicName, p, timestampMs)));
      });
      render(io, opts.output, { topic: topicName, partitions }, (o) => describeOffsets(o.partitions));
    });
}

/** A time given on the command line: ISO 8601 or milliseconds since the epoch. */
export function parseTime(flag: string, text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms))
    throw new UsageError(`${flag} must be ISO 8601 or ms since the epoch, got ${text}`);
  return ms;
}

function describeOffsets(partitions: readonly OffsetsResponse[]): string[] {
  const timed = partitions.some((p) => p.timestamp !== undefined);
  return table([
    ['PARTITION', 'EARLIEST', 'LATEST', 'HW', ...(timed ? ['AT TIME'] : [])],
    ...partitions.map((p) => [
      String(p.partition),
      String(p.earliest),
      String(p.latest),
      String(p.highWatermark),
      ...(timed ? [p.offset === null || p.offset === undefined ? '-' : String(p.offset)] : []),
    ]),
  ]);
}

function addProduceCommand(program: Command, io: Io, dependencies: CliDependencies): void {
  program
    .command('produce <topic>')
    .description(
      'send each line of standard input as a record; Ctrl-C stops reading, waits for the answers to what was sent, and exits 130',
    )
    .option(...BOOTSTRAP_OPTION)
    .option('--key-separator <sep>', 'split each line into key and value at the first <sep>')
    .option('--partition <p>', 'send every record to this partition', integer('partition'))
    .option('--acks <acks>', '0, 1 or all', 'all')
    .option('--compression <codec>', 'compress each batch: none, gzip, snappy, lz4 or zstd', 'none')
    .action(
      async (
        topicName: string,
        opts: {
          bootstrap: string;
          keySeparator?: string;
          partition?: number;
          acks: string;
          compression: string;
        },
      ) => {
        if (!['0', '1', 'all'].includes(opts.acks))
          throw new UsageError(`--acks must be 0, 1 or all, got ${opts.acks}`);
        if (!isCodecName(opts.compression))
          throw new UsageError(
            `--compression must be none, gzip, snappy, lz4 or zstd, got ${opts.compression}`,
          );
        const producer = new Producer({
          bootstrap: opts.bootstrap,
          acks: opts.acks === 'all' ? 'all' : (Number(opts.acks) as 0 | 1),
          lingerMs: 10,
          compression: opts.compression,
        });
        const lines = createInterface({ input: io.stdin, crlfDelay: Number.POSITIVE_INFINITY });
        const progress = progressOf(io, dependencies, 'produced');
        let interrupted = false;
        const interrupt = () => {
          interrupted = true;
          lines.close();
        };
        dependencies.signals.on('SIGINT', interrupt);
        const sends: Promise<unknown>[] = [];
        let count = 0;
        let firstError: unknown;
        try {
          for await (const line of lines) {
            let key: string | null = null;
            let value = line;
            if (opts.keySeparator) {
              const at = line.indexOf(opts.keySeparator);
              if (at >= 0) {
                key = line.slice(0, at);
                value = line.slice(at + opts.keySeparator.length);
              }
            }
            sends.push(
              producer
                .send({
                  topic: topicName,
                  key,
                  value,
                  ...(opts.partition !== undefined ? { partition: opts.partition } : {}),
                })
                .then(
                  () => progress.update(++count),
                  (error) => {
                    firstError ??= error;
                  },
                ),
            );
            if (firstError || interrupted) break;
            // Bounded: standard input is read no further ahead than this many unanswered records.
            if (sends.length >= PRODUCE_PENDING_MAX) await Promise.all(sends.splice(0));
          }
          await Promise.all(sends);
          await producer.close();
        } finally {
          dependencies.signals.off('SIGINT', interrupt);
          progress.done();
        }
        if (firstError) throw firstError;
        io.stderr.write(`produced ${count} record(s) to ${topicName}\n`);
        if (interrupted) throw new ExitCode(EXIT_INTERRUPTED);
      },
    );
}

/** The progress line of a long produce or consume (shown only when standard error is a terminal). */
function progressOf(io: Io, dependencies: CliDependencies, label: string): Progress {
  return new Progress(
    io.stderr,
    label,
    dependencies.nowMs,
    dependencies.progressIntervalMs ?? PROGRESS_INTERVAL_MS,
  );
}

type RecordFormat = 'value' | 'json' | 'yaml';

interface ConsumeFlags {
  bootstrap: string;
  group?: string;
  partition?: number;
  offset?: string;
  fromBeginning?: boolean;
  follow?: boolean;
  maxMessages?: number;
  printKey?: boolean;
  printOffset?: boolean;
  output: RecordFormat;
}

/** Parsed before any connection is made, so a bad --offset is refused even with no broker to ask. */
function consumeStartOffset(opts: ConsumeFlags): number | 'earliest' | 'latest' {
  if (opts.offset === undefined) return opts.fromBeginning ? 'earliest' : opts.follow ? 'latest' : 'earliest';
  if (opts.offset === 'earliest' || opts.offset === 'latest') return opts.offset;
  if (/^\d+$/.test(opts.offset)) return Number(opts.offset);
  throw new UsageError(`--offset must be a number, earliest or latest, got ${opts.offset}`);
}

function recordFormat(value: string): RecordFormat {
  if (value !== 'value' && value !== 'json' && value !== 'yaml')
    throw new InvalidArgumentError(`--output must be value, json or yaml, got ${value}`);
  return value;
}

/**
 * A record for scripts (docs/cli.md): key, value and header values as UTF-8 text (null for null),
 * headers as [name, value] pairs in their order (a name may repeat).
 */
export function recordView(record: ConsumedRecord) {
  return {
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    timestamp: record.timestamp,
    key: record.keyText(),
    value: record.text(),
    headers: record.headers.map(([name, value]) => [
      name,
      value === null ? null : Buffer.from(value).toString('utf8'),
    ]),
  };
}

function formatRecord(record: ConsumedRecord, opts: ConsumeFlags): string {
  if (opts.output === 'json') return JSON.stringify(recordView(record));
  if (opts.output === 'yaml') return `---\n${toYaml(recordView(record)).trimEnd()}`;
  const value = record.text() ?? '';
  const key = record.keyText() ?? '';
  return `${opts.printOffset ? `${record.partition}:${record.offset}\t` : ''}${opts.printKey ? `${key}\t` : ''}${value}`;
}

function addConsumeCommand(program: Command, io: Io, dependencies: CliDependencies): void {
  program
    .command('consume <topic>')
    .description(
      'print records of a topic, one value per line. Without --follow it starts at the earliest offset, prints what is there now and exits; with --follow it starts at the latest offset and waits for new records until Ctrl-C (exit 130)',
    )
    .option(...BOOTSTRAP_OPTION)
    .option('--partition <p>', 'read one partition (default: all)', integer('partition'))
    .option(
      '--offset <offset>',
      'start offset, earliest or latest (default: earliest, so that the records there now are printed and the command ends; with --follow, latest)',
    )
    .option('--from-beginning', 'start at the earliest offset (with --follow too)')
    .option('-f, --follow', 'keep waiting for new records')
    .option('-n, --max-messages <n>', 'stop after n records', integer('max messages', 1))
    .option('--print-key', 'print key<TAB>value')
    .option('--print-offset', 'print partition:offset<TAB> before each record')
    .option(
      '-o, --output <format>',
      'value (one value per line, the default), json (one object per line: topic, partition, offset, timestamp, key, value, headers) or yaml',
      recordFormat,
      'value' as RecordFormat,
    )
    .option(
      '--group <group>',
      'consume as a member of this consumer group: its share of the partitions, from the committed offsets, committing what it printed',
    )
    .action(async (topicName: string, opts: ConsumeFlags) => {
      if (opts.group !== undefined) {
        if (opts.partition !== undefined || opts.offset !== undefined || opts.fromBeginning)
          throw new UsageError(
            '--group takes no --partition, --offset or --from-beginning: the group assigns partitions and keeps offsets (see sluice group reset-offsets)',
          );
        const interrupted = await consumeAsGroupMember(
          io,
          topicName,
          { ...opts, group: opts.group },
          (r) => formatRecord(r, opts),
          dependencies.signals,
        );
        if (interrupted) throw new ExitCode(EXIT_INTERRUPTED);
        return;
      }
      const start = consumeStartOffset(opts);
      const partitions = await withAdmin(opts.bootstrap, async (admin) => {
        const description = await admin.describeTopic(topicName);
        return opts.partition !== undefined
          ? [opts.partition]
          : description.partitions.map((p) => p.partition);
      });
      let printed = 0;
      const consumers = partitions.map(
        (partition) =>
          new PartitionConsumer({
            bootstrap: opts.bootstrap,
            topic: topicName,
            partition,
            offset: start,
            stopAtEnd: !opts.follow,
          }),
      );
      const progress = progressOf(io, dependencies, 'consumed');
      const stopAll = () => {
        for (const c of consumers) void c.close();
      };
      let interrupted = false;
      const interrupt = () => {
        interrupted = true;
        stopAll();
      };
      dependencies.signals.on('SIGINT', interrupt);
      try {
        await Promise.all(
          consumers.map(async (consumer) => {
            for await (const record of consumer) {
              if (opts.maxMessages !== undefined && printed >= opts.maxMessages) break;
              print(io, formatRecord(record, opts));
              progress.update(++printed);
              if (opts.maxMessages !== undefined && printed >= opts.maxMessages) {
                stopAll();
                break;
              }
            }
          }),
        );
      } finally {
        dependencies.signals.off('SIGINT', interrupt);
        progress.done();
        stopAll();
      }
      if (interrupted) throw new ExitCode(EXIT_INTERRUPTED);
    });
}

function addLogCommand(program: Command, io: Io): void {
  const log = program.command('log').description('offline tools for a data directory');
  log
    .command('verify <dataDir>')
    .description(
      "check every segment of a stopped broker's data directory: batch CRCs and framing, gaps and overlaps between segments, indexes; exits 1 on any problem",
    )
    .option(...OUTPUT_OPTION)
    .action(async (dataDir: string, opts: { output: OutputFormat }) => {
      const report = await verifyLogDirectory(resolve(dataDir), nodeFileSystem);
      render(io, opts.output, report, describeLogReport);
      if (!report.ok) {
        const bad = report.partitions.filter((p) => !p.ok).length;
        throw new Error(`${bad} of ${report.partitions.length} partitions have problems`);
      }
    });
}

/** The verify report for people: one line per partition, then one per problem. */
function describeLogReport(report: LogVerifyReport): string[] {
  const lines: string[] = [];
  for (const p of report.partitions) {
    const batches = p.segments.reduce((n, s) => n + s.batchesChecked, 0);
    lines.push(`${p.name}\t${p.ok ? 'ok' : 'PROBLEMS'}\tsegments=${p.segments.length}\tbatches=${batches}`);
    for (const s of p.segments) {
      if (s.firstBadBatch) {
        const b = s.firstBadBatch;
        lines.push(
          `  ${s.file}: ${b.kind} batch at byte ${b.position}: ${b.reason}; readable up to offset ${s.nextOffset}`,
        );
      }
      for (const problem of s.indexProblems) lines.push(`  ${s.file}: ${problem}`);
    }
    for (const g of p.gaps)
      lines.push(
        `  gap: offsets ${g.fromOffset}-${g.toOffset - 1} are in no segment (between ${g.before} and ${g.after})`,
      );
    for (const o of p.overlaps)
      lines.push(`  overlap: ${o.file} starts at ${o.baseOffset}, before ${o.previousNextOffset}`);
  }
  if (report.partitions.length === 0) lines.push(`no partition directories in ${report.dataDir}`);
  return lines;
}

/**
 * Runs the CLI; resolves with the exit code: 0 success, 1 failure (the broker refused, or could
 * not be reached), 2 a usage error, 130 interrupted by Ctrl-C. Errors are one line, never a stack
 * trace.
 */
export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
  dependencies: Partial<CliDependencies> = {},
): Promise<number> {
  let code = 0;
  const program = buildProgram(
    io,
    { startNode, spawnNode: spawnSluice, signals: process, nowMs: Date.now, ...dependencies },
    (c) => {
      code = c;
    },
  );
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_USAGE;
    if (error instanceof ExitCode) return error.code;
    if (error instanceof UsageError) {
      io.stderr.write(`sluice: ${error.message} (see --help)\n`);
      return EXIT_USAGE;
    }
    io.stderr.write(`sluice: ${describeError(error)}\n`);
    return 1;
  }
}

/** The exit code of a usage error: a bad flag, value or command. */
const EXIT_USAGE = 2;

function describeError(error: unknown): string {
  // A node that cannot be reached is said in words: its code (LEADER_NOT_AVAILABLE) is for retries.
  if (error instanceof SluiceError && isConnectionError(error)) return error.message;
  if (error instanceof SluiceError) return `${error.message} (${error.code})`;
  const e = error as NodeJS.ErrnoException;
  if (e?.code === 'ECONNREFUSED') return `cannot connect: ${e.message}`;
  if (e?.code === 'EADDRINUSE') return `the port is already in use (${e.message})`;
  return error instanceof Error ? error.message : String(error);
}
