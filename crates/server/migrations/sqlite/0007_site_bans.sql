-- Addresses the operator banned from the whole server: keyed hashes only.
CREATE TABLE site_bans (
    address  TEXT PRIMARY KEY,
    until_ms BIGINT,
    reason   TEXT NOT NULL,
    created  TEXT NOT NULL
);
