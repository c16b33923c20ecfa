// Hot-desking (admin): who is logged in where (live, with log out), the usage of the
// last week as charts (logins per day, peak hours), and the login history.

import { get, post, query } from '../api.js';
import { h, heading, field, alertBox, showAlert, confirmDialog, formatDate, formatDuration, dataTable } from '../ui.js';

/** How often the live sessions are read again while the page is open. */
const REFRESH_MS = 5000;
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/**
 * A bar chart of `bars` ({label, value}) as SVG, each bar titled with its figures, and
 * the same figures as a table for screen readers.
 */
function barChart(title, bars, { every = 1 } = {}) {
  const width = 640;
  const height = 160;
  const base = height - 20;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const step = width / Math.max(1, bars.length);
  // A lone day is a bar, not a wall.
  const barWidth = Math.max(1, Math.min(48, Math.round(step * 0.7)));
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': title });
  bars.forEach((b, i) => {
    const barHeight = Math.round((b.value / max) * (base - 10));
    const rect = svg('rect', {
      x: Math.round(i * step + (step - barWidth) / 2),
      y: base - barHeight,
      width: barWidth,
      height: barHeight,
      class: 'bar',
      'data-value': b.value,
    }, svg('title', {}, `${b.label}: ${b.value}`));
    chart.append(rect);
    if (i % every === 0) {
      const text = svg('text', { x: Math.round(i * step + step / 2), y: height - 5, class: 'axis', 'text-anchor': 'middle' });
      text.textContent = b.label;
      chart.append(text);
    }
  });
  const table = h('table', { class: 'visually-hidden' },
    h('caption', {}, title),
    h('tbody', {}, bars.map((b) => h('tr', {}, h('th', { scope: 'row' }, b.label), h('td', {}, String(b.value))))));
  return h('figure', { class: 'figure' }, h('figcaption', {}, title), chart, table);
}

function sessionRow(s, onLogout) {
  const button = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': `Log out ${s.extension} from ${s.device_id}` }, 'Log out');
  button.addEventListener('click', () => onLogout(s));
  return h('tr', {},
    h('td', {}, s.extension),
    h('td', {}, s.device_id),
    h('td', {}, s.ip_address || '—'),
    h('td', {}, formatDate(s.logged_in_at)),
    h('td', {}, formatDate(s.last_activity)),
    h('td', {}, button));
}

const REASONS = {
  user: 'By the user',
  admin: 'By an admin',
  auto_logout: 'Idle (auto-logout)',
  replaced: 'Replaced at the device',
  moved: 'Moved to another device',
};

function historyRow(e) {
  return h('tr', {},
    h('td', {}, e.extension),
    h('td', {}, e.device_id),
    h('td', {}, formatDate(e.logged_in_at)),
    h('td', {}, e.logged_out_at ? formatDate(e.logged_out_at) : 'Still logged in'),
    h('td', {}, e.logout_reason ? (REASONS[e.logout_reason] || e.logout_reason) : '—'),
    h('td', {}, e.duration_seconds == null ? '—' : formatDuration(e.duration_seconds)));
}

export async function render(page, { isCurrent }) {
  const container = h('div', { class: 'sections' });
  page.append(container);
  const box = alertBox();
  const live = h('tbody');
  const liveCount = h('p', { class: 'muted', 'aria-live': 'polite' });
  const usage = h('div', { class: 'stack' });
  const historyBody = h('tbody');
  const filter = field({ label: 'Extension', name: 'extension', type: 'search', placeholder: 'All extensions' });
  const filterForm = h('form', { class: 'toolbar', role: 'search' }, filter);

  container.append(
    heading('Hot-desking'),
    box,
    h('section', { class: 'card', 'aria-labelledby': 'hd-live' },
      h('h2', { id: 'hd-live' }, 'Logged in now'), liveCount,
      dataTable('Sessions', ['Extension', 'Device', 'Address', 'Logged in', 'Last activity', ''], live)),
    h('section', { class: 'card', 'aria-labelledby': 'hd-usage' },
      h('h2', { id: 'hd-usage' }, 'Last 7 days'), usage),
    h('section', { class: 'card', 'aria-labelledby': 'hd-history' },
      h('h2', { id: 'hd-history' }, 'History'), filterForm,
      dataTable('Login history', ['Extension', 'Device', 'Logged in', 'Logged out', 'Ended', 'Length'], historyBody)));

  async function loadSessions() {
    const { count, sessions } = await get('/hot-desk/sessions');
    if (!isCurrent()) return;
    liveCount.textContent = count === 1 ? '1 device in use.' : `${count} devices in use.`;
    live.replaceChildren(...(sessions.length
      ? sessions.map((s) => sessionRow(s, logOut))
      : [h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No one is logged in at a desk.'))]));
  }

  async function loadUsage() {
    const r = await get('/hot-desk/reports');
    if (!isCurrent()) return;
    const avg = r.average_session_seconds == null ? '—' : formatDuration(r.average_session_seconds);
    usage.replaceChildren(
      h('dl', { class: 'figures' },
        h('div', {}, h('dt', {}, 'Logins'), h('dd', {}, String(r.logins))),
        h('div', {}, h('dt', {}, 'Average session'), h('dd', {}, avg)),
        h('div', {}, h('dt', {}, 'Auto-logouts'), h('dd', {}, String(r.auto_logouts))),
        h('div', {}, h('dt', {}, 'Wrong PINs'), h('dd', {}, String(r.pin_failures)))),
      barChart('Logins per day', r.per_day.map((d) => ({ label: d.date.slice(5), value: d.logins }))),
      barChart('Logins by hour of the day', r.peak_hours.map((p) => ({ label: String(p.hour), value: p.logins })), { every: 3 }),
      r.most_used_devices.length
        ? h('p', {}, 'Most used: ', r.most_used_devices.map((d) => `${d.device_id} (${d.logins})`).join(', '))
        : null);
  }

  async function loadHistory() {
    const extension = filter.input.value.trim();
    const { items } = await get(`/hot-desk/history${query({ extension, limit: 100 })}`);
    if (!isCurrent()) return;
    historyBody.replaceChildren(...(items.length
      ? items.map(historyRow)
      : [h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No logins in the last 7 days.'))]));
  }

  async function loadAll() {
    try {
      await Promise.all([loadSessions(), loadUsage(), loadHistory()]);
      if (isCurrent()) showAlert(box, '');
    } catch (err) {
      if (isCurrent()) showAlert(box, err.message);
    }
  }

  async function logOut(s) {
    const ok = await confirmDialog({
      title: `Log out ${s.extension}?`,
      message: `Extension ${s.extension} will be logged out from ${s.device_id}; calls to it stop ringing there.`,
      confirmLabel: 'Log out',
      danger: true,
    });
    if (!ok) return;
    try {
      await post('/hot-desk/logout', { device_id: s.device_id });
    } catch (err) {
      showAlert(box, err.message);
    }
    await loadAll();
  }

  filterForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadHistory().catch((err) => showAlert(box, err.message));
  });

  await loadAll();
  const timer = setInterval(() => {
    if (!isCurrent() || !page.isConnected) {
      clearInterval(timer);
      return;
    }
    loadSessions().catch((err) => showAlert(box, err.message));
  }, REFRESH_MS);
}
