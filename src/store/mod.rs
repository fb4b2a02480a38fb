//! Persistence: the [`Store`] trait and its backends. Only this module writes SQL.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::soap::{Params, Value};

pub mod dump;
pub mod model;
pub mod postgres;
pub mod sqlite;
mod wal_sync;

pub use model::*;

/// Why a storage operation failed. Never shown to devices as is: the protocol layer maps it to a
/// generic "unavailable" error so that SQL and paths do not leak.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("the store is closed")]
    Closed,
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A group of devices, a node of the group tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
}

/// The root of the group tree and the group of devices whose app info has not arrived yet.
pub const ROOT_GROUP: i64 = 1;
pub const UNASSIGNED_GROUP: i64 = 2;

/// Everything the server persists. One implementation per database; the protocol code sees only this.
/// Writes are durable when the call returns.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies pending migrations (also done by [`open`]).
    async fn migrate(&self) -> Result<()>;
    /// Flushes and closes connections; later calls fail.
    async fn close(&self);

    // --- devices and enrolment ---
    async fn device_login(&self, device_id: &str) -> Result<Option<DeviceLogin>>;
    /// Records the password of a device on first contact: inserts it, or sets the credential of a
    /// pre-registered (or reset) row. `None` when another login enrolled the id first.
    async fn enrol_device(
        &self,
        device_id: &str,
        credential: &[u8],
        seen: &Seen,
    ) -> Result<Option<i64>>;
    /// Pre-registers a device id (for closed enrolment). Idempotent; returns the row id.
    async fn register_device(&self, device_id: &str, actor: &str) -> Result<i64>;
    /// Forgets a device's credential so that it enrols again on its next login.
    async fn reset_device(&self, device_id: &str, actor: &str) -> Result<bool>;
    async fn set_device_blocked(&self, device_id: &str, blocked: bool, actor: &str)
        -> Result<bool>;
    /// Records when and from where a device was last seen. Not an acknowledgement of anything, so
    /// backends may coalesce these and write them within about a second (and on close) instead of
    /// on the caller's time; a crash can lose that last second of "last seen" times.
    async fn touch_device(&self, device: i64, seen: &Seen) -> Result<()>;
    async fn device_count(&self) -> Result<i64>;

    // --- sync ---
    async fn sync_record(&self, device: i64) -> Result<SyncRecord>;
    async fn settings(&self, device: i64) -> Result<SettingsRecord>;
    /// Persists one sync result with the device's sync state, in one transaction.
    async fn record_result(
        &self,
        device: i64,
        result: &SyncResult,
        now: OffsetDateTime,
    ) -> Result<Recorded>;
    async fn revisions(&self) -> Result<Revisions>;
    /// The ids from the root down to `group`.
    async fn group_chain(&self, group: i64) -> Result<Vec<i64>>;
    async fn policy_rows(&self, groups: &[i64]) -> Result<Vec<PolicyRow>>;
    async fn subscription_rows(&self, groups: &[i64]) -> Result<Vec<SubscriptionRow>>;

    // --- events ---
    /// Stores the events of one PutEvents call atomically; an event id already stored for the device
    /// is skipped. Returns once they are committed.
    async fn store_events(
        &self,
        device: i64,
        events: Vec<crate::events::StoredEvent>,
        seen: &Seen,
    ) -> Result<()>;
    async fn event_count(&self) -> Result<i64>;

    // --- administration ---
    async fn groups(&self) -> Result<Vec<Group>>;
    /// The child of `parent` called `name`, created if missing.
    async fn ensure_group(&self, parent: i64, name: &str) -> Result<i64>;
    async fn move_device(&self, device_id: &str, group: i64, actor: &str) -> Result<bool>;
    /// Merges `changes` into the device's pending settings; they are pushed at its next sync.
    async fn queue_settings(&self, device_id: &str, changes: &Params, actor: &str) -> Result<bool>;
    async fn set_policy(
        &self,
        group: i64,
        path: &str,
        value: &Value,
        locked: bool,
        actor: &str,
    ) -> Result<()>;
    async fn set_subscription(
        &self,
        group: i64,
        severity: i32,
        event_type: &str,
        subscribed: bool,
        actor: &str,
    ) -> Result<()>;

    // --- sessions shared between server nodes ---
    /// Inserts a session and deletes the device's oldest ones beyond `per_device`, in one write.
    /// Unless `may_grow`, the session must replace one of the device's own: with none to replace,
    /// nothing is written and `None` returned. Otherwise returns how many sessions were replaced.
    async fn insert_session(
        &self,
        session: &StoredSession,
        per_device: usize,
        may_grow: bool,
    ) -> Result<Option<u64>>;
    /// Deletes every session of a device; returns how many.
    async fn remove_device_sessions(&self, device: i64) -> Result<u64>;
    async fn session_count(&self) -> Result<u64>;
    /// The session `id` if it is live by `cutoff`, its last use moved to `now`; an expired one is
    /// deleted and `None` returned.
    async fn touch_session(
        &self,
        id: &str,
        now: OffsetDateTime,
        cutoff: &SessionCutoff,
    ) -> Result<Option<StoredSession>>;
    /// Replaces the session's data and last use; a no-op if it ended meanwhile.
    async fn update_session(&self, session: &StoredSession) -> Result<()>;
    async fn remove_session(&self, id: &str) -> Result<bool>;
    /// Deletes the sessions that are not live by `cutoff`; returns how many.
    async fn sweep_sessions(&self, cutoff: &SessionCutoff) -> Result<u64>;

    // --- moving a deployment (see [`dump`]) ---
    /// The newest migration applied to this database.
    async fn schema_version(&self) -> Result<i64>;
    /// Writes every table of [`dump::TABLES`] to `out`, header and trailer included; returns the
    /// number of rows.
    async fn export(&self, out: &mut (dyn FnMut(dump::Record) -> Result<()> + Send))
        -> Result<u64>;
    /// Loads a dump into this database, which must hold nothing but what the migrations created, in
    /// one transaction: on error nothing is imported. Returns the number of rows.
    async fn import(
        &self,
        input: &mut (dyn Iterator<Item = Result<dump::Record>> + Send),
    ) -> Result<u64>;
}

/// How many of a device's `existing` sessions a new one leaves in place (see
/// [`Store::insert_session`]); `None` when the new session may not be added at all.
pub(crate) fn sessions_to_keep(existing: i64, per_device: usize, may_grow: bool) -> Option<i64> {
    let per_device = i64::try_from(per_device.max(1)).unwrap_or(i64::MAX);
    match (may_grow, existing) {
        (true, _) => Some(per_device - 1),
        (false, 0) => None,
        (false, n) => Some(n.min(per_device) - 1),
    }
}

/// Which backend a database URL names.
pub fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// How the store talks to its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Longest wait for a database connection (PostgreSQL): during an outage, calls fail after
    /// this instead of hanging, and devices are told to try later.
    pub connect_timeout: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            connect_timeout: std::time::Duration::from_secs(2),
        }
    }
}

/// Opens the database named by `url`, creating it if needed, and applies the migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, StoreOptions::default()).await
}

/// [`open`] with options.
pub async fn open_with(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match backend_of(url)? {
        Backend::Sqlite => Arc::new(sqlite::SqliteStore::open(url).await?),
        Backend::Postgres => Arc::new(postgres::PgStore::open(url, options).await?),
    };
    if let Err(e) = store.migrate().await {
        store.close().await;
        return Err(e);
    }
    Ok(store)
}

/// The dump refuses a database that already holds data: importing into it would mix two deployments.
fn not_empty(table: &str) -> StoreError {
    StoreError::Invalid(format!(
        "the target database is not empty (table {table} has rows): import into a new database"
    ))
}

/// A value bound into an admin change of one device.
pub(crate) enum SqlValue {
    Text(String),
    Int(i64),
}

/// Who changes which device, and what the audit trail says about it.
pub(crate) struct DeviceChange {
    pub(crate) device_id: String,
    pub(crate) actor: String,
    pub(crate) action: &'static str,
    pub(crate) details: serde_json::Value,
}

impl DeviceChange {
    pub(crate) fn new(
        device_id: &str,
        actor: &str,
        action: &'static str,
        details: serde_json::Value,
    ) -> Self {
        DeviceChange {
            device_id: device_id.to_string(),
            actor: actor.to_string(),
            action,
            details,
        }
    }
}

/// Timestamps are stored as RFC 3339 UTC text in SQLite (readable by admins in any SQL shell).
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("any UTC date formats as RFC 3339")
}

/// The `value_type`/`value` columns of a policy row for a parameter value.
pub fn policy_value(value: &Value) -> Result<(&'static str, String)> {
    crate::sync::policy::encode_row_value(value).map_err(StoreError::Invalid)
}
