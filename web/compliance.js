// The compliance page: the ledger's latest signed tree head, a verification of the whole ledger
// on demand, and charts of the recent ledger (events by kind, refusals by reason, reads by
// purpose, who acted), each a table with bars and a CSV download of its data.
import { api, el, formatDate, formatNumber, purposeLabel, showPageError, startPage } from './common.js';

const $ = (id) => document.getElementById(id);
const RECENT = 1000; // ledger entries the charts cover

async function showHead() {
  const dl = $('head');
  try {
    const h = await api('GET', '/v1/audit/tree-heads/latest');
    dl.replaceChildren(
      el('dt', { text: 'Latest signed head' }), el('dd', {}, el('time', { datetime: h.time, text: formatDate(h.time) })),
      el('dt', { text: 'Entries' }), el('dd', { text: formatNumber(h.tree_size) }),
      el('dt', { text: 'Root hash' }), el('dd', { class: 'mono', text: h.root_hash }),
      el('dt', { text: 'Signing key' }), el('dd', { class: 'mono', text: h.key_id }));
  } catch (e) {
    dl.replaceChildren(el('dt', { text: 'Latest signed head' }),
      el('dd', { text: e.status === 404 ? 'none signed yet' : e.message }));
  }
}

async function verify() {
  const out = $('verify-result');
  const button = $('verify');
  button.disabled = true;
  out.className = 'notice';
  out.textContent = 'Verifying every entry, the Merkle tree and the signed heads…';
  out.hidden = false;
  try {
    const v = await api('POST', '/v1/audit/verify');
    out.className = `notice ${v.ok ? 'ok' : 'error'}`;
    out.textContent = v.ok
      ? `The ledger verifies: ${formatNumber(v.checked)} entries and ${formatNumber(v.tree_heads_checked)} signed heads checked at ${formatDate(new Date().toISOString())}.`
      : `The ledger does NOT verify: ${v.detail || v.error || JSON.stringify(v)}`;
  } catch (e) {
    out.className = 'notice error';
    out.textContent = e.problem && e.problem.type === '/problems/integrity-error'
      ? `The ledger does NOT verify: ${e.problem.detail}` : e.message;
  } finally {
    button.disabled = false;
    out.focus();
    await showHead();
  }
}

async function recentEvents() {
  const events = [];
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: '200' });
    if (cursor) q.set('cursor', cursor);
    const page = await api('GET', `/v1/audit?${q}`);
    events.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && events.length < RECENT);
  return events.slice(0, RECENT);
}

function countBy(events, key) {
  const m = new Map();
  for (const e of events) {
    const k = key(e);
    if (k) m.set(k, (m.get(k) || 0) + 1);
  }
  return [...m.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

function csv(rows, header) {
  const q = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replaceAll('"', '""')}"` : String(v));
  return [header, ...rows].map((r) => r.map(q).join(',')).join('\n') + '\n';
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// A chart: a table of label and count with a bar in each row, and its CSV.
function chart(id, title, rows, what, kind) {
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const table = el('table', { id },
    el('caption', { text: title }),
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: what }), el('th', { scope: 'col', text: 'Count' }),
      el('th', { scope: 'col' }, el('span', { class: 'visually-hidden', text: 'Share' })))),
    el('tbody', {}, ...(rows.length ? rows : [['none', 0]]).map(([label, n]) => {
      const bar = el('span');
      bar.style.width = `${(100 * n) / max}%`;
      return el('tr', {}, el('th', { scope: 'row', text: label }), el('td', { class: 'num', text: formatNumber(n) }),
        el('td', { class: `bar ${kind || ''}`, 'aria-hidden': 'true' }, bar));
    })));
  const name = `${id}.csv`;
  return el('div', { class: 'chart' }, table,
    el('button', {
      type: 'button', class: 'secondary', 'aria-label': `Download the data of “${title}” as CSV`,
      onclick: () => download(name, csv(rows, [what, 'count'])),
    }, 'Download CSV'));
}

async function showCharts() {
  const events = await recentEvents();
  const first = events[events.length - 1];
  $('activity-scope').textContent = events.length
    ? `The latest ${formatNumber(events.length)} ledger entries, since ${formatDate(first.time)}.`
    : 'The ledger is empty.';
  const refused = events.filter((e) => e.outcome && e.outcome !== 'ok');
  $('charts').replaceChildren(
    chart('events-by-kind', 'Events by kind', countBy(events, (e) => e.action), 'Kind'),
    chart('refusals-by-reason', 'Refusals in the path, by reason', countBy(refused, (e) => `${e.action}: ${e.reason || e.outcome}`), 'Refusal', 'denied'),
    chart('reads-by-purpose', 'Reads of personal data, by purpose', countBy(events.filter((e) => e.customer_id && e.purpose && e.outcome === 'ok'), (e) => purposeLabel(e.purpose)), 'Purpose'),
    chart('events-by-person', 'Who acted (staff and tokens)', countBy(events, (e) => e.actor_name && `${e.actor_name} (${e.actor_role || 'system'})`), 'Who'));
}

async function main() {
  const s = await startPage(null);
  const allowed = s.staff.role === 'admin' || s.staff.role === 'compliance';
  $('oversight').hidden = !allowed;
  $('not-oversight').hidden = allowed;
  if (allowed) {
    $('verify').addEventListener('click', verify);
    try {
      await Promise.all([showHead(), showCharts()]);
    } catch (e) {
      showPageError(e.message);
    }
  }
  document.body.dataset.ready = 'true';
}

main().catch((e) => { if (e && e.status !== 401) showPageError(e.message || String(e)); });
