-- Device sessions, when they are kept in the database so that several server nodes share them
-- ([protocol] shared_sessions). `data` is the session as JSON: the sync in progress.
CREATE TABLE sessions (
    id            TEXT        PRIMARY KEY,
    device        BIGINT      NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ NOT NULL,
    data          JSONB       NOT NULL
);
CREATE INDEX sessions_last_used ON sessions (last_used_at);
