/**
 * The NATS JetStream peer of bench/run.ts, with the leanest publisher Node has: core `publish`
 * with a reply subject per message under one wildcard inbox subscription, at most WINDOW
 * messages un-acknowledged, so that no promise or object is made per message (the official
 * `js.publish` makes several and is then what is measured). Then a pull consumer reads every
 * message in fetches of 1000. Prints one `key=value ...` line.
 *
 *   node --import tsx bench/nats-publish.ts <port> [messages=200000] [window=1000] [bytes=100]
 */
import * as hdr from 'hdr-histogram-js';
import { AckPolicy, connect, createInbox, DeliverPolicy, StorageType } from 'nats';

const port = Number(process.argv[2]);
const total = Number(process.argv[3] ?? 200_000);
const window = Number(process.argv[4] ?? 1000);
const size = Number(process.argv[5] ?? 100);
setTimeout(() => {
  process.stderr.write('nats-publish: no end after 120 s\n');
  process.exit(1);
}, 120_000).unref();

const nc = await connect({ servers: `127.0.0.1:${port}`, maxPingOut: 10 });
const jsm = await nc.jetstreamManager();
await jsm.streams.add({ name: 'BENCH', subjects: ['bench'], storage: StorageType.File, num_replicas: 1 });
const payload = Buffer.alloc(size, 0x6e);
const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000 });
const inbox = createInbox();
const sentAt = new Float64Array(total);
const now = () => Number(process.hrtime.bigint()) / 1000;
let sent = 0;
let acked = 0;
let refused = 0;
let wake: (() => void) | undefined;
const subscription = nc.subscribe(`${inbox}.*`, {
  callback: (error, message) => {
    const i = Number(message.subject.slice(inbox.length + 1));
    histogram.recordValue(Math.max(1, Math.round(now() - sentAt[i]!)));
    // A PubAck is {"stream":...}; an error answer {"error":...}.
    if (error || message.data[2] !== 0x73) refused++;
    acked++;
    const w = wake;
    wake = undefined;
    w?.();
  },
});
const t0 = now();
while (sent < total) {
  while (sent - acked >= window) await new Promise<void>((resolve) => (wake = resolve));
  sentAt[sent] = now();
  nc.publish('bench', payload, { reply: `${inbox}.${sent}` });
  sent++;
}
while (acked < total) await new Promise<void>((resolve) => (wake = resolve));
const publishSeconds = (now() - t0) / 1e6;
subscription.unsubscribe();
if (refused) throw new Error(`${refused} publishes were refused`);

await jsm.consumers.add('BENCH', {
  durable_name: 'reader',
  ack_policy: AckPolicy.None,
  deliver_policy: DeliverPolicy.All,
});
const consumer = await nc.jetstream().consumers.get('BENCH', 'reader');
let read = 0;
const c0 = now();
while (read < total) {
  const messages = await consumer.fetch({ max_messages: 1000, expires: 5000 });
  let got = 0;
  for await (const _ of messages) got++;
  if (got === 0) break;
  read += got;
}
const consumeSeconds = (now() - c0) / 1e6;
if (read !== total) throw new Error(`read ${read} of ${total}`);
const ms = (q: number) => (histogram.getValueAtPercentile(q) / 1000).toFixed(3);
process.stdout.write(
  `publish_msgs_s=${Math.round(total / publishSeconds)} ack_p50_ms=${ms(50)} ack_p99_ms=${ms(99)} consume_msgs_s=${Math.round(read / consumeSeconds)}\n`,
);
await jsm.streams.delete('BENCH');
await nc.drain();
