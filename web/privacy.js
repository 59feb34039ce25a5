// A customer's privacy record as their privacy centre shows it: who read their data, when, why
// and what (the access log), their consent decisions with one-click withdrawal on their behalf,
// and each consent receipt's Ed25519 signature verified here, in the page, with the key the
// server publishes.
import {
  accessRow, api, announce, consentReason, customerLabel, el, formatDate, purposeLabel,
  showPageError, startPage,
} from './common.js';

const $ = (id) => document.getElementById(id);
const CHANNELS = {
  '*': 'every channel', email: 'email', sms: 'SMS', phone: 'phone', chat: 'chat', social: 'social',
  app: 'app', push: 'push', post: 'post', in_person: 'in person',
};
const state = { customer: null, logCursor: null };

// ---- the customer ----

async function find(ev) {
  ev.preventDefault();
  const value = $('find-value').value.trim();
  if (!value) {
    $('find-status').textContent = 'Enter what to look for.';
    $('find-value').focus();
    return;
  }
  try {
    state.customer = await api('POST', '/v1/customers/lookup', { type: $('find-type').value, value });
    $('find-status').textContent = `Opened ${customerLabel(state.customer)} (${state.customer.id}).`;
    $('record').hidden = false;
    $('receipt').hidden = true;
    await Promise.all([loadConsents(), loadLog(false)]);
  } catch (e) {
    $('find-status').textContent = e.status === 404 ? 'No customer has this identity.' : e.message;
  }
}

// ---- consent ----

async function loadConsents() {
  const c = state.customer;
  const d = await api('GET', `/v1/customers/${encodeURIComponent(c.id)}/consents`);
  $('consent-rows').replaceChildren(...d.current.map(consentRow));
}

function consentRow(d) {
  const what = `${purposeLabel(d.purpose)} by ${CHANNELS[d.channel] || d.channel}`;
  const withdrawable = d.allow && (d.basis === 'consent' || d.reason === 'consent_given');
  return el('tr', {},
    el('th', { scope: 'row', text: purposeLabel(d.purpose) }),
    el('td', { text: CHANNELS[d.channel] || d.channel }),
    el('td', {}, el('span', { class: `badge ${d.allow ? 'allow' : 'block'}`, text: d.allow ? 'allowed' : 'not allowed' })),
    el('td', { text: consentReason(d.reason) }),
    el('td', {},
      withdrawable ? el('button', {
        type: 'button', class: 'danger', 'aria-label': `Withdraw consent to ${what}`,
        onclick: () => withdraw(d, what),
      }, 'Withdraw') : null,
      ' ',
      d.event_id ? el('button', {
        type: 'button', class: 'secondary', 'aria-label': `Verify the signed receipt of ${what}`,
        onclick: () => verify(d.event_id),
      }, 'Verify receipt') : null));
}

async function withdraw(d, what) {
  try {
    const ev = await api('POST', '/v1/consents', {
      customer_id: state.customer.id, purpose: d.purpose, channel: d.channel, state: 'withdrawn',
      method: $('asked-by').value,
    });
    await loadConsents();
    const text = `Consent to ${what} is withdrawn (receipt ${ev.id}). From now on it is refused.`;
    $('consent-status').textContent = text;
    announce(text);
    await loadLog(false);
  } catch (e) {
    showPageError(e.message);
  }
}

function bytesFromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

function bytesFromB64url(s) {
  const b = atob(s.replaceAll('-', '+').replaceAll('_', '/') + '==='.slice((s.length + 3) % 4));
  return Uint8Array.from(b, (ch) => ch.charCodeAt(0));
}

// Checks the receipt's signature over its exact signed bytes with the server's published key,
// and that those bytes are the receipt shown and belong to this consent event.
async function checkReceipt(eventId) {
  const r = await api('GET', `/v1/consents/${encodeURIComponent(eventId)}/receipt`);
  const { keys } = await api('GET', '/.well-known/candor-keys.json');
  const k = keys.find((x) => x.kid === r.key_id);
  if (!k) return { ok: false, why: 'it names a key this server does not publish' };
  const key = await crypto.subtle.importKey('raw', bytesFromHex(k.public_key_hex), { name: 'Ed25519' }, false, ['verify']);
  const payload = bytesFromB64url(r.payload);
  const valid = await crypto.subtle.verify({ name: 'Ed25519' }, key, bytesFromHex(r.signature), payload);
  if (!valid) return { ok: false, why: 'the signature does not match the receipt: it was altered' };
  const signed = JSON.parse(new TextDecoder().decode(payload));
  if (signed.consentReceiptID !== eventId || JSON.stringify(signed) !== JSON.stringify(r.receipt)) {
    return { ok: false, why: 'the signed receipt is not the one shown' };
  }
  const p = (signed.services || []).flatMap((s) => s.purposes || [])[0] || {};
  return { ok: true, receipt: signed, purpose: p, kid: k.kid };
}

async function verify(eventId) {
  const box = $('receipt');
  try {
    const v = await checkReceipt(eventId);
    box.className = `notice ${v.ok ? 'ok' : 'error'}`;
    box.replaceChildren(v.ok
      ? el('p', {},
        el('strong', { text: 'The receipt’s signature is valid. ' }),
        `Receipt ${eventId}: ${purposeLabel(v.purpose.purpose)} by ${CHANNELS[v.purpose.channel] || v.purpose.channel}, ` +
        `${v.purpose.state}, recorded ${formatDate(v.receipt.recordedAt)}; signed with key ${v.kid.slice(0, 16)}…`)
      : el('p', {}, el('strong', { text: 'The receipt does not verify: ' }), `${v.why}.`));
  } catch (e) {
    box.className = 'notice error';
    box.textContent = e.message;
  }
  box.hidden = false;
  box.focus();
}

// ---- the access log ----

async function loadLog(more) {
  const q = new URLSearchParams({ limit: '25' });
  if (more && state.logCursor) q.set('cursor', state.logCursor);
  try {
    const page = await api('GET', `/v1/customers/${encodeURIComponent(state.customer.id)}/access-log?${q}`);
    const rows = page.items.map((e) => accessRow(e));
    if (more) $('log-rows').append(...rows);
    else $('log-rows').replaceChildren(...rows);
    state.logCursor = page.next_cursor;
    $('log-more').hidden = !page.next_cursor;
    $('log-status').textContent = `${$('log-rows').children.length} entries shown.`;
  } catch (e) {
    $('log-status').textContent = e.message;
  }
}

async function main() {
  await startPage(() => {
    state.customer = null;
    $('record').hidden = true;
    $('find-status').textContent = '';
  });
  $('find-form').addEventListener('submit', find);
  $('log-more').addEventListener('click', () => loadLog(true));
  document.body.dataset.ready = 'true';
}

main().catch((e) => { if (e && e.status !== 401) showPageError(e.message || String(e)); });
