-- Device sessions, when they are kept in the database so that several server nodes share them
-- ([protocol] shared_sessions). `data` is the session as JSON: the sync in progress.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    device        INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    created_at    TEXT    NOT NULL,
    last_used_at  TEXT    NOT NULL,
    data          TEXT    NOT NULL
);
CREATE INDEX sessions_last_used ON sessions (last_used_at);
