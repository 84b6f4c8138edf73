-- Resent device records are stored once: a record is identified by its device, its recorded_at
-- and a hash of its content as the device sent it (computed by the domain). Tracks stored
-- before this migration (and by single-record ingestion) have a NULL key and never conflict.
ALTER TABLE tracks ADD COLUMN dedup_key TEXT;
CREATE UNIQUE INDEX tracks_dedup ON tracks(imei, recorded_at, dedup_key);
