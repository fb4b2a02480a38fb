//! The SQLite backend, on rusqlite: one file, WAL journal, foreign keys on, one writer thread with
//! group commit, and no answer before the log is on disk.
//!
//! SQLite allows one writer at a time, and every commit costs an fsync. So all writes go through one
//! connection owned by a writer thread (`writer.rs`): it takes every write that is waiting, runs each
//! in its own savepoint inside one transaction, commits once, and answers each caller once the log
//! is on disk (`wal_sync` syncs it beside the writer, which meanwhile runs the next batch). Events,
//! the bulk of all writes, go in together (`events.rs`).
//!
//! Reads use pooled connections of their own (WAL lets them run beside the writer). The reads of
//! every device call run right on the calling thread: a point query costs microseconds, less than
//! handing it to another thread and back. Admin queries, which may scan, run on blocking threads.

mod dump;
mod events;
pub(crate) mod migrate;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, Notify};

use super::dump::Cell;
use super::engine::{self, Engine, Jobs, ReadJob, WriteJob};
use super::shared;
use super::sql::{Arg, Conn, Dialect, Row};
use super::*;

/// How often buffered "last seen" times are written.
const SEEN_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// How long a statement waits for a lock another connection holds (a checkpoint, an admin's SQL
/// shell) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A rusqlite connection as a [`Conn`]: statements are prepared once per connection and cached,
/// and `$N` parameters are bound by name.
pub(crate) struct Lite<'c> {
    conn: &'c mut Connection,
}

impl<'c> Lite<'c> {
    pub(crate) fn new(conn: &'c mut Connection) -> Lite<'c> {
        Lite { conn }
    }
}

fn bind(stmt: &mut rusqlite::Statement<'_>, args: &[Arg]) -> Result<()> {
    for index in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(index).unwrap_or_default();
        let arg = name
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| args.get(n))
            .ok_or_else(|| {
                StoreError::Internal(format!("statement parameter {name:?} has no argument"))
            })?;
        match arg {
            Arg::Int(v) => stmt.raw_bind_parameter(index, v)?,
            Arg::Real(v) => stmt.raw_bind_parameter(index, v)?,
            Arg::Text(v) => stmt.raw_bind_parameter(index, v.as_deref())?,
            Arg::Bytes(v) => stmt.raw_bind_parameter(index, v.as_deref())?,
            Arg::Time(v) => stmt.raw_bind_parameter(index, v.map(timestamp))?,
            Arg::Json(v) => stmt.raw_bind_parameter(index, v.as_ref().map(|v| v.to_string()))?,
        }
    }
    Ok(())
}

/// One value as a cell, by the value's type (SQLite types values, not columns).
fn cell(value: ValueRef<'_>) -> Result<Cell> {
    Ok(match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(f) => Cell::Real(f),
        ValueRef::Text(t) => Cell::Text(
            String::from_utf8(t.to_vec())
                .map_err(|_| StoreError::corrupt("a text value is not UTF-8"))?,
        ),
        ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
    })
}

#[async_trait::async_trait]
impl Conn for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        let width = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let cells = (0..width)
                .map(|i| cell(r.get_ref(i)?))
                .collect::<Result<Vec<_>>>()?;
            out.push(Row(cells));
        }
        Ok(out)
    }

    async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        // A statement with RETURNING yields rows; step through them all.
        if stmt.column_count() > 0 {
            let mut rows = stmt.raw_query();
            let mut n = 0;
            while rows.next()?.is_some() {
                n += 1;
            }
            return Ok(n);
        }
        Ok(stmt.raw_execute()? as u64)
    }
}

/// The path of the database a `sqlite://` URL names.
fn path_of(url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Invalid(format!("not a SQLite URL: {url}")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(StoreError::Invalid("the SQLite URL names no file".into()));
    }
    Ok(PathBuf::from(path))
}

/// Opens a connection with the settings every connection of ours has.
fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Creates the database file, if missing, readable by its owner alone: it holds every device's
/// credential hash. SQLite gives its `-wal` and `-shm` files the same mode as the database.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Read connections, opened as needed and kept for reuse.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn take(&self) -> Result<Connection> {
        match self.idle.lock().unwrap().pop() {
            Some(conn) => Ok(conn),
            None => {
                let conn = connect(&self.path)?;
                conn.pragma_update(None, "query_only", true)?;
                Ok(conn)
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    readers: Arc<Readers>,
    writer: writer::Writer,
    /// "Last seen" times waiting to be written; flushed every second and on close.
    seen: Arc<Mutex<HashMap<i64, Seen>>>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Woken after every commit that added bus entries.
    bus: Arc<Notify>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at the URL's path and brings its schema up to date.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let path = path_of(url)?;
        let setup = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            create_private(&setup).map_err(io)?;
            let mut conn = connect(&setup)?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(
                    mode,
                    "SQLite is not in WAL mode: every commit waits for the disk"
                );
            }
            migrate::run(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))??;
        let bus = Arc::new(Notify::new());
        let writer = writer::Writer::start(conn, &path, bus.clone())?;
        let store = SqliteStore {
            readers: Arc::new(Readers {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
            }),
            path,
            writer,
            seen: Arc::default(),
            flusher: Mutex::new(None),
            bus,
        };
        let seen = store.seen.clone();
        let writer = store.writer.clone();
        *store.flusher.lock().unwrap() = Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(SEEN_FLUSH_INTERVAL);
            loop {
                every.tick().await;
                if let Err(e) = flush_seen(&seen, &writer).await {
                    tracing::warn!(error = %e, "last-seen times not written; retrying");
                }
            }
        }));
        Ok(store)
    }
}

/// Writes the buffered "last seen" times in one job.
async fn flush_seen(seen: &Mutex<HashMap<i64, Seen>>, writer: &writer::Writer) -> Result<()> {
    let batch: Vec<(i64, Seen)> = std::mem::take(&mut *seen.lock().unwrap())
        .into_iter()
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    let rows = batch.clone();
    let result = engine::write(
        writer,
        crate::job!(|c| shared::device::write_seen(c, &rows)),
    )
    .await;
    if result.is_err() {
        // Put them back unless a newer time arrived meanwhile.
        let mut pending = seen.lock().unwrap();
        for (device, s) in batch {
            pending.entry(device).or_insert(s);
        }
    }
    result
}

#[async_trait::async_trait]
impl Jobs for SqliteStore {
    async fn submit_write(&self, job: WriteJob) -> Result<()> {
        self.writer.submit_write(job).await
    }

    async fn submit_read(&self, job: ReadJob) -> Result<()> {
        let readers = self.readers.clone();
        let runtime = tokio::runtime::Handle::current();
        let (done, finished) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let outcome = readers.take().map(|mut conn| {
                runtime.block_on(job(&mut Lite::new(&mut conn)));
                readers.give_back(conn);
            });
            let _ = done.send(outcome);
        });
        finished
            .await
            .map_err(|_| StoreError::Internal("a read job was lost".into()))?
    }

    /// On the calling task: SQLite's statements complete on the spot, so the job never waits.
    async fn submit_read_now(&self, job: ReadJob) -> Result<()> {
        let mut conn = self.readers.take()?;
        job(&mut Lite::new(&mut conn)).await;
        self.readers.give_back(conn);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Engine for SqliteStore {
    fn kind(&self) -> Backend {
        Backend::Sqlite
    }

    fn sessions(&self) -> &dyn Jobs {
        self
    }

    fn note_seen(&self, device: i64, seen: &Seen) {
        self.seen.lock().unwrap().insert(device, seen.clone());
    }

    async fn store_events(
        &self,
        device: i64,
        events: Vec<crate::events::StoredEvent>,
        seen: &Seen,
    ) -> Result<()> {
        self.writer.store_events(device, events, seen).await
    }

    async fn bus_changed(&self) {
        self.bus.notified().await
    }

    async fn close(&self) {
        if let Some(flusher) = self.flusher.lock().unwrap().take() {
            flusher.abort();
        }
        if let Err(e) = flush_seen(&self.seen, &self.writer).await {
            tracing::warn!(error = %e, "last-seen times lost at close");
        }
        self.writer.stop().await;
        self.readers.idle.lock().unwrap().clear();
    }

    async fn export(
        &self,
        schema: i64,
        out: &mut (dyn FnMut(super::dump::Record) -> Result<()> + Send),
    ) -> Result<u64> {
        let conn = connect(&self.path)?;
        dump::export(&conn, schema, out)
    }

    async fn import(
        &self,
        schema: i64,
        input: &mut (dyn Iterator<Item = Result<super::dump::Record>> + Send),
    ) -> Result<u64> {
        // A connection of its own: the import is one long transaction outside the writer's batches.
        let mut conn = connect(&self.path)?;
        dump::import(&mut conn, schema, input)
    }
}
