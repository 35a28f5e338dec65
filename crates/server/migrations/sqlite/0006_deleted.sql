-- A deleted message keeps its place as a tombstone: its text is gone.
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
