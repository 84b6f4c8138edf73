//! Reading a device's data back: windows of tracks in (recorded_at, id) order for keyset
//! paging, the last value of each field (`device_last_values`, migration 0006, kept up to date
//! by the track writer in `tracks_batch`), and one field's values as a series.

use ekko_core::Imei;
use ekko_core::error::StoreError;
use ekko_core::fields::FieldValue;
use ekko_core::history::{LastValue, Reading, TrackWindow};
use ekko_core::ports::StoreResult;
use ekko_core::time::Timestamp;
use ekko_core::track::{Coordinates, Track};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, backend, track_from_row, ts};

/// `[since, until)` in unix ms, open ends as the extremes, so that one indexed range query
/// serves every window.
fn bounds(since: Option<Timestamp>, until: Option<Timestamp>) -> (i64, i64) {
    (
        since.map_or(i64::MIN, |t| t.timestamp_millis()),
        until.map_or(i64::MAX, |t| t.timestamp_millis()),
    )
}

/// The window's bounds and the keyset position to continue after.
fn window_bounds(w: &TrackWindow) -> (i64, i64, i64, i64) {
    let (since, until) = bounds(w.since, w.until);
    let (after_t, after_id) = w.after.unwrap_or((i64::MIN, i64::MIN));
    (since.max(after_t), until, after_t, after_id)
}

fn field_value(json: &str) -> StoreResult<FieldValue> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Backend(format!("bad field value {json} in the database: {e}")))
}

fn last_value_from_row(r: &SqliteRow) -> StoreResult<LastValue> {
    let value: String = r.try_get("value").map_err(backend)?;
    let lat: Option<f64> = r.try_get("lat").map_err(backend)?;
    let lng: Option<f64> = r.try_get("lng").map_err(backend)?;
    Ok(LastValue {
        name: r.try_get("name").map_err(backend)?,
        value: field_value(&value)?,
        recorded_at: ts(r.try_get("recorded_at").map_err(backend)?)?,
        track_id: r.try_get("track_id").map_err(backend)?,
        coordinates: lat.zip(lng).map(|(lat, lng)| Coordinates { lat, lng }),
    })
}

impl SqliteStore {
    pub(super) async fn tracks_window(
        &self,
        imei: &Imei,
        w: &TrackWindow,
    ) -> StoreResult<Vec<Track>> {
        let (since, until, after_t, after_id) = window_bounds(w);
        // (recorded_at, id) is the index tracks_by_device_time (id is its rowid): no sort.
        sqlx::query(
            "SELECT * FROM tracks WHERE imei = ? AND recorded_at >= ? AND recorded_at < ? \
             AND (recorded_at, id) > (?, ?) ORDER BY recorded_at, id LIMIT ?",
        )
        .bind(imei.as_str())
        .bind(since)
        .bind(until)
        .bind(after_t)
        .bind(after_id)
        .bind(i64::from(w.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(track_from_row)
        .collect()
    }

    pub(super) async fn count_tracks_window(
        &self,
        imei: &Imei,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> StoreResult<u64> {
        let (since, until) = bounds(since, until);
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tracks WHERE imei = ? AND recorded_at >= ? AND recorded_at < ?",
        )
        .bind(imei.as_str())
        .bind(since)
        .bind(until)
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(n as u64)
    }

    /// The newest track with a valid fix: a position the device itself marked invalid
    /// (`GPRMC_VALID = "V"`) or a future-dated record (a wrong clock; see
    /// `TrackRecord::is_future_dated`) is skipped.
    pub(super) async fn last_positioned(&self, imei: &Imei) -> StoreResult<Option<Track>> {
        sqlx::query(
            "SELECT * FROM tracks WHERE imei = ? AND lat IS NOT NULL \
             AND recorded_at <= received_at + ? \
             AND NOT EXISTS (SELECT 1 FROM json_each(tracks.fields) f \
                 WHERE f.value ->> '$.name' = 'GPRMC_VALID' AND f.value ->> '$.value' = 'V') \
             ORDER BY recorded_at DESC, id DESC LIMIT 1",
        )
        .bind(imei.as_str())
        .bind(ekko_core::fields::FUTURE_SKEW_MS)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .as_ref()
        .map(track_from_row)
        .transpose()
    }

    pub(super) async fn last_values_of(&self, imei: &Imei) -> StoreResult<Vec<LastValue>> {
        sqlx::query("SELECT * FROM device_last_values WHERE imei = ? ORDER BY name")
            .bind(imei.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?
            .iter()
            .map(last_value_from_row)
            .collect()
    }

    pub(super) async fn readings_window(
        &self,
        imei: &Imei,
        name: &str,
        w: &TrackWindow,
    ) -> StoreResult<Vec<Reading>> {
        let (since, until, after_t, after_id) = window_bounds(w);
        let rows = sqlx::query(
            "SELECT t.id, t.recorded_at, f.value -> '$.value' AS value \
             FROM tracks t, json_each(t.fields) f \
             WHERE t.imei = ? AND t.recorded_at >= ? AND t.recorded_at < ? \
             AND (t.recorded_at, t.id) > (?, ?) AND f.value ->> '$.name' = ? \
             ORDER BY t.recorded_at, t.id LIMIT ?",
        )
        .bind(imei.as_str())
        .bind(since)
        .bind(until)
        .bind(after_t)
        .bind(after_id)
        .bind(name)
        .bind(i64::from(w.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let value: String = r.try_get("value").map_err(backend)?;
                Ok(Reading {
                    track_id: r.try_get("id").map_err(backend)?,
                    recorded_at: ts(r.try_get("recorded_at").map_err(backend)?)?,
                    value: field_value(&value)?,
                })
            })
            .collect()
    }

    pub(super) async fn count_readings_window(
        &self,
        imei: &Imei,
        name: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> StoreResult<u64> {
        let (since, until) = bounds(since, until);
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tracks t, json_each(t.fields) f \
             WHERE t.imei = ? AND t.recorded_at >= ? AND t.recorded_at < ? \
             AND f.value ->> '$.name' = ?",
        )
        .bind(imei.as_str())
        .bind(since)
        .bind(until)
        .bind(name)
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use ekko_core::fields::Field;
    use ekko_core::ports::Store;
    use ekko_core::time::{from_unix_ms, now_ms};
    use ekko_core::track::{NewTrack, TrackRecord};

    use super::*;

    /// The migration that creates `device_last_values` also fills it from the tracks stored
    /// before it; that fill and the writer's upserts must agree.
    #[tokio::test]
    async fn the_migrations_backfill_agrees_with_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        let a = crate::sqlite::test_support::account(&s, "a@b.c").await;
        let imei = crate::sqlite::test_support::device(&s, &a, "359881234567899")
            .await
            .imei;
        let track = |ms: i64, fix: bool, fields: Vec<Field>| NewTrack {
            record: TrackRecord {
                imei: imei.clone(),
                recorded_at: from_unix_ms(ms).unwrap(),
                coordinates: fix.then_some(Coordinates { lat: 1.5, lng: 2.5 }),
                fields,
            },
            dedup_key: format!("k{ms}"),
        };
        s.insert_tracks(
            vec![
                track(3_000, true, vec![Field::new("A", FieldValue::Int(3))]),
                track(
                    1_000,
                    false,
                    vec![
                        Field::new("A", FieldValue::Int(1)),
                        Field::new("B", FieldValue::Text("x\"y".into())),
                        Field::new("C", FieldValue::Float(0.25)),
                    ],
                ),
                track(2_000, true, vec![Field::new("D", FieldValue::Bool(true))]),
            ],
            now_ms(),
        )
        .await
        .unwrap();
        let by_writer = s.last_values(&imei).await.unwrap();
        assert_eq!(by_writer.len(), 4);
        assert_eq!(by_writer[0].value, FieldValue::Int(3));

        let migration = include_str!("../../migrations/0006_device_last_values.sql");
        let fill = &migration[migration.find("INSERT INTO").unwrap()..];
        let fill = &fill[..fill.find(';').unwrap()];
        sqlx::query("DELETE FROM device_last_values")
            .execute(&s.writer)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(fill.to_owned()))
            .execute(&s.writer)
            .await
            .unwrap();
        assert_eq!(s.last_values(&imei).await.unwrap(), by_writer);
    }
}
