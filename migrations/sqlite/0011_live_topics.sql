-- Group and device settings changes appear on the bus whoever makes them, hand edits in SQL
-- included, for the live API's `mdm/group` and `mdm/settings` events.
CREATE TRIGGER groups_insert_bus AFTER INSERT ON groups
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'group.changed', NEW.id);
END;
CREATE TRIGGER groups_update_bus AFTER UPDATE ON groups
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'group.changed', NEW.id);
END;
CREATE TRIGGER groups_delete_bus AFTER DELETE ON groups
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'group.changed', OLD.id);
END;
-- Settings an admin wants pushed: each change bumps pending_rev (a device's own reports do not).
CREATE TRIGGER settings_insert_bus AFTER INSERT ON device_settings WHEN NEW.pending IS NOT NULL
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'settings.changed',
            (SELECT device_id FROM devices WHERE id = NEW.device));
END;
CREATE TRIGGER settings_update_bus AFTER UPDATE OF pending_rev ON device_settings
WHEN NEW.pending_rev IS NOT OLD.pending_rev
BEGIN
    INSERT INTO outbox (seq, topic, object_id)
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), 'settings.changed',
            (SELECT device_id FROM devices WHERE id = NEW.device));
END;
