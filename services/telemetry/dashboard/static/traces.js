// Traces from the service's Zipkin v2 API: the recent traces (newest first) and, for the one opened, its
// waterfall (a plotly.js bar per span, offset from the trace's start, nested under its parent) and spans.
import { ApiError, el, fillTable, fmtMs, getJSON, plotText } from './api.js';

const LOOKBACK_MS = 15 * 60 * 1000;
const LIMIT = 25;
// red is kept for spans that failed
const PALETTE = ['#2b6cb0', '#3e8635', '#6753ac', '#009596', '#8f4700', '#1f6f8b', '#7a4f9e', '#4c7a34'];
const CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };

let openTraceId = '';
const serviceOf = (span) => (span.localEndpoint && span.localEndpoint.serviceName) || 'unknown';
const isError = (span) => Boolean(span.tags && (span.tags.error !== undefined
  || Number(span.tags['http.status_code']) >= 500));

// one colour per service name, the same in every trace
function colorOf(service) {
  let hash = 0;
  for (const ch of service) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

function summary(spans) {
  const start = Math.min(...spans.map((s) => s.timestamp || Infinity));
  const end = Math.max(...spans.map((s) => (s.timestamp || 0) + (s.duration || 0)));
  const root = spans.find((s) => !s.parentId) || spans.reduce((a, b) => ((a.timestamp || 0) <= (b.timestamp || 0) ? a : b));
  return { traceId: spans[0].traceId, start, durationMs: (end - start) / 1000, root,
    services: [...new Set(ordered(spans).map(({ span }) => serviceOf(span)))], count: spans.length,
    error: spans.some(isError) };
}

function traceRow(t) {
  return el('tr', { class: `${t.traceId === openTraceId ? 'active' : ''} ${t.error ? 'bad' : ''} clickable`,
    'data-trace': t.traceId, onclick: () => { location.hash = `#/traces/${t.traceId}`; } },
  el('td', { class: 'mono nowrap' }, new Date(t.start / 1000).toLocaleTimeString([], { hour12: false })),
  el('td', {}, `${serviceOf(t.root)}: ${t.root.name || '–'}`), el('td', {}, t.services.join(', ')),
  el('td', { class: 'num' }, t.count), el('td', { class: 'num' }, fmtMs(t.durationMs)),
  el('td', { class: 'mono' }, el('a', { href: `#/traces/${t.traceId}` }, t.traceId)));
}

// depth-first from the roots, children by start time: the order of a waterfall
function ordered(spans) {
  const ids = new Set(spans.map((s) => s.id));
  const children = new Map();
  for (const span of spans) {
    const parent = span.parentId && ids.has(span.parentId) ? span.parentId : '';
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  const out = [];
  const seen = new Set();
  const walk = (parent, depth) => {
    for (const span of (children.get(parent) || []).sort((a, b) => (a.timestamp || 0) - (b.timestamp || 0))) {
      if (seen.has(span)) continue;
      seen.add(span);
      out.push({ span, depth });
      walk(span.id, depth + 1);
    }
  };
  walk('', 0);
  for (const span of spans) { // spans in a parent cycle (bad data) reach no root: shown last, not lost
    if (!seen.has(span)) { seen.add(span); out.push({ span, depth: 0 }); walk(span.id, 1); }
  }
  return out;
}

// a trace the store no longer holds (a link from an old access log): null, said on the page, not an outage
async function getTrace(id) {
  try {
    return await getJSON(`/api/v2/trace/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

function drawTrace(spans) {
  const detail = document.getElementById('trace-detail');
  const missing = document.getElementById('trace-missing');
  missing.hidden = spans !== null;
  missing.textContent = spans === null ? `Trace ${openTraceId} is not in the store (older traces are dropped).` : '';
  if (!spans || !spans.length) { detail.hidden = true; return; }
  detail.hidden = false;
  const t = summary(spans);
  const rows = ordered(spans);
  document.getElementById('trace-title').textContent =
    `Trace ${t.traceId} — ${t.count} spans, ${t.services.length} services, ${fmtMs(t.durationMs)}`;
  const offset = (s) => ((s.timestamp || t.start) - t.start) / 1000;
  // plotly right-aligns these: nesting shows in the bars' places and in the span table's indentation
  const labels = rows.map(({ span }) => `${plotText(serviceOf(span))}: ${plotText(span.name || '–')}`);
  const trace = {
    type: 'bar', orientation: 'h', y: rows.map((_, i) => i), base: rows.map(({ span }) => offset(span)),
    x: rows.map(({ span }) => Math.max((span.duration || 0) / 1000, t.durationMs / 500)),
    marker: { color: rows.map(({ span }) => (isError(span) ? '#c9190b' : colorOf(serviceOf(span)))) },
    text: rows.map(({ span }) => `${fmtMs((span.duration || 0) / 1000)} ${span.kind ? span.kind.toLowerCase() : ''}`),
    textposition: 'auto', insidetextanchor: 'start', cliponaxis: false,
    hovertext: rows.map(({ span }) => `${plotText(serviceOf(span))} ${plotText(span.name || '')}<br>`
      + `${span.kind || ''} +${fmtMs(offset(span))}, ${fmtMs((span.duration || 0) / 1000)}`),
    hoverinfo: 'text',
  };
  Plotly.react('waterfall', [trace], {
    height: 70 + 34 * rows.length, margin: { l: 10, r: 20, t: 10, b: 40 }, bargap: 0.35,
    font: { family: 'system-ui, sans-serif', size: 12, color: '#1f2328' },
    xaxis: { title: { text: 'ms since the trace started' }, rangemode: 'tozero', gridcolor: '#eceef0',
      range: [0, t.durationMs * 1.02] },
    yaxis: { autorange: 'reversed', tickvals: rows.map((_, i) => i), ticktext: labels, automargin: true },
    showlegend: false,
  }, CONFIG);
  fillTable(document.getElementById('spans'), rows.map(({ span, depth }) => el('tr', { class: isError(span) ? 'bad' : null },
    el('td', { class: 'nowrap' }, el('span', { class: 'dot', style: `background:${colorOf(serviceOf(span))}` }), serviceOf(span)),
    el('td', { style: `padding-left:${0.6 + depth * 1.2}em` }, span.name || '–'), el('td', {}, span.kind || '–'),
    el('td', { class: 'num' }, fmtMs(offset(span))), el('td', { class: 'num' }, fmtMs((span.duration || 0) / 1000)),
    el('td', { class: 'tags' }, ...Object.entries(span.tags || {}).map(([k, v]) => el('span', { class: 'tag' },
      el('b', {}, k), ` ${v}`))))));
}

function drawServices(names) {
  const select = document.getElementById('trace-service');
  const current = select.value;
  select.replaceChildren(el('option', { value: '' }, 'all'), ...names.map((n) => el('option', { value: n }, n)));
  select.value = names.includes(current) ? current : '';
}

export async function refreshTraces(route) {
  openTraceId = route[0] || '';
  const serviceName = document.getElementById('trace-service').value;
  const [names, traces, opened] = await Promise.all([
    getJSON('/api/v2/services'),
    getJSON('/api/v2/traces', { serviceName, limit: LIMIT, lookback: LOOKBACK_MS, endTs: Date.now() }),
    openTraceId ? getTrace(openTraceId) : Promise.resolve([]),
  ]);
  drawServices(names);
  const summaries = traces.filter((spans) => spans.length).map(summary).sort((a, b) => b.start - a.start);
  fillTable(document.getElementById('traces'), summaries.map(traceRow), document.getElementById('traces-empty'));
  drawTrace(opened);
}

export function initTraces(onChange) {
  document.getElementById('trace-service').addEventListener('change', onChange);
}
