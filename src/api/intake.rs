//! Seed 002's intake webhook on the admin port, at configurable paths (by default
//! `POST /api/Account` and `POST /api/OrchEvents`, so that a sender already set up for them works
//! unchanged): a login answering `{"Token"}`, and one event per call answered `{}` once stored.

use axum::extract::State;
use axum::http::request::Parts;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{self, Json};
use super::ApiState;

/// The `[intake]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// Refuse events without a valid intake token (401). Off only for senders that cannot log in.
    pub require_auth: bool,
    pub login_path: String,
    pub events_path: String,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            require_auth: true,
            login_path: "/api/Account".into(),
            events_path: "/api/OrchEvents".into(),
        }
    }
}

impl IntakeConfig {
    /// Paths must be absolute and stay clear of the REST API and its documentation.
    pub fn check(&self) -> Result<(), String> {
        for path in [&self.login_path, &self.events_path] {
            if !path.starts_with('/')
                || path.starts_with("/api/v1/")
                || path.starts_with("/api/docs")
                || path.contains(['{', '}', '*'])
            {
                return Err(format!(
                    "intake path {path:?}: an absolute path outside /api/v1 and /api/docs"
                ));
            }
        }
        if self.login_path == self.events_path {
            return Err("the intake's login and events paths must differ".into());
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
pub struct IntakeToken {
    #[serde(rename = "Token")]
    pub token: String,
}

pub fn routes(config: &IntakeConfig) -> Router<ApiState> {
    Router::new()
        .route(&config.login_path, post(login))
        .route(&config.events_path, post(event))
}

/// `{"UserName", "Password"}`, the names in any case.
async fn login(
    State(state): State<ApiState>,
    parts: Parts,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<axum::Json<IntakeToken>> {
    let field = |name: &str| {
        body.as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "send {{\"UserName\", \"Password\"}}: {name} is missing"
                ))
            })
    };
    let (user, password) = (field("UserName")?, field("Password")?);
    let token = state
        .domain
        .intake_login(user, password, extract::peer(&parts))
        .await?;
    Ok(axum::Json(IntakeToken { token }))
}

async fn event(
    State(state): State<ApiState>,
    parts: Parts,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let address = extract::peer(&parts);
    let caller = match extract::token(&parts) {
        Some(token) => Some(state.domain.verify_intake_token(&token, address).await?),
        None if state.intake.require_auth => {
            return Err(ApiError::unauthorized(
                "log in first and send the token as Authorization: Bearer",
            ))
        }
        None => None,
    };
    if let (Some(caller), Some(slot)) = (&caller, parts.extensions.get::<extract::Subject>()) {
        *slot.0.lock().unwrap() = caller.token.clone();
    }
    let event = crate::domain::intake::parse_event(&body)?;
    let address = address.map(|a| a.to_string()).unwrap_or_default();
    let stored = state
        .domain
        .receive_intake(caller.as_ref(), &event, &address)
        .await?;
    tracing::debug!(uid = %event.uid, stored, "intake event");
    Ok(axum::Json(serde_json::json!({})))
}
