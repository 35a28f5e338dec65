-- A room's outgoing webhooks, and the events queued for them (a row each,
-- gone once delivered or given up). The secret signs deliveries, so it is
-- kept as given.
CREATE TABLE webhooks (
    id      TEXT PRIMARY KEY,
    room    TEXT NOT NULL,
    url     TEXT NOT NULL,
    events  TEXT NOT NULL,
    secret  TEXT NOT NULL,
    created TEXT NOT NULL,
    made_by TEXT NOT NULL
);
CREATE INDEX webhooks_by_room ON webhooks (room);
CREATE TABLE hook_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    hook       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_ms    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX hook_events_by_hook ON hook_events (hook, id);
