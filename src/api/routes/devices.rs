//! Devices: listed with filters, pre-registered, moved, renamed, blocked, reset, deleted; what they
//! reported (settings, app info, app state, sync state) and the policy they get.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::groups::provenance;
use super::{Refusals, Reply};
use crate::api::error::ApiError;
use crate::api::extract::{query_flag, Auth, Flag, Json, Paging, Query};
use crate::api::model::{self, Device, Done, ListOf, Provenance, SyncError, Tree};
use crate::api::ApiState;
use crate::domain::devices::DeviceChange;
use crate::store::{DeviceFilter, DeviceState};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, register_device))
        .routes(routes!(get_device, update_device, delete_device))
        .routes(routes!(reset_device))
        .routes(routes!(get_settings, queue_settings))
        .routes(routes!(device_policy))
        .routes(routes!(app_info))
        .routes(routes!(app_state))
        .routes(routes!(sync_state))
}

/// Which devices to list. Repeat a key for several values (`?group_id=3&group_id=6`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// Devices directly in these groups.
    #[serde(default)]
    pub group_id: Vec<i64>,
    /// `active` (seen, not blocked), `blocked`, `never_seen` (not blocked, never connected).
    #[serde(default)]
    pub status: Vec<String>,
    /// Part of the device id or display name, any case.
    pub search: Option<String>,
    /// Last seen at or after this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub seen_after: Option<OffsetDateTime>,
    /// Last seen before this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub seen_before: Option<OffsetDateTime>,
    /// 1: only devices that reported a virus; 0: only those that did not.
    #[serde(default, deserialize_with = "query_flag")]
    #[param(value_type = Option<u8>, minimum = 0, maximum = 1)]
    pub infected: Option<bool>,
    /// Cursor: only devices after this `id` (faster than a deep `offset`).
    pub after_id: Option<i64>,
}

impl DeviceQuery {
    fn filter(self) -> Result<DeviceFilter, ApiError> {
        let states = self
            .status
            .iter()
            .map(|s| {
                DeviceState::parse(s).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown status {s:?}: active, blocked or never_seen"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(DeviceFilter {
            group_ids: self.group_id,
            states,
            search: self.search,
            infected: self.infected,
            seen_after: self.seen_after,
            seen_before: self.seen_before,
            after_id: self.after_id,
        })
    }
}

/// Devices, in the order they were first known (`id`).
#[utoipa::path(get, path = "/devices", tag = "devices", params(DeviceQuery, Paging),
    responses((status = 200, body = ListOf<Device>), Refusals))]
async fn list_devices(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(query): Query<DeviceQuery>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Device>> {
    let page = paging.page()?;
    let found = state
        .domain
        .devices(&caller, &query.filter()?, page)
        .await?;
    let list = found.items.into_iter().map(Device::from).collect();
    Ok(axum::Json(ListOf::page(list, found.total, page)))
}

/// A device to pre-register (closed enrolment).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub device_id: String,
    /// Default: Unassigned.
    pub group_id: Option<i64>,
    pub display_name: Option<String>,
    /// The password the device must log in with (1 to 256 characters). Left out: the device's
    /// first login sets it.
    pub password: Option<String>,
}

/// Pre-registers a device id, so that it may enrol when enrolment is closed.
#[utoipa::path(post, path = "/devices", tag = "devices", request_body = NewDevice,
    responses((status = 200, body = Device), Refusals))]
async fn register_device(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Json(body): Json<NewDevice>,
) -> Reply<Device> {
    let changed = state
        .domain
        .register_device(
            &caller,
            &crate::domain::devices::NewDevice {
                device_id: &body.device_id,
                group: body.group_id,
                display_name: body.display_name.as_deref(),
                password: body.password.as_deref(),
            },
        )
        .await?;
    Ok(axum::Json(changed.value.into()))
}

/// One device.
#[utoipa::path(get, path = "/devices/{device_id}", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Device), Refusals))]
async fn get_device(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
) -> Reply<Device> {
    Ok(axum::Json(
        state
            .domain
            .device(&caller, &device_id)
            .await?
            .device
            .into(),
    ))
}

/// A change of a device; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceUpdate {
    /// Move it to this group.
    pub group_id: Option<i64>,
    /// Rename it (an empty string removes the name).
    pub display_name: Option<String>,
    /// 1 blocks it (its sessions end at once); 0 unblocks it.
    pub blocked: Option<Flag>,
}

/// Moves, renames, blocks or unblocks a device. Soft error `DEVICE/DEVICE_BLOCKED` when a blocked
/// device is moved (it gets its new policy once unblocked).
#[utoipa::path(put, path = "/devices/{device_id}", tag = "devices",
    params(("device_id" = String, Path)), request_body = DeviceUpdate,
    responses((status = 200, body = Device), Refusals))]
async fn update_device(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
    Json(body): Json<DeviceUpdate>,
) -> Reply<Device> {
    let change = DeviceChange {
        group_id: body.group_id,
        display_name: body.display_name,
        blocked: body.blocked.map(Flag::is_set),
    };
    let changed = state
        .domain
        .change_device(&caller, &device_id, &change)
        .await?;
    let mut device = Device::from(changed.value);
    device.error_list = model::soft_errors(&changed.notices);
    Ok(axum::Json(device))
}

/// Deletes a device and everything it reported, its events included.
#[utoipa::path(delete, path = "/devices/{device_id}", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Done), Refusals))]
async fn delete_device(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
) -> Reply<Done> {
    let audit = state.domain.delete_device(&caller, &device_id).await?;
    Ok(axum::Json(Done {
        audit_id: Some(audit.id),
        error_list: None,
    }))
}

/// Forgets a device's password (it enrols again at its next login) and ends its sessions.
#[utoipa::path(post, path = "/devices/{device_id}/reset", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Device), Refusals))]
async fn reset_device(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
) -> Reply<Device> {
    let changed = state.domain.reset_device(&caller, &device_id).await?;
    Ok(axum::Json(changed.value.into()))
}

/// A device's settings as it last reported them, and the changes queued for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Settings {
    /// The tree the device reported (`null` before it first did).
    pub reported: Option<Tree>,
    /// Changes queued by administrators, sent at the device's next sync (`null`: none).
    pub pending: Option<Tree>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_list: Option<Vec<model::SoftError>>,
}

impl From<crate::store::SettingsRecord> for Settings {
    fn from(s: crate::store::SettingsRecord) -> Settings {
        Settings {
            reported: s.current.as_ref().map(model::tree),
            pending: s.pending.as_ref().map(model::tree),
            error_list: None,
        }
    }
}

#[utoipa::path(get, path = "/devices/{device_id}/settings", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Settings), Refusals))]
async fn get_settings(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
) -> Reply<Settings> {
    Ok(axum::Json(
        state
            .domain
            .device(&caller, &device_id)
            .await?
            .settings
            .into(),
    ))
}

/// Settings to change on a device: a typed tree of the values to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    pub changes: Tree,
}

/// Queues a change of a device's settings, sent at its next sync (soft error
/// `SYNC/PENDING_NEXT_HEARTBEAT`).
#[utoipa::path(put, path = "/devices/{device_id}/settings", tag = "devices",
    params(("device_id" = String, Path)), request_body = SettingsChange,
    responses((status = 200, body = Settings), Refusals))]
async fn queue_settings(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
    Json(body): Json<SettingsChange>,
) -> Reply<Settings> {
    let changes = model::params(&body.changes.0)?;
    let changed = state
        .domain
        .queue_settings(&caller, &device_id, &changes)
        .await?;
    let mut settings = Settings::from(changed.value);
    settings.error_list = model::soft_errors(&changed.notices);
    Ok(axum::Json(settings))
}

/// The policy a device gets (its group's effective policy), with the group each value comes from.
#[utoipa::path(get, path = "/devices/{device_id}/effective-policy", tag = "devices",
    params(("device_id" = String, Path), Paging),
    responses((status = 200, body = ListOf<Provenance>), Refusals))]
async fn device_policy(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Provenance>> {
    let page = paging.page()?;
    let device = state.domain.device(&caller, &device_id).await?.device;
    let list = provenance(
        state
            .domain
            .effective_policy(&caller, device.group_id)
            .await?,
    )?;
    Ok(axum::Json(ListOf::slice(list, page)))
}

/// What a device reported about itself (`null` fields before it did).
#[derive(Debug, Serialize, ToSchema)]
pub struct Reported {
    pub device_id: String,
    /// The stored fields (product, licence, device), flags as 0/1.
    #[schema(value_type = Option<Object>)]
    pub fields: Option<serde_json::Value>,
}

impl Reported {
    fn new(device_id: String, fields: Option<serde_json::Map<String, serde_json::Value>>) -> Self {
        Reported {
            device_id,
            fields: fields.map(|m| model::without_booleans(serde_json::Value::Object(m))),
        }
    }
}

/// The product, licence and device information a device last reported.
#[utoipa::path(get, path = "/devices/{device_id}/app-info", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Reported), Refusals))]
async fn app_info(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
) -> Reply<Reported> {
    let detail = state.domain.device(&caller, &device_id).await?;
    Ok(axum::Json(Reported::new(device_id, detail.app_info)))
}

/// The protection state a device last reported.
#[utoipa::path(get, path = "/devices/{device_id}/app-state", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Reported), Refusals))]
async fn app_state(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
) -> Reply<Reported> {
    let detail = state.domain.device(&caller, &device_id).await?;
    Ok(axum::Json(Reported::new(device_id, detail.app_state)))
}

/// Where a device's sync stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncState {
    pub device_id: String,
    /// Hex hashes the device last reported or was given (`null`: none yet).
    pub info_hash: Option<String>,
    pub state_hash: Option<String>,
    pub settings_hash: Option<String>,
    pub policy_hash: Option<String>,
    pub subscriptions_hash: Option<String>,
    /// 1 when settings changes wait for the device's next sync.
    pub settings_pending: Flag,
    /// 1 when the device was last given the policy its group has now; 0 while a change (of the
    /// policy, or a move) waits for its next sync.
    pub policy_current: Flag,
    /// The same for its event subscriptions.
    pub subscriptions_current: Flag,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync_at: Option<OffsetDateTime>,
    pub last_error: Option<SyncError>,
}

/// The hashes, last sync and last error of a device.
#[utoipa::path(get, path = "/devices/{device_id}/sync", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = SyncState), Refusals))]
async fn sync_state(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(device_id): Path<String>,
) -> Reply<SyncState> {
    let sync = state.domain.device_sync(&caller, &device_id).await?;
    let hex = |h: Option<Vec<u8>>| h.map(hex::encode);
    let known = sync.known;
    let device = Device::from(sync.device);
    Ok(axum::Json(SyncState {
        device_id,
        info_hash: hex(known.info_hash),
        state_hash: hex(known.state_hash),
        settings_hash: hex(known.settings_hash),
        policy_hash: hex(known.policy_hash),
        subscriptions_hash: hex(known.subs_hash),
        settings_pending: known.settings_pending.into(),
        policy_current: sync.policy_current.into(),
        subscriptions_current: sync.subscriptions_current.into(),
        last_seen: device.last_seen,
        last_sync_at: device.last_sync_at,
        last_error: device.last_error,
    }))
}
