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
use super::{Result, StoreError};

/// Says how a write job's transaction ended: `Err` carries why its work may not be durable.
pub(crate) type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// A write job: runs its statements and says whether they succeeded (a failed job's statements are
/// undone alone), and how to answer its caller once the transaction ended.
pub(crate) type WriteJob =
    Box<dyn for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, (bool, Finish)> + Send>;

/// A read job: runs its statements and answers its caller itself.
pub(crate) type ReadJob = Box<dyn for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, ()> + Send>;

#[async_trait::async_trait]
pub(crate) trait Engine: Send + Sync + 'static {
    /// Queues a write job; its answer comes through its [`Finish`].
    async fn submit_write(&self, job: WriteJob) -> Result<()>;
    /// Runs a read job, away from the request's thread where the backend blocks.
    async fn submit_read(&self, job: ReadJob) -> Result<()>;
    /// Queues a write job whose statements need not be atomic together (each may commit on its
    /// own): on PostgreSQL that saves a transaction's round trips.
    async fn submit_autocommit(&self, job: WriteJob) -> Result<()> {
        self.submit_write(job).await
    }
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

/// Runs `f` in a write transaction and returns its result once committed.
pub(crate) async fn write<E, T, F>(engine: &E, f: F) -> Result<T>
where
    E: Engine + ?Sized,
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
    engine.submit_write(job).await?;
    answered.await.map_err(|_| stopped())?
}

/// Runs `f`, whose statements need not be atomic together, and returns its result once each of
/// them is committed. For the small writes of every device call (session rows, failed logins).
pub(crate) async fn write_autocommit<E, T, F>(engine: &E, f: F) -> Result<T>
where
    E: Engine + ?Sized,
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
    engine.submit_autocommit(job).await?;
    answered.await.map_err(|_| stopped())?
}

/// Runs `f` on a read connection.
pub(crate) async fn read<E, T, F>(engine: &E, f: F) -> Result<T>
where
    E: Engine + ?Sized,
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    let (answer, answered) = oneshot::channel();
    engine
        .submit_read(Box::new(move |conn| {
            Box::pin(async move {
                let _ = answer.send(f(conn).await);
            })
        }))
        .await?;
    answered.await.map_err(|_| stopped())?
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
