//! The live API's class `backend` (seed 000 over seed 003's messages): service consoles subscribe
//! and get `KLSRV_EV_PROD_BACKEND_CMD` events pushed, read payloads and set results or error
//! containers; initiators send commands and read their outcomes. Every rule is the domain's.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::hub::{Hub, Session};
use super::protocol::{self, text, Code, Request, WsError};
use crate::api::model::{container, BackendCommand, BackendPayload};
use crate::domain::backend::{CommandRequest, ConsoleOf};

/// The mandatory `CMD_ID`.
fn command_id(data: &Map<String, Value>) -> Result<String, WsError> {
    text(data, "CMD_ID")?
        .filter(|id| !id.is_empty())
        .ok_or_else(|| WsError::new(Code::MissingField, "CMD_ID is missing"))
}

/// A free-form object field.
fn object<'a>(data: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Value>, WsError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(WsError::new(
            Code::InvalidField,
            format!("{name} is an object"),
        )),
    }
}

fn internal(e: crate::api::error::ApiError) -> WsError {
    tracing::error!(error = %e.message, "live API request failed");
    WsError::new(Code::Internal, "internal error")
}

fn view(command: crate::store::CommandRecord) -> Result<Value, WsError> {
    let view = BackendCommand::new(command).map_err(internal)?;
    serde_json::to_value(view).map_err(|e| WsError::new(Code::Internal, e.to_string()))
}

/// Answers one request of class `backend`, as [`super::conn`]'s handler does.
pub async fn handle(
    hub: &Arc<Hub>,
    session: &Arc<Session>,
    request: Request,
) -> Result<Option<Value>, WsError> {
    let data = &request.data;
    let caller = &session.caller;
    let domain = &hub.domain;
    match (
        request.subclass.as_deref().unwrap_or(""),
        request.cmd.as_str(),
    ) {
        ("command", "subscribe") => {
            let filter = object(data, "filter")?.and_then(Value::as_object);
            let filter = match filter {
                Some(f) => Some((text(f, "CMD_PROD_NAME")?, text(f, "CMD_PROD_VERSION")?)),
                None => None,
            };
            let console = domain
                .subscribe_console(
                    caller,
                    text(data, "event")?.as_deref(),
                    filter.as_ref().map(|(n, v)| (n.as_deref(), v.as_deref())),
                    Some(&session.id),
                )
                .await?;
            hub.add_console(session, console.id.clone());
            Ok(Some(json!({"id": console.id})))
        }
        ("command", "unsubscribe") => {
            let id = text(data, "id")?
                .ok_or_else(|| WsError::new(Code::MissingField, "id is missing"))?;
            if !hub.consoles_of(session).contains(&id) {
                return Err(WsError::new(
                    Code::NotFound,
                    "no console subscription with this id in this session",
                ));
            }
            domain.unsubscribe_console(caller, &id).await?;
            hub.remove_console(session, &id);
            Ok(Some(Value::Null))
        }
        ("command", "get_payload") => {
            let consoles = hub.consoles_of(session);
            let payload = domain
                .backend_payload(
                    caller,
                    &command_id(data)?,
                    ConsoleOf::Registrations(&consoles),
                )
                .await?;
            let payload = BackendPayload::new(payload).map_err(internal)?;
            Ok(Some(serde_json::to_value(payload).map_err(|e| {
                WsError::new(Code::Internal, e.to_string())
            })?))
        }
        ("command", "set_result") => {
            let result = object(data, "result")?
                .ok_or_else(|| WsError::new(Code::MissingField, "result is missing"))?;
            let result = container("the result", result)?;
            let consoles = hub.consoles_of(session);
            domain
                .set_backend_result(
                    caller,
                    &command_id(data)?,
                    ConsoleOf::Registrations(&consoles),
                    result,
                )
                .await?;
            Ok(Some(Value::Null))
        }
        ("command", "set_error") => {
            let error = data
                .get("error")
                .filter(|e| !e.is_null())
                .ok_or_else(|| WsError::new(Code::MissingField, "error is missing"))?;
            let consoles = hub.consoles_of(session);
            domain
                .set_backend_error(
                    caller,
                    &command_id(data)?,
                    ConsoleOf::Registrations(&consoles),
                    error.clone(),
                )
                .await?;
            Ok(Some(Value::Null))
        }
        ("command", "send") => {
            let params = match object(data, "CMD_PARAMS")? {
                Some(params) => container("CMD_PARAMS", params)?,
                None => json!({}),
            };
            let sent = domain
                .send_backend_command(
                    caller,
                    CommandRequest {
                        name: text(data, "CMD_NAME")?.unwrap_or_default(),
                        prod_name: text(data, "CMD_PROD_NAME")?.unwrap_or_default(),
                        prod_version: text(data, "CMD_PROD_VERSION")?.unwrap_or_default(),
                        params,
                    },
                )
                .await?
                .value;
            Ok(Some(
                json!({"CMD_ID": sent.id, "state": sent.state.as_str()}),
            ))
        }
        ("command", "get") => {
            let id = command_id(data)?;
            let wait = match data.get("wait") {
                None | Some(Value::Null) => None,
                Some(v) => Some(Duration::from_secs(v.as_u64().ok_or_else(|| {
                    WsError::new(Code::InvalidField, "wait is a number of seconds")
                })?)),
            };
            if wait.is_none_or(|w| w.is_zero()) {
                return Ok(Some(view(
                    domain.backend_command(caller, &id, None).await?,
                )?));
            }
            // Waiting does not hold up the session's other requests: the answer comes later.
            let (domain, session, tid) = (domain.clone(), session.clone(), request.tid.clone());
            tokio::spawn(async move {
                let answer = match domain.backend_command(&session.caller, &id, wait).await {
                    Ok(command) => view(command),
                    Err(e) => Err(WsError::from(e)),
                };
                let frame = match answer {
                    Ok(data) => protocol::ok(&tid, data),
                    Err(e) => protocol::error(&tid, &e),
                };
                session.send(frame).await;
            });
            Ok(None)
        }
        ("console", "available") => {
            let (name, version) = (
                text(data, "CMD_PROD_NAME")?,
                text(data, "CMD_PROD_VERSION")?,
            );
            let consoles = domain
                .backend_consoles(caller, name.as_deref(), version.as_deref())
                .await?;
            Ok(Some(json!({"available": u8::from(!consoles.is_empty())})))
        }
        (subclass, cmd) => Err(WsError::new(
            Code::NotFound,
            format!("no command backend/{subclass}/{cmd}"),
        )),
    }
}
