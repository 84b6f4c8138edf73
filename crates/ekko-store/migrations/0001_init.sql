-- Ekko schema v1. Timestamps are unix milliseconds (UTC).
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,          -- UUID, lower-case hyphenated
    email         TEXT NOT NULL UNIQUE,      -- normalized (lower-case)
    full_name     TEXT NOT NULL,
    password_hash TEXT NOT NULL,             -- argon2id PHC string
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE devices (
    imei       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL REFERENCES accounts(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX devices_by_owner ON devices(owner);

CREATE TABLE tracks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    imei        TEXT NOT NULL REFERENCES devices(imei),
    recorded_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    lat         REAL,
    lng         REAL,
    fields      TEXT NOT NULL                -- JSON array of {name, value}
);
CREATE INDEX tracks_by_device_time ON tracks(imei, recorded_at);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,             -- SHA-256 hex of the opaque token
    family     TEXT NOT NULL,
    account    TEXT NOT NULL REFERENCES accounts(id),
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    spent_at   INTEGER,                      -- set when rotated
    revoked_at INTEGER                       -- set when its family is revoked
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens(family);
