//! The API's JSON shapes: the list envelope, soft errors, the typed encoding of settings and policy
//! trees, and the objects. Flags are the integers 0 and 1; no JSON boolean is ever written.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};
use super::extract::Flag;
use crate::domain::{DomainError, Notice};
use crate::soap::{Params, Value};
use crate::store::{self, PageRequest};

/// A soft error: the change was made, but is not complete (seed 001's `error_list`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SoftError {
    /// The group of the notice, such as `SYNC`, `POLICY` or `DEVICE`.
    #[serde(rename = "type")]
    #[schema(example = "SYNC")]
    pub kind: String,
    /// UPPER_SNAKE, such as `PENDING_NEXT_HEARTBEAT`, `SHADOWED_BY_ANCESTOR_LOCK`, `DEVICE_BLOCKED`.
    #[schema(example = "PENDING_NEXT_HEARTBEAT")]
    pub code: String,
}

pub fn soft_errors(notices: &[Notice]) -> Option<Vec<SoftError>> {
    (!notices.is_empty()).then(|| {
        notices
            .iter()
            .map(|n| SoftError {
                kind: n.kind.to_string(),
                code: n.code.to_string(),
            })
            .collect()
    })
}

/// Every list answer (seed 001): the page, the size of the whole filtered list, the collection's
/// quota (`null` when it has none), the paging echoed, and the page's length.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ListOf<T: ToSchema> {
    pub list: Vec<T>,
    pub total_count: u64,
    pub max_count: Option<u64>,
    pub offset: u64,
    pub limit: u64,
    pub count: u64,
}

impl<T: ToSchema> ListOf<T> {
    /// A page of a list the store paged.
    pub fn page(list: Vec<T>, total_count: u64, page: PageRequest) -> ListOf<T> {
        ListOf {
            count: list.len() as u64,
            list,
            total_count,
            max_count: None,
            offset: page.offset,
            limit: page.limit,
        }
    }

    /// A page of a list held whole in memory.
    pub fn slice(all: Vec<T>, page: PageRequest) -> ListOf<T> {
        let total = all.len() as u64;
        let list: Vec<T> = all
            .into_iter()
            .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
            .take(page.limit as usize)
            .collect();
        ListOf::page(list, total, page)
    }

    pub fn with_max(mut self, max: u64) -> ListOf<T> {
        self.max_count = Some(max);
        self
    }
}

/// A value of a settings, policy or app-info tree, with its wire type: one encoding for every
/// tree of the API. `{"type": "int", "value": 5}`, `{"type": "bool", "value": 1}`,
/// `{"type": "params", "value": {"Name": {...}}}`, `{"type": "array", "value": [{...}]}`.
/// Types: `bool` (0 or 1), `int` (32-bit), `long` (64-bit), `float`, `double`, `string`,
/// `date` (`YYYY-MM-DD`), `datetime` (RFC 3339), `binary` (base64), `array`, `params`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Typed {
    Bool(Flag),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    String(String),
    #[schema(value_type = String, format = Date)]
    Date(String),
    #[schema(value_type = String, format = DateTime)]
    Datetime(String),
    #[schema(value_type = String, format = Byte)]
    Binary(String),
    #[schema(no_recursion)]
    Array(Vec<Typed>),
    #[schema(no_recursion)]
    Params(BTreeMap<String, Typed>),
}

/// A tree of named typed values: `{"Name": {"type": ..., "value": ...}, ...}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Tree(pub BTreeMap<String, Typed>);

impl Typed {
    pub fn from_value(value: &Value) -> Typed {
        match value {
            Value::Bool(b) => Typed::Bool(Flag::from(*b)),
            Value::Int(v) => Typed::Int(*v),
            Value::Long(v) => Typed::Long(*v),
            Value::Float(v) => Typed::Float(*v),
            Value::Double(v) => Typed::Double(*v),
            Value::String(v) => Typed::String(v.clone()),
            Value::Date(d) => Typed::Date(
                d.format(time::macros::format_description!("[year]-[month]-[day]"))
                    .unwrap_or_default(),
            ),
            Value::DateTime(t) => Typed::Datetime(crate::sync::policy::rfc3339(*t)),
            Value::Binary(b) => Typed::Binary(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Array(items) => Typed::Array(items.iter().map(Typed::from_value).collect()),
            Value::Params(p) => Typed::Params(tree(p).0),
        }
    }

    /// The protocol value, or 400 naming what is wrong.
    pub fn to_value(&self) -> ApiResult<Value> {
        let bad = |what: &str| ApiError::bad_request(format!("invalid {what} value"));
        Ok(match self {
            Typed::Bool(f) => Value::Bool(f.is_set()),
            Typed::Int(v) => Value::Int(*v),
            Typed::Long(v) => Value::Long(*v),
            Typed::Float(v) if v.is_finite() => Value::Float(*v),
            Typed::Double(v) if v.is_finite() => Value::Double(*v),
            Typed::Float(_) | Typed::Double(_) => return Err(bad("floating-point")),
            Typed::String(v) => Value::String(v.clone()),
            Typed::Date(text) => Value::Date(
                time::Date::parse(
                    text,
                    time::macros::format_description!("[year]-[month]-[day]"),
                )
                .map_err(|_| bad("date (YYYY-MM-DD)"))?,
            ),
            Typed::Datetime(text) => Value::DateTime(
                OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| bad("datetime (RFC 3339)"))?,
            ),
            Typed::Binary(text) => Value::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| bad("binary (base64)"))?,
            ),
            Typed::Array(items) => Value::Array(
                items
                    .iter()
                    .map(Typed::to_value)
                    .collect::<ApiResult<_>>()?,
            ),
            Typed::Params(map) => Value::Params(params(map)?),
        })
    }
}

/// The typed tree of `params`.
pub fn tree(params: &Params) -> Tree {
    Tree(
        params
            .0
            .iter()
            .map(|(k, v)| (k.clone(), Typed::from_value(v)))
            .collect(),
    )
}

/// The protocol parameters of a typed tree, or 400.
pub fn params(tree: &BTreeMap<String, Typed>) -> ApiResult<Params> {
    Ok(Params(
        tree.iter()
            .map(|(k, v)| Ok((k.clone(), v.to_value()?)))
            .collect::<ApiResult<_>>()?,
    ))
}

/// A free-form JSON value (stored columns, audit snapshots) with every boolean written as 0 or 1.
pub fn without_booleans(mut value: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Bool(b) => *v = serde_json::Value::from(u8::from(*b)),
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// A group of the tree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Group {
    pub id: i64,
    /// `null` for the root group.
    pub parent_id: Option<i64>,
    pub name: String,
}

impl From<store::Group> for Group {
    fn from(g: store::Group) -> Group {
        Group {
            id: g.id,
            parent_id: g.parent_id,
            name: g.name,
        }
    }
}

/// The last error a device answered a sync command with.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncError {
    /// The sync command (0–6).
    pub command: i32,
    pub code: i32,
    pub module: Option<String>,
    pub message: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
}

/// A device.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Device {
    /// The server's number for the device, in the order devices became known (the `after_id`
    /// cursor of the list).
    pub id: i64,
    pub device_id: String,
    pub display_name: Option<String>,
    pub group_id: i64,
    /// `active` or `blocked`.
    #[schema(example = "active")]
    pub status: String,
    /// 1 when the device has a password; 0 when pre-registered or reset (it enrols at its next login).
    pub enrolled: Flag,
    /// 1 when the device has reported a virus.
    pub infected: Flag,
    pub viruses_found: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    pub last_address: Option<String>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync_at: Option<OffsetDateTime>,
    pub last_error: Option<SyncError>,
    /// Soft errors of the change that returned this device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_list: Option<Vec<SoftError>>,
}

impl From<store::DeviceRecord> for Device {
    fn from(d: store::DeviceRecord) -> Device {
        Device {
            id: d.id,
            device_id: d.device_id,
            display_name: d.display_name,
            group_id: d.group_id,
            status: d.status.as_str().to_string(),
            enrolled: Flag::from(d.enrolled),
            infected: Flag::from(d.viruses_found > 0),
            viruses_found: d.viruses_found,
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            last_address: d.last_address,
            product_name: d.product_name,
            product_version: d.product_version,
            last_sync_at: d.last_sync_at,
            last_error: d.last_error.map(|e| SyncError {
                command: e.command,
                code: e.code,
                module: e.module,
                message: e.message,
                at: e.at,
            }),
            error_list: None,
        }
    }
}

/// An admin account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Admin {
    pub id: i64,
    pub name: String,
    /// `administrator`, `operator`, `auditor` or `integration`.
    pub role: String,
    pub disabled: Flag,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<store::Account> for Admin {
    fn from(a: store::Account) -> Admin {
        Admin {
            id: a.id,
            name: a.name,
            role: a.role,
            disabled: Flag::from(a.disabled),
            created_at: a.created_at,
        }
    }
}

/// An API or session token's row (the token itself is shown once, when created).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Token {
    pub id: i64,
    /// Unique; the request log names it for every call made with the token.
    pub subject: String,
    pub account_id: i64,
    pub name: String,
    /// `api` or `session`.
    pub kind: String,
    /// `active`, `revoked` or `expired`.
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl Token {
    pub fn new(t: store::TokenRecord, now: OffsetDateTime) -> Token {
        let state = if t.expires_at <= now {
            "expired"
        } else if t.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        Token {
            id: t.id,
            subject: t.subject,
            account_id: t.account_id,
            name: t.name,
            kind: t.kind.as_str().to_string(),
            state: state.to_string(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A token just made: its row and the JWT, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedToken {
    #[serde(flatten)]
    pub record: Token,
    /// The JWT: send it as the cookie `api_access_token` or as `Authorization: Bearer`.
    pub token: String,
}

/// A policy row of a group.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyRow {
    pub id: i64,
    pub group_id: i64,
    /// `/`-separated path of the setting, such as `Antivirus/ScanLevel`.
    pub path: String,
    pub value: Typed,
    /// 1: devices get the value and cannot change it; 0: stored only.
    pub locked: Flag,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_list: Option<Vec<SoftError>>,
}

impl PolicyRow {
    pub fn new(entry: store::PolicyEntry) -> ApiResult<PolicyRow> {
        let value = crate::sync::policy::decode_row_value(&entry.row.value_type, &entry.row.value)
            .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e))?;
        Ok(PolicyRow {
            id: entry.id,
            group_id: entry.row.group_id,
            path: entry.row.path,
            value: Typed::from_value(&value),
            locked: Flag::from(entry.row.locked),
            error_list: None,
        })
    }
}

/// One path of a group's effective policy and where its value comes from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Provenance {
    pub path: String,
    pub value: Typed,
    pub locked: Flag,
    /// The group whose row sets the value.
    pub group_id: i64,
    /// 1 when devices get this value (locked, valid, and no ancestor's lock wins).
    pub applied: Flag,
    /// Groups of the chain whose rows for the same path lose to this one.
    pub shadowed: Vec<i64>,
}

/// An event type the devices of a group send, at a severity (1 info .. 4 critical).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    #[serde(default)]
    pub group_id: i64,
    #[schema(minimum = 1, maximum = 4)]
    pub severity: i32,
    pub event_type: String,
}

/// A device event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    /// Server-side id, increasing in the order events were stored (the `after_id` cursor).
    pub id: i64,
    pub device_id: String,
    pub event_id: String,
    pub severity: Option<i32>,
    pub event_type: Option<String>,
    pub event_type_display_name: Option<String>,
    pub descr: Option<String>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub locid: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub rise_time: Option<OffsetDateTime>,
    pub rise_time_ms: Option<i32>,
    /// GNRL_EV_PAR1 .. GNRL_EV_PAR9.
    pub par: Vec<Option<String>>,
    pub virus_name: Option<String>,
    pub object_name: Option<String>,
    /// 1 when a field was cut to its stored length.
    pub truncated: Flag,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub source_address: String,
}

impl From<store::EventRecord> for Event {
    fn from(e: store::EventRecord) -> Event {
        Event {
            id: e.id,
            device_id: e.device_id,
            event_id: e.event_id,
            severity: e.severity,
            event_type: e.event_type,
            event_type_display_name: e.event_type_display_name,
            descr: e.descr,
            product_name: e.product_name,
            product_version: e.product_version,
            locid: e.locid,
            rise_time: e.rise_time,
            rise_time_ms: e.rise_time_ms,
            par: e.par.to_vec(),
            virus_name: e.virus_name,
            object_name: e.object_name,
            truncated: Flag::from(e.truncated),
            received_at: e.received_at,
            source_address: e.source_address,
        }
    }
}

/// An entry of the audit trail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Audit {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The account that made the change.
    pub account: String,
    /// The subject of the token it was made with.
    pub token: Option<String>,
    pub address: Option<String>,
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    /// The object before and after the change (`null` when it did not exist).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

impl From<store::AuditEntry> for Audit {
    fn from(a: store::AuditEntry) -> Audit {
        Audit {
            id: a.id,
            at: a.at,
            account: a.actor.account,
            token: a.actor.token,
            address: a.actor.address,
            action: a.action,
            object_kind: a.object_kind,
            object_id: a.object_id,
            before: a.before.map(without_booleans),
            after: a.after.map(without_booleans),
        }
    }
}

/// A file or directory of the updates directory.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UpdateFile {
    /// Relative to the updates directory, `/` between names.
    pub name: String,
    pub is_dir: Flag,
    pub size: u64,
    /// Hex SHA-256 of a file's content (`null` for a directory).
    pub sha256: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub modified: Option<OffsetDateTime>,
}

/// A container in the typed encoding (`CMD_PARAMS`, a backend command's result) as sent, checked
/// value by value: the JSON to store, or why it is refused.
pub fn container(name: &str, value: &serde_json::Value) -> Result<serde_json::Value, DomainError> {
    if !value.is_object() {
        return Err(DomainError::Invalid(format!(
            "{name} is a container: an object of named typed values"
        )));
    }
    let tree: Tree = serde_json::from_value(value.clone())
        .map_err(|e| DomainError::Invalid(format!("{name}: {e}")))?;
    params(&tree.0).map_err(|e| DomainError::Invalid(format!("{name}: {}", e.message)))?;
    serde_json::to_value(&tree).map_err(|e| DomainError::Internal(e.to_string()))
}

/// A stored container, back in its typed form.
fn stored_tree(value: &serde_json::Value) -> ApiResult<Tree> {
    serde_json::from_value(value.clone())
        .map_err(|e| ApiError::from(DomainError::Internal(format!("stored container: {e}"))))
}

/// The error container of a product backend command (seed 000), as the console set it or as the
/// server raised it (`CMD_ERR_ORIGINATOR_ID` `mobile-admin`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct ErrorContainer {
    /// `ERR_NO_BACKEND`, `ERR_NOT_SUPPORTED`, `ERR_UNKNOWN_TOKEN`, `ERR_EXPIRED_TOKEN`, or another
    /// id of the console's (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub CMD_ERR_STR_ID: Option<String>,
    /// Who raised the error.
    pub CMD_ERR_ORIGINATOR_ID: String,
    /// The originator's own error id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub CMD_ERR_ID: Option<i32>,
    pub CMD_ERR_DESCR: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub CMD_ERR_LOC_DESCR: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub CMD_ERR_FNAME: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub CMD_ERR_LNUMBER: Option<i32>,
}

/// A product backend command as its initiator sees it: everything but `CMD_PARAMS`, which may hold
/// a product backend's tokens and is for the console alone.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct BackendCommand {
    pub CMD_ID: String,
    pub CMD_NAME: String,
    pub CMD_PROD_NAME: String,
    pub CMD_PROD_VERSION: String,
    /// `pending` (routed, not taken yet), `delivered` (the console has it), `done`, `failed`.
    pub state: String,
    /// The console's result (`done`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Tree>,
    /// The error container (`failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorContainer>,
    /// The account that sent it.
    pub initiator: String,
    /// The console subscription it was given to, and its account.
    pub console: Option<String>,
    pub console_account: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When it fails unless answered.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub deadline: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<OffsetDateTime>,
}

impl BackendCommand {
    pub fn new(c: store::CommandRecord) -> ApiResult<BackendCommand> {
        Ok(BackendCommand {
            result: c.result.as_ref().map(stored_tree).transpose()?,
            error: c
                .error
                .map(|e| {
                    serde_json::from_value(e).map_err(|e| {
                        ApiError::from(DomainError::Internal(format!("stored error: {e}")))
                    })
                })
                .transpose()?,
            CMD_ID: c.id,
            CMD_NAME: c.name,
            CMD_PROD_NAME: c.prod_name,
            CMD_PROD_VERSION: c.prod_version,
            state: c.state.as_str().to_string(),
            initiator: c.initiator,
            console: c.console,
            console_account: c.console_account,
            created_at: c.created_at,
            deadline: c.deadline,
            delivered_at: c.delivered_at,
            ended_at: c.ended_at,
        })
    }
}

/// What a console reads of a command given to it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct BackendPayload {
    pub CMD_NAME: String,
    pub CMD_PROD_NAME: String,
    pub CMD_PROD_VERSION: String,
    /// As the initiator sent them.
    pub CMD_PARAMS: Tree,
}

impl BackendPayload {
    pub fn new(p: crate::domain::backend::Payload) -> ApiResult<BackendPayload> {
        Ok(BackendPayload {
            CMD_PARAMS: stored_tree(&p.params)?,
            CMD_NAME: p.name,
            CMD_PROD_NAME: p.prod_name,
            CMD_PROD_VERSION: p.prod_version,
        })
    }
}

/// A service console's subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct BackendConsole {
    /// The subscription id.
    pub id: String,
    pub account: String,
    /// `poll` (REST event polling) or `live` (the WebSocket API).
    pub channel: String,
    pub CMD_PROD_NAME: String,
    pub CMD_PROD_VERSION: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Gone after this unless it retrieves (or its connection lasts).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// Commands given to it so far.
    pub assigned: i64,
}

impl From<store::ConsoleRecord> for BackendConsole {
    fn from(c: store::ConsoleRecord) -> BackendConsole {
        BackendConsole {
            id: c.id,
            account: c.account,
            channel: c.channel.as_str().to_string(),
            CMD_PROD_NAME: c.prod_name,
            CMD_PROD_VERSION: c.prod_version,
            created_at: c.created_at,
            expires_at: c.expires_at,
            assigned: c.assigned,
        }
    }
}

/// The result of a change that returns no object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Done {
    /// The audit entry of the change (`null` when nothing changed).
    pub audit_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_list: Option<Vec<SoftError>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_type_survives_the_typed_encoding() {
        let value = Value::Params(
            Params::new()
                .with("b", Value::Bool(true))
                .with("i", Value::Int(-5))
                .with("l", Value::Long(1 << 40))
                .with("f", Value::Float(1.5))
                .with("d", Value::Double(2.25))
                .with("s", Value::String("x".into()))
                .with("dt", Value::Date(time::macros::date!(2026 - 12 - 05)))
                .with(
                    "ts",
                    Value::DateTime(time::macros::datetime!(2026-12-05 10:00:00 UTC)),
                )
                .with("bin", Value::Binary(vec![0, 1, 255]))
                .with(
                    "a",
                    Value::Array(vec![Value::Int(1), Value::String("two".into())]),
                ),
        );
        let typed = Typed::from_value(&value);
        let json = serde_json::to_string(&typed).unwrap();
        assert!(!json.contains("true") && !json.contains("false"), "{json}");
        let back: Typed = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_value().unwrap(), value);
    }

    #[test]
    fn wrong_types_are_refused() {
        for bad in [
            r#"{"type":"bool","value":true}"#,
            r#"{"type":"int","value":3000000000}"#,
            r#"{"type":"nope","value":1}"#,
            r#"{"type":"int"}"#,
        ] {
            assert!(serde_json::from_str::<Typed>(bad).is_err(), "{bad}");
        }
        let bad_date: Typed = serde_json::from_str(r#"{"type":"date","value":"5 Dec"}"#).unwrap();
        assert!(bad_date.to_value().is_err());
    }

    #[test]
    fn free_form_values_lose_their_booleans() {
        let v = without_booleans(serde_json::json!({"a": true, "b": [false, {"c": true}]}));
        assert_eq!(v, serde_json::json!({"a": 1, "b": [0, {"c": 1}]}));
    }
}
