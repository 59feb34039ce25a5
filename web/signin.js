// The sign-in page: the password goes to the server once, in a request body; the server answers
// with an HttpOnly session cookie this script cannot read. After an administrator set a
// temporary password, the person chooses their own here before going on.
import { api, changePassword, session } from './common.js';

const form = document.getElementById('signin-form');
const error = document.getElementById('signin-error');
const change = document.getElementById('change-form');
const changeError = document.getElementById('change-error');
let temporary = '';

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    error.textContent = 'Enter your username and your password.';
    error.hidden = false;
    (username ? form.password : form.username).focus();
    return;
  }
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    session.current = await api('POST', '/console/session', { username, password });
    form.password.value = '';
    if (session.current.must_change_password) {
      // Kept in memory only until the new password is saved: it is the current one.
      temporary = password;
      form.parentElement.hidden = true;
      document.getElementById('change').hidden = false;
      document.getElementById('change-h').focus();
      return;
    }
    window.location.assign('/console/workspace');
  } catch (e) {
    error.textContent = e.problem && e.problem.detail
      ? `Not signed in: ${e.problem.detail}.` : e.message;
    error.hidden = false;
    form.password.value = '';
    form.password.focus();
  } finally {
    button.disabled = false;
  }
});

change.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  changeError.hidden = true;
  try {
    await changePassword(temporary, change['new-password'].value, change['new-again'].value);
    temporary = '';
    window.location.assign('/console/workspace');
  } catch (e) {
    changeError.textContent = e.message;
    changeError.hidden = false;
    change['new-password'].value = '';
    change['new-again'].value = '';
    change['new-password'].focus();
  }
});
