// Every proxy's sync state, as `isthmus proxy-status` shows it: SYNCED when it applied the config version pilot
// pushes now, STALE when it applied an older one, REJECTED (with the proxy's NACK error) when its last report
// was a NACK. Problems first.
import { el, fillTable, fmtAge, getJSON } from './api.js';

const ORDER = { REJECTED: 0, STALE: 1, SYNCED: 2 };

export const syncState = (proxy, version) => (!proxy.ok ? 'REJECTED' : proxy.version >= version ? 'SYNCED' : 'STALE');

export async function refreshProxies() {
  const reply = await getJSON('/api/proxies');
  const banner = document.getElementById('proxy-error');
  banner.hidden = reply.ok !== false;
  banner.textContent = reply.ok === false ? `pilot did not answer: ${reply.error || 'unknown error'}` : '';
  const rows = (reply.proxies || []).map((p) => ({ p, state: syncState(p, reply.version || 0) }))
    .sort((a, b) => ORDER[a.state] - ORDER[b.state] || a.p.proxy_id.localeCompare(b.p.proxy_id));
  const counts = { SYNCED: 0, STALE: 0, REJECTED: 0 };
  for (const row of rows) counts[row.state] += 1;
  document.getElementById('proxy-summary').textContent = `config version ${reply.version ?? '–'} · `
    + `${counts.SYNCED} synced · ${counts.STALE} stale · ${counts.REJECTED} rejected`;
  fillTable(document.getElementById('proxies'), rows.map(({ p, state }) => el('tr', { 'data-proxy': p.proxy_id },
    el('td', { class: 'mono' }, p.proxy_id), el('td', {}, p.namespace || 'default'), el('td', {}, p.service || '–'),
    el('td', {}, el('span', { class: `badge ${state.toLowerCase()}` }, state)), el('td', { class: 'num' }, p.version),
    el('td', { class: 'nowrap' }, fmtAge(p.updated_at)), el('td', { class: 'error-text' }, p.error || ''))),
  document.getElementById('proxies-empty'));
}
