-- Resends are recognised by the writer's lookup instead of a unique index. The single writer
-- looks every incoming (imei, recorded_at) up through tracks_by_device_time and compares the
-- stored dedup_key inside the same write transaction (a concurrent writer in another process
-- makes that transaction fail with SQLITE_BUSY_SNAPSHOT rather than see stale rows), so the
-- unique index only duplicated tracks_by_device_time with a 64-character key on every row:
-- about a third of the B-tree work per stored record.
DROP INDEX tracks_dedup;
