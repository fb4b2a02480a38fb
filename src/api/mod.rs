//! The admin REST API under `/api/v1`, with seed 001's conventions: 200 for every success, a fatal
//! JSON body for anything else, soft errors in `error_list`, flags as 0/1, list envelopes, the
//! `api_access_token` cookie (or a Bearer token), 1 MiB bodies, 8 KiB headers and rate limits
//! answered 503. Every operation goes through the [`Domain`](crate::domain::Domain), so rights and
//! audit apply; this module only maps HTTP to it and its errors back, in [`error`].
//!
//! The OpenAPI 3.1 document is generated from the handlers (utoipa) and served at
//! `/api/v1/openapi.json`, with an interactive page at `/api/docs` served from the binary.

pub mod error;
pub mod extract;
pub mod intake;
pub mod model;
mod routes;
pub mod ws;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use governor::clock::Clock;
use http_body_util::BodyExt;
use tower::ServiceExt;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::domain::Domain;
use crate::server::listener::{Answer, Serve};
use error::ApiError;
use extract::Subject;

/// Largest request head (seed 001: 8 KB, taken as KiB): more is 431 with a fatal body.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub domain: Arc<Domain>,
    pub limits: Arc<RateLimits>,
    /// Largest update file an upload may carry.
    pub max_upload_bytes: u64,
    /// Seed 002's intake webhook.
    pub intake: Arc<intake::IntakeConfig>,
    /// The export sinks' last successes and errors.
    pub sinks: Arc<crate::export::sink::Sinks>,
    /// The live API's sessions (none when it is turned off).
    pub live: Option<Arc<ws::hub::Hub>>,
}

/// Requests per second, per token subject and over all (seed 001 answers excess with 503).
pub struct RateLimits {
    per_subject: Option<governor::DefaultKeyedRateLimiter<String>>,
    overall: Option<governor::DefaultDirectRateLimiter>,
}

impl RateLimits {
    /// 0 means no limit.
    pub fn new(per_subject: u32, overall: u32) -> RateLimits {
        RateLimits {
            per_subject: NonZeroU32::new(per_subject)
                .map(|n| governor::RateLimiter::keyed(governor::Quota::per_second(n))),
            overall: NonZeroU32::new(overall)
                .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n))),
        }
    }

    fn refused(wait: Duration) -> ApiError {
        ApiError::unavailable("the rate limit was exceeded: slow down", wait)
    }

    pub fn check_overall(&self) -> Result<(), ApiError> {
        let Some(limiter) = &self.overall else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| {
            RateLimits::refused(
                not_until.wait_time_from(governor::clock::DefaultClock::default().now()),
            )
        })
    }

    pub fn check_subject(&self, subject: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_subject else {
            return Ok(());
        };
        if limiter.len() >= 100_000 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&subject.to_string())
            .map_err(|not_until| {
                RateLimits::refused(
                    not_until.wait_time_from(governor::clock::DefaultClock::default().now()),
                )
            })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mobile-admin API",
        description = "Administration of the mobile-admin server. Conventions: success is always \
            200; any other status means nothing was done and carries \
            `{\"statusCode\", \"error\", \"message\"}`. A 200 may carry soft errors in \
            `error_list` when the change was made but is not complete. Flags are the integers 0 \
            and 1. Lists answer `{list, total_count, max_count, offset, limit, count}`. \
            Authenticate with the cookie `api_access_token` (set by `POST /api/v1/login`) or \
            `Authorization: Bearer <token>`."
    ),
    components(schemas(error::Fatal)),
    modifiers(&SecuritySchemes),
    security(("cookie" = []), ("bearer" = [])),
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(extract::TOKEN_COOKIE))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document and the router of every route.
pub fn router(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", routes::routes())
        .split_for_parts();
    let docs = utoipa_swagger_ui::SwaggerUi::new("/api/docs")
        .url("/api/v1/openapi.json", openapi.clone())
        .config(
            utoipa_swagger_ui::Config::default()
                .try_it_out_enabled(true)
                .with_credentials(true)
                .persist_authorization(true),
        );
    let router = api
        .merge(intake::routes(&state.intake))
        .route("/api/v1/ws", axum::routing::get(ws::upgrade))
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .merge(docs)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            conventions,
        ))
        .with_state(state);
    (router, openapi)
}

/// Alive: the process answers (no token needed).
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Ready: the database answers and holds the schema this build expects (no token needed); else
/// 503 with the fatal body and `Retry-After`.
async fn readyz(State(state): State<ApiState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    match state.domain.readiness().await {
        Ok(version) => Ok(axum::Json(
            serde_json::json!({"status": "ready", "schema_version": version}),
        )),
        Err(e) => Err(ApiError::unavailable(e.to_string(), Duration::from_secs(5))),
    }
}

/// What applies to every request: the header limit, the overall rate, fatal bodies for every
/// refusal (axum's own included), and one log line naming the token's subject.
async fn conventions(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let subject = Subject::default();
    req.extensions_mut().insert(subject.clone());
    let response = if head_bytes(&req) > MAX_HEADER_BYTES {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request head is larger than {MAX_HEADER_BYTES} bytes"),
        )
        .into_response()
    } else if let Err(refused) = state.limits.check_overall() {
        refused.into_response()
    } else {
        next.run(req).await
    };
    let response = fatal_bodies(response).await;
    let subject = subject.0.lock().unwrap().clone();
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        subject = subject.as_deref().unwrap_or("-"),
        ms = started.elapsed().as_millis() as u64,
        "admin request"
    );
    response
}

/// Bytes of the request line and headers, as sent.
fn head_bytes(req: &Request) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + line
}

/// Any refusal that is not already a fatal JSON body (axum's 405, a panic's 500) becomes one, its
/// headers (`Allow`, `Retry-After`) kept.
async fn fatal_bodies(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status == StatusCode::OK || json || !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match body.collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_string(),
        Err(_) => String::new(),
    };
    let mut error = ApiError::new(status, text);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        error.message = "this route does not take that method".into();
    }
    let mut fatal = error.into_response();
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            fatal.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fatal
}

/// The admin port's service: the router, with the peer's address for the handlers.
pub struct ApiService {
    router: Router,
}

impl ApiService {
    pub fn new(state: ApiState) -> ApiService {
        ApiService {
            router: router(state).0,
        }
    }
}

impl Serve for ApiService {
    type Body = Body;
    type Error = axum::Error;

    fn serve(&self, req: Request<hyper::body::Incoming>, peer: SocketAddr) -> Answer<Body> {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = self.router.clone();
        Box::pin(async move {
            match router.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
    }
}
