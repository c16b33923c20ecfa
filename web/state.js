// Shared panel state: who is logged in, and a one-shot message for the next page.

export const session = {
  /** undefined: not asked yet; null: logged out; else the `/api/auth/me` answer. */
  me: undefined,
  /** Where to go after logging in. */
  returnTo: null,
};

let pendingFlash = null;

/** A message shown on the next page rendered (`kind`: info, success or error). */
export function setFlash(text, kind = 'info') {
  pendingFlash = { text, kind };
}

export function takeFlash() {
  const f = pendingFlash;
  pendingFlash = null;
  return f;
}
