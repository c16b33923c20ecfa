// One extension: profile, call forwarding, credentials, two-factor (admins, for others),
// deletion. Users see their own.

import { get, patch, post, put, del } from '../api.js';
import { setFlash } from '../state.js';
import {
  h, heading, field, selectField, checkField, alertBox, showAlert, showError, clearErrors, busy,
  confirmDialog, secretsDialog, formatDate,
} from '../ui.js';

const FORWARD_OPTIONS = [['', 'Off'], ['always', 'Always'], ['busy', 'When busy'], ['no_answer', 'When not answered']];

function profileForm(x, admin, onSaved) {
  const adminHint = admin ? undefined : 'Only an administrator can change this.';
  const name = field({ label: 'Name', name: 'name', value: x.name, required: true, autocomplete: 'off' });
  const email = field({ label: 'E-mail', name: 'email', type: 'email', value: x.email || '', autocomplete: 'off', hint: 'Leave empty for none.' });
  const role = selectField({ label: 'Role', name: 'role', value: x.role, disabled: !admin, hint: adminHint, options: [['user', 'User'], ['admin', 'Administrator']] });
  const external = checkField({ label: 'Allow external calls', name: 'allow_external', checked: x.allow_external, disabled: !admin, hint: adminHint });
  const voicemail = checkField({ label: 'Voicemail enabled', name: 'voicemail_enabled', checked: x.voicemail_enabled });
  const active = checkField({ label: 'Active', name: 'active', checked: x.active, disabled: !admin, hint: admin ? 'Inactive extensions cannot register, log in or receive calls.' : adminHint });
  const when = selectField({ label: 'Forward calls', name: 'call_forwarding.when', value: x.call_forwarding?.when || '', options: FORWARD_OPTIONS });
  const target = field({ label: 'Forward to', name: 'call_forwarding.target', value: x.call_forwarding?.target || '', autocomplete: 'off', hint: 'An extension or an external number.' });
  const syncTarget = () => {
    target.input.disabled = !when.input.value;
  };
  when.input.addEventListener('change', syncTarget);
  syncTarget();
  const box = alertBox();
  const saved = h('p', { class: 'saved', role: 'status' });

  const form = h('form', { class: 'card form', novalidate: true, 'aria-labelledby': 'ext-profile' },
    h('h2', { id: 'ext-profile' }, 'Profile'),
    name, email, role, external, voicemail, active,
    h('fieldset', {}, h('legend', {}, 'Call forwarding'), when, target),
    box,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Save'), saved));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    saved.textContent = '';
    // Only what changed, so a user never sends admin-only fields and concurrent edits of
    // other fields are kept.
    const changes = {};
    const emailValue = email.input.value.trim() || null;
    if (name.input.value.trim() !== x.name) changes.name = name.input.value.trim();
    if (emailValue !== (x.email ?? null)) changes.email = emailValue;
    if (admin && role.input.value !== x.role) changes.role = role.input.value;
    if (admin && external.input.checked !== x.allow_external) changes.allow_external = external.input.checked;
    if (voicemail.input.checked !== x.voicemail_enabled) changes.voicemail_enabled = voicemail.input.checked;
    if (admin && active.input.checked !== x.active) changes.active = active.input.checked;
    const fwd = when.input.value ? { target: target.input.value.trim(), when: when.input.value } : null;
    if (JSON.stringify(fwd) !== JSON.stringify(x.call_forwarding ?? null)) changes.call_forwarding = fwd;
    clearErrors(form, box);
    if (Object.keys(changes).length === 0) {
      saved.textContent = 'No changes to save.';
      return;
    }
    let updated;
    try {
      updated = await busy(form, () => patch(`/extensions/${encodeURIComponent(x.number)}`, changes));
    } catch (err) {
      showError(form, box, err, { last_admin: changes.active !== undefined ? 'active' : 'role' });
      if (err.field === 'call_forwarding') when.input.focus();
      return;
    }
    Object.assign(x, updated);
    saved.textContent = 'Saved.';
    onSaved(updated);
  });
  return form;
}

function credentialsSection(x, admin, self) {
  const box = alertBox();
  const done = h('p', { class: 'saved', role: 'status' });
  const status = h('dl', { class: 'stats' });
  const showStatus = (e) => status.replaceChildren(
    h('dt', {}, 'Web password'),
    h('dd', {}, e.has_password ? (e.must_change_password ? 'Set (must be changed at next login)' : 'Set') : 'Not set'),
    h('dt', {}, 'SIP secret'), h('dd', {}, e.has_sip_secret ? 'Set' : 'Not set'),
    h('dt', {}, 'Voicemail PIN'), h('dd', {}, e.has_voicemail_pin ? 'Set' : 'Not set'));
  showStatus(x);
  const refresh = async () => {
    try {
      showStatus(await get(`/extensions/${encodeURIComponent(x.number)}`));
    } catch {
      // The status line is informational; a failure here is reported by the next action.
    }
  };
  const n = encodeURIComponent(x.number);

  const rotate = h('button', { type: 'button', class: 'btn secondary' }, 'Rotate SIP secret');
  rotate.addEventListener('click', async () => {
    showAlert(box, '');
    done.textContent = '';
    const ok = await confirmDialog({
      title: `Rotate the SIP secret of ${x.number}?`,
      message: 'Phones using the current secret stop registering until they are given the new one.',
      confirmLabel: 'Rotate',
    });
    if (!ok) return;
    try {
      const r = await post(`/extensions/${n}/sip-secret`);
      await secretsDialog({ title: `New SIP secret for ${x.number}`, items: [{ label: 'SIP secret', value: r.sip_secret }] });
      done.textContent = 'The SIP secret was rotated.';
    } catch (err) {
      showAlert(box, err.message);
    }
  });

  const reset = h('button', { type: 'button', class: 'btn secondary' }, 'Reset password');
  reset.addEventListener('click', async () => {
    showAlert(box, '');
    done.textContent = '';
    const ok = await confirmDialog({
      title: `Reset the web password of ${x.number}?`,
      message: `A new password is generated and every session of ${x.number} is logged out; `
        + 'it must be changed at the next login.',
      confirmLabel: 'Reset',
    });
    if (!ok) return;
    try {
      const r = await post(`/extensions/${n}/password`, { must_change_password: true });
      if (r.password) {
        await secretsDialog({ title: `New password for ${x.number}`, items: [{ label: 'Web password', value: r.password }] });
      }
      done.textContent = 'The password was reset.';
      await refresh();
    } catch (err) {
      showAlert(box, err.message);
    }
  });

  const pin = field({ label: 'New voicemail PIN', name: 'pin', inputmode: 'numeric', autocomplete: 'off', hint: '4–12 digits; no runs (1234) or repeated digits (1111).' });
  const pinForm = h('form', { class: 'inline-form', novalidate: true }, pin, h('button', { type: 'submit', class: 'btn secondary' }, 'Set PIN'));
  pinForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    done.textContent = '';
    try {
      await busy(pinForm, () => put(`/voicemail/${n}/pin`, { pin: pin.input.value.trim() }));
    } catch (err) {
      showError(pinForm, box, err);
      return;
    }
    clearErrors(pinForm, box);
    pin.input.value = '';
    done.textContent = 'The voicemail PIN was changed.';
    await refresh();
  });

  return h('section', { class: 'card', 'aria-labelledby': 'ext-creds' },
    h('h2', { id: 'ext-creds' }, 'Credentials'),
    status,
    h('div', { class: 'actions' }, rotate, admin ? reset : null),
    self && !admin ? h('p', {}, h('a', { href: '#/password' }, 'Change your web password')) : null,
    pinForm, box, done);
}

/** For an admin on someone else's extension: whether a second factor is set, and
 *  turning it off for a user who lost their phone (they log in with the password and
 *  can enrol again). Users manage their own on My account. */
async function mfaSection(x) {
  const box = alertBox();
  const done = h('p', { class: 'saved', role: 'status' });
  const status = h('p', {});
  const button = h('button', { type: 'button', class: 'btn danger' }, 'Turn off two-factor authentication');
  const show = (st) => {
    status.textContent = st.enabled
      ? `On: ${st.methods.map((m) => m.replace('_', ' ')).join(', ')}.`
      : (st.required ? 'Off: this extension must set it up at its next login.' : 'Off.');
    button.hidden = !st.enabled;
  };
  show(await get(`/mfa/status/${encodeURIComponent(x.number)}`));
  button.addEventListener('click', async () => {
    showAlert(box, '');
    done.textContent = '';
    const ok = await confirmDialog({
      title: `Turn off two-factor authentication for ${x.number}?`,
      message: `Every authenticator app, security key, YubiKey and backup code of ${x.number} (${x.name}) is removed; the password alone logs in until they set one up again.`,
      confirmLabel: 'Turn off',
      danger: true,
    });
    if (!ok) return;
    try {
      await post('/mfa/disable', { extension: x.number });
      show(await get(`/mfa/status/${encodeURIComponent(x.number)}`));
    } catch (err) {
      showAlert(box, err.message);
      return;
    }
    done.textContent = 'Two-factor authentication is off.';
  });
  return h('section', { class: 'card', 'aria-labelledby': 'ext-mfa' },
    h('h2', { id: 'ext-mfa' }, 'Two-factor authentication'),
    status, box,
    h('div', { class: 'actions' }, button), done);
}

function deleteSection(x, navigate) {
  const box = alertBox();
  const button = h('button', { type: 'button', class: 'btn danger' }, 'Delete extension');
  button.addEventListener('click', async () => {
    showAlert(box, '');
    const ok = await confirmDialog({
      title: `Delete extension ${x.number}?`,
      message: `${x.number} (${x.name}) and its settings are removed. This cannot be undone.`,
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!ok) return;
    try {
      await del(`/extensions/${encodeURIComponent(x.number)}`);
    } catch (err) {
      showAlert(box, err.message);
      button.focus();
      return;
    }
    setFlash(`Extension ${x.number} (${x.name}) was deleted.`, 'success');
    navigate('/extensions');
  });
  return h('section', { class: 'card danger-zone', 'aria-labelledby': 'ext-delete' },
    h('h2', { id: 'ext-delete' }, 'Delete'),
    h('p', { class: 'muted' }, 'Deleting removes the extension for good. Extension 0 and the last administrator cannot be deleted.'),
    box,
    h('div', { class: 'actions' }, button));
}

export async function render(container, { params, session, navigate, refreshMe, isCurrent }) {
  const [number] = params;
  const me = session.me;
  const admin = me.role === 'admin';
  const self = me.extension === number;
  const body = h('div', { class: 'stack' }, h('p', { class: 'muted' }, 'Loading…'));
  container.append(
    h('p', { class: 'crumbs' }, admin ? h('a', { href: '#/extensions' }, '← All extensions') : null),
    heading(self && !admin ? 'My extension' : `Extension ${number}`),
    body);

  const draw = async (x) => {
    body.replaceChildren(
      h('p', { class: 'muted meta' },
        `${x.name} · created ${formatDate(x.created_at)} · updated ${formatDate(x.updated_at)}`,
        x.ad_synced ? ` · synced from Active Directory (${x.ad_username ?? ''})` : ''),
      profileForm(x, admin, async (updated) => {
        if (self && (updated.role !== me.role || updated.name !== me.name)) {
          await refreshMe();
          if (session.me && session.me.role !== 'admin') navigate(`/extensions/${encodeURIComponent(number)}`);
        }
      }),
      credentialsSection(x, admin, self),
    );
    if (admin && !self) body.append(await mfaSection(x));
    if (admin) body.append(deleteSection(x, navigate));
  };
  const load = async () => {
    let x;
    try {
      x = await get(`/extensions/${encodeURIComponent(number)}`);
    } catch (err) {
      if (!isCurrent()) return;
      body.replaceChildren(h('div', { class: 'alert', role: 'alert' },
        err.status === 404 ? `There is no extension ${number}.` : err.message));
      return;
    }
    if (isCurrent()) await draw(x);
  };
  await load();
}
