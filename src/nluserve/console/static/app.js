// Entry point: language, login/logout, and hash routing between the three views.

import * as admin from './admin.js';
import { call, endsSession, session } from './api.js';
import { describe } from './errors.js';
import { applyI18n, lang, setLang, t } from './i18n.js';
import * as playground from './playground.js';
import * as usage from './usage.js';

const VIEWS = { playground, usage, admin };
const DEFAULT_VIEW = 'playground';
// Views that need tenancy: not shown when the server runs without authentication.
const TENANCY_VIEWS = new Set(['usage', 'admin']);

const $ = (id) => document.getElementById(id);

function showOnly(id) {
  for (const section of document.querySelectorAll('main > .view')) {
    section.hidden = section.id !== id;
  }
}

function loginMessage(text) {
  const message = $('login-message');
  message.textContent = text || '';
  message.hidden = !text;
}

function showLogin(reason) {
  $('nav').hidden = true;
  $('logout').hidden = true;
  // Nothing a previous key could see stays in the page, not even hidden.
  for (const view of Object.values(VIEWS)) view.reset();
  showOnly('view-login');
  if (reason !== undefined) loginMessage(reason);
  $('login-key').focus();
}

function currentView() {
  const match = /^#\/(\w+)/.exec(window.location.hash);
  return match && match[1] in VIEWS ? match[1] : DEFAULT_VIEW;
}

async function route() {
  const open = session.open();
  if (!open && !session.key()) {
    showLogin();
    return;
  }
  let name = currentView();
  if (open && TENANCY_VIEWS.has(name)) {
    name = DEFAULT_VIEW;
    window.history.replaceState(null, '', `#/${name}`);
  }
  $('nav').hidden = false;
  $('logout').hidden = open;
  $('auth-off').hidden = !open;
  for (const link of document.querySelectorAll('#nav a')) {
    link.parentElement.hidden = open && TENANCY_VIEWS.has(link.dataset.view);
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  showOnly(`view-${name}`);
  await VIEWS[name].enter();
  // A hidden view cannot take focus; move it to the new heading for screen readers.
  if ((open || session.key()) && currentView() === name) $(`${name}-title`)?.focus({ preventScroll: true });
}

async function login(event) {
  event.preventDefault();
  const input = $('login-key');
  const key = input.value.trim();
  if (!key) {
    loginMessage(t('login.empty'));
    input.focus();
    return;
  }
  // Keys and tokens are printable ASCII. Anything else (a pasted full-width character, an
  // invisible space) cannot travel in a header: fetch() would throw, reading as a network error.
  if (/[^\x21-\x7e]/.test(key)) {
    loginMessage(t('login.notAKey'));
    input.select();
    input.focus();
    return;
  }
  const button = event.target.querySelector('button[type=submit]');
  button.disabled = true;
  loginMessage('');
  $('status').textContent = t('login.checking');
  try {
    // Any authenticated read proves the key; GET /v1/models costs no quota.
    await call('GET', '/v1/models', { key });
  } catch (err) {
    let text = describe(err);
    if (err.status === 401) text = t('login.wrong');
    else if (endsSession(err)) text = t('login.disabled');
    loginMessage(text);
    input.select();
    input.focus();
    return;
  } finally {
    button.disabled = false;
    $('status').textContent = '';
  }
  session.set(key);
  input.value = '';
  loginMessage('');
  if (!window.location.hash.startsWith('#/')) window.location.hash = `#/${DEFAULT_VIEW}`;
  await route();
}

async function start() {
  const picker = $('lang');
  picker.value = lang();
  picker.addEventListener('change', () => setLang(picker.value));
  applyI18n();
  for (const [name, view] of Object.entries(VIEWS)) view.init($(`view-${name}`));
  $('login-form').addEventListener('submit', login);
  // The skip link moves focus without following href="#main": the URL keeps the view's route,
  // so a reload, a bookmark or Back still opens the same view.
  document.querySelector('a.skip').addEventListener('click', (event) => {
    event.preventDefault();
    $('main').focus();
  });
  $('logout').addEventListener('click', () => {
    session.clear();
    showLogin(t('login.loggedOut'));
  });
  window.addEventListener('nluserve:logout', (event) => {
    const err = event.detail;
    showLogin(err.status === 401 ? t('logout.unauthorized') : t('logout.disabled'));
  });
  window.addEventListener('hashchange', () => {
    if (window.location.hash.startsWith('#/')) route();
  });
  await session.probeOpen();
  route();
}

start();
