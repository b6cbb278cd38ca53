import { getJson, mapLimited, sendJson, topicPath } from './api.js';
import { errorBox, h, replace, sparkline, table, viewLink } from './dom.js';
import { addSample, formatBytes, formatCount, formatRate, topicTotals } from './format.js';

/** Topics described per refresh (the first by name); more are listed without their figures. */
export const TOPICS_DESCRIBED_MAX = 200;
const DESCRIBE_CONCURRENCY = 6;

/**
 * Every topic with its partitions, replication factor, records, bytes and throughput in and out.
 * The figures come from each topic's description (`GET /v1/topics/{topic}`, whose `stats` the
 * partition leaders count); a rate is the difference between this refresh and the one before.
 * The samples are kept in `ctx.store` (shared with the topic view), so that coming back to the
 * page shows rates and trends at once.
 */
export function mountTopics(root, _params, ctx) {
  const histories = topicHistories(ctx);
  const status = h('div');
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const refresh = async () => {
    try {
      const { topics } = await getJson('/v1/topics', ctx.signal);
      topics.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const described = topics.slice(0, TOPICS_DESCRIBED_MAX);
      const descriptions = await mapLimited(described, DESCRIBE_CONCURRENCY, (t) =>
        getJson(topicPath(t.name), ctx.signal).catch((error) => ({ error })),
      );
      const timeMs = performance.now();
      const rows = topics.map((topic, i) => {
        const description = descriptions[i];
        if (!description || description.error) return { topic, error: description?.error };
        const totals = topicTotals(description);
        const series = addSample(historyOf(histories, topic.name), { timeMs, ...totals });
        return { topic, totals, series, rates: series[series.length - 1] };
      });
      replace(list, renderTable(rows, topics.length, ctx.refreshMs));
    } catch (error) {
      if (!ctx.signal.aborted) replace(list, errorBox(error));
    }
  };
  replace(root, h('h1', {}, 'Topics'), createForm(ctx, status, refresh), status, list);
  ctx.every(ctx.refreshMs, refresh);
}

function renderTable(rows, count, refreshMs) {
  if (rows.length === 0) return h('p', { class: 'muted', id: 'no-topics' }, 'No topics yet.');
  const dash = '—';
  return [
    table(
      [
        { label: 'Topic' },
        { label: 'Partitions', num: true },
        { label: 'RF', num: true },
        { label: 'Records', num: true },
        { label: 'Size', num: true },
        { label: 'In (records)', num: true },
        { label: 'In (bytes)', num: true },
        { label: 'Out (records)', num: true },
        { label: 'Out (bytes)', num: true },
        { label: 'In, trend' },
        { label: 'Health' },
      ],
      rows.map(({ topic, totals, series, rates, error }) => ({
        attributes: { 'data-topic': topic.name },
        cells: [
          viewLink(['topics', topic.name], topic.name),
          formatCount(topic.partitions),
          formatCount(topic.replicationFactor),
          totals ? formatCount(totals.records) : dash,
          totals ? formatBytes(totals.sizeBytes) : dash,
          formatRate(rates?.recordsIn),
          formatRate(rates?.bytesIn, true),
          formatRate(rates?.recordsOut),
          formatRate(rates?.bytesOut, true),
          series && series.length > 1
            ? sparkline(
                series.map((r) => r.recordsIn),
                { label: `${topic.name}: records in per second` },
              )
            : '',
          error ? h('span', { class: 'bad' }, error.problem?.code ?? 'unavailable') : health(totals),
        ],
      })),
      { id: 'topics' },
    ),
    count > TOPICS_DESCRIBED_MAX
      ? h('p', { class: 'muted' }, `Figures for the first ${TOPICS_DESCRIBED_MAX} topics of ${count}.`)
      : null,
    h(
      'p',
      { class: 'muted' },
      `Rates over the last refresh (every ${refreshMs / 1000} s), from the partition leaders’ counters.`,
    ),
  ];
}

/** Each topic's samples, kept across views and refreshes (see `addSample`). */
export function topicHistories(ctx) {
  return ctx.store.topicHistories ?? (ctx.store.topicHistories = new Map());
}

export function historyOf(histories, topic) {
  let history = histories.get(topic);
  if (!history) histories.set(topic, (history = []));
  return history;
}

function health(totals) {
  if (!totals) return '—';
  if (totals.leaderless > 0) return h('span', { class: 'bad' }, `${totals.leaderless} leaderless`);
  if (totals.underReplicated > 0)
    return h('span', { class: 'warn' }, `${totals.underReplicated} under-replicated`);
  if (totals.unknown > 0) return h('span', { class: 'muted' }, `${totals.unknown} not answering`);
  return h('span', { class: 'good' }, 'ok');
}

function createForm(ctx, status, refresh) {
  const name = h('input', {
    name: 'name',
    required: true,
    pattern: '[a-zA-Z0-9._\\-]{1,249}',
    placeholder: 'name',
  });
  const partitions = h('input', { name: 'partitions', type: 'number', min: 1, max: 10000, value: 1 });
  const replicationFactor = h('input', {
    name: 'replicationFactor',
    type: 'number',
    min: 1,
    max: 16,
    value: 1,
  });
  const submit = async (event) => {
    event.preventDefault();
    try {
      await sendJson(
        'POST',
        '/v1/topics',
        {
          name: name.value,
          partitions: Number(partitions.value),
          replicationFactor: Number(replicationFactor.value),
        },
        ctx.signal,
      );
      replace(status, h('p', { class: 'good' }, `Created topic ${name.value}.`));
      name.value = '';
      await refresh();
    } catch (error) {
      replace(status, errorBox(error));
    }
  };
  return h(
    'form',
    { class: 'controls', id: 'create-topic', onsubmit: submit },
    h('label', {}, 'New topic', name),
    h('label', {}, 'Partitions', partitions),
    h('label', {}, 'Replication factor', replicationFactor),
    h('button', { type: 'submit' }, 'Create'),
  );
}
