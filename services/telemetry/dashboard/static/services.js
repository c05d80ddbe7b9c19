// A service's page: the list of services the graph knows, its inbound traffic over time as three plotly.js
// charts (request rate, 5xx share, p50/p90/p99 latency), the workloads its traffic goes to, and its recent
// access logs.
import { el, fillTable, fmtMs, fmtPct, fmtRate, getGraph, getJSON, getLogs, servicesOf } from './api.js';

const CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };
const BASE_LAYOUT = {
  height: 230, margin: { l: 56, r: 16, t: 36, b: 36 }, paper_bgcolor: '#ffffff', plot_bgcolor: '#ffffff',
  font: { family: 'system-ui, sans-serif', size: 12, color: '#1f2328' },
  xaxis: { type: 'date', gridcolor: '#eceef0', tickformat: '%H:%M' },
  legend: { orientation: 'h', x: 1, xanchor: 'right', y: 1.18 },
};
const COLORS = { rate: '#2b6cb0', errors: '#c9190b', p50: '#3e8635', p90: '#e39d00', p99: '#8f4700' };

let selectedKey = '';

function layout(title, yTitle, extra = {}) {
  return { ...BASE_LAYOUT, title: { text: title, font: { size: 14 }, x: 0.02, xref: 'container' },
    yaxis: { title: { text: yTitle }, rangemode: 'tozero', gridcolor: '#eceef0', ...extra } };
}

function line(points, x, field, name, color, scale = 1) {
  return { type: 'scatter', mode: 'lines+markers', name, x,
    y: points.map((p) => (p[field] === null || p[field] === undefined ? null : p[field] * scale)),
    line: { color, width: 2, shape: 'linear' }, marker: { size: 3 }, connectgaps: false,
    hovertemplate: `%{y:.2f}<extra>${name}</extra>` };
}

function drawCharts(series) {
  const points = series.points || [];
  const x = points.map((p) => new Date(p.time * 1000));
  Plotly.react('chart-rate', [line(points, x, 'rps', 'requests/s', COLORS.rate)],
    layout('Request rate', 'req/s'), CONFIG);
  Plotly.react('chart-errors', [line(points, x, 'error_rate', '5xx %', COLORS.errors, 100)],
    layout('Errors (5xx share)', '%', { rangemode: 'tozero', range: null }), CONFIG);
  Plotly.react('chart-latency', [
    line(points, x, 'p50_ms', 'p50', COLORS.p50), line(points, x, 'p90_ms', 'p90', COLORS.p90),
    line(points, x, 'p99_ms', 'p99', COLORS.p99)], layout('Latency percentiles', 'ms'), CONFIG);
}

function drawList(services) {
  const list = document.getElementById('service-list');
  list.replaceChildren(el('h2', {}, 'Services'), ...services.map((s) => el('a', {
    href: `#/services/${s.namespace}/${s.name}`, class: s.key === selectedKey ? 'active' : null,
    'data-service': s.key }, el('span', {}, s.name), el('small', {}, s.namespace))));
}

function workloadsLine(graph, service) {
  const nodeIds = new Set(graph.nodes.filter((n) => n.namespace === service.namespace && n.app === service.name
    && n.kind === 'service').map((n) => n.id));
  const out = graph.edges.filter((e) => nodeIds.has(e.source));
  const total = out.reduce((sum, e) => sum + e.rps, 0);
  if (!out.length) return '';
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  return 'to workloads: ' + out.map((e) => {
    const node = byId.get(e.target);
    const name = node ? node.workload || `${node.app} ${node.version}` : e.target;
    return `${name} ${total ? fmtPct(e.rps / total) : '–'}`;
  }).join(' · ');
}

// ISO 8601 UTC -> the browser's local time with milliseconds, as the charts' time axis shows it
function fmtStamp(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso || '–';
  return `${date.toLocaleTimeString([], { hour12: false })}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

function logRow(entry) {
  const code = entry.response_code || 0;
  const trace = entry.trace_id ? el('a', { href: `#/traces/${entry.trace_id}`, class: 'mono' },
    entry.trace_id.slice(0, 12)) : '–';
  return el('tr', { class: code >= 500 ? 'bad' : null },
    el('td', { class: 'mono nowrap', title: entry.start_time }, fmtStamp(entry.start_time)),
    el('td', {}, entry.listener || '–'), el('td', {}, entry.method || entry.protocol || '–'),
    el('td', { class: 'mono clip', title: entry.path || '' }, entry.path || '–'),
    el('td', { class: code >= 500 ? 'code bad' : 'code' }, code || '–'), el('td', { class: 'mono' }, entry.response_flags),
    el('td', { class: 'num' }, entry.duration), el('td', { class: 'mono clip' }, entry.upstream_host || '–'),
    el('td', { class: 'mono clip', title: entry.downstream_peer_principal || entry.upstream_peer_principal || '' },
      entry.downstream_peer_principal || entry.upstream_peer_principal || '–'),
    el('td', {}, trace));
}

export async function refreshServices(route) {
  const graph = await getGraph(60);
  const services = servicesOf(graph);
  const wanted = route.length >= 2 ? `${route[0]}/${route[1]}` : '';
  const service = services.find((s) => s.key === wanted) || services[0];
  selectedKey = service ? service.key : '';
  drawList(services);
  if (!service) {
    document.getElementById('service-title').textContent = 'No services yet';
    return;
  }
  const [series, logs] = await Promise.all([
    getJSON('/api/series', { service: service.fqdn, minutes: 15 }),
    getLogs({ service: service.name, namespace: service.namespace, limit: 50 }),
  ]);
  document.getElementById('service-title').textContent = service.fqdn;
  const last = (series.points || []).at(-1);
  const now = last ? `now ${fmtRate(last.rps)} rps · ${fmtPct(last.error_rate)} 5xx · p99 ${fmtMs(last.p99_ms)}` : 'no requests yet';
  const workloads = workloadsLine(graph, service);
  document.getElementById('service-sub').textContent = [now, workloads].filter(Boolean).join('  —  ');
  drawCharts(series);
  fillTable(document.getElementById('logs'), logs.map(logRow), document.getElementById('logs-empty'));
}

export function resizeCharts() {
  for (const id of ['chart-rate', 'chart-errors', 'chart-latency']) {
    const div = document.getElementById(id);
    if (div.data) Plotly.Plots.resize(div);
  }
}
