//! The outbox of the event bus and the audit trail, which every change writes in its transaction.

use time::OffsetDateTime;

use crate::args;
use crate::store::sql::{Arg, Conn, Dialect, Row};
use crate::store::{Actor, AuditEntry, AuditQuery, BusRecord, Page, Result};

/// Appends an outbox entry in the caller's transaction. SQLite has one writer: the entry takes the
/// next `seq` now. PostgreSQL numbers entries after commit (see the outbox's migration).
pub(crate) async fn append(
    c: &mut dyn Conn,
    topic: &str,
    object_id: Option<&str>,
    payload: Option<serde_json::Value>,
    events: Option<(i64, i64)>,
) -> Result<()> {
    let sql = match c.dialect() {
        Dialect::Sqlite => {
            "INSERT INTO outbox (seq, at, topic, object_id, payload, first_event, last_event)
             VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM outbox), $1, $2, $3, $4, $5, $6)"
        }
        Dialect::Postgres => {
            "INSERT INTO outbox (at, topic, object_id, payload, first_event, last_event)
             VALUES ($1, $2, $3, $4, $5, $6)"
        }
    };
    c.execute(
        sql,
        args![
            OffsetDateTime::now_utc(),
            topic,
            object_id,
            payload,
            events.map(|e| e.0),
            events.map(|e| e.1)
        ],
    )
    .await?;
    Ok(())
}

const BUS_COLUMNS: &str = "seq, at, topic, object_id, payload, first_event, last_event";

fn bus_record(r: &Row) -> Result<BusRecord> {
    let first = r.opt_int(5)?;
    let last = r.opt_int(6)?;
    Ok(BusRecord {
        seq: r.int(0)?,
        at: r.time(1)?,
        topic: r.text(2)?,
        object_id: r.opt_text(3)?,
        payload: r.opt_json(4)?,
        events: first.zip(last),
    })
}

pub(crate) async fn after(c: &mut dyn Conn, seq: i64, limit: u32) -> Result<Vec<BusRecord>> {
    let sql = format!("SELECT {BUS_COLUMNS} FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2");
    c.query(&sql, args![seq, i64::from(limit)])
        .await?
        .iter()
        .map(bus_record)
        .collect()
}

pub(crate) async fn head(c: &mut dyn Conn) -> Result<i64> {
    c.query_one("SELECT coalesce(max(seq), 0) FROM outbox", &[])
        .await?
        .int(0)
}

pub(crate) async fn cursor(c: &mut dyn Conn, consumer: &str) -> Result<Option<i64>> {
    c.query_opt(
        "SELECT seq FROM bus_cursors WHERE consumer = $1",
        args![consumer],
    )
    .await?
    .map(|r| r.int(0))
    .transpose()
}

/// Takes or renews a sink's lease (see `BusStore::take_lease`).
pub(crate) async fn take_lease(
    c: &mut dyn Conn,
    sink: &str,
    holder: &str,
    now: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<bool> {
    let expired = crate::store::sql::compare_time(c.dialect(), "sink_leases.expires_at", "<", 4);
    let taken = c
        .query_opt(
            &format!(
                "INSERT INTO sink_leases (sink, holder, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (sink) DO UPDATE SET holder = excluded.holder,
                     expires_at = excluded.expires_at
                 WHERE sink_leases.holder = excluded.holder OR {expired}
                 RETURNING holder"
            ),
            args![sink, holder, until, now],
        )
        .await?;
    Ok(taken.is_some())
}

pub(crate) async fn set_cursor(c: &mut dyn Conn, consumer: &str, seq: i64) -> Result<()> {
    c.execute(
        "INSERT INTO bus_cursors (consumer, seq, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
        args![consumer, seq, OffsetDateTime::now_utc()],
    )
    .await?;
    Ok(())
}

/// What an audit entry says, before the database gives it an id and a time.
pub(crate) struct Change<'a> {
    pub by: &'a Actor,
    pub action: &'a str,
    pub kind: &'a str,
    pub id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Records `change` in the audit trail and puts the entry on the bus, in the caller's transaction.
pub(crate) async fn audit(c: &mut dyn Conn, change: Change<'_>) -> Result<AuditEntry> {
    // PostgreSQL keeps microseconds: the entry says what is stored.
    let now = OffsetDateTime::now_utc();
    let at = now
        .replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now);
    let id = c
        .query_one(
            "INSERT INTO audit (at, actor, action, object, actor_token, actor_address, object_kind,
                 before, after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            args![
                at,
                &change.by.account,
                change.action,
                &change.id,
                &change.by.token,
                &change.by.address,
                change.kind,
                change.before.clone(),
                change.after.clone()
            ],
        )
        .await?
        .int(0)?;
    let entry = AuditEntry {
        id,
        at,
        actor: change.by.clone(),
        action: change.action.to_string(),
        object_kind: change.kind.to_string(),
        object_id: change.id,
        before: change.before,
        after: change.after,
    };
    let payload = serde_json::to_value(&entry).map_err(crate::store::StoreError::corrupt)?;
    append(c, "audit", Some(&entry.object_id), Some(payload), None).await?;
    Ok(entry)
}

/// The audit trail, newest first.
pub(crate) async fn audit_entries(
    c: &mut dyn Conn,
    query: &AuditQuery,
) -> Result<Page<AuditEntry>> {
    let mut conditions = Vec::new();
    let mut params: Vec<Arg> = Vec::new();
    let mut filter = |condition: &str, value: &Option<String>| {
        if let Some(value) = value {
            params.push(value.clone().into());
            conditions.push(format!("{condition} = ${}", params.len()));
        }
    };
    filter("object_kind", &query.object_kind);
    filter("object", &query.object_id);
    filter("actor", &query.account);
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let total = c
        .query_one(&format!("SELECT count(*) FROM audit {filter}"), &params)
        .await?
        .int(0)?;
    let n = params.len();
    params.push((query.page.limit as i64).into());
    params.push((query.page.offset as i64).into());
    let rows = c
        .query(
            &format!(
                "SELECT id, at, actor, actor_token, actor_address, action, object_kind, object,
                    before, after, details
             FROM audit {filter} ORDER BY id DESC LIMIT ${} OFFSET ${}",
                n + 1,
                n + 2
            ),
            &params,
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.int(0)?,
                at: r.time(1)?,
                actor: Actor {
                    account: r.text(2)?,
                    token: r.opt_text(3)?,
                    address: r.opt_text(4)?,
                },
                action: r.text(5)?,
                object_kind: r.opt_text(6)?.unwrap_or_default(),
                object_id: r.text(7)?,
                before: r.opt_json(8)?,
                // Entries written before `after` existed kept it in `details`.
                after: match r.opt_json(9)? {
                    Some(after) => Some(after),
                    None => r.opt_json(10)?,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Page {
        items,
        total: total.max(0) as u64,
    })
}
