//! Persistence: role traits and their two backends. Only this module writes SQL.
//!
//! Each role is a trait ([`DeviceStore`], [`EventStore`], [`AdminStore`], [`IdentityStore`],
//! [`ThrottleStore`], [`SessionStore`], [`BusStore`], [`BackendStore`], [`Maintenance`]);
//! [`Store`] is all of them. The SQLite
//! backend (`sqlite/`, on rusqlite) and the PostgreSQL one (`postgres/`, on sqlx) implement each.
//! Most statements are written once, in `shared/`, over the [`sql::Conn`] interface both backends
//! provide; what each backend writes natively is its hot path (event intake, the reads of every
//! device call) and what only it has (SQLite's writer thread, PostgreSQL's notifications).

use std::sync::Arc;

use time::OffsetDateTime;

use crate::soap::Params;

pub mod dump;
mod engine;
pub mod model;
pub mod postgres;
mod shared;
pub mod sql;
pub mod sqlite;
mod wal_sync;

pub use model::*;

/// Why a storage operation failed, in the few kinds each surface maps once to its own error form.
/// The texts may name tables and values: surfaces log them, and show devices and admins only what
/// the kind says.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The object the operation names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The operation conflicts with what is stored (a duplicate name, a group that is not empty).
    #[error("{0}")]
    Conflict(String),
    /// The input cannot be stored (a malformed value, a database URL of an unknown kind).
    #[error("{0}")]
    Invalid(String),
    /// The database cannot be reached or is busy; the operation may succeed later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, or stored data that does not read back.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Stored data that does not read back as it should.
    pub fn corrupt(what: impl std::fmt::Display) -> StoreError {
        StoreError::Internal(format!("stored data is malformed: {what}"))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        use sqlx::Error as E;
        match &e {
            E::Database(db) => match db.code().as_deref() {
                Some("23505") | Some("23503") | Some("23P01") => {
                    StoreError::Conflict(db.message().to_string())
                }
                // Check violations, and data exceptions (class 22: a value out of range, text
                // with a NUL character, ...): input the database cannot take.
                Some("23514") | Some("23502") => StoreError::Invalid(db.message().to_string()),
                Some(code) if code.starts_with("22") => {
                    StoreError::Invalid(db.message().to_string())
                }
                Some(code) if code.starts_with("08") || code.starts_with("57") => {
                    StoreError::Unavailable(db.message().to_string())
                }
                Some("40P01") | Some("40001") | Some("53300") => {
                    StoreError::Unavailable(db.message().to_string())
                }
                _ => StoreError::Internal(e.to_string()),
            },
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                StoreError::Unavailable(e.to_string())
            }
            E::RowNotFound => StoreError::NotFound(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> StoreError {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => e.into(),
            other => StoreError::Internal(format!("migration failed: {other}")),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ffi::ErrorCode as C;
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                C::ConstraintViolation => match f.extended_code {
                    // CHECK and NOT NULL constraints: the value cannot be stored.
                    275 | 1299 => StoreError::Invalid(e.to_string()),
                    _ => StoreError::Conflict(e.to_string()),
                },
                C::DatabaseBusy
                | C::DatabaseLocked
                | C::DiskFull
                | C::CannotOpen
                | C::SystemIoFailure
                | C::ReadOnly
                | C::OutOfMemory => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Internal(e.to_string()),
            },
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What the device protocol reads and writes on every call.
#[async_trait::async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    async fn device_login(&self, device_id: &str) -> Result<Option<DeviceLogin>>;
    /// Records the password of a device on first contact: inserts it, or sets the credential of a
    /// pre-registered (or reset) row. `None` when another login enrolled the id first.
    async fn enrol_device(
        &self,
        device_id: &str,
        credential: &[u8],
        seen: &Seen,
    ) -> Result<Option<i64>>;
    /// Records when and from where a device was last seen. Not an acknowledgement of anything, so
    /// backends may coalesce these and write them within about a second (and on close) instead of
    /// on the caller's time; a crash can lose that last second of "last seen" times.
    async fn touch_device(&self, device: i64, seen: &Seen) -> Result<()>;
    async fn device_count(&self) -> Result<i64>;
    async fn sync_record(&self, device: i64) -> Result<SyncRecord>;
    async fn settings(&self, device: i64) -> Result<SettingsRecord>;
    /// Persists what one sync result writes, with the device's sync state, in one transaction.
    async fn record_result(
        &self,
        device: i64,
        write: &SyncWrite,
        now: OffsetDateTime,
    ) -> Result<Recorded>;
    async fn revisions(&self) -> Result<Revisions>;
    /// The ids from the root down to `group`.
    async fn group_chain(&self, group: i64) -> Result<Vec<i64>>;
    async fn policy_rows(&self, groups: &[i64]) -> Result<Vec<PolicyRow>>;
    async fn subscription_rows(&self, groups: &[i64]) -> Result<Vec<SubscriptionRow>>;
}

/// Device events: intake and queries.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores the events of one PutEvents call atomically; an event id already stored for the device
    /// is skipped. Returns once they are committed and durable.
    async fn store_events(
        &self,
        device: i64,
        events: Vec<crate::events::StoredEvent>,
        seen: &Seen,
    ) -> Result<()>;
    async fn event_count(&self) -> Result<i64>;
    /// Events matching `query`, newest first.
    /// Deletes up to `limit` events of `table`, oldest first, received before `before` or beyond
    /// the newest `keep_rows`; never one whose bus entry a consumer of `consumers` has not passed.
    async fn delete_old_events(
        &self,
        table: EventTable,
        before: Option<OffsetDateTime>,
        keep_rows: Option<u64>,
        consumers: &[String],
        limit: u64,
    ) -> Result<Retained>;
    /// Stores an intake event with its bus entry; `None` when an event with its `uid` is already
    /// stored (nothing is written then).
    async fn store_intake(
        &self,
        event: &IntakeEvent,
        received_at: OffsetDateTime,
        source_address: &str,
        account: Option<&str>,
    ) -> Result<Option<i64>>;
    /// Intake events, newest first; after `after_id`, oldest first.
    async fn intake_events(
        &self,
        after_id: Option<i64>,
        page: PageRequest,
    ) -> Result<Page<IntakeRecord>>;
    async fn events(&self, query: &EventQuery) -> Result<Page<EventRecord>>;
    /// The events of rows `from..=to` (in id order), and of the given row ids.
    async fn events_by_rows(
        &self,
        range: Option<(i64, i64)>,
        ids: &[i64],
    ) -> Result<Vec<EventRecord>>;
}

/// The objects admins manage. Every change is recorded in the audit trail, and put on the bus, in
/// its own transaction; the audit entry is returned with the changed object.
#[async_trait::async_trait]
pub trait AdminStore: Send + Sync + 'static {
    async fn groups(&self) -> Result<Vec<Group>>;
    async fn group(&self, id: i64) -> Result<Option<Group>>;
    /// The child of `parent` called `name`, created if missing (devices' presumed groups; not
    /// audited: no admin made it).
    async fn ensure_group(&self, parent: i64, name: &str) -> Result<i64>;
    async fn create_group(
        &self,
        parent: i64,
        name: &str,
        by: &Actor,
    ) -> Result<(Group, AuditEntry)>;
    async fn rename_group(&self, id: i64, name: &str, by: &Actor) -> Result<(Group, AuditEntry)>;
    /// Moves `id` under `parent`; refused (invalid) if `parent` is `id` or one of its descendants.
    async fn move_group(&self, id: i64, parent: i64, by: &Actor) -> Result<(Group, AuditEntry)>;
    /// Deletes an empty group: a group with child groups or devices is a conflict.
    async fn delete_group(&self, id: i64, by: &Actor) -> Result<AuditEntry>;

    async fn devices(&self, filter: &DeviceFilter, page: PageRequest)
        -> Result<Page<DeviceRecord>>;
    async fn device(&self, device_id: &str) -> Result<Option<DeviceDetail>>;
    /// Pre-registers a device id (closed enrolment) in `group`, with the credential it must log in
    /// with, or none (its first login sets it).
    async fn register_device(
        &self,
        device_id: &str,
        group: i64,
        display_name: Option<&str>,
        credential: Option<Vec<u8>>,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)>;
    /// Moves, renames, blocks or unblocks a device in one transaction.
    async fn update_device(
        &self,
        device_id: &str,
        change: &DeviceChange,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)>;
    /// Devices by state, infected devices, events per hour since `since`.
    async fn stats(&self, since: OffsetDateTime) -> Result<FleetStats>;
    async fn move_device(
        &self,
        device_id: &str,
        group: i64,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)>;
    async fn set_device_status(
        &self,
        device_id: &str,
        status: DeviceStatus,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)>;
    /// Forgets a device's credential so that it enrols again on its next login.
    async fn reset_device(&self, device_id: &str, by: &Actor)
        -> Result<(DeviceRecord, AuditEntry)>;
    /// Deletes a device with everything it reported (its events included).
    async fn delete_device(&self, device_id: &str, by: &Actor) -> Result<AuditEntry>;
    /// Merges `changes` into the device's pending settings (with [`crate::sync::policy::apply_changes`]);
    /// they are pushed at its next sync.
    async fn queue_settings(
        &self,
        device_id: &str,
        changes: &Params,
        by: &Actor,
    ) -> Result<(SettingsRecord, AuditEntry)>;

    async fn policy_of(&self, group: i64) -> Result<Vec<PolicyEntry>>;
    /// Sets the row of `row.group_id` at `row.path`, creating it if missing.
    async fn set_policy(&self, row: &PolicyRow, by: &Actor) -> Result<(PolicyEntry, AuditEntry)>;
    /// Replaces the row `id` of `row.group_id`.
    async fn update_policy(
        &self,
        id: i64,
        row: &PolicyRow,
        by: &Actor,
    ) -> Result<(PolicyEntry, AuditEntry)>;
    async fn delete_policy(&self, group: i64, id: i64, by: &Actor) -> Result<AuditEntry>;

    async fn subscriptions_of(&self, group: i64) -> Result<Vec<SubscriptionRow>>;
    /// Adds or removes an event type; `None` when nothing changed.
    async fn set_subscription(
        &self,
        row: &SubscriptionRow,
        subscribed: bool,
        by: &Actor,
    ) -> Result<Option<AuditEntry>>;

    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEntry>>;
}

/// Admin accounts, their API tokens and the login throttle.
#[async_trait::async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    async fn account_count(&self) -> Result<i64>;
    async fn create_account(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        by: &Actor,
    ) -> Result<(Account, AuditEntry)>;
    /// An account and its password hash.
    async fn account_by_name(&self, name: &str) -> Result<Option<(Account, String)>>;
    async fn account(&self, id: i64) -> Result<Option<Account>>;
    async fn accounts(&self) -> Result<Vec<Account>>;
    async fn set_password(&self, id: i64, password_hash: &str, by: &Actor) -> Result<AuditEntry>;
    async fn set_account_disabled(&self, id: i64, disabled: bool, by: &Actor)
        -> Result<AuditEntry>;

    /// Creates a token after deleting the account's expired ones; refused with
    /// [`TokenCapReached`] when the account holds `max_tokens` active and revoked API tokens.
    async fn create_token(
        &self,
        token: &NewToken,
        max_tokens: u64,
        by: &Actor,
    ) -> Result<std::result::Result<(TokenRecord, AuditEntry), TokenCapReached>>;
    async fn token_by_subject(&self, subject: &str) -> Result<Option<TokenRecord>>;
    async fn token(&self, id: i64) -> Result<Option<TokenRecord>>;
    async fn tokens_of(&self, account: i64) -> Result<Vec<TokenRecord>>;
    async fn revoke_token(
        &self,
        id: i64,
        now: OffsetDateTime,
        by: &Actor,
    ) -> Result<(TokenRecord, AuditEntry)>;
    /// Deletes a token; one that has not expired yet is a conflict.
    async fn delete_token(&self, id: i64, now: OffsetDateTime, by: &Actor) -> Result<AuditEntry>;
}

/// Failed logins, counted in the database so that every node shares one budget. Read at every
/// login: the reads are part of each backend's hot path.
#[async_trait::async_trait]
pub trait ThrottleStore: Send + Sync + 'static {
    /// Recent failed logins counted under each key (since `since`); keys without any are left out.
    async fn failures(&self, keys: &[String], since: OffsetDateTime) -> Result<Vec<(String, u32)>>;
    /// Counts one failure under each key; a count older than `since` starts again.
    async fn record_failure(
        &self,
        keys: &[String],
        now: OffsetDateTime,
        since: OffsetDateTime,
    ) -> Result<()>;
    async fn clear_failures(&self, keys: &[String]) -> Result<()>;
    /// Deletes counts older than `since` (they count as zero already); returns how many.
    async fn forget_failures(&self, since: OffsetDateTime) -> Result<u64>;
}

/// Device sessions, for nodes that share them.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts a session and deletes the device's oldest ones beyond `per_device`, in one write.
    /// Unless `may_grow`, the session must replace one of the device's own: with none to replace,
    /// nothing is written and `None` returned. Otherwise returns how many sessions were replaced.
    async fn insert_session(
        &self,
        session: &StoredSession,
        per_device: usize,
        may_grow: bool,
    ) -> Result<Option<u64>>;
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
    /// Deletes every session of a device; returns how many.
    async fn remove_device_sessions(&self, device: i64) -> Result<u64>;
    /// Deletes the sessions that are not live by `cutoff`; returns how many.
    async fn sweep_sessions(&self, cutoff: &SessionCutoff) -> Result<u64>;
    async fn session_count(&self) -> Result<u64>;
}

/// The outbox of the event bus: what was committed, in commit order, for every node to read.
#[async_trait::async_trait]
pub trait BusStore: Send + Sync + 'static {
    /// Appends an entry in a transaction of its own.
    async fn publish(
        &self,
        topic: &str,
        object_id: Option<&str>,
        payload: Option<serde_json::Value>,
    ) -> Result<()>;
    /// Entries after `seq`, in order, at most `limit`.
    async fn bus_after(&self, seq: i64, limit: u32) -> Result<Vec<BusRecord>>;
    /// The last entry's `seq` (0 if none).
    async fn bus_head(&self) -> Result<i64>;
    /// Gives new entries their place in the order, where that happens after commit (PostgreSQL);
    /// returns whether it did anything.
    async fn sequence(&self) -> Result<bool>;
    /// Resolves when entries may have been added (a hint: readers still read to know).
    async fn bus_changed(&self);
    /// A durable consumer's position.
    async fn cursor(&self, consumer: &str) -> Result<Option<i64>>;
    /// Takes or renews the lease of `sink` for `holder` until `until`; `false` while another
    /// holder's lease has not expired at `now`.
    async fn take_lease(
        &self,
        sink: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool>;
    async fn set_cursor(&self, consumer: &str, seq: i64) -> Result<()>;
}

/// Product backend commands (seed 000): service consoles' registrations, and the commands routed to
/// them. Routing happens in the transaction that stores a command, so that two consoles never get
/// the same one.
#[async_trait::async_trait]
pub trait BackendStore: Send + Sync + 'static {
    async fn add_console(&self, console: &ConsoleRecord) -> Result<()>;
    /// Consoles live at `now`, oldest first, of one product and version and of one account when
    /// they are given.
    async fn consoles(
        &self,
        product: Option<(&str, &str)>,
        account: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Vec<ConsoleRecord>>;
    async fn console(&self, id: &str) -> Result<Option<ConsoleRecord>>;
    /// Extends the lives of the live consoles `node` holds.
    async fn renew_consoles(&self, node: &str, until: OffsetDateTime) -> Result<u64>;
    async fn remove_console(&self, id: &str) -> Result<Option<ConsoleRecord>>;
    async fn remove_expired_consoles(&self, now: OffsetDateTime) -> Result<Vec<ConsoleRecord>>;
    /// Stores a command routed to the live console for its product and version given the fewest
    /// so far (with a bus entry for it), or failed with `new.no_console` when none is live; with
    /// its audit entry.
    async fn send_command(
        &self,
        new: &NewCommand,
        by: &Actor,
    ) -> Result<(CommandRecord, AuditEntry)>;
    async fn command(&self, id: &str) -> Result<Option<CommandRecord>>;
    async fn commands(&self, filter: &CommandFilter) -> Result<Page<CommandRecord>>;
    /// A polling console's retrieval: renews it until `until` and marks at most `limit` of its
    /// pending commands delivered, returning them; `None` when the console is not live.
    async fn retrieve_commands(
        &self,
        console: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Option<Vec<CommandRecord>>>;
    /// Marks a command delivered if it is pending with `console`; returns it as it is now.
    async fn deliver_command(
        &self,
        id: &str,
        console: &str,
        now: OffsetDateTime,
    ) -> Result<Option<CommandRecord>>;
    /// Ends a command that has not ended (routed to `console`, when given), with its audit entry;
    /// `None` when it had ended or is another console's.
    async fn end_command(
        &self,
        id: &str,
        console: Option<&str>,
        end: &CommandEnd,
        now: OffsetDateTime,
        by: &Actor,
    ) -> Result<Option<(CommandRecord, AuditEntry)>>;
    /// Routes a command still pending with `from` to another live console (with a bus entry);
    /// `None` when there is none.
    async fn reroute_command(
        &self,
        id: &str,
        from: &str,
        now: OffsetDateTime,
    ) -> Result<Option<CommandRecord>>;
    /// Commands not yet ended (routed to `console`, when given), with whether their console is
    /// live at `now`.
    async fn open_commands(
        &self,
        now: OffsetDateTime,
        console: Option<&str>,
    ) -> Result<Vec<OpenCommand>>;
}

/// The database as a whole.
#[async_trait::async_trait]
pub trait Maintenance: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Flushes and closes connections; later calls fail.
    async fn close(&self);
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

/// Everything the server persists.
pub trait Store:
    DeviceStore
    + EventStore
    + AdminStore
    + IdentityStore
    + ThrottleStore
    + SessionStore
    + BusStore
    + BackendStore
    + Maintenance
{
}

impl<T> Store for T where
    T: DeviceStore
        + EventStore
        + AdminStore
        + IdentityStore
        + ThrottleStore
        + SessionStore
        + BusStore
        + BackendStore
        + Maintenance
{
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

/// Which backend a database URL names.
pub fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::Invalid(
            "unsupported database URL (expected sqlite:// or postgres://)".into(),
        ))
    }
}

/// The schema version this build expects: its newest migration.
pub fn latest_schema_version() -> i64 {
    sqlite::migrate::latest_version()
}

/// Opens the database named by `url`, creating it if needed, and applies the migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, StoreOptions::default()).await
}

/// [`open`] with options.
pub async fn open_with(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>> {
    Ok(match backend_of(url)? {
        Backend::Sqlite => Arc::new(sqlite::SqliteStore::open(url).await?),
        Backend::Postgres => Arc::new(postgres::PgStore::open(url, options).await?),
    })
}

/// How many of a device's `existing` sessions a new one leaves in place (see
/// [`SessionStore::insert_session`]); `None` when the new session may not be added at all.
pub(crate) fn sessions_to_keep(existing: i64, per_device: usize, may_grow: bool) -> Option<i64> {
    let per_device = i64::try_from(per_device.max(1)).unwrap_or(i64::MAX);
    match (may_grow, existing) {
        (true, _) => Some(per_device - 1),
        (false, 0) => None,
        (false, n) => Some(n.min(per_device) - 1),
    }
}

/// The dump refuses a database that already holds data: importing into it would mix two deployments.
fn not_empty(table: &str) -> StoreError {
    StoreError::Conflict(format!(
        "the target database is not empty (table {table} has rows): import into a new database"
    ))
}

/// Timestamps are stored as RFC 3339 UTC text in SQLite (readable by admins in any SQL shell).
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    crate::sync::policy::rfc3339(t)
}
