// The extension list: search, filters, paging.

import { get, query } from '../api.js';
import { h, heading, field, selectField, alertBox, showAlert, extensionPath } from '../ui.js';

const LIMIT = 50;

function flags(x) {
  const out = [];
  if (x.allow_external) out.push('External calls');
  if (x.voicemail_enabled) out.push('Voicemail');
  if (x.call_forwarding) out.push(`Forward → ${x.call_forwarding.target}`);
  if (x.do_not_disturb) out.push('DND');
  if (x.ad_synced) out.push('AD');
  if (x.must_change_password) out.push('Password change due');
  return h('div', { class: 'flags' }, out.map((f) => h('span', { class: 'badge' }, f)));
}

function row(x) {
  return h('tr', { class: x.active ? null : 'inactive' },
    h('td', {}, h('a', { href: `#${extensionPath(x.number)}` }, x.number)),
    h('td', {}, x.name),
    h('td', {}, x.role === 'admin' ? 'Admin' : x.role === 'user' ? 'User' : x.role),
    h('td', {}, x.email || '—'),
    h('td', {}, x.active ? 'Yes' : 'No'),
    h('td', { class: 'flags-cell' }, flags(x)));
}

export async function render(container, { query: q, isCurrent }) {
  const state = {
    search: q.search || '',
    role: q.role || '',
    active: q.active || '',
    offset: Math.max(0, Number.parseInt(q.offset, 10) || 0),
  };
  const search = field({ label: 'Search', name: 'search', type: 'search', value: state.search, placeholder: 'Number, name or e-mail' });
  const role = selectField({ label: 'Role', name: 'role', value: state.role, options: [['', 'All roles'], ['admin', 'Admins'], ['user', 'Users']] });
  const active = selectField({ label: 'Status', name: 'active', value: state.active, options: [['', 'All'], ['true', 'Active'], ['false', 'Inactive']] });
  const filters = h('form', { class: 'toolbar', role: 'search' }, search, role, active);
  const box = alertBox();
  const tbody = h('tbody');
  const table = h('table', { class: 'data' },
    h('caption', { class: 'visually-hidden' }, 'Extensions'),
    h('thead', {}, h('tr', {}, ['Number', 'Name', 'Role', 'E-mail', 'Active', 'Flags'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  const summary = h('p', { class: 'pager-summary', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', class: 'btn secondary' }, 'Previous');
  const next = h('button', { type: 'button', class: 'btn secondary' }, 'Next');

  container.append(
    h('div', { class: 'page-head' }, heading('Extensions'), h('a', { href: '#/extensions/new', class: 'btn primary' }, 'New extension')),
    filters, box,
    h('div', { class: 'table-wrap' }, table),
    h('div', { class: 'pager' }, summary, h('div', { class: 'actions' }, prev, next)));

  let loadSeq = 0;
  async function load() {
    const mine = ++loadSeq;
    history.replaceState(null, '', `#/extensions${query({ search: state.search, role: state.role, active: state.active, offset: state.offset || '' })}`);
    table.setAttribute('aria-busy', 'true');
    let page;
    try {
      page = await get(`/extensions${query({ limit: LIMIT, offset: state.offset, search: state.search, role: state.role, active: state.active })}`);
    } catch (err) {
      if (mine === loadSeq && isCurrent()) showAlert(box, err.message);
      return;
    } finally {
      if (mine === loadSeq) table.removeAttribute('aria-busy');
    }
    if (mine !== loadSeq || !isCurrent()) return;
    showAlert(box, '');
    if (page.items.length === 0 && state.offset > 0 && page.total > 0) {
      state.offset = Math.max(0, Math.floor((page.total - 1) / LIMIT) * LIMIT);
      return load();
    }
    tbody.replaceChildren(...(page.items.length
      ? page.items.map(row)
      : [h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No extensions match.'))]));
    const first = page.items.length ? page.offset + 1 : 0;
    const last = page.offset + page.items.length;
    summary.textContent = `Showing ${first}–${last} of ${page.total}`;
    prev.disabled = page.offset === 0;
    next.disabled = last >= page.total;
  }

  let timer;
  search.input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.search = search.input.value.trim();
      state.offset = 0;
      load();
    }, 250);
  });
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearTimeout(timer);
    state.search = search.input.value.trim();
    state.offset = 0;
    load();
  });
  for (const [sel, key] of [[role, 'role'], [active, 'active']]) {
    sel.input.addEventListener('change', () => {
      state[key] = sel.input.value;
      state.offset = 0;
      load();
    });
  }
  prev.addEventListener('click', () => {
    state.offset = Math.max(0, state.offset - LIMIT);
    load();
  });
  next.addEventListener('click', () => {
    state.offset += LIMIT;
    load();
  });

  await load();
}
