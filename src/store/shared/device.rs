//! The device protocol's statements: logins, enrolment, sync state, results, policy reads.

use std::sync::OnceLock;

use time::OffsetDateTime;

use super::bus;
use crate::args;
use crate::soap::{AppInfo, AppState, Params};
use crate::store::sql::{placeholders, Arg, Conn, Row};
use crate::store::{
    DeviceLogin, PolicyRow, Recorded, Result, Revisions, Seen, SettingsRecord, SettingsWrite,
    StoreError, SubscriptionRow, SyncRecord, SyncWrite, ROOT_GROUP, UNASSIGNED_GROUP,
};
use crate::sync::Known;

const DEVICE_LOGIN: &str = "SELECT id, credential, status FROM devices WHERE device_id = $1";

pub(crate) async fn device_login(c: &mut dyn Conn, device_id: &str) -> Result<Option<DeviceLogin>> {
    c.query_opt(DEVICE_LOGIN, args![device_id])
        .await?
        .map(|r| {
            Ok(DeviceLogin {
                id: r.int(0)?,
                credential: r.opt_bytes(1)?,
                blocked: r.text(2)? == "blocked",
            })
        })
        .transpose()
}

/// Records a first contact's credential: sets it on a pre-registered (or reset) row, or inserts the
/// device. `None` when another login enrolled the same id first. Puts `device.enrolled` on the bus.
pub(crate) async fn enrol(
    c: &mut dyn Conn,
    device_id: &str,
    credential: &[u8],
    seen: &Seen,
) -> Result<Option<i64>> {
    let id = match c
        .query_opt(
            "UPDATE devices SET credential = $1, first_seen = coalesce(first_seen, $2),
             last_seen = $2, last_address = $3
         WHERE device_id = $4 AND credential IS NULL RETURNING id",
            args![credential, seen.at, &seen.address, device_id],
        )
        .await?
    {
        Some(row) => Some(row.int(0)?),
        None => c
            .query_opt(
                "INSERT INTO devices (device_id, credential, first_seen, last_seen, last_address)
                 VALUES ($1, $2, $3, $3, $4) ON CONFLICT (device_id) DO NOTHING RETURNING id",
                args![device_id, credential, seen.at, &seen.address],
            )
            .await?
            .map(|r| r.int(0))
            .transpose()?,
    };
    if id.is_some() {
        let payload = serde_json::json!({ "address": seen.address });
        bus::append(c, "device.enrolled", Some(device_id), Some(payload), None).await?;
    }
    Ok(id)
}

/// The device's group, sync state and the revisions, in one read.
const SYNC_RECORD: &str = "SELECT d.group_id, s.info_hash, s.state_hash,
        s.settings_hash, s.policy_hash, s.policy_digest, s.subs_hash, s.subs_digest,
        CASE WHEN st.current IS NULL THEN 0 ELSE 1 END,
        CASE WHEN st.pending_rev > st.pushed_rev THEN 1 ELSE 0 END,
        (SELECT rev FROM revisions WHERE name = 'policy'),
        (SELECT rev FROM revisions WHERE name = 'subscriptions')
     FROM devices d
     LEFT JOIN device_sync s ON s.device = d.id
     LEFT JOIN device_settings st ON st.device = d.id
     WHERE d.id = $1";

pub(crate) async fn sync_record(c: &mut dyn Conn, device: i64) -> Result<SyncRecord> {
    let r = c
        .query_opt(SYNC_RECORD, args![device])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("device row {device}")))?;
    Ok(SyncRecord {
        group_id: r.int(0)?,
        known: Known {
            info_hash: r.opt_bytes(1)?,
            state_hash: r.opt_bytes(2)?,
            settings_hash: r.opt_bytes(3)?,
            policy_hash: r.opt_bytes(4)?,
            policy_digest: r.opt_bytes(5)?,
            subs_hash: r.opt_bytes(6)?,
            subs_digest: r.opt_bytes(7)?,
            settings_known: r.opt_int(8)?.unwrap_or(0) != 0,
            settings_pending: r.opt_int(9)?.unwrap_or(0) != 0,
        },
        revisions: Revisions {
            policy: r.opt_int(10)?.unwrap_or_default(),
            subscriptions: r.opt_int(11)?.unwrap_or_default(),
        },
    })
}

const SETTINGS: &str =
    "SELECT current, pending, pending_rev FROM device_settings WHERE device = $1";

pub(crate) async fn settings(c: &mut dyn Conn, device: i64) -> Result<SettingsRecord> {
    let row = c.query_opt(SETTINGS, args![device]).await?;
    settings_of(row.as_ref())
}

pub(crate) fn settings_of(r: Option<&Row>) -> Result<SettingsRecord> {
    match r {
        None => Ok(SettingsRecord::default()),
        Some(r) => Ok(SettingsRecord {
            current: r.opt_json(0)?,
            pending: r.opt_json(1)?,
            pending_rev: r.int(2)?,
        }),
    }
}

const REVISIONS: &str = "SELECT name, rev FROM revisions";

pub(crate) async fn revisions(c: &mut dyn Conn) -> Result<Revisions> {
    let mut revs = Revisions::default();
    for r in c.query(REVISIONS, &[]).await? {
        match r.text(0)?.as_str() {
            "policy" => revs.policy = r.int(1)?,
            "subscriptions" => revs.subscriptions = r.int(1)?,
            _ => {}
        }
    }
    Ok(revs)
}

const GROUP_CHAIN: &str = "WITH RECURSIVE chain (id, parent_id, depth) AS (
         SELECT id, parent_id, 0 FROM groups WHERE id = $1
         UNION ALL
         SELECT g.id, g.parent_id, c.depth + 1 FROM groups g JOIN chain c ON g.id = c.parent_id
         WHERE c.depth < 64
     ) SELECT id FROM chain ORDER BY depth DESC";

pub(crate) async fn group_chain(c: &mut dyn Conn, group: i64) -> Result<Vec<i64>> {
    c.query(GROUP_CHAIN, args![group])
        .await?
        .iter()
        .map(|r| r.int(0))
        .collect()
}

fn in_groups(groups: &[i64]) -> (String, Vec<Arg>) {
    (
        placeholders(1, groups.len().max(1)),
        if groups.is_empty() {
            vec![Arg::Int(None)]
        } else {
            groups.iter().map(|g| Arg::from(*g)).collect()
        },
    )
}

pub(crate) async fn policy_rows(c: &mut dyn Conn, groups: &[i64]) -> Result<Vec<PolicyRow>> {
    let (list, params) = in_groups(groups);
    let sql = format!(
        "SELECT group_id, path, value_type, value, locked FROM policy WHERE group_id IN ({list})"
    );
    c.query(&sql, &params)
        .await?
        .iter()
        .map(|r| {
            Ok(PolicyRow {
                group_id: r.int(0)?,
                path: r.text(1)?,
                value_type: r.text(2)?,
                value: r.text(3)?,
                locked: r.bool(4)?,
            })
        })
        .collect()
}

pub(crate) async fn subscription_rows(
    c: &mut dyn Conn,
    groups: &[i64],
) -> Result<Vec<SubscriptionRow>> {
    let (list, params) = in_groups(groups);
    let sql = format!(
        "SELECT group_id, severity, event_type FROM subscriptions WHERE group_id IN ({list})"
    );
    c.query(&sql, &params)
        .await?
        .iter()
        .map(subscription_row)
        .collect()
}

/// A row of `group_id, severity, event_type`.
pub(crate) fn subscription_row(r: &Row) -> Result<SubscriptionRow> {
    Ok(SubscriptionRow {
        group_id: r.int(0)?,
        severity: r.i32(1)?,
        event_type: r.text(2)?,
    })
}

pub(crate) async fn device_count(c: &mut dyn Conn) -> Result<i64> {
    c.query_one("SELECT count(*) FROM devices", &[])
        .await?
        .int(0)
}

/// The columns of `device_app_info`, in the order [`app_info_args`] binds them.
pub(crate) const APP_INFO_COLUMNS: &[&str] = &[
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

pub(crate) const APP_STATE_COLUMNS: &[&str] = &[
    "device",
    "state_app",
    "state_rtp",
    "last_full_scan",
    "last_update_time",
    "bases_date",
    "bases_install_date",
    "bases_records",
    "updated_at",
];

/// `INSERT ... ON CONFLICT (key) DO UPDATE` setting every column but the key.
fn upsert_sql(table: &str, key: &str, columns: &[&str]) -> String {
    let sets: Vec<String> = columns
        .iter()
        .filter(|c| **c != key)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({key}) DO UPDATE SET {}",
        columns.join(", "),
        placeholders(1, columns.len()),
        sets.join(", ")
    )
}

fn app_info_args(device: i64, info: &AppInfo, now: OffsetDateTime) -> Vec<Arg> {
    let p = &info.prod_info;
    let d = &info.dev_info;
    let mut a: Vec<Arg> = vec![
        device.into(),
        (&p.product_name).into(),
        (&p.product_version).into(),
        p.install_time.into(),
        (&p.display_name).into(),
        (&p.prod_version).into(),
    ];
    for key in [&info.license_info.key_current, &info.license_info.key_next] {
        let k = key.as_ref();
        a.extend([
            k.map(|k| k.key_type).into(),
            k.map(|k| k.key_prod_suite_id).into(),
            k.map(|k| k.key_app_id).into(),
            k.map(|k| k.key_install_date).into(),
            k.map(|k| k.key_expiration_date).into(),
            k.map(|k| k.key_lic_period).into(),
            k.and_then(|k| k.key_lic_count).into(),
            k.map(|k| k.key_serial.clone()).into(),
            k.map(|k| k.key_maj_ver.clone()).into(),
            k.map(|k| k.key_prod_name.clone()).into(),
        ]);
    }
    a.extend([
        (&d.presumed_name).into(),
        (&d.presumed_group).into(),
        d.os_type.into(),
        d.os_ver_major.into(),
        d.os_ver_minor.into(),
        (&d.os_manufacturer).into(),
        (&d.os_name).into(),
        (&d.os_ver).into(),
        // Signed 64-bit columns; memory sizes beyond that are not real devices.
        d.memory
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX))
            .into(),
        (&d.processor_family).into(),
        (&d.system_name).into(),
        (&d.system_type).into(),
        now.into(),
    ]);
    a
}

fn app_state_args(device: i64, s: &AppState, now: OffsetDateTime) -> Vec<Arg> {
    vec![
        device.into(),
        s.state_app.into(),
        s.state_rtp.into(),
        s.last_full_scan.into(),
        s.last_update_time.into(),
        s.bases_date.into(),
        s.bases_install_date.into(),
        s.bases_records.into(),
        now.into(),
    ]
}

fn json(tree: &Params) -> Arg {
    Arg::Json(Some(
        serde_json::to_value(tree).expect("parameter trees always serialise"),
    ))
}

/// Writes what one sync result changes, in the caller's transaction.
pub(crate) async fn record_result(
    c: &mut dyn Conn,
    device: i64,
    write: &SyncWrite,
    now: OffsetDateTime,
) -> Result<Recorded> {
    static APP_INFO: OnceLock<String> = OnceLock::new();
    static APP_STATE: OnceLock<String> = OnceLock::new();
    let mut recorded = Recorded::default();
    if let Some(info) = &write.app_info {
        let sql =
            APP_INFO.get_or_init(|| upsert_sql("device_app_info", "device", APP_INFO_COLUMNS));
        c.execute(sql, &app_info_args(device, info, now)).await?;
    }
    if let Some(state) = &write.app_state {
        let sql =
            APP_STATE.get_or_init(|| upsert_sql("device_app_state", "device", APP_STATE_COLUMNS));
        c.execute(sql, &app_state_args(device, state, now)).await?;
    }
    match &write.settings {
        Some(SettingsWrite::Reported(tree)) => {
            c.execute(
                "INSERT INTO device_settings (device, current, reported_at) VALUES ($1, $2, $3)
                 ON CONFLICT (device) DO UPDATE SET current = excluded.current,
                     reported_at = excluded.reported_at",
                &[device.into(), json(tree), now.into()],
            )
            .await?;
        }
        Some(SettingsWrite::Pushed { tree, rev }) => {
            c.execute(
                "UPDATE device_settings SET current = $1, reported_at = $2, pushed_rev = $3,
                     pending = CASE WHEN pending_rev <= $3 THEN NULL ELSE pending END
                 WHERE device = $4",
                &[json(tree), now.into(), (*rev).into(), device.into()],
            )
            .await?;
        }
        None => {}
    }
    if !write.columns.is_empty() {
        let mut columns = vec!["device", "last_sync_at"];
        columns.extend(write.columns.iter().map(|(column, _)| column.name()));
        let mut params: Vec<Arg> = vec![device.into(), now.into()];
        params.extend(write.columns.iter().map(|(_, v)| Arg::from(v.clone())));
        c.execute(&upsert_sql("device_sync", "device", &columns), &params)
            .await?;
    }
    if let Some((command, error)) = &write.error {
        c.execute(
            "INSERT INTO device_sync (device, last_error_command, last_error_code,
                 last_error_module, last_error_message, last_error_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (device) DO UPDATE SET
                 last_error_command = excluded.last_error_command,
                 last_error_code = excluded.last_error_code,
                 last_error_module = excluded.last_error_module,
                 last_error_message = excluded.last_error_message,
                 last_error_at = excluded.last_error_at",
            args![
                device,
                *command,
                error.code,
                &error.module,
                &error.message,
                now
            ],
        )
        .await?;
        let payload = serde_json::json!({
            "command": command, "code": error.code, "module": error.module, "message": error.message,
        });
        let id = device_id_of(c, device).await?;
        bus::append(c, "device.sync_error", Some(&id), Some(payload), None).await?;
    }
    if let Some(name) = &write.join_group {
        let lock = c.dialect().pick("", " FOR UPDATE");
        let group = c
            .query_one(
                &format!("SELECT group_id, device_id FROM devices WHERE id = $1{lock}"),
                args![device],
            )
            .await?;
        if group.int(0)? == UNASSIGNED_GROUP {
            let target = super::admin::ensure_group(c, ROOT_GROUP, name).await?;
            c.execute(
                "UPDATE devices SET group_id = $1 WHERE id = $2",
                args![target, device],
            )
            .await?;
            recorded.moved_to = Some(target);
            let payload = serde_json::json!({ "from": UNASSIGNED_GROUP, "to": target });
            bus::append(
                c,
                "device.moved",
                Some(&group.text(1)?),
                Some(payload),
                None,
            )
            .await?;
        }
    }
    if let Some(name) = &write.display_name {
        c.execute(
            "UPDATE devices SET display_name = $1 WHERE id = $2",
            args![name.as_str(), device],
        )
        .await?;
    }
    Ok(recorded)
}

/// The DeviceId of a device row.
pub(crate) async fn device_id_of(c: &mut dyn Conn, device: i64) -> Result<String> {
    c.query_opt("SELECT device_id FROM devices WHERE id = $1", args![device])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("device row {device}")))?
        .text(0)
}

/// Writes buffered "last seen" times, one statement per device.
pub(crate) async fn write_seen(c: &mut dyn Conn, seen: &[(i64, Seen)]) -> Result<()> {
    for (device, seen) in seen {
        c.execute(
            "UPDATE devices SET last_seen = $1, last_address = $2 WHERE id = $3",
            args![seen.at, &seen.address, *device],
        )
        .await?;
    }
    Ok(())
}
