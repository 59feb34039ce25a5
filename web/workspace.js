// The agent workspace: find and open a customer, read their timeline across channels, and write
// to them with the guard checking the draft as it is typed and the consent decision in view.
import {
  api, announce, consentReason, customerLabel, el, explain, formatDate, formatNumber,
  purposeLabel, session, showPageError, startPage,
} from './common.js';

const CHANNELS = {
  email: 'Email', sms: 'SMS', phone: 'Phone', chat: 'Chat', social: 'Social', app: 'App',
  push: 'Push', post: 'Post', in_person: 'In person',
};
const GUARD_DELAY_MS = 150; // after the last keystroke

const $ = (id) => document.getElementById(id);
const ws = {
  customer: null, // the open customer (as the API answered under the current purpose)
  customersCursor: null,
  timelineCursor: null,
  timelineLoading: false,
  timelineGen: 0, // bumps when the customer or the filter changes; late pages are dropped
  guardSeq: 0,
  guardAbort: null,
  guardTimer: 0,
  findings: [],
  verdict: 'allow',
  checkedText: null,
  redacted: null,
  idempotencyKey: null,
};

// ---- customers ----

async function loadCustomers(more) {
  if (!session.current.purpose) return;
  const q = new URLSearchParams({ limit: '20' });
  if (more && ws.customersCursor) q.set('cursor', ws.customersCursor);
  try {
    const page = await api('GET', `/v1/customers?${q}`);
    const list = $('customers');
    if (!more) list.replaceChildren();
    for (const c of page.items) list.append(customerItem(c));
    ws.customersCursor = page.next_cursor;
    $('customers-more').hidden = !page.next_cursor;
  } catch (e) {
    showPageError(e.message);
  }
}

function customerItem(c) {
  const b = el('button', {
    type: 'button', 'aria-pressed': String(Boolean(ws.customer && ws.customer.id === c.id)),
    onclick: () => openCustomer(c),
  }, el('span', { text: customerLabel(c) }), el('span', { class: 'id', text: c.id }));
  b.dataset.id = c.id;
  return el('li', {}, b);
}

async function find(ev) {
  ev.preventDefault();
  const value = $('find-value').value.trim();
  const status = $('find-status');
  if (!value) {
    status.textContent = 'Enter what to look for.';
    $('find-value').focus();
    return;
  }
  status.textContent = 'Looking…';
  try {
    const c = await api('POST', '/v1/customers/lookup', { type: $('find-type').value, value });
    status.textContent = `Found: ${customerLabel(c)}.`;
    openCustomer(c);
  } catch (e) {
    status.textContent = e.status === 404 ? 'No customer has this identity.' : e.message;
  }
}

function openCustomer(c) {
  ws.customer = c;
  for (const b of document.querySelectorAll('#customers button')) {
    b.setAttribute('aria-pressed', String(b.dataset.id === c.id));
  }
  $('timeline-who').textContent = `${customerLabel(c)} · ${c.id}`;
  announce(`Opened ${customerLabel(c)}.`);
  reloadTimeline();
  checkConsent();
  updateSend();
}

// ---- timeline ----

function channelFilter() {
  const checked = document.querySelector('input[name="channel-filter"]:checked');
  return checked ? checked.value : '';
}

function reloadTimeline() {
  ws.timelineGen++;
  ws.timelineCursor = null;
  ws.timelineLoading = false;
  $('timeline').replaceChildren();
  loadTimeline();
}

async function loadTimeline() {
  if (!ws.customer || ws.timelineLoading) return;
  const gen = ws.timelineGen;
  const q = new URLSearchParams({ limit: '25' });
  if (ws.timelineCursor) q.set('cursor', ws.timelineCursor);
  const ch = channelFilter();
  if (ch) q.set('channel', ch);
  ws.timelineLoading = true;
  $('timeline-status').textContent = 'Loading messages…';
  try {
    const page = await api('GET', `/v1/customers/${encodeURIComponent(ws.customer.id)}/timeline?${q}`);
    if (gen !== ws.timelineGen) return;
    const list = $('timeline');
    for (const it of page.items) list.append(timelineItem(it));
    ws.timelineCursor = page.next_cursor;
    const n = list.children.length;
    $('timeline-status').textContent = n === 0 ? 'No messages on this channel.'
      : `${formatNumber(n)} message${n === 1 ? '' : 's'} shown${page.next_cursor ? '; older ones load as you scroll' : ''}.`;
    $('timeline-more').hidden = !page.next_cursor;
  } catch (e) {
    if (gen === ws.timelineGen) $('timeline-status').textContent = e.message;
  } finally {
    if (gen === ws.timelineGen) ws.timelineLoading = false;
  }
}

function timelineItem(it) {
  const verdict = it.guard && it.guard.verdict;
  return el('li', {},
    el('div', { class: 'meta' },
      el('span', { text: CHANNELS[it.channel] || it.channel }),
      el('span', { text: it.direction === 'outbound' ? 'to the customer' : 'from the customer' }),
      el('time', { datetime: it.occurred_at, text: formatDate(it.occurred_at) }),
      it.purpose ? el('span', { text: purposeLabel(it.purpose) }) : null,
      verdict && verdict !== 'allow'
        ? el('span', { class: `badge ${verdict}`, text: verdict === 'block' ? 'sent with override' : 'guard warning' })
        : null),
    it.subject ? el('h3', { text: it.subject }) : null,
    it.body !== null && it.body !== undefined ? el('p', { class: 'body', text: it.body })
      : el('p', { class: 'hint', text: 'The content is not shown under this purpose.' }));
}

// ---- the guard, as the agent types ----

// The segments of text between every finding boundary, each with the strongest severity that
// covers it; spans are UTF-16 offsets, which is how JavaScript indexes strings.
function segments(text, findings) {
  const rank = { info: 1, warn: 2, block: 3 };
  const cuts = new Set([0, text.length]);
  for (const f of findings) {
    cuts.add(Math.min(f.start_utf16, text.length));
    cuts.add(Math.min(f.end_utf16, text.length));
  }
  const points = [...cuts].sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const a = points[i];
    const b = points[i + 1];
    let sev = '';
    for (const f of findings) {
      if (f.start_utf16 <= a && f.end_utf16 >= b && (rank[f.severity] || 0) > (rank[sev] || 0)) sev = f.severity;
    }
    const last = out[out.length - 1];
    if (last && last.sev === sev) last.end = b;
    else out.push({ start: a, end: b, sev });
  }
  return out;
}

function drawMirror() {
  const text = $('draft').value;
  const current = ws.checkedText === text ? ws.findings : [];
  const nodes = segments(text, current).map((s) => {
    const t = text.slice(s.start, s.end);
    return s.sev ? el('mark', { class: s.sev, text: t }) : document.createTextNode(t);
  });
  nodes.push(document.createTextNode('\n')); // a trailing newline takes a line in the textarea too
  $('mirror').replaceChildren(...nodes);
  syncScroll();
}

function syncScroll() {
  $('mirror').scrollTop = $('draft').scrollTop;
}

// The replacement for a personal-data finding, read off the guard's redacted copy: the text
// between the unchanged stretches before and after the span.
function maskedForm(text, f) {
  const red = ws.redacted;
  if (typeof red !== 'string' || f.category !== 'pii') return null;
  const pii = ws.findings.filter((g) => g.category === 'pii').sort((a, b) => a.start_utf16 - b.start_utf16);
  let pos = 0;
  let rpos = 0;
  for (let i = 0; i < pii.length; i++) {
    const g = pii[i];
    if (g.start_utf16 < pos) continue;
    const before = text.slice(pos, g.start_utf16);
    if (red.slice(rpos, rpos + before.length) !== before) return null;
    rpos += before.length;
    const next = pii.slice(i + 1).find((h) => h.start_utf16 >= g.end_utf16);
    const after = text.slice(g.end_utf16, next ? next.start_utf16 : text.length);
    const end = after ? red.indexOf(after, rpos) : red.length;
    if (end < rpos) return null;
    if (g === f) return red.slice(rpos, end);
    rpos = end;
    pos = g.end_utf16;
  }
  return null;
}

function applyRewrite(f, replacement) {
  const d = $('draft');
  const text = d.value;
  d.value = text.slice(0, f.start_utf16) + replacement + text.slice(f.end_utf16);
  d.focus();
  const caret = f.start_utf16 + replacement.length;
  d.setSelectionRange(caret, caret);
  announce('Rewrite applied. Checking the message again.');
  draftChanged(0);
}

function selectSpan(f) {
  const d = $('draft');
  d.focus();
  d.setSelectionRange(f.start_utf16, f.end_utf16);
}

function renderFindings() {
  const text = $('draft').value;
  const list = $('findings');
  const fresh = ws.checkedText === text;
  list.replaceChildren(...(fresh ? ws.findings : []).map((f, i) => {
    const rewrite = maskedForm(text, f);
    const quote = text.slice(f.start_utf16, f.end_utf16);
    const label = f.severity === 'block' ? 'Must change' : f.severity === 'warn' ? 'Consider changing' : 'Note';
    return el('li', { class: f.severity },
      el('p', {},
        el('span', { class: `badge ${f.severity}`, text: label }), ' ',
        el('strong', { text: f.message }), ' ',
        el('q', { text: quote })),
      f.suggestion ? el('p', { text: f.suggestion }) : null,
      f.references && f.references.length
        ? el('ul', { class: 'refs', 'aria-label': 'References' }, ...f.references.map((r) => el('li', { text: r })))
        : null,
      el('div', { class: 'actions' },
        rewrite !== null
          ? el('button', {
            type: 'button', id: `apply-${i}`, onclick: () => applyRewrite(f, rewrite),
            'aria-label': `Apply the rewrite: replace “${quote}” with “${rewrite}”`,
          }, `Replace with “${rewrite}”`)
          : null,
        el('button', {
          type: 'button', class: 'secondary', onclick: () => selectSpan(f),
          'aria-label': `Select “${quote}” in the message to rewrite it`,
        }, 'Select in message')));
  }));
  const n = fresh ? ws.findings.length : 0;
  const summary = $('guard-summary');
  if (!text.trim()) summary.textContent = 'The guard checks your message as you type.';
  else if (!fresh) summary.textContent = 'Checking…';
  else if (n === 0) summary.textContent = 'The guard found nothing to change.';
  else {
    const blocks = ws.findings.filter((f) => f.severity === 'block').length;
    summary.textContent = `The guard found ${formatNumber(n)} thing${n === 1 ? '' : 's'} to look at` +
      (blocks ? `, ${formatNumber(blocks)} of which must change before sending.` : '.');
  }
}

async function runGuard() {
  const text = $('draft').value;
  const seq = ++ws.guardSeq;
  if (ws.guardAbort) ws.guardAbort.abort();
  if (!text.trim()) {
    ws.findings = [];
    ws.checkedText = text;
    ws.redacted = text;
    ws.verdict = 'allow';
    drawMirror();
    renderFindings();
    updateSend();
    return;
  }
  ws.guardAbort = new AbortController();
  try {
    const r = await api('POST', '/v1/guard/check', { text, channel: $('channel').value, direction: 'outbound' },
      { signal: ws.guardAbort.signal });
    if (seq !== ws.guardSeq) return;
    ws.findings = r.findings || [];
    ws.verdict = r.verdict;
    ws.redacted = r.redacted;
    ws.checkedText = text;
    drawMirror();
    renderFindings();
    updateSend();
    document.dispatchEvent(new CustomEvent('candor:guard-checked', { detail: { findings: ws.findings.length } }));
  } catch (e) {
    if (e.name !== 'AbortError' && seq === ws.guardSeq) $('guard-summary').textContent = `The guard could not check the message: ${e.message}`;
  }
}

function draftChanged(delay = GUARD_DELAY_MS) {
  ws.idempotencyKey = null; // a changed message is a new message
  $('sent').hidden = true;
  hideRefusal();
  drawMirror();
  window.clearTimeout(ws.guardTimer);
  ws.guardTimer = window.setTimeout(runGuard, delay);
  updateSend();
}

// ---- consent and sending ----

async function checkConsent() {
  const box = $('consent');
  if (!ws.customer || !session.current.purpose) {
    box.className = 'consent';
    box.textContent = 'Open a customer to see whether you may contact them on this channel.';
    return;
  }
  const channel = $('channel').value;
  const purpose = session.current.purpose;
  try {
    const d = await api('POST', '/v1/consents/check', { customer_id: ws.customer.id, purpose, channel });
    box.className = `consent ${d.allow ? 'allow' : 'deny'}`;
    box.textContent = `${d.allow ? 'You may' : 'You may not'} contact this customer by ${CHANNELS[channel]} for ` +
      `${purposeLabel(purpose)}: ${consentReason(d.reason)}` +
      (d.basis && d.basis !== 'none' ? ` (legal basis: ${d.basis.replaceAll('_', ' ')}).` : '.');
    ws.consentAllowed = d.allow;
  } catch (e) {
    box.className = 'consent deny';
    box.textContent = e.message;
    ws.consentAllowed = false;
  }
  updateSend();
}

function updateSend() {
  const text = $('draft').value;
  const hint = $('send-hint');
  let why = '';
  if (!session.current.purpose) why = 'Choose a purpose first.';
  else if (!ws.customer) why = 'Open a customer first.';
  else if (!text.trim()) why = 'Write a message first.';
  else if (ws.checkedText !== text) why = 'Waiting for the guard…';
  // The server decides; the page says beforehand what it will answer.
  let caution = '';
  if (!why && ws.verdict === 'block') {
    caution = 'The guard will refuse this message until the text marked “Must change” is changed, unless a supervisor overrides.';
  } else if (!why && ws.consentAllowed === false) {
    caution = 'The customer’s consent does not allow this message; it will be refused.';
  }
  hint.textContent = why || caution;
  $('send').setAttribute('aria-disabled', String(Boolean(why)));
  $('subject-wrap').hidden = !['email', 'post'].includes($('channel').value);
}

function hideRefusal() {
  $('refusal').hidden = true;
  $('override').hidden = true;
}

async function send(override) {
  const text = $('draft').value;
  if (!override && $('send').getAttribute('aria-disabled') === 'true') {
    announce($('send-hint').textContent);
    return;
  }
  const body = {
    customer_id: ws.customer.id, channel: $('channel').value, direction: 'outbound',
    purpose: session.current.purpose, body: text,
  };
  const subject = $('subject').value.trim();
  if (subject && !$('subject-wrap').hidden) body.subject = subject;
  if (override) body.guard_override = { reason: $('override-reason').value.trim() };
  ws.idempotencyKey = ws.idempotencyKey || crypto.randomUUID();
  hideRefusal();
  try {
    const it = await api('POST', '/v1/interactions', body, { headers: { 'Idempotency-Key': ws.idempotencyKey } });
    ws.idempotencyKey = null;
    $('draft').value = '';
    $('subject').value = '';
    $('override-reason').value = '';
    ws.findings = [];
    ws.checkedText = '';
    drawMirror();
    renderFindings();
    const sent = $('sent');
    sent.textContent = `Sent and stored at ${formatDate(it.occurred_at || it.created_at)} (${it.id}).`;
    sent.hidden = false;
    reloadTimeline();
    updateSend();
    $('draft').focus();
  } catch (e) {
    refuse(e);
  }
}

function refuse(e) {
  const box = $('refusal');
  $('refusal-text').textContent = explain(e.status, e.problem);
  box.hidden = false;
  if (e.problem && e.problem.type === '/problems/guard-blocked') {
    const role = session.current.staff.role;
    if (role === 'supervisor' || role === 'admin') {
      $('override').hidden = false;
    } else {
      $('refusal-text').append(' Only a supervisor may override a block: ask one to review the message.');
    }
  }
  box.focus();
}

// ---- start ----

async function purposeChanged() {
  ws.customer = null;
  $('timeline').replaceChildren();
  $('timeline-who').textContent = 'No customer is open.';
  $('timeline-status').textContent = '';
  $('timeline-more').hidden = true;
  ws.consentAllowed = undefined;
  await loadCustomers(false);
  checkConsent();
  updateSend();
}

async function main() {
  await startPage(purposeChanged);
  $('find-form').addEventListener('submit', find);
  $('customers-more').addEventListener('click', () => loadCustomers(true));
  $('channel-filter').addEventListener('change', reloadTimeline);
  $('timeline-more').addEventListener('click', loadTimeline);
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && ws.timelineCursor) loadTimeline();
  }, { root: $('timeline-scroll'), rootMargin: '200px' }).observe($('timeline-sentinel'));
  $('draft').addEventListener('input', () => draftChanged());
  $('draft').addEventListener('scroll', syncScroll);
  new ResizeObserver(syncScroll).observe($('draft'));
  $('channel').addEventListener('change', () => { checkConsent(); draftChanged(0); });
  $('composer').addEventListener('submit', (ev) => { ev.preventDefault(); send(false); });
  $('override-send').addEventListener('click', () => {
    if ($('override-reason').value.trim().length < 10) {
      $('override-reason').focus();
      announce('Give a reason of at least 10 characters.');
      return;
    }
    send(true);
  });
  drawMirror();
  updateSend();
  await loadCustomers(false);
  document.body.dataset.ready = 'true';
}

main().catch((e) => { if (e && e.status !== 401) showPageError(e.message || String(e)); });
