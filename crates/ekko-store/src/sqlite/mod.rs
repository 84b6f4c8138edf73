//! SQLite implementation of the Store port.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ekko_core::account::Account;
use ekko_core::device::{Device, NewDevice};
use ekko_core::error::StoreError;
use ekko_core::fields::Field;
use ekko_core::history::{LastValue, Reading, TrackWindow};
use ekko_core::notification::{DeviceMessage, NewMessage, NewPoke, NewPresence, Poke, Presence};
use ekko_core::ports::{RefreshTokenRecord, RotateOutcome, Store, StoreResult};
use ekko_core::time::{Timestamp, from_unix_ms};
use ekko_core::track::{Coordinates, Track, TrackRecord};
use ekko_core::{AccountId, Imei};
use fleet::{account_from_row, device_from_row};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, migrate::Migrator};

mod connect;
mod events;
mod fleet;
mod history;
mod integrations;
mod tracks_batch;
mod writer;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "ekko.db";

#[derive(Clone)]
pub struct SqliteStore {
    /// One connection: SQLite has one writer anyway, and a single connection means our own
    /// writes never contend with each other (only with other processes, via busy_timeout).
    writer: SqlitePool,
    reader: SqlitePool,
    /// Hot writes (tracks, refresh rotation) go through one task that group-commits
    /// concurrent jobs (`writer`).
    group: writer::GroupWriter,
    /// Grows by one byte per device change, by whichever process made it: its length is the
    /// change stamp other processes compare (`Store::device_change_stamp`).
    device_changes: Arc<PathBuf>,
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The outcome of an INSERT into a table with a unique key: a duplicate is a `Conflict`
/// naming `what`, any other failure a backend error.
fn inserted<T>(result: Result<T, sqlx::Error>, what: impl FnOnce() -> String) -> StoreResult<()> {
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            Err(StoreError::Conflict(what()))
        }
        Err(e) => Err(backend(e)),
    }
}

fn ts(ms: i64) -> StoreResult<Timestamp> {
    from_unix_ms(ms)
        .ok_or_else(|| StoreError::Backend(format!("bad timestamp {ms} in the database")))
}

impl SqliteStore {
    /// Opens (creating if needed) `DIR/ekko.db` and applies pending migrations.
    pub async fn open(data_dir: &Path) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(backend)?
            .filename(data_dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Two processes opening a new database at once (`serve` starting while an admin command
        // runs) would both apply the first migration and one would fail, or one would find the
        // file locked while the other turns it to WAL: SQLite has no lock for that, so a lock
        // file next to the database serializes opening, up to the end of the migrations.
        let opening = lock_for_opening(data_dir).await?;
        // Statement journals (a multi-row INSERT inside a transaction keeps one, so that it can
        // be undone alone) stay in memory instead of spilling to a temporary file.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone().pragma("temp_store", "memory"))
            .await
            .map_err(backend)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating the database: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await
            .map_err(backend)?;
        drop(opening);
        let group = writer::GroupWriter::start(writer.clone());
        Ok(SqliteStore {
            writer,
            reader,
            group,
            device_changes: Arc::new(data_dir.join(format!("{DB_FILE}.device-changes"))),
        })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Waits for (and holds, until dropped) the lock that serializes opening the database.
async fn lock_for_opening(data_dir: &Path) -> StoreResult<std::fs::File> {
    let path = data_dir.join(format!("{DB_FILE}.open-lock"));
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        file.lock()
            .map_err(|e| StoreError::Backend(format!("locking {}: {e}", path.display())))?;
        Ok(file)
    })
    .await
    .map_err(|e| StoreError::Backend(format!("waiting for the database's open lock: {e}")))?
}

fn track_from_row(r: &SqliteRow) -> StoreResult<Track> {
    let imei: String = r.try_get("imei").map_err(backend)?;
    let lat: Option<f64> = r.try_get("lat").map_err(backend)?;
    let lng: Option<f64> = r.try_get("lng").map_err(backend)?;
    let fields: String = r.try_get("fields").map_err(backend)?;
    Ok(Track {
        id: r.try_get("id").map_err(backend)?,
        imei: Imei::parse(&imei).map_err(|e| StoreError::Backend(e.to_string()))?,
        recorded_at: ts(r.try_get("recorded_at").map_err(backend)?)?,
        received_at: ts(r.try_get("received_at").map_err(backend)?)?,
        coordinates: lat.zip(lng).map(|(lat, lng)| Coordinates { lat, lng }),
        fields: serde_json::from_str::<Vec<Field>>(&fields)
            .map_err(|e| StoreError::Backend(e.to_string()))?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn announce_device_change(&self) {
        // An append is seen at once by every process (no fsync: after a crash every process
        // starts with an empty device cache anyway).
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.device_changes.as_path())
            .and_then(|mut f| f.write_all(b"."));
        if let Err(e) = appended {
            tracing::warn!(file = %self.device_changes.display(), error = %e,
                "cannot announce a device change; a running `ekko serve` sees it within a second");
        }
    }

    fn device_change_stamp(&self) -> u64 {
        // One stat(2) per lookup, far cheaper than a read through the pool.
        std::fs::metadata(self.device_changes.as_path()).map_or(0, |m| m.len())
    }

    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<Account>> {
        sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .as_ref()
            .map(account_from_row)
            .transpose()
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        sqlx::query("SELECT * FROM accounts WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .as_ref()
            .map(account_from_row)
            .transpose()
    }

    async fn insert_device(&self, d: &NewDevice, by: AccountId) -> StoreResult<Device> {
        self.insert_new_device(d, by).await
    }

    async fn device_by_imei(&self, imei: &Imei) -> StoreResult<Option<Device>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE d.imei = ?",
            fleet::DEVICE_SELECT
        )))
        .bind(imei.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .as_ref()
        .map(device_from_row)
        .transpose()
    }

    async fn set_device_secret_hash(&self, imei: &Imei, hash: Option<&str>) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET secret_hash = ? WHERE imei = ?")
            .bind(hash)
            .bind(imei.as_str())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn device_secret_hash(&self, imei: &Imei) -> StoreResult<Option<String>> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT secret_hash FROM devices WHERE imei = ?")
                .bind(imei.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
        Ok(hash.flatten())
    }

    async fn tracks_in_window(&self, imei: &Imei, window: &TrackWindow) -> StoreResult<Vec<Track>> {
        self.tracks_window(imei, window).await
    }

    async fn count_tracks(
        &self,
        imei: &Imei,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> StoreResult<u64> {
        self.count_tracks_window(imei, since, until).await
    }

    async fn last_positioned_track(&self, imei: &Imei) -> StoreResult<Option<Track>> {
        self.last_positioned(imei).await
    }

    async fn last_values(&self, imei: &Imei) -> StoreResult<Vec<LastValue>> {
        self.last_values_of(imei).await
    }

    async fn readings(
        &self,
        imei: &Imei,
        name: &str,
        window: &TrackWindow,
    ) -> StoreResult<Vec<Reading>> {
        self.readings_window(imei, name, window).await
    }

    async fn count_readings(
        &self,
        imei: &Imei,
        name: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> StoreResult<u64> {
        self.count_readings_window(imei, name, since, until).await
    }

    async fn insert_track(&self, rec: &TrackRecord, received_at: Timestamp) -> StoreResult<Track> {
        self.insert_one_track(rec, received_at).await
    }

    async fn recent_tracks(&self, imei: &Imei, limit: u32) -> StoreResult<Vec<Track>> {
        let rows = sqlx::query(
            "SELECT * FROM tracks WHERE imei = ? ORDER BY recorded_at DESC, id DESC LIMIT ?",
        )
        .bind(imei.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(track_from_row).collect()
    }

    async fn insert_tracks(
        &self,
        batch: Vec<ekko_core::track::NewTrack>,
        received_at: Timestamp,
    ) -> StoreResult<Vec<Track>> {
        self.insert_track_batch(batch, received_at).await
    }

    async fn insert_presence(&self, p: &NewPresence) -> StoreResult<Presence> {
        self.insert_presence_row(p).await
    }

    async fn insert_message(
        &self,
        m: &NewMessage,
        received_at: Timestamp,
    ) -> StoreResult<DeviceMessage> {
        self.insert_message_row(m, received_at).await
    }

    async fn insert_poke(&self, p: &NewPoke, received_at: Timestamp) -> StoreResult<Poke> {
        self.insert_poke_row(p, received_at).await
    }

    async fn insert_integration(&self, i: &ekko_core::integration::Integration) -> StoreResult<()> {
        self.insert_integration_row(i).await
    }

    async fn integration_by_id(
        &self,
        id: &str,
    ) -> StoreResult<Option<ekko_core::integration::Integration>> {
        self.integration_row(id).await
    }

    async fn record_pending_device(
        &self,
        imei: &Imei,
        protocol: &str,
        at: Timestamp,
        max_rows: i64,
    ) -> StoreResult<()> {
        self.record_pending_row(imei, protocol, at, max_rows).await
    }

    async fn pending_devices(&self) -> StoreResult<Vec<ekko_core::integration::PendingDevice>> {
        self.pending_rows().await
    }

    async fn insert_refresh_token(&self, t: &RefreshTokenRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO refresh_tokens (token_hash, family, account, scope, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&t.token_hash)
            .bind(&t.family)
            .bind(t.account.to_string())
            .bind(&t.scope)
            .bind(t.created_at.timestamp_millis())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        presented: &str,
        replacement: &RefreshTokenRecord,
    ) -> StoreResult<RotateOutcome> {
        let now = replacement.created_at.timestamp_millis();
        let mut tx = self.writer.begin().await.map_err(backend)?;
        // The conditional UPDATE is the atomic check-and-spend: of two concurrent rotations,
        // exactly one sees rows_affected == 1.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = ? WHERE token_hash = ? AND spent_at IS NULL AND revoked_at IS NULL \
             RETURNING family, account, scope",
        )
        .bind(now)
        .bind(presented)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let outcome = if let Some(row) = spent {
            let family: String = row.try_get("family").map_err(backend)?;
            let account: String = row.try_get("account").map_err(backend)?;
            let scope: String = row.try_get("scope").map_err(backend)?;
            sqlx::query("INSERT INTO refresh_tokens (token_hash, family, account, scope, created_at) VALUES (?, ?, ?, ?, ?)")
                .bind(&replacement.token_hash)
                .bind(&family)
                .bind(&account)
                .bind(&scope)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            RotateOutcome::Rotated {
                account: AccountId::parse(&account)
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
                scope,
            }
        } else {
            let family: Option<String> =
                sqlx::query_scalar("SELECT family FROM refresh_tokens WHERE token_hash = ?")
                    .bind(presented)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
            match family {
                Some(family) => {
                    sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL")
                        .bind(now)
                        .bind(family)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                    RotateOutcome::Reused
                }
                None => RotateOutcome::Unknown,
            }
        };
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }
}

/// Fixtures for the store's own tests.
#[cfg(test)]
pub(crate) mod test_support {
    use ekko_core::account::{Account, NewAccount};
    use ekko_core::device::{Device, NewDevice};
    use ekko_core::ports::{FleetStore, Store};
    use ekko_core::time::now_ms;
    use ekko_core::{AccountId, Imei};

    use super::SqliteStore;

    /// A new account (with its organization and root group).
    pub async fn account(s: &SqliteStore, email: &str) -> Account {
        s.insert_account(&new_account(email), "Org").await.unwrap()
    }

    pub fn new_account(email: &str) -> NewAccount {
        NewAccount {
            id: AccountId::new_random(),
            email: email.into(),
            full_name: "A".into(),
            password_hash: "x".into(),
            created_at: now_ms(),
        }
    }

    /// A device in the root group of `owner`'s organization.
    pub async fn device(s: &SqliteStore, owner: &Account, imei: &str) -> Device {
        let root = s.root_group(owner.organization).await.unwrap().unwrap();
        s.insert_device(
            &NewDevice {
                imei: Imei::parse(imei).unwrap(),
                group: root.id,
                name: None,
                serial: None,
                created_at: now_ms(),
            },
            owner.id,
        )
        .await
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekko_core::fields::FieldValue;
    use ekko_core::time::now_ms;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        (dir, s)
    }

    use super::test_support::{account, device, new_account};
    use ekko_core::ports::FleetStore;

    #[tokio::test]
    async fn duplicate_email_is_a_conflict() {
        let (_d, s) = store().await;
        account(&s, "a@b.c").await;
        assert!(matches!(
            s.insert_account(&new_account("a@b.c"), "Org").await,
            Err(StoreError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn track_round_trips_with_typed_fields_and_no_fix() {
        let (_d, s) = store().await;
        let a = account(&s, "a@b.c").await;
        let imei = device(&s, &a, "359881234567899").await.imei;
        let rec = TrackRecord {
            imei: imei.clone(),
            recorded_at: now_ms(),
            coordinates: None,
            fields: vec![
                Field::new("GPS_SPEED", FieldValue::Int(1200)),
                Field::new("X", FieldValue::Float(1.5)),
                Field::new("Y", FieldValue::Bool(true)),
                Field::new("Z", FieldValue::Text("A".into())),
            ],
        };
        let stored = s.insert_track(&rec, now_ms()).await.unwrap();
        let back = s.recent_tracks(&imei, 10).await.unwrap();
        assert_eq!(back, vec![stored]);
    }

    #[tokio::test]
    async fn refresh_rotation_is_single_use_and_reuse_revokes_the_family() {
        let (_d, s) = store().await;
        let a = account(&s, "a@b.c").await;
        let rec = |h: &str| RefreshTokenRecord {
            token_hash: h.into(),
            family: "f".into(),
            account: a.id,
            scope: "public".into(),
            created_at: now_ms(),
        };
        s.insert_refresh_token(&rec("t1")).await.unwrap();
        assert!(matches!(
            s.rotate_refresh_token("t1", &rec("t2")).await.unwrap(),
            RotateOutcome::Rotated { .. }
        ));
        assert_eq!(
            s.rotate_refresh_token("t1", &rec("t3")).await.unwrap(),
            RotateOutcome::Reused
        );
        // The family is revoked: t2 no longer works either.
        assert_eq!(
            s.rotate_refresh_token("t2", &rec("t4")).await.unwrap(),
            RotateOutcome::Reused
        );
        assert_eq!(
            s.rotate_refresh_token("nope", &rec("t5")).await.unwrap(),
            RotateOutcome::Unknown
        );
    }

    #[tokio::test]
    async fn concurrent_rotations_of_one_token_let_exactly_one_win() {
        let (_d, s) = store().await;
        let a = account(&s, "a@b.c").await;
        let rec = |h: String| RefreshTokenRecord {
            token_hash: h,
            family: "f".into(),
            account: a.id,
            scope: "public".into(),
            created_at: now_ms(),
        };
        s.insert_refresh_token(&rec("t".into())).await.unwrap();
        let mut handles = Vec::new();
        for i in 0..8 {
            let s = s.clone();
            let r = rec(format!("n{i}"));
            handles.push(tokio::spawn(async move {
                s.rotate_refresh_token("t", &r).await.unwrap()
            }));
        }
        let mut wins = 0;
        for h in handles {
            if matches!(h.await.unwrap(), RotateOutcome::Rotated { .. }) {
                wins += 1;
            }
        }
        assert_eq!(wins, 1);
    }

    #[tokio::test]
    async fn a_device_change_announced_by_one_process_moves_the_stamp_every_process_sees() {
        let (dir, serve) = store().await;
        let admin = SqliteStore::open(dir.path()).await.unwrap();
        let before = serve.device_change_stamp();
        assert_eq!(before, admin.device_change_stamp());
        admin.announce_device_change();
        let after = serve.device_change_stamp();
        assert_ne!(after, before);
        serve.announce_device_change();
        assert_ne!(admin.device_change_stamp(), after);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_opening_a_new_database_at_once_all_succeed() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let opens: Vec<_> = (0..4)
                .map(|_| {
                    let path = dir.path().to_owned();
                    tokio::spawn(async move { SqliteStore::open(&path).await.map(|_| ()) })
                })
                .collect();
            for open in opens {
                open.await.unwrap().unwrap();
            }
        }
    }
}
