//! Persistence: the [`Store`] trait and its backends. Only this module writes SQL.

use std::sync::Arc;

pub mod sqlite;

/// Why a storage operation failed. Never shown to devices as is: the protocol layer maps it to a
/// generic "unavailable" error so that SQL and paths do not leak.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
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
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies pending migrations (also done by [`open`]).
    async fn migrate(&self) -> Result<()>;
    /// Flushes and closes connections; later calls fail.
    async fn close(&self);
    async fn groups(&self) -> Result<Vec<Group>>;
    async fn device_count(&self) -> Result<i64>;
}

/// Opens the database named by `url`, creating it if needed, and applies the migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::open(url).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
