// Security keys (WebAuthn): the server's options carry their binary fields in base64url
// (as webauthn-rs writes them) while navigator.credentials wants ArrayBuffers, and the
// credential it gives back must travel to the server as JSON, base64url again.

/** Whether this page may use security keys: browsers allow them on HTTPS and localhost only. */
export const webauthnAvailable = () => window.isSecureContext && 'PublicKeyCredential' in window;

function fromBase64url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
}

/** Base64url without padding. */
function toBase64url(buffer) {
  let bin = '';
  for (const byte of new Uint8Array(buffer)) bin += String.fromCharCode(byte);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const withBinaryIds = (list) => list?.map((c) => ({ ...c, id: fromBase64url(c.id) }));

// The browser's refusals are DOMExceptions whose messages speak to developers.
const REFUSALS = {
  NotAllowedError: 'The security key did not answer: the request was cancelled or timed out. Try again.',
  InvalidStateError: 'This security key is already registered to your account.',
  SecurityError: 'The browser refused to use a security key for this address: open the panel at the '
    + 'address configured as the relying party (security.mfa.fido2.rp_origin).',
};

/** Runs a navigator.credentials call, turning its failures into messages for people. */
async function ask(call) {
  if (!webauthnAvailable()) {
    throw new Error('This browser cannot use security keys here: open the panel over HTTPS (or on localhost).');
  }
  try {
    return await call();
  } catch (err) {
    throw new Error(REFUSALS[err?.name] || `The browser could not use the security key: ${err?.message || err}`);
  }
}

/** Registers a new key from `{publicKey}` creation options; resolves to the attestation for the server. */
export async function createCredential({ publicKey }) {
  const cred = await ask(() => navigator.credentials.create({
    publicKey: {
      ...publicKey,
      challenge: fromBase64url(publicKey.challenge),
      user: { ...publicKey.user, id: fromBase64url(publicKey.user.id) },
      excludeCredentials: withBinaryIds(publicKey.excludeCredentials),
    },
  }));
  return {
    id: cred.id,
    rawId: toBase64url(cred.rawId),
    type: cred.type,
    response: {
      attestationObject: toBase64url(cred.response.attestationObject),
      clientDataJSON: toBase64url(cred.response.clientDataJSON),
    },
  };
}

/** Signs the login challenge from `{publicKey}` request options; resolves to the assertion for the server. */
export async function getAssertion({ publicKey }) {
  const cred = await ask(() => navigator.credentials.get({
    publicKey: {
      ...publicKey,
      challenge: fromBase64url(publicKey.challenge),
      allowCredentials: withBinaryIds(publicKey.allowCredentials),
    },
  }));
  const r = cred.response;
  return {
    id: cred.id,
    rawId: toBase64url(cred.rawId),
    type: cred.type,
    response: {
      authenticatorData: toBase64url(r.authenticatorData),
      clientDataJSON: toBase64url(r.clientDataJSON),
      signature: toBase64url(r.signature),
      userHandle: r.userHandle ? toBase64url(r.userHandle) : null,
    },
  };
}
