-- Finds a message by its author's client message id, so that a retried
-- post is never stored twice (see `append`).
CREATE INDEX messages_by_cid ON messages (room, user_id, cid) WHERE cid IS NOT NULL;
