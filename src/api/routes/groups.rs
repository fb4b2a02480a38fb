//! Groups of the tree, their policy rows, their effective policy with provenance, and their event
//! subscriptions.

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Refusals, Reply};
use crate::api::error::ApiError;
use crate::api::extract::{Auth, Flag, Json, Paging, Query};
use crate::api::model::{self, Done, Group, ListOf, PolicyRow, Provenance, Subscription, Typed};
use crate::api::ApiState;
use crate::domain::policy::PolicyInput;
use crate::sync::policy::SubscriptionRow;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, update_group, delete_group))
        .routes(routes!(children))
        .routes(routes!(list_policy, create_policy))
        .routes(routes!(get_policy, update_policy, delete_policy))
        .routes(routes!(effective_policy))
        .routes(routes!(list_subscriptions, add_subscription))
        .routes(routes!(remove_subscription))
}

/// Every group, the tree in `parent_id`s (the root's is `null`), parents before children.
#[utoipa::path(get, path = "/groups", tag = "groups", params(Paging),
    responses((status = 200, body = ListOf<Group>), Refusals))]
async fn list_groups(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Group>> {
    let page = paging.page()?;
    let groups = state.domain.groups(&caller).await?;
    Ok(axum::Json(ListOf::slice(
        groups.into_iter().map(Group::from).collect(),
        page,
    )))
}

/// A new group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub parent_id: i64,
    /// 1 to 255 characters, unique among its siblings.
    pub name: String,
}

/// Creates a group under `parent_id`.
#[utoipa::path(post, path = "/groups", tag = "groups", request_body = NewGroup,
    responses((status = 200, body = Group), Refusals))]
async fn create_group(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Json(body): Json<NewGroup>,
) -> Reply<Group> {
    let changed = state
        .domain
        .create_group(&caller, body.parent_id, &body.name)
        .await?;
    Ok(axum::Json(changed.value.into()))
}

/// One group.
#[utoipa::path(get, path = "/groups/{id}", tag = "groups", params(("id" = i64, Path)),
    responses((status = 200, body = Group), Refusals))]
async fn get_group(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
) -> Reply<Group> {
    Ok(axum::Json(state.domain.group(&caller, id).await?.into()))
}

/// A change of a group: a new name, a new parent, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupChange {
    pub name: Option<String>,
    pub parent_id: Option<i64>,
}

/// Renames or moves a group (not under itself or its own descendants).
#[utoipa::path(put, path = "/groups/{id}", tag = "groups", params(("id" = i64, Path)),
    request_body = GroupChange, responses((status = 200, body = Group), Refusals))]
async fn update_group(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
    Json(body): Json<GroupChange>,
) -> Reply<Group> {
    let changed = state
        .domain
        .change_group(&caller, id, body.name.as_deref(), body.parent_id)
        .await?;
    Ok(axum::Json(changed.into()))
}

/// Deletes a group with no devices and no child groups.
#[utoipa::path(delete, path = "/groups/{id}", tag = "groups", params(("id" = i64, Path)),
    responses((status = 200, body = Done), Refusals))]
async fn delete_group(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
) -> Reply<Done> {
    let audit = state.domain.delete_group(&caller, id).await?;
    Ok(axum::Json(Done {
        audit_id: Some(audit.id),
        error_list: None,
    }))
}

/// The groups directly under a group.
#[utoipa::path(get, path = "/groups/{id}/children", tag = "groups", params(("id" = i64, Path), Paging),
    responses((status = 200, body = ListOf<Group>), Refusals))]
async fn children(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Group>> {
    let page = paging.page()?;
    state.domain.group(&caller, id).await?;
    let groups = state.domain.groups(&caller).await?;
    let children = groups
        .into_iter()
        .filter(|g| g.parent_id == Some(id) && g.id != id)
        .map(Group::from)
        .collect();
    Ok(axum::Json(ListOf::slice(children, page)))
}

/// A policy row as given: a path, a typed value and whether it is locked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyValue {
    /// `/`-separated path of the setting, such as `Antivirus/ScanLevel`.
    pub path: String,
    pub value: Typed,
    /// 1: devices get the value and cannot change it; 0: stored only.
    pub locked: Flag,
}

impl PolicyValue {
    fn input(&self) -> Result<PolicyInput, ApiError> {
        Ok(PolicyInput {
            path: self.path.clone(),
            value: self.value.to_value()?,
            locked: self.locked.is_set(),
        })
    }
}

/// The policy rows of a group.
#[utoipa::path(get, path = "/groups/{id}/policy", tag = "policy", params(("id" = i64, Path), Paging),
    responses((status = 200, body = ListOf<PolicyRow>), Refusals))]
async fn list_policy(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<PolicyRow>> {
    let page = paging.page()?;
    let rows = state
        .domain
        .policy_rows(&caller, id)
        .await?
        .into_iter()
        .map(PolicyRow::new)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(ListOf::slice(rows, page)))
}

/// Adds a policy row to a group. Soft errors: `SYNC/PENDING_NEXT_HEARTBEAT` (devices get it at
/// their next sync), `POLICY/SHADOWED_BY_ANCESTOR_LOCK` (stored, but an ancestor's lock wins).
#[utoipa::path(post, path = "/groups/{id}/policy", tag = "policy", params(("id" = i64, Path)),
    request_body = PolicyValue, responses((status = 200, body = PolicyRow), Refusals))]
async fn create_policy(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
    Json(body): Json<PolicyValue>,
) -> Reply<PolicyRow> {
    let changed = state.domain.set_policy(&caller, id, &body.input()?).await?;
    let mut row = PolicyRow::new(changed.value)?;
    row.error_list = model::soft_errors(&changed.notices);
    Ok(axum::Json(row))
}

/// One policy row.
#[utoipa::path(get, path = "/groups/{id}/policy/{row_id}", tag = "policy",
    params(("id" = i64, Path), ("row_id" = i64, Path)),
    responses((status = 200, body = PolicyRow), Refusals))]
async fn get_policy(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path((id, row_id)): Path<(i64, i64)>,
) -> Reply<PolicyRow> {
    let row = state
        .domain
        .policy_rows(&caller, id)
        .await?
        .into_iter()
        .find(|r| r.id == row_id)
        .ok_or_else(|| ApiError::not_found(format!("group {id} has no policy row {row_id}")))?;
    Ok(axum::Json(PolicyRow::new(row)?))
}

/// Replaces a policy row's path, value and lock.
#[utoipa::path(put, path = "/groups/{id}/policy/{row_id}", tag = "policy",
    params(("id" = i64, Path), ("row_id" = i64, Path)), request_body = PolicyValue,
    responses((status = 200, body = PolicyRow), Refusals))]
async fn update_policy(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path((id, row_id)): Path<(i64, i64)>,
    Json(body): Json<PolicyValue>,
) -> Reply<PolicyRow> {
    let changed = state
        .domain
        .update_policy(&caller, id, row_id, &body.input()?)
        .await?;
    let mut row = PolicyRow::new(changed.value)?;
    row.error_list = model::soft_errors(&changed.notices);
    Ok(axum::Json(row))
}

/// Deletes a policy row.
#[utoipa::path(delete, path = "/groups/{id}/policy/{row_id}", tag = "policy",
    params(("id" = i64, Path), ("row_id" = i64, Path)),
    responses((status = 200, body = Done), Refusals))]
async fn delete_policy(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path((id, row_id)): Path<(i64, i64)>,
) -> Reply<Done> {
    let audit = state.domain.delete_policy(&caller, id, row_id).await?;
    Ok(axum::Json(Done {
        audit_id: Some(audit.id),
        error_list: None,
    }))
}

/// The policy the devices of a group get, path by path, with the group each value comes from.
#[utoipa::path(get, path = "/groups/{id}/effective-policy", tag = "policy",
    params(("id" = i64, Path), Paging),
    responses((status = 200, body = ListOf<Provenance>), Refusals))]
async fn effective_policy(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Provenance>> {
    let page = paging.page()?;
    let list = provenance(state.domain.effective_policy(&caller, id).await?)?;
    Ok(axum::Json(ListOf::slice(list, page)))
}

/// The API form of an effective policy.
pub fn provenance(rows: Vec<crate::sync::policy::Provenance>) -> Result<Vec<Provenance>, ApiError> {
    rows.into_iter()
        .map(|p| {
            let value = crate::sync::policy::decode_row_value(&p.value_type, &p.value)
                .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e))?;
            Ok(Provenance {
                path: p.path,
                value: Typed::from_value(&value),
                locked: p.locked.into(),
                group_id: p.group_id,
                applied: p.applied.into(),
                shadowed: p.shadowed,
            })
        })
        .collect()
}

/// The event subscriptions of a group's own (its devices also get their ancestors').
#[utoipa::path(get, path = "/groups/{id}/subscriptions", tag = "policy",
    params(("id" = i64, Path), Paging),
    responses((status = 200, body = ListOf<Subscription>), Refusals))]
async fn list_subscriptions(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Subscription>> {
    let page = paging.page()?;
    let rows = state
        .domain
        .subscriptions(&caller, id)
        .await?
        .into_iter()
        .map(|r| Subscription {
            group_id: r.group_id,
            severity: r.severity,
            event_type: r.event_type,
        })
        .collect();
    Ok(axum::Json(ListOf::slice(rows, page)))
}

/// An event type at a severity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// 1 (info) to 4 (critical).
    #[schema(minimum = 1, maximum = 4)]
    pub severity: i32,
    pub event_type: String,
}

/// Subscribes the devices of a group to an event type at a severity (soft error
/// `SYNC/PENDING_NEXT_HEARTBEAT`); `audit_id` is `null` when it was already subscribed.
#[utoipa::path(post, path = "/groups/{id}/subscriptions", tag = "policy",
    params(("id" = i64, Path)), request_body = NewSubscription,
    responses((status = 200, body = Done), Refusals))]
async fn add_subscription(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
    Json(body): Json<NewSubscription>,
) -> Reply<Done> {
    subscription(state, caller, id, body.severity, body.event_type, true).await
}

/// Unsubscribes the devices of a group from an event type at a severity.
#[utoipa::path(delete, path = "/groups/{id}/subscriptions/{severity}/{event_type}", tag = "policy",
    params(("id" = i64, Path), ("severity" = i32, Path), ("event_type" = String, Path)),
    responses((status = 200, body = Done), Refusals))]
async fn remove_subscription(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path((id, severity, event_type)): Path<(i64, i32, String)>,
) -> Reply<Done> {
    subscription(state, caller, id, severity, event_type, false).await
}

async fn subscription(
    state: ApiState,
    caller: crate::domain::Caller,
    group_id: i64,
    severity: i32,
    event_type: String,
    subscribed: bool,
) -> Reply<Done> {
    let row = SubscriptionRow {
        group_id,
        severity,
        event_type,
    };
    let audit = state
        .domain
        .set_subscription(&caller, &row, subscribed)
        .await?;
    let notices = if audit.is_some() {
        vec![crate::domain::Notice::PENDING_NEXT_HEARTBEAT]
    } else {
        vec![]
    };
    Ok(axum::Json(Done {
        audit_id: audit.map(|a| a.id),
        error_list: model::soft_errors(&notices),
    }))
}
