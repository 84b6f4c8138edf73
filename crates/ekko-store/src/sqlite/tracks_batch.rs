//! Track insertion through the group-commit writer (`writer`).
//!
//! Every track write (a single OsmAnd record or a whole Teltonika packet) is one writer job:
//! concurrent devices share one commit, and each caller is answered only after that commit, so
//! "acknowledged only after the records are durable" holds per job. The caller does the
//! per-record work (JSON of the fields) before queueing, so the single writer task only runs
//! SQL. Resends are found by looking their (imei, recorded_at) up in `tracks_by_device_time`
//! and comparing the stored `dedup_key`, inside the write transaction (migration 0009 explains
//! why this replaced a unique index).
//!
//! Every multi-row statement here has one of a few fixed sizes ([`STATEMENT_ROWS`]), so each is
//! prepared once and then taken from the connection's statement cache: preparing a statement of
//! hundreds of placeholders for each group cost more than running it.

use std::collections::{HashMap, HashSet};

use ekko_core::error::StoreError;
use ekko_core::fields::Field;
use ekko_core::ports::StoreResult;
use ekko_core::time::Timestamp;
use ekko_core::track::{NewTrack, Track, TrackRecord};
use sqlx::SqliteConnection;

use super::{SqliteStore, backend};

/// Rows per multi-row INSERT: 7 parameters a row stays far below SQLite's 32 766.
const ROWS_PER_STATEMENT: usize = 256;

/// The sizes of multi-row statements, largest first (the first is [`ROWS_PER_STATEMENT`]).
const STATEMENT_ROWS: [usize; 5] = [ROWS_PER_STATEMENT, 64, 16, 4, 1];

/// Splits `items` into chunks of the sizes of [`STATEMENT_ROWS`]: as many large ones as fit,
/// then smaller ones for the rest, so that every statement's text is one of five.
fn fixed_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = STATEMENT_ROWS.into_iter().find(|s| *s <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// A row as the writer stores it: everything already serialized by the caller.
struct Row7 {
    imei: String,
    recorded_at: i64,
    lat: Option<f64>,
    lng: Option<f64>,
    fields: String,
    /// `None` for single-record ingestion (no de-duplication: the unique index never matches).
    dedup_key: Option<String>,
    /// The names of the fields, for `device_last_values`, one after the other (`name_ends`:
    /// where each ends); empty for a record that must not become current state. A value is
    /// serialized only for the rows that end up newest (read back from `fields`), not for all.
    names: String,
    name_ends: Vec<u32>,
}

impl Row7 {
    fn names(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.name_ends.iter().map(move |&end| {
            let name = &self.names[start..end as usize];
            start = end as usize;
            name
        })
    }
}

/// FNV-1a: the maps here are keyed by short strings (IMEIs, field names, de-duplication keys)
/// chosen by our own devices' records, rebuilt for every group; SipHash cost more than the map.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

/// Appends `rows` groups of seven `?` placeholders (the multi-row statements here all bind seven
/// values a row). Only placeholders go into the SQL text: values are always bound.
fn push_row_placeholders(sql: &mut String, rows: usize) {
    for i in 0..rows {
        sql.push_str(if i == 0 {
            "(?,?,?,?,?,?,?)"
        } else {
            ",(?,?,?,?,?,?,?)"
        });
    }
}

/// A track write as the writer task receives it: the rows, already serialized by the caller.
pub(super) struct TrackJob {
    rows: Vec<Row7>,
    received_at: i64,
}

impl TrackJob {
    pub(super) fn rows(&self) -> usize {
        self.rows.len()
    }
}

/// Stores `rows` in the next group commit; for each row, the id it was stored under, or
/// `None` for a resend that was skipped.
async fn write(
    store: &SqliteStore,
    rows: Vec<Row7>,
    received_at: Timestamp,
) -> StoreResult<Vec<Option<i64>>> {
    let received_at = received_at.timestamp_millis();
    store.group.run_tracks(TrackJob { rows, received_at }).await
}

/// Writes one job alone (the writer's fallback when a merged write failed): `INSERT OR IGNORE
/// … RETURNING` for de-duplicated rows, then the job's last values.
pub(super) async fn write_one(
    conn: &mut SqliteConnection,
    job: &TrackJob,
) -> StoreResult<Vec<Option<i64>>> {
    insert_rows(conn, &job.rows, job.received_at).await
}

fn row_of(record: &TrackRecord, dedup_key: Option<&str>) -> StoreResult<Row7> {
    Ok(Row7 {
        imei: record.imei.as_str().to_owned(),
        recorded_at: record.recorded_at.timestamp_millis(),
        lat: record.coordinates.map(|c| c.lat),
        lng: record.coordinates.map(|c| c.lng),
        fields: serde_json::to_string(&record.fields)
            .map_err(|e| StoreError::Backend(e.to_string()))?,
        dedup_key: dedup_key.map(str::to_owned),
        // A future-dated record never becomes the current state (TrackRecord::is_future_dated).
        names: if record.is_future_dated() {
            String::new()
        } else {
            record.fields.iter().map(|f| f.name.as_str()).collect()
        },
        name_ends: if record.is_future_dated() {
            Vec::new()
        } else {
            record
                .fields
                .iter()
                .scan(0u32, |end, f| {
                    *end += f.name.len() as u32;
                    Some(*end)
                })
                .collect()
        },
    })
}

fn stored_track(record: TrackRecord, id: i64, received_at: Timestamp) -> Track {
    Track {
        id,
        imei: record.imei,
        recorded_at: record.recorded_at,
        received_at,
        coordinates: record.coordinates,
        fields: record.fields,
    }
}

impl SqliteStore {
    pub(super) async fn insert_one_track(
        &self,
        record: &TrackRecord,
        received_at: Timestamp,
    ) -> StoreResult<Track> {
        let ids = write(self, vec![row_of(record, None)?], received_at).await?;
        match ids.first() {
            Some(Some(id)) => Ok(stored_track(record.clone(), *id, received_at)),
            _ => Err(StoreError::Backend("the track was not stored".into())),
        }
    }

    pub(super) async fn insert_track_batch(
        &self,
        batch: Vec<NewTrack>,
        received_at: Timestamp,
    ) -> StoreResult<Vec<Track>> {
        let rows = batch
            .iter()
            .map(|t| row_of(&t.record, Some(&t.dedup_key)))
            .collect::<StoreResult<Vec<_>>>()?;
        let ids = write(self, rows, received_at).await?;
        Ok(batch
            .into_iter()
            .zip(ids)
            .filter_map(|(t, id)| id.map(|id| stored_track(t.record, id, received_at)))
            .collect())
    }
}

/// Writes the rows one statement each, with the resends skipped: the slow path, taken only
/// when the merged write of a group failed, so that each job fails alone (with SQLite's own
/// error, say a device deleted meanwhile).
async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[Row7],
    received_at: i64,
) -> StoreResult<Vec<Option<i64>>> {
    let with_time: Vec<(&Row7, i64)> = rows.iter().map(|r| (r, received_at)).collect();
    let fresh = fresh_rows(conn, &with_time).await?;
    let mut ids = Vec::with_capacity(rows.len());
    for (r, fresh) in rows.iter().zip(fresh) {
        if !fresh {
            ids.push(None);
            continue;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tracks (imei, recorded_at, received_at, lat, lng, fields, dedup_key) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&r.imei)
        .bind(r.recorded_at)
        .bind(received_at)
        .bind(r.lat)
        .bind(r.lng)
        .bind(&r.fields)
        .bind(&r.dedup_key)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        ids.push(Some(id));
    }
    let rows: Vec<&Row7> = rows.iter().collect();
    update_last_values(conn, &rows, &ids).await?;
    Ok(ids)
}

/// For each row: is it to be written? Not if it is a resend — its (imei, recorded_at,
/// dedup_key) is stored already or appears earlier among `rows`. Rows without a key (single
/// records) are always written.
async fn fresh_rows(conn: &mut SqliteConnection, rows: &[(&Row7, i64)]) -> StoreResult<Vec<bool>> {
    let stored = already_stored(conn, rows).await?;
    let mut seen: HashSet<(&str, i64, &str), FnvBuild> =
        HashSet::with_capacity_and_hasher(rows.len(), FnvBuild::default());
    Ok(rows
        .iter()
        .map(|(r, _)| match &r.dedup_key {
            None => true,
            Some(k) => {
                let key = (r.imei.as_str(), r.recorded_at, k.as_str());
                !stored.contains(&key) && seen.insert(key)
            }
        })
        .collect())
}

/// Moves each (device, field) of the stored rows to its newest value: one row per pair however
/// many records of the job carry it, and an older record (a device's buffered backlog) never
/// replaces a newer value — the upsert compares (recorded_at, track id).
async fn update_last_values(
    conn: &mut SqliteConnection,
    rows: &[&Row7],
    ids: &[Option<i64>],
) -> StoreResult<()> {
    #[derive(Clone, Copy)]
    struct Newest {
        recorded_at: i64,
        id: i64,
        row: usize,
    }
    let mut newest: HashMap<(&str, &str), Newest, FnvBuild> = HashMap::default();
    for (row, (r, id)) in rows.iter().zip(ids).enumerate() {
        let Some(id) = *id else { continue };
        for name in r.names() {
            let candidate = Newest {
                recorded_at: r.recorded_at,
                id,
                row,
            };
            newest
                .entry((r.imei.as_str(), name))
                .and_modify(|n| {
                    if (candidate.recorded_at, candidate.id) > (n.recorded_at, n.id) {
                        *n = candidate;
                    }
                })
                .or_insert(candidate);
        }
    }
    // The values of the newest rows only, read back from their fields' JSON (what the track
    // stores); a name repeated within a record keeps its first value.
    let mut parsed: HashMap<usize, Vec<Field>, FnvBuild> = HashMap::default();
    let mut newest: Vec<((&str, &str), Newest, String)> = newest
        .into_iter()
        .map(|(key, n)| {
            let fields = match parsed.entry(n.row) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    serde_json::from_str::<Vec<Field>>(&rows[n.row].fields)
                        .map_err(|e| StoreError::Backend(e.to_string()))?,
                ),
            };
            let value = fields
                .iter()
                .find(|f| f.name == key.1)
                .map(|f| serde_json::to_string(&f.value))
                .transpose()
                .map_err(|e| StoreError::Backend(e.to_string()))?
                .ok_or_else(|| StoreError::Backend("a field went missing".into()))?;
            Ok((key, n, value))
        })
        .collect::<StoreResult<_>>()?;
    // A stable order of statements (and of the rows they lock) from one group to the next.
    newest.sort_unstable_by(|a, b| a.0.cmp(&b.0));

    for chunk in fixed_chunks(&newest) {
        let mut sql = String::from(
            "INSERT INTO device_last_values (imei, name, value, recorded_at, track_id, lat, lng) VALUES ",
        );
        push_row_placeholders(&mut sql, chunk.len());
        sql.push_str(
            " ON CONFLICT (imei, name) DO UPDATE SET value = excluded.value, \
             recorded_at = excluded.recorded_at, track_id = excluded.track_id, \
             lat = excluded.lat, lng = excluded.lng \
             WHERE (excluded.recorded_at, excluded.track_id) > \
             (device_last_values.recorded_at, device_last_values.track_id)",
        );
        // Only placeholders are appended to the literal: the values are bound, never spliced.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((imei, name), n, value) in chunk {
            let r = rows[n.row];
            query = query
                .bind(*imei)
                .bind(*name)
                .bind(value.as_str())
                .bind(n.recorded_at)
                .bind(n.id)
                .bind(r.lat)
                .bind(r.lng);
        }
        query.execute(&mut *conn).await.map_err(backend)?;
    }
    Ok(())
}

/// Writes the rows of every job of a group with a few multi-row statements, in the jobs' order:
/// the resends (rows whose unique key is stored already, or appears earlier in the group) are
/// found first with one indexed lookup per statement, then the other rows are inserted with
/// plain multi-row `INSERT`s and their ids derived from the table's id sequence — each derived
/// id is checked against what SQLite reports (`last_insert_rowid` and the row count), so a
/// surprise cannot mislabel a row. `Ok(None)` means "not written this way" (the caller rolls
/// back and writes each job alone); the ids of each job otherwise.
pub(super) async fn write_merged(
    conn: &mut SqliteConnection,
    jobs: &[TrackJob],
) -> StoreResult<Option<Vec<Vec<Option<i64>>>>> {
    let all: Vec<(&Row7, i64)> = jobs
        .iter()
        .flat_map(|j| j.rows.iter().map(move |r| (r, j.received_at)))
        .collect();
    let fresh = fresh_rows(conn, &all).await?;
    let to_insert: Vec<(&Row7, i64)> = all
        .iter()
        .zip(&fresh)
        .filter(|(_, f)| **f)
        .map(|(r, _)| *r)
        .collect();
    let base: i64 = sqlx::query_scalar(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'tracks'), 0), \
         coalesce((SELECT max(id) FROM tracks), 0))",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    let mut next = base;
    for chunk in fixed_chunks(&to_insert) {
        let mut sql = String::from(
            "INSERT INTO tracks (imei, recorded_at, received_at, lat, lng, fields, dedup_key) VALUES ",
        );
        push_row_placeholders(&mut sql, chunk.len());
        // Only placeholders are appended to the literal: the values are bound, never spliced.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (r, received_at) in chunk {
            query = query
                .bind(&r.imei)
                .bind(r.recorded_at)
                .bind(*received_at)
                .bind(r.lat)
                .bind(r.lng)
                .bind(&r.fields)
                .bind(&r.dedup_key);
        }
        let done = match query.execute(&mut *conn).await {
            Ok(done) => done,
            // A unique or foreign key violation, say: the caller writes each job alone.
            Err(_) => return Ok(None),
        };
        next += chunk.len() as i64;
        if done.rows_affected() != chunk.len() as u64 || done.last_insert_rowid() != next {
            return Ok(None);
        }
    }
    let mut id = base;
    let ids: Vec<Option<i64>> = fresh
        .iter()
        .map(|f| {
            f.then(|| {
                id += 1;
                id
            })
        })
        .collect();
    let rows: Vec<&Row7> = all.iter().map(|(r, _)| *r).collect();
    update_last_values(conn, &rows, &ids).await?;
    let mut ids = ids.into_iter();
    Ok(Some(
        jobs.iter()
            .map(|j| ids.by_ref().take(j.rows.len()).collect())
            .collect(),
    ))
}

/// The keys (imei, recorded_at, dedup_key) among `rows` that are stored already: one lookup
/// through `tracks_by_device_time` per statement.
async fn already_stored<'r>(
    conn: &mut SqliteConnection,
    rows: &[(&'r Row7, i64)],
) -> StoreResult<HashSet<(&'r str, i64, &'r str), FnvBuild>> {
    let keyed: Vec<(&str, i64, &str)> = rows
        .iter()
        .filter_map(|(r, _)| {
            r.dedup_key
                .as_deref()
                .map(|k| (r.imei.as_str(), r.recorded_at, k))
        })
        .collect();
    let mut found = HashSet::default();
    for chunk in fixed_chunks(&keyed) {
        let mut sql = String::from("SELECT v.column4 FROM (VALUES ");
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 { "(?,?,?,?)" } else { ",(?,?,?,?)" });
        }
        sql.push_str(
            ") AS v JOIN tracks t ON t.imei = v.column1 AND t.recorded_at = v.column2 \
             AND t.dedup_key = v.column3",
        );
        // Only placeholders are appended to the literal: the values are bound, never spliced.
        // Each row carries its index in `chunk` (column4), so the answer names the rows found
        // without copying their keys back.
        let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
        for (i, (imei, at, key)) in chunk.iter().enumerate() {
            query = query.bind(*imei).bind(*at).bind(*key).bind(i as i64);
        }
        for i in query.fetch_all(&mut *conn).await.map_err(backend)? {
            let i = usize::try_from(i)
                .ok()
                .filter(|i| *i < chunk.len())
                .ok_or_else(|| StoreError::Backend("the resend lookup named no row".into()))?;
            found.insert(chunk[i]);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use ekko_core::Imei;
    use ekko_core::fields::{Field, FieldValue};
    use ekko_core::ports::Store;
    use ekko_core::time::{from_unix_ms, now_ms};
    use ekko_core::track::TrackRecord;

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
        let a = crate::sqlite::test_support::account(&s, "a@b.c").await;
        let imei = crate::sqlite::test_support::device(&s, &a, "359881234567899")
            .await
            .imei;
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
        let first = s.insert_tracks(batch.to_vec(), now_ms()).await.unwrap();
        assert_eq!(first.len(), 3);
        assert!(first.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(first[0].recorded_at.timestamp_millis(), 3000);
        let mut resend = batch.clone();
        resend.push(new_track(&imei, 4000, "d"));
        let second = s.insert_tracks(resend, now_ms()).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].recorded_at.timestamp_millis(), 4000);
        assert_eq!(s.recent_tracks(&imei, 10).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_failing_batch_stores_none_of_its_records() {
        let (_dir, s, imei) = store_with_device().await;
        let unknown = Imei::parse("356307042441013").unwrap();
        let batch = [new_track(&imei, 1, "a"), new_track(&unknown, 2, "b")];
        assert!(s.insert_tracks(batch.to_vec(), now_ms()).await.is_err());
        assert!(s.recent_tracks(&imei, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_record_repeated_within_one_batch_is_stored_once() {
        let (_dir, s, imei) = store_with_device().await;
        let batch = [new_track(&imei, 1, "a"), new_track(&imei, 1, "a")];
        let stored = s.insert_tracks(batch.to_vec(), now_ms()).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(s.recent_tracks(&imei, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn batches_larger_than_one_statement_keep_every_record_in_order() {
        let (_dir, s, imei) = store_with_device().await;
        let n = ROWS_PER_STATEMENT * 2 + 7;
        let batch: Vec<_> = (0..n as i64)
            .map(|i| new_track(&imei, 10_000 - i, &format!("k{i}")))
            .collect();
        let stored = s.insert_tracks(batch.to_vec(), now_ms()).await.unwrap();
        assert_eq!(stored.len(), n);
        assert!(stored.windows(2).all(|w| w[0].id < w[1].id));
        assert!(
            stored
                .iter()
                .zip(&batch)
                .all(|(t, b)| t.recorded_at == b.record.recorded_at)
        );
    }

    #[tokio::test]
    async fn concurrent_batches_share_commits_and_one_failure_spares_the_others() {
        let (_dir, s, imei) = store_with_device().await;
        let unknown = Imei::parse("356307042441013").unwrap();
        let mut tasks = Vec::new();
        for j in 0..40i64 {
            let s = s.clone();
            let imei = if j == 13 {
                unknown.clone()
            } else {
                imei.clone()
            };
            tasks.push(tokio::spawn(async move {
                let batch: Vec<_> = (0..25)
                    .map(|i| new_track(&imei, j * 100 + i, &format!("{j}-{i}")))
                    .collect();
                s.insert_tracks(batch.to_vec(), now_ms())
                    .await
                    .map(|v| v.len())
            }));
        }
        let mut ok = 0;
        for (j, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(n) => {
                    assert_eq!(n, 25);
                    ok += 1;
                }
                Err(_) => assert_eq!(j, 13, "only the unknown device's batch fails"),
            }
        }
        assert_eq!(ok, 39);
        assert_eq!(s.recent_tracks(&imei, 2000).await.unwrap().len(), 39 * 25);
    }

    #[tokio::test]
    async fn concurrent_resends_in_one_group_are_stored_once_and_the_newest_value_wins() {
        let (_dir, s, imei) = store_with_device().await;
        let first = s
            .insert_tracks(vec![new_track(&imei, 10, "a")], now_ms())
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        // Jobs sent together share a group (and the merged write): each resend of "a" and the
        // repeats of "b" across jobs are skipped, every other record stored once.
        let mut tasks = Vec::new();
        for j in 0..20i64 {
            let s = s.clone();
            let imei = imei.clone();
            tasks.push(tokio::spawn(async move {
                let batch = vec![
                    new_track(&imei, 10, "a"),
                    new_track(&imei, 20, "b"),
                    new_track(&imei, 100 + j, &format!("n{j}")),
                ];
                s.insert_tracks(batch, now_ms()).await.unwrap()
            }));
        }
        let mut stored = Vec::new();
        for t in tasks {
            stored.extend(t.await.unwrap());
        }
        assert!(
            stored
                .iter()
                .all(|t| t.recorded_at.timestamp_millis() != 10)
        );
        assert_eq!(
            stored
                .iter()
                .filter(|t| t.recorded_at.timestamp_millis() == 20)
                .count(),
            1
        );
        assert_eq!(stored.len(), 21);
        let mut ids: Vec<_> = stored.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 21, "every stored record has its own id");
        assert_eq!(s.recent_tracks(&imei, 100).await.unwrap().len(), 22);
        let (value,): (String,) = sqlx::query_as(
            "SELECT value FROM device_last_values WHERE imei = ? AND name = 'GPS_SPEED'",
        )
        .bind(imei.as_str())
        .fetch_one(&s.reader)
        .await
        .unwrap();
        assert_eq!(
            value, "119",
            "the newest record of all the jobs gives the value"
        );
    }

    #[tokio::test]
    async fn ids_returned_are_the_ids_stored() {
        let (_dir, s, imei) = store_with_device().await;
        let mut tasks = Vec::new();
        for j in 0..10i64 {
            let s = s.clone();
            let imei = imei.clone();
            tasks.push(tokio::spawn(async move {
                let batch: Vec<_> = (0..30)
                    .map(|i| new_track(&imei, j * 1000 + i, &format!("{j}-{i}")))
                    .collect();
                s.insert_tracks(batch.to_vec(), now_ms()).await.unwrap()
            }));
        }
        for t in tasks {
            for track in t.await.unwrap() {
                let (at,): (i64,) = sqlx::query_as("SELECT recorded_at FROM tracks WHERE id = ?")
                    .bind(track.id)
                    .fetch_one(&s.reader)
                    .await
                    .unwrap();
                assert_eq!(at, track.recorded_at.timestamp_millis());
            }
        }
    }

    #[tokio::test]
    async fn single_records_are_never_deduplicated() {
        let (_dir, s, imei) = store_with_device().await;
        let r = new_track(&imei, 5, "x").record;
        let a = s.insert_track(&r, now_ms()).await.unwrap();
        let b = s.insert_track(&r, now_ms()).await.unwrap();
        assert!(b.id > a.id);
    }

    #[test]
    fn statements_take_few_fixed_sizes_and_cover_every_row_in_order() {
        for n in [0usize, 1, 3, 4, 5, 63, 64, 65, 255, 256, 257, 1000, 2500] {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = fixed_chunks(&items).collect();
            assert!(chunks.iter().all(|c| STATEMENT_ROWS.contains(&c.len())));
            assert_eq!(chunks.concat(), items, "{n} rows");
            // Greedy: at most three of each smaller size.
            assert!(
                chunks
                    .iter()
                    .filter(|c| c.len() < ROWS_PER_STATEMENT)
                    .count()
                    <= 12
            );
        }
    }

    #[tokio::test]
    async fn other_jobs_of_a_group_survive_a_failed_merged_track_write() {
        let (_dir, s, imei) = store_with_device().await;
        let unknown = Imei::parse("356307042441013").unwrap();
        let mut tracks = Vec::new();
        let mut others = Vec::new();
        for j in 0..20i64 {
            let (s1, s2) = (s.clone(), s.clone());
            let device = if j % 5 == 0 {
                unknown.clone()
            } else {
                imei.clone()
            };
            tracks.push(tokio::spawn(async move {
                s1.insert_tracks(vec![new_track(&device, j, &format!("{j}"))], now_ms())
                    .await
                    .is_ok()
            }));
            others.push(tokio::spawn(async move {
                s2.group
                    .run(1, move |conn| {
                        Box::pin(async move {
                            sqlx::query(
                                "INSERT INTO pending_devices (imei, protocol, first_seen, last_seen, attempts) \
                                 VALUES (?, 'test', 0, 0, 1)",
                            )
                            .bind(format!("{j:015}"))
                            .execute(conn)
                            .await
                            .map_err(backend)?;
                            Ok(())
                        })
                    })
                    .await
            }));
        }
        let mut stored = 0;
        for (j, t) in tracks.into_iter().enumerate() {
            let ok = t.await.unwrap();
            assert_eq!(ok, j % 5 != 0, "job {j}");
            stored += usize::from(ok);
        }
        for o in others {
            o.await.unwrap().unwrap();
        }
        let (pending,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM pending_devices WHERE protocol = 'test'")
                .fetch_one(&s.reader)
                .await
                .unwrap();
        assert_eq!(pending, 20, "every other job is committed once");
        assert_eq!(s.recent_tracks(&imei, 100).await.unwrap().len(), stored);
    }

    #[tokio::test]
    async fn a_resend_of_a_track_stored_before_the_lookup_is_recognised() {
        // Rows written while the unique index existed (migration 0002..0008) carry the same
        // key column: the lookup that replaced the index finds them.
        let (_dir, s, imei) = store_with_device().await;
        sqlx::query(
            "INSERT INTO tracks (imei, recorded_at, received_at, fields, dedup_key) \
             VALUES (?, 7, 7, '[]', 'old')",
        )
        .bind(imei.as_str())
        .execute(&s.writer)
        .await
        .unwrap();
        let stored = s
            .insert_tracks(
                vec![new_track(&imei, 7, "old"), new_track(&imei, 7, "new")],
                now_ms(),
            )
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(s.recent_tracks(&imei, 10).await.unwrap().len(), 2);
    }
}
