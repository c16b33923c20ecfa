// Log in with extension number and web password, then, for an extension with
// multi-factor authentication, the second step: a code (authenticator app, backup code
// or YubiKey) or a security key.

import { post } from '../api.js';
import { h, heading, field, alertBox, showAlert, showError, busy } from '../ui.js';
import { getAssertion } from '../webauthn.js';

export function render(container, ctx) {
  passwordStep(container, ctx);
}

/** With the session issued and read back: on to where the user was going. */
function enter({ session, navigate }, form, box) {
  if (!session.me) {
    showError(form, box, { message: 'Logged in, but the session was not accepted. Are cookies blocked for this site?' });
    return;
  }
  const next = session.returnTo;
  session.returnTo = null;
  // The router sends anyone who must change the password or enrol a second factor there first.
  navigate(next || '/dashboard');
}

/** Step 1; `message` explains why the user is back here (e.g. the second step expired). */
function passwordStep(container, ctx, { extension = '', message = '' } = {}) {
  const ext = field({ label: 'Extension', name: 'extension', value: extension, autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pw = field({ label: 'Password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  (extension ? pw : ext).input.dataset.autofocus = '';
  const box = alertBox();
  showAlert(box, message);
  const form = h('form', { class: 'card form narrow' },
    ext, pw, box,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Log in')));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const number = ext.input.value.trim();
    let answer;
    try {
      answer = await busy(form, async () => {
        const a = await post('/auth/login', { extension: number, password: pw.input.value }, { handleAuth: false });
        if (!a?.mfa_required) await ctx.refreshMe();
        return a;
      });
    } catch (err) {
      showError(form, box, err);
      return;
    }
    if (answer?.mfa_required) secondStep(container, ctx, answer, number);
    else enter(ctx, form, box);
  });

  container.replaceChildren(
    h('div', { class: 'login' },
      heading('Log in'),
      h('p', { class: 'muted' }, 'Log in to the Switchboard admin panel with your extension number and web password.'),
      form));
  container.querySelector('[data-autofocus]')?.focus();
}

/** What the code field takes, from the methods the extension has. */
function codeHint(methods) {
  const ways = [];
  if (methods.includes('totp')) ways.push('the 6-digit code from your authenticator app');
  if (methods.includes('yubikey')) ways.push('touch your YubiKey (it types its code and presses Enter)');
  if (methods.includes('backup_code')) ways.push('one of your backup codes (XXXX-XXXX)');
  return ways.length ? `Enter ${ways.join(', or ')}.` : undefined;
}

/** Step 2: `challenge` is the login answer `{mfa_token, methods, webauthn?}`. */
function secondStep(container, ctx, challenge, extension) {
  const code = field({
    label: 'Authenticator code, backup code or YubiKey', name: 'code', autocomplete: 'one-time-code',
    autocapitalize: 'none', spellcheck: 'false', required: true, hint: codeHint(challenge.methods || []),
  });
  const box = alertBox();
  const useKey = challenge.webauthn
    ? h('button', { type: 'button', class: 'btn secondary' }, 'Use security key')
    : null;
  const restart = h('button', { type: 'button', class: 'link-button' }, 'Start over');
  const form = h('form', { class: 'card form narrow' },
    code, box,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Verify'), useKey, restart));

  const backToPassword = (message) => passwordStep(container, ctx, { extension, message });
  /**
   * Sends the second factor that `factor()` produces (`{code}` or `{credential}`);
   * `fieldFor` places the server's errors (showError).
   */
  const verify = async (factor, fieldFor = {}) => {
    try {
      await busy(form, async () => {
        await post('/auth/mfa', { mfa_token: challenge.mfa_token, ...await factor() }, { handleAuth: false });
        await ctx.refreshMe();
      });
    } catch (err) {
      // The token is single-use and short-lived: once dead, only the password step helps.
      if (err.code === 'mfa_token_invalid') return backToPassword(err.message);
      showError(form, box, err, fieldFor);
      // A YubiKey types over the selection: touching it again replaces the refused code.
      if (document.activeElement === code.input) code.input.select();
      return;
    }
    enter(ctx, form, box);
  };

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    verify(async () => ({ code: code.input.value.trim() }), { invalid_second_factor: 'code' });
  });
  useKey?.addEventListener('click', () => verify(async () => ({ credential: await getAssertion(challenge.webauthn) })));
  restart.addEventListener('click', () => backToPassword(''));

  container.replaceChildren(
    h('div', { class: 'login' },
      heading('Two-factor authentication'),
      h('p', { class: 'muted' }, `Extension ${extension} is protected by a second factor: confirm it is you.`),
      form));
  code.input.focus();
}
