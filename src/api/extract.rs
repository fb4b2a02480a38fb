//! What a handler takes from a request, with seed 001's rules: the caller from the token (cookie
//! `api_access_token` or `Authorization: Bearer`), JSON bodies of at most 1 MiB, query strings with
//! repeated keys, flags that are the integers 0 and 1, and list paging.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult};
use super::ApiState;
use crate::domain::Caller;
use crate::store::PageRequest;

/// The cookie seed 001 reads the token from.
pub const TOKEN_COOKIE: &str = "api_access_token";
/// Largest JSON body (seed 001: 1 MB, taken as MiB).
pub const MAX_JSON_BYTES: usize = 1024 * 1024;
/// Default and largest page of a list.
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1000;

/// Who made a request, filled in once the token is checked, for the request's log line.
#[derive(Debug, Clone, Default)]
pub struct Subject(pub Arc<Mutex<Option<String>>>);

/// The source address of the request.
pub fn peer(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The token a request carries, from `Authorization: Bearer` or the `api_access_token` cookie.
pub fn token(parts: &Parts) -> Option<String> {
    token_in(&parts.headers)
}

/// The token in request headers (see [`token`]).
pub fn token_in(headers: &axum::http::HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, token) = text.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// The authenticated caller. A missing, invalid, expired or revoked token is 401; a caller over
/// its request rate is 503.
pub struct Auth(pub Caller);

impl FromRequestParts<ApiState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Auth> {
        let token = token(parts).ok_or_else(|| {
            ApiError::unauthorized(format!(
                "log in: send a token as the cookie {TOKEN_COOKIE} or as Authorization: Bearer"
            ))
        })?;
        let caller = state.domain.verify_token(&token, peer(parts)).await?;
        if let (Some(subject), Some(slot)) = (&caller.token, parts.extensions.get::<Subject>()) {
            *slot.0.lock().unwrap() = Some(subject.clone());
        }
        state
            .limits
            .check_subject(caller.token.as_deref().unwrap_or(""))?;
        Ok(Auth(caller))
    }
}

/// A JSON request body: `Content-Type: application/json` (else 415), at most 1 MiB (else 413), and
/// matching `T` (else 400).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> ApiResult<Json<T>> {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = read_body(req, MAX_JSON_BYTES).await?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Reads a whole body of at most `limit` bytes (413 beyond).
pub async fn read_body(req: Request, limit: usize) -> ApiResult<bytes::Bytes> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!("unreadable body: {e}"))),
    }
}

/// A query string, with repeated keys for lists (`?group_id=3&group_id=6`); anything that does not
/// fit `T` is 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Query<T>> {
        let query = parts.uri.query().unwrap_or("");
        serde_html_form::from_str(query)
            .map(Query)
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
    }
}

/// A flag: the integer 0 or 1 (seed 001 never uses JSON booleans). `true`, `false`, `"1"` or 2 in a
/// JSON body is 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(value_type = u8, minimum = 0, maximum = 1, example = 1)]
pub struct Flag(u8);

impl Flag {
    pub fn is_set(self) -> bool {
        self.0 == 1
    }
}

impl From<bool> for Flag {
    fn from(b: bool) -> Flag {
        Flag(u8::from(b))
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Flag;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the integer 0 or 1")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Flag, E> {
                match v {
                    0 | 1 => Ok(Flag(v as u8)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Flag, E> {
                match v {
                    0 | 1 => Ok(Flag(v as u8)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
        }
        d.deserialize_u64(Visitor)
    }
}

/// A flag in a query string: `0` or `1`.
pub fn query_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None => Ok(None),
        Some("0") => Ok(Some(false)),
        Some("1") => Ok(Some(true)),
        Some(other) => Err(serde::de::Error::custom(format!(
            "a flag is 0 or 1, not {other:?}"
        ))),
    }
}

/// `offset` and `limit` of a list (default 100, at most 1000).
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Items to skip.
    #[param(minimum = 0)]
    pub offset: Option<u64>,
    /// Items to return, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

impl Paging {
    pub fn page(self) -> ApiResult<PageRequest> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit is 1 to {MAX_LIMIT}, not {limit}"
            )));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > i64::MAX as u64 {
            return Err(ApiError::bad_request("offset is too large"));
        }
        Ok(PageRequest { offset, limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_zero_or_one_and_nothing_else() {
        assert_eq!(serde_json::from_str::<Flag>("1").unwrap(), Flag(1));
        assert_eq!(serde_json::from_str::<Flag>("0").unwrap(), Flag(0));
        for bad in ["true", "false", "2", "-1", "\"1\"", "1.0", "null"] {
            assert!(serde_json::from_str::<Flag>(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&Flag::from(true)).unwrap(), "1");
    }

    #[test]
    fn paging_has_a_default_and_a_maximum() {
        let p = |offset, limit| Paging { offset, limit }.page();
        assert_eq!(p(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(p(Some(5), Some(1000)).unwrap().offset, 5);
        assert!(p(None, Some(1001)).is_err());
        assert!(p(None, Some(0)).is_err());
    }
}
