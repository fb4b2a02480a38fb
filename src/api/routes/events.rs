//! Device events (filtered, paged, tailed with a cursor, exported as CSV), the audit trail and
//! statistics.

use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Refusals, Reply};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Auth, Paging, Query};
use crate::api::model::{Audit, Event, ListOf};
use crate::api::ApiState;
use crate::store::{AuditQuery, EventQuery, PageRequest};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(export_events))
        .routes(routes!(list_intake))
        .routes(routes!(export_sinks))
        .routes(routes!(list_audit))
        .routes(routes!(stats))
}

/// Which events. Repeat a key for several values (`?severity=3&severity=4`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    #[serde(default)]
    pub device_id: Vec<String>,
    /// Events of the devices directly in these groups.
    #[serde(default)]
    pub group_id: Vec<i64>,
    #[serde(default)]
    pub event_type: Vec<String>,
    /// 1 (info) to 4 (critical).
    #[serde(default)]
    pub severity: Vec<i32>,
    /// Received at or after (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    /// Received before (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<OffsetDateTime>,
    /// Part of the description, type, virus name or object name, any case.
    pub text: Option<String>,
    /// Cursor for tailing: only events with a larger `id`, oldest first. Without it, newest first.
    pub after_id: Option<i64>,
}

impl EventFilter {
    fn query(self, page: PageRequest) -> EventQuery {
        EventQuery {
            device_ids: self.device_id,
            group_ids: self.group_id,
            severities: self.severity,
            event_types: self.event_type,
            since: self.from,
            until: self.to,
            text: self.text,
            after_id: self.after_id,
            page,
        }
    }
}

/// Device events: newest first, or oldest first after a cursor (`after_id`).
#[utoipa::path(get, path = "/events", tag = "events", params(EventFilter, Paging),
    responses((status = 200, body = ListOf<Event>), Refusals))]
async fn list_events(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(filter): Query<EventFilter>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Event>> {
    let page = paging.page()?;
    let found = state.domain.events(&caller, &filter.query(page)).await?;
    let list = found.items.into_iter().map(Event::from).collect();
    Ok(axum::Json(ListOf::page(list, found.total, page)))
}

/// Most events one CSV export holds.
const EXPORT_LIMIT: u64 = 100_000;

/// The events of a filter as CSV (a download; at most 100,000 rows, newest first).
#[utoipa::path(get, path = "/events/export.csv", tag = "events", params(EventFilter),
    responses((status = 200, description = "CSV, one event per line after a header line",
        content_type = "text/csv", body = String), Refusals))]
async fn export_events(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(filter): Query<EventFilter>,
) -> ApiResult<Response> {
    let mut query = filter.query(PageRequest {
        offset: 0,
        limit: 1000,
    });
    let mut out = String::from(
        "id,received_at,device_id,event_id,severity,event_type,descr,virus_name,object_name,source_address\n",
    );
    let mut written = 0u64;
    loop {
        let page = state.domain.events(&caller, &query).await?;
        let n = page.items.len() as u64;
        for e in page.items {
            let fields = [
                e.id.to_string(),
                crate::store::timestamp(e.received_at),
                e.device_id,
                e.event_id,
                e.severity.map(|s| s.to_string()).unwrap_or_default(),
                e.event_type.unwrap_or_default(),
                e.descr.unwrap_or_default(),
                e.virus_name.unwrap_or_default(),
                e.object_name.unwrap_or_default(),
                e.source_address,
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        written += n;
        if n < query.page.limit || written >= EXPORT_LIMIT {
            break;
        }
        query.page.offset += n;
    }
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8"),
            (CONTENT_DISPOSITION, "attachment; filename=\"events.csv\""),
        ],
        out,
    )
        .into_response())
}

/// A CSV field (RFC 4180), with a leading `=`, `+`, `-` or `@` quoted away from spreadsheets'
/// formula evaluation.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// An event received on the intake webhook (seed 002's Table 1, in its own names).
#[derive(Debug, Serialize, ToSchema)]
pub struct IntakeEvent {
    /// Server-side id, increasing in the order events were stored (the `after_id` cursor).
    pub id: i64,
    #[serde(rename = "Id")]
    pub uid: String,
    /// The code, when a number was sent.
    #[serde(rename = "Event")]
    pub event: Option<i64>,
    /// The name, when a name was sent for `Event`.
    #[serde(rename = "EventName")]
    pub event_name: Option<String>,
    #[serde(rename = "EntityId")]
    pub entity_id: Option<String>,
    #[serde(rename = "UserId")]
    pub user_id: Option<String>,
    #[serde(rename = "OrchTimestampUtc", with = "time::serde::rfc3339::option")]
    pub orch_timestamp_utc: Option<OffsetDateTime>,
    #[serde(rename = "OperationKey")]
    pub operation_key: Option<String>,
    #[serde(rename = "Signature")]
    pub signature: Option<String>,
    #[serde(rename = "WorkerAdminName")]
    pub worker_admin_name: Option<String>,
    #[serde(rename = "Text")]
    pub text: Option<String>,
    #[serde(rename = "EventType")]
    pub event_type: Option<i64>,
    #[serde(rename = "IP")]
    pub ip: Option<String>,
    #[serde(rename = "TenantId")]
    pub tenant_id: Option<String>,
    #[serde(rename = "EntityData")]
    pub entity_data: Option<String>,
    #[serde(rename = "SendedAt", with = "time::serde::rfc3339::option")]
    pub sended_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub source_address: String,
    /// The integration account that sent it (`null` when the intake takes unauthenticated calls).
    pub account: Option<String>,
}

/// The tailing cursor of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct After {
    /// Only entries with a larger `id`, oldest first. Without it, newest first.
    pub after_id: Option<i64>,
}

/// Events received on the intake webhook.
#[utoipa::path(get, path = "/intake-events", tag = "events", params(After, Paging),
    responses((status = 200, body = ListOf<IntakeEvent>), Refusals))]
async fn list_intake(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(after): Query<After>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<IntakeEvent>> {
    let page = paging.page()?;
    let found = state
        .domain
        .intake_events(&caller, after.after_id, page)
        .await?;
    let list = found
        .items
        .into_iter()
        .map(|r| IntakeEvent {
            id: r.id,
            uid: r.event.uid,
            event: r.event.event_code,
            event_name: r.event.event_name,
            entity_id: r.event.entity_id,
            user_id: r.event.user_id,
            orch_timestamp_utc: r.event.orch_timestamp_utc,
            operation_key: r.event.operation_key,
            signature: r.event.signature,
            worker_admin_name: r.event.worker_admin_name,
            text: r.event.text,
            event_type: r.event.event_type,
            ip: r.event.ip,
            tenant_id: r.event.tenant_id,
            entity_data: r.event.entity_data,
            sended_at: r.event.sended_at,
            received_at: r.received_at,
            source_address: r.source_address,
            account: r.account,
        })
        .collect();
    Ok(axum::Json(ListOf::page(list, found.total, page)))
}

/// An export sink and how far behind it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct SinkStatus {
    pub name: String,
    /// `cef_files`.
    pub kind: String,
    /// The last bus entry the sink has written, and the newest there is.
    pub cursor: i64,
    pub head: i64,
    /// Bus entries committed and not yet exported.
    pub lag_entries: i64,
    /// Age of the oldest entry not yet exported.
    pub lag_seconds: f64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_error_at: Option<OffsetDateTime>,
}

/// The export sinks of this node: cursor, lag, last success, last error.
#[utoipa::path(get, path = "/export/sinks", tag = "events", params(Paging),
    responses((status = 200, body = ListOf<SinkStatus>), Refusals))]
async fn export_sinks(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<SinkStatus>> {
    let page = paging.page()?;
    let sinks = state.sinks.states();
    let cursors: Vec<String> = sinks
        .iter()
        .map(|(name, _)| crate::export::sink::cursor_name(name))
        .collect();
    let lags = state.domain.consumer_lags(&caller, &cursors).await?;
    let mut list = Vec::new();
    for ((name, s), lag) in sinks.into_iter().zip(lags) {
        list.push(SinkStatus {
            name,
            kind: s.kind,
            cursor: lag.cursor,
            head: lag.head,
            lag_entries: lag.entries,
            lag_seconds: lag.seconds,
            last_success: s.last_success,
            last_error: s.last_error,
            last_error_at: s.last_error_at,
        });
    }
    Ok(axum::Json(ListOf::slice(list, page)))
}

/// Which audit entries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// `device`, `group`, `policy`, `subscription`, `account`, `token`, ...
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    /// The account that made the change.
    pub account: Option<String>,
}

/// The audit trail, newest first (Read on FUNC_AREA_ADMINS).
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditFilter, Paging),
    responses((status = 200, body = ListOf<Audit>), Refusals))]
async fn list_audit(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(filter): Query<AuditFilter>,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<Audit>> {
    let page = paging.page()?;
    let query = AuditQuery {
        object_kind: filter.object_kind,
        object_id: filter.object_id,
        account: filter.account,
        page,
    };
    let found = state.domain.audit(&caller, &query).await?;
    let list = found.items.into_iter().map(Audit::from).collect();
    Ok(axum::Json(ListOf::page(list, found.total, page)))
}

/// Devices by status, infected devices and events per hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub devices: i64,
    pub active: i64,
    pub blocked: i64,
    pub never_seen: i64,
    pub infected: i64,
    /// Events received in each of the last 24 hours, oldest first.
    pub events_per_hour: Vec<HourCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HourCount {
    /// Start of the hour.
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub events: i64,
}

/// The fleet at a glance.
#[utoipa::path(get, path = "/stats", tag = "events",
    responses((status = 200, body = Stats), Refusals))]
async fn stats(State(state): State<ApiState>, Auth(caller): Auth) -> Reply<Stats> {
    let s = state.domain.stats(&caller).await.map_err(ApiError::from)?;
    Ok(axum::Json(Stats {
        devices: s.devices,
        active: s.active,
        blocked: s.blocked,
        never_seen: s.never_seen,
        infected: s.infected,
        events_per_hour: s
            .events_per_hour
            .into_iter()
            .map(|(hour, events)| HourCount { hour, events })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
