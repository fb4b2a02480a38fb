//! Logging in and out, and the server's health (no token needed for either login or health).

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Refusals, Reply};
use crate::api::error::ApiResult;
use crate::api::extract::{self, Json, TOKEN_COOKIE};
use crate::api::model::{IssuedToken, Token};
use crate::api::ApiState;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(health))
}

/// An account's name and password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub name: String,
    pub password: String,
}

fn cookie(value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{TOKEN_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .expect("a JWT is a valid header value")
}

/// Logs in with a password: sets the cookie `api_access_token` to a short-lived session token and
/// returns it. Failed logins are throttled (503 with Retry-After).
#[utoipa::path(post, path = "/login", tag = "session", request_body = Login, security(()),
    responses((status = 200, body = IssuedToken), Refusals))]
async fn login(
    State(state): State<ApiState>,
    parts: Parts,
    Json(body): Json<Login>,
) -> ApiResult<Response> {
    let (_, issued) = state
        .domain
        .login(&body.name, &body.password, extract::peer(&parts))
        .await?;
    let now = state.domain.clock().now();
    let max_age = (issued.record.expires_at - now).whole_seconds().max(0);
    let header = cookie(&issued.token, max_age);
    let body = IssuedToken {
        record: Token::new(issued.record, now),
        token: issued.token,
    };
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(SET_COOKIE, header);
    Ok(response)
}

/// Whether a logout ended a session token.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedOut {
    /// 1 when the session token of this call was revoked; API tokens are left alone.
    pub revoked: crate::api::extract::Flag,
}

/// Logs out: revokes the session token the call came with (an API token is left alone: revoke it
/// with `PUT /tokens/{id}`) and clears the cookie.
#[utoipa::path(post, path = "/logout", tag = "session",
    responses((status = 200, body = LoggedOut), Refusals))]
async fn logout(
    State(state): State<ApiState>,
    extract::Auth(caller): extract::Auth,
) -> ApiResult<Response> {
    let revoked = state.domain.end_session(&caller).await?;
    let mut response = axum::Json(LoggedOut {
        revoked: revoked.into(),
    })
    .into_response();
    response.headers_mut().insert(SET_COOKIE, cookie("", 0));
    Ok(response)
}

/// The server's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when the database cannot be reached (then the status is 503).
    pub status: String,
    /// The database schema's version.
    pub schema_version: i64,
    pub version: String,
}

/// Health: 200 when the database answers, 503 otherwise. No token needed.
#[utoipa::path(get, path = "/health", tag = "session", security(()),
    responses((status = 200, body = Health), Refusals))]
async fn health(State(state): State<ApiState>) -> Reply<Health> {
    let schema_version = state.domain.health().await?;
    Ok(axum::Json(Health {
        status: "ok".into(),
        schema_version,
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}
