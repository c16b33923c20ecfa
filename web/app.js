// The panel shell: hash router, route guards, header and flash message.

import { get, post, setAuthHandlers } from './api.js';
import { session, setFlash, takeFlash } from './state.js';
import { h, heading, extensionPath } from './ui.js';
import * as login from './pages/login.js';
import * as password from './pages/password.js';
import * as dashboard from './pages/dashboard.js';
import * as extensions from './pages/extensions.js';
import * as extensionNew from './pages/extension-new.js';
import * as extensionEdit from './pages/extension-edit.js';
import * as hotDesk from './pages/hot-desk.js';
import * as webhooks from './pages/webhooks.js';
import * as security from './pages/security.js';
import * as devices from './pages/devices.js';
import * as account from './pages/account.js';

// public: only when logged out; pending: allowed while a password change is due;
// enrolment: allowed while a second factor must be set up (the API allows these);
// admin: admins only (users are sent to their own extension or the dashboard).
const routes = [
  { path: /^\/login$/, page: login, public: true },
  { path: /^\/password$/, page: password, pending: true, enrolment: true },
  { path: /^\/account$/, page: account, enrolment: true, nav: 'account' },
  { path: /^\/dashboard$/, page: dashboard, nav: 'dashboard' },
  { path: /^\/extensions$/, page: extensions, admin: true, nav: 'extensions' },
  { path: /^\/extensions\/new$/, page: extensionNew, admin: true, nav: 'extensions' },
  { path: /^\/extensions\/([^/?]+)$/, page: extensionEdit, nav: 'extensions' },
  { path: /^\/hot-desk$/, page: hotDesk, admin: true, nav: 'hot-desk' },
  { path: /^\/webhooks$/, page: webhooks, admin: true, nav: 'webhooks' },
  { path: /^\/security$/, page: security, admin: true, nav: 'security' },
  { path: /^\/devices$/, page: devices, admin: true, nav: 'devices' },
];

const $ = (id) => document.getElementById(id);
let renderSeq = 0;

function currentRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs = ''] = raw.split('?');
  return { path, qs, query: Object.fromEntries(new URLSearchParams(qs)) };
}

/** Goes to a route (re-rendering when it is already the current one). */
export function navigate(path) {
  if (location.hash === `#${path}`) render();
  else location.hash = path;
}

async function loadMe() {
  try {
    session.me = await get('/auth/me', { handleAuth: false });
  } catch (err) {
    session.me = null;
    if (err.status !== 401) setFlash(err.message, 'error');
  }
  return session.me;
}

function homeFor(me) {
  if (!me) return '/login';
  if (me.must_change_password) return '/password';
  return me.mfa_enrollment_required ? '/account' : '/dashboard';
}

function updateShell(route, path) {
  const me = session.me;
  const inApp = Boolean(me) && !me.must_change_password && !me.mfa_enrollment_required;
  $('nav').hidden = !inApp;
  $('session').hidden = !me;
  $('nav-password').hidden = !inApp;
  if (me) $('whoami').textContent = `${me.extension ?? ''} · ${me.name}`.replace(/^ · /, '');
  const ext = $('nav-extensions');
  if (me && me.role !== 'admin') {
    ext.textContent = 'My extension';
    ext.href = `#${extensionPath(me.extension)}`;
  } else {
    ext.textContent = 'Extensions';
    ext.href = '#/extensions';
  }
  for (const id of ['nav-hot-desk', 'nav-webhooks', 'nav-security', 'nav-devices']) $(id).parentElement.hidden = !me || me.role !== 'admin';
  const links = [['dashboard', $('nav-dashboard')], ['extensions', ext], ['hot-desk', $('nav-hot-desk')],
    ['webhooks', $('nav-webhooks')], ['security', $('nav-security')], ['devices', $('nav-devices')], ['account', $('nav-account')]];
  for (const [key, el] of links) {
    const own = key !== 'extensions' || !me || me.role === 'admin' || path === extensionPath(me.extension);
    if (route?.nav === key && own) el.setAttribute('aria-current', 'page');
    else el.removeAttribute('aria-current');
  }
}

function showFlash() {
  const f = takeFlash();
  const el = $('flash');
  el.textContent = f ? f.text : '';
  el.className = f ? `flash ${f.kind}` : 'flash';
  el.hidden = !f;
}

function notFound(container) {
  container.append(heading('Page not found'),
    h('p', {}, 'There is no such page in the admin panel. ', h('a', { href: '#/dashboard' }, 'Go to the dashboard'), '.'));
}

async function render() {
  const seq = ++renderSeq;
  const { path, qs, query } = currentRoute();
  if (session.me === undefined) await loadMe();
  if (seq !== renderSeq) return;
  const me = session.me;

  if (path === '/' || path === '') return navigate(homeFor(me));
  let params = [];
  const route = routes.find((r) => {
    const m = r.path.exec(path);
    if (m) params = m.slice(1).map(decodeURIComponent);
    return m;
  });
  if (route && !route.public && !me) {
    session.returnTo = path + (qs ? `?${qs}` : '');
    return navigate('/login');
  }
  if (route?.public && me) return navigate(homeFor(me));
  if (me?.must_change_password && route && !route.pending) return navigate('/password');
  if (me?.mfa_enrollment_required && route && !route.enrolment) return navigate('/account');
  if (route?.admin && me && me.role !== 'admin') {
    return navigate(path === '/extensions' ? extensionPath(me.extension) : '/dashboard');
  }

  updateShell(route, path);
  showFlash();
  const container = h('div', { class: 'page' });
  $('page').replaceChildren(container);
  const ctx = { params, query, session, navigate, refreshMe: loadMe, isCurrent: () => seq === renderSeq };
  try {
    if (route) await route.page.render(container, ctx);
    else notFound(container);
  } catch (err) {
    if (seq !== renderSeq) return;
    container.append(h('div', { class: 'alert', role: 'alert' }, err.message || String(err)));
  }
  if (seq !== renderSeq) return;
  if (!container.contains(document.activeElement)) {
    const target = container.querySelector('[data-autofocus]') || container.querySelector('h1');
    target?.focus();
  }
}

setAuthHandlers({
  onUnauthenticated() {
    if (session.me) setFlash('Your session has ended. Please log in again.', 'error');
    session.me = null;
    const { path, qs } = currentRoute();
    if (path !== '/login') session.returnTo = path + (qs ? `?${qs}` : '');
    navigate('/login');
  },
  onPasswordChangeRequired() {
    if (session.me) session.me.must_change_password = true;
    navigate('/password');
  },
  onMfaEnrollmentRequired() {
    if (session.me) session.me.mfa_enrollment_required = true;
    navigate('/account');
  },
});

$('logout').addEventListener('click', async () => {
  try {
    await post('/auth/logout', undefined, { handleAuth: false });
  } catch {
    // Logged out already, or the server is gone: either way, back to the login page.
  }
  session.me = null;
  session.returnTo = null;
  setFlash('You have been logged out.', 'info');
  navigate('/login');
});

window.addEventListener('hashchange', render);
render();

