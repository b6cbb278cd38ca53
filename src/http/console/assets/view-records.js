import { getJson, partitionPath } from './api.js';
import { errorBox, h, replace, table, viewLink } from './dom.js';
import { decodeRecord, formatCount, formatTime, showBytes } from './format.js';

/** Records shown at most per page, and kept at most by a live tail (the oldest leave first). */
export const PAGE_RECORDS_MAX = 500;
const TAIL_RECORDS_MAX = 500;
/** Fetches one page may take (each up to 1 MiB), so that a page of tiny batches still ends. */
const PAGE_FETCHES_MAX = 10;
/** Characters of one key, value or header shown; the rest is counted. */
const SHOWN_CHARS_MAX = 4000;

/**
 * A partition's records: a page from an offset or a time (the fetch route, with
 * `valueEncoding=base64` so that every byte arrives as it is stored), shown as text, JSON or hex;
 * or a live tail over the follow stream (server-sent events).
 */
export function mountRecords(root, params, ctx) {
  const [topic, partitionText] = params;
  const partition = Number(partitionText);
  const path = partitionPath(topic, partition);
  const form = {
    from: h(
      'select',
      { name: 'from' },
      h('option', { value: 'latest' }, 'newest'),
      h('option', { value: 'offset' }, 'offset'),
      h('option', { value: 'time' }, 'time'),
    ),
    offset: h('input', { name: 'offset', type: 'number', min: 0, placeholder: 'offset' }),
    time: h('input', { name: 'time', type: 'datetime-local', step: 1 }),
    limit: h('input', { name: 'limit', type: 'number', min: 1, max: PAGE_RECORDS_MAX, value: 50 }),
    mode: h(
      'select',
      { name: 'mode' },
      ['auto', 'text', 'json', 'hex'].map((m) => h('option', { value: m }, m)),
    ),
  };
  const status = h('div', { id: 'records-status', class: 'muted' });
  const list = h('div');
  let shown = [];
  let next;
  let tail;

  const show = () => replace(list, renderRecords(shown, form.mode.value));
  const stopTail = () => {
    tail?.close();
    tail = undefined;
    tailButton.textContent = 'Live tail';
  };
  ctx.onClose(stopTail);

  const load = async (start) => {
    stopTail();
    try {
      const limit = Math.max(1, Math.min(PAGE_RECORDS_MAX, Number(form.limit.value) || 50));
      const from = start ?? (await startOffset(path, form, limit, ctx.signal));
      if (from === null) {
        shown = [];
        replace(status, 'No record at or after that time.');
        return show();
      }
      const page = await fetchPage(path, from, limit, ctx.signal);
      shown = page.records;
      next = page.nextOffset;
      replace(
        status,
        shown.length === 0
          ? `No records from offset ${formatCount(from)} (high watermark ${formatCount(page.highWatermark)}).`
          : `Offsets ${formatCount(shown[0].offset)} to ${formatCount(shown[shown.length - 1].offset)}; log start ${formatCount(page.logStartOffset)}, high watermark ${formatCount(page.highWatermark)}.`,
      );
      show();
    } catch (error) {
      if (!ctx.signal.aborted) replace(status, errorBox(error));
    }
  };

  const startTail = () => {
    if (tail) return stopTail();
    shown = [];
    show();
    // EventSource asks for text/event-stream: one `record` event per record, from the log end on.
    tail = new EventSource(`${path}/records?offset=latest&follow=true&valueEncoding=base64`);
    tailButton.textContent = 'Stop tail';
    replace(status, 'Live tail: waiting for new records…');
    tail.addEventListener('record', (event) => {
      shown.push(decodeRecord(JSON.parse(event.data)));
      if (shown.length > TAIL_RECORDS_MAX) shown.splice(0, shown.length - TAIL_RECORDS_MAX);
      replace(status, `Live tail: ${formatCount(shown.length)} new record(s).`);
      show();
    });
    tail.addEventListener('error', () => {
      if (tail && tail.readyState === EventSource.CLOSED) {
        replace(status, errorBox(new Error('the live tail was closed by the node')));
        stopTail();
      }
    });
  };
  const tailButton = h('button', { type: 'button', id: 'tail', onclick: startTail }, 'Live tail');

  replace(
    root,
    h('h1', {}, 'Records of ', viewLink(['topics', topic], topic), ` partition ${partition}`),
    h(
      'form',
      {
        class: 'controls',
        id: 'records-form',
        onsubmit: (event) => {
          event.preventDefault();
          load();
        },
      },
      h('label', {}, 'From', form.from),
      h('label', {}, 'Offset', form.offset),
      h('label', {}, 'Time (UTC)', form.time),
      h('label', {}, 'Records', form.limit),
      h('label', {}, 'Show as', form.mode),
      h('button', { type: 'submit' }, 'Load'),
      h('button', { type: 'button', id: 'newer', onclick: () => next !== undefined && load(next) }, 'Newer'),
      tailButton,
    ),
    status,
    list,
  );
  form.mode.addEventListener('change', show);
  load();
}

/** Where a page starts: the offset given, the first at or after a time, or the newest `limit`. */
async function startOffset(path, form, limit, signal) {
  if (form.from.value === 'offset' && form.offset.value !== '') return Number(form.offset.value);
  if (form.from.value === 'time' && form.time.value !== '') {
    const ms = Date.parse(`${form.time.value}Z`);
    const answer = await getJson(`${path}/offsets?timestamp=${ms}`, signal);
    return answer.offset;
  }
  const offsets = await getJson(`${path}/offsets`, signal);
  return Math.max(offsets.earliest, offsets.highWatermark - limit);
}

async function fetchPage(path, from, limit, signal) {
  const records = [];
  let offset = from;
  let last;
  for (let i = 0; i < PAGE_FETCHES_MAX && records.length < limit; i++) {
    last = await getJson(`${path}/records?offset=${offset}&valueEncoding=base64`, signal);
    for (const record of last.records) if (records.length < limit) records.push(decodeRecord(record));
    if (last.records.length === 0 || last.nextOffset >= last.highWatermark) break;
    offset = last.nextOffset;
  }
  const nextOffset = records.length > 0 ? records[records.length - 1].offset + 1 : from;
  return { records, nextOffset, highWatermark: last.highWatermark, logStartOffset: last.logStartOffset };
}

function renderRecords(records, mode) {
  if (records.length === 0) return null;
  return table(
    [
      { label: 'Offset', num: true },
      { label: 'Time' },
      { label: 'Key' },
      { label: 'Value' },
      { label: 'Headers' },
    ],
    records.map((r) => ({
      attributes: { 'data-offset': r.offset },
      cells: [
        String(r.offset),
        formatTime(r.timestamp),
        bytesCell(r.key, mode, 'key'),
        bytesCell(r.value, mode, 'value'),
        r.headers.length === 0
          ? h('span', { class: 'muted' }, '—')
          : h(
              'div',
              { class: 'headers' },
              r.headers.map(([name, value]) =>
                h('div', {}, h('strong', {}, name), ': ', bytesCell(value, mode, 'header')),
              ),
            ),
      ],
    })),
    { id: 'records' },
  );
}

function bytesCell(bytes, mode, field) {
  const { text, as } = showBytes(bytes, mode);
  if (text === null) return h('span', { class: 'muted', 'data-field': field }, 'null');
  const cut = text.length > SHOWN_CHARS_MAX;
  return h(
    'pre',
    { 'data-field': field, 'data-as': as, title: as },
    cut ? text.slice(0, SHOWN_CHARS_MAX) : text,
    cut ? h('span', { class: 'muted' }, ` … ${text.length - SHOWN_CHARS_MAX} more characters`) : null,
  );
}
