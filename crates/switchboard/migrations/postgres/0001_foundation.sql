-- Foundation: extensions, web sessions, API keys and the event outbox.
-- Times are UTC milliseconds since the Unix epoch (BIGINT), the same as on SQLite,
-- so one query serves both databases.

CREATE TABLE extensions (
    number               TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    email                TEXT,
    role                 TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    allow_external       BOOLEAN NOT NULL DEFAULT FALSE,
    voicemail_enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    forward_target       TEXT,
    forward_when         TEXT CHECK (forward_when IN ('always', 'busy', 'no_answer')),
    active               BOOLEAN NOT NULL DEFAULT TRUE,
    ad_synced            BOOLEAN NOT NULL DEFAULT FALSE,
    ad_username          TEXT,
    password_hash        TEXT,
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    sip_realm            TEXT,
    sip_ha1_md5          TEXT,
    sip_ha1_sha256       TEXT,
    voicemail_pin_hash   TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX extensions_role_active ON extensions (role, active);

CREATE TABLE auth_sessions (
    token_hash   TEXT PRIMARY KEY NOT NULL,
    extension    TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ip_address   TEXT,
    user_agent   TEXT
);
CREATE INDEX auth_sessions_extension ON auth_sessions (extension);
CREATE INDEX auth_sessions_expires ON auth_sessions (expires_at);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    extension    TEXT REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

-- Transactional outbox: written in the same transaction as the change it reports.
CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX events_type_seq ON events (event_type, seq);
