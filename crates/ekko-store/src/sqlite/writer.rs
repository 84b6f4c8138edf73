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
//! Invariant: a caller's `Ok` means its write is committed and on disk; a job sees only the
//! connection it is given (never the store's pools: the task holds the one writer connection).

use std::any::Any;

use ekko_core::error::StoreError;
use ekko_core::ports::StoreResult;
use futures::future::BoxFuture;
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::backend;

/// Most weight (rows) one group carries: bounds the transaction and the time a job waits
/// behind the others, whatever the load.
const MAX_GROUP_WEIGHT: usize = 20_000;

/// Jobs waiting for the writer: bounded, so a stalled disk pushes back on callers instead of
/// growing memory.
const QUEUE_JOBS: usize = 4_096;

type Output = Box<dyn Any + Send>;
type Work =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<Output>> + Send>;

struct Job {
    weight: usize,
    work: Work,
    reply: oneshot::Sender<StoreResult<Output>>,
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
        let stopped = || StoreError::Backend("the database writer has stopped".into());
        self.jobs
            .send(Job {
                weight: weight.max(1),
                work,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        let output = answer.await.map_err(|_| stopped())??;
        output
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| StoreError::Backend("a database job answered with the wrong type".into()))
    }
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

/// Runs every job in its own savepoint, commits once, then answers each caller: with its own
/// result if the commit succeeded, with the commit's error otherwise.
async fn commit_group(pool: &SqlitePool, group: Vec<Job>) {
    let fail_all = |group: Vec<Job>, e: StoreError| {
        for job in group {
            let _ = job.reply.send(Err(e.clone()));
        }
    };
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => return fail_all(group, backend(e)),
    };
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(group, backend(e)),
    };
    let mut done = Vec::with_capacity(group.len());
    for job in group {
        let outcome = match tx.begin().await {
            Ok(mut savepoint) => match (job.work)(&mut savepoint).await {
                Ok(v) => savepoint.commit().await.map(|()| v).map_err(backend),
                // Dropping the savepoint rolls this job back, and only this job.
                Err(e) => Err(e),
            },
            Err(e) => Err(backend(e)),
        };
        done.push((job.reply, outcome));
    }
    match tx.commit().await {
        Ok(()) => {
            for (reply, outcome) in done {
                // A caller that went away (its connection closed) simply misses its answer.
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            let e = backend(e);
            for (reply, _) in done {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
