//! Batch track insertion: one transaction per batch, resends skipped by the unique
//! (imei, recorded_at, dedup_key) index (migration 0002).

use ekko_core::error::StoreError;
use ekko_core::ports::StoreResult;
use ekko_core::time::Timestamp;
use ekko_core::track::{NewTrack, Track};

use super::{SqliteStore, backend};

impl SqliteStore {
    pub(super) async fn insert_track_batch(
        &self,
        batch: &[NewTrack],
        received_at: Timestamp,
    ) -> StoreResult<Vec<Track>> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let mut stored = Vec::with_capacity(batch.len());
        for t in batch {
            let rec = &t.record;
            let fields = serde_json::to_string(&rec.fields)
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            // OR IGNORE + RETURNING yields no row when the unique key already exists.
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT OR IGNORE INTO tracks (imei, recorded_at, received_at, lat, lng, fields, dedup_key) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(rec.imei.as_str())
            .bind(rec.recorded_at.timestamp_millis())
            .bind(received_at.timestamp_millis())
            .bind(rec.coordinates.map(|c| c.lat))
            .bind(rec.coordinates.map(|c| c.lng))
            .bind(fields)
            .bind(&t.dedup_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if let Some(id) = id {
                stored.push(Track {
                    id,
                    imei: rec.imei.clone(),
                    recorded_at: rec.recorded_at,
                    received_at,
                    coordinates: rec.coordinates,
                    fields: rec.fields.clone(),
                });
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use ekko_core::account::Account;
    use ekko_core::device::Device;
    use ekko_core::fields::{Field, FieldValue};
    use ekko_core::ports::Store;
    use ekko_core::time::{from_unix_ms, now_ms};
    use ekko_core::track::TrackRecord;
    use ekko_core::{AccountId, Imei};

    use super::*;

    fn new_track(imei: &Imei, ms: i64, key: &str) -> NewTrack {
        NewTrack {
            record: TrackRecord {
                imei: imei.clone(),
                recorded_at: from_unix_ms(ms).unwrap(),
                coordinates: None,
                fields: vec![Field::new("GPS_SPEED", FieldValue::Int(ms))],
            },
            dedup_key: key.into(),
        }
    }

    async fn store_with_device() -> (tempfile::TempDir, SqliteStore, Imei) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        let owner = AccountId::new_random();
        s.insert_account(&Account {
            id: owner,
            email: "a@b.c".into(),
            full_name: "A".into(),
            password_hash: "x".into(),
            created_at: now_ms(),
            updated_at: now_ms(),
        })
        .await
        .unwrap();
        let imei = Imei::parse("359881234567899").unwrap();
        s.insert_device(&Device {
            imei: imei.clone(),
            owner,
            created_at: now_ms(),
        })
        .await
        .unwrap();
        (dir, s, imei)
    }

    #[tokio::test]
    async fn a_resent_batch_is_stored_once_and_order_is_kept() {
        let (_dir, s, imei) = store_with_device().await;
        let batch = vec![
            new_track(&imei, 3000, "c"),
            new_track(&imei, 1000, "a"),
            new_track(&imei, 2000, "b"),
        ];
        let first = s.insert_tracks(&batch, now_ms()).await.unwrap();
        assert_eq!(first.len(), 3);
        assert!(first.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(first[0].recorded_at.timestamp_millis(), 3000);
        let mut resend = batch.clone();
        resend.push(new_track(&imei, 4000, "d"));
        let second = s.insert_tracks(&resend, now_ms()).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].recorded_at.timestamp_millis(), 4000);
        assert_eq!(s.recent_tracks(&imei, 10).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_failing_batch_stores_none_of_its_records() {
        let (_dir, s, imei) = store_with_device().await;
        let unknown = Imei::parse("356307042441013").unwrap();
        let batch = [new_track(&imei, 1, "a"), new_track(&unknown, 2, "b")];
        assert!(s.insert_tracks(&batch, now_ms()).await.is_err());
        assert!(s.recent_tracks(&imei, 10).await.unwrap().is_empty());
    }
}
