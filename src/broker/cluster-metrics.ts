import type { Counter, Metrics } from '../common/metrics.js';
import type { MetadataImage } from '../metadata/image.js';
import type { RaftStatus } from '../raft/driver.js';

const ROLES = ['leader', 'candidate', 'preCandidate', 'follower'] as const;

/**
 * The metadata quorum and the cluster as this node sees them, read when scraped: the Raft role,
 * term, commit and applied indexes, each follower's lag (on the active controller), the brokers by
 * state and the partitions without a leader. `commands` counts what the active controller carried
 * out, by command and outcome.
 */
export class ClusterMetrics {
  readonly #commands: (command: string, outcome: string) => Counter;
  readonly #cache = new Map<string, Counter>();
  readonly #status: () => RaftStatus;
  readonly #leaderChanges: Counter;
  /** The leader and term last seen by `observeLeader`. */
  #seen: { term: number; leaderId: number | null } | undefined;

  constructor(deps: {
    metrics: Metrics;
    status: () => RaftStatus;
    image: () => MetadataImage;
    controllerActive: () => boolean;
  }) {
    const { metrics, status, image } = deps;
    this.#status = status;
    this.#leaderChanges = metrics
      .counter({
        name: 'sluice_metadata_leader_changes_total',
        help: 'Leaders of the metadata quorum this node has seen take over (a new leader or a new term)',
      })
      .labels();
    metrics.collectedGauge(
      {
        name: 'sluice_metadata_raft_role',
        help: 'This node’s role in the metadata quorum (1 for the role it has)',
        labelNames: ['role'],
      },
      (sample) => {
        const role = status().role;
        for (const r of ROLES) sample([r], r === role ? 1 : 0);
      },
    );
    metrics.collectedGauge(
      { name: 'sluice_metadata_raft_term', help: 'The metadata quorum’s current term' },
      (sample) => sample([], status().term),
    );
    metrics.collectedGauge(
      { name: 'sluice_metadata_commit_index', help: 'The highest metadata log index known committed' },
      (sample) => sample([], status().commitIndex),
    );
    metrics.collectedGauge(
      {
        name: 'sluice_metadata_applied_index',
        help: 'The highest metadata log index applied to the image here',
      },
      (sample) => sample([], status().appliedIndex),
    );
    metrics.collectedGauge(
      {
        name: 'sluice_metadata_follower_lag',
        help: 'On the active controller: entries each other voter is behind',
        labelNames: ['follower'],
      },
      (sample) => {
        const s = status();
        for (const f of s.followers) sample([String(f.id)], Math.max(0, s.lastIndex - f.matchIndex));
      },
    );
    metrics.collectedGauge(
      { name: 'sluice_controller_active', help: '1 on the node that is the active controller, else 0' },
      (sample) => sample([], deps.controllerActive() ? 1 : 0),
    );
    metrics.collectedGauge(
      { name: 'sluice_cluster_brokers', help: 'Registered brokers by state', labelNames: ['state'] },
      (sample) => {
        let fenced = 0;
        let unfenced = 0;
        for (const b of image().brokers.values()) b.fenced ? fenced++ : unfenced++;
        sample(['fenced'], fenced);
        sample(['unfenced'], unfenced);
      },
    );
    metrics.collectedGauge(
      { name: 'sluice_cluster_partitions_leaderless', help: 'Partitions of the cluster that have no leader' },
      (sample) => {
        let leaderless = 0;
        for (const topic of image().topicsById.values())
          for (const p of topic.partitions.values()) if (p.leader === -1) leaderless++;
        sample([], leaderless);
      },
    );
    metrics.collectedGauge(
      {
        name: 'sluice_cluster_partitions_reassigning',
        help: 'Partitions of the cluster with a reassignment in progress',
      },
      (sample) => {
        let moving = 0;
        for (const topic of image().topicsById.values())
          for (const p of topic.partitions.values())
            if (p.addingReplicas.length > 0 || p.removingReplicas.length > 0) moving++;
        sample([], moving);
      },
    );
    metrics.collectedGauge(
      {
        name: 'sluice_cluster_producer_ids_allocated',
        help: 'Producer ids the controller has handed out in blocks to brokers',
      },
      (sample) => sample([], image().nextProducerId),
    );
    const commands = metrics.counter({
      name: 'sluice_controller_commands_total',
      help: 'Commands the active controller carried out, by command and outcome',
      labelNames: ['command', 'outcome'],
    });
    this.#commands = (command, outcome) => {
      const key = `${command}\u0000${outcome}`;
      let counter = this.#cache.get(key);
      if (!counter) this.#cache.set(key, (counter = commands.labels(command, outcome)));
      return counter;
    };
  }

  /**
   * Looks at the quorum's leader now (the node calls it every 100 ms): a leader other than the last
   * one seen, or the same one at a new term, counts as a change. The first leader seen counts too.
   */
  observeLeader(): void {
    const { term, leaderId } = this.#status();
    const seen = this.#seen;
    if (leaderId !== null && (seen === undefined || seen.leaderId !== leaderId || seen.term !== term))
      this.#leaderChanges.inc();
    if (leaderId !== null || seen === undefined) this.#seen = { term, leaderId };
  }

  /** One command carried out (`ok`) or refused (the error code). */
  command(command: string, outcome: string): void {
    this.#commands(command, outcome).inc();
  }
}
