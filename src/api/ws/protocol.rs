//! Seed 003's messages: requests `{class, subclass, cmd, data, tid}`, replies `{result, data, tid}`,
//! acks `{ack}`, pushed events; and the table of error codes, with the one mapping from the
//! domain's errors.

use serde_json::{json, Map, Value};

use crate::domain::DomainError;

/// Why a request failed: the stable `code` of an error reply. The table is documented in the
/// README; codes are never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A request other than `core/user/login` before a login, or a login that failed.
    NotLoggedIn,
    /// A mandatory field is absent (or empty).
    MissingField,
    /// A field, or the message itself, is malformed.
    InvalidField,
    /// The account's role does not allow it.
    NotPermitted,
    /// No such command, session or subscription.
    NotFound,
    /// A relayed command was not answered in time.
    Timeout,
    /// A limit was reached (sessions, subscriptions, pending commands, login attempts).
    TooMany,
    /// The database cannot be reached now; try again.
    Unavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotLoggedIn => "not_logged_in",
            Code::MissingField => "missing_field",
            Code::InvalidField => "invalid_field",
            Code::NotPermitted => "not_permitted",
            Code::NotFound => "not_found",
            Code::Timeout => "timeout",
            Code::TooMany => "too_many",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }
}

/// An error reply's code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsError {
    pub code: Code,
    pub message: String,
}

impl WsError {
    pub fn new(code: Code, message: impl Into<String>) -> WsError {
        WsError {
            code,
            message: message.into(),
        }
    }
}

impl From<DomainError> for WsError {
    fn from(e: DomainError) -> WsError {
        let code = match &e {
            DomainError::Unauthenticated(_) => Code::NotLoggedIn,
            DomainError::Forbidden(_) => Code::NotPermitted,
            DomainError::NotFound(_) => Code::NotFound,
            DomainError::Invalid(_) | DomainError::Conflict(_) | DomainError::TooLarge(_) => {
                Code::InvalidField
            }
            DomainError::Missing(_) => Code::MissingField,
            DomainError::TryLater { .. } => Code::TooMany,
            DomainError::Unavailable(_) => Code::Unavailable,
            DomainError::Internal(_) => Code::Internal,
        };
        let message = match e {
            // Internals stay in the server's log.
            DomainError::Internal(detail) => {
                tracing::error!(error = %detail, "live API request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        WsError { code, message }
    }
}

/// A string field of a request: absent or null is `None`; another type is refused.
pub fn text(data: &Map<String, Value>, name: &str) -> Result<Option<String>, WsError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(WsError::new(
            Code::InvalidField,
            format!("{name} is a string"),
        )),
    }
}

/// What a client sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request(Request),
    /// The answer to a command or an event the server sent.
    Reply {
        tid: Value,
        result: Value,
        data: Value,
    },
    /// "Still working on it" for a command the server sent.
    Ack {
        tid: Value,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub class: String,
    pub subclass: Option<String>,
    pub cmd: String,
    pub data: Map<String, Value>,
    pub tid: Value,
}

/// Reads one text message. A message that is not a request is an error to answer, under the tid
/// it carried if any.
pub fn parse(text: &str) -> Result<Incoming, (Value, WsError)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            Value::Null,
            WsError::new(Code::InvalidField, format!("the message is not JSON: {e}")),
        )
    })?;
    let Value::Object(mut message) = value else {
        return Err((
            Value::Null,
            WsError::new(Code::InvalidField, "the message is not a JSON object"),
        ));
    };
    if let Some(ack) = message.remove("ack") {
        return Ok(Incoming::Ack { tid: ack });
    }
    let tid = message.remove("tid").unwrap_or(Value::Null);
    if !(tid.is_i64() || tid.is_u64() || tid.is_string()) {
        // Only an integer or a string is echoed.
        return Err((
            Value::Null,
            WsError::new(
                Code::MissingField,
                "tid is missing (an integer or a string)",
            ),
        ));
    }
    let fail = |code, text: &str| Err((tid.clone(), WsError::new(code, text)));
    if let Some(result) = message.remove("result") {
        let data = message.remove("data").unwrap_or(Value::Null);
        return Ok(Incoming::Reply { tid, result, data });
    }
    let text = |message: &mut Map<String, Value>, name: &str| match message.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(format!("{name} is a non-empty string")),
    };
    let class = match text(&mut message, "class") {
        Ok(Some(class)) => class,
        Ok(None) => return fail(Code::MissingField, "class is missing"),
        Err(e) => return fail(Code::InvalidField, &e),
    };
    let cmd = match text(&mut message, "cmd") {
        Ok(Some(cmd)) => cmd,
        Ok(None) => return fail(Code::MissingField, "cmd is missing"),
        Err(e) => return fail(Code::InvalidField, &e),
    };
    let subclass = match text(&mut message, "subclass") {
        Ok(subclass) => subclass,
        Err(e) => return fail(Code::InvalidField, &e),
    };
    let data = match message.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data,
        Some(_) => return fail(Code::InvalidField, "data is an object"),
    };
    Ok(Incoming::Request(Request {
        class,
        subclass,
        cmd,
        data,
        tid,
    }))
}

pub fn ok(tid: &Value, data: Value) -> String {
    let mut reply = json!({"result": "ok", "tid": tid});
    if !data.is_null() {
        reply["data"] = data;
    }
    reply.to_string()
}

pub fn error(tid: &Value, e: &WsError) -> String {
    json!({
        "result": "error",
        "data": {"error": e.message, "code": e.code.as_str()},
        "tid": tid,
    })
    .to_string()
}

pub fn ack(tid: &Value) -> String {
    json!({ "ack": tid }).to_string()
}

/// An event pushed to a session, under the server's own tid.
pub fn event(tid: i64, data: Value) -> String {
    json!({"class": "core", "cmd": "event", "data": data, "tid": tid}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_replies_and_acks_are_told_apart() {
        let got = parse(r#"{"class":"core","subclass":"user","cmd":"list","tid":1}"#).unwrap();
        assert_eq!(
            got,
            Incoming::Request(Request {
                class: "core".into(),
                subclass: Some("user".into()),
                cmd: "list".into(),
                data: Map::new(),
                tid: json!(1),
            })
        );
        assert_eq!(
            parse(r#"{"result":"ok","tid":1001,"data":{"received":true}}"#).unwrap(),
            Incoming::Reply {
                tid: json!(1001),
                result: json!("ok"),
                data: json!({"received": true})
            }
        );
        assert_eq!(
            parse(r#"{"ack":1001}"#).unwrap(),
            Incoming::Ack { tid: json!(1001) }
        );
    }

    #[test]
    fn malformed_messages_are_errors_under_their_tid() {
        for (text, tid, code) in [
            ("not json", Value::Null, Code::InvalidField),
            ("[1]", Value::Null, Code::InvalidField),
            (
                r#"{"class":"core","cmd":"x"}"#,
                Value::Null,
                Code::MissingField,
            ),
            (r#"{"cmd":"x","tid":7}"#, json!(7), Code::MissingField),
            (
                r#"{"class":"core","tid":"a"}"#,
                json!("a"),
                Code::MissingField,
            ),
            (
                r#"{"class":1,"cmd":"x","tid":7}"#,
                json!(7),
                Code::InvalidField,
            ),
            (
                r#"{"class":"c","cmd":"x","data":[],"tid":7}"#,
                json!(7),
                Code::InvalidField,
            ),
            (
                r#"{"class":"c","cmd":"x","tid":{"a":1}}"#,
                Value::Null,
                Code::MissingField,
            ),
        ] {
            let (got_tid, e) = parse(text).unwrap_err();
            assert_eq!((got_tid, e.code), (tid.clone(), code), "{text}");
        }
    }

    #[test]
    fn replies_have_the_seeds_shape() {
        assert_eq!(
            ok(&json!(1), json!({"session_id": "s"})),
            r#"{"data":{"session_id":"s"},"result":"ok","tid":1}"#
        );
        let e = error(&json!(2), &WsError::new(Code::NotFound, "gone"));
        let v: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(
            v,
            json!({"result": "error", "data": {"error": "gone", "code": "not_found"}, "tid": 2})
        );
        assert_eq!(ack(&json!(3)), r#"{"ack":3}"#);
    }
}
