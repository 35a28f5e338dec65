-- A shadow-muted member's message: its author's only.
ALTER TABLE messages ADD COLUMN shadow INTEGER NOT NULL DEFAULT 0;
