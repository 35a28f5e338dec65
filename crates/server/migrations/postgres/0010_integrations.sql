-- A room's integrations: programs that post and read as a bot, each known
-- by the SHA-256 of its token only.
CREATE TABLE integrations (
    id        TEXT PRIMARY KEY,
    room      TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    user_name TEXT NOT NULL,
    scopes    TEXT NOT NULL,
    digest    TEXT NOT NULL,
    created   TEXT NOT NULL,
    made_by   TEXT NOT NULL
);
CREATE INDEX integrations_by_room ON integrations (room);
-- A message posted through an integration.
ALTER TABLE messages ADD COLUMN bot INTEGER NOT NULL DEFAULT 0;
