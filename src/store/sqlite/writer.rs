//! SQLite's one writer: a thread that owns the write connection and commits in groups.
//!
//! It takes every write that is waiting (up to [`MAX_BATCH`]), runs each in its own savepoint inside
//! one transaction, inserts the events of every PutEvents call among them together, commits once,
//! and hands the callers to `wal_sync`, which answers them once the log is on disk. A failing write
//! rolls back its savepoint alone.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, Notify};

use super::super::engine::{after_commit, Finish, WriteJob};
use super::super::wal_sync::WalSync;
use super::super::{Result, Seen, StoreError};
use super::{events, Lite};

/// Most writes folded into one transaction; bounds the time a batch holds the write lock.
const MAX_BATCH: usize = 512;

pub(super) enum Job {
    /// Statements of their own, in a savepoint of their own.
    Run(WriteJob),
    /// Rows for the events table, inserted with other callers' rows.
    Events(events::EventsJob),
    /// Finish what is queued and stop.
    Stop,
}

/// The queue to the writer thread.
#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<Job>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Writer {
    /// Starts the writer on `conn`, the database at `path` (in WAL mode, its log is synced beside
    /// the writer). `bus` is woken after each commit that added bus entries.
    pub(super) fn start(conn: Connection, path: &Path, bus: Arc<Notify>) -> Result<Writer> {
        let wal_sync = match wal_path(&conn, path)? {
            Some(wal) => {
                // The writer commits without waiting for the disk: `WalSync` syncs the log before
                // any caller is answered.
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                Some(WalSync::start(wal).map_err(|e| StoreError::Unavailable(e.to_string()))?)
            }
            None => {
                conn.pragma_update(None, "synchronous", "FULL")?;
                None
            }
        };
        // Statement journals stay in memory rather than in temporary files; the log is
        // checkpointed every 4096 pages (16 MiB, not SQLite's 4 MiB), so that a page changed by
        // many batches is copied back once. SQLite's default 2 MiB page cache is kept: with a
        // 32 MiB one, commits were slower (SQLite truncates its cache when a transaction ends).
        conn.pragma_update(None, "temp_store", "memory")?;
        conn.pragma_update(None, "wal_autocheckpoint", 4096)?;
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        // Jobs are asynchronous (shared with PostgreSQL) but SQLite's statements complete on the
        // spot: a runtime of the writer's own only drives them through.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, jobs, wal_sync, bus, runtime))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Writer {
            queue,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    pub(super) async fn submit_write(&self, job: WriteJob) -> Result<()> {
        self.queue.send(Job::Run(job)).await.map_err(|_| closed())
    }

    /// Stores the events of one call; returns once they are committed and on disk.
    pub(super) async fn store_events(
        &self,
        device: i64,
        events: Vec<crate::events::StoredEvent>,
        seen: &Seen,
    ) -> Result<()> {
        let (done, result) = oneshot::channel();
        let job = events::EventsJob {
            device,
            events,
            received_at: crate::store::timestamp(seen.at),
            address: seen.address.clone(),
            done,
        };
        self.queue
            .send(Job::Events(job))
            .await
            .map_err(|_| closed())?;
        result.await.map_err(|_| closed())?
    }

    /// Finishes what is queued, then stops the thread.
    pub(super) async fn stop(&self) {
        let thread = self.thread.lock().unwrap().take();
        if let Some(thread) = thread {
            let _ = self.queue.send(Job::Stop).await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

#[async_trait::async_trait]
impl super::super::engine::Jobs for Writer {
    async fn submit_write(&self, job: WriteJob) -> Result<()> {
        Writer::submit_write(self, job).await
    }

    async fn submit_read(&self, _job: super::super::engine::ReadJob) -> Result<()> {
        Err(StoreError::Internal("the writer does not run reads".into()))
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

/// The write-ahead log of the database, if it runs in WAL mode.
fn wal_path(conn: &Connection, path: &Path) -> Result<Option<std::path::PathBuf>> {
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Ok(None);
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    Ok(Some(wal.into()))
}

fn write_loop(
    mut conn: Connection,
    mut jobs: mpsc::Receiver<Job>,
    wal_sync: Option<WalSync>,
    bus: Arc<Notify>,
    runtime: tokio::runtime::Runtime,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    while !closing {
        let Some(first) = jobs.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        closing = batch.iter().any(|j| matches!(j, Job::Stop));
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "cannot begin a write transaction");
            // Dropping the jobs drops their answers: each caller gets an error, nothing ran.
            batch.clear();
            continue;
        }
        let bus_before = bus_head(&conn);
        let mut answers: Vec<Finish> = Vec::with_capacity(batch.len());
        let mut event_jobs = Vec::new();
        for job in batch.drain(..) {
            match job {
                Job::Run(run) => answers.push(run_isolated(&mut conn, run, &runtime)),
                Job::Events(job) => event_jobs.push(job),
                Job::Stop => {}
            }
        }
        let stored = events::insert_jobs(&mut conn, &event_jobs, &runtime);
        let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if let Err(e) = &committed {
            tracing::error!(error = %e, "write transaction failed to commit");
            let _ = conn.execute_batch("ROLLBACK");
        }
        for (job, stored) in event_jobs.into_iter().zip(stored) {
            answers.push(Box::new(move |durable| {
                let _ = job.done.send(after_commit(stored, durable));
            }));
        }
        let published = committed.is_ok() && bus_head(&conn) != bus_before;
        match (&committed, &wal_sync) {
            (Ok(()), Some(wal_sync)) => wal_sync.after_sync(answers),
            _ => answers
                .into_iter()
                .for_each(|answer| answer(committed.clone())),
        }
        if published {
            bus.notify_one();
        }
    }
    if let Some(wal_sync) = wal_sync {
        wal_sync.finish();
    }
}

/// Runs one job in a savepoint: all it wrote stays, or none of it.
fn run_isolated(conn: &mut Connection, run: WriteJob, runtime: &tokio::runtime::Runtime) -> Finish {
    let savepoint = conn.execute_batch("SAVEPOINT job");
    let (ok, finish) = runtime.block_on(run(&mut Lite::new(conn)));
    if savepoint.is_ok() {
        if !ok {
            let _ = conn.execute_batch("ROLLBACK TO job");
        }
        let _ = conn.execute_batch("RELEASE job");
    }
    finish
}

/// The newest bus entry's `seq`, to tell whether a batch added any.
fn bus_head(conn: &Connection) -> i64 {
    conn.query_row("SELECT coalesce(max(seq), 0) FROM outbox", [], |r| r.get(0))
        .unwrap_or(0)
}
