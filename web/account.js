// Your account: who you are signed in as, and changing your own password.
import { changePassword, formatDate, formatNumber, showPageError, startPage } from './common.js';

const $ = (id) => document.getElementById(id);

async function submit(ev) {
  ev.preventDefault();
  const out = $('pw-result');
  const fields = [$('pw-current'), $('pw-new'), $('pw-again')];
  try {
    const ended = await changePassword(...fields.map((f) => f.value));
    out.className = 'notice ok';
    out.textContent = ended
      ? `Your password is changed; ${formatNumber(ended)} other session${ended === 1 ? '' : 's'} ended.`
      : 'Your password is changed.';
  } catch (e) {
    out.className = 'notice error';
    out.textContent = e.message;
  }
  for (const f of fields) f.value = '';
  out.hidden = false;
}

async function main() {
  const s = await startPage(null);
  $('me-name').textContent = s.staff.name;
  $('me-username').textContent = s.staff.username;
  $('pw-username').value = s.staff.username;
  $('me-role').textContent = s.staff.role;
  $('me-expires').textContent = formatDate(s.expires_at);
  $('password-form').addEventListener('submit', submit);
  document.body.dataset.ready = 'true';
}

main().catch((e) => { if (e && e.status !== 401) showPageError(e.message || String(e)); });
