//! The event intake of seed 002: an account with Write on FUNC_AREA_EVENTS (the `integration`
//! role) logs in for a short-lived token of the intake's own audience, then sends events one at a
//! time; each is stored once per `Id`, and only then acknowledged. The rules of Table 1 (property
//! names in any case, nullable fields, `Event` as a number or a name, `EventType` 1–4, ISO 8601
//! times with no offset meaning UTC) are here; the surface only maps HTTP.

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::rights::{Access, Caller, FuncArea};
use super::tokens::Claims;
use super::{Domain, DomainError, Result};
use crate::store::{IntakeEvent, IntakeRecord, Page, PageRequest};

/// The audience of intake tokens: they open the intake, and nothing else.
pub const INTAKE_AUDIENCE: &str = "mobile-admin-intake";

/// `EventType` names of Table 2, by code.
const EVENT_TYPES: [&str; 4] = ["Info", "Error", "SecurityIncident", "Correction"];

/// The name of `EventType` `code` (1 Info, 2 Error, 3 SecurityIncident, 4 Correction).
pub fn event_type_name(code: i64) -> Option<&'static str> {
    usize::try_from(code - 1)
        .ok()
        .and_then(|i| EVENT_TYPES.get(i).copied())
}

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::Invalid(message.into())
}

/// A string field: absent or null is `None`; another JSON type is refused. Control characters are
/// escaped, as in device text.
fn text(fields: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match fields.get(&name.to_ascii_lowercase()) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(
            crate::text::escape_controls(s).unwrap_or_else(|| s.clone()),
        )),
        Some(other) => Err(invalid(format!("{name} is a string or null, not {other}"))),
    }
}

/// ISO 8601 / RFC 3339 with up to 7 fractional digits; without an offset, UTC. Kept to the
/// microsecond, what both databases store.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let micro = |t: OffsetDateTime| t.replace_nanosecond(t.nanosecond() / 1000 * 1000).ok();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return micro(t);
    }
    let local = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(text, &local)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
        .and_then(micro)
}

fn timestamp(fields: &Map<String, Value>, name: &str) -> Result<Option<OffsetDateTime>> {
    match text(fields, name)? {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => parse_time(&t).map(Some).ok_or_else(|| {
            invalid(format!(
                "{name} is an ISO 8601 date and time (such as 2026-12-05T10:00:00.1234567Z), not {t:?}"
            ))
        }),
    }
}

/// Reads a Table 1 object. Only `Id` is required; unknown properties are ignored.
pub fn parse_event(body: &Value) -> Result<IntakeEvent> {
    let Value::Object(raw) = body else {
        return Err(invalid("send one event: a JSON object"));
    };
    let fields: Map<String, Value> = raw
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let id = text(&fields, "Id")?.ok_or_else(|| invalid("Id is required"))?;
    let uid = uuid::Uuid::parse_str(&id)
        .map_err(|_| invalid(format!("Id is a GUID, not {id:?}")))?
        .hyphenated()
        .to_string();
    let (event_code, event_name) = match fields.get("event") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Number(n)) => (
            Some(
                n.as_i64()
                    .ok_or_else(|| invalid(format!("Event is an integer code, not {n}")))?,
            ),
            None,
        ),
        Some(Value::String(name)) => (None, text(&fields, "Event")?.filter(|_| !name.is_empty())),
        Some(other) => {
            return Err(invalid(format!(
                "Event is a code, a name or null, not {other}"
            )))
        }
    };
    let event_type = match fields.get("eventtype") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(code @ 1..=4) => Some(code),
            _ => return Err(invalid(format!("EventType is 1 to 4 or null, not {n}"))),
        },
        Some(Value::String(name)) => Some(
            EVENT_TYPES
                .iter()
                .position(|t| t.eq_ignore_ascii_case(name))
                .map(|i| i as i64 + 1)
                .ok_or_else(|| {
                    invalid(format!(
                        "EventType is Info, Error, SecurityIncident or Correction, not {name:?}"
                    ))
                })?,
        ),
        Some(other) => return Err(invalid(format!("EventType is 1 to 4 or null, not {other}"))),
    };
    Ok(IntakeEvent {
        uid,
        event_code,
        event_name,
        entity_id: text(&fields, "EntityId")?,
        user_id: text(&fields, "UserId")?,
        orch_timestamp_utc: timestamp(&fields, "OrchTimestampUtc")?,
        operation_key: text(&fields, "OperationKey")?,
        signature: text(&fields, "Signature")?,
        worker_admin_name: text(&fields, "WorkerAdminName")?,
        text: text(&fields, "Text")?,
        event_type,
        ip: text(&fields, "IP")?,
        tenant_id: text(&fields, "TenantId")?,
        entity_data: text(&fields, "EntityData")?,
        sended_at: timestamp(&fields, "SendedAt")?,
    })
}

impl Domain {
    /// Logs an account with Write on the events area in for an intake token. A wrong password is
    /// [`DomainError::Unauthenticated`]; an account without the right, [`DomainError::Forbidden`].
    pub async fn intake_login(
        &self,
        name: &str,
        password: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<String> {
        let caller = self.authenticate(name, password, address).await?;
        caller.require(FuncArea::Events, Access::Write)?;
        let account = caller
            .account_id
            .ok_or_else(|| DomainError::Internal("a login without an account".into()))?;
        let now = self.clock.now();
        let subject = format!("intake:{account}");
        let claims = Claims {
            sub: subject.clone(),
            aud: INTAKE_AUDIENCE.to_string(),
            iat: now.unix_timestamp(),
            exp: (now + time::Duration::minutes(self.config.intake_token_minutes.max(1) as i64))
                .unix_timestamp(),
            jti: format!("{subject}:{}", uuid::Uuid::new_v4()),
            kind: "intake".into(),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            self.tokens.encoding(),
        )
        .map_err(|e| DomainError::Internal(format!("signing a token: {e}")))
    }

    /// Checks an intake token: signature, the intake audience, expiry (to the second) and an
    /// enabled account that still has the right. Any failure is [`DomainError::Unauthenticated`].
    pub async fn verify_intake_token(
        &self,
        token: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<Caller> {
        let unauthenticated = |why: &str| DomainError::Unauthenticated(why.to_string());
        let claims = self.claims(token, INTAKE_AUDIENCE)?;
        let account = claims
            .sub
            .strip_prefix("intake:")
            .and_then(|id| id.parse::<i64>().ok())
            .ok_or_else(|| unauthenticated("invalid token"))?;
        let caller = self.token_caller(account, claims.sub, address).await?;
        caller
            .require(FuncArea::Events, Access::Write)
            .map_err(|_| unauthenticated("the token's account may no longer send events"))?;
        Ok(caller)
    }

    /// Stores an intake event, once per `Id`: `true` when stored now, `false` when it already was.
    /// `caller` is `None` only when the intake takes unauthenticated calls.
    pub async fn receive_intake(
        &self,
        caller: Option<&Caller>,
        event: &IntakeEvent,
        address: &str,
    ) -> Result<bool> {
        if let Some(caller) = caller {
            caller.require(FuncArea::Events, Access::Write)?;
        }
        let now = self.clock.now();
        let stored = self
            .store
            .store_intake(event, now, address, caller.map(|c| c.name.as_str()))
            .await?;
        Ok(stored.is_some())
    }

    /// Intake events, newest first; after `after_id`, oldest first (Read on the events area).
    pub async fn intake_events(
        &self,
        caller: &Caller,
        after_id: Option<i64>,
        page: PageRequest,
    ) -> Result<Page<IntakeRecord>> {
        caller.require(FuncArea::Events, Access::Read)?;
        super::devices::check_page(page)?;
        Ok(self.store.intake_events(after_id, page).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_1_objects_are_read_leniently_but_typed() {
        let e = parse_event(&json!({
            "id": "955F8B51-00A4-4807-B723-A3E5C547DA01", "EVENT": 101, "eventType": 3,
            "OrchTimestampUtc": "2026-12-05T10:00:00.1234567", "SendedAt": null,
            "text": "line\u{1b}[2J", "Unknown": {"x": 1}
        }))
        .unwrap();
        assert_eq!(e.uid, "955f8b51-00a4-4807-b723-a3e5c547da01");
        assert_eq!((e.event_code, e.event_type), (Some(101), Some(3)));
        let at = e.orch_timestamp_utc.unwrap();
        assert_eq!(
            (at.offset(), at.nanosecond()),
            (time::UtcOffset::UTC, 123_456_000)
        );
        assert_eq!(e.sended_at, None);
        assert!(!e.text.unwrap().contains('\u{1b}'));
        let named = parse_event(&json!({"Id": "955f8b51-00a4-4807-b723-a3e5c547da01",
            "Event": "Login", "EventType": "securityincident"}))
        .unwrap();
        assert_eq!(named.event_name.as_deref(), Some("Login"));
        assert_eq!(named.event_type, Some(3));
    }

    #[test]
    fn what_cannot_be_an_event_is_refused() {
        let id = "955f8b51-00a4-4807-b723-a3e5c547da01";
        for bad in [
            json!([{"Id": id}]),
            json!({}),
            json!({"Id": "not-a-guid"}),
            json!({"Id": id, "EventType": 7}),
            json!({"Id": id, "EventType": "Panic"}),
            json!({"Id": id, "Text": 5}),
            json!({"Id": id, "Event": 1.5}),
            json!({"Id": id, "SendedAt": "yesterday"}),
        ] {
            assert!(parse_event(&bad).is_err(), "{bad}");
        }
    }
}
