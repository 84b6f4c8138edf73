-- Presence events, device <-> cloud messages and pokes (issue 5). Timestamps are unix ms.
CREATE TABLE presences (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    imei     TEXT NOT NULL REFERENCES devices(imei),
    kind     TEXT NOT NULL,                  -- connect | disconnect | failed_connect | declare_asset
    reason   TEXT,
    protocol TEXT,
    time     INTEGER NOT NULL
);
CREATE INDEX presences_by_device_time ON presences(imei, time);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    imei        TEXT NOT NULL REFERENCES devices(imei),
    parent_id   INTEGER,
    channel     TEXT NOT NULL,
    kind        TEXT NOT NULL,               -- message | ack
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    payload     BLOB NOT NULL,
    recorded_at INTEGER,
    received_at INTEGER NOT NULL
);
CREATE INDEX messages_by_device_time ON messages(imei, received_at);

CREATE TABLE pokes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    imei        TEXT NOT NULL REFERENCES devices(imei),
    sender      TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    payload     BLOB NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX pokes_by_device_time ON pokes(imei, received_at);
