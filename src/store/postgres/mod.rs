//! The PostgreSQL backend, on sqlx: connection pools, one transaction per write, plpgsql triggers,
//! and notifications between the nodes that share the database.
//!
//! PostgreSQL runs concurrent transactions and groups their WAL flushes by itself, so unlike SQLite
//! there is no writer thread: each write is its own transaction on a pooled connection, durable when
//! `COMMIT` returns (with the server's default `synchronous_commit = on`). Shared statements run on
//! a pooled connection (`conn.rs`); event intake and "last seen" times have statements of their own. Several server nodes may share one database: what they must agree on
//! (credentials, revisions, sessions, the uniqueness of events, the bus's order) is decided by the
//! database, never in a node's memory.

mod conn;
mod dump;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::engine::{Engine, Jobs, ReadJob, WriteJob};
use super::*;

/// Connections per node. Every request holds one only for the length of its statements.
const MAX_CONNECTIONS: u32 = 16;
/// Connections per node for session rows, on top of [`MAX_CONNECTIONS`].
const SESSION_CONNECTIONS: u32 = 8;
/// How often queued "last seen" times are written.
const SEEN_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Rows of one PutEvents insert statement (33 parameters each).
const EVENTS_PER_STATEMENT: usize = 100;
/// Attempts of a write that PostgreSQL aborted to break a deadlock between two nodes.
const ATTEMPTS: usize = 3;
/// The advisory lock the bus's sequencer holds for a pass: one node at a time numbers entries.
const SEQUENCER_LOCK: i64 = 0x6d6f_6269_6c65; // "mobile"
/// Channels: new outbox entries (to number), new numbered entries (to read).
const OUTBOX_CHANNEL: &str = "mobile_admin_outbox";
const BUS_CHANNEL: &str = "mobile_admin_bus";

/// A pool that runs shared statements, each write job in a transaction of its own.
struct Pool {
    pool: PgPool,
}

impl Pool {
    async fn write(&self, job: WriteJob) -> Result<()> {
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            // Dropping the job drops its answer: the caller hears the database stopped.
            Err(e) => return Err(e.into()),
        };
        let (ok, finish) = job(&mut conn::Pg { conn: &mut tx }).await;
        let committed = if ok {
            tx.commit().await.map_err(|e| e.to_string())
        } else {
            let _ = tx.rollback().await;
            Ok(())
        };
        finish(committed);
        Ok(())
    }

    async fn read(&self, job: ReadJob) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        job(&mut conn::Pg { conn: &mut conn }).await;
        Ok(())
    }

    /// Each statement commits on its own: no BEGIN and COMMIT round trips.
    async fn autocommit(&self, job: WriteJob) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let (_, finish) = job(&mut conn::Pg { conn: &mut conn }).await;
        finish(Ok(()));
        Ok(())
    }
}

#[async_trait::async_trait]
impl Jobs for Pool {
    async fn submit_write(&self, job: WriteJob) -> Result<()> {
        self.write(job).await
    }

    async fn submit_read(&self, job: ReadJob) -> Result<()> {
        self.read(job).await
    }

    async fn submit_autocommit(&self, job: WriteJob) -> Result<()> {
        self.autocommit(job).await
    }
}

pub struct PgStore {
    main: Pool,
    /// For session rows only: their commits do not wait for the WAL flush (`synchronous_commit =
    /// off`). A session is not data anyone was promised: losing the last moments of session writes
    /// in a database crash only makes the devices concerned log in again. Everything else stays
    /// durable on return.
    sessions: Pool,
    /// "Last seen" times waiting to be written; flushed every second and on close.
    seen: Arc<Mutex<HashMap<i64, Seen>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Woken by the other nodes' (and this node's) notifications about the bus.
    bus: Arc<Notify>,
}

impl PgStore {
    /// Connects, creating the database first if the server says it does not exist, and brings
    /// its schema up to date (nodes starting together migrate one after the other: sqlx takes an
    /// advisory lock).
    pub async fn open(url: &str, store_options: StoreOptions) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url)?;
        let pool_options = |size| {
            PgPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(store_options.connect_timeout)
        };
        let pool = match pool_options(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => pool,
            Err(e) if sql_state_is(&e, "3D000") => {
                tracing::info!("creating the PostgreSQL database");
                match Postgres::create_database(url).await {
                    // Another node created it at the same moment.
                    Err(e) if !sql_state_is(&e, "42P04") => return Err(e.into()),
                    _ => {}
                }
                pool_options(MAX_CONNECTIONS)
                    .connect_with(options.clone())
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = sqlx::migrate!("./migrations/postgres").run(&pool).await {
            pool.close().await;
            return Err(e.into());
        }
        let sessions = pool_options(SESSION_CONNECTIONS)
            .connect_lazy_with(options.clone().options([("synchronous_commit", "off")]));
        let store = PgStore {
            main: Pool { pool: pool.clone() },
            sessions: Pool { pool: sessions },
            seen: Arc::default(),
            tasks: Mutex::new(Vec::new()),
            bus: Arc::new(Notify::new()),
        };
        let seen = store.seen.clone();
        let flusher = tokio::spawn(async move {
            let mut every = tokio::time::interval(SEEN_FLUSH_INTERVAL);
            loop {
                every.tick().await;
                if let Err(e) = flush_seen(&seen, &pool).await {
                    tracing::warn!(error = %e, "last-seen times not written; retrying");
                }
            }
        });
        let listener = tokio::spawn(listen(options, store.bus.clone()));
        store.tasks.lock().unwrap().extend([flusher, listener]);
        Ok(store)
    }

    fn pool(&self) -> &PgPool {
        &self.main.pool
    }
}

/// Follows the bus's notifications on a connection of its own, reconnecting when it drops.
async fn listen(options: PgConnectOptions, bus: Arc<Notify>) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(
                &PgPoolOptions::new()
                    .max_connections(1)
                    .connect_lazy_with(options.clone()),
            )
            .await?;
            listener.listen_all([OUTBOX_CHANNEL, BUS_CHANNEL]).await?;
            // Something may have been missed while not listening.
            bus.notify_one();
            loop {
                listener.recv().await?;
                bus.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(e) = listener.await {
            tracing::debug!(error = %e, "bus notifications interrupted; listening again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Writes the queued "last seen" times in one statement. If it fails (say, a deadlock with another
/// node flushing the same devices) the times go back in the queue for the next round.
async fn flush_seen(seen: &Mutex<HashMap<i64, Seen>>, pool: &PgPool) -> Result<()> {
    let batch = std::mem::take(&mut *seen.lock().unwrap());
    if batch.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, &Seen)> = batch.iter().map(|(d, s)| (*d, s)).collect();
    let result = sqlx::query(
        "UPDATE devices d SET last_seen = v.at, last_address = v.address
         FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) AS v (id, at, address)
         WHERE d.id = v.id",
    )
    .bind(rows.iter().map(|(d, _)| *d).collect::<Vec<i64>>())
    .bind(
        rows.iter()
            .map(|(_, s)| s.at)
            .collect::<Vec<OffsetDateTime>>(),
    )
    .bind(
        rows.iter()
            .map(|(_, s)| s.address.clone())
            .collect::<Vec<String>>(),
    )
    .execute(pool)
    .await;
    if let Err(e) = result {
        // Put them back unless a newer time arrived meanwhile.
        let mut pending = seen.lock().unwrap();
        for (device, s) in batch {
            pending.entry(device).or_insert(s);
        }
        return Err(e.into());
    }
    Ok(())
}

/// Whether `e` is the PostgreSQL error with SQLSTATE `code`.
fn sql_state_is(e: &sqlx::Error, code: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(code))
}

/// Deadlocks and serialization failures: the transaction did nothing and may simply run again.
fn retryable(e: &sqlx::Error) -> bool {
    sql_state_is(e, "40P01") || sql_state_is(e, "40001")
}

const EVENT_COLUMNS: &str = "device, event_id, severity, product_name, product_version, event_type,
    event_type_display_name, descr, locid, rise_time, rise_time_ms,
    par1, par2, par3, par4, par5, par6, par7, par8, par9,
    object_name, virus_name, uid, user_name, detection_type, attack_name, protocol, ip_address, port,
    truncated, odd_fields, received_at, source_address";

/// Inserts `rows` events (duplicates of (device, event_id) skipped, also within the statement) and
/// one bus entry listing the rows it added, in one statement.
fn insert_events_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=33).map(|c| format!("${}", r * 33 + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "WITH added AS (
             INSERT INTO events ({EVENT_COLUMNS}) VALUES {}
             ON CONFLICT (device, event_id) DO NOTHING RETURNING id)
         INSERT INTO outbox (topic, payload)
         SELECT 'device.events', jsonb_build_object('ids', jsonb_agg(id ORDER BY id)) FROM added
         HAVING count(*) > 0",
        values.join(", ")
    )
}

async fn insert_events(
    conn: &mut PgConnection,
    device: i64,
    events: &[crate::events::StoredEvent],
    seen: &Seen,
) -> std::result::Result<(), sqlx::Error> {
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        let sql = insert_events_sql(chunk.len());
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(device)
                .bind(&e.event_id)
                .bind(e.severity)
                .bind(&e.product_name)
                .bind(&e.product_version)
                .bind(&e.event_type)
                .bind(&e.event_type_display_name)
                .bind(&e.descr)
                .bind(e.locid)
                .bind(e.rise_time)
                .bind(e.rise_time_ms);
            for p in &e.par {
                q = q.bind(p);
            }
            let n = &e.named;
            q = q
                .bind(&n.object_name)
                .bind(&n.virus_name)
                .bind(&n.uid)
                .bind(&n.user_name)
                .bind(&n.detection_type)
                .bind(&n.attack_name)
                .bind(&n.protocol)
                .bind(&n.ip_address)
                .bind(&n.port)
                .bind(i32::from(e.truncated))
                .bind((!e.odd_fields.is_empty()).then(|| e.odd_fields.join(",")))
                .bind(seen.at)
                .bind(&seen.address);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Jobs for PgStore {
    async fn submit_write(&self, job: WriteJob) -> Result<()> {
        self.main.write(job).await
    }

    async fn submit_read(&self, job: ReadJob) -> Result<()> {
        self.main.read(job).await
    }

    async fn submit_autocommit(&self, job: WriteJob) -> Result<()> {
        self.main.autocommit(job).await
    }
}

#[async_trait::async_trait]
impl Engine for PgStore {
    fn kind(&self) -> Backend {
        Backend::Postgres
    }

    fn sessions(&self) -> &dyn Jobs {
        &self.sessions
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
        let mut attempt = 1;
        loop {
            let result = async {
                let mut tx = self.pool().begin().await?;
                insert_events(&mut tx, device, &events, seen).await?;
                tx.commit().await
            }
            .await;
            match result {
                // The same events sent to two nodes at once, in another order: one transaction was
                // chosen to break the deadlock, and nothing of it was stored.
                Err(e) if attempt < ATTEMPTS && retryable(&e) => attempt += 1,
                other => return other.map_err(StoreError::from),
            }
        }
    }

    /// One pass of the sequencer: numbers the committed entries that have no `seq` yet, after
    /// every number given so far, under an advisory lock so that passes never overlap (see the
    /// outbox's migration). Tells every node when it numbered something.
    async fn sequence(&self) -> Result<bool> {
        for _ in 0..5 {
            let mut tx = self.pool().begin().await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(SEQUENCER_LOCK)
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                // Another node is in a pass; what it does not see, the next pass will.
                drop(tx);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let numbered = sqlx::query(
                "WITH pending AS (
                     SELECT id, row_number() OVER (ORDER BY id) AS n FROM outbox WHERE seq IS NULL),
                 base AS (SELECT coalesce(max(seq), 0) AS b FROM outbox)
                 UPDATE outbox o SET seq = base.b + pending.n FROM pending, base
                 WHERE o.id = pending.id",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if numbered > 0 {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(BUS_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            return Ok(numbered > 0);
        }
        Ok(false)
    }

    async fn bus_changed(&self) {
        self.bus.notified().await
    }

    async fn close(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        if let Err(e) = flush_seen(&self.seen, self.pool()).await {
            tracing::warn!(error = %e, "last-seen times lost at close");
        }
        self.sessions.pool.close().await;
        self.pool().close().await;
    }

    async fn export(
        &self,
        schema: i64,
        out: &mut (dyn FnMut(super::dump::Record) -> Result<()> + Send),
    ) -> Result<u64> {
        dump::export(self.pool(), schema, out).await
    }

    async fn import(
        &self,
        schema: i64,
        input: &mut (dyn Iterator<Item = Result<super::dump::Record>> + Send),
    ) -> Result<u64> {
        dump::import(self.pool(), schema, input).await
    }
}
