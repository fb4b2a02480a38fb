-- Events received on the intake webhook (seed 002's Table 1), one row per event Id.
CREATE TABLE intake_events (
    id                 INTEGER PRIMARY KEY,
    -- The sender's Id, a GUID in lower case: a resent event is not stored twice.
    event_uid          TEXT    NOT NULL UNIQUE,
    -- `Event`: the code when a number was sent, the name when a name was.
    event_code         INTEGER,
    event_name         TEXT,
    entity_id          TEXT,
    user_id            TEXT,
    orch_timestamp_utc TEXT,
    operation_key      TEXT,
    signature          TEXT,
    worker_admin_name  TEXT,
    text               TEXT,
    -- `EventType` as sent (1 Info, 2 Error, 3 SecurityIncident, 4 Correction; others kept as is).
    event_type         INTEGER,
    ip                 TEXT,
    tenant_id          TEXT,
    entity_data        TEXT,
    sended_at          TEXT,
    received_at        TEXT    NOT NULL,
    source_address     TEXT    NOT NULL,
    -- The integration account whose token came with it (NULL when intake takes unauthenticated calls).
    account            TEXT
);
CREATE INDEX intake_events_received ON intake_events (received_at);
