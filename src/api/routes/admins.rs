//! Admin accounts: listed, created with a role and a password, their password changed, disabled
//! or enabled. Addressed by name.

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Refusals, Reply};
use crate::api::error::ApiError;
use crate::api::extract::{Auth, Flag, Json, Paging, Query};
use crate::api::model::{Admin, ListOf};
use crate::api::ApiState;
use crate::domain::Role;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_admins, create_admin))
        .routes(routes!(get_admin, update_admin))
}

/// Every account.
#[utoipa::path(get, path = "/admins", tag = "admins", params(Paging),
    responses((status = 200, body = ListOf<Admin>), Refusals))]
async fn list_admins(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Admin>> {
    let page = paging.page()?;
    let accounts = state.domain.accounts(&caller).await?;
    Ok(axum::Json(ListOf::slice(
        accounts.into_iter().map(Admin::from).collect(),
        page,
    )))
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdmin {
    pub name: String,
    /// `administrator`, `operator`, `auditor` or `integration`.
    pub role: String,
    /// At least 12 characters.
    pub password: String,
}

fn role(name: &str) -> Result<Role, ApiError> {
    Role::parse(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown role {name:?}: administrator, operator, auditor or integration"
        ))
    })
}

/// Creates an account (Write on FUNC_AREA_ADMINS).
#[utoipa::path(post, path = "/admins", tag = "admins", request_body = NewAdmin,
    responses((status = 200, body = Admin), Refusals))]
async fn create_admin(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Json(body): Json<NewAdmin>,
) -> Reply<Admin> {
    let role = role(&body.role)?;
    let account = state
        .domain
        .create_account(&caller, &body.name, role, &body.password)
        .await?;
    Ok(axum::Json(account.into()))
}

/// One account.
#[utoipa::path(get, path = "/admins/{name}", tag = "admins", params(("name" = String, Path)),
    responses((status = 200, body = Admin), Refusals))]
async fn get_admin(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
) -> Reply<Admin> {
    Ok(axum::Json(
        state.domain.account(&caller, &name).await?.into(),
    ))
}

/// A change of an account; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminChange {
    /// A new password (one's own, or anyone's with Write on FUNC_AREA_ADMINS).
    pub password: Option<String>,
    /// 1 disables the account (it cannot log in, its tokens stop working); 0 enables it.
    pub disabled: Option<Flag>,
}

/// Changes an account's password, or disables or enables it.
#[utoipa::path(put, path = "/admins/{name}", tag = "admins", params(("name" = String, Path)),
    request_body = AdminChange, responses((status = 200, body = Admin), Refusals))]
async fn update_admin(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    Json(body): Json<AdminChange>,
) -> Reply<Admin> {
    let account = state
        .domain
        .change_account(
            &caller,
            &name,
            body.password.as_deref(),
            body.disabled.map(Flag::is_set),
        )
        .await?;
    Ok(axum::Json(account.into()))
}
