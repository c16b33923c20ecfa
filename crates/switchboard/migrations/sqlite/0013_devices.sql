-- Device enrolment and heartbeat (spec 11, seed 003): one-time tokens an admin hands
-- out, and the devices that enrolled with one. Secrets are stored as SHA-256.

CREATE TABLE device_tokens (
    -- 6 characters from an unambiguous upper-case alphabet.
    code        TEXT PRIMARY KEY NOT NULL,
    note        TEXT,
    -- The extension the device will be linked to.
    extension   TEXT REFERENCES extensions (number) ON DELETE SET NULL ON UPDATE CASCADE,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    -- Burned: when, and by which device key.
    used_at     BIGINT,
    used_by     TEXT
);

CREATE TABLE devices (
    device_key          TEXT PRIMARY KEY NOT NULL,
    secret_hash         TEXT NOT NULL,
    extension           TEXT REFERENCES extensions (number) ON DELETE SET NULL ON UPDATE CASCADE,
    note                TEXT,
    hostname            TEXT,
    ip_address          TEXT,
    ip_lan              TEXT,
    ip_public           TEXT,
    -- xx:xx:xx:xx:xx:xx, lower case.
    mac                 TEXT,
    registered_at       BIGINT NOT NULL,
    last_seen           BIGINT,
    online              INTEGER NOT NULL DEFAULT 0,
    ssh_pubkey          TEXT,
    ssh_user            TEXT,
    ssh_key_updated_at  BIGINT
);
CREATE INDEX devices_seen ON devices (online, last_seen);
