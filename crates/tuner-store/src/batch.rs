//! Group commit for the hot writes (a trial leased, a trial finished).
//!
//! Under load most of a commit's cost is writing the pages it touched to the WAL:
//! the trials table and its indexes, the event log, the counts — about eight pages for
//! one trial. Writes waiting at the same moment are run in one transaction instead,
//! which touches those pages once, and each caller gets its answer only after the
//! commit: nothing is acknowledged that is not durable. A write that fails on its own
//! (a foreign key, a trigger refusing the change) is undone by SQLite at statement
//! level and does not disturb the others. A failure that may end the whole transaction
//! (I/O, a full disk, a panic) stops the batch: the rest do not run, what ran is rolled
//! back, and every caller is told; so does a failed commit.
//!
//! Every batched write is a single statement, which is what makes that statement-level
//! undo enough. The batches take the store's one writer connection from its pool, so
//! they also serialize with the writes that are not batched.

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, future::BoxFuture};
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// How many waiting writes one transaction takes at most.
const MAX_BATCH: usize = 256;

/// One write: runs on the writer connection, inside the batch's transaction.
pub type Op<T> =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send>;

/// A queued write of any result type.
trait Job: Send {
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Box<dyn Reply>>;
    fn fail(self: Box<Self>, error: StoreError);
}

/// A write's result, held until its batch has committed (or not).
trait Reply: Send {
    /// Whether the write failed in a way that may have ended the whole transaction
    /// (I/O, full disk, ...), not just its own statement (a constraint or trigger).
    fn fatal(&self) -> bool;
    fn send(self: Box<Self>, commit: std::result::Result<(), &str>);
}

fn is_fatal(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(d)) => {
            // SQLITE_CONSTRAINT (19) and its extended codes undo one statement only.
            let code = d.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            code & 0xff != 19
        }
        StoreError::Database(_) | StoreError::Unavailable(_) => true,
        _ => false,
    }
}

struct Queued<T> {
    op: Op<T>,
    reply: oneshot::Sender<Result<T>>,
}

struct Held<T> {
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send + 'static> Job for Queued<T> {
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Box<dyn Reply>> {
        Box::pin(async move {
            let result = (self.op)(conn).await;
            Box::new(Held {
                result,
                reply: self.reply,
            }) as Box<dyn Reply>
        })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

impl<T: Send> Reply for Held<T> {
    fn fatal(&self) -> bool {
        self.result.as_ref().err().is_some_and(is_fatal)
    }

    fn send(self: Box<Self>, commit: std::result::Result<(), &str>) {
        let result = match commit {
            Ok(()) => self.result,
            Err(e) => Err(StoreError::Batch(e.to_owned())),
        };
        let _ = self.reply.send(result);
    }
}

/// The handle the store writes through; the batching task ends when every handle is
/// dropped.
#[derive(Debug, Clone)]
pub struct Batcher {
    queue: mpsc::UnboundedSender<Box<dyn Job>>,
}

impl Batcher {
    /// Starts the batching task on the current Tokio runtime.
    pub fn spawn(writer: SqlitePool) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run_batches(writer, jobs));
        Self { queue }
    }

    /// Runs `op` in the next batch; answers once that batch is committed.
    pub async fn write<T: Send + 'static>(&self, op: Op<T>) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Box::new(Queued { op, reply }))
            .map_err(|_| StoreError::Batch("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Batch("the write was dropped unanswered".into()))?
    }
}

async fn run_batches(writer: SqlitePool, mut jobs: mpsc::UnboundedReceiver<Box<dyn Job>>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut conn = match writer.acquire().await {
            Ok(conn) => conn,
            Err(e) => {
                let message = format!("no writer connection: {e}");
                for job in batch {
                    job.fail(StoreError::Batch(message.clone()));
                }
                continue;
            }
        };
        // A lone write commits by itself (autocommit): no BEGIN/COMMIT round trips.
        if batch.len() == 1 {
            let job = batch.pop().expect("one job");
            // A panicking write drops its reply: its caller hears "dropped unanswered".
            if let Ok(reply) = AssertUnwindSafe(job.run(&mut conn)).catch_unwind().await {
                reply.send(Ok(()));
            }
            continue;
        }
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            let message = format!("cannot begin a write batch: {e}");
            for job in batch {
                job.fail(StoreError::Batch(message.clone()));
            }
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        let mut broken = None;
        for job in jobs.by_ref() {
            match AssertUnwindSafe(job.run(&mut conn)).catch_unwind().await {
                Ok(reply) if reply.fatal() => {
                    replies.push(reply);
                    broken = Some("a write in the same batch failed; nothing in it was kept");
                    break;
                }
                Ok(reply) => replies.push(reply),
                Err(_) => {
                    broken = Some("a write in the same batch panicked; nothing in it was kept");
                    break;
                }
            }
        }
        // After a failure that may have ended the transaction, the rest would run in
        // autocommit: they do not run at all, and what ran is rolled back.
        if let Some(reason) = broken {
            for job in jobs {
                job.fail(StoreError::Batch(reason.to_owned()));
            }
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            replies.into_iter().for_each(|r| r.send(Err(reason)));
            continue;
        }
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => replies.into_iter().for_each(|r| r.send(Ok(()))),
            Err(e) => {
                // Leave the connection clean for the next batch.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                let message = format!("the write batch could not commit: {e}");
                replies
                    .into_iter()
                    .for_each(|r| r.send(Err(message.as_str())));
            }
        }
    }
}
