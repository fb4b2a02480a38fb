-- Which server node drives each export sink, until when (several nodes on one database).
CREATE TABLE sink_leases (
    sink       TEXT PRIMARY KEY,
    holder     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
