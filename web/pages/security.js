// Security (admin): threat detection's view: the worst addresses of the last day with
// their scores, the blocks in force (unblock, or block an address or range), an address
// check, and the latest threat events.

import { get, post, query } from '../api.js';
import { h, keepFresh, heading, field, alertBox, showAlert, confirmDialog, formatDate, dataTable } from '../ui.js';

/** How often the page is read again while open. */
const REFRESH_MS = 5000;

const KINDS = {
  failed_auth: 'Failed authentication',
  unknown_extension: 'Unknown extension',
  scanner: 'Scanner',
  sql_injection: 'SQL injection',
  path_traversal: 'Path traversal',
  flood: 'Flood',
};

const empty = (cols, text) => h('tr', {}, h('td', { colspan: cols, class: 'empty' }, text));

export async function render(page, { isCurrent }) {
  const container = h('div', { class: 'sections' });
  page.append(container);
  const box = alertBox();
  const figures = h('dl', { class: 'figures' });
  const offenders = h('tbody');
  const blocks = h('tbody');
  const events = h('tbody');

  const ip = field({ label: 'Address or range', name: 'ip', placeholder: '192.0.2.7 or 198.51.100.0/24', required: true });
  const reason = field({ label: 'Reason', name: 'reason', required: true });
  const hours = field({ label: 'Hours (empty: until unblocked)', name: 'hours', type: 'number', min: '1' });
  const blockForm = h('form', { class: 'inline-form', novalidate: true }, ip, reason, hours,
    h('button', { type: 'submit', class: 'btn danger' }, 'Block'));

  const probe = field({ label: 'Check an address', name: 'check', placeholder: '203.0.113.9' });
  const probeResult = h('p', { 'aria-live': 'polite' });
  const probeForm = h('form', { class: 'inline-form', role: 'search' }, probe,
    h('button', { type: 'submit', class: 'btn secondary' }, 'Check'));

  container.append(
    heading('Security'),
    box,
    h('section', { class: 'card', 'aria-labelledby': 'sec-day' },
      h('h2', { id: 'sec-day' }, 'Last 24 hours'), figures,
      dataTable('Top offenders', ['Address', 'Threat score', 'Events', 'Blocked'], offenders)),
    h('section', { class: 'card', 'aria-labelledby': 'sec-blocks' },
      h('h2', { id: 'sec-blocks' }, 'Blocked'),
      dataTable('Blocked addresses', ['Address', 'Reason', 'By', 'Since', 'Until', ''], blocks),
      blockForm),
    h('section', { class: 'card', 'aria-labelledby': 'sec-check' },
      h('h2', { id: 'sec-check' }, 'Check'), probeForm, probeResult),
    h('section', { class: 'card', 'aria-labelledby': 'sec-events' },
      h('h2', { id: 'sec-events' }, 'Latest threats'),
      dataTable('Threat events', ['When', 'Address', 'What', 'Detail', 'Score'], events)));

  async function refresh() {
    const [summary, blocked, latest] = await Promise.all([
      get('/security/threat-summary?hours=24'),
      get('/security/blocked'),
      get(`/security/events${query({ hours: 24, limit: 50 })}`),
    ]);
    if (!isCurrent()) return;
    const byType = Object.entries(summary.events_by_type);
    figures.replaceChildren(
      h('div', {}, h('dt', {}, 'Blocked now'), h('dd', {}, String(summary.blocked_count))),
      ...byType.map(([k, n]) => h('div', {}, h('dt', {}, KINDS[k] || k), h('dd', {}, String(n)))));
    offenders.replaceChildren(...(summary.top_offenders.length
      ? summary.top_offenders.map((o) => h('tr', {},
        h('td', {}, o.ip), h('td', {}, String(o.threat_score)), h('td', {}, String(o.events)),
        h('td', {}, o.blocked ? 'Yes' : 'No')))
      : [empty(4, 'No threats in the last 24 hours.')]));
    blocks.replaceChildren(...(blocked.items.length
      ? blocked.items.map((b) => {
        const lift = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': `Unblock ${b.ip}` }, 'Unblock');
        lift.addEventListener('click', () => unblock(b.ip));
        return h('tr', {},
          h('td', {}, b.ip), h('td', { class: 'break' }, b.reason),
          h('td', {}, b.source === 'auto' ? 'Threat detection' : 'An admin'),
          h('td', {}, formatDate(b.blocked_at)),
          h('td', {}, b.blocked_until ? formatDate(b.blocked_until) : 'Until unblocked'),
          h('td', {}, lift));
      })
      : [empty(6, 'No address is blocked.')]));
    events.replaceChildren(...(latest.items.length
      ? latest.items.map((e) => h('tr', {},
        h('td', {}, formatDate(e.occurred_at)), h('td', {}, e.ip),
        h('td', {}, `${KINDS[e.kind] || e.kind} (${e.protocol.toUpperCase()})`),
        h('td', { class: 'break' }, e.detail), h('td', {}, String(e.score))))
      : [empty(5, 'No threat events.')]));
  }

  async function unblock(address) {
    const ok = await confirmDialog({ title: `Unblock ${address}?`, message: 'Its requests will be answered again.', confirmLabel: 'Unblock' });
    if (!ok) return;
    try {
      await post('/security/unblock-ip', { ip: address });
      await refresh();
    } catch (err) {
      showAlert(box, err.message);
    }
  }

  blockForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const h24 = hours.input.value.trim();
    const body = { ip: ip.input.value.trim(), reason: reason.input.value.trim() };
    body.duration_seconds = h24 ? Number(h24) * 3600 : 0;
    try {
      await post('/security/block-ip', body);
      blockForm.reset();
      showAlert(box, '');
      await refresh();
    } catch (err) {
      showAlert(box, err.field ? `${err.field}: ${err.message}` : err.message);
    }
  });

  probeForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const c = await get(`/security/check-ip/${encodeURIComponent(probe.input.value.trim())}`);
      probeResult.textContent = c.blocked
        ? `${c.ip} is blocked ${c.blocked_until ? `until ${formatDate(c.blocked_until)}` : 'until unblocked'} (${c.reason}); threat score ${c.threat_score}.`
        : `${c.ip} is not blocked; threat score ${c.threat_score}.`;
    } catch (err) {
      probeResult.textContent = err.message;
    }
  });

  await keepFresh(page, isCurrent, box, refresh, REFRESH_MS);
}
