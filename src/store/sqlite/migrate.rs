//! Applies `migrations/sqlite` with rusqlite, keeping sqlx's `_sqlx_migrations` bookkeeping (the
//! same table, columns and checksums), so that databases migrated by either stay compatible.

use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};

use super::super::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The newest migration this build carries (the two backends' folders stay in step).
pub(crate) fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Applies the migrations this database has not had yet, each in a transaction of its own.
pub(super) fn run(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
             version BIGINT PRIMARY KEY,
             description TEXT NOT NULL,
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
             success BOOLEAN NOT NULL,
             checksum BLOB NOT NULL,
             execution_time BIGINT NOT NULL
         )",
    )?;
    if let Some(version) = conn
        .query_row(
            "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
    {
        return Err(StoreError::Internal(format!(
            "migration {version} failed earlier and left the database partly migrated"
        )));
    }
    for migration in MIGRATOR.iter() {
        let applied: Option<Vec<u8>> = conn
            .query_row(
                "SELECT checksum FROM _sqlx_migrations WHERE version = ?1",
                [migration.version],
                |r| r.get(0),
            )
            .optional()?;
        match applied {
            Some(checksum) if checksum == *migration.checksum => continue,
            Some(_) => {
                return Err(StoreError::Internal(format!(
                    "migration {} was changed after it was applied to this database",
                    migration.version
                )))
            }
            None => {}
        }
        let started = Instant::now();
        let tx = conn.transaction()?;
        tx.execute_batch(&migration.sql).map_err(|e| {
            StoreError::Internal(format!("migration {} failed: {e}", migration.version))
        })?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (?1, ?2, TRUE, ?3, ?4)",
            params![
                migration.version,
                &*migration.description,
                &*migration.checksum,
                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
            ],
        )?;
        tx.commit()?;
        tracing::debug!(version = migration.version, "migration applied");
    }
    Ok(())
}
