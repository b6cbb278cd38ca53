import { getJson, sendJson, topicPath } from './api.js';
import { card, errorBox, h, replace, sparkline, table, viewLink } from './dom.js';
import { addSample, formatBytes, formatCount, formatRate, topicTotals } from './format.js';
import { historyOf, topicHistories } from './view-topics.js';

/**
 * One topic: per partition its leader and leader epoch, replicas and in-sync set, log start and
 * end, high watermark, each follower's lag as the leader sees it, segments and bytes; charts of
 * its throughput and follower lag over the last samples; its configs (set or reset one), and
 * delete.
 */
export function mountTopic(root, params, ctx) {
  const name = params[0];
  const status = h('div');
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const refresh = async () => {
    try {
      const topic = await getJson(topicPath(name), ctx.signal);
      const series = addSample(historyOf(topicHistories(ctx), name), {
        timeMs: performance.now(),
        ...topicTotals(topic),
      });
      replace(body, render(topic, series, ctx, status, refresh));
    } catch (error) {
      if (!ctx.signal.aborted) replace(body, errorBox(error));
    }
  };
  replace(root, h('h1', {}, 'Topic ', h('span', { id: 'topic-name' }, name)), status, body);
  ctx.every(ctx.refreshMs, refresh);
}

function render(topic, series, ctx, status, refresh) {
  const totals = topicTotals(topic);
  return [
    h(
      'div',
      { class: 'cards' },
      card('Partitions', formatCount(totals.partitions)),
      card('Replication factor', formatCount(topic.replicationFactor)),
      card('Records', formatCount(totals.records)),
      card('Size', formatBytes(totals.sizeBytes)),
      card('Segments', formatCount(totals.segments)),
    ),
    charts(topic, series, ctx.refreshMs),
    h('h2', {}, 'Partitions'),
    table(
      [
        { label: 'Partition', num: true },
        { label: 'Leader', num: true },
        { label: 'Epoch', num: true },
        { label: 'Replicas' },
        { label: 'In sync' },
        { label: 'Eligible' },
        { label: 'Log start', num: true },
        { label: 'Log end', num: true },
        { label: 'High watermark', num: true },
        { label: 'Follower lag' },
        { label: 'Segments', num: true },
        { label: 'Size', num: true },
        { label: 'Producers', num: true },
        { label: '' },
      ],
      topic.partitions.map((p) => ({
        attributes: { 'data-partition': p.partition },
        cells: [
          String(p.partition),
          p.leader < 0 ? h('span', { class: 'bad' }, 'none') : String(p.leader),
          String(p.leaderEpoch),
          p.replicas.join(', '),
          h('span', { class: p.isr.length < p.replicas.length ? 'warn' : undefined }, p.isr.join(', ')),
          // Out of the in-sync set but sure to hold every committed record (docs/cluster.md).
          p.elr?.length ? p.elr.join(', ') : '—',
          offset(p.logStartOffset),
          offset(p.logEndOffset),
          offset(p.highWatermark),
          followerLag(p),
          p.stats ? formatCount(p.stats.segments) : '—',
          p.stats ? formatBytes(p.stats.sizeBytes) : '—',
          // Idempotent producers the leader keeps state of (docs/producers.md).
          p.stats ? formatCount(p.stats.producers) : '—',
          viewLink(['topics', topic.name, 'partitions', p.partition], 'records'),
        ],
      })),
      { id: 'partitions' },
    ),
    h('h2', {}, 'Configs'),
    Object.keys(topic.configs).length === 0
      ? h('p', { class: 'muted' }, 'Every config has the broker’s default.')
      : table(
          [{ label: 'Name' }, { label: 'Value' }],
          Object.entries(topic.configs)
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .map(([k, v]) => [k, String(v)]),
          { id: 'configs' },
        ),
    configForm(topic, ctx, status, refresh),
    h('h2', {}, 'Delete'),
    deleteButton(topic, ctx, status),
  ];
}

/** Throughput in and out and the followers' lag, one point per refresh. */
function charts(topic, series, refreshMs) {
  const last = series[series.length - 1];
  const chart = (label, field, value) =>
    h(
      'div',
      { class: 'card chart', 'data-chart': field },
      h('div', { class: 'label' }, label),
      h('div', { class: 'value' }, value),
      sparkline(
        series.map((r) => r[field]),
        { width: 220, height: 48, label: `${topic.name}: ${label}` },
      ),
    );
  return [
    h(
      'h2',
      {},
      'Throughput and lag ',
      h('span', { class: 'muted' }, `one point per refresh, every ${refreshMs / 1000} s`),
    ),
    h(
      'div',
      { class: 'cards', id: 'charts' },
      chart('Records in', 'recordsIn', formatRate(last?.recordsIn)),
      chart('Bytes in', 'bytesIn', formatRate(last?.bytesIn, true)),
      chart('Records out', 'recordsOut', formatRate(last?.recordsOut)),
      chart('Follower lag (records)', 'followerLag', formatCount(topicTotals(topic).followerLag)),
    ),
  ];
}

/** -1: the leader did not answer. */
const offset = (value) => (value < 0 ? h('span', { class: 'muted' }, 'unknown') : formatCount(value));

function followerLag(p) {
  if (!p.replicaStates || p.replicaStates.length === 0) return h('span', { class: 'muted' }, '—');
  return p.replicaStates.map((f) =>
    h('span', { class: `tag ${f.lag > 0 ? 'warn' : ''}` }, `${f.id}: ${formatCount(f.lag)}`),
  );
}

function configForm(topic, ctx, status, refresh) {
  const name = h('input', { name: 'config', required: true, placeholder: 'retention.ms' });
  const value = h('input', { name: 'value', placeholder: 'empty resets to the default' });
  const submit = async (event) => {
    event.preventDefault();
    const text = value.value.trim();
    // A number goes as a number, so that `retention.ms` gets 3600000 and not "3600000".
    const parsed = text === '' ? null : /^-?[0-9]+$/.test(text) ? Number(text) : text;
    try {
      await sendJson('PATCH', `${topicPath(topic.name)}/configs`, { [name.value]: parsed }, ctx.signal);
      replace(
        status,
        h('p', { class: 'good' }, parsed === null ? `Reset ${name.value}.` : `Set ${name.value}.`),
      );
      await refresh();
    } catch (error) {
      replace(status, errorBox(error));
    }
  };
  return h(
    'form',
    { class: 'controls', id: 'alter-config', onsubmit: submit },
    h('label', {}, 'Config', name),
    h('label', {}, 'Value', value),
    h('button', { type: 'submit' }, 'Set'),
  );
}

function deleteButton(topic, ctx, status) {
  const remove = async () => {
    if (!window.confirm(`Delete topic ${topic.name} and all its records?`)) return;
    try {
      await sendJson('DELETE', topicPath(topic.name), undefined, ctx.signal);
      location.hash = '#/topics';
    } catch (error) {
      replace(status, errorBox(error));
    }
  };
  return h('button', { type: 'button', id: 'delete-topic', onclick: remove }, `Delete ${topic.name}`);
}
