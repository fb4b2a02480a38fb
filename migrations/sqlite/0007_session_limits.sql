-- A device's sessions are found by device: a new session replaces the device's oldest beyond the
-- per-device limit, and blocking or resetting a device ends them all.
CREATE INDEX sessions_device ON sessions (device);

-- Blocking a device, or resetting it so that it enrols again, ends its shared sessions at once, on
-- every node and whoever made the change (the server or an admin's SQL).
CREATE TRIGGER devices_end_sessions AFTER UPDATE OF status, credential ON devices
WHEN (NEW.status = 'blocked' AND OLD.status <> 'blocked')
  OR (NEW.credential IS NULL AND OLD.credential IS NOT NULL)
BEGIN
    DELETE FROM sessions WHERE device = NEW.id;
END;
