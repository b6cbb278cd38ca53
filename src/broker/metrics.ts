import { type Counter, type Metrics, OTHER_PARTITIONS, PartitionSeries } from '../common/metrics.js';
import type { PartitionReplica } from '../replication/replica.js';
import type { FetchWaiters } from './fetch-waiters.js';
import type { Topics } from './topics.js';

/** The counters of one partition's series, held by the replica's entry so a request only adds. */
export interface PartitionCounters {
  recordsIn: Counter;
  bytesIn: Counter;
  recordsOut: Counter;
  bytesOut: Counter;
}

/**
 * What one partition counted on this node since it started, readable (a prom-client cell is not,
 * and a partition past the series limit shares its cell with the others): the describe answer's
 * `stats`, from which the console computes throughput.
 */
export interface PartitionTotals {
  recordsIn: number;
  bytesIn: number;
  recordsOut: number;
  bytesOut: number;
}

type TotalName = keyof PartitionTotals;

/** A counter that adds to its series and to the partition's own total. */
function countingBoth(cell: Counter, totals: PartitionTotals, name: TotalName): Counter {
  return {
    inc(amount = 1) {
      cell.inc(amount);
      totals[name] += amount;
    },
  };
}

const PARTITION_LABELS = ['topic', 'partition'] as const;

/** How many partitions get series of their own unless configured (`metrics.partition.series.max`). */
export const PARTITION_SERIES_MAX_DEFAULT = 1000;

/**
 * The broker's metrics: records and bytes in and out per partition (counted as they happen, on
 * children cached per replica), and the gauges read when scraped: offsets, segments and bytes on
 * disk per partition, offline partitions, waiting fetches.
 *
 * Cardinality: the first `partitionSeriesMax` partitions get their own series; the counters and
 * sizes of later ones add up under `topic="*",partition="*"`, and their offsets are not reported
 * (a sum of offsets means nothing). A deleted topic's series are dropped and its places freed.
 */
export class BrokerMetrics {
  readonly #series: PartitionSeries;
  readonly #families;
  readonly #byReplica = new WeakMap<PartitionReplica, PartitionCounters>();
  readonly #totals = new WeakMap<PartitionReplica, PartitionTotals>();
  readonly #isrChanges: Record<'shrink' | 'expand', { inc(n?: number): void }>;
  readonly #duplicates: { inc(n?: number): void };

  /** An in-sync set change of a partition this node leads, committed. */
  isrChange(change: 'shrink' | 'expand'): void {
    this.#isrChanges[change].inc();
  }

  /** A produce answered as an idempotent producer's retry. */
  duplicate(): void {
    this.#duplicates.inc();
  }

  constructor(
    options: { partitionSeriesMax?: number },
    deps: { metrics: Metrics; topics: Topics; waiters: FetchWaiters },
  ) {
    const { metrics, topics, waiters } = deps;
    this.#series = new PartitionSeries(options.partitionSeriesMax ?? PARTITION_SERIES_MAX_DEFAULT);
    const counter = (name: string, help: string) =>
      metrics.counter({ name, help, labelNames: PARTITION_LABELS });
    this.#families = {
      recordsIn: counter('sluice_records_in_total', 'Records appended to the partition as its leader'),
      bytesIn: counter(
        'sluice_bytes_in_total',
        'Bytes of stored batches appended to the partition as its leader',
      ),
      recordsOut: counter('sluice_records_out_total', 'Records in the stored batches read for consumers'),
      bytesOut: counter('sluice_bytes_out_total', 'Bytes of stored batches read for consumers'),
    };
    const perPartition = (
      name: string,
      help: string,
      value: (replica: PartitionReplica) => number,
      adds: boolean,
    ) =>
      metrics.collectedGauge({ name, help, labelNames: PARTITION_LABELS }, (sample) => {
        for (const replica of this.#replicas(topics)) {
          const labels = this.#series.labelsOf(replica.topic, replica.partition);
          if (labels === OTHER_PARTITIONS && !adds) continue;
          sample(labels, value(replica));
        }
      });
    perPartition(
      'sluice_log_start_offset',
      'The first offset the partition holds',
      (r) => r.logStartOffset,
      false,
    );
    perPartition('sluice_log_end_offset', 'The offset the next append gets', (r) => r.logEndOffset, false);
    perPartition(
      'sluice_high_watermark',
      'Offsets below it are on every in-sync replica and readable',
      (r) => r.highWatermark,
      false,
    );
    perPartition('sluice_log_segments', 'Segment files of the partition', (r) => r.log.segmentCount, true);
    perPartition(
      'sluice_log_size_bytes',
      'Bytes of the partition’s segments on disk',
      (r) => r.log.sizeBytes,
      true,
    );
    const isrChanges = metrics.counter({
      name: 'sluice_isr_changes_total',
      help: 'In-sync set changes of partitions this node leads, committed by the controller',
      labelNames: ['change'],
    });
    this.#isrChanges = { shrink: isrChanges.labels('shrink'), expand: isrChanges.labels('expand') };
    this.#duplicates = metrics
      .counter({
        name: 'sluice_produce_duplicates_total',
        help: "Idempotent producers' retries answered with their first offsets, nothing appended",
      })
      .labels();
    metrics.collectedGauge(
      { name: 'sluice_partitions_offline', help: 'Partition logs taken offline by a storage failure' },
      (sample) => {
        let offline = 0;
        for (const replica of this.#replicas(topics)) if (replica.log.offlineReason !== undefined) offline++;
        sample([], offline);
      },
    );
    metrics.collectedGauge(
      {
        name: 'sluice_partitions_led',
        help: 'Partitions this node leads, by replication state',
        labelNames: ['state'],
      },
      (sample) => {
        let inSync = 0;
        let under = 0;
        let belowMin = 0;
        for (const replica of this.#replicas(topics)) {
          if (!replica.isLeader) continue;
          const isr = replica.inSyncReplicas.length;
          if (isr < replica.replicas.length) under++;
          else inSync++;
          if (isr < topics.config(topics.get(replica.topic)).minInsyncReplicas && replica.replicas.length > 1)
            belowMin++;
        }
        sample(['fully_replicated'], inSync);
        sample(['under_replicated'], under);
        sample(['under_min_isr'], belowMin);
      },
    );
    metrics.collectedGauge(
      {
        name: 'sluice_replica_lag_records',
        help: 'Records the followers of this node’s partitions are behind, summed per follower',
        labelNames: ['follower'],
      },
      (sample) => {
        const lag = new Map<number, number>();
        for (const replica of this.#replicas(topics)) {
          if (!replica.isLeader) continue;
          for (const f of replica.followerEnds()) {
            const behind =
              f.logEndOffset < 0 ? replica.logEndOffset : Math.max(0, replica.logEndOffset - f.logEndOffset);
            lag.set(f.id, (lag.get(f.id) ?? 0) + behind);
          }
        }
        for (const [id, records] of [...lag].sort((a, b) => a[0] - b[0])) sample([String(id)], records);
      },
    );
    metrics.collectedGauge({ name: 'sluice_partitions', help: 'Partitions this node holds' }, (sample) => {
      let count = 0;
      for (const _ of this.#replicas(topics)) count++;
      sample([], count);
    });
    metrics.collectedGauge(
      {
        name: 'sluice_fetch_waiting',
        help: 'Long-poll fetches and follow-stream reads waiting for records now',
      },
      (sample) => sample([], waiters.waiting),
    );
  }

  /** The partition's counters, made on its first request and kept with the replica. */
  partition(replica: PartitionReplica): PartitionCounters {
    let counters = this.#byReplica.get(replica);
    if (!counters) {
      const labels = this.#series.labelsOf(replica.topic, replica.partition);
      const f = this.#families;
      const totals: PartitionTotals = { recordsIn: 0, bytesIn: 0, recordsOut: 0, bytesOut: 0 };
      counters = {
        recordsIn: countingBoth(f.recordsIn.labels(...labels), totals, 'recordsIn'),
        bytesIn: countingBoth(f.bytesIn.labels(...labels), totals, 'bytesIn'),
        recordsOut: countingBoth(f.recordsOut.labels(...labels), totals, 'recordsOut'),
        bytesOut: countingBoth(f.bytesOut.labels(...labels), totals, 'bytesOut'),
      };
      this.#byReplica.set(replica, counters);
      this.#totals.set(replica, totals);
    }
    return counters;
  }

  /** What the partition counted on this node so far (all zero before its first request). */
  totals(replica: PartitionReplica): PartitionTotals {
    const totals = this.#totals.get(replica);
    return totals ? { ...totals } : { recordsIn: 0, bytesIn: 0, recordsOut: 0, bytesOut: 0 };
  }

  /** Drops a deleted topic's series (its counters start again from 0 if it is created again). */
  forgetTopic(topic: string): void {
    for (const partition of this.#series.forget(topic)) {
      for (const family of Object.values(this.#families)) family.remove(topic, String(partition));
    }
  }

  *#replicas(topics: Topics): Iterable<PartitionReplica> {
    for (const topic of topics.list()) {
      for (let p = 0; p < topic.partitions; p++) {
        const replica = topics.replicas.get(topic.name, p);
        if (replica) yield replica;
      }
    }
  }
}
