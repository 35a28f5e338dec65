-- Users removed from a room (`kick`) or banned from it: the ban as JSON
-- (who, by whom, until when, and the keyed hashes of the addresses it
-- bars; never an address itself).
CREATE TABLE room_bans (
    room    TEXT NOT NULL,
    user_id TEXT NOT NULL,
    ban     TEXT NOT NULL,
    PRIMARY KEY (room, user_id)
);
-- Keys the server makes once and keeps (the key of address hashes).
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Slow mode: the least seconds between one member's posts (0: off).
ALTER TABLE rooms ADD COLUMN slow INTEGER NOT NULL DEFAULT 0;
