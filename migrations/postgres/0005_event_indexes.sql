-- Events are read in arrival order, and ids follow arrival order: "since" queries walk the primary
-- key backwards and stop at the first event older than asked for, so an index on received_at only
-- slowed intake. Events of one type are found through (event_type, id), whose keys are shorter than
-- (event_type, received_at) and are appended at the end of each type's range.
DROP INDEX events_received_at;
DROP INDEX events_type;
CREATE INDEX events_type ON events (event_type, id);
