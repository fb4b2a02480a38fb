//! Queries of stored device events.

use crate::args;
use crate::store::sql::{compare_time, like_pattern, placeholders, Arg, Conn, Row};
use crate::store::{EventQuery, EventRecord, Page, Result};

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
