-- The last value of each field per device. Devices send a field only when it changes, so a
-- field's current value can be arbitrarily old: it is kept here, updated in the transaction
-- that stores the track, instead of being searched for in the device's history.
CREATE TABLE device_last_values (
    imei        TEXT NOT NULL REFERENCES devices(imei),
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,               -- the field's JSON value
    recorded_at INTEGER NOT NULL,
    track_id    INTEGER NOT NULL,
    lat         REAL,
    lng         REAL,
    PRIMARY KEY (imei, name)
) WITHOUT ROWID;

-- Filled from the tracks stored before this migration: per (device, field), the value of the
-- most recently recorded track that carries it (300000 ms: ekko_core::fields::FUTURE_SKEW_MS).
INSERT INTO device_last_values (imei, name, value, recorded_at, track_id, lat, lng)
SELECT imei, name, value, recorded_at, id, lat, lng FROM (
    SELECT t.imei, t.recorded_at, t.id, t.lat, t.lng,
           f.value ->> '$.name' AS name,
           f.value -> '$.value' AS value,
           ROW_NUMBER() OVER (
               PARTITION BY t.imei, f.value ->> '$.name'
               ORDER BY t.recorded_at DESC, t.id DESC
           ) AS newest
    FROM tracks t, json_each(t.fields) f
    -- a future-dated record (a wrong device clock) is never the current state
    WHERE t.recorded_at <= t.received_at + 300000
)
WHERE newest = 1 AND name IS NOT NULL;

-- Tracks of one device carrying one field are found through json_each on the device's window
-- (tracks_by_device_time); no extra index is needed for that.
