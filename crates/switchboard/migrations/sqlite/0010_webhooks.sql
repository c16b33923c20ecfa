-- Webhooks (spec 06): subscriptions from config.yml and the API, and one delivery row
-- per event and subscription, made by the fan-out from the event outbox. Events are
-- read from `events` when sent, so a delivery row stays small.
CREATE TABLE webhook_subscriptions (
    id           TEXT PRIMARY KEY NOT NULL,
    url          TEXT NOT NULL,
    -- JSON array of event names and wildcards (call.*, *).
    events       TEXT NOT NULL,
    enabled      INTEGER NOT NULL,
    -- whsec_… encrypted under the node master key.
    secret       TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    -- config | api
    source       TEXT NOT NULL,
    -- Events up to this sequence number have been queued for it.
    after_seq    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    subscription_id  TEXT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_seq        BIGINT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    -- pending | delivered | failed
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    last_status_code INTEGER,
    last_error       TEXT,
    -- Retries stop after features.webhooks.max_age from here (a manual retry restarts it).
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (subscription_id, event_seq)
);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (subscription_id, status, event_seq);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (updated_at);
