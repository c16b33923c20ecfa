-- Threat detection (spec 08): blocked addresses and ranges (a row while the block
-- lasts; its history is in the outbox's security.* events) and the threat events.
CREATE TABLE security_blocked_ips (
    -- An address (192.0.2.7) or a CIDR range (198.51.100.0/24, 2001:db8::/32), normalised.
    network     TEXT PRIMARY KEY NOT NULL,
    reason      TEXT NOT NULL,
    -- auto | manual
    source      TEXT NOT NULL,
    -- Who blocked it (actor label; "system" for automatic blocks).
    actor       TEXT NOT NULL,
    blocked_at  BIGINT NOT NULL,
    -- NULL: until unblocked.
    expires_at  BIGINT
);

CREATE TABLE security_threat_events (
    id           TEXT PRIMARY KEY NOT NULL,
    ip           TEXT NOT NULL,
    -- failed_auth | unknown_extension | scanner | sql_injection | path_traversal | flood
    kind         TEXT NOT NULL,
    -- sip | http
    protocol     TEXT NOT NULL,
    detail       TEXT NOT NULL,
    -- The address's threat score after this event (0–100).
    score        INTEGER NOT NULL,
    occurred_at  BIGINT NOT NULL
);
CREATE INDEX security_threat_events_time ON security_threat_events (occurred_at);
CREATE INDEX security_threat_events_ip ON security_threat_events (ip, occurred_at);
