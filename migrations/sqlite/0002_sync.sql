-- Per-device sync state (SPEC section 6): the hashes learned from the device's results, and digests of
-- the effective policy and subscriptions last pushed.
CREATE TABLE device_sync (
    device          INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    info_hash       BLOB,
    state_hash      BLOB,
    settings_hash   BLOB,
    policy_hash     BLOB,
    policy_digest   BLOB,
    subs_hash       BLOB,
    subs_digest     BLOB,
    last_sync_at    TEXT,
    -- The last CmdError a device answered with (command code, error code, module, message).
    last_error_command INTEGER,
    last_error_code    INTEGER,
    last_error_module  TEXT,
    last_error_message TEXT,
    last_error_at      TEXT
);

-- What the device reported in its last CmdAppInfo.
CREATE TABLE device_app_info (
    device              INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    product_name        TEXT,
    product_version     TEXT,
    install_time        TEXT,
    display_name        TEXT,
    prod_version        TEXT,
    key_current_type              INTEGER,
    key_current_prod_suite_id     INTEGER,
    key_current_app_id            INTEGER,
    key_current_install_date      TEXT,
    key_current_expiration_date   TEXT,
    key_current_lic_period        INTEGER,
    key_current_lic_count         INTEGER,
    key_current_serial            TEXT,
    key_current_maj_ver           TEXT,
    key_current_prod_name         TEXT,
    key_next_type                 INTEGER,
    key_next_prod_suite_id        INTEGER,
    key_next_app_id               INTEGER,
    key_next_install_date         TEXT,
    key_next_expiration_date      TEXT,
    key_next_lic_period           INTEGER,
    key_next_lic_count            INTEGER,
    key_next_serial               TEXT,
    key_next_maj_ver              TEXT,
    key_next_prod_name            TEXT,
    presumed_name       TEXT,
    presumed_group      TEXT,
    os_type             INTEGER,
    os_ver_major        INTEGER,
    os_ver_minor        INTEGER,
    os_manufacturer     TEXT,
    os_name             TEXT,
    os_ver              TEXT,
    memory              INTEGER,
    processor_family    TEXT,
    system_name         TEXT,
    system_type         TEXT,
    updated_at          TEXT NOT NULL
);

-- What the device reported in its last CmdAppState.
CREATE TABLE device_app_state (
    device              INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    state_app           INTEGER,
    state_rtp           INTEGER,
    last_full_scan      TEXT,
    last_update_time    TEXT,
    bases_date          TEXT,
    bases_install_date  TEXT,
    bases_records       INTEGER,
    updated_at          TEXT NOT NULL
);

-- The device's settings tree (JSON, see README) and the changes an admin wants pushed on top of it.
CREATE TABLE device_settings (
    device       INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    current      TEXT,
    reported_at  TEXT,
    pending      TEXT,
    -- Bumped at each admin change; pushed_rev is the revision the device acknowledged.
    pending_rev  INTEGER NOT NULL DEFAULT 0,
    pushed_rev   INTEGER NOT NULL DEFAULT 0
);

-- Policy rows per group: a path in the settings tree ('Container/Name'), a typed value and a lock.
-- Only locked rows reach devices; a lock on an ancestor group wins; arrays are locked whole.
CREATE TABLE policy (
    id          INTEGER PRIMARY KEY,
    group_id    INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    path        TEXT    NOT NULL,
    value_type  TEXT    NOT NULL CHECK (value_type IN
                  ('bool', 'string', 'int', 'long', 'date', 'float', 'double', 'datetime', 'binary', 'array')),
    value       TEXT    NOT NULL,
    locked      INTEGER NOT NULL DEFAULT 1 CHECK (locked IN (0, 1)),
    UNIQUE (group_id, path)
);

-- Event types devices of a group should send, by severity (1 info .. 4 critical). Effective
-- subscriptions are the union along the group's ancestors.
CREATE TABLE subscriptions (
    group_id    INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    severity    INTEGER NOT NULL CHECK (severity BETWEEN 1 AND 4),
    event_type  TEXT    NOT NULL,
    PRIMARY KEY (group_id, severity, event_type)
);

-- Change counters. Triggers bump them on every change to the tables they cover, including changes an
-- admin makes by hand in SQL, so running servers notice without a restart.
CREATE TABLE revisions (
    name TEXT PRIMARY KEY,
    rev  INTEGER NOT NULL
);
INSERT INTO revisions (name, rev) VALUES ('policy', 1), ('subscriptions', 1);

CREATE TRIGGER policy_insert AFTER INSERT ON policy
BEGIN UPDATE revisions SET rev = rev + 1 WHERE name = 'policy'; END;
CREATE TRIGGER policy_update AFTER UPDATE ON policy
BEGIN UPDATE revisions SET rev = rev + 1 WHERE name = 'policy'; END;
CREATE TRIGGER policy_delete AFTER DELETE ON policy
BEGIN UPDATE revisions SET rev = rev + 1 WHERE name = 'policy'; END;
CREATE TRIGGER subscriptions_insert AFTER INSERT ON subscriptions
BEGIN UPDATE revisions SET rev = rev + 1 WHERE name = 'subscriptions'; END;
CREATE TRIGGER subscriptions_update AFTER UPDATE ON subscriptions
BEGIN UPDATE revisions SET rev = rev + 1 WHERE name = 'subscriptions'; END;
CREATE TRIGGER subscriptions_delete AFTER DELETE ON subscriptions
BEGIN UPDATE revisions SET rev = rev + 1 WHERE name = 'subscriptions'; END;
-- Moving a group in the tree changes what its devices inherit.
CREATE TRIGGER groups_reparent AFTER UPDATE OF parent_id ON groups
BEGIN UPDATE revisions SET rev = rev + 1 WHERE name IN ('policy', 'subscriptions'); END;

-- Admin changes, for accountability.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    object  TEXT NOT NULL,
    details TEXT
);
