//! Group commit: one task runs the store's hot writes, many callers share one fsync.
//!
//! With `synchronous=FULL` every SQLite commit waits for the disk. Each caller that must be
//! answered only after its write is durable (a device's ack, a rotated refresh token) would pay
//! one flush per request, so throughput would be bounded by the disk's flush rate however many
//! devices or clients are waiting. Instead, a write is a *job* sent to one writer task. The task
//! takes every job already waiting, runs each inside its own savepoint of a single transaction
//! (a job that fails is rolled back alone, the others are kept), commits once, and only then
//! answers every caller. Under no load a group is one job and nothing waits for a timer.
//!
//! Track writes are not closures but data ([`TrackJob`]): the task writes the rows of every
//! track job of a group first, with a few multi-row statements (`tracks_batch::write_merged`)
//! instead of a savepoint and statements per job, since each statement is a round trip to
//! SQLite's worker thread. If that merged write fails (say a device was deleted meanwhile), the
//! transaction is rolled back and begun again, and every track job is written alone in its own
//! savepoint, so a failing job still fails alone.
//!
//! Invariant: a caller's `Ok` means its write is committed and on disk; a job sees only the
//! connection it is given (never the store's pools: the task holds the one writer connection).

use std::any::Any;

use ekko_core::error::StoreError;
use ekko_core::ports::StoreResult;
use futures::future::BoxFuture;
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::backend;
use super::tracks_batch::{self, TrackJob};

/// Most weight (rows) one group carries: bounds the transaction and the time a job waits
/// behind the others, whatever the load.
const MAX_GROUP_WEIGHT: usize = 20_000;

/// Jobs waiting for the writer: bounded, so a stalled disk pushes back on callers instead of
/// growing memory.
const QUEUE_JOBS: usize = 4_096;

type Output = Box<dyn Any + Send>;
type Work =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<Output>> + Send>;

/// The ids of a track job's rows (`None`: a resend, skipped).
pub(super) type TrackIds = Vec<Option<i64>>;

enum Kind {
    Work(Work, oneshot::Sender<StoreResult<Output>>),
    Tracks(TrackJob, oneshot::Sender<StoreResult<TrackIds>>),
}

struct Job {
    weight: usize,
    kind: Kind,
}

/// The store's handle on the writer task; clones share it. The task ends when the last
/// handle is dropped.
#[derive(Clone)]
pub(super) struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

impl GroupWriter {
    /// Starts the writer task on `pool` (the store's single writer connection).
    pub(super) fn start(pool: SqlitePool) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE_JOBS);
        tokio::spawn(run_writer(pool, rx));
        GroupWriter { jobs }
    }

    /// Runs `work` in the next group commit and returns its result once the group is durable.
    /// `weight` is roughly the rows it writes (it bounds a group's size). If `work` fails, its
    /// writes are rolled back and its error returned; others in the group are unaffected.
    pub(super) async fn run<T, F>(&self, weight: usize, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
            Box::pin(async move { work(conn).await.map(|v| Box::new(v) as Output) })
        });
        self.jobs
            .send(Job {
                weight: weight.max(1),
                kind: Kind::Work(work, reply),
            })
            .await
            .map_err(|_| stopped())?;
        let output = answer.await.map_err(|_| stopped())??;
        output
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| StoreError::Backend("a database job answered with the wrong type".into()))
    }

    /// Writes a track job's rows in the next group commit; once the group is durable, the id of
    /// each row (`None` for a resend that was skipped), in the job's order.
    pub(super) async fn run_tracks(&self, job: TrackJob) -> StoreResult<TrackIds> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                weight: job.rows().max(1),
                kind: Kind::Tracks(job, reply),
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the database writer has stopped".into())
}

async fn run_writer(pool: SqlitePool, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut weight = first.weight;
        let mut group = vec![first];
        while weight < MAX_GROUP_WEIGHT {
            match rx.try_recv() {
                Ok(job) => {
                    weight += job.weight;
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&pool, group).await;
    }
}

/// Runs every closure job in its own savepoint and the track jobs together (falling back to
/// one savepoint each if that fails), commits once, then answers each caller: with its own
/// result if the commit succeeded, with the commit's error otherwise.
async fn commit_group(pool: &SqlitePool, group: Vec<Job>) {
    let mut works = Vec::new();
    let mut tracks = Vec::new();
    let mut track_replies = Vec::new();
    for job in group {
        match job.kind {
            Kind::Work(work, reply) => works.push((work, reply)),
            Kind::Tracks(t, reply) => {
                tracks.push(t);
                track_replies.push(reply);
            }
        }
    }
    let fail_all = |works: Vec<(Work, oneshot::Sender<StoreResult<Output>>)>,
                    track_replies: Vec<oneshot::Sender<StoreResult<TrackIds>>>,
                    e: StoreError| {
        for (_, reply) in works {
            let _ = reply.send(Err(e.clone()));
        }
        for reply in track_replies {
            let _ = reply.send(Err(e.clone()));
        }
    };
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => return fail_all(works, track_replies, backend(e)),
    };
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(works, track_replies, backend(e)),
    };
    // The track jobs first, merged and without a savepoint of their own (a savepoint makes
    // SQLite copy every page it touches into a statement journal): if the merged write fails,
    // the transaction holds nothing else yet, so rolling it all back undoes exactly that.
    let track_outcomes = if tracks.is_empty() {
        Vec::new()
    } else {
        match tracks_batch::write_merged(&mut tx, &tracks).await {
            Ok(Some(ids)) => ids.into_iter().map(Ok).collect(),
            Ok(None) | Err(_) => {
                if let Err(e) = tx.rollback().await {
                    return fail_all(works, track_replies, backend(e));
                }
                tx = match conn.begin().await {
                    Ok(tx) => tx,
                    Err(e) => return fail_all(works, track_replies, backend(e)),
                };
                write_tracks_one_by_one(&mut tx, &tracks).await
            }
        }
    };
    let mut done = Vec::with_capacity(works.len());
    for (work, reply) in works {
        let outcome = match tx.begin().await {
            Ok(mut savepoint) => match work(&mut savepoint).await {
                Ok(v) => savepoint.commit().await.map(|()| v).map_err(backend),
                // Dropping the savepoint rolls this job back, and only this job.
                Err(e) => Err(e),
            },
            Err(e) => Err(backend(e)),
        };
        done.push((reply, outcome));
    }
    match tx.commit().await {
        Ok(()) => {
            // A caller that went away (its connection closed) simply misses its answer.
            for (reply, outcome) in done {
                let _ = reply.send(outcome);
            }
            for (reply, outcome) in track_replies.into_iter().zip(track_outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            let e = backend(e);
            for (reply, _) in done {
                let _ = reply.send(Err(e.clone()));
            }
            for reply in track_replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Writes each track job of a group in its own savepoint, so that only the failing jobs fail
/// (the path taken when the merged write of the group failed). One outcome per job, in order.
async fn write_tracks_one_by_one(
    conn: &mut SqliteConnection,
    jobs: &[TrackJob],
) -> Vec<StoreResult<TrackIds>> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(match conn.begin().await {
            Ok(mut savepoint) => match tracks_batch::write_one(&mut savepoint, job).await {
                Ok(ids) => savepoint.commit().await.map(|()| ids).map_err(backend),
                Err(e) => Err(e),
            },
            Err(e) => Err(backend(e)),
        });
    }
    outcomes
}
