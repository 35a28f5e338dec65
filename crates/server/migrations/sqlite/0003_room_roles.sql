-- A room's owner and moderators (a user not listed is a plain member).
CREATE TABLE room_roles (
    room    TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role    TEXT NOT NULL,
    PRIMARY KEY (room, user_id)
);
