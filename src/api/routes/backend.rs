//! Product backend commands (seed 000): initiators send commands and read their outcomes; service
//! consoles subscribe by event polling (the KSC `ConEvents` style), read payloads and set results
//! or error containers.

use std::time::Duration;

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Refusals, Reply};
use crate::api::error::ApiError;
use crate::api::extract::{Auth, Flag, Json, Paging, Query};
use crate::api::model::{
    container, soft_errors, BackendCommand, BackendConsole, BackendPayload, Done, ErrorContainer,
    ListOf, SoftError, Tree,
};
use crate::api::ApiState;
use crate::domain::backend::{CommandRequest, ConsoleOf, EVENT};
use crate::store::{CommandFilter, CommandState};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_commands, send_command))
        .routes(routes!(get_command))
        .routes(routes!(get_payload))
        .routes(routes!(set_result))
        .routes(routes!(set_error))
        .routes(routes!(subscribe))
        .routes(routes!(unsubscribe))
        .routes(routes!(retrieve))
        .routes(routes!(list_consoles))
        .routes(routes!(console_available))
}

/// A command for a product's backend.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct NewBackendCommand {
    /// The command's name, as the product backend knows it (1 to 128 characters).
    pub CMD_NAME: Option<String>,
    /// The product name and version devices report, 1 to 31 characters each (not `*`).
    pub CMD_PROD_NAME: Option<String>,
    pub CMD_PROD_VERSION: Option<String>,
    /// The command's parameters in the typed encoding (default: none).
    #[schema(value_type = Option<Tree>)]
    pub CMD_PARAMS: Option<serde_json::Value>,
}

/// A command just sent: its id, and where it stands (`failed` at once, with the soft error
/// `BACKEND`/`ERR_NO_BACKEND`, when no console serves its product and version).
#[derive(Debug, Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct SentCommand {
    pub CMD_ID: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_list: Option<Vec<SoftError>>,
}

/// Sends a command to the service console registered for its product and version. Needs Execute on
/// FUNC_AREA_BACKEND_COMMANDS.
#[utoipa::path(post, path = "/backend-commands", tag = "backend commands",
    request_body = NewBackendCommand, responses((status = 200, body = SentCommand), Refusals))]
async fn send_command(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Json(body): Json<NewBackendCommand>,
) -> Reply<SentCommand> {
    let params = match &body.CMD_PARAMS {
        Some(params) => container("CMD_PARAMS", params)?,
        None => serde_json::json!({}),
    };
    let sent = state
        .domain
        .send_backend_command(
            &caller,
            CommandRequest {
                name: body.CMD_NAME.unwrap_or_default(),
                prod_name: body.CMD_PROD_NAME.unwrap_or_default(),
                prod_version: body.CMD_PROD_VERSION.unwrap_or_default(),
                params,
            },
        )
        .await?;
    let error_list = soft_errors(&sent.notices);
    let sent = sent.value;
    Ok(axum::Json(SentCommand {
        CMD_ID: sent.id,
        state: sent.state.as_str().into(),
        error_list,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(non_snake_case)]
pub struct CommandQuery {
    /// `pending`, `delivered`, `done`, `failed` (repeat the key for several).
    #[serde(default)]
    pub state: Vec<String>,
    pub CMD_NAME: Option<String>,
    pub CMD_PROD_NAME: Option<String>,
    pub CMD_PROD_VERSION: Option<String>,
    /// The account that sent them.
    pub initiator: Option<String>,
}

/// Commands, newest first. Needs Read on FUNC_AREA_BACKEND_COMMANDS.
#[utoipa::path(get, path = "/backend-commands", tag = "backend commands",
    params(CommandQuery, Paging), responses((status = 200, body = ListOf<BackendCommand>), Refusals))]
async fn list_commands(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(query): Query<CommandQuery>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<BackendCommand>> {
    let page = paging.page()?;
    let states = query
        .state
        .iter()
        .map(|s| {
            CommandState::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown state {s:?}: pending, delivered, done or failed"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let filter = CommandFilter {
        states,
        name: query.CMD_NAME,
        prod_name: query.CMD_PROD_NAME,
        prod_version: query.CMD_PROD_VERSION,
        initiator: query.initiator,
        page,
    };
    let found = state.domain.backend_commands(&caller, &filter).await?;
    let list = found
        .items
        .into_iter()
        .map(BackendCommand::new)
        .collect::<Result<_, _>>()?;
    Ok(axum::Json(ListOf::page(list, found.total, page)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the command to end (0 to 60; default 0: answer at once).
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<u64>,
}

/// A command and where it stands, with the result or the error container once it has ended. Needs
/// Read on FUNC_AREA_BACKEND_COMMANDS.
#[utoipa::path(get, path = "/backend-commands/{id}", tag = "backend commands",
    params(("id" = String, Path, description = "CMD_ID"), WaitQuery),
    responses((status = 200, body = BackendCommand), Refusals))]
async fn get_command(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Reply<BackendCommand> {
    let wait = query.wait.map(Duration::from_secs);
    let command = state.domain.backend_command(&caller, &id, wait).await?;
    Ok(axum::Json(BackendCommand::new(command)?))
}

/// The payload of a command given to the caller's console: `CMD_NAME`, `CMD_PROD_NAME`,
/// `CMD_PROD_VERSION`, `CMD_PARAMS` (the KSC `GetCommandPayload`). Marks it delivered. Needs Execute
/// on FUNC_AREA_PRODUCT_INTEGRATION.
#[utoipa::path(get, path = "/backend-commands/{id}/payload", tag = "backend consoles",
    params(("id" = String, Path, description = "CMD_ID")),
    responses((status = 200, body = BackendPayload), Refusals))]
async fn get_payload(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Reply<BackendPayload> {
    let payload = state
        .domain
        .backend_payload(&caller, &id, ConsoleOf::Account)
        .await?;
    Ok(axum::Json(BackendPayload::new(payload)?))
}

/// Sets the result of a command given to the caller's console, a container in the typed encoding
/// (the KSC `SetCommandResult`). Once: a command that has ended is refused.
#[utoipa::path(put, path = "/backend-commands/{id}/result", tag = "backend consoles",
    params(("id" = String, Path, description = "CMD_ID")), request_body = Tree,
    responses((status = 200, body = Done), Refusals))]
async fn set_result(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Reply<Done> {
    let result = container("the result", &body)?;
    let changed = state
        .domain
        .set_backend_result(&caller, &id, ConsoleOf::Account, result)
        .await?;
    Ok(axum::Json(Done {
        audit_id: Some(changed.audit.id),
        error_list: None,
    }))
}

/// Sets the error container of a command given to the caller's console (the KSC
/// `SetCommandError`): `CMD_ERR_ORIGINATOR_ID` and `CMD_ERR_DESCR` required, `CMD_ERR_ID` and
/// `CMD_ERR_LNUMBER` integers. Once: a command that has ended is refused.
#[utoipa::path(put, path = "/backend-commands/{id}/error", tag = "backend consoles",
    params(("id" = String, Path, description = "CMD_ID")), request_body = ErrorContainer,
    responses((status = 200, body = Done), Refusals))]
async fn set_error(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Reply<Done> {
    let changed = state
        .domain
        .set_backend_error(&caller, &id, ConsoleOf::Account, body)
        .await?;
    Ok(axum::Json(Done {
        audit_id: Some(changed.audit.id),
        error_list: None,
    }))
}

/// A console subscription's filter: one product name and version, both required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct ConsoleFilter {
    pub CMD_PROD_NAME: Option<String>,
    pub CMD_PROD_VERSION: Option<String>,
}

/// A subscription to `KLSRV_EV_PROD_BACKEND_CMD` (the KSC `ConEvents.Subscribe`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// `KLSRV_EV_PROD_BACKEND_CMD`.
    pub event: Option<String>,
    pub filter: Option<ConsoleFilter>,
}

/// A console subscription just made: its id and how often to retrieve.
#[derive(Debug, Serialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    /// The polling period in milliseconds.
    pub period: u64,
    pub console: BackendConsole,
}

/// Subscribes the caller's account as a service console for one product and version, by event
/// polling. Needs Execute on FUNC_AREA_PRODUCT_INTEGRATION; a filter without both values, or with
/// `*`, is refused.
#[utoipa::path(post, path = "/backend-subscriptions", tag = "backend consoles",
    request_body = NewSubscription, responses((status = 200, body = Subscription), Refusals))]
async fn subscribe(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Json(body): Json<NewSubscription>,
) -> Reply<Subscription> {
    let filter = body
        .filter
        .as_ref()
        .map(|f| (f.CMD_PROD_NAME.as_deref(), f.CMD_PROD_VERSION.as_deref()));
    let console = state
        .domain
        .subscribe_console(&caller, body.event.as_deref(), filter, None)
        .await?;
    Ok(axum::Json(Subscription {
        id: console.id.clone(),
        period: state.domain.backend_config().poll_period_ms,
        console: console.into(),
    }))
}

/// Ends a console subscription of the caller's (the KSC `ConEvents.UnSubscribe`). Commands it had
/// not taken go to another console; commands it had taken fail with `ERR_NO_BACKEND`.
#[utoipa::path(delete, path = "/backend-subscriptions/{id}", tag = "backend consoles",
    params(("id" = String, Path)), responses((status = 200, body = Done), Refusals))]
async fn unsubscribe(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Reply<Done> {
    state.domain.unsubscribe_console(&caller, &id).await?;
    Ok(axum::Json(Done {
        audit_id: None,
        error_list: None,
    }))
}

/// One `KLSRV_EV_PROD_BACKEND_CMD` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleEvent {
    /// `KLSRV_EV_PROD_BACKEND_CMD`.
    pub event: String,
    /// `CMD_ID`, `CMD_PROD_NAME`, `CMD_PROD_VERSION`.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

/// What one retrieval returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retrieved {
    /// The events of commands routed to this console since the last retrieval, oldest first.
    pub events: Vec<ConsoleEvent>,
    /// Milliseconds until the next retrieval.
    pub period: u64,
}

/// Retrieves the events of commands routed to a console subscription of the caller's (the KSC
/// `ConEvents.Retrieve`), marking them delivered; keeps the subscription alive. A subscription that
/// has not retrieved for `console_timeout_secs` has lapsed (404).
#[utoipa::path(post, path = "/backend-subscriptions/{id}/retrieve", tag = "backend consoles",
    params(("id" = String, Path)), responses((status = 200, body = Retrieved), Refusals))]
async fn retrieve(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Reply<Retrieved> {
    let got = state.domain.retrieve_backend_events(&caller, &id).await?;
    Ok(axum::Json(Retrieved {
        events: got
            .events
            .into_iter()
            .map(|body| ConsoleEvent {
                event: EVENT.into(),
                body,
            })
            .collect(),
        period: got.period_ms,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(non_snake_case)]
pub struct ProductQuery {
    /// With `CMD_PROD_VERSION`: only consoles of this product and version.
    pub CMD_PROD_NAME: Option<String>,
    pub CMD_PROD_VERSION: Option<String>,
}

/// The live service consoles. Needs Read on FUNC_AREA_BACKEND_COMMANDS or Execute on
/// FUNC_AREA_PRODUCT_INTEGRATION.
#[utoipa::path(get, path = "/backend-consoles", tag = "backend consoles",
    params(ProductQuery, Paging), responses((status = 200, body = ListOf<BackendConsole>), Refusals))]
async fn list_consoles(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(query): Query<ProductQuery>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<BackendConsole>> {
    let page = paging.page()?;
    let consoles = state
        .domain
        .backend_consoles(
            &caller,
            query.CMD_PROD_NAME.as_deref(),
            query.CMD_PROD_VERSION.as_deref(),
        )
        .await?
        .into_iter()
        .map(BackendConsole::from)
        .collect();
    Ok(axum::Json(ListOf::slice(consoles, page)))
}

/// Whether a console is available.
#[derive(Debug, Serialize, ToSchema)]
pub struct Available {
    /// 1 when a live console serves the product and version (any product, when none is given).
    pub available: Flag,
}

/// Whether a service console is available for a product and version, or for any (the KSC
/// `IsServiceConsoleAvailable` and `IsAnyServiceConsoleAvailable`).
#[utoipa::path(get, path = "/backend-consoles/available", tag = "backend consoles",
    params(ProductQuery), responses((status = 200, body = Available), Refusals))]
async fn console_available(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(query): Query<ProductQuery>,
) -> Reply<Available> {
    let consoles = state
        .domain
        .backend_consoles(
            &caller,
            query.CMD_PROD_NAME.as_deref(),
            query.CMD_PROD_VERSION.as_deref(),
        )
        .await?;
    Ok(axum::Json(Available {
        available: Flag::from(!consoles.is_empty()),
    }))
}
