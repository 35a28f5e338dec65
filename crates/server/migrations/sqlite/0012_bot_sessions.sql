-- The digest of an integration's bot session, so that revoking the
-- integration ends the session too.
ALTER TABLE integrations ADD COLUMN session TEXT;
-- The deliverer looks for events due.
CREATE INDEX hook_events_due ON hook_events (next_ms);
