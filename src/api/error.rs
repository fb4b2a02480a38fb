//! The API's fatal errors (seed 001): any status but 200, with the body
//! `{"statusCode", "error", "message"}`, and the one mapping from the domain's errors.

use std::time::Duration;

use axum::http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::DomainError;

/// The body of every non-200 answer. Nothing was done.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"statusCode": 400, "error": "Bad Request", "message": "limit is 1 to 1000"}))]
pub struct Fatal {
    /// The HTTP status.
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The status's reason phrase.
    pub error: String,
    /// Why.
    pub message: String,
}

/// A refused request: a status other than 200 and why.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (503).
    pub retry_after: Option<Duration>,
    /// Sent as `Allow` (405).
    pub allow: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    pub fn fatal(&self) -> Fatal {
        Fatal {
            status_code: self.status.as_u16(),
            error: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            message: if self.message.is_empty() {
                self.status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_string()
            } else {
                self.message.clone()
            },
        }
    }
}

/// The one place where the domain's errors become statuses.
impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        let message = e.to_string();
        match e {
            DomainError::Unauthenticated(_) => ApiError::unauthorized(message),
            DomainError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, message),
            DomainError::NotFound(_) => ApiError::not_found(message),
            // Seed 001 has no 409: a conflict (a duplicate, a token deleted before it expired, the
            // token cap) is input the command cannot take.
            DomainError::Invalid(_) | DomainError::Missing(_) | DomainError::Conflict(_) => {
                ApiError::bad_request(message)
            }
            DomainError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            DomainError::TryLater { retry_after, .. } => {
                ApiError::unavailable(message, retry_after)
            }
            DomainError::Unavailable(_) => ApiError::unavailable(message, Duration::from_secs(5)),
            DomainError::Internal(_) => {
                tracing::error!(error = %message, "internal error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.fatal()).expect("a fatal body serializes");
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(ALLOW, allow);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_error_has_its_status_and_a_message() {
        let cases = [
            (DomainError::Unauthenticated("x".into()), 401),
            (DomainError::Forbidden("x".into()), 403),
            (DomainError::NotFound("x".into()), 404),
            (DomainError::Invalid("x".into()), 400),
            (DomainError::Conflict("x".into()), 400),
            (DomainError::Missing("x".into()), 400),
            (
                DomainError::TryLater {
                    message: "x".into(),
                    retry_after: Duration::from_secs(3),
                },
                503,
            ),
            (DomainError::Unavailable("x".into()), 503),
            (DomainError::TooLarge("x".into()), 413),
            (DomainError::Internal("secret detail".into()), 500),
        ];
        for (error, status) in cases {
            let api = ApiError::from(error);
            let fatal = api.fatal();
            assert_eq!(fatal.status_code, status);
            assert_eq!(api.status.as_u16(), status);
            assert!(!fatal.message.is_empty());
            assert!(!fatal.message.contains("secret detail"));
        }
    }
}
