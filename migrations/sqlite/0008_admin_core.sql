-- The admin core: accounts and their API tokens, failed logins counted in the database (so that
-- several nodes share one budget), a fuller audit trail, and the outbox of the event bus.

-- Audit entries say who (account, token subject, address), what (object kind and id) and the
-- object before and after (JSON). `actor` is the account, `object` the object's id; `details` is
-- kept for entries written before this migration.
ALTER TABLE audit ADD COLUMN actor_token TEXT;
ALTER TABLE audit ADD COLUMN actor_address TEXT;
ALTER TABLE audit ADD COLUMN object_kind TEXT;
ALTER TABLE audit ADD COLUMN before TEXT;
ALTER TABLE audit ADD COLUMN after TEXT;
CREATE INDEX audit_object ON audit (object_kind, object);

-- People and machines that administer the server. Passwords are argon2id PHC strings.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    role          TEXT    NOT NULL CHECK (role IN ('administrator', 'operator', 'auditor', 'integration')),
    password_hash TEXT    NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- API tokens (JWTs; the token itself is never stored): `subject` is the JWT's `sub`. A token may
-- be revoked at any time and deleted only after it expired.
CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY,
    subject     TEXT    NOT NULL UNIQUE,
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('api', 'session')),
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX tokens_account ON tokens (account_id);

-- Failed logins per key (a device id, an address, an account name, ...) since `since`.
CREATE TABLE login_failures (
    key    TEXT    PRIMARY KEY,
    since  TEXT    NOT NULL,
    count  INTEGER NOT NULL
);

-- The event bus: what was committed, in commit order (`seq`). SQLite has one writer, so an entry's
-- `seq` is given as it is inserted; PostgreSQL gives it after commit (see its migration). Device
-- events are not copied here: an entry names the range of `events` rows it stands for.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    seq         INTEGER UNIQUE,
    at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    topic       TEXT    NOT NULL,
    object_id   TEXT,
    payload     TEXT,
    first_event INTEGER,
    last_event  INTEGER
);
CREATE INDEX outbox_unsequenced ON outbox (id) WHERE seq IS NULL;

-- Where each durable consumer of the bus (an export sink, ...) has got to.
CREATE TABLE bus_cursors (
    consumer    TEXT    PRIMARY KEY,
    seq         INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL
);

-- Policy and subscription changes appear on the bus whoever makes them, hand edits in SQL included.
CREATE TRIGGER policy_insert_bus AFTER INSERT ON policy
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'policy.changed', NEW.group_id);
END;
CREATE TRIGGER policy_update_bus AFTER UPDATE ON policy
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'policy.changed', NEW.group_id);
END;
CREATE TRIGGER policy_delete_bus AFTER DELETE ON policy
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'policy.changed', OLD.group_id);
END;
CREATE TRIGGER subscriptions_insert_bus AFTER INSERT ON subscriptions
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'subscriptions.changed', NEW.group_id);
END;
CREATE TRIGGER subscriptions_update_bus AFTER UPDATE ON subscriptions
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'subscriptions.changed', NEW.group_id);
END;
CREATE TRIGGER subscriptions_delete_bus AFTER DELETE ON subscriptions
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'subscriptions.changed', OLD.group_id);
END;
