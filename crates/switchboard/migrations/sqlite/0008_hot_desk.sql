-- Hot-desking (spec 05, seed 000): who is logged in at which device, the login history
-- (one row per session, closed at logout with its reason) for reports, and failed PIN
-- attempts for the lockout and the reports.
--
-- `device_id` is the key a device is matched by: a MAC address in normalised form
-- (12 lowercase hex digits), or any other id as given, trimmed; `device_label` is the
-- id as the login gave it, which the API returns.
CREATE TABLE hot_desk_sessions (
    device_id            TEXT PRIMARY KEY NOT NULL,
    device_label         TEXT NOT NULL,
    extension            TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    session_id           TEXT NOT NULL UNIQUE,
    ip_address           TEXT,
    logged_in_at         BIGINT NOT NULL,
    last_activity        BIGINT NOT NULL,
    auto_logout_enabled  INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX hot_desk_sessions_extension ON hot_desk_sessions (extension);

-- No foreign key: the history outlives a deleted extension.
CREATE TABLE hot_desk_history (
    session_id     TEXT PRIMARY KEY NOT NULL,
    extension      TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    device_label   TEXT NOT NULL,
    ip_address     TEXT,
    logged_in_at   BIGINT NOT NULL,
    logged_out_at  BIGINT,
    -- user | admin | auto_logout | replaced | moved | deleted
    logout_reason  TEXT
);
CREATE INDEX hot_desk_history_login ON hot_desk_history (logged_in_at);
CREATE INDEX hot_desk_history_extension ON hot_desk_history (extension, logged_in_at);

CREATE TABLE hot_desk_pin_failures (
    extension   TEXT NOT NULL,
    ip_address  TEXT,
    failed_at   BIGINT NOT NULL
);
CREATE INDEX hot_desk_pin_failures_extension ON hot_desk_pin_failures (extension, failed_at);
CREATE INDEX hot_desk_pin_failures_time ON hot_desk_pin_failures (failed_at);
