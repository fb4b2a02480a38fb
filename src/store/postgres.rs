//! The PostgreSQL backend: a connection pool, one transaction per write, plpgsql triggers.
//!
//! PostgreSQL runs concurrent transactions and groups their WAL flushes by itself, so unlike the
//! SQLite backend there is no writer task: each write is its own transaction on a pooled connection,
//! durable when `COMMIT` returns (with the server's default `synchronous_commit = on`). As on
//! SQLite, "last seen" times are coalesced and written about once a second. Several
//! server nodes may share one database: what they must agree on (device credentials, policy
//! revisions, sessions, the uniqueness of events) is decided by the database, never in a node's memory.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Row};
use time::OffsetDateTime;

use super::*;
use crate::soap::{AppInfo, AppState, Params, Value};
use crate::sync::Known;

/// Connections per node. Every request holds one only for the length of its statements.
const MAX_CONNECTIONS: u32 = 16;
/// Connections per node for session rows, on top of [`MAX_CONNECTIONS`].
const SESSION_CONNECTIONS: u32 = 8;
/// How often queued "last seen" times are written.
const SEEN_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// PostgreSQL takes at most 65535 parameters in one statement.
const MAX_PARAMS: usize = 60_000;
/// Rows of one PutEvents insert statement (33 parameters each).
const EVENTS_PER_STATEMENT: usize = 100;
/// Attempts of a write that PostgreSQL aborted to break a deadlock between two nodes.
const ATTEMPTS: usize = 3;

pub struct PgStore {
    pool: PgPool,
    /// For session rows only: their commits do not wait for the WAL flush (`synchronous_commit =
    /// off`). A session is not data anyone was promised: losing the last moments of session writes
    /// in a database crash only makes the devices concerned log in again. Everything else stays
    /// durable on return.
    sessions: PgPool,
    /// "Last seen" times waiting to be written; flushed every second and on close.
    seen: Arc<std::sync::Mutex<HashMap<i64, Seen>>>,
    flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl PgStore {
    /// Connects, creating the database first if the server says it does not exist.
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
        let sessions = pool_options(SESSION_CONNECTIONS)
            .connect_lazy_with(options.options([("synchronous_commit", "off")]));
        let seen: Arc<std::sync::Mutex<HashMap<i64, Seen>>> = Arc::default();
        let flusher = tokio::spawn({
            let (seen, pool) = (seen.clone(), pool.clone());
            async move {
                let mut every = tokio::time::interval(SEEN_FLUSH_INTERVAL);
                loop {
                    every.tick().await;
                    if let Err(e) = flush_seen(&seen, &pool).await {
                        tracing::warn!(error = %e, "last-seen times not written; retrying");
                    }
                }
            }
        });
        Ok(PgStore {
            pool,
            sessions,
            seen,
            flusher: std::sync::Mutex::new(Some(flusher)),
        })
    }
}

/// Writes the queued "last seen" times in one statement. If it fails (say, a deadlock with another
/// node flushing the same devices) the times go back in the queue for the next round.
async fn flush_seen(seen: &std::sync::Mutex<HashMap<i64, Seen>>, pool: &PgPool) -> Result<()> {
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
fn retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(db) if sql_state_is(db, "40P01") || sql_state_is(db, "40001"))
}

async fn audit(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    object: &str,
    details: serde_json::Value,
) -> Result<()> {
    sqlx::query("INSERT INTO audit (actor, action, object, details) VALUES ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(object)
        .bind(Json(details))
        .execute(conn)
        .await?;
    Ok(())
}

async fn ensure_group_in(conn: &mut PgConnection, parent: i64, name: &str) -> Result<i64> {
    // A concurrent insert of the same name waits for the other transaction, then does nothing; the
    // SELECT that follows (a new snapshot under READ COMMITTED) sees the row either way.
    sqlx::query("INSERT INTO groups (parent_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(parent)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(
        sqlx::query_scalar("SELECT id FROM groups WHERE parent_id = $1 AND name = $2")
            .bind(parent)
            .bind(name)
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn device_row(conn: &mut PgConnection, device_id: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM devices WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(conn)
            .await?,
    )
}

/// `INSERT ... ON CONFLICT (key) DO UPDATE` setting every column but the key.
fn upsert_sql(table: &str, key: &str, columns: &[&str]) -> String {
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let sets: Vec<String> = columns
        .iter()
        .filter(|c| **c != key)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({key}) DO UPDATE SET {}",
        columns.join(", "),
        params.join(", "),
        sets.join(", ")
    )
}

const APP_INFO_COLUMNS: &[&str] = &[
    "device",
    "product_name",
    "product_version",
    "install_time",
    "display_name",
    "prod_version",
    "key_current_type",
    "key_current_prod_suite_id",
    "key_current_app_id",
    "key_current_install_date",
    "key_current_expiration_date",
    "key_current_lic_period",
    "key_current_lic_count",
    "key_current_serial",
    "key_current_maj_ver",
    "key_current_prod_name",
    "key_next_type",
    "key_next_prod_suite_id",
    "key_next_app_id",
    "key_next_install_date",
    "key_next_expiration_date",
    "key_next_lic_period",
    "key_next_lic_count",
    "key_next_serial",
    "key_next_maj_ver",
    "key_next_prod_name",
    "presumed_name",
    "presumed_group",
    "os_type",
    "os_ver_major",
    "os_ver_minor",
    "os_manufacturer",
    "os_name",
    "os_ver",
    "memory",
    "processor_family",
    "system_name",
    "system_type",
    "updated_at",
];

async fn upsert_app_info(
    conn: &mut PgConnection,
    device: i64,
    info: &AppInfo,
    now: OffsetDateTime,
) -> Result<()> {
    let p = &info.prod_info;
    let d = &info.dev_info;
    let sql = upsert_sql("device_app_info", "device", APP_INFO_COLUMNS);
    let mut q = sqlx::query(&sql)
        .bind(device)
        .bind(&p.product_name)
        .bind(&p.product_version)
        .bind(p.install_time)
        .bind(&p.display_name)
        .bind(&p.prod_version);
    for key in [&info.license_info.key_current, &info.license_info.key_next] {
        let k = key.as_ref();
        q = q
            .bind(k.map(|k| k.key_type))
            .bind(k.map(|k| k.key_prod_suite_id))
            .bind(k.map(|k| k.key_app_id))
            .bind(k.map(|k| k.key_install_date))
            .bind(k.map(|k| k.key_expiration_date))
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
        // BIGINT is signed; memory sizes beyond i64 are not real devices.
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
    conn: &mut PgConnection,
    device: i64,
    s: &AppState,
    now: OffsetDateTime,
) -> Result<()> {
    let sql = upsert_sql(
        "device_app_state",
        "device",
        &[
            "device",
            "state_app",
            "state_rtp",
            "last_full_scan",
            "last_update_time",
            "bases_date",
            "bases_install_date",
            "bases_records",
            "updated_at",
        ],
    );
    sqlx::query(&sql)
        .bind(device)
        .bind(s.state_app)
        .bind(s.state_rtp)
        .bind(s.last_full_scan)
        .bind(s.last_update_time)
        .bind(s.bases_date)
        .bind(s.bases_install_date)
        .bind(s.bases_records)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets hash columns of the device's sync row (creating the row), plus the last sync time.
async fn set_sync(
    conn: &mut PgConnection,
    device: i64,
    hashes: &[(&str, &[u8])],
    now: OffsetDateTime,
) -> Result<()> {
    let mut columns = vec!["device", "last_sync_at"];
    columns.extend(hashes.iter().map(|(c, _)| *c));
    let sql = upsert_sql("device_sync", "device", &columns);
    let mut q = sqlx::query(&sql).bind(device).bind(now);
    for (_, h) in hashes {
        q = q.bind(*h);
    }
    q.execute(conn).await?;
    Ok(())
}

const EVENT_COLUMNS: &str = "device, event_id, severity, product_name, product_version, event_type,
    event_type_display_name, descr, locid, rise_time, rise_time_ms,
    par1, par2, par3, par4, par5, par6, par7, par8, par9,
    object_name, virus_name, uid, user_name, detection_type, attack_name, protocol, ip_address, port,
    truncated, odd_fields, received_at, source_address";

/// `INSERT ... VALUES ($1, ...), (...)` for `rows` events; duplicates of (device, event_id) are skipped,
/// also within the statement itself.
fn insert_events_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=33).map(|c| format!("${}", r * 33 + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO events ({EVENT_COLUMNS}) VALUES {} ON CONFLICT (device, event_id) DO NOTHING",
        values.join(", ")
    )
}

async fn insert_events(
    conn: &mut PgConnection,
    device: i64,
    events: &[crate::events::StoredEvent],
    seen: &Seen,
) -> Result<()> {
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

fn session_from_row(id: &str, r: &PgRow, last_used: OffsetDateTime) -> StoredSession {
    StoredSession {
        id: id.to_string(),
        device: r.get(0),
        created: r.get(1),
        last_used,
        data: r.get::<Json<serde_json::Value>, _>(2).0,
    }
}

/// Column names and their `information_schema` types, in table order.
async fn table_columns(conn: &mut PgConnection, table: &str) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn primary_key(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = $1::regclass AND i.indisprimary
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(table)
    .fetch_all(conn)
    .await?)
}

/// One column of a row as a dump cell, by the column's declared type.
fn dump_cell(row: &PgRow, i: usize, data_type: &str) -> Result<dump::Cell> {
    use dump::Cell;
    let cell = match data_type {
        "bigint" => row.try_get::<Option<i64>, _>(i)?.map(Cell::Int),
        "integer" => row
            .try_get::<Option<i32>, _>(i)?
            .map(|v| Cell::Int(v.into())),
        "smallint" => row
            .try_get::<Option<i16>, _>(i)?
            .map(|v| Cell::Int(v.into())),
        "boolean" => row
            .try_get::<Option<bool>, _>(i)?
            .map(|v| Cell::Int(v.into())),
        "double precision" => row.try_get::<Option<f64>, _>(i)?.map(Cell::Real),
        "real" => row
            .try_get::<Option<f32>, _>(i)?
            .map(|v| Cell::Real(v.into())),
        "text" | "character varying" => row.try_get::<Option<String>, _>(i)?.map(Cell::Text),
        "bytea" => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Cell::Bytes),
        "timestamp with time zone" => row
            .try_get::<Option<OffsetDateTime>, _>(i)?
            .map(|t| Cell::Text(timestamp(t))),
        "jsonb" | "json" => row
            .try_get::<Option<Json<serde_json::Value>>, _>(i)?
            .map(|v| Cell::Text(v.0.to_string())),
        other => {
            return Err(StoreError::Corrupt(format!(
                "a column of type {other} cannot be dumped"
            )))
        }
    };
    Ok(cell.unwrap_or(Cell::Null))
}

/// Inserts one batch of dumped rows, each value cast to its column's type.
async fn insert_batch(
    conn: &mut PgConnection,
    batch: &dump::Batch,
    types: &[(String, String)],
) -> Result<()> {
    let mut casts = Vec::with_capacity(batch.columns.len());
    for column in &batch.columns {
        let (_, data_type) = types.iter().find(|(c, _)| c == column).ok_or_else(|| {
            StoreError::Invalid(format!(
                "dump: column {column} of table {} does not exist in this database",
                batch.table
            ))
        })?;
        casts.push(data_type.as_str());
    }
    let width = casts.len();
    let values: Vec<String> = (0..batch.rows.len())
        .map(|r| {
            let row: Vec<String> = casts
                .iter()
                .enumerate()
                .map(|(c, t)| format!("CAST(${} AS {t})", r * width + c + 1))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        batch.table,
        batch.columns.join(", "),
        values.join(", ")
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

impl PgStore {
    /// Runs `sql`, an UPDATE of one device by DeviceId (binding `value`, if any, then the id), and
    /// records it in the audit trail if the device exists, in one transaction.
    async fn change_device(
        &self,
        sql: &'static str,
        value: Option<SqlValue>,
        change: DeviceChange,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let mut q = sqlx::query(sql);
        match value {
            Some(SqlValue::Text(t)) => q = q.bind(t),
            Some(SqlValue::Int(i)) => q = q.bind(i),
            None => {}
        }
        let n = q
            .bind(&change.device_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            audit(
                &mut tx,
                &change.actor,
                change.action,
                &change.device_id,
                change.details,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<()> {
        // sqlx takes an advisory lock: nodes starting together migrate one after the other.
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        if let Some(flusher) = self.flusher.lock().unwrap().take() {
            flusher.abort();
        }
        if let Err(e) = flush_seen(&self.seen, &self.pool).await {
            tracing::warn!(error = %e, "last-seen times lost at close");
        }
        self.sessions.close().await;
        self.pool.close().await;
    }

    async fn device_login(&self, device_id: &str) -> Result<Option<DeviceLogin>> {
        let row = sqlx::query("SELECT id, credential, status FROM devices WHERE device_id = $1")
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
        // Two statements, no transaction needed: the UPDATE re-checks `credential IS NULL` after
        // waiting for a concurrent enrolment of the same row, and the INSERT's conflict clause
        // leaves a concurrent first contact to whichever login inserted first.
        let updated: Option<i64> = sqlx::query_scalar(
            "UPDATE devices SET credential = $1, first_seen = coalesce(first_seen, $2),
                 last_seen = $2, last_address = $3
             WHERE device_id = $4 AND credential IS NULL RETURNING id",
        )
        .bind(credential)
        .bind(seen.at)
        .bind(&seen.address)
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        if updated.is_some() {
            return Ok(updated);
        }
        Ok(sqlx::query_scalar(
            "INSERT INTO devices (device_id, credential, first_seen, last_seen, last_address)
             VALUES ($1, $2, $3, $3, $4) ON CONFLICT (device_id) DO NOTHING RETURNING id",
        )
        .bind(device_id)
        .bind(credential)
        .bind(seen.at)
        .bind(&seen.address)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn register_device(&self, device_id: &str, actor: &str) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO devices (device_id) VALUES ($1) ON CONFLICT (device_id) DO NOTHING RETURNING id",
        )
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match inserted {
            Some(id) => {
                audit(
                    &mut tx,
                    actor,
                    "device.register",
                    device_id,
                    serde_json::json!({}),
                )
                .await?;
                id
            }
            None => device_row(&mut tx, device_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("device vanished while registering".into()))?,
        };
        tx.commit().await?;
        Ok(id)
    }

    async fn reset_device(&self, device_id: &str, actor: &str) -> Result<bool> {
        let change = DeviceChange::new(device_id, actor, "device.reset", serde_json::json!({}));
        self.change_device(
            "UPDATE devices SET credential = NULL WHERE device_id = $1",
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
            "UPDATE devices SET status = $1 WHERE device_id = $2",
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
                    st.current IS NOT NULL, coalesce(st.pending_rev > st.pushed_rev, false),
                    (SELECT rev FROM revisions WHERE name = 'policy'),
                    (SELECT rev FROM revisions WHERE name = 'subscriptions')
             FROM devices d
             LEFT JOIN device_sync s ON s.device = d.id
             LEFT JOIN device_settings st ON st.device = d.id
             WHERE d.id = $1",
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
                policy: row.get::<Option<i64>, _>(10).unwrap_or_default(),
                subscriptions: row.get::<Option<i64>, _>(11).unwrap_or_default(),
            },
        })
    }

    async fn settings(&self, device: i64) -> Result<SettingsRecord> {
        let row = sqlx::query(
            "SELECT current, pending, pending_rev FROM device_settings WHERE device = $1",
        )
        .bind(device)
        .fetch_optional(&self.pool)
        .await?;
        let tree = |r: &PgRow, i: usize| -> Result<Option<Params>> {
            let value: Option<Json<serde_json::Value>> = r.get(i);
            value
                .map(|v| {
                    serde_json::from_value(v.0).map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .transpose()
        };
        match row {
            None => Ok(SettingsRecord::default()),
            Some(r) => Ok(SettingsRecord {
                current: tree(&r, 0)?,
                pending: tree(&r, 1)?,
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
        let mut tx = self.pool.begin().await?;
        let conn: &mut PgConnection = &mut tx;
        let mut recorded = Recorded::default();
        match result {
            SyncResult::AppInfo(info) => {
                upsert_app_info(conn, device, info, now).await?;
                set_sync(conn, device, &[("info_hash", &info.hash)], now).await?;
                let group: i64 =
                    sqlx::query_scalar("SELECT group_id FROM devices WHERE id = $1 FOR UPDATE")
                        .bind(device)
                        .fetch_one(&mut *conn)
                        .await?;
                let name = info.dev_info.presumed_group.trim();
                if group == UNASSIGNED_GROUP && !name.is_empty() {
                    let name: String = name.chars().take(255).collect();
                    let target = ensure_group_in(conn, ROOT_GROUP, &name).await?;
                    sqlx::query("UPDATE devices SET group_id = $1 WHERE id = $2")
                        .bind(target)
                        .bind(device)
                        .execute(&mut *conn)
                        .await?;
                    recorded.moved_to = Some(target);
                }
                let presumed = info.dev_info.presumed_name.trim();
                if !presumed.is_empty() {
                    sqlx::query("UPDATE devices SET display_name = $1 WHERE id = $2")
                        .bind(presumed)
                        .bind(device)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            SyncResult::AppState(state) => {
                upsert_app_state(conn, device, state, now).await?;
                set_sync(conn, device, &[("state_hash", &state.hash)], now).await?;
            }
            SyncResult::SettingsReported { hash, tree } => {
                sqlx::query(
                    "INSERT INTO device_settings (device, current, reported_at) VALUES ($1, $2, $3)
                     ON CONFLICT (device) DO UPDATE SET current = excluded.current,
                         reported_at = excluded.reported_at",
                )
                .bind(device)
                .bind(Json(tree))
                .bind(now)
                .execute(&mut *conn)
                .await?;
                set_sync(conn, device, &[("settings_hash", hash)], now).await?;
            }
            SyncResult::SettingsPushed { hash, tree, rev } => {
                // Clear the pending changes only if no newer admin change arrived meanwhile.
                sqlx::query(
                    "UPDATE device_settings SET current = $1, reported_at = $2, pushed_rev = $3,
                         pending = CASE WHEN pending_rev <= $3 THEN NULL ELSE pending END
                     WHERE device = $4",
                )
                .bind(Json(tree))
                .bind(now)
                .bind(rev)
                .bind(device)
                .execute(&mut *conn)
                .await?;
                set_sync(conn, device, &[("settings_hash", hash)], now).await?;
            }
            SyncResult::PolicyPushed { hash, digest } => {
                set_sync(
                    conn,
                    device,
                    &[("policy_hash", hash), ("policy_digest", digest)],
                    now,
                )
                .await?;
            }
            SyncResult::SubscriptionsPushed { hash, digest } => {
                set_sync(
                    conn,
                    device,
                    &[("subs_hash", hash), ("subs_digest", digest)],
                    now,
                )
                .await?;
            }
            SyncResult::Failed { command, error } => {
                sqlx::query(
                    "INSERT INTO device_sync (device, last_error_command, last_error_code,
                         last_error_module, last_error_message, last_error_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (device) DO UPDATE SET
                         last_error_command = excluded.last_error_command,
                         last_error_code = excluded.last_error_code,
                         last_error_module = excluded.last_error_module,
                         last_error_message = excluded.last_error_message,
                         last_error_at = excluded.last_error_at",
                )
                .bind(device)
                .bind(command)
                .bind(error.code)
                .bind(&error.module)
                .bind(&error.message)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(recorded)
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
        Ok(sqlx::query_scalar(
            "WITH RECURSIVE chain (id, parent_id, depth) AS (
                 SELECT id, parent_id, 0 FROM groups WHERE id = $1
                 UNION ALL
                 SELECT g.id, g.parent_id, c.depth + 1 FROM groups g JOIN chain c ON g.id = c.parent_id
                 WHERE c.depth < 64
             ) SELECT id FROM chain ORDER BY depth DESC",
        )
        .bind(group)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn policy_rows(&self, groups: &[i64]) -> Result<Vec<PolicyRow>> {
        let rows = sqlx::query(
            "SELECT group_id, path, value_type, value, locked <> 0 FROM policy
             WHERE group_id = ANY ($1)",
        )
        .bind(groups)
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
        let rows = sqlx::query(
            "SELECT group_id, severity, event_type FROM subscriptions WHERE group_id = ANY ($1)",
        )
        .bind(groups)
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
        let mut attempt = 1;
        loop {
            let result = async {
                let mut tx = self.pool.begin().await?;
                insert_events(&mut tx, device, &events, seen).await?;
                tx.commit().await?;
                Ok(())
            }
            .await;
            match result {
                // The same events sent to two nodes at once, in another order: one transaction was
                // chosen to break the deadlock, and nothing of it was stored.
                Err(e) if attempt < ATTEMPTS && retryable(&e) => attempt += 1,
                other => return other,
            }
        }
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
        let mut conn = self.pool.acquire().await?;
        ensure_group_in(&mut conn, parent, name).await
    }

    async fn move_device(&self, device_id: &str, group: i64, actor: &str) -> Result<bool> {
        let details = serde_json::json!({ "group": group });
        let change = DeviceChange::new(device_id, actor, "device.move", details);
        self.change_device(
            "UPDATE devices SET group_id = $1 WHERE device_id = $2",
            Some(SqlValue::Int(group)),
            change,
        )
        .await
    }

    async fn queue_settings(&self, device_id: &str, changes: &Params, actor: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some(device) = device_row(&mut tx, device_id).await? else {
            return Ok(false);
        };
        // Lock the row (creating it first) so that two admins' changes on two nodes both survive.
        sqlx::query("INSERT INTO device_settings (device) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(device)
            .execute(&mut *tx)
            .await?;
        let pending: Option<Json<serde_json::Value>> =
            sqlx::query_scalar("SELECT pending FROM device_settings WHERE device = $1 FOR UPDATE")
                .bind(device)
                .fetch_one(&mut *tx)
                .await?;
        let merged = match pending {
            Some(old) => {
                let old: Params = serde_json::from_value(old.0)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                crate::sync::policy::apply_changes(&old, changes)
            }
            None => changes.clone(),
        };
        sqlx::query(
            "UPDATE device_settings SET pending = $1, pending_rev = pending_rev + 1 WHERE device = $2",
        )
        .bind(Json(&merged))
        .bind(device)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            actor,
            "device.settings",
            device_id,
            serde_json::to_value(changes).unwrap_or_default(),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO policy (group_id, path, value_type, value, locked) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (group_id, path) DO UPDATE SET value_type = excluded.value_type,
                 value = excluded.value, locked = excluded.locked",
        )
        .bind(group)
        .bind(path)
        .bind(value_type)
        .bind(&text)
        .bind(i32::from(locked))
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            actor,
            "policy.set",
            &format!("group:{group}"),
            serde_json::json!({ "path": path, "type": value_type, "value": text, "locked": locked }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_subscription(
        &self,
        group: i64,
        severity: i32,
        event_type: &str,
        subscribed: bool,
        actor: &str,
    ) -> Result<()> {
        let sql = if subscribed {
            "INSERT INTO subscriptions (group_id, severity, event_type) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM subscriptions WHERE group_id = $1 AND severity = $2 AND event_type = $3"
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql)
            .bind(group)
            .bind(severity)
            .bind(event_type)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            actor,
            if subscribed {
                "subscription.add"
            } else {
                "subscription.remove"
            },
            &format!("group:{group}"),
            serde_json::json!({ "severity": severity, "event_type": event_type }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_session(
        &self,
        session: &StoredSession,
        per_device: usize,
        may_grow: bool,
    ) -> Result<Option<u64>> {
        let mut tx = self.sessions.begin().await?;
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE device = $1")
            .bind(session.device)
            .fetch_one(&mut *tx)
            .await?;
        let Some(keep) = sessions_to_keep(existing, per_device, may_grow) else {
            return Ok(None);
        };
        let replaced = sqlx::query(
            "DELETE FROM sessions WHERE device = $1 AND id NOT IN
                 (SELECT id FROM sessions WHERE device = $1
                  ORDER BY created_at DESC, id DESC LIMIT $2)",
        )
        .bind(session.device)
        .bind(keep)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO sessions (id, device, created_at, last_used_at, data)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.id)
        .bind(session.device)
        .bind(session.created)
        .bind(session.last_used)
        .bind(Json(&session.data))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(replaced))
    }

    async fn remove_device_sessions(&self, device: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE device = $1")
            .bind(device)
            .execute(&self.sessions)
            .await?
            .rows_affected())
    }

    async fn session_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
            .fetch_one(&self.sessions)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn touch_session(
        &self,
        id: &str,
        now: OffsetDateTime,
        cutoff: &SessionCutoff,
    ) -> Result<Option<StoredSession>> {
        let row = sqlx::query(
            "UPDATE sessions SET last_used_at = $2
             WHERE id = $1 AND last_used_at >= $3 AND created_at >= $4
             RETURNING device, created_at, data",
        )
        .bind(id)
        .bind(now)
        .bind(cutoff.used_since)
        .bind(cutoff.created_since)
        .fetch_optional(&self.sessions)
        .await?;
        match row {
            Some(r) => Ok(Some(session_from_row(id, &r, now))),
            None => {
                sqlx::query("DELETE FROM sessions WHERE id = $1")
                    .bind(id)
                    .execute(&self.sessions)
                    .await?;
                Ok(None)
            }
        }
    }

    async fn update_session(&self, session: &StoredSession) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_used_at = $2, data = $3 WHERE id = $1")
            .bind(&session.id)
            .bind(session.last_used)
            .bind(Json(&session.data))
            .execute(&self.sessions)
            .await?;
        Ok(())
    }

    async fn remove_session(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&self.sessions)
            .await?
            .rows_affected()
            > 0)
    }

    async fn sweep_sessions(&self, cutoff: &SessionCutoff) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE last_used_at < $1 OR created_at < $2")
                .bind(cutoff.used_since)
                .bind(cutoff.created_since)
                .execute(&self.sessions)
                .await?
                .rows_affected(),
        )
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
        // One snapshot for every table, so that a dump of a running server is consistent.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        out(dump::Record::Header { schema })?;
        let mut total = 0;
        for table in dump::TABLES {
            let columns = table_columns(&mut tx, table).await?;
            let key = primary_key(&mut tx, table).await?;
            let names: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();
            out(dump::Record::Table {
                name: table.to_string(),
                columns: names.clone(),
            })?;
            let sql = format!(
                "SELECT {} FROM {table} ORDER BY {}",
                names.join(", "),
                if key.is_empty() { &names } else { &key }.join(", ")
            );
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let cells = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, t))| dump_cell(&row, i, t))
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
        let mut tx = self.pool.begin().await?;
        for table in dump::TABLES {
            let occupied = if *table == "groups" {
                "SELECT EXISTS (SELECT 1 FROM groups WHERE id > 2)".to_string()
            } else if dump::SEEDED.contains(table) {
                continue;
            } else {
                format!("SELECT EXISTS (SELECT 1 FROM {table})")
            };
            if sqlx::query_scalar::<_, bool>(&occupied)
                .fetch_one(&mut *tx)
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
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        let mut loaded: Vec<&str> = Vec::new();
        let mut types = Vec::new();
        let mut total = 0;
        while let Some(batch) = reader.next_batch(MAX_PARAMS)? {
            if loaded.last() != Some(&batch.table) {
                types = table_columns(&mut tx, batch.table).await?;
                if dump::DERIVED.contains(&batch.table) {
                    sqlx::query(&format!("DELETE FROM {}", batch.table))
                        .execute(&mut *tx)
                        .await?;
                }
                loaded.push(batch.table);
            }
            insert_batch(&mut tx, &batch, &types).await?;
            total += batch.rows.len() as u64;
        }
        let roots: i64 = sqlx::query_scalar("SELECT count(*) FROM groups WHERE id IN (1, 2)")
            .fetch_one(&mut *tx)
            .await?;
        if roots != 2 {
            return Err(StoreError::Invalid(
                "dump: the root and Unassigned groups (ids 1 and 2) are missing".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO revisions (name, rev) VALUES ('policy', 1), ('subscriptions', 1)
             ON CONFLICT DO NOTHING",
        )
        .execute(&mut *tx)
        .await?;
        // Rows came with their ids: move every identity past the largest one.
        let identities = sqlx::query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in identities {
            let (table, column): (String, String) = (r.get(0), r.get(1));
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max({column}), 0) + 1, false)
                 FROM {table}"
            ))
            .bind(&table)
            .bind(&column)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(total)
    }
}
