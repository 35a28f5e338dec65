-- A locked room takes no new members.
ALTER TABLE rooms ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
