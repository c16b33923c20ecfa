// The JSON API client: cookie session, CSRF header on writes, uniform errors.

const API_BASE = new URL('../api/', location.href);
const CSRF_COOKIE = 'switchboard_csrf';

/** An API failure: HTTP status plus the server's `{code, message, field}`. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field ?? null;
  }
}

let handlers = {};

/**
 * `onUnauthenticated(err)` on 401, `onPasswordChangeRequired(err)` on 403
 * password_change_required, `onMfaEnrollmentRequired(err)` on 403 mfa_enrollment_required.
 */
export function setAuthHandlers(h) {
  handlers = h;
}

function csrfToken() {
  for (const part of document.cookie.split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join('='));
  }
  return '';
}

/**
 * Calls `/api/<path>`. Resolves to the parsed JSON body (null for 204); rejects with
 * an ApiError. `handleAuth: false` leaves 401/403 to the caller (login, /auth/me).
 */
export async function api(method, path, body, { handleAuth = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') {
    const token = csrfToken();
    if (token) headers['X-CSRF-Token'] = token;
  }
  let res;
  try {
    res = await fetch(new URL(path.replace(/^\//, ''), API_BASE), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network_error', 'Cannot reach the Switchboard server. Check the connection and try again.');
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.ok) return data;
  const e = data && data.error;
  const err = new ApiError(
    res.status,
    (e && e.code) || `http_${res.status}`,
    (e && e.message) || `The server answered ${res.status} ${res.statusText}.`,
    e && e.field,
  );
  if (handleAuth) {
    // A wrong second factor (confirming an enrolment, turning MFA off) is a 401 too, but
    // the session is still good.
    if (res.status === 401 && err.code !== 'invalid_second_factor') handlers.onUnauthenticated?.(err);
    else if (res.status === 403 && err.code === 'password_change_required') handlers.onPasswordChangeRequired?.(err);
    else if (res.status === 403 && err.code === 'mfa_enrollment_required') handlers.onMfaEnrollmentRequired?.(err);
  }
  throw err;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);
export const patch = (path, body, opts) => api('PATCH', path, body, opts);
export const put = (path, body, opts) => api('PUT', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
