CREATE TABLE sessions (
    token   TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name    TEXT NOT NULL
);

CREATE TABLE rooms (
    code     TEXT PRIMARY KEY,
    title    TEXT NOT NULL,
    capacity BIGINT,
    backlog  BIGINT NOT NULL,
    public   BIGINT NOT NULL,
    board    BIGINT NOT NULL,
    created  TEXT COLLATE "C" NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE messages (
    room      TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    user_id   TEXT NOT NULL,
    user_name TEXT NOT NULL,
    subject   TEXT,
    body      TEXT NOT NULL,
    ts        TEXT COLLATE "C" NOT NULL,
    cid       TEXT,
    PRIMARY KEY (room, seq)
);

CREATE INDEX messages_by_user ON messages (user_id, ts);

CREATE TABLE visibility (
    room     TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    from_seq BIGINT NOT NULL,
    left_at  BIGINT,
    PRIMARY KEY (room, user_id)
);
