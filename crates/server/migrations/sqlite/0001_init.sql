CREATE TABLE sessions (
    token   TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name    TEXT NOT NULL
);

CREATE TABLE rooms (
    code     TEXT PRIMARY KEY,
    title    TEXT NOT NULL,
    capacity INTEGER,
    backlog  INTEGER NOT NULL,
    public   INTEGER NOT NULL,
    board    INTEGER NOT NULL,
    created  TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE messages (
    room      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    user_id   TEXT NOT NULL,
    user_name TEXT NOT NULL,
    subject   TEXT,
    body      TEXT NOT NULL,
    ts        TEXT NOT NULL,
    cid       TEXT,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;

CREATE INDEX messages_by_user ON messages (user_id, ts);

CREATE TABLE visibility (
    room     TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    from_seq INTEGER NOT NULL,
    left_at  INTEGER,
    PRIMARY KEY (room, user_id)
) WITHOUT ROWID;
