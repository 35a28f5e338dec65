-- Edits, replies and reactions. `edited`: when its author last edited it;
-- `reply`: the quote (JSON) of the message it answers, `reply_seq` that
-- message's seq (so that a delete can reach its quotes); `reactions`:
-- JSON; `rev`: the room's change number of its latest change.
ALTER TABLE messages ADD COLUMN edited TEXT;
ALTER TABLE messages ADD COLUMN reply TEXT;
ALTER TABLE messages ADD COLUMN reply_seq BIGINT;
ALTER TABLE messages ADD COLUMN reactions TEXT;
ALTER TABLE messages ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
-- A room's latest change number stored.
ALTER TABLE rooms ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
CREATE INDEX messages_by_reply ON messages (room, reply_seq) WHERE reply_seq IS NOT NULL;
