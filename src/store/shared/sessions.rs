//! Device sessions kept in the database, for nodes that share them.

use time::OffsetDateTime;

use crate::args;
use crate::store::sql::{Conn, Dialect};
use crate::store::{sessions_to_keep, Result, SessionCutoff, StoredSession};

/// `column >= $n` for a timestamp column: SQLite keeps RFC 3339 text, whose varying fraction
/// digits do not sort as text, so it compares Julian days.
fn not_before(c: &dyn Conn, column: &str, param: usize) -> String {
    match c.dialect() {
        Dialect::Sqlite => format!("julianday({column}) >= julianday(${param})"),
        Dialect::Postgres => format!("{column} >= ${param}"),
    }
}

pub(crate) async fn insert(
    c: &mut dyn Conn,
    s: &StoredSession,
    per_device: usize,
    may_grow: bool,
) -> Result<Option<u64>> {
    let existing = c
        .query_one(
            "SELECT count(*) FROM sessions WHERE device = $1",
            args![s.device],
        )
        .await?
        .int(0)?;
    let Some(keep) = sessions_to_keep(existing, per_device, may_grow) else {
        return Ok(None);
    };
    let newest = c.dialect().pick("julianday(created_at)", "created_at");
    let replaced = c
        .execute(
            &format!(
                "DELETE FROM sessions WHERE device = $1 AND id NOT IN
                 (SELECT id FROM sessions WHERE device = $1
                  ORDER BY {newest} DESC, id DESC LIMIT $2)"
            ),
            args![s.device, keep],
        )
        .await?;
    c.execute(
        "INSERT INTO sessions (id, device, created_at, last_used_at, data)
         VALUES ($1, $2, $3, $4, $5)",
        args![&s.id, s.device, s.created, s.last_used, s.data.clone()],
    )
    .await?;
    Ok(Some(replaced))
}

pub(crate) async fn touch(
    c: &mut dyn Conn,
    id: &str,
    now: OffsetDateTime,
    cutoff: &SessionCutoff,
) -> Result<Option<StoredSession>> {
    let sql = format!(
        "UPDATE sessions SET last_used_at = $2 WHERE id = $1 AND {} AND {}
         RETURNING device, created_at, data",
        not_before(c, "last_used_at", 3),
        not_before(c, "created_at", 4)
    );
    let row = c
        .query_opt(
            &sql,
            args![id, now, cutoff.used_since, cutoff.created_since],
        )
        .await?;
    match row {
        Some(r) => Ok(Some(StoredSession {
            id: id.to_string(),
            device: r.int(0)?,
            created: r.time(1)?,
            last_used: now,
            data: r
                .opt_json(2)?
                .ok_or_else(|| crate::store::StoreError::corrupt("a session without data"))?,
        })),
        None => {
            c.execute("DELETE FROM sessions WHERE id = $1", args![id])
                .await?;
            Ok(None)
        }
    }
}

pub(crate) async fn update(c: &mut dyn Conn, s: &StoredSession) -> Result<()> {
    c.execute(
        "UPDATE sessions SET last_used_at = $2, data = $3 WHERE id = $1",
        args![&s.id, s.last_used, s.data.clone()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn remove(c: &mut dyn Conn, id: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM sessions WHERE id = $1", args![id])
        .await?
        > 0)
}

pub(crate) async fn remove_device(c: &mut dyn Conn, device: i64) -> Result<u64> {
    c.execute("DELETE FROM sessions WHERE device = $1", args![device])
        .await
}

pub(crate) async fn sweep(c: &mut dyn Conn, cutoff: &SessionCutoff) -> Result<u64> {
    let sql = format!(
        "DELETE FROM sessions WHERE NOT ({} AND {})",
        not_before(c, "last_used_at", 1),
        not_before(c, "created_at", 2)
    );
    c.execute(&sql, args![cutoff.used_since, cutoff.created_since])
        .await
}

pub(crate) async fn count(c: &mut dyn Conn) -> Result<u64> {
    Ok(c.query_one("SELECT count(*) FROM sessions", &[])
        .await?
        .int(0)?
        .max(0) as u64)
}
