// Devices (admin): enrolment tokens to hand out (create, revoke), and the enrolled
// devices with their live status, linked extension and the registered phone with the
// same MAC. Read again every few seconds while open.

import { get, post, del } from '../api.js';
import { h, keepFresh, heading, field, alertBox, showAlert, showError, confirmDialog, formatDate, dataTable, secretsDialog } from '../ui.js';

const REFRESH_MS = 5000;

const empty = (cols, text) => h('tr', {}, h('td', { colspan: cols, class: 'empty' }, text));

export async function render(page, { isCurrent }) {
  const box = alertBox();
  const tokens = h('tbody');
  const devices = h('tbody');
  const note = field({ label: 'Note', name: 'note', placeholder: 'Lobby door phone', autocomplete: 'off' });
  const extension = field({ label: 'Extension (optional)', name: 'extension', autocomplete: 'off', hint: 'The extension the device belongs to.' });
  const days = field({ label: 'Valid for (days)', name: 'days', type: 'number', min: '1', max: '365', value: '7' });
  const tokenForm = h('form', { class: 'inline-form', novalidate: true }, note, extension, days,
    h('button', { type: 'submit', class: 'btn primary' }, 'Create token'));

  page.append(
    heading('Devices'),
    box,
    h('section', { class: 'card', 'aria-labelledby': 'dev-tokens' },
      h('h2', { id: 'dev-tokens' }, 'Enrolment tokens'),
      h('p', { class: 'muted' }, 'A device enrols once with a token: switchboard device register --server URL --token CODE. Each token works once.'),
      dataTable('Enrolment tokens', ['Token', 'Note', 'Extension', 'Expires', ''], tokens),
      tokenForm),
    h('section', { class: 'card', 'aria-labelledby': 'dev-list' },
      h('h2', { id: 'dev-list' }, 'Enrolled devices'),
      dataTable('Enrolled devices', ['Device', 'Status', 'Last seen', 'Address', 'MAC', 'Extension', 'Registered phone', ''], devices)));

  async function refresh() {
    const [open, enrolled, phones] = await Promise.all([
      get('/devices/tokens'), get('/devices'), get('/registered-phones'),
    ]);
    if (!isCurrent()) return;
    tokens.replaceChildren(...(open.items.length
      ? open.items.map((t) => {
        const revoke = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': `Revoke token ${t.token_code}` }, 'Revoke');
        revoke.addEventListener('click', () => act(`Revoke token ${t.token_code}?`, 'It can no longer enrol a device.', 'Revoke',
          () => del(`/devices/tokens/${encodeURIComponent(t.token_code)}`)));
        return h('tr', {}, h('td', { class: 'code' }, t.token_code), h('td', { class: 'break' }, t.note || '—'),
          h('td', {}, t.extension || '—'), h('td', {}, formatDate(t.expires_at)), h('td', {}, revoke));
      })
      : [empty(5, 'No unused tokens.')]));
    const phoneByMac = new Map((Array.isArray(phones) ? phones : []).filter((p) => p.mac_address)
      .map((p) => [p.mac_address.toLowerCase().replace(/[^0-9a-f]/g, ''), p]));
    devices.replaceChildren(...(enrolled.items.length
      ? enrolled.items.map((d) => {
        const phone = d.mac && phoneByMac.get(d.mac.replace(/:/g, ''));
        const remove = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': `Unregister ${d.device_key}` }, 'Unregister');
        remove.addEventListener('click', () => act(`Unregister ${d.device_key}?`, 'Its secret stops working; it must enrol again with a new token.', 'Unregister',
          () => del(`/devices/${encodeURIComponent(d.device_key)}`)));
        return h('tr', {},
          h('td', { class: 'break' }, d.device_key, d.hostname ? h('div', { class: 'muted' }, d.hostname) : null),
          h('td', {}, h('span', { class: d.status === 'online' ? 'badge ok' : 'badge bad' }, d.status === 'online' ? 'Online' : 'Offline')),
          h('td', {}, d.last_seen ? formatDate(d.last_seen) : 'Never'),
          h('td', {}, d.ip_address || '—'), h('td', { class: 'code' }, d.mac || '—'),
          h('td', {}, d.extension || '—'),
          h('td', {}, phone ? `${phone.extension_number} (${phone.user_agent || 'phone'})` : '—'),
          h('td', {}, remove));
      })
      : [empty(8, 'No device has enrolled yet.')]));
  }

  async function act(title, message, confirmLabel, request) {
    if (!(await confirmDialog({ title, message, confirmLabel, danger: true }))) return;
    try {
      await request();
      await refresh();
    } catch (err) {
      showAlert(box, err.message);
    }
  }

  tokenForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { note: note.input.value.trim() || undefined, extension: extension.input.value.trim() || undefined };
    const d = Number(days.input.value);
    if (d) body.expires_in = Math.round(d * 86400);
    let created;
    try {
      created = await post('/devices/tokens', body);
    } catch (err) {
      showError(tokenForm, box, err);
      return;
    }
    tokenForm.reset();
    showAlert(box, '');
    await secretsDialog({
      title: 'Enrolment token',
      intro: `Give this code to the device (valid until ${formatDate(created.expires_at)}, once).`,
      items: [{ label: 'Token', value: created.token_code }],
    });
    await refresh();
  });

  await keepFresh(page, isCurrent, box, refresh, REFRESH_MS);
}
