//! The objects admins manage: groups, devices, queued settings, policy rows, subscriptions. Each
//! change is one transaction that also writes its audit entry and puts it on the bus.

use crate::args;
use crate::soap::Params;
use crate::store::dump::Cell;
use crate::store::sql::{compare_time, like_pattern, placeholders, Arg, Conn, Row};
use crate::store::{
    Actor, AuditEntry, DeviceChange, DeviceDetail, DeviceFilter, DeviceRecord, DeviceState,
    DeviceStatus, FleetStats, Group, Page, PageRequest, PolicyEntry, PolicyRow, Result,
    SettingsRecord, StoreError, SubscriptionRow, SyncError,
};
use time::OffsetDateTime;

use super::bus::{self, Change};

fn json<T: serde::Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

// --- groups ---

fn group_row(r: &Row) -> Result<Group> {
    Ok(Group {
        id: r.int(0)?,
        parent_id: r.opt_int(1)?,
        name: r.text(2)?,
    })
}

pub(crate) async fn groups(c: &mut dyn Conn) -> Result<Vec<Group>> {
    c.query("SELECT id, parent_id, name FROM groups ORDER BY id", &[])
        .await?
        .iter()
        .map(group_row)
        .collect()
}

pub(crate) async fn group(c: &mut dyn Conn, id: i64) -> Result<Option<Group>> {
    c.query_opt(
        "SELECT id, parent_id, name FROM groups WHERE id = $1",
        args![id],
    )
    .await?
    .as_ref()
    .map(group_row)
    .transpose()
}

async fn existing_group(c: &mut dyn Conn, id: i64) -> Result<Group> {
    group(c, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("group {id} does not exist")))
}

async fn check_name_free(c: &mut dyn Conn, parent: i64, name: &str) -> Result<()> {
    if c.query_opt(
        "SELECT id FROM groups WHERE parent_id = $1 AND name = $2",
        args![parent, name],
    )
    .await?
    .is_some()
    {
        return Err(StoreError::Conflict(format!(
            "group {parent} already has a child group named {name:?}"
        )));
    }
    Ok(())
}

/// The child of `parent` called `name`, created if missing.
pub(crate) async fn ensure_group(c: &mut dyn Conn, parent: i64, name: &str) -> Result<i64> {
    // A concurrent insert of the same name (another PostgreSQL node) waits for the other
    // transaction, then does nothing; the SELECT that follows sees the row either way.
    c.execute(
        "INSERT INTO groups (parent_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        args![parent, name],
    )
    .await?;
    c.query_one(
        "SELECT id FROM groups WHERE parent_id = $1 AND name = $2",
        args![parent, name],
    )
    .await?
    .int(0)
}

pub(crate) async fn create_group(
    c: &mut dyn Conn,
    parent: i64,
    name: &str,
    by: &Actor,
) -> Result<(Group, AuditEntry)> {
    existing_group(c, parent).await?;
    check_name_free(c, parent, name).await?;
    let id = c
        .query_one(
            "INSERT INTO groups (parent_id, name) VALUES ($1, $2) RETURNING id",
            args![parent, name],
        )
        .await?
        .int(0)?;
    let group = existing_group(c, id).await?;
    let entry = bus::audit(
        c,
        Change {
            by,
            action: "group.create",
            kind: "group",
            id: id.to_string(),
            before: None,
            after: json(&group),
        },
    )
    .await?;
    Ok((group, entry))
}

pub(crate) async fn rename_group(
    c: &mut dyn Conn,
    id: i64,
    name: &str,
    by: &Actor,
) -> Result<(Group, AuditEntry)> {
    let before = existing_group(c, id).await?;
    if let Some(parent) = before.parent_id {
        if before.name != name {
            check_name_free(c, parent, name).await?;
        }
    }
    c.execute("UPDATE groups SET name = $1 WHERE id = $2", args![name, id])
        .await?;
    let after = existing_group(c, id).await?;
    let entry = bus::audit(
        c,
        Change {
            by,
            action: "group.rename",
            kind: "group",
            id: id.to_string(),
            before: json(&before),
            after: json(&after),
        },
    )
    .await?;
    Ok((after, entry))
}

pub(crate) async fn move_group(
    c: &mut dyn Conn,
    id: i64,
    parent: i64,
    by: &Actor,
) -> Result<(Group, AuditEntry)> {
    let before = existing_group(c, id).await?;
    existing_group(c, parent).await?;
    if super::device::group_chain(c, parent).await?.contains(&id) {
        return Err(StoreError::Invalid(format!(
            "group {id} cannot move under itself or one of its descendants"
        )));
    }
    if before.parent_id != Some(parent) {
        check_name_free(c, parent, &before.name).await?;
    }
    c.execute(
        "UPDATE groups SET parent_id = $1 WHERE id = $2",
        args![parent, id],
    )
    .await?;
    let after = existing_group(c, id).await?;
    let entry = bus::audit(
        c,
        Change {
            by,
            action: "group.move",
            kind: "group",
            id: id.to_string(),
            before: json(&before),
            after: json(&after),
        },
    )
    .await?;
    Ok((after, entry))
}

pub(crate) async fn delete_group(c: &mut dyn Conn, id: i64, by: &Actor) -> Result<AuditEntry> {
    let before = existing_group(c, id).await?;
    let children = c
        .query_one(
            "SELECT count(*) FROM groups WHERE parent_id = $1",
            args![id],
        )
        .await?
        .int(0)?;
    let devices = c
        .query_one(
            "SELECT count(*) FROM devices WHERE group_id = $1",
            args![id],
        )
        .await?
        .int(0)?;
    if children > 0 || devices > 0 {
        return Err(StoreError::Conflict(format!(
            "group {id} is not empty: {children} child groups, {devices} devices"
        )));
    }
    c.execute("DELETE FROM groups WHERE id = $1", args![id])
        .await?;
    bus::audit(
        c,
        Change {
            by,
            action: "group.delete",
            kind: "group",
            id: id.to_string(),
            before: json(&before),
            after: None,
        },
    )
    .await
}

// --- devices ---

const DEVICE_COLUMNS: &str = "d.id, d.device_id, d.display_name, d.group_id, d.status,
    CASE WHEN d.credential IS NULL THEN 0 ELSE 1 END, d.first_seen, d.last_seen, d.last_address,
    ai.product_name, ai.product_version, coalesce(inf.viruses_found, 0), s.last_sync_at,
    s.last_error_command, s.last_error_code, s.last_error_module, s.last_error_message,
    s.last_error_at";

const DEVICE_JOINS: &str = "FROM devices d
    LEFT JOIN device_app_info ai ON ai.device = d.id
    LEFT JOIN device_infections inf ON inf.device = d.id
    LEFT JOIN device_sync s ON s.device = d.id";

fn device_row(r: &Row) -> Result<DeviceRecord> {
    let status = r.text(4)?;
    Ok(DeviceRecord {
        id: r.int(0)?,
        device_id: r.text(1)?,
        display_name: r.opt_text(2)?,
        group_id: r.int(3)?,
        status: DeviceStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt(format!("device status {status:?}")))?,
        enrolled: r.bool(5)?,
        first_seen: r.opt_time(6)?,
        last_seen: r.opt_time(7)?,
        last_address: r.opt_text(8)?,
        product_name: r.opt_text(9)?,
        product_version: r.opt_text(10)?,
        viruses_found: r.int(11)?,
        last_sync_at: r.opt_time(12)?,
        last_error: match (r.opt_i32(13)?, r.opt_i32(14)?) {
            (Some(command), Some(code)) => Some(SyncError {
                command,
                code,
                module: r.opt_text(15)?,
                message: r.opt_text(16)?,
                at: r.opt_time(17)?,
            }),
            _ => None,
        },
    })
}

pub(crate) async fn devices(
    c: &mut dyn Conn,
    filter: &DeviceFilter,
    page: PageRequest,
) -> Result<Page<DeviceRecord>> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Arg> = Vec::new();
    if !filter.group_ids.is_empty() {
        let list = placeholders(params.len() + 1, filter.group_ids.len());
        params.extend(filter.group_ids.iter().map(|g| Arg::from(*g)));
        conditions.push(format!("d.group_id IN ({list})"));
    }
    if !filter.states.is_empty() {
        let any: Vec<&str> = filter
            .states
            .iter()
            .map(|state| match state {
                DeviceState::Active => "(d.status = 'active' AND d.last_seen IS NOT NULL)",
                DeviceState::Blocked => "d.status = 'blocked'",
                DeviceState::NeverSeen => "(d.status = 'active' AND d.last_seen IS NULL)",
            })
            .collect();
        conditions.push(format!("({})", any.join(" OR ")));
    }
    for (bound, op) in [(filter.seen_after, ">="), (filter.seen_before, "<")] {
        if let Some(at) = bound {
            params.push(at.into());
            conditions.push(compare_time(c.dialect(), "d.last_seen", op, params.len()));
        }
    }
    if let Some(after) = filter.after_id {
        params.push(after.into());
        conditions.push(format!("d.id > ${}", params.len()));
    }
    if let Some(search) = &filter.search {
        let pattern = like_pattern(search);
        params.push(pattern.into());
        let n = params.len();
        conditions.push(format!(
            "(lower(d.device_id) LIKE ${n} ESCAPE '\\' \
             OR lower(coalesce(d.display_name, '')) LIKE ${n} ESCAPE '\\')"
        ));
    }
    let filter_infected = filter.infected.is_some();
    match filter.infected {
        Some(true) => conditions.push("coalesce(inf.viruses_found, 0) > 0".into()),
        Some(false) => conditions.push("coalesce(inf.viruses_found, 0) = 0".into()),
        None => {}
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // The infections join only when a filter needs it: without it the count reads an index alone
    // (4 ms instead of 60 for a million devices on SQLite).
    let counted = match filter_infected {
        true => "devices d LEFT JOIN device_infections inf ON inf.device = d.id",
        false => "devices d",
    };
    let total = c
        .query_one(&format!("SELECT count(*) FROM {counted} {filter}"), &params)
        .await?
        .int(0)?;
    let n = params.len();
    params.push((page.limit as i64).into());
    params.push((page.offset as i64).into());
    // The page's ids first, from the devices table alone; then their columns. Rows skipped by the
    // offset are never joined.
    let items = c
        .query(
            &format!(
                "SELECT {DEVICE_COLUMNS} {DEVICE_JOINS} WHERE d.id IN (
                     SELECT d.id FROM {counted} {filter} ORDER BY d.id LIMIT ${} OFFSET ${})
                 ORDER BY d.id",
                n + 1,
                n + 2
            ),
            &params,
        )
        .await?
        .iter()
        .map(device_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(Page {
        items,
        total: total.max(0) as u64,
    })
}

async fn device_record(c: &mut dyn Conn, device_id: &str) -> Result<Option<DeviceRecord>> {
    c.query_opt(
        &format!("SELECT {DEVICE_COLUMNS} {DEVICE_JOINS} WHERE d.device_id = $1"),
        args![device_id],
    )
    .await?
    .as_ref()
    .map(device_row)
    .transpose()
}

async fn existing_device(c: &mut dyn Conn, device_id: &str) -> Result<DeviceRecord> {
    device_record(c, device_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("device {device_id:?} does not exist")))
}

/// The columns of a one-row table as a JSON object (binary values as `{"base64": ...}`).
async fn row_object(
    c: &mut dyn Conn,
    table: &str,
    columns: &[&str],
    device: i64,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
    let sql = format!(
        "SELECT {} FROM {table} WHERE device = $1",
        columns.join(", ")
    );
    Ok(c.query_opt(&sql, args![device]).await?.map(|row| {
        columns
            .iter()
            .zip(row.0.iter())
            .filter(|(name, _)| **name != "device")
            .map(|(name, cell)| (name.to_string(), Cell::to_json(cell)))
            .collect()
    }))
}

pub(crate) async fn device(c: &mut dyn Conn, device_id: &str) -> Result<Option<DeviceDetail>> {
    let Some(device) = device_record(c, device_id).await? else {
        return Ok(None);
    };
    let app_info = row_object(
        c,
        "device_app_info",
        super::device::APP_INFO_COLUMNS,
        device.id,
    )
    .await?;
    let app_state = row_object(
        c,
        "device_app_state",
        super::device::APP_STATE_COLUMNS,
        device.id,
    )
    .await?;
    let settings = super::device::settings(c, device.id).await?;
    Ok(Some(DeviceDetail {
        device,
        app_info,
        app_state,
        settings,
    }))
}

pub(crate) async fn register_device(
    c: &mut dyn Conn,
    device_id: &str,
    group: i64,
    display_name: Option<&str>,
    credential: Option<Vec<u8>>,
    by: &Actor,
) -> Result<(DeviceRecord, AuditEntry)> {
    if device_record(c, device_id).await?.is_some() {
        return Err(StoreError::Conflict(format!(
            "device {device_id:?} already exists"
        )));
    }
    existing_group(c, group).await?;
    c.execute(
        "INSERT INTO devices (device_id, group_id, display_name, credential)
         VALUES ($1, $2, $3, $4)",
        args![
            device_id,
            group,
            display_name.map(str::to_string),
            credential
        ],
    )
    .await?;
    let after = existing_device(c, device_id).await?;
    let entry = bus::audit(
        c,
        Change {
            by,
            action: "device.register",
            kind: "device",
            id: device_id.to_string(),
            before: None,
            after: json(&after),
        },
    )
    .await?;
    Ok((after, entry))
}

/// Moves, renames, blocks or unblocks a device at once: one audit entry, and a bus entry for each
/// kind of change that happened.
pub(crate) async fn update_device(
    c: &mut dyn Conn,
    device_id: &str,
    change: &DeviceChange,
    by: &Actor,
) -> Result<(DeviceRecord, AuditEntry)> {
    let before = existing_device(c, device_id).await?;
    let mut sets = Vec::new();
    let mut params: Vec<Arg> = Vec::new();
    if let Some(group) = change.group_id {
        existing_group(c, group).await?;
        params.push(group.into());
        sets.push(format!("group_id = ${}", params.len()));
    }
    if let Some(name) = &change.display_name {
        params.push(Arg::Text((!name.is_empty()).then(|| name.clone())));
        sets.push(format!("display_name = ${}", params.len()));
    }
    if let Some(blocked) = change.blocked {
        let status = if blocked {
            DeviceStatus::Blocked
        } else {
            DeviceStatus::Active
        };
        params.push(status.as_str().into());
        sets.push(format!("status = ${}", params.len()));
    }
    if sets.is_empty() {
        return Err(StoreError::Invalid(
            "nothing to change: give group_id, display_name or blocked".into(),
        ));
    }
    params.push(device_id.into());
    c.execute(
        &format!(
            "UPDATE devices SET {} WHERE device_id = ${}",
            sets.join(", "),
            params.len()
        ),
        &params,
    )
    .await?;
    let after = existing_device(c, device_id).await?;
    let entry = bus::audit(
        c,
        Change {
            by,
            action: match (&change.group_id, &change.display_name, &change.blocked) {
                (Some(_), None, None) => "device.move",
                (None, Some(_), None) => "device.rename",
                (None, None, Some(_)) => "device.status",
                _ => "device.update",
            },
            kind: "device",
            id: device_id.to_string(),
            before: json(&before),
            after: json(&after),
        },
    )
    .await?;
    let payload = serde_json::json!({ "group_id": after.group_id, "status": after.status });
    let mut topics = Vec::new();
    if before.group_id != after.group_id {
        topics.push("device.moved");
    }
    if before.display_name != after.display_name {
        topics.push("device.renamed");
    }
    if before.status != after.status {
        topics.push(match after.status {
            DeviceStatus::Active => "device.unblocked",
            DeviceStatus::Blocked => "device.blocked",
        });
    }
    for topic in topics {
        bus::append(c, topic, Some(device_id), Some(payload.clone()), None).await?;
    }
    Ok((after, entry))
}

/// Devices by state, infected devices, and events per hour received since `since`.
pub(crate) async fn stats(c: &mut dyn Conn, since: OffsetDateTime) -> Result<FleetStats> {
    let r = c
        .query_one(
            "SELECT count(*),
                 coalesce(sum(CASE WHEN status = 'blocked' THEN 1 ELSE 0 END), 0),
                 coalesce(sum(CASE WHEN status <> 'blocked' AND last_seen IS NULL THEN 1 ELSE 0 END), 0)
             FROM devices",
            &[],
        )
        .await?;
    let (devices, blocked, never_seen) = (r.int(0)?, r.int(1)?, r.int(2)?);
    let infected = c
        .query_one(
            "SELECT count(*) FROM device_infections WHERE viruses_found > 0",
            &[],
        )
        .await?
        .int(0)?;
    let hour = c.dialect().pick(
        "strftime('%Y-%m-%dT%H:00:00Z', received_at)",
        "to_char(date_trunc('hour', received_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"')",
    );
    let sql = format!(
        "SELECT {hour} AS h, count(*) FROM events WHERE {} GROUP BY h ORDER BY h",
        compare_time(c.dialect(), "received_at", ">=", 1)
    );
    let mut events_per_hour = Vec::new();
    for row in c.query(&sql, args![since]).await? {
        let text = row.text(0)?;
        let at = OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| StoreError::Internal(format!("hour {text:?}: {e}")))?;
        events_per_hour.push((at, row.int(1)?));
    }
    Ok(FleetStats {
        devices,
        active: devices - blocked - never_seen,
        blocked,
        never_seen,
        infected,
        events_per_hour,
    })
}

/// Changes one device with `sql` (binding `value`, then the DeviceId), audits it as `action` and
/// puts `topic` on the bus.
async fn change_device(
    c: &mut dyn Conn,
    device_id: &str,
    sql: &str,
    value: Arg,
    action: &str,
    topic: &str,
    by: &Actor,
) -> Result<(DeviceRecord, AuditEntry)> {
    let before = existing_device(c, device_id).await?;
    c.execute(sql, &[value, device_id.into()]).await?;
    let after = existing_device(c, device_id).await?;
    let entry = bus::audit(
        c,
        Change {
            by,
            action,
            kind: "device",
            id: device_id.to_string(),
            before: json(&before),
            after: json(&after),
        },
    )
    .await?;
    let payload = serde_json::json!({ "group_id": after.group_id, "status": after.status });
    bus::append(c, topic, Some(device_id), Some(payload), None).await?;
    Ok((after, entry))
}

pub(crate) async fn move_device(
    c: &mut dyn Conn,
    device_id: &str,
    group: i64,
    by: &Actor,
) -> Result<(DeviceRecord, AuditEntry)> {
    let change = DeviceChange {
        group_id: Some(group),
        ..DeviceChange::default()
    };
    update_device(c, device_id, &change, by).await
}

pub(crate) async fn set_device_status(
    c: &mut dyn Conn,
    device_id: &str,
    status: DeviceStatus,
    by: &Actor,
) -> Result<(DeviceRecord, AuditEntry)> {
    let change = DeviceChange {
        blocked: Some(status == DeviceStatus::Blocked),
        ..DeviceChange::default()
    };
    update_device(c, device_id, &change, by).await
}

pub(crate) async fn reset_device(
    c: &mut dyn Conn,
    device_id: &str,
    by: &Actor,
) -> Result<(DeviceRecord, AuditEntry)> {
    change_device(
        c,
        device_id,
        "UPDATE devices SET credential = $1 WHERE device_id = $2",
        Arg::Bytes(None),
        "device.reset",
        "device.reset",
        by,
    )
    .await
}

pub(crate) async fn delete_device(
    c: &mut dyn Conn,
    device_id: &str,
    by: &Actor,
) -> Result<AuditEntry> {
    let before = existing_device(c, device_id).await?;
    c.execute("DELETE FROM devices WHERE device_id = $1", args![device_id])
        .await?;
    let entry = bus::audit(
        c,
        Change {
            by,
            action: "device.delete",
            kind: "device",
            id: device_id.to_string(),
            before: json(&before),
            after: None,
        },
    )
    .await?;
    bus::append(c, "device.deleted", Some(device_id), None, None).await?;
    Ok(entry)
}

pub(crate) async fn queue_settings(
    c: &mut dyn Conn,
    device_id: &str,
    changes: &Params,
    by: &Actor,
) -> Result<(SettingsRecord, AuditEntry)> {
    let device = existing_device(c, device_id).await?;
    let before = super::device::settings(c, device.id).await?;
    let merged = match &before.pending {
        Some(pending) => crate::sync::policy::apply_changes(pending, changes),
        None => changes.clone(),
    };
    c.execute(
        "INSERT INTO device_settings (device, pending, pending_rev) VALUES ($1, $2, 1)
         ON CONFLICT (device) DO UPDATE SET pending = excluded.pending,
             pending_rev = device_settings.pending_rev + 1",
        &[device.id.into(), Arg::Json(json(&merged))],
    )
    .await?;
    let after = super::device::settings(c, device.id).await?;
    let entry = bus::audit(
        c,
        Change {
            by,
            action: "device.settings",
            kind: "device",
            id: device_id.to_string(),
            before: json(&before.pending),
            after: json(&after.pending),
        },
    )
    .await?;
    Ok((after, entry))
}

// --- policy ---

const POLICY_COLUMNS: &str = "id, group_id, path, value_type, value, locked";

fn policy_row(r: &Row) -> Result<PolicyEntry> {
    Ok(PolicyEntry {
        id: r.int(0)?,
        row: PolicyRow {
            group_id: r.int(1)?,
            path: r.text(2)?,
            value_type: r.text(3)?,
            value: r.text(4)?,
            locked: r.bool(5)?,
        },
    })
}

pub(crate) async fn policy_of(c: &mut dyn Conn, group: i64) -> Result<Vec<PolicyEntry>> {
    existing_group(c, group).await?;
    c.query(
        &format!("SELECT {POLICY_COLUMNS} FROM policy WHERE group_id = $1 ORDER BY path, id"),
        args![group],
    )
    .await?
    .iter()
    .map(policy_row)
    .collect()
}

async fn policy_entry(c: &mut dyn Conn, group: i64, id: i64) -> Result<Option<PolicyEntry>> {
    c.query_opt(
        &format!("SELECT {POLICY_COLUMNS} FROM policy WHERE group_id = $1 AND id = $2"),
        args![group, id],
    )
    .await?
    .as_ref()
    .map(policy_row)
    .transpose()
}

async fn audit_policy(
    c: &mut dyn Conn,
    action: &str,
    id: i64,
    before: Option<&PolicyEntry>,
    after: Option<&PolicyEntry>,
    by: &Actor,
) -> Result<AuditEntry> {
    bus::audit(
        c,
        Change {
            by,
            action,
            kind: "policy",
            id: id.to_string(),
            before: before.and_then(json),
            after: after.and_then(json),
        },
    )
    .await
}

pub(crate) async fn set_policy(
    c: &mut dyn Conn,
    row: &PolicyRow,
    by: &Actor,
) -> Result<(PolicyEntry, AuditEntry)> {
    existing_group(c, row.group_id).await?;
    let before = c
        .query_opt(
            &format!("SELECT {POLICY_COLUMNS} FROM policy WHERE group_id = $1 AND path = $2"),
            args![row.group_id, &row.path],
        )
        .await?
        .as_ref()
        .map(policy_row)
        .transpose()?;
    let id = c
        .query_one(
            "INSERT INTO policy (group_id, path, value_type, value, locked)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (group_id, path) DO UPDATE SET value_type = excluded.value_type,
                 value = excluded.value, locked = excluded.locked
             RETURNING id",
            args![
                row.group_id,
                &row.path,
                &row.value_type,
                &row.value,
                row.locked
            ],
        )
        .await?
        .int(0)?;
    let after = PolicyEntry {
        id,
        row: row.clone(),
    };
    let entry = audit_policy(c, "policy.set", id, before.as_ref(), Some(&after), by).await?;
    Ok((after, entry))
}

pub(crate) async fn update_policy(
    c: &mut dyn Conn,
    id: i64,
    row: &PolicyRow,
    by: &Actor,
) -> Result<(PolicyEntry, AuditEntry)> {
    let before = policy_entry(c, row.group_id, id).await?.ok_or_else(|| {
        StoreError::NotFound(format!("group {} has no policy row {id}", row.group_id))
    })?;
    if before.row.path != row.path
        && c.query_opt(
            "SELECT id FROM policy WHERE group_id = $1 AND path = $2",
            args![row.group_id, &row.path],
        )
        .await?
        .is_some()
    {
        return Err(StoreError::Conflict(format!(
            "group {} already has a policy row at {:?}",
            row.group_id, row.path
        )));
    }
    c.execute(
        "UPDATE policy SET path = $1, value_type = $2, value = $3, locked = $4
         WHERE group_id = $5 AND id = $6",
        args![
            &row.path,
            &row.value_type,
            &row.value,
            row.locked,
            row.group_id,
            id
        ],
    )
    .await?;
    let after = PolicyEntry {
        id,
        row: row.clone(),
    };
    let entry = audit_policy(c, "policy.update", id, Some(&before), Some(&after), by).await?;
    Ok((after, entry))
}

pub(crate) async fn delete_policy(
    c: &mut dyn Conn,
    group: i64,
    id: i64,
    by: &Actor,
) -> Result<AuditEntry> {
    let before = policy_entry(c, group, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("group {group} has no policy row {id}")))?;
    c.execute("DELETE FROM policy WHERE id = $1", args![id])
        .await?;
    audit_policy(c, "policy.delete", id, Some(&before), None, by).await
}

// --- subscriptions ---

pub(crate) async fn subscriptions_of(c: &mut dyn Conn, group: i64) -> Result<Vec<SubscriptionRow>> {
    existing_group(c, group).await?;
    c.query(
        "SELECT group_id, severity, event_type FROM subscriptions WHERE group_id = $1
         ORDER BY severity, event_type",
        args![group],
    )
    .await?
    .iter()
    .map(super::device::subscription_row)
    .collect()
}

pub(crate) async fn set_subscription(
    c: &mut dyn Conn,
    row: &SubscriptionRow,
    subscribed: bool,
    by: &Actor,
) -> Result<Option<AuditEntry>> {
    existing_group(c, row.group_id).await?;
    let sql = if subscribed {
        "INSERT INTO subscriptions (group_id, severity, event_type) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM subscriptions WHERE group_id = $1 AND severity = $2 AND event_type = $3"
    };
    if c.execute(sql, args![row.group_id, row.severity, &row.event_type])
        .await?
        == 0
    {
        return Ok(None);
    }
    let (action, before, after) = if subscribed {
        ("subscription.add", None, json(row))
    } else {
        ("subscription.remove", json(row), None)
    };
    bus::audit(
        c,
        Change {
            by,
            action,
            kind: "group",
            id: row.group_id.to_string(),
            before,
            after,
        },
    )
    .await
    .map(Some)
}
