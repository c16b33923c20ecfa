-- Browser phone sessions (spec 03, seed 001): one row per WebPhone session. The id is
-- 128 random bits in hex; it names the session and is no credential (every call on it
-- is made by a logged-in extension or admin).

CREATE TABLE webrtc_sessions (
    session_id    TEXT PRIMARY KEY NOT NULL,
    extension     TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    -- The session's registered_phones marker: "webrtc-" + 12 hex of SHA-256(session_id).
    phone_mac     TEXT NOT NULL,
    -- The actor that created it (extension:1001, api_key:…).
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    -- The HTTP client that created it.
    user_agent    TEXT,
    ip_address    TEXT
);
CREATE INDEX webrtc_sessions_extension ON webrtc_sessions (extension);
CREATE INDEX webrtc_sessions_seen ON webrtc_sessions (last_seen_at);
