-- Events devices sent with PutEvents: every field of event-body, plus what the server knows of the call.
-- Unique per (device, event_id): a resend is acknowledged and stored once.
CREATE TABLE events (
    id                      INTEGER PRIMARY KEY,
    device                  INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    event_id                TEXT    NOT NULL,
    severity                INTEGER,
    product_name            TEXT,
    product_version         TEXT,
    event_type              TEXT,
    event_type_display_name TEXT,
    descr                   TEXT,
    locid                   INTEGER,
    rise_time               TEXT,
    rise_time_ms            INTEGER,
    par1 TEXT, par2 TEXT, par3 TEXT, par4 TEXT, par5 TEXT, par6 TEXT, par7 TEXT, par8 TEXT, par9 TEXT,
    -- Named parameters of the GNRL_EV_* types (seed section 9), copied out of par1..par9.
    object_name             TEXT,
    virus_name              TEXT,
    uid                     TEXT,
    user_name               TEXT,
    detection_type          TEXT,
    attack_name             TEXT,
    protocol                TEXT,
    ip_address              TEXT,
    port                    TEXT,
    -- 1 when a field was longer than its limit and was cut.
    truncated               INTEGER NOT NULL DEFAULT 0,
    -- Comma-separated wire names of fields that could not be parsed and were dropped.
    odd_fields              TEXT,
    received_at             TEXT    NOT NULL,
    source_address          TEXT    NOT NULL,
    UNIQUE (device, event_id)
);
CREATE INDEX events_received_at ON events (received_at);
CREATE INDEX events_type ON events (event_type, received_at);

-- Infection counters per device (events of type GNRL_EV_VIRUS_FOUND), kept by a trigger so that
-- they stay right whichever way events arrive.
CREATE TABLE device_infections (
    device          INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    viruses_found   INTEGER NOT NULL DEFAULT 0,
    last_virus_at   TEXT,
    last_virus_name TEXT
);
CREATE TRIGGER events_count_infections AFTER INSERT ON events
WHEN NEW.event_type = 'GNRL_EV_VIRUS_FOUND'
BEGIN
    INSERT INTO device_infections (device, viruses_found, last_virus_at, last_virus_name)
    VALUES (NEW.device, 1, NEW.received_at, NEW.virus_name)
    ON CONFLICT (device) DO UPDATE SET viruses_found = viruses_found + 1,
        last_virus_at = NEW.received_at, last_virus_name = NEW.virus_name;
END;
