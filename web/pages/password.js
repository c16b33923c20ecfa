// Change your own password; forced after the first login or an admin reset.

import { post } from '../api.js';
import { setFlash } from '../state.js';
import { h, heading, field, alertBox, showError, clearErrors, busy } from '../ui.js';

export function render(container, { session, navigate, refreshMe }) {
  const me = session.me;
  const forced = me.must_change_password;
  const current = field({ label: 'Current password', name: 'current_password', type: 'password', autocomplete: 'current-password', required: true });
  current.input.dataset.autofocus = '';
  const next = field({
    label: 'New password', name: 'new_password', type: 'password', autocomplete: 'new-password', required: true,
    hint: 'At least 10 characters, not your extension number, and different from the current one.',
  });
  const confirm = field({ label: 'Confirm new password', name: 'confirm_password', type: 'password', autocomplete: 'new-password', required: true });
  const box = alertBox();
  // For password managers: which account this password belongs to.
  const username = h('input', { type: 'text', name: 'username', autocomplete: 'username', value: me.extension ?? '', hidden: true, readOnly: true });
  const form = h('form', { class: 'card form narrow' },
    username, current, next, confirm, box,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'btn primary' }, 'Change password'),
      forced ? null : h('a', { href: '#/dashboard', class: 'btn secondary' }, 'Cancel')));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form, box);
    if (next.input.value !== confirm.input.value) {
      showError(form, box, { field: 'confirm_password', message: 'The two new passwords do not match.' });
      return;
    }
    try {
      await busy(form, async () => {
        await post('/auth/password', { current_password: current.input.value, new_password: next.input.value });
        await refreshMe();
      });
    } catch (err) {
      showError(form, box, err);
      return;
    }
    setFlash('Your password has been changed.', 'success');
    navigate('/dashboard');
  });

  container.append(
    h('div', { class: 'login' },
      heading(forced ? 'Choose a new password' : 'Change password'),
      forced
        ? h('p', { class: 'notice' },
          `Extension ${me.extension} must choose a new password before using the panel: `
          + 'it is still using a password that was generated or set by an administrator.')
        : h('p', { class: 'muted' }, 'Changing your password logs out your other sessions.'),
      form));
}
