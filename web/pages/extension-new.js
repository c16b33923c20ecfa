// Create an extension; generated credentials are shown once.

import { post } from '../api.js';
import { setFlash } from '../state.js';
import { h, heading, field, selectField, checkField, alertBox, showError, clearErrors, busy, secretsDialog } from '../ui.js';

const CREDENTIAL_LABELS = [
  ['password', 'Web password'],
  ['sip_secret', 'SIP secret'],
  ['voicemail_pin', 'Voicemail PIN'],
];

export function render(container, { navigate }) {
  const number = field({
    label: 'Number', name: 'number', required: true, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none',
    hint: 'Digits (2001) or lowercase letters, digits and “-” (webrtc-lobby), at most 32 characters.',
  });
  number.input.dataset.autofocus = '';
  const name = field({ label: 'Name', name: 'name', required: true, autocomplete: 'off' });
  const email = field({ label: 'E-mail', name: 'email', type: 'email', autocomplete: 'off', hint: 'Optional; voicemail notifications go here.' });
  const role = selectField({ label: 'Role', name: 'role', value: 'user', options: [['user', 'User'], ['admin', 'Administrator']] });
  const external = checkField({ label: 'Allow external calls', name: 'allow_external' });
  const voicemail = checkField({ label: 'Voicemail enabled', name: 'voicemail_enabled', checked: true });
  const password = field({ label: 'Web password', name: 'password', type: 'password', autocomplete: 'new-password', hint: 'At least 10 characters. Leave empty to generate one (then a change is required at first login).' });
  const sip = field({ label: 'SIP secret', name: 'sip_secret', type: 'password', autocomplete: 'new-password', hint: 'At least 8 characters. Leave empty to generate one.' });
  const pin = field({ label: 'Voicemail PIN', name: 'voicemail_pin', inputmode: 'numeric', autocomplete: 'off', hint: '4–12 digits. Leave empty to generate one.' });
  const box = alertBox();

  const form = h('form', { class: 'card form', novalidate: true },
    h('fieldset', {}, h('legend', {}, 'Extension'), number, name, email, role, external, voicemail),
    h('fieldset', {}, h('legend', {}, 'Credentials (leave empty to generate)'), password, sip, pin),
    box,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'btn primary' }, 'Create extension'),
      h('a', { href: '#/extensions', class: 'btn secondary' }, 'Cancel')));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form, box);
    const body = {
      number: number.input.value.trim(),
      name: name.input.value.trim(),
      role: role.input.value,
      allow_external: external.input.checked,
      voicemail_enabled: voicemail.input.checked,
    };
    if (email.input.value.trim()) body.email = email.input.value.trim();
    if (password.input.value) body.password = password.input.value;
    if (sip.input.value) body.sip_secret = sip.input.value;
    if (pin.input.value.trim()) body.voicemail_pin = pin.input.value.trim();
    let created;
    try {
      created = await busy(form, () => post('/extensions', body));
    } catch (err) {
      showError(form, box, err, { duplicate_number: 'number' });
      return;
    }
    const creds = created.credentials || {};
    const items = CREDENTIAL_LABELS.filter(([k]) => creds[k]).map(([k, label]) => ({ label, value: creds[k] }));
    if (items.length) {
      await secretsDialog({ title: `Extension ${created.number} created`, items });
    }
    setFlash(`Extension ${created.number} (${created.name}) was created.`, 'success');
    navigate('/extensions');
  });

  container.append(heading('New extension'), form);
}
