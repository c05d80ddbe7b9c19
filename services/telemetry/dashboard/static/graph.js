// The service graph (vis-network, from pyvis's wheel): workloads, services and callers outside the mesh as
// nodes, laid out left to right; each edge labelled with its rate, 5xx share, p50/p99, drawn solid when its
// requests are on mutual TLS and dashed when not, coloured by Kiali's health tolerance.
import { el, fmtBytes, fmtMs, fmtPct, fmtRate, healthOf, HEALTH_COLORS } from './api.js';

const SHAPES = { workload: 'dot', service: 'triangle', unknown: 'diamond' };
const NODE_COLORS = {
  workload: { background: '#dbeaf7', border: '#2b6cb0' },
  service: { background: '#e6f4ea', border: '#3e8635' },
  unknown: { background: '#eeeeee', border: '#6a6e73' },
};
const OPTIONS = {
  layout: {
    hierarchical: { direction: 'LR', sortMethod: 'directed', levelSeparation: 220, nodeSpacing: 150,
      treeSpacing: 150, shakeTowards: 'roots' },
  },
  physics: false,
  interaction: { hover: true, tooltipDelay: 150, navigationButtons: false },
  nodes: { size: 16, font: { size: 15, face: 'system-ui, sans-serif', color: '#1f2328', multi: false },
    borderWidth: 2 },
  edges: {
    arrows: { to: { enabled: true, scaleFactor: 0.6 } },
    smooth: { type: 'cubicBezier', forceDirection: 'horizontal', roundness: 0.45 },
    font: { size: 13, face: 'system-ui, sans-serif', color: '#1f2328', strokeWidth: 0,
      background: 'rgba(255, 255, 255, 0.92)', align: 'horizontal' },
    selectionWidth: 1.5,
  },
};

let network = null;
let nodes = null;
let edges = null;
let shownIds = '';
let container = null;
let latest = { nodes: [], edges: [] };
let detail = null;

function nodeLabel(node) {
  if (node.kind === 'workload') return node.version ? `${node.app} ${node.version}` : node.workload || node.app;
  if (node.kind === 'unknown') return node.app || 'unknown';
  return node.app;
}

function mtlsText(edge) {
  if (edge.mtls >= 0.999) return 'mTLS';
  if (edge.mtls <= 0.001) return 'plaintext';
  return `mTLS ${fmtPct(edge.mtls)}`;
}

function edgeLabel(edge) {
  if (edge.protocol === 'tcp') return `tcp ${fmtBytes(edge.tcp_bytes_per_s)}/s\n${mtlsText(edge)}`;
  return `${fmtRate(edge.rps)} rps · ${fmtPct(edge.error_rate)} 5xx\n`
    + `p50 ${fmtMs(edge.p50_ms, '')} · p99 ${fmtMs(edge.p99_ms)}\n${mtlsText(edge)}`;
}

const edgeId = (edge) => `${edge.source}->${edge.target}/${edge.protocol}`;

function nodeView(node, level) {
  return {
    id: node.id, level, label: nodeLabel(node), shape: SHAPES[node.kind] || 'dot',
    color: NODE_COLORS[node.kind] || NODE_COLORS.unknown,
    title: `${node.kind} ${node.id}${node.workload ? `\nworkload ${node.workload}` : ''}`,
  };
}

function edgeView(edge, curve) {
  const color = HEALTH_COLORS[healthOf(edge)];
  return {
    smooth: curve ? { type: 'curvedCW', roundness: curve } : OPTIONS.edges.smooth,
    id: edgeId(edge), from: edge.source, to: edge.target, label: edgeLabel(edge),
    dashes: edge.mtls < 0.999 ? [8, 6] : false,
    width: 1.5 + Math.min(5, Math.log10(1 + edge.rps) * 2),
    color: { color, highlight: color, hover: color },
    title: `${edge.source} → ${edge.target}\n${edgeLabel(edge)}`,
  };
}

// Left-to-right levels: callers before callees. vis-network's own 'directed' sort needs a DAG and stacks a
// graph with a cycle (A calls B calls A) in one column, so the edges that close a cycle (found by a depth-first
// walk from the callers) are left out and each node goes one level right of its furthest caller.
function levels(graph) {
  const out = new Map(graph.nodes.map((n) => [n.id, []]));
  const incoming = new Map(graph.nodes.map((n) => [n.id, 0]));
  for (const e of graph.edges) {
    if (e.source === e.target || !out.has(e.source) || !out.has(e.target)) continue;
    out.get(e.source).push(e.target);
    incoming.set(e.target, incoming.get(e.target) + 1);
  }
  const roots = graph.nodes.filter((n) => incoming.get(n.id) === 0).map((n) => n.id);
  const state = new Map(); // 1: on the walk's path, 2: done
  const order = []; // reverse post-order: a topological order of the graph less its cycle-closing edges
  const forward = new Map(graph.nodes.map((n) => [n.id, []]));
  const visit = (id) => {
    state.set(id, 1);
    for (const next of out.get(id)) {
      if (state.get(next) === 1) continue; // closes a cycle
      forward.get(id).push(next);
      if (!state.has(next)) visit(next);
    }
    state.set(id, 2);
    order.push(id);
  };
  for (const id of [...roots, ...graph.nodes.map((n) => n.id)]) if (!state.has(id)) visit(id);
  const level = new Map(graph.nodes.map((n) => [n.id, 0]));
  for (const id of order.reverse()) for (const next of forward.get(id)) level.set(next, Math.max(level.get(next), level.get(id) + 1));
  return level;
}

function sync(dataset, items) {
  const keep = new Set(items.map((item) => item.id));
  dataset.remove(dataset.getIds().filter((id) => !keep.has(id)));
  dataset.update(items);
}

function showDetail(selection) {
  if (!detail) return;
  const nodeId = selection.nodes[0];
  const edge = latest.edges.find((e) => edgeId(e) === selection.edges[0]);
  if (nodeId) {
    const node = latest.nodes.find((n) => n.id === nodeId);
    if (!node) return;
    const inbound = latest.edges.filter((e) => e.target === nodeId);
    const outbound = latest.edges.filter((e) => e.source === nodeId);
    const sum = (list) => fmtRate(list.reduce((total, e) => total + e.rps, 0));
    const rows = [['kind', node.kind], ['namespace', node.namespace], ['app', node.app],
      ['version', node.version || '–'], ['workload', node.workload || '–'],
      ['inbound', `${sum(inbound)} rps from ${inbound.length}`], ['outbound', `${sum(outbound)} rps to ${outbound.length}`]];
    detail.replaceChildren(el('h3', {}, nodeLabel(node)), table(rows),
      node.kind === 'unknown' ? '' : el('a', { href: `#/services/${node.namespace}/${node.app}` }, 'Open service →'));
  } else if (edge) {
    const rows = [['from', edge.source], ['to', edge.target], ['protocol', edge.protocol],
      ['rate', `${fmtRate(edge.rps)} rps`], ['5xx', fmtPct(edge.error_rate)], ['p50', fmtMs(edge.p50_ms)],
      ['p99', fmtMs(edge.p99_ms)], ['mTLS', fmtPct(edge.mtls)]];
    if (edge.protocol === 'tcp') rows.push(['bytes', `${fmtBytes(edge.tcp_bytes_per_s)}/s`]);
    detail.replaceChildren(el('h3', {}, 'Edge'), table(rows));
  }
  detail.hidden = !nodeId && !edge;
}

function table(rows) {
  return el('table', { class: 'kv' }, ...rows.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v))));
}

export function initGraph(element, detailPane) {
  container = element;
  nodes = new vis.DataSet();
  edges = new vis.DataSet();
  detail = detailPane;
  network = new vis.Network(element, { nodes, edges }, OPTIONS);
  network.on('click', (params) => showDetail(params));
  // read-only handle for the browser console and the browser test: what the graph draws on its canvas
  window.isthmusGraph = { nodes: () => nodes.get(), edges: () => edges.get(), network };
  network.on('doubleClick', (params) => {
    const node = latest.nodes.find((n) => n.id === params.nodes[0]);
    if (node && node.kind !== 'unknown') location.hash = `#/services/${node.namespace}/${node.app}`;
  });
}

// Updates in place (positions, zoom and selection stay); re-lays out and fits only when nodes come or go.
export function renderGraph(graph) {
  latest = graph;
  const level = levels(graph);
  sync(nodes, graph.nodes.map((node) => nodeView(node, level.get(node.id))));
  const pairs = new Set(graph.edges.map((e) => `${e.source}\n${e.target}`));
  // a call back to the left arcs wide, clear of the calls it passes; a call each way between two
  // neighbours: two arcs, one on each side, instead of one line drawn twice
  const curve = (e) => (e.source === e.target ? 0
    : level.get(e.target) < level.get(e.source) - 1 ? 0.3
      : pairs.has(`${e.target}\n${e.source}`) || level.get(e.target) <= level.get(e.source) ? 0.25 : 0);
  sync(edges, graph.edges.map((e) => edgeView(e, curve(e))));
  // spread the levels over the width (fit never zooms in past 1), but no closer than an edge label is wide
  const depth = Math.max(1, ...level.values());
  const separation = Math.round(Math.max(205, Math.min(260, (container.clientWidth - 140) / depth)));
  const ids = `${separation}|${graph.nodes.map((n) => `${n.id}@${level.get(n.id)}`).sort().join('|')}`;
  if (ids !== shownIds) {
    shownIds = ids;
    network.setOptions({ layout: { hierarchical: { levelSeparation: separation } } });
    network.setData({ nodes, edges });
    network.fit({ animation: false });
  }
  showDetail({ nodes: network.getSelectedNodes(), edges: network.getSelectedEdges() });
  return graph.edges.length;
}

export function redrawGraph() {
  if (!network) return;
  network.redraw();
  network.fit({ animation: false });
}
