// Staff accounts (administrators): list, add, disable, end an account's sessions, and set a
// temporary password for someone who forgot theirs.
import {
  api, announce, el, formatDate, formatNumber, session, showPageError, startPage,
} from './common.js';

const $ = (id) => document.getElementById(id);

async function load() {
  try {
    const { items } = await api('GET', '/v1/staff');
    $('staff-rows').replaceChildren(...items.map(row));
    const me = session.current.staff.id;
    $('reset-who').replaceChildren(...items.filter((a) => a.status !== 'disabled' && a.id !== me)
      .map((a) => el('option', { value: a.id, text: `${a.name} (${a.username})` })));
    $('staff-status').textContent = `${formatNumber(items.length)} account${items.length === 1 ? '' : 's'}.`;
  } catch (e) {
    showPageError(e.message);
  }
}

function row(a) {
  let status = a.status === 'locked' ? `locked until ${formatDate(a.locked_until)}` : a.status;
  if (a.must_change_password && a.status !== 'disabled') status += ', must choose a new password';
  return el('tr', {},
    el('td', { text: a.name }),
    el('td', { class: 'mono', text: a.username }),
    el('td', { text: a.role }),
    el('td', { text: status }),
    el('td', { text: a.last_sign_in_at ? formatDate(a.last_sign_in_at) : 'never' }),
    el('td', { text: formatNumber(a.sessions) }),
    el('td', {},
      a.status === 'disabled' ? null : el('button', {
        type: 'button', class: 'danger', 'aria-label': `Disable ${a.name}`,
        onclick: () => act('POST', `/v1/staff/${encodeURIComponent(a.id)}/disable`, `${a.name} is disabled and signed out.`),
      }, 'Disable'),
      ' ',
      a.sessions > 0 ? el('button', {
        type: 'button', class: 'secondary', 'aria-label': `Sign ${a.name} out everywhere`,
        onclick: () => act('DELETE', `/v1/staff/${encodeURIComponent(a.id)}/sessions`, `${a.name} is signed out everywhere.`),
      }, 'Sign out everywhere') : null));
}

async function act(method, path, done) {
  try {
    await api(method, path);
    announce(done);
    $('staff-status').textContent = done;
    await load();
  } catch (e) {
    showPageError(e.message);
  }
}

async function add(ev) {
  ev.preventDefault();
  const out = $('add-result');
  const body = {
    name: $('add-name').value.trim(), username: $('add-username').value.trim(),
    role: $('add-role').value, password: $('add-password').value,
  };
  try {
    const a = await api('POST', '/v1/staff', body);
    out.className = 'notice ok';
    out.textContent = `Added ${a.name} (${a.username}, ${a.role}). Give them the first password in person.`;
    ev.target.reset();
    await load();
  } catch (e) {
    out.className = 'notice error';
    out.textContent = e.message;
  }
  out.hidden = false;
  $('add-password').value = '';
}

async function reset(ev) {
  ev.preventDefault();
  const out = $('reset-result');
  const who = $('reset-who');
  const name = who.selectedOptions[0] ? who.selectedOptions[0].textContent : '';
  try {
    await api('POST', `/v1/staff/${encodeURIComponent(who.value)}/password`,
      { password: $('reset-password').value });
    out.className = 'notice ok';
    out.textContent = `${name} has a temporary password and is signed out everywhere. They choose their own when they next sign in.`;
    await load();
  } catch (e) {
    out.className = 'notice error';
    out.textContent = e.message;
  }
  out.hidden = false;
  $('reset-password').value = '';
}

async function main() {
  const s = await startPage(null);
  const admin = s.staff.role === 'admin';
  $('admin-only').hidden = !admin;
  $('not-admin').hidden = admin;
  if (admin) {
    $('add-form').addEventListener('submit', add);
    $('reset-form').addEventListener('submit', reset);
    await load();
  }
  document.body.dataset.ready = 'true';
}

main().catch((e) => { if (e && e.status !== 401) showPageError(e.message || String(e)); });
