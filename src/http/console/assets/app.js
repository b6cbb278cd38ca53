import { getJson } from './api.js';
import { errorBox, h, replace } from './dom.js';
import { mountCluster } from './view-cluster.js';
import { mountGroup, mountGroups } from './view-groups.js';
import { mountRecords } from './view-records.js';
import { mountTopic } from './view-topic.js';
import { mountTopics } from './view-topics.js';

/**
 * The console's views, chosen by the location's fragment. A view is `mount(root, params, ctx)`:
 * it renders into `root`, refreshes through `ctx.every`, and passes `ctx.signal` to its requests;
 * leaving the view aborts them and stops its timers and streams. A new view is one module and one
 * row here, plus a link in index.html's nav.
 */
const ROUTES = [
  { pattern: /^#?\/?$/, nav: 'cluster', mount: mountCluster },
  { pattern: /^#\/topics\/?$/, nav: 'topics', mount: mountTopics },
  { pattern: /^#\/topics\/([^/]+)\/?$/, nav: 'topics', mount: mountTopic },
  { pattern: /^#\/topics\/([^/]+)\/partitions\/([0-9]{1,4})\/?$/, nav: 'topics', mount: mountRecords },
  { pattern: /^#\/groups\/?$/, nav: 'groups', mount: mountGroups },
  { pattern: /^#\/groups\/([^/]+)\/?$/, nav: 'groups', mount: mountGroup },
];

/** What views keep across navigation (each topic's samples, for its rates and charts). */
const store = {};
/** How often the views refresh: `?refresh=MS` on the page's address, 500 ms to 60 s; 5 s by default. */
const REFRESH_MS_DEFAULT = 5000;
const refreshMs = (() => {
  const asked = Number(new URLSearchParams(location.search).get('refresh'));
  return Number.isInteger(asked) && asked >= 500 && asked <= 60000 ? asked : REFRESH_MS_DEFAULT;
})();
let current;

function route() {
  current?.close();
  const main = document.getElementById('main');
  const hash = location.hash;
  const matched = ROUTES.map((r) => ({ r, m: r.pattern.exec(hash) })).find((x) => x.m);
  for (const link of document.querySelectorAll('#nav a'))
    link.classList.toggle('active', matched?.r.nav === link.dataset.nav);
  current = context();
  if (!matched) {
    replace(main, h('h1', {}, 'Not found'), h('p', {}, 'No console view at ', h('code', {}, hash), '.'));
    return;
  }
  let params;
  try {
    params = matched.m.slice(1).map((p) => decodeURIComponent(p));
  } catch (error) {
    replace(main, errorBox(error));
    return;
  }
  const root = h('section');
  replace(main, root);
  matched.r.mount(root, params, current);
}

function context() {
  const controller = new AbortController();
  const timers = new Set();
  const closers = [];
  return {
    signal: controller.signal,
    store,
    refreshMs,
    /** Runs `task` now and then every `ms` after each run ends, until the view is left. */
    every(ms, task) {
      const run = async () => {
        await task();
        if (controller.signal.aborted) return;
        const timer = setTimeout(() => {
          timers.delete(timer);
          run();
        }, ms);
        timers.add(timer);
      };
      run();
    },
    onClose(closer) {
      closers.push(closer);
    },
    close() {
      controller.abort();
      for (const timer of timers) clearTimeout(timer);
      for (const closer of closers) closer();
    },
  };
}

async function showServingNode() {
  try {
    const cluster = await getJson('/v1/cluster');
    replace(document.getElementById('served-by'), `node ${cluster.nodeId} · ${cluster.version}`);
  } catch {
    // The views say what failed; the header just stays empty.
  }
}

window.addEventListener('hashchange', route);
route();
showServingNode();
