-- Groups form a tree under the root group (id 1). Devices that have not reported their presumed group
-- yet sit in "Unassigned" (id 2).
CREATE TABLE groups (
    id          INTEGER PRIMARY KEY,
    parent_id   INTEGER REFERENCES groups (id) ON DELETE RESTRICT,
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((id = 1) = (parent_id IS NULL))
);
CREATE UNIQUE INDEX groups_parent_name ON groups (parent_id, name);

INSERT INTO groups (id, parent_id, name) VALUES (1, NULL, 'Devices');
INSERT INTO groups (id, parent_id, name) VALUES (2, 1, 'Unassigned');

-- One row per device identity (DeviceId as the device sends it).
CREATE TABLE devices (
    id              INTEGER PRIMARY KEY,
    device_id       TEXT    NOT NULL UNIQUE,
    -- salt || HMAC-SHA256(server secret, salt || password); NULL until the device first connects
    -- (pre-registered by an admin, or reset so that it re-enrols).
    credential      BLOB,
    group_id        INTEGER NOT NULL DEFAULT 2 REFERENCES groups (id) ON DELETE RESTRICT,
    display_name    TEXT,
    -- 'active' or 'blocked'
    status          TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked')),
    first_seen      TEXT,
    last_seen       TEXT,
    last_address    TEXT,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX devices_group ON devices (group_id);
