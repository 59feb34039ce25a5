// Shared by every page of the console: calls to the API with the session's anti-forgery token,
// refusals explained in plain words, the header (who is signed in, the purpose they work under
// and switching it), and dates and numbers in the reader's locale. Nothing is kept in browser
// storage and nothing personal goes into a URL: ids travel in API paths and bodies only.

// The session the page works in (its anti-forgery token goes with every change), and what to do
// when it has ended (the staff pages go to the sign-in page; the customer's page asks for a
// new code).
export const session = { current: null, ended: null };

const PURPOSES = {
  service: 'Customer service',
  billing: 'Billing',
  legal_obligation: 'Legal obligation',
  fraud_prevention: 'Fraud prevention',
  security: 'Security',
  marketing: 'Marketing',
  personalization: 'Personalisation',
  analytics: 'Analytics',
  targeted_advertising: 'Targeted advertising',
  sale_or_sharing: 'Sale or sharing of data',
  research: 'Research',
};

export function purposeLabel(p) {
  return PURPOSES[p] || p;
}

// How a customer is named on a page: their name, else their first identity, as the purpose
// lets the page see them.
export function customerLabel(c) {
  if (c.display_name) return c.display_name;
  const first = (c.identities || [])[0];
  return first && first.value ? first.value : 'Customer';
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const numberFormat = new Intl.NumberFormat(undefined);

export function formatDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : dateFormat.format(d);
}

export function formatNumber(n) {
  return numberFormat.format(n);
}

// A refusal or failure from the API: status, the problem document, and what it means.
export class ApiError extends Error {
  constructor(status, problem) {
    super(explain(status, problem));
    this.status = status;
    this.problem = problem || {};
  }
}

const CONSENT_REASONS = {
  consent_given: 'the customer gave consent',
  not_required: 'no consent is needed for this purpose',
  not_opted_out: 'the customer has not objected',
  no_consent: 'the customer has not agreed to it',
  refused: 'the customer refused',
  withdrawn: 'the customer withdrew their consent',
  expired: 'the customer’s consent has expired',
  invalidated: 'the consent no longer holds (the notice it was given under changed)',
  stale_notice: 'the consent was given under an older notice',
  opted_out: 'the customer opted out',
  gpc: 'the customer’s browser sent a Global Privacy Control signal, which counts as an objection',
  quiet_hours: 'it is within the customer’s quiet hours',
  frequency_cap: 'the customer has been contacted as often as allowed for now',
  topic_opted_out: 'the customer opted out of this topic',
  unknown_customer: 'the customer is not known',
};

export function consentReason(reason) {
  return CONSENT_REASONS[reason] || (reason ? reason.replaceAll('_', ' ') : 'no reason given');
}

// Plain words for each kind of refusal, so a person knows what happened and what to do next.
export function explain(status, p) {
  const type = (p && p.type) || '';
  const detail = p && p.detail ? ` (${p.detail})` : '';
  switch (type) {
    case '/problems/guard-blocked':
      return 'Not sent: the communication guard found something in this message that must not go ' +
        'out (see the underlined text). Change it, or a supervisor may send it with an override ' +
        'and a reason.';
    case '/problems/consent-denied':
      return `Not sent: ${consentReason(p.reason || String(p.detail || '').split(':')[0])}, so ` +
        'this purpose and channel are not allowed for this customer. Nothing was stored.';
    case '/problems/purpose-not-permitted':
      return 'Refused: you may not work on this under your current purpose (your role does not ' +
        `allow it, or the customer restricted processing)${detail}. The attempt is recorded.`;
    case '/problems/purpose-required':
      return 'Choose the purpose you are working under (at the top of the page) first.';
    case '/problems/too-many-requests':
      return `Too many attempts from this network${detail}.`;
    case '/problems/unauthenticated':
      return 'Your session has ended. Sign in again.';
    case '/problems/forbidden':
      return `Refused: your role may not do this${detail}.`;
    case '/problems/not-found':
      return `Not found${detail}.`;
    case '/problems/invalid-request':
    case '/problems/malformed-json':
      return `Check the form${detail}.`;
    default:
      if (status === 0) return 'The server could not be reached. Check the connection and retry.';
      return (p && (p.detail || p.title)) || `The server answered ${status}.`;
  }
}

const SESSION_PATHS = ['/console/session', '/v1/me/session'];

// Calls the API. The session cookie goes along by itself; changes carry the anti-forgery token.
export async function api(method, path, body, { signal, headers: extra } = {}) {
  const headers = { Accept: 'application/json', ...(extra || {}) };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session.current) headers['Candor-CSRF'] = session.current.csrf_token;
  let res;
  try {
    res = await fetch(path, {
      method, headers, signal, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, null);
  }
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data);
    // A refused sign-in, or no session yet, is for the caller to explain; elsewhere a 401 means
    // the session ended.
    if (res.status === 401 && !SESSION_PATHS.includes(path)) (session.ended || toSignIn)();
    throw err;
  }
  return data;
}

export function toSignIn() {
  window.location.assign('/console/');
}

// Creates an element with text and attributes (never innerHTML: texts come from people).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// One row of a customer's access log: when, who (the customer's own reads as `self`), why,
// which data, and whether it was read or refused.
export function accessRow(e, self) {
  return el('tr', {},
    el('td', {}, el('time', { datetime: e.time, text: formatDate(e.time) })),
    el('td', { text: self && e.actor_role === 'customer' ? self : `${e.actor_name} (${e.actor_role})` }),
    el('td', { text: e.purpose ? purposeLabel(e.purpose) : '—' }),
    el('td', { text: (e.categories || e.action || '').replaceAll(',', ', ') }),
    el('td', { text: e.outcome === 'ok' ? 'read' : 'refused' }));
}

// Says something to screen-reader users without moving their focus.
export function announce(text) {
  const live = document.getElementById('announce');
  if (live) {
    live.textContent = '';
    window.setTimeout(() => { live.textContent = text; }, 50);
  }
}

// Fills the header: the person, the purpose they work under, the switch, and sign-out. Calls
// onPurpose after a switch. Resolves with the session, or leaves for the sign-in page.
export async function startPage(onPurpose) {
  try {
    session.current = await api('GET', '/console/session');
  } catch (e) {
    toSignIn();
    throw e;
  }
  const s = session.current;
  document.getElementById('who').textContent = `${s.staff.name} (${s.staff.role})`;
  for (const a of document.querySelectorAll('[data-role]')) {
    a.hidden = !a.dataset.role.split(' ').includes(s.staff.role);
  }
  const select = document.getElementById('purpose-select');
  select.replaceChildren(...s.purposes.map((p) => el('option', { value: p, text: purposeLabel(p) })));
  if (s.purpose) select.value = s.purpose;
  renderPurpose();
  document.getElementById('purpose-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const want = select.value;
    if (want === session.current.purpose) return;
    try {
      session.current = await api('PUT', '/console/session/purpose', { purpose: want });
      renderPurpose();
      announce(`You now work under the purpose ${purposeLabel(want)}. Every read is recorded with it.`);
      if (onPurpose) onPurpose();
    } catch (e) {
      showPageError(e.message);
    }
  });
  document.getElementById('sign-out').addEventListener('click', async () => {
    try { await api('DELETE', '/console/session'); } catch { /* ended already */ }
    toSignIn();
  });
  return s;
}

function renderPurpose() {
  const p = session.current.purpose;
  document.getElementById('purpose-now').textContent = p ? purposeLabel(p) : 'none chosen';
  const need = document.getElementById('purpose-needed');
  if (need) need.hidden = Boolean(p);
}

export function showPageError(text) {
  const box = document.getElementById('page-error');
  box.textContent = text;
  box.hidden = false;
  box.focus();
}

// Changes the signed-in person's password; the two new entries must match. Resolves with how
// many other sessions ended; rejects with an Error whose message a person can act on.
export async function changePassword(current, next, again) {
  if (!current) throw new Error('Enter your current password.');
  if (next.length < 12) throw new Error('The new password needs at least 12 characters.');
  if (next !== again) throw new Error('The two new passwords are not the same.');
  if (next === current) throw new Error('The new password must differ from the current one.');
  const r = await api('PUT', '/console/session/password',
    { current_password: current, new_password: next });
  session.current = await api('GET', '/console/session');
  return r.other_sessions_ended;
}
