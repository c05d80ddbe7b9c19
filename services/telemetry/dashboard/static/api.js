// Shared by the views: the API client, DOM building (text only: every string from the API is data, never
// markup) and number formatting.

export async function getJSON(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value);
  }
  const response = await fetch(url, { cache: 'no-store' });
  if (!response.ok) throw new ApiError(path, response.status);
  return response.json();
}

export class ApiError extends Error {
  constructor(path, status) {
    super(`${path}: HTTP ${status}`);
    this.status = status;
  }
}

// The API's structs leave out fields at their default (msgspec omit_defaults): put them back once here.
const NODE_DEFAULTS = { version: '', workload: '', service: '' };
const EDGE_DEFAULTS = { rps: 0, error_rate: 0, p50_ms: null, p99_ms: null, mtls: 0, tcp_bytes_per_s: 0 };
const LOG_DEFAULTS = { listener: '', response_code: 0, response_flags: '-', bytes_received: 0, bytes_sent: 0,
  duration: 0 };

export async function getGraph(window) {
  const graph = await getJSON('/api/graph', { window });
  return { ...graph, nodes: (graph.nodes || []).map((n) => ({ ...NODE_DEFAULTS, ...n })),
    edges: (graph.edges || []).map((e) => ({ ...EDGE_DEFAULTS, ...e })) };
}

export async function getLogs(params) {
  return (await getJSON('/api/logs', params)).map((entry) => ({ ...LOG_DEFAULTS, ...entry }));
}

// el('td', {class: 'x', title: 't'}, 'text', node, ...): children are text (textContent) or nodes.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fillTable(table, rows, emptyNote) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (emptyNote) emptyNote.hidden = rows.length > 0;
}

const dash = '–';
export const fmtRate = (rps) => (rps >= 100 ? rps.toFixed(0) : rps >= 10 ? rps.toFixed(1) : rps.toFixed(2));
export const fmtMs = (ms, unit = ' ms') => (ms === null || ms === undefined ? dash
  : `${ms >= 10 || ms === 0 ? ms.toFixed(0) : ms >= 1 ? ms.toFixed(1) : ms.toFixed(2)}${unit}`);
export const fmtPct = (share) => `${(100 * share).toFixed(share > 0 && share < 0.001 ? 2 : 1)}%`;
export function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
export const fmtClock = (unixSeconds) => new Date(unixSeconds * 1000).toLocaleTimeString([], { hour12: false });
export function fmtAge(unixSeconds) {
  if (!unixSeconds) return dash;
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

// Kiali's default tolerance for 5xx: degraded above 0%, failure from 10% (kiali.io/docs/configuration/health)
export const HEALTH_COLORS = { ok: '#3e8635', degraded: '#e39d00', failure: '#c9190b', idle: '#8a8d90' };
export function healthOf(edge) {
  if (!edge.rps && !edge.tcp_bytes_per_s) return 'idle';
  return edge.error_rate >= 0.1 ? 'failure' : edge.error_rate > 0 ? 'degraded' : 'ok';
}

// Plotly reads a few tags in text (<b>, <br>, <a>): escape what came from the mesh
export const plotText = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

// The services the graph knows, for the service list: a service node's FQDN is the /api/series key (its
// `service` field; the default domain suffix when an older service leaves it out).
export function servicesOf(graph) {
  const byKey = new Map();
  for (const node of graph.nodes) {
    if (node.kind === 'unknown') continue;
    const key = `${node.namespace}/${node.app}`;
    const known = byKey.get(key);
    if (known && (known.kind === 'service' || node.kind !== 'service')) continue;
    byKey.set(key, {
      key, kind: node.kind, name: node.app, namespace: node.namespace,
      fqdn: node.service || `${node.app}.${node.namespace}.svc.cluster.local`,
    });
  }
  return [...byKey.values()].sort((a, b) => a.key.localeCompare(b.key));
}
