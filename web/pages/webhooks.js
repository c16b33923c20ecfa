// Webhooks (admin): subscriptions with their health, adding one (its secret shown
// once), a test event, and the delivery log with re-delivery.

import { get, post, del, query } from '../api.js';
import { h, keepFresh, heading, field, alertBox, showAlert, confirmDialog, secretsDialog, formatDate, dataTable } from '../ui.js';

const STATUS = { pending: 'Waiting', delivered: 'Delivered', failed: 'Failed' };
/** How often health and the log are read again while the page is open. */
const REFRESH_MS = 3000;

function healthBadge(s) {
  if (!s.enabled) return h('span', { class: 'badge' }, 'Disabled');
  return s.health.healthy
    ? h('span', { class: 'badge ok' }, 'Healthy')
    : h('span', { class: 'badge bad' }, 'Failing');
}

export async function render(page, { isCurrent }) {
  const container = h('div', { class: 'sections' });
  page.append(container);
  const box = alertBox();
  const list = h('tbody');
  const log = h('tbody');
  const logTitle = h('h2', { id: 'wh-log' }, 'Deliveries');
  const logSection = h('section', { class: 'card', 'aria-labelledby': 'wh-log', hidden: true }, logTitle,
    dataTable('Deliveries', ['Event', 'Status', 'Attempts', 'Last answer', 'Next try', ''], log));

  const url = field({ label: 'Receiver URL', name: 'url', type: 'url', placeholder: 'https://crm.example.com/webhooks/pbx', required: true });
  const events = field({ label: 'Events', name: 'events', value: '*', hint: 'Names or wildcards, separated by commas: call.*, hot_desk.login, *' });
  const form = h('form', { class: 'inline-form', novalidate: true }, url, events,
    h('button', { type: 'submit', class: 'btn primary' }, 'Add subscription'));

  container.append(
    heading('Webhooks'),
    box,
    h('section', { class: 'card', 'aria-labelledby': 'wh-subs' },
      h('h2', { id: 'wh-subs' }, 'Subscriptions'),
      dataTable('Subscriptions', ['Receiver', 'Events', 'Source', 'Health', 'Waiting', 'Failed', ''], list),
      form),
    logSection);

  let shown = null;

  async function showLog(sub) {
    shown = sub;
    const { items } = await get(`/webhooks/${encodeURIComponent(sub.id)}/deliveries${query({ limit: 50 })}`);
    if (!isCurrent()) return;
    logTitle.textContent = `Deliveries to ${sub.url}`;
    logSection.hidden = false;
    log.replaceChildren(...(items.length ? items.map((d) => {
      const again = d.status === 'pending' ? null
        : h('button', { type: 'button', class: 'btn secondary small', 'aria-label': `Deliver ${d.event_type} again` }, 'Deliver again');
      again?.addEventListener('click', async () => {
        try {
          await post(`/webhooks/deliveries/${encodeURIComponent(d.id)}/retry`, {});
          await refresh();
        } catch (err) {
          showAlert(box, err.message);
        }
      });
      return h('tr', {},
        h('td', {}, d.event_type),
        h('td', {}, STATUS[d.status] || d.status),
        h('td', {}, String(d.attempts)),
        h('td', {}, d.last_status_code ? `HTTP ${d.last_status_code}` : (d.last_error || '—')),
        h('td', {}, d.next_attempt_at ? formatDate(d.next_attempt_at) : '—'),
        h('td', {}, again));
    }) : [h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No deliveries yet.'))]));
  }

  function row(s) {
    const actions = h('div', { class: 'actions' });
    const deliveries = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': `Deliveries to ${s.url}` }, 'Deliveries');
    deliveries.addEventListener('click', () => showLog(s).catch((err) => showAlert(box, err.message)));
    const test = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': `Send a test event to ${s.url}` }, 'Test');
    test.addEventListener('click', async () => {
      try {
        await post(`/webhooks/${encodeURIComponent(s.id)}/test`, {});
        showAlert(box, '');
        setTimeout(() => refresh().catch(() => {}), 1000);
      } catch (err) {
        showAlert(box, err.message);
      }
    });
    actions.append(deliveries, test);
    if (s.source === 'api') {
      const remove = h('button', { type: 'button', class: 'btn danger small', 'aria-label': `Delete the subscription of ${s.url}` }, 'Delete');
      remove.addEventListener('click', async () => {
        const ok = await confirmDialog({ title: 'Delete this subscription?', message: `${s.url} will receive no more events; its delivery log goes too.`, confirmLabel: 'Delete', danger: true });
        if (!ok) return;
        try {
          await del(`/webhooks/${encodeURIComponent(s.id)}`);
          if (shown?.id === s.id) logSection.hidden = true;
          await refresh();
        } catch (err) {
          showAlert(box, err.message);
        }
      });
      actions.append(remove);
    }
    const problem = s.health.healthy ? null
      : h('div', { class: 'hint' }, s.health.last_status_code ? `Last answer: HTTP ${s.health.last_status_code}` : (s.health.last_error || 'Deliveries failed'));
    return h('tr', {},
      h('td', { class: 'break' }, s.url, problem),
      h('td', {}, s.events.join(', ')),
      h('td', {}, s.source === 'config' ? 'config.yml' : 'API'),
      h('td', {}, healthBadge(s)),
      h('td', {}, String(s.health.pending)),
      h('td', {}, String(s.health.failed)),
      h('td', {}, actions));
  }

  async function refresh() {
    const { items } = await get('/webhooks');
    if (!isCurrent()) return;
    list.replaceChildren(...(items.length ? items.map(row)
      : [h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No subscriptions. Add one below or in config.yml.'))]));
    if (shown) {
      const still = items.find((s) => s.id === shown.id);
      if (still) await showLog(still);
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const patterns = events.input.value.split(',').map((p) => p.trim()).filter(Boolean);
    try {
      const created = await post('/webhooks', { url: url.input.value.trim(), events: patterns });
      showAlert(box, '');
      form.reset();
      events.input.value = '*';
      await secretsDialog({
        title: 'Subscription added',
        intro: 'The receiver checks each request with this secret (Standard Webhooks). Copy it now: it is shown only this once.',
        items: [{ label: 'Signing secret', value: created.secret }],
      });
      await refresh();
    } catch (err) {
      showAlert(box, err.field ? `${err.field}: ${err.message}` : err.message);
    }
  });

  await keepFresh(page, isCurrent, box, refresh, REFRESH_MS);
}
