//! API tokens (seed 001): listed, created with a lifetime (the JWT shown once), revoked, and
//! deleted once expired.

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Refusals, Reply};
use crate::api::error::ApiError;
use crate::api::extract::{Auth, Flag, Json, Paging, Query};
use crate::api::model::{Done, IssuedToken, ListOf, Token};
use crate::api::ApiState;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(update_token, delete_token))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenFilter {
    /// Whose tokens (needs Read on FUNC_AREA_ADMINS for another account's); default: the caller's.
    pub account: Option<String>,
}

/// The tokens of an account, API and session tokens alike. `max_count` is the cap of API tokens,
/// active and revoked, an account may hold.
#[utoipa::path(get, path = "/tokens", tag = "tokens", params(TokenFilter, Paging),
    responses((status = 200, body = ListOf<Token>), Refusals))]
async fn list_tokens(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(filter): Query<TokenFilter>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Token>> {
    let page = paging.page()?;
    let now = state.domain.clock().now();
    let tokens = state
        .domain
        .tokens(&caller, filter.account.as_deref())
        .await?
        .into_iter()
        .map(|t| Token::new(t, now))
        .collect();
    Ok(axum::Json(
        ListOf::slice(tokens, page).with_max(state.domain.config().max_tokens_per_account),
    ))
}

/// A new API token's name and lifetime.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for, 1 to 100 characters.
    pub name: String,
    /// Lifetime in days, 1 to the configured maximum (default: the configured default).
    pub days: Option<u64>,
}

/// Creates an API token for the caller's account and returns it, this once. First deletes the
/// account's expired tokens; refused (400) while the account holds its cap of active and revoked
/// tokens.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 200, body = IssuedToken), Refusals))]
async fn create_token(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Json(body): Json<NewToken>,
) -> Reply<IssuedToken> {
    let issued = state
        .domain
        .create_token(&caller, &body.name, body.days)
        .await?
        .value;
    let now = state.domain.clock().now();
    Ok(axum::Json(IssuedToken {
        record: Token::new(issued.record, now),
        token: issued.token,
    }))
}

/// A change of a token: only revoking it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenChange {
    /// 1: revoke the token now (it answers 401 from then on). 0 is refused: a revoked token stays
    /// revoked.
    pub revoked: Flag,
}

/// Revokes a token: the caller's own, or any with Write on FUNC_AREA_ADMINS.
#[utoipa::path(put, path = "/tokens/{id}", tag = "tokens", params(("id" = i64, Path)),
    request_body = TokenChange, responses((status = 200, body = Token), Refusals))]
async fn update_token(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
    Json(body): Json<TokenChange>,
) -> Reply<Token> {
    if !body.revoked.is_set() {
        return Err(ApiError::bad_request(
            "a revoked token cannot be restored: create a new one",
        ));
    }
    let changed = state.domain.revoke_token(&caller, id).await?;
    Ok(axum::Json(Token::new(
        changed.value,
        state.domain.clock().now(),
    )))
}

/// Deletes a token, revoked or not, once it has expired (before that, 400: revoke it instead).
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(("id" = i64, Path)),
    responses((status = 200, body = Done), Refusals))]
async fn delete_token(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
) -> Reply<Done> {
    let audit = state.domain.delete_token(&caller, id).await?;
    Ok(axum::Json(Done {
        audit_id: Some(audit.id),
        error_list: None,
    }))
}
