//! Integrations and pending devices (see `ekko_core::integration`).

use ekko_core::AccountId;
use ekko_core::Imei;
use ekko_core::error::StoreError;
use ekko_core::integration::{Integration, PendingDevice};
use ekko_core::ports::StoreResult;
use ekko_core::time::Timestamp;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, backend, inserted, ts};

fn integration_from_row(r: &SqliteRow) -> StoreResult<Integration> {
    let account: String = r.try_get("account").map_err(backend)?;
    Ok(Integration {
        id: r.try_get("id").map_err(backend)?,
        account: AccountId::parse(&account).map_err(|e| StoreError::Backend(e.to_string()))?,
        secret_hash: r.try_get("secret_hash").map_err(backend)?,
        created_at: ts(r.try_get("created_at").map_err(backend)?)?,
    })
}

fn pending_from_row(r: &SqliteRow) -> StoreResult<PendingDevice> {
    let imei: String = r.try_get("imei").map_err(backend)?;
    Ok(PendingDevice {
        imei: Imei::parse(&imei).map_err(|e| StoreError::Backend(e.to_string()))?,
        protocol: r.try_get("protocol").map_err(backend)?,
        first_seen: ts(r.try_get("first_seen").map_err(backend)?)?,
        last_seen: ts(r.try_get("last_seen").map_err(backend)?)?,
        attempts: r.try_get("attempts").map_err(backend)?,
    })
}

impl SqliteStore {
    pub(super) async fn insert_integration_row(&self, i: &Integration) -> StoreResult<()> {
        let r = sqlx::query(
            "INSERT INTO integrations (id, account, secret_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&i.id)
        .bind(i.account.to_string())
        .bind(&i.secret_hash)
        .bind(i.created_at.timestamp_millis())
        .execute(&self.writer)
        .await;
        inserted(r, || format!("integration {}", i.id))
    }

    pub(super) async fn integration_row(&self, id: &str) -> StoreResult<Option<Integration>> {
        sqlx::query("SELECT * FROM integrations WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .as_ref()
            .map(integration_from_row)
            .transpose()
    }

    pub(super) async fn record_pending_row(
        &self,
        imei: &Imei,
        protocol: &str,
        at: Timestamp,
        max_rows: i64,
    ) -> StoreResult<()> {
        let at = at.timestamp_millis();
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let updated = sqlx::query(
            "UPDATE pending_devices SET last_seen = max(last_seen, ?), attempts = attempts + 1 \
             WHERE imei = ? AND protocol = ?",
        )
        .bind(at)
        .bind(imei.as_str())
        .bind(protocol)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO pending_devices (imei, protocol, first_seen, last_seen, attempts) \
                 SELECT ?, ?, ?, ?, 1 WHERE (SELECT count(*) FROM pending_devices) < ?",
            )
            .bind(imei.as_str())
            .bind(protocol)
            .bind(at)
            .bind(at)
            .bind(max_rows)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    pub(super) async fn pending_rows(&self) -> StoreResult<Vec<PendingDevice>> {
        let rows = sqlx::query(
            "SELECT * FROM pending_devices p WHERE NOT EXISTS \
             (SELECT 1 FROM devices d WHERE d.imei = p.imei) \
             ORDER BY last_seen DESC, imei, protocol",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(pending_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekko_core::time::from_unix_ms;

    #[tokio::test]
    async fn pending_devices_count_attempts_and_stop_growing_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        let a = Imei::parse("490154203237518").unwrap();
        let b = Imei::parse("359881234567899").unwrap();
        let t = |ms| from_unix_ms(ms).unwrap();
        s.record_pending_row(&a, "osmand", t(1_000), 1)
            .await
            .unwrap();
        s.record_pending_row(&a, "osmand", t(2_000), 1)
            .await
            .unwrap();
        // The cap (1 row) is reached: a new IMEI is not added, a known one is still counted.
        s.record_pending_row(&b, "osmand", t(3_000), 1)
            .await
            .unwrap();
        s.record_pending_row(&a, "osmand", t(4_000), 1)
            .await
            .unwrap();
        let rows = s.pending_rows().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].imei, a);
        assert_eq!(rows[0].attempts, 3);
        assert_eq!(rows[0].first_seen, t(1_000));
        assert_eq!(rows[0].last_seen, t(4_000));
    }
}
