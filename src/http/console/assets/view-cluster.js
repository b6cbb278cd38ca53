import { getJson } from './api.js';
import { card, errorBox, h, replace, table } from './dom.js';
import { formatCount, nodeConsoleUrl, nodeRoles, partitionHealth, reassignmentRows } from './format.js';

/**
 * The cluster: its nodes and their roles, the metadata quorum as the serving node sees it (term,
 * commit and applied index, each voter's lag on the active controller) and partition health of
 * the whole cluster (from `/v1/metadata`, which every node answers for all), and the partition
 * reassignments in progress with each adding replica's progress (`/v1/reassignments`).
 */
export function mountCluster(root, _params, ctx) {
  const refresh = async () => {
    try {
      const [cluster, metadata, reassignments] = await Promise.all([
        getJson('/v1/cluster', ctx.signal),
        getJson('/v1/metadata', ctx.signal),
        // A node without the metadata quorum's controls answers 400: no section then.
        getJson('/v1/reassignments', ctx.signal).catch((error) => {
          if (ctx.signal.aborted) throw error;
          return null;
        }),
      ]);
      replace(root, render(cluster, metadata), renderReassignments(reassignments));
    } catch (error) {
      if (!ctx.signal.aborted) replace(root, h('h1', {}, 'Cluster'), errorBox(error));
    }
  };
  ctx.every(ctx.refreshMs, refresh);
}

function render(cluster, metadata) {
  const health = partitionHealth(metadata);
  const quorum = cluster.metadata;
  const controller = cluster.controllerId === null ? 'none' : `node ${cluster.controllerId}`;
  return [
    h('h1', {}, 'Cluster ', h('span', { class: 'muted' }, cluster.clusterId)),
    h(
      'div',
      { class: 'cards', id: 'health' },
      card('Nodes', formatCount(cluster.nodes.length)),
      card('Controller', controller, { 'data-field': 'controller' }),
      card('Topics', formatCount(health.topics)),
      card('Partitions', formatCount(health.partitions)),
      card(
        'Leaderless',
        h('span', { class: health.leaderless > 0 ? 'bad' : 'good' }, formatCount(health.leaderless)),
        {
          'data-field': 'leaderless',
        },
      ),
      card(
        'Under-replicated',
        h(
          'span',
          { class: health.underReplicated > 0 ? 'warn' : 'good' },
          formatCount(health.underReplicated),
        ),
        { 'data-field': 'under-replicated' },
      ),
    ),
    h('h2', {}, 'Nodes'),
    table(
      [
        { label: 'Node' },
        { label: 'Address' },
        { label: 'Rack' },
        { label: 'Roles' },
        { label: 'Broker epoch', num: true },
        { label: '' },
      ],
      cluster.nodes.map((node) => {
        const url = nodeConsoleUrl(node);
        return [
          String(node.id),
          `${node.host}:${node.port}`,
          node.rack ?? '—',
          nodeRoles(node, cluster).map((role) => h('span', { class: `tag ${role}` }, role)),
          node.brokerEpoch === undefined ? '—' : formatCount(node.brokerEpoch),
          node.id === cluster.nodeId
            ? h('span', { class: 'muted' }, 'this node')
            : url
              ? h('a', { href: url }, 'its console')
              : '',
        ];
      }),
      { id: 'nodes' },
    ),
    quorum
      ? renderQuorum(cluster, quorum)
      : h('p', { class: 'muted' }, 'This node reports no metadata quorum.'),
  ];
}

function renderReassignments(response) {
  if (response === null) return [];
  const rows = reassignmentRows(response);
  return [
    h('h2', {}, 'Reassignments'),
    rows.length === 0
      ? h('p', { class: 'muted', id: 'reassignments' }, 'No reassignment in progress.')
      : table(
          [
            { label: 'Partition' },
            { label: 'Replicas → target' },
            { label: 'Leader', num: true },
            { label: 'In sync' },
            { label: 'Adding' },
            { label: 'Removing' },
          ],
          rows.map((r) => [r.partition, r.move, r.leader, r.isr, r.adding, r.removing]),
          { id: 'reassignments' },
        ),
  ];
}

function renderQuorum(cluster, quorum) {
  const followers = quorum.followers ?? [];
  return [
    h('h2', {}, 'Metadata quorum ', h('span', { class: 'muted' }, `as node ${cluster.nodeId} sees it`)),
    h(
      'div',
      { class: 'cards', id: 'quorum' },
      card('Role', quorum.role, { 'data-field': 'role' }),
      card('Term', formatCount(quorum.term), { 'data-field': 'term' }),
      card('Commit index', formatCount(quorum.commitIndex), { 'data-field': 'commit-index' }),
      card('Applied index', formatCount(quorum.appliedIndex)),
      card('Last index', formatCount(quorum.lastIndex)),
      card('Voters', quorum.voters.join(', ')),
    ),
    followers.length > 0
      ? table(
          [{ label: 'Voter' }, { label: 'Match index', num: true }, { label: 'Lag (entries)', num: true }],
          followers.map((f) => [
            String(f.id),
            formatCount(f.matchIndex),
            h('span', { class: f.lag > 0 ? 'warn' : 'good' }, formatCount(f.lag)),
          ]),
          { id: 'voter-lag' },
        )
      : h(
          'p',
          { class: 'muted' },
          quorum.role === 'leader'
            ? 'No other voters.'
            : 'Each voter’s lag is reported by the active controller: open its console.',
        ),
  ];
}
