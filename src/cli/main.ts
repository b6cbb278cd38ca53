import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Command, CommanderError } from 'commander';
import { type ConsumedRecord, PartitionConsumer } from '../client/consumer.js';
import { Producer } from '../client/producer.js';
import { SluiceError } from '../common/errors.js';
import { startNode } from '../node/node.js';
import { VERSION } from '../node/version.js';
import { isCodecName } from '../protocol/compression.js';
import { nodeFileSystem } from '../storage/fs.js';
import { type LogVerifyReport, verifyLogDirectory } from '../storage/log-verify.js';
import { addClusterCommand, addDevClusterCommand, type ClusterDependencies } from './cluster.js';
import { spawnSluice } from './dev-cluster.js';
import { addGroupCommand, consumeAsGroupMember } from './groups.js';
import { BOOTSTRAP_OPTION, collectConfig, type Io, integer, outputFormat, print, withAdmin } from './io.js';
import { addBrokerCommand, addPartitionCommand } from './reassign.js';
import { addStartCommand, type StartDependencies } from './start.js';

/** What the commands use besides their arguments and `Io`; the real ones unless a test passes others. */
export type CliDependencies = StartDependencies & ClusterDependencies;

/** Records `sluice produce` lets wait for an answer before it reads more of standard input. */
const PRODUCE_PENDING_MAX = 10_000;

function buildProgram(io: Io, dependencies: CliDependencies, done: (code: number) => void): Command {
  const program = new Command('sluice')
    .description('Sluice: a replicated log broker spoken over HTTP/2 and HTTP/1.1')
    .version(VERSION, '-V, --version')
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
  addProduceCommand(program, io);
  addConsumeCommand(program, io);
  addGroupCommand(program, io);
  addLogCommand(program, io);
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
}

function addTopicCreateCommand(topic: Command, io: Io): void {
  topic
    .command('create <name>')
    .description('create a topic')
    .option(...BOOTSTRAP_OPTION)
    .option('-p, --partitions <n>', 'number of partitions', integer('partitions', 1), 1)
    .option('-r, --replication-factor <n>', 'replicas per partition', integer('replication factor', 1), 1)
    .option('-c, --config <name=value>', 'topic config, repeatable', collectConfig)
    .action(async (name: string, opts: TopicCreateFlags) => {
      await withAdmin(opts.bootstrap, async (admin) => {
        const created = await admin.createTopic({
          name,
          partitions: opts.partitions,
          replicationFactor: opts.replicationFactor,
          configs: opts.config ?? {},
        });
        print(io, `created topic ${created.name} with ${created.partitions.length} partition(s)`);
      });
    });
}

function addTopicListCommand(topic: Command, io: Io): void {
  topic
    .command('list')
    .description('list topics')
    .option(...BOOTSTRAP_OPTION)
    .action(async (opts: { bootstrap: string }) => {
      await withAdmin(opts.bootstrap, async (admin) => {
        for (const t of await admin.listTopics())
          print(io, `${t.name}\tpartitions=${t.partitions}\treplication=${t.replicationFactor}`);
      });
    });
}

function addTopicDescribeCommand(topic: Command, io: Io): void {
  topic
    .command('describe <name>')
    .description('partitions, leaders, offsets and configs of a topic')
    .option(...BOOTSTRAP_OPTION)
    .action(async (name: string, opts: { bootstrap: string }) => {
      await withAdmin(opts.bootstrap, async (admin) => {
        const d = await admin.describeTopic(name);
        print(
          io,
          `topic ${d.name}  partitions=${d.partitions.length}  replication=${d.replicationFactor}  configs=${JSON.stringify(d.configs)}`,
        );
        for (const p of d.partitions) {
          print(
            io,
            `  partition ${p.partition}  leader=${p.leader}  replicas=${p.replicas.join(',')}  isr=${p.isr.join(',')}${p.elr?.length ? `  elr=${p.elr.join(',')}` : ''}  start=${p.logStartOffset}  end=${p.logEndOffset}  hw=${p.highWatermark}${
              p.replicaStates?.length
                ? `  followers=${p.replicaStates.map((r) => `${r.id}:end=${r.logEndOffset},lag=${r.lag}`).join(' ')}`
                : ''
            }`,
          );
        }
      });
    });
}

function addTopicAlterCommand(topic: Command, io: Io): void {
  topic
    .command('alter <name>')
    .description('change configs (name= resets one) or grow the partition count')
    .option(...BOOTSTRAP_OPTION)
    .option('-c, --config <name=value>', 'config to set, repeatable; an empty value resets it', collectConfig)
    .option('-p, --partitions <n>', 'new, larger partition count', integer('partitions', 1))
    .action(
      async (
        name: string,
        opts: { bootstrap: string; config?: Record<string, string>; partitions?: number },
      ) => {
        if (!opts.config && opts.partitions === undefined)
          throw new SluiceError('INVALID_REQUEST', 'give --config and/or --partitions');
        await withAdmin(opts.bootstrap, async (admin) => {
          if (opts.config) {
            const changes = Object.fromEntries(
              Object.entries(opts.config).map(([k, v]) => [k, v === '' ? null : v]),
            );
            await admin.alterConfigs(name, changes);
          }
          if (opts.partitions !== undefined) await admin.addPartitions(name, opts.partitions);
          print(io, `altered topic ${name}`);
        });
      },
    );
}

function addTopicDeleteCommand(topic: Command, io: Io): void {
  topic
    .command('delete <name>')
    .description('delete a topic and its data')
    .option(...BOOTSTRAP_OPTION)
    .action(async (name: string, opts: { bootstrap: string }) => {
      await withAdmin(opts.bootstrap, async (admin) => {
        await admin.deleteTopic(name);
        print(io, `deleted topic ${name}`);
      });
    });
}

function addProduceCommand(program: Command, io: Io): void {
  program
    .command('produce <topic>')
    .description('send each line of standard input as a record')
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
          throw new SluiceError('INVALID_REQUEST', '--acks must be 0, 1 or all');
        if (!isCodecName(opts.compression))
          throw new SluiceError('INVALID_REQUEST', '--compression must be none, gzip, snappy, lz4 or zstd');
        const producer = new Producer({
          bootstrap: opts.bootstrap,
          acks: opts.acks === 'all' ? 'all' : (Number(opts.acks) as 0 | 1),
          lingerMs: 10,
          compression: opts.compression,
        });
        const lines = createInterface({ input: io.stdin, crlfDelay: Number.POSITIVE_INFINITY });
        const sends: Promise<unknown>[] = [];
        let count = 0;
        let firstError: unknown;
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
                () => count++,
                (error) => {
                  firstError ??= error;
                },
              ),
          );
          if (firstError) break;
          // Bounded: standard input is read no further ahead than this many unanswered records.
          if (sends.length >= PRODUCE_PENDING_MAX) await Promise.all(sends.splice(0));
        }
        await Promise.all(sends);
        await producer.close();
        if (firstError) throw firstError;
        io.stderr.write(`produced ${count} record(s) to ${topicName}\n`);
      },
    );
}

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
}

/** Parsed before any connection is made, so a bad --offset is refused even with no broker to ask. */
function consumeStartOffset(opts: ConsumeFlags): number | 'earliest' | 'latest' {
  if (opts.offset === undefined) return opts.fromBeginning ? 'earliest' : opts.follow ? 'latest' : 'earliest';
  if (opts.offset === 'earliest' || opts.offset === 'latest') return opts.offset;
  if (/^\d+$/.test(opts.offset)) return Number(opts.offset);
  throw new SluiceError(
    'INVALID_OFFSET',
    `--offset must be a number, earliest or latest, got ${opts.offset}`,
  );
}

function formatRecord(record: ConsumedRecord, opts: ConsumeFlags): string {
  const value = record.value === null ? '' : Buffer.from(record.value).toString('utf8');
  const key = record.key === null ? '' : Buffer.from(record.key).toString('utf8');
  return `${opts.printOffset ? `${record.partition}:${record.offset}\t` : ''}${opts.printKey ? `${key}\t` : ''}${value}`;
}

function addConsumeCommand(program: Command, io: Io): void {
  program
    .command('consume <topic>')
    .description('print records of a topic, one value per line')
    .option(...BOOTSTRAP_OPTION)
    .option('--partition <p>', 'read one partition (default: all)', integer('partition'))
    .option(
      '--offset <offset>',
      'start offset, earliest or latest (default: earliest, so that the records there now are printed and the command ends; with --follow, latest)',
    )
    .option('--from-beginning', 'start at the earliest offset')
    .option('-f, --follow', 'keep waiting for new records')
    .option('-n, --max-messages <n>', 'stop after n records', integer('max messages', 1))
    .option('--print-key', 'print key<TAB>value')
    .option('--print-offset', 'print partition:offset<TAB> before each record')
    .option(
      '--group <group>',
      'consume as a member of this consumer group: its share of the partitions, from the committed offsets, committing what it printed',
    )
    .action(async (topicName: string, opts: ConsumeFlags) => {
      if (opts.group !== undefined) {
        if (opts.partition !== undefined || opts.offset !== undefined || opts.fromBeginning)
          throw new SluiceError(
            'INVALID_REQUEST',
            '--group takes no --partition, --offset or --from-beginning: the group assigns partitions and keeps offsets (see sluice group reset-offsets)',
          );
        return consumeAsGroupMember(io, topicName, { ...opts, group: opts.group }, (r) =>
          formatRecord(r, opts),
        );
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
      const stopAll = () => {
        for (const c of consumers) c.close();
      };
      process.once('SIGINT', stopAll);
      try {
        await Promise.all(
          consumers.map(async (consumer) => {
            for await (const record of consumer) {
              if (opts.maxMessages !== undefined && printed >= opts.maxMessages) break;
              print(io, formatRecord(record, opts));
              printed++;
              if (opts.maxMessages !== undefined && printed >= opts.maxMessages) {
                stopAll();
                break;
              }
            }
          }),
        );
      } finally {
        process.off('SIGINT', stopAll);
        stopAll();
      }
    });
}

function addLogCommand(program: Command, io: Io): void {
  const log = program.command('log').description('offline tools for a data directory');
  log
    .command('verify <dataDir>')
    .description(
      "check every segment of a stopped broker's data directory: batch CRCs and framing, gaps and overlaps between segments, indexes; exits 1 on any problem",
    )
    .option('-o, --output <format>', 'text or json', outputFormat, 'text' as const)
    .action(async (dataDir: string, opts: { output: 'text' | 'json' }) => {
      const report = await verifyLogDirectory(resolve(dataDir), nodeFileSystem);
      if (opts.output === 'json') print(io, JSON.stringify(report, null, 2));
      else for (const line of describeLogReport(report)) print(io, line);
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

/** Runs the CLI; resolves with the exit code. Errors are one line, never a stack trace. */
export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
  dependencies: Partial<CliDependencies> = {},
): Promise<number> {
  let code = 0;
  const program = buildProgram(
    io,
    { startNode, spawnNode: spawnSluice, signals: process, ...dependencies },
    (c) => {
      code = c;
    },
  );
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    io.stderr.write(`sluice: ${describeError(error)}\n`);
    return 1;
  }
}

function describeError(error: unknown): string {
  if (error instanceof SluiceError) return `${error.message} (${error.code})`;
  const e = error as NodeJS.ErrnoException;
  if (e?.code === 'ECONNREFUSED') return `cannot connect: ${e.message}`;
  if (e?.code === 'EADDRINUSE') return `the port is already in use (${e.message})`;
  return error instanceof Error ? error.message : String(error);
}
