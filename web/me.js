// The customer's own privacy centre, in their self-service session (/v1/me): they sign in with
// a one-time code sent to an identity we hold, then see what is held about them, who read it
// and why, their consent choices (withdrawn as easily as given), and their requests with their
// deadlines, and file a new one. The session cookie is HttpOnly and scoped to /v1/me; the
// anti-forgery token stays in this page's memory. Nothing personal goes into a URL or into
// browser storage.
import {
  accessRow, api, announce, consentReason, el, formatDate, purposeLabel, session, showPageError,
} from './common.js';

const $ = (id) => document.getElementById(id);
const CHANNELS = {
  '*': 'every channel', email: 'email', sms: 'SMS', phone: 'phone', chat: 'chat', social: 'social',
  app: 'app', push: 'push', post: 'post', in_person: 'in person',
};
const TYPES = {
  access: 'A copy of my data', portability: 'My data in a file', rectification: 'Correct my data',
  erasure: 'Delete my data', restriction: 'Restrict the use of my data',
  objection: 'Stop marketing and profiling', opt_out_sale_sharing: 'Do not sell or share my data',
  limit_sensitive_use: 'Limit the use of my sensitive data',
};
const STATES = {
  received: 'received', verifying: 'checking it is you', in_progress: 'in progress',
  extended: 'in progress (deadline extended)', completed: 'answered', refused: 'refused',
  withdrawn: 'withdrawn',
};
const state = { challenge: null, logCursor: null };

function status(id, text, kind) {
  const box = $(id);
  box.textContent = text;
  if (kind !== undefined) box.className = `notice ${kind}`;
  box.hidden = !text;
}

// ---- signing in ----

async function sendCode(ev) {
  if (ev) ev.preventDefault();
  const value = $('id-value').value.trim();
  if (!value) {
    status('signin-status', 'Enter the email address or phone number we hold for you.', 'error');
    $('id-value').focus();
    return;
  }
  try {
    const ch = await api('POST', '/v1/me/sign-in-codes', { type: $('id-type').value, value });
    state.challenge = ch.challenge_id;
    $('signin-form').hidden = false;
    status('signin-status', `If we hold ${value} for you, a code is on its way. It works once, until ${formatDate(ch.expires_at)}.`, '');
    $('code').focus();
  } catch (e) {
    status('signin-status', e.message, 'error');
  }
}

async function signIn(ev) {
  ev.preventDefault();
  const code = $('code').value.trim();
  if (!/^[0-9]{8}$/.test(code)) {
    status('signin-status', 'The code has 8 digits.', 'error');
    $('code').focus();
    return;
  }
  try {
    session.current = await api('POST', '/v1/me/session', { challenge_id: state.challenge, code });
    $('code').value = '';
    await enter();
  } catch (e) {
    const p = e.problem || {};
    const why = {
      mismatch: `That code is not the one we sent (${p.attempts_left} tries left).`,
      attempts_exhausted: 'That code is not the one we sent, and it was the last try. Ask for a new code.',
      expired: 'The code has expired. Ask for a new one.',
      none_pending: 'That code no longer works. Ask for a new one.',
    }[p.outcome];
    status('signin-status', why || e.message, 'error');
    $('code').value = '';
    $('code').focus();
  }
}

function ended() {
  session.current = null;
  $('centre').hidden = true;
  $('signed-in-as').hidden = true;
  $('signin').hidden = false;
  $('signin-form').hidden = true;
  status('signin-status', 'You are signed out. Ask for a new code to sign in again.', '');
}

async function signOut() {
  try { await api('DELETE', '/v1/me/session'); } catch { /* ended already */ }
  ended();
  $('id-value').focus();
}

// ---- what is held ----

function fact(name, value) {
  return [el('dt', { text: name }), el('dd', { text: value || '—' })];
}

async function loadHeld() {
  const c = await api('GET', '/v1/me');
  const rows = [
    ...fact('Name', c.display_name),
    ...(c.identities || []).flatMap((i) => fact(i.type === 'email' ? 'Email address' : i.type === 'phone' ? 'Phone number' : i.type, i.value)),
    ...fact('Language', c.locale),
    ...fact('Time zone', c.time_zone),
    ...fact('Where you live (for the law that applies)', c.jurisdiction),
    ...Object.entries(c.attributes || {}).flatMap(([k, v]) => fact(k, typeof v === 'string' ? v : JSON.stringify(v))),
    ...fact('Processing restricted', c.restricted ? 'yes, at your request' : 'no'),
  ];
  $('held').replaceChildren(...rows);
  $('who').textContent = c.display_name || 'Signed in';
}

// ---- choices ----

async function loadConsents() {
  const v = await api('GET', '/v1/me/consents');
  $('consent-rows').replaceChildren(...v.current.map(consentRow));
  const gpc = v.current.some((d) => d.reason === 'gpc');
  $('gpc').hidden = !gpc;
  $('gpc').textContent = gpc ? 'Your browser’s Global Privacy Control signal is honoured: we treat it as your objection to selling or sharing your data.' : '';
}

function consentRow(d) {
  const what = `${purposeLabel(d.purpose)} by ${CHANNELS[d.channel] || d.channel}`;
  const byConsent = d.basis === 'consent' || ['consent_given', 'no_consent', 'withdrawn', 'refused', 'expired', 'opted_out', 'not_opted_out'].includes(d.reason);
  const next = d.allow ? 'withdrawn' : 'given';
  return el('tr', {},
    el('th', { scope: 'row', text: purposeLabel(d.purpose) }),
    el('td', { text: CHANNELS[d.channel] || d.channel }),
    el('td', {}, el('span', { class: `badge ${d.allow ? 'allow' : 'block'}`, text: d.allow ? 'allowed' : 'not allowed' })),
    el('td', { text: consentReason(d.reason) }),
    el('td', {}, byConsent ? el('button', {
      type: 'button', class: d.allow ? 'danger' : 'secondary',
      'aria-label': `${d.allow ? 'Withdraw my consent to' : 'Agree to'} ${what}`,
      onclick: () => change(d, next, what),
    }, d.allow ? 'Withdraw' : 'Agree') : null));
}

async function change(d, to, what) {
  try {
    await api('POST', '/v1/me/consents', { purpose: d.purpose, channel: d.channel, state: to });
    await loadConsents();
    const text = to === 'withdrawn' ? `You withdrew your consent to ${what}. It applies from now on.`
      : `You agreed to ${what}. You can withdraw at any time, here.`;
    $('consent-status').textContent = text;
    announce(text);
    await loadLog(false);
  } catch (e) {
    showPageError(e.message);
  }
}

// ---- who looked ----

async function loadLog(more) {
  const q = new URLSearchParams({ limit: '25' });
  if (more && state.logCursor) q.set('cursor', state.logCursor);
  const page = await api('GET', `/v1/me/access-log?${q}`);
  const rows = page.items.map((e) => accessRow(e, 'You'));
  if (more) $('log-rows').append(...rows);
  else $('log-rows').replaceChildren(...rows);
  state.logCursor = page.next_cursor;
  $('log-more').hidden = !page.next_cursor;
  $('log-status').textContent = `${$('log-rows').children.length} entries shown.`;
}

// ---- requests ----

async function loadRequests() {
  const page = await api('GET', '/v1/me/requests');
  $('request-rows').replaceChildren(...page.items.map((r) => el('tr', {},
    el('th', { scope: 'row', text: TYPES[r.type] || r.type }),
    el('td', { text: STATES[r.state] || r.state }),
    el('td', {}, el('time', { datetime: r.received_at, text: formatDate(r.received_at) })),
    el('td', {}, r.closed_at ? 'answered' : el('time', { datetime: r.due_at, text: formatDate(r.due_at) })))));
  if (!page.items.length) $('request-rows').replaceChildren(el('tr', {}, el('td', { colspan: '4', text: 'You have made no request.' })));
}

async function fileRequest(ev) {
  ev.preventDefault();
  const body = { type: $('request-type').value };
  const details = $('request-details').value.trim();
  if (details) body.details = details;
  try {
    const r = await api('POST', '/v1/me/requests', body);
    $('request-details').value = '';
    await loadRequests();
    const text = `We received your request on ${formatDate(r.received_at)}. We must answer by ${formatDate(r.due_at)}.`;
    $('request-status').textContent = text;
    announce(text);
  } catch (e) {
    $('request-status').textContent = e.message;
  }
}

// ---- the page ----

async function enter() {
  $('signin').hidden = true;
  $('centre').hidden = false;
  $('signed-in-as').hidden = false;
  await loadHeld();
  await Promise.all([loadConsents(), loadLog(false), loadRequests()]);
  $('held-h').focus();
}

async function main() {
  session.ended = ended;
  $('held-h').tabIndex = -1;
  $('code-form').addEventListener('submit', sendCode);
  $('code-again').addEventListener('click', () => sendCode());
  $('signin-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('log-more').addEventListener('click', () => loadLog(true).catch((e) => showPageError(e.message)));
  $('request-form').addEventListener('submit', fileRequest);
  // A session still open (the page reloaded): carry on in it.
  try {
    session.current = await api('GET', '/v1/me/session');
    await enter();
  } catch (e) {
    if (e.status !== 401) throw e;
    ended();
    $('signin-status').hidden = true;
  }
  document.body.dataset.ready = 'true';
}

main().catch((e) => showPageError(e.message || String(e)));
