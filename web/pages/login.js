// Log in with extension number and web password.

import { post } from '../api.js';
import { h, heading, field, alertBox, showError, busy } from '../ui.js';

export function render(container, { session, navigate, refreshMe }) {
  const ext = field({ label: 'Extension', name: 'extension', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  ext.input.dataset.autofocus = '';
  const pw = field({ label: 'Password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const box = alertBox();
  const form = h('form', { class: 'card form narrow' },
    ext, pw, box,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Log in')));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await busy(form, async () => {
        await post('/auth/login', { extension: ext.input.value.trim(), password: pw.input.value }, { handleAuth: false });
        await refreshMe();
      });
    } catch (err) {
      showError(form, box, err);
      return;
    }
    const me = session.me;
    if (!me) {
      showError(form, box, { message: 'Logged in, but the session was not accepted. Are cookies blocked for this site?' });
      return;
    }
    const next = session.returnTo;
    session.returnTo = null;
    navigate(me.must_change_password ? '/password' : next || '/dashboard');
  });

  container.append(
    h('div', { class: 'login' },
      heading('Log in'),
      h('p', { class: 'muted' }, 'Log in to the Switchboard admin panel with your extension number and web password.'),
      form));
}
