//! How shared statements reach a database: each backend runs a job (an asynchronous closure over a
//! [`Conn`]) in a transaction of its own kind, and answers once the job's work is committed and
//! durable.
//!
//! SQLite runs write jobs on its one writer thread, each in a savepoint of a group commit, and read
//! jobs on a pooled reader connection; its statements complete on the spot. PostgreSQL runs each job
//! in a transaction of its own on a pooled connection, natively asynchronous.

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::sql::Conn;
use super::{dump, Backend, Result, Seen, StoreError};

/// Says how a write job's transaction ended: `Err` carries why its work may not be durable.
pub(crate) type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// A write job: runs its statements and says whether they succeeded (a failed job's statements are
/// undone alone), and how to answer its caller once the transaction ended.
pub(crate) type WriteJob =
    Box<dyn for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, (bool, Finish)> + Send>;

/// A read job: runs its statements and answers its caller itself.
pub(crate) type ReadJob = Box<dyn for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, ()> + Send>;

/// What runs jobs: a backend, or a part of one (SQLite's writer, PostgreSQL's session pool).
#[async_trait::async_trait]
pub(crate) trait Jobs: Send + Sync + 'static {
    /// Queues a write job; its answer comes through its [`Finish`].
    async fn submit_write(&self, job: WriteJob) -> Result<()>;
    /// Runs a read job, away from the request's thread where the backend blocks.
    async fn submit_read(&self, job: ReadJob) -> Result<()>;
    /// Runs a read job of a device call: right here where the backend can (SQLite's point
    /// queries cost less than a hand-off to another thread).
    async fn submit_read_now(&self, job: ReadJob) -> Result<()> {
        self.submit_read(job).await
    }
    /// Queues a write job whose statements need not be atomic together (each may commit on its
    /// own): on PostgreSQL that saves a transaction's round trips.
    async fn submit_autocommit(&self, job: WriteJob) -> Result<()> {
        self.submit_write(job).await
    }
}

/// A backend: how it runs jobs, and the few things each backend does its own way. Every role
/// trait of the store is implemented once over this (`store/shared/mod.rs`).
#[async_trait::async_trait]
pub(crate) trait Engine: Jobs {
    fn kind(&self) -> Backend;
    /// What runs session rows' jobs (PostgreSQL keeps them on a pool of their own).
    fn sessions(&self) -> &dyn Jobs;
    /// Buffers a device's "last seen" time, written about once a second and at close.
    fn note_seen(&self, device: i64, seen: &Seen);
    /// Stores the events of one PutEvents call with their bus entry; returns once durable.
    async fn store_events(
        &self,
        device: i64,
        events: Vec<crate::events::StoredEvent>,
        seen: &Seen,
    ) -> Result<()>;
    /// Numbers new bus entries where that happens after commit; see `BusStore::sequence`.
    async fn sequence(&self) -> Result<bool> {
        Ok(false)
    }
    /// Resolves when bus entries may have been added.
    async fn bus_changed(&self);
    async fn close(&self);
    async fn export(
        &self,
        schema: i64,
        out: &mut (dyn FnMut(dump::Record) -> Result<()> + Send),
    ) -> Result<u64>;
    async fn import(
        &self,
        schema: i64,
        input: &mut (dyn Iterator<Item = Result<dump::Record>> + Send),
    ) -> Result<u64>;
}

/// A write's result once its transaction ended: its own error if it failed, else the commit's.
pub(crate) fn after_commit<T>(
    outcome: Result<T>,
    committed: std::result::Result<(), String>,
) -> Result<T> {
    match (outcome, committed) {
        (Ok(_), Err(e)) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
        (outcome, _) => outcome,
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the database connection stopped".into())
}

/// A write job around `f`, and where its result arrives once its transaction ended.
fn write_job<T, F>(f: F) -> (WriteJob, oneshot::Receiver<Result<T>>)
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    let (answer, answered) = oneshot::channel();
    let job: WriteJob = Box::new(move |conn| {
        Box::pin(async move {
            let outcome = f(conn).await;
            let ok = outcome.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let _ = answer.send(after_commit(outcome, committed));
            });
            (ok, finish)
        })
    });
    (job, answered)
}

/// A read job around `f`, and where its result arrives.
fn read_job<T, F>(f: F) -> (ReadJob, oneshot::Receiver<Result<T>>)
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    let (answer, answered) = oneshot::channel();
    let job: ReadJob = Box::new(move |conn| {
        Box::pin(async move {
            let _ = answer.send(f(conn).await);
        })
    });
    (job, answered)
}

async fn answer<T>(answered: oneshot::Receiver<Result<T>>) -> Result<T> {
    answered.await.map_err(|_| stopped())?
}

/// Runs `f` in a write transaction and returns its result once committed.
pub(crate) async fn write<E, T, F>(engine: &E, f: F) -> Result<T>
where
    E: Jobs + ?Sized,
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    let (job, answered) = write_job(f);
    engine.submit_write(job).await?;
    answer(answered).await
}

/// Runs `f`, whose statements need not be atomic together, and returns its result once each of
/// them is committed. For the small writes of every device call (session rows, failed logins).
pub(crate) async fn write_autocommit<E, T, F>(engine: &E, f: F) -> Result<T>
where
    E: Jobs + ?Sized,
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    let (job, answered) = write_job(f);
    engine.submit_autocommit(job).await?;
    answer(answered).await
}

/// Runs `f` on a read connection, right here where the backend can (see
/// [`Jobs::submit_read_now`]).
pub(crate) async fn read_now<E, T, F>(engine: &E, f: F) -> Result<T>
where
    E: Jobs + ?Sized,
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    let (job, answered) = read_job(f);
    engine.submit_read_now(job).await?;
    answer(answered).await
}

/// Runs `f` on a read connection.
pub(crate) async fn read<E, T, F>(engine: &E, f: F) -> Result<T>
where
    E: Jobs + ?Sized,
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    let (job, answered) = read_job(f);
    engine.submit_read(job).await?;
    answer(answered).await
}

/// `job!(|c| call(c, ...))`: a job closure around an async call on the connection.
#[macro_export]
macro_rules! job {
    (|$c:ident| $body:expr) => {
        move |$c: &mut dyn $crate::store::sql::Conn| {
            ::std::boxed::Box::pin(async move { $body.await })
        }
    };
}
