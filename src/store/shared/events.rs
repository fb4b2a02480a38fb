//! Queries of stored device events.

use crate::args;
use crate::store::sql::Dialect;
use crate::store::sql::{compare_time, like_pattern, placeholders, Arg, Conn, Row};
use crate::store::{
    EventQuery, EventRecord, EventTable, IntakeEvent, IntakeRecord, Page, PageRequest, Result,
    Retained,
};
use time::OffsetDateTime;

use super::bus;

const EVENT_COLUMNS: &str = "e.id, d.device_id, e.event_id, e.severity, e.product_name,
    e.product_version, e.event_type, e.event_type_display_name, e.descr, e.locid, e.rise_time,
    e.rise_time_ms, e.par1, e.par2, e.par3, e.par4, e.par5, e.par6, e.par7, e.par8, e.par9,
    e.virus_name, e.object_name, e.truncated, e.received_at, e.source_address";

fn event_row(r: &Row) -> Result<EventRecord> {
    let mut par: [Option<String>; 9] = Default::default();
    for (i, p) in par.iter_mut().enumerate() {
        *p = r.opt_text(12 + i)?;
    }
    Ok(EventRecord {
        id: r.int(0)?,
        device_id: r.text(1)?,
        event_id: r.text(2)?,
        severity: r.opt_i32(3)?,
        product_name: r.opt_text(4)?,
        product_version: r.opt_text(5)?,
        event_type: r.opt_text(6)?,
        event_type_display_name: r.opt_text(7)?,
        descr: r.opt_text(8)?,
        locid: r.opt_i32(9)?,
        rise_time: r.opt_time(10)?,
        rise_time_ms: r.opt_i32(11)?,
        par,
        virus_name: r.opt_text(21)?,
        object_name: r.opt_text(22)?,
        truncated: r.bool(23)?,
        received_at: r.time(24)?,
        source_address: r.text(25)?,
    })
}

pub(crate) async fn events(c: &mut dyn Conn, q: &EventQuery) -> Result<Page<EventRecord>> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Arg> = Vec::new();
    if !q.device_ids.is_empty() {
        let list = placeholders(params.len() + 1, q.device_ids.len());
        params.extend(q.device_ids.iter().map(Arg::from));
        conditions.push(format!("d.device_id IN ({list})"));
    }
    if !q.group_ids.is_empty() {
        let list = placeholders(params.len() + 1, q.group_ids.len());
        params.extend(q.group_ids.iter().map(|g| Arg::from(*g)));
        conditions.push(format!("d.group_id IN ({list})"));
    }
    if !q.severities.is_empty() {
        let list = placeholders(params.len() + 1, q.severities.len());
        params.extend(q.severities.iter().map(|s| Arg::from(*s)));
        conditions.push(format!("e.severity IN ({list})"));
    }
    if !q.event_types.is_empty() {
        let list = placeholders(params.len() + 1, q.event_types.len());
        params.extend(q.event_types.iter().map(Arg::from));
        conditions.push(format!("e.event_type IN ({list})"));
    }
    if let Some(since) = q.since {
        params.push(since.into());
        conditions.push(compare_time(
            c.dialect(),
            "e.received_at",
            ">=",
            params.len(),
        ));
    }
    if let Some(until) = q.until {
        params.push(until.into());
        conditions.push(compare_time(
            c.dialect(),
            "e.received_at",
            "<",
            params.len(),
        ));
    }
    if let Some(text) = &q.text {
        params.push(like_pattern(text).into());
        let n = params.len();
        conditions.push(format!(
            "(lower(coalesce(e.descr, '')) LIKE ${n} ESCAPE '\\' \
             OR lower(coalesce(e.event_type, '')) LIKE ${n} ESCAPE '\\' \
             OR lower(coalesce(e.virus_name, '')) LIKE ${n} ESCAPE '\\' \
             OR lower(coalesce(e.object_name, '')) LIKE ${n} ESCAPE '\\')"
        ));
    }
    let order = match q.after_id {
        Some(after) => {
            params.push(after.into());
            conditions.push(format!("e.id > ${}", params.len()));
            "ASC"
        }
        None => "DESC",
    };
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let joins = "FROM events e JOIN devices d ON d.id = e.device";
    let total = c
        .query_one(&format!("SELECT count(*) {joins} {filter}"), &params)
        .await?
        .int(0)?;
    let n = params.len();
    params.push((q.page.limit as i64).into());
    params.push((q.page.offset as i64).into());
    let items = c
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS} {joins} {filter} ORDER BY e.id {order} LIMIT ${} OFFSET ${}",
                n + 1,
                n + 2
            ),
            &params,
        )
        .await?
        .iter()
        .map(event_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(Page {
        items,
        total: total.max(0) as u64,
    })
}

/// Events by row: a range of ids and a list of ids, in id order.
pub(crate) async fn by_rows(
    c: &mut dyn Conn,
    range: Option<(i64, i64)>,
    ids: &[i64],
) -> Result<Vec<EventRecord>> {
    let mut out = Vec::new();
    if let Some((from, to)) = range {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e JOIN devices d ON d.id = e.device
             WHERE e.id BETWEEN $1 AND $2 ORDER BY e.id"
        );
        for r in c.query(&sql, args![from, to]).await? {
            out.push(event_row(&r)?);
        }
    }
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e JOIN devices d ON d.id = e.device
             WHERE e.id IN ({}) ORDER BY e.id",
            placeholders(1, chunk.len())
        );
        let params: Vec<Arg> = chunk.iter().map(|i| Arg::from(*i)).collect();
        for r in c.query(&sql, &params).await? {
            out.push(event_row(&r)?);
        }
    }
    Ok(out)
}

pub(crate) async fn count(c: &mut dyn Conn) -> Result<i64> {
    c.query_one("SELECT count(*) FROM events", &[])
        .await?
        .int(0)
}

const INTAKE_COLUMNS: &str = "id, event_uid, event_code, event_name, entity_id, user_id,
    orch_timestamp_utc, operation_key, signature, worker_admin_name, text, event_type, ip,
    tenant_id, entity_data, sended_at, received_at, source_address, account";

/// Stores an intake event once per `uid`, with its bus entry in the same transaction.
pub(crate) async fn store_intake(
    c: &mut dyn Conn,
    e: &IntakeEvent,
    received_at: OffsetDateTime,
    source_address: &str,
    account: Option<&str>,
) -> Result<Option<i64>> {
    let row = c
        .query_opt(
            "INSERT INTO intake_events (event_uid, event_code, event_name, entity_id, user_id,
                 orch_timestamp_utc, operation_key, signature, worker_admin_name, text, event_type,
                 ip, tenant_id, entity_data, sended_at, received_at, source_address, account)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
             ON CONFLICT (event_uid) DO NOTHING RETURNING id",
            &[
                e.uid.as_str().into(),
                e.event_code.into(),
                e.event_name.clone().into(),
                e.entity_id.clone().into(),
                e.user_id.clone().into(),
                e.orch_timestamp_utc.into(),
                e.operation_key.clone().into(),
                e.signature.clone().into(),
                e.worker_admin_name.clone().into(),
                e.text.clone().into(),
                e.event_type.into(),
                e.ip.clone().into(),
                e.tenant_id.clone().into(),
                e.entity_data.clone().into(),
                e.sended_at.into(),
                received_at.into(),
                source_address.into(),
                account.map(str::to_string).into(),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id = row.int(0)?;
    let payload = serde_json::json!({ "id": id, "uid": e.uid });
    bus::append(c, "intake.event", Some(&e.uid), Some(payload), None).await?;
    Ok(Some(id))
}

fn intake_row(r: &Row) -> Result<IntakeRecord> {
    Ok(IntakeRecord {
        id: r.int(0)?,
        event: IntakeEvent {
            uid: r.text(1)?,
            event_code: r.opt_int(2)?,
            event_name: r.opt_text(3)?,
            entity_id: r.opt_text(4)?,
            user_id: r.opt_text(5)?,
            orch_timestamp_utc: r.opt_time(6)?,
            operation_key: r.opt_text(7)?,
            signature: r.opt_text(8)?,
            worker_admin_name: r.opt_text(9)?,
            text: r.opt_text(10)?,
            event_type: r.opt_int(11)?,
            ip: r.opt_text(12)?,
            tenant_id: r.opt_text(13)?,
            entity_data: r.opt_text(14)?,
            sended_at: r.opt_time(15)?,
        },
        received_at: r.time(16)?,
        source_address: r.text(17)?,
        account: r.opt_text(18)?,
    })
}

/// Intake events, newest first; after `after_id`, oldest first.
pub(crate) async fn intake_events(
    c: &mut dyn Conn,
    after_id: Option<i64>,
    page: PageRequest,
) -> Result<Page<IntakeRecord>> {
    let (filter, order, mut params): (&str, &str, Vec<Arg>) = match after_id {
        Some(after) => ("WHERE id > $1", "ASC", vec![after.into()]),
        None => ("", "DESC", vec![]),
    };
    let total = c
        .query_one(
            &format!("SELECT count(*) FROM intake_events {filter}"),
            &params,
        )
        .await?
        .int(0)?;
    let n = params.len();
    params.push((page.limit as i64).into());
    params.push((page.offset as i64).into());
    let items = c
        .query(
            &format!(
                "SELECT {INTAKE_COLUMNS} FROM intake_events {filter} ORDER BY id {order}
                 LIMIT ${} OFFSET ${}",
                n + 1,
                n + 2
            ),
            &params,
        )
        .await?
        .iter()
        .map(intake_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(Page {
        items,
        total: total.max(0) as u64,
    })
}

/// The newest row of `table` no consumer of `consumers` still needs: every row below the first one
/// referenced by an outbox entry that some consumer has not passed (or that is not sequenced yet).
async fn exported_through(
    c: &mut dyn Conn,
    table: EventTable,
    consumers: &[String],
) -> Result<Option<i64>> {
    if consumers.is_empty() {
        return Ok(None);
    }
    let mut slowest = i64::MAX;
    for consumer in consumers {
        let at = c
            .query_opt(
                "SELECT seq FROM bus_cursors WHERE consumer = $1",
                args![consumer.as_str()],
            )
            .await?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        slowest = slowest.min(at);
    }
    let sql = match (table, c.dialect()) {
        (EventTable::Device, Dialect::Sqlite) => {
            "SELECT min(first_event) FROM outbox
             WHERE topic = 'device.events' AND (seq IS NULL OR seq > $1)"
        }
        (EventTable::Device, Dialect::Postgres) => {
            "SELECT min(e.event_id::bigint)
             FROM outbox o, jsonb_array_elements_text(o.payload->'ids') AS e(event_id)
             WHERE o.topic = 'device.events' AND (o.seq IS NULL OR o.seq > $1)"
        }
        (EventTable::Intake, Dialect::Sqlite) => {
            "SELECT min(json_extract(payload, '$.id')) FROM outbox
             WHERE topic = 'intake.event' AND (seq IS NULL OR seq > $1)"
        }
        (EventTable::Intake, Dialect::Postgres) => {
            "SELECT min((payload->>'id')::bigint) FROM outbox
             WHERE topic = 'intake.event' AND (seq IS NULL OR seq > $1)"
        }
    };
    let pending = c.query_one(sql, args![slowest]).await?.opt_int(0)?;
    Ok(Some(pending.map_or(i64::MAX, |first| first - 1)))
}

/// Deletes up to `limit` old events of `table` (see `EventStore::delete_old_events`).
pub(crate) async fn delete_old(
    c: &mut dyn Conn,
    table: EventTable,
    before: Option<OffsetDateTime>,
    keep_rows: Option<u64>,
    consumers: &[String],
    limit: u64,
) -> Result<Retained> {
    let name = match table {
        EventTable::Device => "events",
        EventTable::Intake => "intake_events",
    };
    let mut due = Vec::new();
    let mut params: Vec<Arg> = Vec::new();
    if let Some(before) = before {
        params.push(before.into());
        due.push(compare_time(c.dialect(), "received_at", "<", params.len()));
    }
    if let Some(keep) = keep_rows {
        params.push((keep.min(i64::MAX as u64) as i64).into());
        due.push(format!(
            "id <= (SELECT coalesce(max(id), 0) FROM {name}) - ${}",
            params.len()
        ));
    }
    if due.is_empty() {
        return Ok(Retained::default());
    }
    let due = format!("({})", due.join(" OR "));
    let wanted = c
        .query_one(&format!("SELECT count(*) FROM {name} WHERE {due}"), &params)
        .await?
        .int(0)?
        .max(0) as u64;
    let bound = exported_through(c, table, consumers)
        .await?
        .unwrap_or(i64::MAX);
    params.push(bound.into());
    let n = params.len();
    params.push((limit.min(i64::MAX as u64) as i64).into());
    let deleted = c
        .execute(
            &format!(
                "DELETE FROM {name} WHERE id IN (
                     SELECT id FROM {name} WHERE {due} AND id <= ${n} ORDER BY id LIMIT ${})",
                n + 1
            ),
            &params,
        )
        .await?;
    let allowed = c
        .query_one(
            &format!("SELECT count(*) FROM {name} WHERE {due} AND id <= ${n}"),
            &params[..n],
        )
        .await?
        .int(0)?
        .max(0) as u64;
    Ok(Retained {
        deleted,
        held_back: wanted.saturating_sub(deleted + allowed),
    })
}
