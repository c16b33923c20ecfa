-- Multi-factor authentication (spec 07, seed 002). Rows go with their extension.
-- Secrets that must be recovered (the TOTP seed) are AES-256-GCM under the node
-- master key; codes that need only be checked are keyed hashes.

-- One TOTP authenticator per extension, pending until a code verifies the enrolment.
CREATE TABLE mfa_secrets (
    extension     TEXT PRIMARY KEY NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    secret        TEXT NOT NULL,
    active        INTEGER NOT NULL DEFAULT 0,
    -- The last time step a code was accepted for: a code is good once.
    last_step     BIGINT,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);

CREATE TABLE mfa_backup_codes (
    extension   TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    code_hash   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (extension, code_hash)
);

CREATE TABLE mfa_yubikey_devices (
    -- The OTP's first 12 ModHex characters; a key belongs to one extension.
    public_id     TEXT PRIMARY KEY NOT NULL,
    extension     TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    name          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX mfa_yubikey_devices_extension ON mfa_yubikey_devices (extension);

CREATE TABLE mfa_fido2_credentials (
    id             TEXT PRIMARY KEY NOT NULL,
    extension      TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    -- base64url, as the browser names the credential.
    credential_id  TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    -- The public key and signature counter (webauthn-rs SecurityKey, JSON).
    credential     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX mfa_fido2_credentials_extension ON mfa_fido2_credentials (extension);

-- Ceremonies between two requests: a login waiting for its second factor (id = SHA-256
-- of the mfa_token) and a security key registration (id = 'fido2:' || extension).
CREATE TABLE mfa_challenges (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    extension   TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    -- webauthn-rs ceremony state (JSON), when there is one.
    state       TEXT,
    failures    INTEGER NOT NULL DEFAULT 0,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);
