-- Service consoles (seed 000): each registration for one product name and version, live until
-- `expires_at` (a polling console renews it when it retrieves, a WebSocket console's node while the
-- connection lasts).
CREATE TABLE backend_consoles (
    id           TEXT        PRIMARY KEY,
    account      TEXT        NOT NULL,
    -- `poll` (REST event polling) or `live` (pushed over the WebSocket API).
    channel      TEXT        NOT NULL CHECK (channel IN ('poll', 'live')),
    -- For `live`: the node that holds the connection, and the live session.
    node         TEXT,
    session      TEXT,
    prod_name    TEXT        NOT NULL,
    prod_version TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    -- Commands given so far: the next command goes to the console with the fewest.
    assigned     BIGINT      NOT NULL DEFAULT 0
);
CREATE INDEX backend_consoles_product ON backend_consoles (prod_name, prod_version);

-- Product backend commands: what an initiator asked, the console it was given to, and how it ended.
CREATE TABLE backend_commands (
    id              TEXT        PRIMARY KEY,
    name            TEXT        NOT NULL,
    prod_name       TEXT        NOT NULL,
    prod_version    TEXT        NOT NULL,
    -- CMD_PARAMS in the API's typed encoding.
    params          JSONB       NOT NULL,
    state           TEXT        NOT NULL CHECK (state IN ('pending', 'delivered', 'done', 'failed')),
    initiator       TEXT        NOT NULL,
    console         TEXT,
    console_account TEXT,
    -- The result container (done) or the error container (failed).
    result          JSONB,
    error           JSONB,
    created_at      TIMESTAMPTZ NOT NULL,
    deadline        TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ,
    ended_at        TIMESTAMPTZ
);
CREATE INDEX backend_commands_created ON backend_commands (created_at);
CREATE INDEX backend_commands_open ON backend_commands (state) WHERE state IN ('pending', 'delivered');
