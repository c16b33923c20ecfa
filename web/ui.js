// DOM helpers: element builder, form fields, error display, dialogs, formatting.
// Everything is built with DOM APIs (no innerHTML), so server text is never markup.

const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'required', 'readOnly', 'open', 'tabIndex']);

/** h('a', {href: '#/x', class: 'btn', onclick: fn}, 'text', child, [more]) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

let seq = 0;
export const uid = (prefix = 'f') => `${prefix}-${++seq}`;

/** The page's h1 (focusable for route changes); also sets the document title. */
export function heading(text) {
  document.title = `${text} · Switchboard`;
  return h('h1', { tabIndex: -1, class: 'page-title' }, text);
}

function hintOf(id, hint) {
  return hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
}

/** A labelled input; returns the wrapper (with `.input`). */
export function field({ label, name, type = 'text', value = '', hint, ...attrs }) {
  const id = uid(name.replace(/\W/g, '-'));
  const input = h('input', {
    id, name, type, value,
    'aria-describedby': hint ? `${id}-hint` : null,
    ...attrs,
  });
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input, hintOf(id, hint));
  wrap.input = input;
  return wrap;
}

/** A labelled select; options are [value, text] pairs. */
export function selectField({ label, name, options, value, hint, ...attrs }) {
  const id = uid(name.replace(/\W/g, '-'));
  const input = h('select', { id, name, 'aria-describedby': hint ? `${id}-hint` : null, ...attrs },
    options.map(([v, t]) => h('option', { value: v, selected: v === value }, t)));
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input, hintOf(id, hint));
  wrap.input = input;
  return wrap;
}

/** A checkbox with its label after it. */
export function checkField({ label, name, checked = false, hint, ...attrs }) {
  const id = uid(name.replace(/\W/g, '-'));
  const input = h('input', { id, name, type: 'checkbox', checked, 'aria-describedby': hint ? `${id}-hint` : null, ...attrs });
  const wrap = h('div', { class: 'field check' }, input, h('label', { for: id }, label), hintOf(id, hint));
  wrap.input = input;
  return wrap;
}

/** An error box (role=alert), hidden until used. */
export function alertBox() {
  return h('div', { class: 'alert', role: 'alert', hidden: true });
}

/**
 * Shows what `refresh` loads now, then again every `ms` milliseconds while `page` is
 * still the page shown (`isCurrent`); a failure is shown in `box`.
 */
export async function keepFresh(page, isCurrent, box, refresh, ms) {
  try {
    await refresh();
  } catch (err) {
    showAlert(box, err.message);
  }
  const timer = setInterval(() => {
    if (!isCurrent() || !page.isConnected) {
      clearInterval(timer);
      return;
    }
    refresh().catch((err) => showAlert(box, err.message));
  }, ms);
}

export function showAlert(box, text) {
  box.textContent = text;
  box.hidden = !text;
}

/** Removes the marks left by showError. */
export function clearErrors(form, box) {
  if (box) showAlert(box, '');
  if (!form) return;
  for (const el of form.querySelectorAll('.field-error')) el.remove();
  for (const el of form.querySelectorAll('[aria-invalid]')) {
    el.removeAttribute('aria-invalid');
    const ids = (el.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && !x.endsWith('-error'));
    if (ids.length) el.setAttribute('aria-describedby', ids.join(' '));
    else el.removeAttribute('aria-describedby');
  }
}

/**
 * Shows an ApiError. When it names a field of the form (`err.field`, or
 * `fieldFor[err.code]`), the server's message goes next to that field, which is marked
 * invalid and focused; otherwise it goes in the form's alert box.
 */
export function showError(form, box, err, fieldFor = {}) {
  clearErrors(form, box);
  const message = err.message || String(err);
  const name = fieldFor[err.code] || err.field;
  const input = name && form ? form.querySelector(`[name="${CSS.escape(name)}"]`) : null;
  if (!input) {
    showAlert(box, message);
    return;
  }
  // The API prefixes messages with the field's API name ("email: ..."); the label says it.
  const text = message.startsWith(`${name}: `) ? message.slice(name.length + 2) : message;
  const errId = `${input.id}-error`;
  input.setAttribute('aria-invalid', 'true');
  const ids = (input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
  input.setAttribute('aria-describedby', [...ids, errId].join(' '));
  const wrap = input.closest('.field') || input.parentElement;
  wrap.append(h('p', { class: 'field-error', id: errId, role: 'alert' }, text));
  input.focus();
}

/** Disables a form's controls while `task` runs. */
export async function busy(form, task) {
  const controls = [...form.querySelectorAll('button, input, select, textarea')].filter((c) => !c.disabled);
  form.setAttribute('aria-busy', 'true');
  for (const c of controls) c.disabled = true;
  try {
    return await task();
  } finally {
    for (const c of controls) c.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

function openDialog(dialog) {
  document.body.append(dialog);
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(dialog.returnValue);
    });
  });
}

/** A modal yes/no question; resolves true when confirmed. Cancel has the focus. */
export async function confirmDialog({ title, message, confirmLabel, danger = false }) {
  const titleId = uid('dlg');
  const cancel = h('button', { type: 'button', class: 'btn secondary', autofocus: true }, 'Cancel');
  const ok = h('button', { type: 'button', class: danger ? 'btn danger' : 'btn primary' }, confirmLabel);
  const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
    h('h2', { id: titleId }, title),
    h('p', {}, message),
    h('div', { class: 'actions' }, cancel, ok));
  cancel.addEventListener('click', () => dialog.close('cancel'));
  ok.addEventListener('click', () => dialog.close('confirm'));
  return (await openDialog(dialog)) === 'confirm';
}

/**
 * A Copy button for `value`; where the clipboard is refused, `select()` selects the
 * text on screen so the user can copy it by hand.
 */
function copyButton(text, ariaLabel, value, select) {
  const copy = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': ariaLabel }, text);
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(value);
      copy.textContent = 'Copied';
    } catch {
      select();
      copy.textContent = 'Press Ctrl+C to copy';
    }
  });
  return copy;
}

/** A dialog showing secrets once: only Done closes it, so they are not lost to a stray Escape. */
async function showOnce(title, notice, ...content) {
  const titleId = uid('dlg');
  const done = h('button', { type: 'button', class: 'btn primary' }, 'Done');
  const dialog = h('dialog', { class: 'dialog wide', 'aria-labelledby': titleId },
    h('h2', { id: titleId }, title),
    h('p', { class: 'notice' }, notice),
    content,
    h('div', { class: 'actions' }, done));
  dialog.addEventListener('cancel', (ev) => ev.preventDefault());
  done.addEventListener('click', () => dialog.close('done'));
  await openDialog(dialog);
}

/**
 * Shows freshly generated secrets once: `items` are {label, value}. Resolves when
 * the user clicks Done.
 */
export async function secretsDialog({ title, intro, items }) {
  const rows = items.map(({ label, value }) => {
    const id = uid('secret');
    const input = h('input', { id, type: 'text', value, readOnly: true, class: 'secret', spellcheck: 'false', autocomplete: 'off' });
    input.addEventListener('focus', () => input.select());
    const copy = copyButton('Copy', `Copy ${label}`, value, () => {
      input.focus();
      input.select();
    });
    return h('div', { class: 'secret-row' }, h('label', { for: id }, label), h('div', { class: 'secret-value' }, input, copy));
  });
  await showOnce(title, intro || 'Copy these now: they are shown only this once and cannot be displayed again.', rows);
}

/** Shows new MFA backup codes once, as a list to copy or print. Resolves when the user clicks Done. */
export async function backupCodesDialog({ title, codes }) {
  const list = h('ol', { class: 'codes', 'aria-label': 'Backup codes' }, codes.map((c) => h('li', {}, c)));
  const selectList = () => window.getSelection().selectAllChildren(list);
  await showOnce(title,
    'Store these codes somewhere safe, such as a password manager or on paper: each one logs you in '
      + 'once if you lose your authenticator or security key. They are shown only this once.',
    list,
    h('div', { class: 'actions' }, copyButton('Copy all', 'Copy all backup codes', codes.join('\n'), selectList)));
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hr} h ${m} min`;
  if (hr) return `${hr} h ${m} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

export function formatDate(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** A data table: a caption for screen readers, a header row of `columns`, and `tbody`. */
export function dataTable(caption, columns, tbody) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    tbody));
}

/** Route path of an extension's page. */
export const extensionPath = (number) => `/extensions/${encodeURIComponent(number)}`;
