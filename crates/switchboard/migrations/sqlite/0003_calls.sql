-- Call detail records: one row per call, written when it ends (spec 01, "CDR").
CREATE TABLE cdr (
    id            TEXT PRIMARY KEY,
    caller        TEXT NOT NULL,
    caller_name   TEXT NOT NULL,
    -- What was dialled.
    callee        TEXT NOT NULL,
    -- The extension that answered (forwarding may have moved the call).
    answered_by   TEXT,
    started_at    BIGINT NOT NULL,
    answered_at   BIGINT,
    ended_at      BIGINT NOT NULL,
    -- Seconds from answer to end; 0 when not answered.
    duration      BIGINT NOT NULL,
    disposition   TEXT NOT NULL,
    hangup_cause  TEXT NOT NULL,
    codec         TEXT
);
CREATE INDEX cdr_started ON cdr (started_at);
CREATE INDEX cdr_caller ON cdr (caller, started_at);
CREATE INDEX cdr_callee ON cdr (callee, started_at);
CREATE INDEX cdr_answered_by ON cdr (answered_by, started_at);
