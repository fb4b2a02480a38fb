-- The writer counts viruses found as it stores events (src/store/sqlite.rs), in the same savepoint as
-- the rows. A trigger on events made every one-row INSERT open a statement journal of its own, which
-- halved event intake. PostgreSQL keeps its trigger: its multi-row INSERTs pay that cost once.
DROP TRIGGER events_count_infections;
