-- Group and device settings changes appear on the bus whoever makes them, hand edits in SQL
-- included, for the live API's `mdm/group` and `mdm/settings` events.
CREATE FUNCTION group_on_bus() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (topic, object_id)
    VALUES ('group.changed', (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER groups_on_bus AFTER INSERT OR UPDATE OR DELETE ON groups
FOR EACH ROW EXECUTE FUNCTION group_on_bus();

-- Settings an admin wants pushed: each change bumps pending_rev (a device's own reports do not).
CREATE FUNCTION settings_on_bus() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (topic, object_id)
    VALUES ('settings.changed', (SELECT device_id FROM devices WHERE id = NEW.device));
    RETURN NULL;
END;
$$;
CREATE TRIGGER settings_insert_on_bus AFTER INSERT ON device_settings
FOR EACH ROW WHEN (NEW.pending IS NOT NULL) EXECUTE FUNCTION settings_on_bus();
CREATE TRIGGER settings_update_on_bus AFTER UPDATE OF pending_rev ON device_settings
FOR EACH ROW WHEN (NEW.pending_rev IS DISTINCT FROM OLD.pending_rev)
EXECUTE FUNCTION settings_on_bus();
