// The page's router and poller: the view named by the URL's hash (#/graph, #/services/<ns>/<name>,
// #/traces[/<trace id>], #/proxies) is refreshed now and then every REFRESH_S seconds (?refresh=N, default 3),
// without reloading the page, and not while the tab is hidden; the header says when data last arrived or why
// it did not (the last data stays on screen).
import { getGraph } from './api.js';
import { initGraph, redrawGraph, renderGraph } from './graph.js';
import { refreshProxies } from './proxies.js';
import { refreshServices, resizeCharts } from './services.js';
import { initTraces, refreshTraces } from './traces.js';

const REFRESH_S = Math.max(1, Number(new URLSearchParams(location.search).get('refresh')) || 3);

async function refreshGraph() {
  const window = document.getElementById('graph-window').value;
  const graph = await getGraph(window);
  const count = renderGraph(graph);
  document.getElementById('graph-empty').hidden = count > 0;
}

const VIEWS = {
  graph: { refresh: refreshGraph, shown: redrawGraph },
  services: { refresh: refreshServices, shown: resizeCharts },
  traces: { refresh: refreshTraces, shown: () => {} },
  proxies: { refresh: refreshProxies, shown: () => {} },
};

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const name = VIEWS[parts[0]] ? parts[0] : 'graph';
  return { name, args: parts.slice(1) };
}

let timer = 0;
let generation = 0;
let shownView = '';

function setLive(ok, text) {
  const live = document.getElementById('live');
  live.className = ok ? 'live ok' : 'live failed';
  live.textContent = text;
}

async function tick() {
  clearTimeout(timer);
  const mine = ++generation;
  const { name, args } = route();
  if (name !== shownView) {
    shownView = name;
    for (const view of Object.keys(VIEWS)) document.getElementById(`view-${view}`).hidden = view !== name;
    for (const link of document.querySelectorAll('header nav a')) link.classList.toggle('active', link.dataset.view === name);
    VIEWS[name].shown();
  }
  if (document.hidden) { // a background tab asks nothing; it refreshes when shown again
    timer = setTimeout(tick, REFRESH_S * 1000);
    return;
  }
  try {
    await VIEWS[name].refresh(args);
    if (mine === generation) setLive(true, `live · updated ${new Date().toLocaleTimeString([], { hour12: false })} · every ${REFRESH_S}s`);
  } catch (error) {
    if (mine === generation) setLive(false, `not updating: ${error.message}`);
    console.warn('dashboard refresh failed', error);
  } finally {
    if (mine === generation) timer = setTimeout(tick, REFRESH_S * 1000);
  }
}

initGraph(document.getElementById('graph'), document.getElementById('graph-detail'));
initTraces(tick);
document.getElementById('graph-window').addEventListener('change', tick);
window.addEventListener('hashchange', tick);
document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
tick();
