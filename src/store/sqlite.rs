//! The SQLite backend: one file, WAL journal, foreign keys on, group commit for writes, and no answer
//! before the log is on disk.
//!
//! SQLite allows one writer at a time, and every commit costs an fsync. So all writes go through one
//! connection owned by a writer running on a thread of its own: it takes every write that is waiting,
//! runs each in its own savepoint inside one transaction, commits once, and answers each caller once
//! the log is on disk (`wal_sync` syncs it beside the writer, which meanwhile runs the next batch).
//! Under load many writes share one fsync; a failing write rolls back its savepoint alone.
//! Events, the bulk of all writes, are not run one call at a time: the rows of every PutEvents call in
//! a batch are inserted together, straight through SQLite's C API, and the writer counts the viruses
//! found among them in `device_infections` (no trigger: on SQLite it would cost a statement journal per
//! row). Reads use a separate pool (WAL lets them run beside the writer).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqlitePool, TypeInfo, ValueRef};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::wal_sync::{self, WalSync};
use super::*;
use crate::soap::{AppInfo, AppState, Params, Value};
use crate::sync::Known;

/// Most writes folded into one transaction; bounds the time a batch holds the write lock.
const MAX_BATCH: usize = 512;
/// SQLite takes at most 32766 parameters in one statement.
const MAX_PARAMS: usize = 30_000;
const SEEN_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

type Finish = wal_sync::Answer;
type Run =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;

/// One caller's write.
enum Job {
    /// Statements of their own; `isolated` gives them a savepoint, so that their failure undoes
    /// only them.
    Run { isolated: bool, run: Run },
    /// Rows for the events table, merged with other callers' rows into shared INSERTs.
    Events(EventsJob),
}

/// The events of one PutEvents call, and where to say whether they were committed.
struct EventsJob {
    device: i64,
    events: Vec<crate::events::StoredEvent>,
    received_at: String,
    address: String,
    done: oneshot::Sender<Result<()>>,
}

pub struct SqliteStore {
    pool: SqlitePool,
    /// For the one-off connection of an import, which runs outside the writer's batches.
    options: SqliteConnectOptions,
    /// "Last seen" times waiting to be written; flushed every second and on close.
    seen: Arc<std::sync::Mutex<HashMap<i64, Seen>>>,
    flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// `None` asks the writer to finish what is queued and stop.
    writer: mpsc::Sender<Option<Job>>,
    writer_thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged write survives power loss, not only a crash of this process.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
            }
        }
        create_private(options.get_filename()).map_err(sqlx::Error::Io)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        let mut conn = SqliteConnection::connect_with(&writer_options(&options)).await?;
        let wal_sync = match wal_path(&options, &mut conn).await? {
            Some(wal) => Some(WalSync::start(wal).map_err(sqlx::Error::Io)?),
            None => {
                // No log to sync beside the writer (not in WAL mode): every commit syncs.
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut conn)
                    .await?;
                None
            }
        };
        let (writer, jobs) = mpsc::channel(4 * MAX_BATCH);
        // The writer runs on a thread of its own, so that its many short waits on SQLite never queue
        // behind request tasks on the shared runtime: the write lock is held only as long as needed.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(sqlx::Error::Io)?;
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || runtime.block_on(write_loop(conn, jobs, wal_sync)))
            .map_err(sqlx::Error::Io)?;
        let store = SqliteStore {
            pool,
            options,
            seen: Arc::default(),
            flusher: std::sync::Mutex::new(None),
            writer,
            writer_thread: std::sync::Mutex::new(Some(thread)),
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

    /// Runs `f` in the shared write transaction and returns its result once the transaction committed.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        write_with(&self.writer, true, f).await
    }
}

impl SqliteStore {
    /// Runs `sql`, an UPDATE of one device by DeviceId (binding `value`, if any, then the id), and
    /// records it in the audit trail if the device exists.
    async fn change_device(
        &self,
        sql: &'static str,
        value: Option<SqlValue>,
        change: DeviceChange,
    ) -> Result<bool> {
        self.write(move |conn| {
            Box::pin(async move {
                let mut q = sqlx::query(sql);
                match value {
                    Some(SqlValue::Text(t)) => q = q.bind(t),
                    Some(SqlValue::Int(i)) => q = q.bind(i),
                    None => {}
                }
                let n = q
                    .bind(&change.device_id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if n > 0 {
                    audit(
                        conn,
                        &change.actor,
                        change.action,
                        &change.device_id,
                        change.details,
                    )
                    .await?;
                }
                Ok(n > 0)
            })
        })
        .await
    }
}

/// Creates the database file, if missing, readable by its owner alone: it holds every device's
/// credential hash. SQLite gives its `-wal` and `-shm` files the same mode as the database.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(());
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

/// Writes the buffered "last seen" times in one job.
async fn flush_seen(
    seen: &std::sync::Mutex<HashMap<i64, Seen>>,
    writer: &mpsc::Sender<Option<Job>>,
) -> Result<()> {
    let batch = std::mem::take(&mut *seen.lock().unwrap());
    if batch.is_empty() {
        return Ok(());
    }
    let result = write_with(writer, true, {
        let batch = batch.clone();
        move |conn| {
            Box::pin(async move {
                for (device, seen) in batch {
                    sqlx::query("UPDATE devices SET last_seen = ?, last_address = ? WHERE id = ?")
                        .bind(ts(seen.at))
                        .bind(&seen.address)
                        .bind(device)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        }
    })
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

/// The writer's connection commits without waiting for the disk: `WalSync` syncs the log before any
/// caller is answered (or, outside WAL mode, the connection is put back to `FULL`). Statement journals
/// stay in memory rather than in temporary files, and the log is checkpointed every 4096 pages (16 MiB,
/// not SQLite's 4 MiB), so that a page changed by many batches is copied back once. SQLite's default
/// 2 MiB page cache is kept: with a 32 MiB one, commits were slower (SQLite truncates its cache when a
/// transaction ends).
fn writer_options(options: &SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .clone()
        .synchronous(SqliteSynchronous::Normal)
        .pragma("temp_store", "memory")
        .pragma("wal_autocheckpoint", "4096")
}

/// The write-ahead log of the writer's database, if it runs in WAL mode.
async fn wal_path(
    options: &SqliteConnectOptions,
    conn: &mut SqliteConnection,
) -> Result<Option<std::path::PathBuf>> {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Ok(None);
    }
    let mut wal = options.get_filename().as_os_str().to_owned();
    wal.push("-wal");
    Ok(Some(wal.into()))
}

/// A write's result once its transaction ended: its own error if it failed, else the commit's.
fn after_commit<T>(outcome: Result<T>, committed: &std::result::Result<(), String>) -> Result<T> {
    match (outcome, committed) {
        (Ok(_), Err(e)) => Err(StoreError::Invalid(format!("commit failed: {e}"))),
        (outcome, _) => outcome,
    }
}

/// Queues `f` for the writer and waits until its transaction committed. `isolated` runs it in
/// its own savepoint, so that its failure undoes only its own statements.
async fn write_with<T, F>(writer: &mpsc::Sender<Option<Job>>, isolated: bool, f: F) -> Result<T>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    {
        let (done, result) = oneshot::channel::<Result<T>>();
        let run: Run = Box::new(move |conn| {
            Box::pin(async move {
                let outcome = f(conn).await;
                let ok = outcome.is_ok();
                let finish: Finish = Box::new(move |committed: Result<(), String>| {
                    let _ = done.send(after_commit(outcome, &committed));
                });
                (ok, finish)
            })
        });
        writer
            .send(Some(Job::Run { isolated, run }))
            .await
            .map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }
}

async fn write_loop(
    mut conn: SqliteConnection,
    mut jobs: mpsc::Receiver<Option<Job>>,
    wal_sync: Option<WalSync>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    while !closing && jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        closing = batch.iter().any(Option::is_none);
        let mut finishers = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await {
            tracing::error!(error = %e, "cannot begin a write transaction");
            // Dropping the jobs closes their reply channels: each caller gets an error, nothing ran.
            batch.clear();
            continue;
        }
        for job in batch.drain(..).flatten() {
            match job {
                Job::Run { isolated, run } => {
                    if isolated {
                        let _ = sqlx::query("SAVEPOINT job").execute(&mut conn).await;
                    }
                    let (ok, finish) = run(&mut conn).await;
                    if isolated {
                        if !ok {
                            let _ = sqlx::query("ROLLBACK TO job").execute(&mut conn).await;
                        }
                        let _ = sqlx::query("RELEASE job").execute(&mut conn).await;
                    }
                    finishers.push(finish);
                }
                Job::Events(job) => events.push(job),
            }
        }
        let stored = store_event_jobs(&mut conn, &events).await;
        let committed = sqlx::query("COMMIT")
            .execute(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        if let Err(e) = &committed {
            tracing::error!(error = %e, "write transaction failed to commit");
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        let mut answers = finishers;
        for (job, stored) in events.into_iter().zip(stored) {
            answers.push(Box::new(move |durable: Result<(), String>| {
                let _ = job.done.send(after_commit(stored, &durable));
            }));
        }
        match (&committed, &wal_sync) {
            (Ok(()), Some(wal_sync)) => wal_sync.after_sync(answers),
            _ => answers
                .into_iter()
                .for_each(|answer| answer(committed.clone())),
        }
    }
    if let Some(wal_sync) = wal_sync {
        wal_sync.finish();
    }
    let _ = conn.close().await;
}

/// Inserts the events of all `jobs` together, straight through SQLite's C API: one prepared statement
/// run row by row, with no intermediate argument buffers and no round trip to the connection's thread.
/// Should a row fail, each job is retried in a savepoint of its own, so that one caller's bad rows (say,
/// of a device deleted meanwhile) fail that caller alone. Returns each job's outcome, in order.
async fn store_event_jobs(conn: &mut SqliteConnection, jobs: &[EventsJob]) -> Vec<Result<()>> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let mut handle = match conn.lock_handle().await {
        Ok(handle) => handle,
        Err(e) => return all_failed(jobs, e),
    };
    match direct::borrow(&mut handle) {
        Ok(db) => insert_event_jobs(&db, jobs),
        Err(e) => all_failed(jobs, e),
    }
}

/// The same error for every job: nothing of theirs was written.
fn all_failed(jobs: &[EventsJob], e: impl std::fmt::Display) -> Vec<Result<()>> {
    jobs.iter()
        .map(|_| Err(StoreError::Invalid(format!("events not stored: {e}"))))
        .collect()
}

fn insert_event_jobs(db: &rusqlite::Connection, jobs: &[EventsJob]) -> Vec<Result<()>> {
    let mut insert = match db.prepare(INSERT_EVENT) {
        Ok(insert) => insert,
        Err(e) => return all_failed(jobs, e),
    };
    let all = in_savepoint(db, || insert_jobs(db, &mut insert, jobs));
    match all {
        Ok(()) => jobs.iter().map(|_| Ok(())).collect(),
        Err(e) if jobs.len() == 1 => vec![Err(e)],
        Err(_) => jobs
            .iter()
            .map(|job| {
                in_savepoint(db, || {
                    insert_jobs(db, &mut insert, std::slice::from_ref(job))
                })
            })
            .collect(),
    }
}

/// Runs `f` in a savepoint: all it wrote stays, or none of it.
fn in_savepoint(db: &rusqlite::Connection, f: impl FnOnce() -> Result<()>) -> Result<()> {
    db.execute_batch("SAVEPOINT events")?;
    let outcome = f();
    if outcome.is_err() {
        db.execute_batch("ROLLBACK TO events")?;
    }
    db.execute_batch("RELEASE events")?;
    outcome
}

/// Viruses found among a device's newly stored events.
#[derive(Default)]
struct Infections<'a> {
    found: i64,
    last_at: &'a str,
    last_name: Option<&'a str>,
}

/// Inserts the events of `jobs`, skipping resends, and adds the viruses found among the new ones to
/// `device_infections`.
fn insert_jobs(
    db: &rusqlite::Connection,
    insert: &mut rusqlite::Statement<'_>,
    jobs: &[EventsJob],
) -> Result<()> {
    use rusqlite::params;
    let mut infections: HashMap<i64, Infections> = HashMap::new();
    for job in jobs {
        for e in &job.events {
            let n = &e.named;
            let [p1, p2, p3, p4, p5, p6, p7, p8, p9] = &e.par;
            let stored = insert.execute(params![
                job.device,
                e.event_id,
                e.severity,
                e.product_name,
                e.product_version,
                e.event_type,
                e.event_type_display_name,
                e.descr,
                e.locid,
                opt_ts(e.rise_time),
                e.rise_time_ms,
                p1,
                p2,
                p3,
                p4,
                p5,
                p6,
                p7,
                p8,
                p9,
                n.object_name,
                n.virus_name,
                n.uid,
                n.user_name,
                n.detection_type,
                n.attack_name,
                n.protocol,
                n.ip_address,
                n.port,
                e.truncated,
                (!e.odd_fields.is_empty()).then(|| e.odd_fields.join(",")),
                job.received_at,
                job.address,
            ])? == 1;
            if stored && e.event_type.as_deref() == Some(crate::events::VIRUS_FOUND) {
                let device = infections.entry(job.device).or_default();
                device.found += 1;
                device.last_at = &job.received_at;
                device.last_name = n.virus_name.as_deref();
            }
        }
    }
    if !infections.is_empty() {
        let mut count = db.prepare(COUNT_INFECTIONS)?;
        for (device, i) in infections {
            count.execute(params![device, i.found, i.last_at, i.last_name])?;
        }
    }
    Ok(())
}

/// One event; a resend of (device, event_id) is skipped.
const INSERT_EVENT: &str = "INSERT INTO events (device, event_id, severity, product_name,
    product_version, event_type, event_type_display_name, descr, locid, rise_time, rise_time_ms,
    par1, par2, par3, par4, par5, par6, par7, par8, par9,
    object_name, virus_name, uid, user_name, detection_type, attack_name, protocol, ip_address, port,
    truncated, odd_fields, received_at, source_address)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
        ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)
    ON CONFLICT (device, event_id) DO NOTHING";

/// Adds `?2` viruses found to device `?1`, the last at `?3` named `?4`.
const COUNT_INFECTIONS: &str = "INSERT INTO device_infections
        (device, viruses_found, last_virus_at, last_virus_name) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (device) DO UPDATE SET viruses_found = viruses_found + excluded.viruses_found,
        last_virus_at = excluded.last_virus_at, last_virus_name = excluded.last_virus_name";

/// SQLite's C API on the writer's connection, for the statements where sqlx's per-argument copies and
/// per-statement thread hop cost the most.
#[allow(unsafe_code)]
mod direct {
    use sqlx::sqlite::LockedSqliteHandle;

    /// The writer's connection as a `rusqlite::Connection`, for as long as `handle` stays locked.
    pub(super) fn borrow<'h>(
        handle: &'h mut LockedSqliteHandle<'_>,
    ) -> rusqlite::Result<Borrowed<'h>> {
        let raw = handle.as_raw_handle().as_ptr();
        // SAFETY: `raw` is a live connection: sqlx closes it only when the `SqliteConnection` drops,
        // and the lock borrows that connection. While the lock is held, sqlx's thread makes no call on
        // the handle, so this thread has it to itself. `from_handle` does not take ownership: dropping
        // the `Connection` leaves the handle open. `Borrowed` borrows the lock, so the `Connection` and
        // every statement prepared on it are gone before the lock is released.
        let db = unsafe { rusqlite::Connection::from_handle(raw) }?;
        Ok(Borrowed {
            db,
            _lock: std::marker::PhantomData,
        })
    }

    pub(super) struct Borrowed<'h> {
        db: rusqlite::Connection,
        _lock: std::marker::PhantomData<&'h mut ()>,
    }

    impl std::ops::Deref for Borrowed<'_> {
        type Target = rusqlite::Connection;
        fn deref(&self) -> &rusqlite::Connection {
            &self.db
        }
    }
}

fn ts(t: OffsetDateTime) -> String {
    timestamp(t)
}

fn opt_ts(t: Option<OffsetDateTime>) -> Option<String> {
    t.map(ts)
}

fn to_json(p: &Params) -> String {
    serde_json::to_string(p).expect("params always serialise")
}

fn from_json(text: Option<String>) -> Result<Option<Params>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

async fn audit(
    conn: &mut SqliteConnection,
    actor: &str,
    action: &str,
    object: &str,
    details: serde_json::Value,
) -> Result<()> {
    sqlx::query("INSERT INTO audit (actor, action, object, details) VALUES (?, ?, ?, ?)")
        .bind(actor)
        .bind(action)
        .bind(object)
        .bind(details.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

async fn ensure_group_in(conn: &mut SqliteConnection, parent: i64, name: &str) -> Result<i64> {
    sqlx::query("INSERT INTO groups (parent_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING")
        .bind(parent)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(
        sqlx::query_scalar("SELECT id FROM groups WHERE parent_id = ? AND name = ?")
            .bind(parent)
            .bind(name)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Device row id for a DeviceId, inside a write.
async fn device_row(conn: &mut SqliteConnection, device_id: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM devices WHERE device_id = ?")
            .bind(device_id)
            .fetch_optional(conn)
            .await?,
    )
}

async fn upsert_app_info(
    conn: &mut SqliteConnection,
    device: i64,
    info: &AppInfo,
    now: &str,
) -> Result<()> {
    let p = &info.prod_info;
    let d = &info.dev_info;
    let mut q = sqlx::query(
        "INSERT OR REPLACE INTO device_app_info (device, product_name, product_version, install_time,
            display_name, prod_version,
            key_current_type, key_current_prod_suite_id, key_current_app_id, key_current_install_date,
            key_current_expiration_date, key_current_lic_period, key_current_lic_count, key_current_serial,
            key_current_maj_ver, key_current_prod_name,
            key_next_type, key_next_prod_suite_id, key_next_app_id, key_next_install_date,
            key_next_expiration_date, key_next_lic_period, key_next_lic_count, key_next_serial,
            key_next_maj_ver, key_next_prod_name,
            presumed_name, presumed_group, os_type, os_ver_major, os_ver_minor, os_manufacturer, os_name,
            os_ver, memory, processor_family, system_name, system_type, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                 ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(device)
    .bind(&p.product_name)
    .bind(&p.product_version)
    .bind(ts(p.install_time))
    .bind(&p.display_name)
    .bind(&p.prod_version);
    for key in [&info.license_info.key_current, &info.license_info.key_next] {
        let k = key.as_ref();
        q = q
            .bind(k.map(|k| k.key_type))
            .bind(k.map(|k| k.key_prod_suite_id))
            .bind(k.map(|k| k.key_app_id))
            .bind(k.map(|k| ts(k.key_install_date)))
            .bind(k.map(|k| ts(k.key_expiration_date)))
            .bind(k.map(|k| k.key_lic_period))
            .bind(k.and_then(|k| k.key_lic_count))
            .bind(k.map(|k| k.key_serial.clone()))
            .bind(k.map(|k| k.key_maj_ver.clone()))
            .bind(k.map(|k| k.key_prod_name.clone()));
    }
    q.bind(&d.presumed_name)
        .bind(&d.presumed_group)
        .bind(d.os_type)
        .bind(d.os_ver_major)
        .bind(d.os_ver_minor)
        .bind(&d.os_manufacturer)
        .bind(&d.os_name)
        .bind(&d.os_ver)
        // SQLite integers are signed; memory sizes beyond i64 are not real devices.
        .bind(d.memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX)))
        .bind(&d.processor_family)
        .bind(&d.system_name)
        .bind(&d.system_type)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

async fn upsert_app_state(
    conn: &mut SqliteConnection,
    device: i64,
    s: &AppState,
    now: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT OR REPLACE INTO device_app_state (device, state_app, state_rtp, last_full_scan,
            last_update_time, bases_date, bases_install_date, bases_records, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(device)
    .bind(s.state_app)
    .bind(s.state_rtp)
    .bind(opt_ts(s.last_full_scan))
    .bind(opt_ts(s.last_update_time))
    .bind(opt_ts(s.bases_date))
    .bind(opt_ts(s.bases_install_date))
    .bind(s.bases_records)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets columns of the device's sync row (creating the row), plus the last sync time, in one
/// statement.
async fn set_sync(
    conn: &mut SqliteConnection,
    device: i64,
    columns: &[&str],
    values: Vec<Vec<u8>>,
    now: &str,
) -> Result<()> {
    let names = columns.join(", ");
    let marks = vec!["?"; columns.len()].join(", ");
    let updates: Vec<String> = columns
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let sql = format!(
        "INSERT INTO device_sync (device, last_sync_at, {names}) VALUES (?, ?, {marks})
         ON CONFLICT (device) DO UPDATE SET last_sync_at = excluded.last_sync_at, {}",
        updates.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(device).bind(now);
    for v in values {
        q = q.bind(v);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

fn parse_ts(text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {text:?}: {e}")))
}

fn session_from_row(id: &str, r: &SqliteRow, last_used: OffsetDateTime) -> Result<StoredSession> {
    Ok(StoredSession {
        id: id.to_string(),
        device: r.get(0),
        created: parse_ts(r.get(1))?,
        last_used,
        data: serde_json::from_str(r.get(2)).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

/// Column names in table order, and the primary key's columns in key order.
async fn table_columns(
    conn: &mut SqliteConnection,
    table: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let rows = sqlx::query("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid")
        .bind(table)
        .fetch_all(conn)
        .await?;
    let columns = rows.iter().map(|r| r.get::<String, _>(0)).collect();
    let mut key: Vec<(i64, String)> = rows
        .iter()
        .filter(|r| r.get::<i64, _>(1) > 0)
        .map(|r| (r.get(1), r.get(0)))
        .collect();
    key.sort();
    Ok((columns, key.into_iter().map(|(_, c)| c).collect()))
}

/// One column of a row as a dump cell, by the type of the value (SQLite types values, not columns).
fn dump_cell(row: &SqliteRow, i: usize) -> Result<dump::Cell> {
    use dump::Cell;
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let kind = raw.type_info().name().to_string();
    Ok(match kind.as_str() {
        "INTEGER" | "BOOLEAN" => Cell::Int(row.try_get(i)?),
        "REAL" => Cell::Real(row.try_get(i)?),
        "BLOB" => Cell::Bytes(row.try_get(i)?),
        _ => Cell::Text(row.try_get(i)?),
    })
}

async fn insert_batch(
    conn: &mut SqliteConnection,
    batch: &dump::Batch,
    columns: &[String],
) -> Result<()> {
    if let Some(missing) = batch.columns.iter().find(|c| !columns.contains(c)) {
        return Err(StoreError::Invalid(format!(
            "dump: column {missing} of table {} does not exist in this database",
            batch.table
        )));
    }
    let one = format!("({})", vec!["?"; batch.columns.len()].join(", "));
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        batch.table,
        batch.columns.join(", "),
        vec![one; batch.rows.len()].join(", ")
    );
    let mut q = sqlx::query(&sql);
    for cell in batch.rows.iter().flatten() {
        q = match cell {
            dump::Cell::Null => q.bind(None::<String>),
            dump::Cell::Int(i) => q.bind(*i),
            dump::Cell::Real(f) => q.bind(*f),
            dump::Cell::Text(s) => q.bind(s.as_str()),
            dump::Cell::Bytes(b) => q.bind(b.as_slice()),
        };
    }
    q.execute(conn).await?;
    Ok(())
}

/// The body of an import, inside the transaction [`SqliteStore::import`] opened.
async fn import_in(conn: &mut SqliteConnection, reader: &mut dump::Reader<'_>) -> Result<u64> {
    for table in dump::TABLES {
        let occupied = if *table == "groups" {
            "SELECT EXISTS (SELECT 1 FROM groups WHERE id > 2)".to_string()
        } else if dump::SEEDED.contains(table) {
            continue;
        } else {
            format!("SELECT EXISTS (SELECT 1 FROM {table})")
        };
        if sqlx::query_scalar::<_, bool>(&occupied)
            .fetch_one(&mut *conn)
            .await?
        {
            return Err(not_empty(table));
        }
    }
    for sql in [
        "DELETE FROM revisions",
        "DELETE FROM groups WHERE parent_id IS NOT NULL",
        "DELETE FROM groups",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    let mut loaded: Vec<&str> = Vec::new();
    let mut columns = Vec::new();
    let mut total = 0;
    while let Some(batch) = reader.next_batch(MAX_PARAMS)? {
        if loaded.last() != Some(&batch.table) {
            columns = table_columns(conn, batch.table).await?.0;
            if dump::DERIVED.contains(&batch.table) {
                sqlx::query(&format!("DELETE FROM {}", batch.table))
                    .execute(&mut *conn)
                    .await?;
            }
            loaded.push(batch.table);
        }
        insert_batch(conn, &batch, &columns).await?;
        total += batch.rows.len() as u64;
    }
    let roots: i64 = sqlx::query_scalar("SELECT count(*) FROM groups WHERE id IN (1, 2)")
        .fetch_one(&mut *conn)
        .await?;
    if roots != 2 {
        return Err(StoreError::Invalid(
            "dump: the root and Unassigned groups (ids 1 and 2) are missing".into(),
        ));
    }
    sqlx::query(
        "INSERT OR IGNORE INTO revisions (name, rev) VALUES ('policy', 1), ('subscriptions', 1)",
    )
    .execute(&mut *conn)
    .await?;
    Ok(total)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        if let Some(flusher) = self.flusher.lock().unwrap().take() {
            flusher.abort();
        }
        if let Err(e) = flush_seen(&self.seen, &self.writer).await {
            tracing::warn!(error = %e, "last-seen times lost at close");
        }
        let thread = self.writer_thread.lock().unwrap().take();
        if let Some(thread) = thread {
            let _ = self.writer.send(None).await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.pool.close().await;
    }

    async fn device_login(&self, device_id: &str) -> Result<Option<DeviceLogin>> {
        let row = sqlx::query("SELECT id, credential, status FROM devices WHERE device_id = ?")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| DeviceLogin {
            id: r.get(0),
            credential: r.get(1),
            blocked: r.get::<String, _>(2) == "blocked",
        }))
    }

    async fn enrol_device(
        &self,
        device_id: &str,
        credential: &[u8],
        seen: &Seen,
    ) -> Result<Option<i64>> {
        let (device_id, credential) = (device_id.to_string(), credential.to_vec());
        let (at, address) = (ts(seen.at), seen.address.clone());
        self.write(move |conn| {
            Box::pin(async move {
                let updated = sqlx::query(
                    "UPDATE devices SET credential = ?, first_seen = coalesce(first_seen, ?),
                         last_seen = ?, last_address = ?
                     WHERE device_id = ? AND credential IS NULL RETURNING id",
                )
                .bind(&credential)
                .bind(&at)
                .bind(&at)
                .bind(&address)
                .bind(&device_id)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(row) = updated {
                    return Ok(Some(row.get(0)));
                }
                let inserted = sqlx::query(
                    "INSERT INTO devices (device_id, credential, first_seen, last_seen, last_address)
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO NOTHING RETURNING id",
                )
                .bind(&device_id)
                .bind(&credential)
                .bind(&at)
                .bind(&at)
                .bind(&address)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(inserted.map(|r| r.get(0)))
            })
        })
        .await
    }

    async fn register_device(&self, device_id: &str, actor: &str) -> Result<i64> {
        let (device_id, actor) = (device_id.to_string(), actor.to_string());
        self.write(move |conn| {
            Box::pin(async move {
                if let Some(id) = device_row(conn, &device_id).await? {
                    return Ok(id);
                }
                let id: i64 =
                    sqlx::query_scalar("INSERT INTO devices (device_id) VALUES (?) RETURNING id")
                        .bind(&device_id)
                        .fetch_one(&mut *conn)
                        .await?;
                audit(
                    conn,
                    &actor,
                    "device.register",
                    &device_id,
                    serde_json::json!({}),
                )
                .await?;
                Ok(id)
            })
        })
        .await
    }

    async fn reset_device(&self, device_id: &str, actor: &str) -> Result<bool> {
        let change = DeviceChange::new(device_id, actor, "device.reset", serde_json::json!({}));
        self.change_device(
            "UPDATE devices SET credential = NULL WHERE device_id = ?",
            None,
            change,
        )
        .await
    }

    async fn set_device_blocked(
        &self,
        device_id: &str,
        blocked: bool,
        actor: &str,
    ) -> Result<bool> {
        let status = if blocked { "blocked" } else { "active" };
        let details = serde_json::json!({ "status": status });
        let change = DeviceChange::new(device_id, actor, "device.status", details);
        self.change_device(
            "UPDATE devices SET status = ? WHERE device_id = ?",
            Some(SqlValue::Text(status.into())),
            change,
        )
        .await
    }

    async fn touch_device(&self, device: i64, seen: &Seen) -> Result<()> {
        self.seen.lock().unwrap().insert(device, seen.clone());
        Ok(())
    }

    async fn device_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM devices")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn sync_record(&self, device: i64) -> Result<SyncRecord> {
        let row = sqlx::query(
            "SELECT d.group_id, s.info_hash, s.state_hash, s.settings_hash, s.policy_hash,
                    s.policy_digest, s.subs_hash, s.subs_digest,
                    st.current IS NOT NULL, coalesce(st.pending_rev > st.pushed_rev, 0),
                    (SELECT rev FROM revisions WHERE name = 'policy'),
                    (SELECT rev FROM revisions WHERE name = 'subscriptions')
             FROM devices d
             LEFT JOIN device_sync s ON s.device = d.id
             LEFT JOIN device_settings st ON st.device = d.id
             WHERE d.id = ?",
        )
        .bind(device)
        .fetch_one(&self.pool)
        .await?;
        Ok(SyncRecord {
            group_id: row.get(0),
            known: Known {
                info_hash: row.get(1),
                state_hash: row.get(2),
                settings_hash: row.get(3),
                policy_hash: row.get(4),
                policy_digest: row.get(5),
                subs_hash: row.get(6),
                subs_digest: row.get(7),
                settings_known: row.get::<Option<bool>, _>(8).unwrap_or(false),
                settings_pending: row.get::<Option<bool>, _>(9).unwrap_or(false),
            },
            revisions: Revisions {
                policy: row.get(10),
                subscriptions: row.get(11),
            },
        })
    }

    async fn settings(&self, device: i64) -> Result<SettingsRecord> {
        let row = sqlx::query(
            "SELECT current, pending, pending_rev FROM device_settings WHERE device = ?",
        )
        .bind(device)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(SettingsRecord::default()),
            Some(r) => Ok(SettingsRecord {
                current: from_json(r.get(0))?,
                pending: from_json(r.get(1))?,
                pending_rev: r.get(2),
            }),
        }
    }

    async fn record_result(
        &self,
        device: i64,
        result: &SyncResult,
        now: OffsetDateTime,
    ) -> Result<Recorded> {
        let result = result.clone();
        let now = ts(now);
        self.write(move |conn| {
            Box::pin(async move {
                let mut recorded = Recorded::default();
                match &result {
                    SyncResult::AppInfo(info) => {
                        upsert_app_info(conn, device, info, &now).await?;
                        set_sync(conn, device, &["info_hash"], vec![info.hash.clone()], &now).await?;
                        let group: i64 = sqlx::query_scalar("SELECT group_id FROM devices WHERE id = ?")
                            .bind(device)
                            .fetch_one(&mut *conn)
                            .await?;
                        let name = info.dev_info.presumed_group.trim();
                        if group == UNASSIGNED_GROUP && !name.is_empty() {
                            let name: String = name.chars().take(255).collect();
                            let target = ensure_group_in(conn, ROOT_GROUP, &name).await?;
                            sqlx::query("UPDATE devices SET group_id = ? WHERE id = ?")
                                .bind(target)
                                .bind(device)
                                .execute(&mut *conn)
                                .await?;
                            recorded.moved_to = Some(target);
                        }
                        let presumed = info.dev_info.presumed_name.trim();
                        if !presumed.is_empty() {
                            sqlx::query("UPDATE devices SET display_name = ? WHERE id = ?")
                                .bind(presumed)
                                .bind(device)
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                    SyncResult::AppState(state) => {
                        upsert_app_state(conn, device, state, &now).await?;
                        set_sync(conn, device, &["state_hash"], vec![state.hash.clone()], &now).await?;
                    }
                    SyncResult::SettingsReported { hash, tree } => {
                        sqlx::query(
                            "INSERT INTO device_settings (device, current, reported_at) VALUES (?, ?, ?)
                             ON CONFLICT (device) DO UPDATE SET current = excluded.current,
                                 reported_at = excluded.reported_at",
                        )
                        .bind(device)
                        .bind(to_json(tree))
                        .bind(&now)
                        .execute(&mut *conn)
                        .await?;
                        set_sync(conn, device, &["settings_hash"], vec![hash.clone()], &now).await?;
                    }
                    SyncResult::SettingsPushed { hash, tree, rev } => {
                        // Clear the pending changes only if no newer admin change arrived meanwhile.
                        sqlx::query(
                            "UPDATE device_settings SET current = ?, reported_at = ?, pushed_rev = ?,
                                 pending = CASE WHEN pending_rev <= ? THEN NULL ELSE pending END
                             WHERE device = ?",
                        )
                        .bind(to_json(tree))
                        .bind(&now)
                        .bind(rev)
                        .bind(rev)
                        .bind(device)
                        .execute(&mut *conn)
                        .await?;
                        set_sync(conn, device, &["settings_hash"], vec![hash.clone()], &now).await?;
                    }
                    SyncResult::PolicyPushed { hash, digest } => {
                        set_sync(
                            conn,
                            device,
                            &["policy_hash", "policy_digest"],
                            vec![hash.clone(), digest.clone()],
                            &now,
                        )
                        .await?;
                    }
                    SyncResult::SubscriptionsPushed { hash, digest } => {
                        set_sync(
                            conn,
                            device,
                            &["subs_hash", "subs_digest"],
                            vec![hash.clone(), digest.clone()],
                            &now,
                        )
                        .await?;
                    }
                    SyncResult::Failed { command, error } => {
                        sqlx::query("INSERT OR IGNORE INTO device_sync (device) VALUES (?)")
                            .bind(device)
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query(
                            "UPDATE device_sync SET last_error_command = ?, last_error_code = ?,
                                 last_error_module = ?, last_error_message = ?, last_error_at = ?
                             WHERE device = ?",
                        )
                        .bind(command)
                        .bind(error.code)
                        .bind(&error.module)
                        .bind(&error.message)
                        .bind(&now)
                        .bind(device)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                Ok(recorded)
            })
        })
        .await
    }

    async fn revisions(&self) -> Result<Revisions> {
        let rows = sqlx::query("SELECT name, rev FROM revisions")
            .fetch_all(&self.pool)
            .await?;
        let mut revs = Revisions::default();
        for r in rows {
            match r.get::<String, _>(0).as_str() {
                "policy" => revs.policy = r.get(1),
                "subscriptions" => revs.subscriptions = r.get(1),
                _ => {}
            }
        }
        Ok(revs)
    }

    async fn group_chain(&self, group: i64) -> Result<Vec<i64>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "WITH RECURSIVE chain (id, parent_id, depth) AS (
                 SELECT id, parent_id, 0 FROM groups WHERE id = ?
                 UNION ALL
                 SELECT g.id, g.parent_id, c.depth + 1 FROM groups g JOIN chain c ON g.id = c.parent_id
                 WHERE c.depth < 64
             ) SELECT id FROM chain ORDER BY depth DESC",
        )
        .bind(group)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    async fn policy_rows(&self, groups: &[i64]) -> Result<Vec<PolicyRow>> {
        let list = serde_json::to_string(groups).expect("ids serialise");
        let rows = sqlx::query(
            "SELECT group_id, path, value_type, value, locked FROM policy
             WHERE group_id IN (SELECT value FROM json_each(?))",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| PolicyRow {
                group_id: r.get(0),
                path: r.get(1),
                value_type: r.get(2),
                value: r.get(3),
                locked: r.get(4),
            })
            .collect())
    }

    async fn subscription_rows(&self, groups: &[i64]) -> Result<Vec<SubscriptionRow>> {
        let list = serde_json::to_string(groups).expect("ids serialise");
        let rows = sqlx::query(
            "SELECT group_id, severity, event_type FROM subscriptions
             WHERE group_id IN (SELECT value FROM json_each(?))",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| SubscriptionRow {
                group_id: r.get(0),
                severity: r.get(1),
                event_type: r.get(2),
            })
            .collect())
    }

    async fn store_events(
        &self,
        device: i64,
        events: Vec<crate::events::StoredEvent>,
        seen: &Seen,
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, result) = oneshot::channel();
        let job = EventsJob {
            device,
            events,
            received_at: ts(seen.at),
            address: seen.address.clone(),
            done,
        };
        self.writer
            .send(Some(Job::Events(job)))
            .await
            .map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    async fn event_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn groups(&self) -> Result<Vec<Group>> {
        let rows = sqlx::query("SELECT id, parent_id, name FROM groups ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Group {
                id: r.get(0),
                parent_id: r.get(1),
                name: r.get(2),
            })
            .collect())
    }

    async fn ensure_group(&self, parent: i64, name: &str) -> Result<i64> {
        let name = name.to_string();
        self.write(move |conn| Box::pin(async move { ensure_group_in(conn, parent, &name).await }))
            .await
    }

    async fn move_device(&self, device_id: &str, group: i64, actor: &str) -> Result<bool> {
        let details = serde_json::json!({ "group": group });
        let change = DeviceChange::new(device_id, actor, "device.move", details);
        self.change_device(
            "UPDATE devices SET group_id = ? WHERE device_id = ?",
            Some(SqlValue::Int(group)),
            change,
        )
        .await
    }

    async fn queue_settings(&self, device_id: &str, changes: &Params, actor: &str) -> Result<bool> {
        let (device_id, actor, changes) =
            (device_id.to_string(), actor.to_string(), changes.clone());
        self.write(move |conn| {
            Box::pin(async move {
                let Some(device) = device_row(conn, &device_id).await? else {
                    return Ok(false);
                };
                let pending: Option<String> =
                    sqlx::query_scalar("SELECT pending FROM device_settings WHERE device = ?")
                        .bind(device)
                        .fetch_optional(&mut *conn)
                        .await?
                        .flatten();
                let merged = match from_json(pending)? {
                    Some(old) => crate::sync::policy::apply_changes(&old, &changes),
                    None => changes.clone(),
                };
                sqlx::query(
                    "INSERT INTO device_settings (device, pending, pending_rev) VALUES (?, ?, 1)
                     ON CONFLICT (device) DO UPDATE SET pending = excluded.pending,
                         pending_rev = device_settings.pending_rev + 1",
                )
                .bind(device)
                .bind(to_json(&merged))
                .execute(&mut *conn)
                .await?;
                audit(
                    conn,
                    &actor,
                    "device.settings",
                    &device_id,
                    serde_json::to_value(&changes).unwrap_or_default(),
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    async fn set_policy(
        &self,
        group: i64,
        path: &str,
        value: &Value,
        locked: bool,
        actor: &str,
    ) -> Result<()> {
        crate::sync::policy::split_path(path).map_err(StoreError::Invalid)?;
        let (value_type, text) = policy_value(value)?;
        let (path, actor) = (path.to_string(), actor.to_string());
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO policy (group_id, path, value_type, value, locked) VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (group_id, path) DO UPDATE SET value_type = excluded.value_type,
                         value = excluded.value, locked = excluded.locked",
                )
                .bind(group)
                .bind(&path)
                .bind(value_type)
                .bind(&text)
                .bind(locked)
                .execute(&mut *conn)
                .await?;
                audit(
                    conn,
                    &actor,
                    "policy.set",
                    &format!("group:{group}"),
                    serde_json::json!({ "path": path, "type": value_type, "value": text, "locked": locked }),
                )
                .await
            })
        })
        .await
    }

    async fn set_subscription(
        &self,
        group: i64,
        severity: i32,
        event_type: &str,
        subscribed: bool,
        actor: &str,
    ) -> Result<()> {
        let (event_type, actor) = (event_type.to_string(), actor.to_string());
        self.write(move |conn| {
            Box::pin(async move {
                let sql = if subscribed {
                    "INSERT OR IGNORE INTO subscriptions (group_id, severity, event_type) VALUES (?, ?, ?)"
                } else {
                    "DELETE FROM subscriptions WHERE group_id = ? AND severity = ? AND event_type = ?"
                };
                sqlx::query(sql)
                    .bind(group)
                    .bind(severity)
                    .bind(&event_type)
                    .execute(&mut *conn)
                    .await?;
                audit(
                    conn,
                    &actor,
                    if subscribed { "subscription.add" } else { "subscription.remove" },
                    &format!("group:{group}"),
                    serde_json::json!({ "severity": severity, "event_type": event_type }),
                )
                .await
            })
        })
        .await
    }

    async fn insert_session(
        &self,
        session: &StoredSession,
        per_device: usize,
        may_grow: bool,
    ) -> Result<Option<u64>> {
        let s = session.clone();
        self.write(move |conn| {
            Box::pin(async move {
                let existing: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM sessions WHERE device = ?")
                        .bind(s.device)
                        .fetch_one(&mut *conn)
                        .await?;
                let Some(keep) = sessions_to_keep(existing, per_device, may_grow) else {
                    return Ok(None);
                };
                let replaced = sqlx::query(
                    "DELETE FROM sessions WHERE device = ?1 AND id NOT IN
                         (SELECT id FROM sessions WHERE device = ?1
                          ORDER BY julianday(created_at) DESC, id DESC LIMIT ?2)",
                )
                .bind(s.device)
                .bind(keep)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                sqlx::query(
                    "INSERT INTO sessions (id, device, created_at, last_used_at, data)
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&s.id)
                .bind(s.device)
                .bind(ts(s.created))
                .bind(ts(s.last_used))
                .bind(s.data.to_string())
                .execute(&mut *conn)
                .await?;
                Ok(Some(replaced))
            })
        })
        .await
    }

    async fn remove_device_sessions(&self, device: i64) -> Result<u64> {
        self.write(move |conn| {
            Box::pin(async move {
                Ok(sqlx::query("DELETE FROM sessions WHERE device = ?")
                    .bind(device)
                    .execute(conn)
                    .await?
                    .rows_affected())
            })
        })
        .await
    }

    async fn session_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn touch_session(
        &self,
        id: &str,
        now: OffsetDateTime,
        cutoff: &SessionCutoff,
    ) -> Result<Option<StoredSession>> {
        let (id, cutoff) = (id.to_string(), *cutoff);
        self.write(move |conn| {
            Box::pin(async move {
                // julianday() compares instants; RFC 3339 texts with and without fractional
                // seconds do not sort as text.
                let row = sqlx::query(
                    "UPDATE sessions SET last_used_at = ?
                     WHERE id = ? AND julianday(last_used_at) >= julianday(?)
                         AND julianday(created_at) >= julianday(?)
                     RETURNING device, created_at, data",
                )
                .bind(ts(now))
                .bind(&id)
                .bind(ts(cutoff.used_since))
                .bind(ts(cutoff.created_since))
                .fetch_optional(&mut *conn)
                .await?;
                match row {
                    Some(r) => Ok(Some(session_from_row(&id, &r, now)?)),
                    None => {
                        sqlx::query("DELETE FROM sessions WHERE id = ?")
                            .bind(&id)
                            .execute(&mut *conn)
                            .await?;
                        Ok(None)
                    }
                }
            })
        })
        .await
    }

    async fn update_session(&self, session: &StoredSession) -> Result<()> {
        let s = session.clone();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("UPDATE sessions SET last_used_at = ?, data = ? WHERE id = ?")
                    .bind(ts(s.last_used))
                    .bind(s.data.to_string())
                    .bind(&s.id)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn remove_session(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                Ok(sqlx::query("DELETE FROM sessions WHERE id = ?")
                    .bind(&id)
                    .execute(conn)
                    .await?
                    .rows_affected()
                    > 0)
            })
        })
        .await
    }

    async fn sweep_sessions(&self, cutoff: &SessionCutoff) -> Result<u64> {
        let cutoff = *cutoff;
        self.write(move |conn| {
            Box::pin(async move {
                Ok(sqlx::query(
                    "DELETE FROM sessions WHERE julianday(last_used_at) < julianday(?)
                         OR julianday(created_at) < julianday(?)",
                )
                .bind(ts(cutoff.used_since))
                .bind(ts(cutoff.created_since))
                .execute(conn)
                .await?
                .rows_affected())
            })
        })
        .await
    }

    async fn schema_version(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn export(
        &self,
        out: &mut (dyn FnMut(dump::Record) -> Result<()> + Send),
    ) -> Result<u64> {
        let schema = self.schema_version().await?;
        // One read transaction: WAL gives it a single snapshot of every table.
        let mut tx = self.pool.begin().await?;
        out(dump::Record::Header { schema })?;
        let mut total = 0;
        for table in dump::TABLES {
            let (columns, key) = table_columns(&mut tx, table).await?;
            out(dump::Record::Table {
                name: table.to_string(),
                columns: columns.clone(),
            })?;
            let order = if key.is_empty() {
                "rowid".to_string()
            } else {
                key.join(", ")
            };
            let sql = format!(
                "SELECT {} FROM {table} ORDER BY {order}",
                columns.join(", ")
            );
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let cells = (0..columns.len())
                    .map(|i| dump_cell(&row, i))
                    .collect::<Result<Vec<_>>>()?;
                out(dump::Record::Row(cells))?;
                total += 1;
            }
        }
        out(dump::Record::End { rows: total })?;
        tx.commit().await?;
        Ok(total)
    }

    async fn import(
        &self,
        input: &mut (dyn Iterator<Item = Result<dump::Record>> + Send),
    ) -> Result<u64> {
        let schema = self.schema_version().await?;
        let mut reader = dump::Reader::new(input, schema)?;
        // A connection of its own: the import is one long transaction, and the writer's closures
        // cannot borrow the input.
        let mut conn = SqliteConnection::connect_with(&self.options).await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
        let result = import_in(&mut conn, &mut reader).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = sqlx::query(end).execute(&mut conn).await;
        let _ = conn.close().await;
        let total = result?;
        ended?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::{EventBody, EventInfo};

    fn job(device: i64, ids: &[&str]) -> (EventsJob, oneshot::Receiver<Result<()>>) {
        let (done, result) = oneshot::channel();
        let events = ids
            .iter()
            .map(|id| {
                crate::events::normalize(EventInfo {
                    event_id: id.to_string(),
                    body: EventBody {
                        event_type: Some("GNRL_EV_VIRUS_FOUND".into()),
                        ..EventBody::default()
                    },
                })
            })
            .collect();
        let job = EventsJob {
            device,
            events,
            received_at: ts(OffsetDateTime::now_utc()),
            address: "192.0.2.1".into(),
            done,
        };
        (job, result)
    }

    /// Callers' events are inserted together; a caller whose rows cannot be stored fails alone.
    #[tokio::test]
    async fn merged_events_fail_only_the_caller_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        let seen = Seen {
            at: OffsetDateTime::now_utc(),
            address: "192.0.2.1".into(),
        };
        let device = store
            .enrol_device("merged-1", b"credential", &seen)
            .await
            .unwrap()
            .unwrap();
        let mut conn = SqliteConnection::connect_with(&store.options)
            .await
            .unwrap();

        // Together: a device that does not exist fails the shared savepoint, so each caller is
        // retried alone.
        let (a, _) = job(device, &["1", "2", "3"]);
        let (missing, _) = job(device + 1000, &["1"]);
        let (resent, _) = job(device, &["3", "4"]);
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        let outcomes = store_event_jobs(&mut conn, &[a, missing, resent]).await;
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(outcomes[1].is_err(), "{outcomes:?}");
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT event_id FROM events WHERE device = ? ORDER BY event_id")
                .bind(device)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(ids, ["1", "2", "3", "4"]);

        // Through the writer: every caller gets its answer once committed; a resend adds nothing.
        let jobs: Vec<_> = (0..300)
            .map(|i| {
                let store = &store;
                let seen = &seen;
                async move {
                    let (job, _) = job(device, &[&format!("w{}", i % 150), &format!("x{i}")]);
                    store.store_events(device, job.events, seen).await
                }
            })
            .collect();
        for outcome in futures_util::future::join_all(jobs).await {
            outcome.unwrap();
        }
        assert_eq!(store.event_count().await.unwrap(), 4 + 150 + 300);
        let infections: i64 =
            sqlx::query_scalar("SELECT viruses_found FROM device_infections WHERE device = ?")
                .bind(device)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(infections, 4 + 150 + 300);

        // Only viruses found count, and the last one names the device's last infection.
        let (mut mixed, _) = job(device, &["v1", "scan", "v2"]);
        mixed.events[1].event_type = Some("GNRL_EV_SCAN_FINISHED".into());
        mixed.events[0].named.virus_name = Some("EICAR-A".into());
        mixed.events[2].named.virus_name = Some("EICAR-B".into());
        store
            .store_events(device, mixed.events, &seen)
            .await
            .unwrap();
        let (found, name): (i64, Option<String>) = sqlx::query_as(
            "SELECT viruses_found, last_virus_name FROM device_infections WHERE device = ?",
        )
        .bind(device)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            (found, name.as_deref()),
            (4 + 150 + 300 + 2, Some("EICAR-B"))
        );
        conn.close().await.unwrap();
        store.close().await;
    }
}
