// The dashboard's shell: sign-in, the header (health of nornd's
// components, connection state), and a router over location.hash:
//   #/                       apps overview
//   #/apps/APP               one app
//   #/deployments/ID         one deployment, live
//   #/deployments/ID/replay  its replay
import { api, clearToken, getToken, setToken, setUnauthorizedHandler } from './api.js';
import { Stream } from './stream.js';
import { clear, h, setTitle } from './ui.js';
import { overviewView } from './overview.js';
import { appView } from './app-view.js';
import { deploymentView } from './deployment-view.js';

const main = document.getElementById('main');
const conn = document.getElementById('conn');
const healthList = document.getElementById('health');
const signout = document.getElementById('signout');

let stream = null;
let view = null;
let healthTimer = null;

function signIn(message) {
  if (view) view.destroy();
  view = null;
  if (stream) stream.close();
  stream = null;
  clearInterval(healthTimer);
  clear(healthList);
  conn.textContent = '';
  conn.className = 'conn';
  signout.hidden = true;
  setTitle('Sign in');

  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
    required: true, 'aria-describedby': 'token-help' + (message ? ' signin-error' : ''),
  });
  const form = h('form', { class: 'card signin', onsubmit: (e) => { e.preventDefault(); tryToken(input.value.trim(), form); } },
    h('h1', { tabindex: '-1' }, 'Sign in to Norn'),
    message ? h('p', { id: 'signin-error', class: 'error', role: 'alert' }, message) : null,
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { id: 'token-help', class: 'muted' },
      'The token nornd was started with (NORN_API_TOKEN). It is kept for this browser session only.'),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  clear(main, form);
  input.focus();
}

async function tryToken(token, form) {
  if (!token) return;
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    await api('/api/apps', { token });
    setToken(token);
    start();
  } catch (e) {
    let message;
    if (e.status === 401) message = 'Wrong token: nornd did not accept it (401 Unauthorized). Check NORN_API_TOKEN on the server.';
    else if (e.status === 403) message = `nornd refused the browser (403): ${e.message}`;
    else message = `Cannot sign in: ${e.message}`;
    signIn(message);
  }
}

function setConn(state) {
  conn.className = `conn ${state}`;
  if (state === 'disconnected') conn.textContent = 'Disconnected from nornd — reconnecting… Updates resume where they stopped.';
  else if (state === 'connecting') conn.textContent = 'Connecting to nornd…';
  else conn.textContent = '';
  document.body.dataset.conn = state;
}

async function refreshHealth() {
  try {
    renderHealth(await api('/api/health'));
  } catch (e) {
    // A degraded nornd answers 503 with the components.
    if (e.data && e.data.components) renderHealth(e.data);
    else clear(healthList, h('li', { class: 'down' }, 'health unknown'));
  }
}

function renderHealth(hl) {
  const items = Object.entries(hl.components || {}).map(([name, c]) =>
    h('li', { class: c.status === 'up' ? 'up' : 'down', title: c.detail || '' },
      h('span', { 'aria-hidden': 'true' }, c.status === 'up' ? '●' : '▲'), ` ${name} ${c.status}`));
  clear(healthList, items);
}

function route() {
  if (!getToken()) return signIn();
  const path = location.hash.replace(/^#/, '') || '/';
  let m;
  if (view) view.destroy();
  view = null;
  const ctx = { stream, main, refreshHealth };
  if (path === '/') view = overviewView(ctx);
  else if ((m = path.match(/^\/apps\/([a-z0-9][a-z0-9-]*)$/))) view = appView(ctx, m[1]);
  else if ((m = path.match(/^\/deployments\/(\d+)(\/replay)?$/))) view = deploymentView(ctx, Number(m[1]), !!m[2]);
  else {
    setTitle('Not found');
    clear(main, h('h1', { tabindex: '-1' }, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the apps')));
  }
}

function start() {
  signout.hidden = false;
  stream = new Stream(getToken());
  stream.on('state', setConn);
  stream.on('unauthorized', () => { clearToken(); signIn('nornd closed the live connection: the token is no longer accepted.'); });
  setConn('connecting');
  refreshHealth();
  clearInterval(healthTimer);
  healthTimer = setInterval(refreshHealth, 15000);
  route();
}

setUnauthorizedHandler(() => {
  clearToken();
  signIn('The token was refused (401 Unauthorized): sign in again.');
});
signout.addEventListener('click', () => {
  clearToken();
  signIn();
});
window.addEventListener('hashchange', () => {
  if (stream) route();
});

if (getToken()) start();
else signIn();
