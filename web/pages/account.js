// My account: the logged-in user's own second factors (spec 07): an authenticator app
// (TOTP, enrolled by scanning a QR code), backup codes, security keys (WebAuthn) and
// YubiKeys, and turning MFA off. Every user has this page, admins included; while
// `security.mfa.required` asks for a second factor, it is the only page they reach.

import { get, post, del } from '../api.js';
import { setFlash } from '../state.js';
import {
  h, heading, field, alertBox, showAlert, showError, busy, confirmDialog, backupCodesDialog,
  formatDate, dataTable,
} from '../ui.js';
import { createCredential, webauthnAvailable } from '../webauthn.js';

const TOTP_STATUS = { active: 'Active', pending: 'Set up but not yet confirmed with a code', none: 'Not set up' };

/** Authenticator app, YubiKeys and security keys; backup codes only count alongside one of them. */
const primaryCount = (m) => (m.totp.status === 'active' ? 1 : 0) + m.yubikeys.length + m.fido2.length;

const empty = (cols, text) => h('tr', {}, h('td', { colspan: cols, class: 'empty' }, text));
const lastUsed = (iso) => (iso ? formatDate(iso) : 'Never');

function section(id, title, children, cls = 'card') {
  return h('section', { class: cls, 'aria-labelledby': id }, h('h2', { id }, title), children);
}

export async function render(container, { session, navigate, refreshMe, isCurrent }) {
  const me = session.me;
  container.append(heading('My account'));
  if (me.mfa_enrollment_required) {
    container.append(h('p', { class: 'notice' },
      'Your administrator requires two-factor authentication: set up an authenticator app, a security key '
      + 'or a YubiKey below before using the rest of the panel.'));
  }
  const methods = await get(`/mfa/methods/${encodeURIComponent(me.extension)}`);
  if (!isCurrent()) return;
  const account = {
    extension: me.extension,
    path: encodeURIComponent(me.extension),
    /** After a change: say what happened, read the session again (an enrolment may have been due), redraw. */
    async changed(message) {
      setFlash(message, 'success');
      await refreshMe();
      navigate('/account');
    },
  };
  container.append(h('div', { class: 'sections' },
    statusSection(methods),
    totpSection(account, methods),
    backupSection(account, methods),
    keysSection(account, methods),
    yubikeySection(account, methods),
    primaryCount(methods) ? disableSection(account) : null));
}

function statusSection(m) {
  const on = primaryCount(m) > 0;
  return section('acct-status', 'Two-factor authentication', [
    h('dl', { class: 'stats' },
      h('dt', {}, 'Status'), h('dd', {}, on ? 'On' : 'Off'),
      h('dt', {}, 'Authenticator app'), h('dd', {}, TOTP_STATUS[m.totp.status] || m.totp.status),
      h('dt', {}, 'Backup codes left'), h('dd', {}, String(on ? m.backup_codes.remaining : 0)),
      h('dt', {}, 'Security keys'), h('dd', {}, String(m.fido2.length)),
      h('dt', {}, 'YubiKeys'), h('dd', {}, String(m.yubikeys.length))),
    h('p', { class: 'muted' }, on
      ? 'Logging in asks for a second factor after your password.'
      : 'Logging in needs only your password: add a second factor below to protect your account.'),
    h('p', {}, h('a', { href: '#/password' }, 'Change your password')),
  ]);
}

/** Confirms, removes a key (DELETE `path`), and redraws the page. */
async function removeMethod(account, box, { title, lastOne, path, done }) {
  const ok = await confirmDialog({
    title,
    message: lastOne
      ? 'It is your last second factor: two-factor authentication turns off and your backup codes are deleted.'
      : 'It can no longer be used to log in.',
    confirmLabel: 'Remove',
    danger: true,
  });
  if (!ok) return;
  try {
    await del(path);
  } catch (err) {
    showAlert(box, err.message);
    return;
  }
  await account.changed(done);
}

/** The first primary method comes with backup codes, shown this once. */
async function showNewBackupCodes(answer) {
  if (answer.backup_codes) await backupCodesDialog({ title: 'Your backup codes', codes: answer.backup_codes });
}

function totpSection(account, m) {
  const title = 'Authenticator app';
  if (m.totp.status === 'active') {
    return section('acct-totp', title, [
      h('p', {}, `Set up ${formatDate(m.totp.created_at)}; last used: ${lastUsed(m.totp.last_used_at)}.`),
      h('p', { class: 'muted' }, 'To move to another phone, turn two-factor authentication off below and set it up again.'),
    ]);
  }
  const box = alertBox();
  const start = h('button', { type: 'button', class: 'btn primary' }, 'Set up an authenticator app');
  const setup = h('div');
  const el = section('acct-totp', title, [
    h('p', { class: 'muted' }, 'Use an app such as Google Authenticator, Microsoft Authenticator or Authy: '
      + 'it shows a new 6-digit code every 30 seconds.'),
    h('div', { class: 'actions' }, start), box, setup,
  ]);
  start.addEventListener('click', async () => {
    let enrolment;
    try {
      enrolment = await busy(el, () => post('/mfa/enroll', { extension: account.extension }));
    } catch (err) {
      showAlert(box, err.message);
      return;
    }
    showAlert(box, '');
    start.hidden = true;
    setup.replaceChildren(totpEnrolment(account, enrolment));
    setup.querySelector('input[name="code"]').focus();
  });
  return el;
}

/** The QR code and key of a pending enrolment, and the code that confirms it. */
function totpEnrolment(account, enrolment) {
  // An <img> with a data: URL: the CSP allows data: images, and the SVG stays inert.
  const qr = h('img', {
    class: 'qr', src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qr_svg)}`,
    alt: 'QR code to scan with your authenticator app',
  });
  const secret = field({
    label: 'Key to type in instead', name: 'secret', value: enrolment.secret.replace(/(.{4})(?=.)/g, '$1 '),
    readOnly: true, class: 'secret', spellcheck: 'false', autocomplete: 'off',
    hint: 'For apps that cannot scan: choose a time-based key and type this in.',
  });
  const code = field({
    label: 'Code from the app', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true,
    hint: 'The 6-digit code the app shows now: it proves the app is set up right.',
  });
  const box = alertBox();
  const form = h('form', { class: 'form', novalidate: true },
    h('figure', { class: 'qr-figure' }, qr, h('figcaption', {}, 'Scan this with your authenticator app.')),
    secret, code, box,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Verify and turn on')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let answer;
    try {
      answer = await busy(form, () => post('/mfa/verify-enrollment', { extension: account.extension, code: code.input.value.trim() }));
    } catch (err) {
      showError(form, box, err, { invalid_second_factor: 'code' });
      return;
    }
    await showNewBackupCodes(answer);
    await account.changed('Your authenticator app is set up: logging in now asks for a code from it.');
  });
  return form;
}

function backupSection(account, m) {
  const title = 'Backup codes';
  if (!primaryCount(m)) {
    return section('acct-backup', title, h('p', { class: 'muted' },
      'You get backup codes with your first second factor: each logs you in once when you cannot use it.'));
  }
  const box = alertBox();
  const regenerate = h('button', { type: 'button', class: 'btn secondary' }, 'Generate new backup codes');
  const el = section('acct-backup', title, [
    h('p', {}, `${m.backup_codes.remaining} unused backup codes left.`),
    h('p', { class: 'muted' }, 'Each code logs you in once when you cannot use your app or key.'),
    box, h('div', { class: 'actions' }, regenerate),
  ]);
  regenerate.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: 'Generate new backup codes?', message: 'The codes you have now stop working.', confirmLabel: 'Generate',
    });
    if (!ok) return;
    let answer;
    try {
      answer = await busy(el, () => post('/mfa/backup-codes', { extension: account.extension }));
    } catch (err) {
      showAlert(box, err.message);
      return;
    }
    await backupCodesDialog({ title: 'Your new backup codes', codes: answer.backup_codes });
    await account.changed('New backup codes were generated: the old ones no longer work.');
  });
  return el;
}

function keysSection(account, m) {
  const box = alertBox();
  const lastOne = primaryCount(m) === 1;
  const rows = m.fido2.map((k) => {
    const remove = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': `Remove security key ${k.name}` }, 'Remove');
    remove.addEventListener('click', () => removeMethod(account, box, {
      title: `Remove the security key ${k.name}?`, lastOne,
      path: `/mfa/fido2/${account.path}/${encodeURIComponent(k.id)}`, done: `The security key ${k.name} was removed.`,
    }));
    return h('tr', {}, h('td', { class: 'break' }, k.name), h('td', {}, formatDate(k.created_at)),
      h('td', {}, lastUsed(k.last_used_at)), h('td', {}, remove));
  });
  return section('acct-keys', 'Security keys', [
    h('p', { class: 'muted' }, 'A FIDO2 security key, or the authenticator built into your computer or phone: you touch it to log in.'),
    dataTable('Security keys', ['Name', 'Added', 'Last used', ''], h('tbody', {}, rows.length ? rows : empty(4, 'No security keys.'))),
    keyAdder(account, box, m),
    box,
  ]);
}

/** The form to add a key, or why this server or browser cannot. */
function keyAdder(account, box, m) {
  if (!m.available.includes('fido2')) {
    return h('p', { class: 'notice' }, 'Security keys are not set up on this server: an administrator sets security.mfa.fido2 (the address people reach the panel at).');
  }
  if (!webauthnAvailable()) {
    return h('p', { class: 'notice' }, 'This browser can add security keys only when the panel is opened over HTTPS or on localhost.');
  }
  return addKeyForm(account, box);
}

/** Names a new key, has the browser create a credential on it, and registers that. */
function addKeyForm(account, box) {
  const name = field({ label: 'Security key name', name: 'name', required: true, autocomplete: 'off', hint: 'To tell your keys apart, e.g. "Blue key on my keyring".' });
  const form = h('form', { class: 'inline-form', novalidate: true }, name,
    h('button', { type: 'submit', class: 'btn secondary' }, 'Add security key'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let answer;
    try {
      answer = await busy(form, async () => {
        const begun = await post('/mfa/enroll-fido2', { extension: account.extension, name: name.input.value.trim() });
        const credential = await createCredential(begun.options);
        return post('/mfa/enroll-fido2/finish', { extension: account.extension, credential });
      });
    } catch (err) {
      showError(form, box, err);
      return;
    }
    await showNewBackupCodes(answer);
    await account.changed(`The security key ${answer.name} was added.`);
  });
  return form;
}

function yubikeySection(account, m) {
  const box = alertBox();
  const lastOne = primaryCount(m) === 1;
  const rows = m.yubikeys.map((k) => {
    const label = k.name || k.public_id;
    const remove = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': `Remove YubiKey ${label}` }, 'Remove');
    remove.addEventListener('click', () => removeMethod(account, box, {
      title: `Remove the YubiKey ${label}?`, lastOne,
      path: `/mfa/yubikey/${account.path}/${encodeURIComponent(k.public_id)}`, done: `The YubiKey ${label} was removed.`,
    }));
    return h('tr', {}, h('td', { class: 'break' }, k.name || '—'), h('td', {}, k.public_id),
      h('td', {}, formatDate(k.created_at)), h('td', {}, lastUsed(k.last_used_at)), h('td', {}, remove));
  });
  const name = field({ label: 'YubiKey name', name: 'name', autocomplete: 'off', hint: 'Optional.' });
  const otp = field({
    label: 'YubiKey code', name: 'otp', required: true, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false',
    hint: 'Click here and touch the key: it types a one-time code and presses Enter.',
  });
  const form = h('form', { class: 'inline-form', novalidate: true }, name, otp,
    h('button', { type: 'submit', class: 'btn secondary' }, 'Add YubiKey'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let answer;
    try {
      answer = await busy(form, () => post('/mfa/enroll-yubikey', {
        extension: account.extension, otp: otp.input.value.trim(), name: name.input.value.trim() || undefined,
      }));
    } catch (err) {
      showError(form, box, err);
      return;
    }
    await showNewBackupCodes(answer);
    await account.changed(`The YubiKey ${answer.name || answer.public_id} was added.`);
  });
  const adder = m.available.includes('yubikey')
    ? form
    : h('p', { class: 'notice' }, 'YubiKey codes are turned off on this server (security.mfa.yubikey.enabled).');
  return section('acct-yubikeys', 'YubiKeys', [
    h('p', { class: 'muted' }, 'A YubiKey in OTP mode types a one-time code when touched.'),
    dataTable('YubiKeys', ['Name', 'Public ID', 'Added', 'Last used', ''], h('tbody', {}, rows.length ? rows : empty(5, 'No YubiKeys.'))),
    adder, box,
  ]);
}

function disableSection(account) {
  const box = alertBox();
  const code = field({
    label: 'Current code', name: 'code', required: true, autocomplete: 'one-time-code', autocapitalize: 'none', spellcheck: 'false',
    hint: 'From your authenticator app, a backup code, or touch your YubiKey.',
  });
  const form = h('form', { class: 'inline-form', novalidate: true }, code,
    h('button', { type: 'submit', class: 'btn danger' }, 'Turn off'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const ok = await confirmDialog({
      title: 'Turn off two-factor authentication?',
      message: 'Your authenticator app, security keys and YubiKeys are removed and your backup codes deleted: '
        + 'logging in then needs only your password.',
      confirmLabel: 'Turn off',
      danger: true,
    });
    if (!ok) return;
    try {
      await busy(form, () => post('/mfa/disable', { extension: account.extension, code: code.input.value.trim() }));
    } catch (err) {
      showError(form, box, err, { invalid_second_factor: 'code' });
      return;
    }
    await account.changed('Two-factor authentication is off.');
  });
  return section('acct-disable', 'Turn off two-factor authentication', [
    h('p', { class: 'muted' }, 'Removes every second factor at once.'), form, box,
  ], 'card danger-zone');
}
