// The sign-in page: the password goes to the server once, in a request body; the server answers
// with an HttpOnly session cookie this script cannot read.
import { api } from './common.js';

const form = document.getElementById('signin-form');
const error = document.getElementById('signin-error');

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
    await api('POST', '/console/session', { username, password });
    form.password.value = '';
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
