import * as http from 'node:http';
import * as hdr from 'hdr-histogram-js';

export interface PacedResult {
  sent: number;
  completed: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * An open-loop load at a fixed rate over keep-alive HTTP/1.1 connections, with latencies recorded in
 * microseconds (autocannon's histogram has whole milliseconds, too coarse for sub-millisecond
 * targets). Each request's latency runs from its scheduled send time, so a stall is not hidden.
 */
export async function paced(options: {
  url: string;
  body: Buffer;
  headers: Record<string, string>;
  ratePerSecond: number;
  seconds: number;
  connections?: number;
}): Promise<PacedResult> {
  const url = new URL(options.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections ?? 8 });
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const total = Math.round(options.ratePerSecond * options.seconds);
  const intervalNs = 1e9 / options.ratePerSecond;
  let sent = 0;
  let completed = 0;
  let errors = 0;
  const start = process.hrtime.bigint();
  const inFlight = new Set<Promise<void>>();
  const send = (scheduledNs: bigint) => {
    const done = new Promise<void>((resolve) => {
      const req = http.request(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname + url.search,
          method: 'POST',
          agent,
          headers: { ...options.headers, 'content-length': options.body.length },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            const latencyUs = Number(process.hrtime.bigint() - scheduledNs) / 1000;
            histogram.recordValue(Math.max(1, Math.round(latencyUs)));
            if ((res.statusCode ?? 500) >= 400) errors++;
            completed++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(options.body);
    });
    inFlight.add(done);
    void done.then(() => inFlight.delete(done));
  };
  while (sent < total) {
    const now = process.hrtime.bigint();
    const due = Math.min(total, Math.floor(Number(now - start) / intervalNs) + 1);
    while (sent < due) {
      send(start + BigInt(Math.round(sent * intervalNs)));
      sent++;
    }
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all([...inFlight]);
  agent.destroy();
  return {
    sent,
    completed,
    errors,
    p50Ms: histogram.getValueAtPercentile(50) / 1000,
    p99Ms: histogram.getValueAtPercentile(99) / 1000,
    maxMs: histogram.maxValue / 1000,
  };
}
