import { describe, expect, it } from 'vitest';
import {
  type AnomalyKind,
  checkHistory,
  type History,
  type Poll,
  type ReplicaLog,
  type Send,
} from './history.js';

/**
 * The fault test's history checker on hand-built histories: a clean one passes, and each anomaly,
 * put in on its own, is reported with its kind (so that every check is shown able to fail).
 */
const values = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `w1-${from + i}`);

function replica(node: number, log: string[], highWatermark = log.length, inSync = true): ReplicaLog {
  return {
    node,
    partition: 0,
    records: log.map((value, offset) => ({ offset, value })),
    highWatermark,
    inSync,
  };
}

function acked(log: string[]): Send[] {
  return log.map((value, offset) => ({ writer: 1, partition: 0, value, outcome: 'ok', offset }));
}

function poll(
  consumer: number,
  fromOffset: number,
  log: string[],
  count: number,
  highWatermark = log.length,
): Poll {
  const records = log
    .slice(fromOffset, fromOffset + count)
    .map((value, i) => ({ offset: fromOffset + i, value }));
  return {
    consumer,
    partition: 0,
    fromOffset,
    records,
    nextOffset: fromOffset + records.length,
    highWatermark,
    node: 1,
  };
}

/** A clean history: 6 records acknowledged, read in two polls, on three identical replicas. */
function clean(): History {
  const log = values(6);
  return {
    sends: [
      ...acked(log),
      { writer: 1, partition: 0, value: 'w1-6', outcome: 'unknown', error: 'timeout' },
      { writer: 1, partition: 0, value: 'w1-7', outcome: 'failed', error: 'NOT_ENOUGH_REPLICAS' },
    ],
    polls: [poll(1, 0, log, 3), poll(1, 3, log, 3)],
    replicas: [replica(1, log), replica(2, log), replica(3, log)],
  };
}

const kinds = (history: History): AnomalyKind[] => [...new Set(checkHistory(history).map((a) => a.kind))];

describe('the history checker', () => {
  it('finds nothing in a clean history, an unknown send present or absent', () => {
    expect(checkHistory(clean())).toEqual([]);
    const withUnknown = clean();
    const log = [...values(6), 'w1-6'];
    withUnknown.replicas = [replica(1, log), replica(2, log), replica(3, log)];
    expect(checkHistory(withUnknown)).toEqual([]);
  });

  it('reports an acknowledged write missing from the committed log as lost', () => {
    const h = clean();
    const log = values(5);
    h.replicas = [replica(1, log), replica(2, log), replica(3, log)];
    expect(kinds(h)).toContain('lost');
  });

  it('reports an acknowledged write above the in-sync replicas’ high watermark as lost', () => {
    const h = clean();
    h.replicas = h.replicas.map((r) => ({ ...r, highWatermark: 5 }));
    expect(kinds(h)).toContain('lost');
  });

  it('reports a value at two offsets as a duplicate', () => {
    const h = clean();
    const log = [...values(6), 'w1-2'];
    h.replicas = [replica(1, log), replica(2, log), replica(3, log)];
    expect(kinds(h)).toEqual(['duplicate']);
  });

  it('reports an offset holding two values, between a read and the final log', () => {
    const h = clean();
    h.polls[0]!.records[1]!.value = 'w9-0';
    expect(kinds(h)).toContain('two-values');
  });

  it('reports a refused write found in the log', () => {
    const h = clean();
    const log = [...values(6), 'w1-7'];
    h.replicas = [replica(1, log), replica(2, log), replica(3, log)];
    expect(kinds(h)).toEqual(['failed-present']);
  });

  it('reports a read at or above the high watermark the answer carried', () => {
    const h = clean();
    h.polls[1] = { ...h.polls[1]!, highWatermark: 5 };
    expect(kinds(h)).toEqual(['read-above-high-watermark']);
  });

  it('reports a read of a record the committed log does not hold (later truncated)', () => {
    const h = clean();
    h.polls.push({
      consumer: 2,
      partition: 0,
      fromOffset: 6,
      records: [{ offset: 6, value: 'w2-0' }],
      nextOffset: 7,
      highWatermark: 7,
      node: 2,
    });
    expect(kinds(h)).toEqual(['read-above-high-watermark']);
  });

  it('reports a consumer that went back', () => {
    const h = clean();
    h.polls.push(poll(1, 2, values(6), 2));
    expect(kinds(h)).toContain('consumer-went-back');
  });

  it('reports a consumer that skipped offsets, between polls or within one', () => {
    const h = clean();
    h.polls[1] = poll(1, 4, values(6), 2);
    expect(kinds(h)).toEqual(['consumer-skipped']);
    const within = clean();
    within.polls[1]!.records.splice(1, 1);
    expect(kinds(within)).toContain('consumer-skipped');
  });

  it('reports one writer’s acknowledgements out of order', () => {
    const h = clean();
    const [a, b] = [h.sends[1]!, h.sends[2]!];
    h.sends[1] = b;
    h.sends[2] = a;
    expect(kinds(h)).toEqual(['out-of-order']);
  });

  it('reports in-sync replicas that differ below the high watermark, or hold less than it', () => {
    const h = clean();
    const other = values(6);
    other[5] = 'w7-0';
    h.replicas[2] = replica(3, other);
    expect(kinds(h)).toContain('replicas-differ');
    const short = clean();
    short.replicas[2] = replica(3, values(4), 6);
    expect(kinds(short)).toEqual(['replicas-differ']);
    const bytes = clean();
    bytes.replicas[0]!.bytes = Buffer.from('a');
    bytes.replicas[1]!.bytes = Buffer.from('b');
    expect(kinds(bytes)).toEqual(['replicas-differ']);
  });

  it('ignores a replica out of the in-sync set that is behind', () => {
    const h = clean();
    h.replicas[2] = replica(3, values(2), 2, false);
    expect(checkHistory(h)).toEqual([]);
  });
});
