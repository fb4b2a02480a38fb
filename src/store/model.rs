//! Records the store reads and writes: plain data shared by every backend.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::soap::Params;
pub use crate::sync::policy::{PolicyRow, SubscriptionRow};
pub use crate::sync::result::{SettingsWrite, SyncColumn, SyncResult, SyncWrite};
use crate::sync::Known;

/// The root of the group tree and the group of devices whose app info has not arrived yet.
pub const ROOT_GROUP: i64 = 1;
pub const UNASSIGNED_GROUP: i64 = 2;

/// What SessionBegin needs to know about a device id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLogin {
    pub id: i64,
    /// `None`: pre-registered or reset by an admin; the next login enrols its password.
    pub credential: Option<Vec<u8>>,
    pub blocked: bool,
}

/// The stored sync state of a device and the group that decides its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecord {
    pub group_id: i64,
    pub known: Known,
    /// The policy/subscription revisions as of this read (saves planning a second query).
    pub revisions: Revisions,
}

/// The device's settings tree and the admin's pending changes to it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SettingsRecord {
    pub current: Option<Params>,
    pub pending: Option<Params>,
    pub pending_rev: i64,
}

/// The change counters of the policy and subscription tables (bumped by triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Revisions {
    pub policy: i64,
    pub subscriptions: i64,
}

/// What recording a result changed beyond the sync state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recorded {
    /// The device moved to this group (its presumed group, on its first app info).
    pub moved_to: Option<i64>,
}

/// When and from where a device was last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub at: OffsetDateTime,
    pub address: String,
}

/// A device session as the database keeps it, for nodes that share sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    pub id: String,
    /// Row id of the device.
    pub device: i64,
    pub created: OffsetDateTime,
    pub last_used: OffsetDateTime,
    /// The rest of the session (its sync in progress), as the sessions module serialises it.
    pub data: serde_json::Value,
}

/// Which sessions are live: used since `used_since` and created since `created_since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCutoff {
    pub used_since: OffsetDateTime,
    pub created_since: OffsetDateTime,
}

/// Who made a change, and from where: the audit trail's "who".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Actor {
    /// The admin account, or a name for the server itself (`system`) or a device (`device:ID`).
    pub account: String,
    /// The subject of the API token the change was made with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The address the request came from, if it came over the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Actor {
    /// The server acting on its own (start-up, the command line on the server's machine).
    pub fn system(name: &str) -> Actor {
        Actor {
            account: name.to_string(),
            token: None,
            address: None,
        }
    }
}

/// A group of devices, a node of the group tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
}

/// Whether a device may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Active,
    Blocked,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Blocked => "blocked",
        }
    }

    pub fn parse(text: &str) -> Option<DeviceStatus> {
        match text {
            "active" => Some(DeviceStatus::Active),
            "blocked" => Some(DeviceStatus::Blocked),
            _ => None,
        }
    }
}

/// A device's state as lists show and filter it: blocked, else never seen, else active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Active,
    Blocked,
    NeverSeen,
}

impl DeviceState {
    pub fn parse(text: &str) -> Option<DeviceState> {
        match text {
            "active" => Some(DeviceState::Active),
            "blocked" => Some(DeviceState::Blocked),
            "never_seen" => Some(DeviceState::NeverSeen),
            _ => None,
        }
    }
}

/// Which devices a list shows. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFilter {
    pub group_ids: Vec<i64>,
    pub states: Vec<DeviceState>,
    /// Part of the device id or display name, any case.
    pub search: Option<String>,
    /// Only devices that reported a virus (`true`) or none (`false`).
    pub infected: Option<bool>,
    /// Last seen at or after / before.
    pub seen_after: Option<OffsetDateTime>,
    pub seen_before: Option<OffsetDateTime>,
    /// Only devices whose row id is larger (a cursor, instead of a deep offset).
    pub after_id: Option<i64>,
}

/// A change of a device, made in one transaction; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceChange {
    pub group_id: Option<i64>,
    /// `Some("")` removes the display name.
    pub display_name: Option<String>,
    pub blocked: Option<bool>,
}

/// The fleet at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FleetStats {
    pub devices: i64,
    pub active: i64,
    pub blocked: i64,
    pub never_seen: i64,
    pub infected: i64,
    /// Events received per hour since the time asked for: (start of the hour, count), oldest first,
    /// hours without events left out.
    pub events_per_hour: Vec<(OffsetDateTime, i64)>,
}

/// A page of a list: `limit` items from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub offset: u64,
    pub limit: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            offset: 0,
            limit: 100,
        }
    }
}

/// One page of a list, and how many items the whole filtered list has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// The last error a device answered a sync command with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncError {
    pub command: i32,
    pub code: i32,
    pub module: Option<String>,
    pub message: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
}

/// A device as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRecord {
    pub id: i64,
    pub device_id: String,
    pub display_name: Option<String>,
    pub group_id: i64,
    pub status: DeviceStatus,
    /// Whether the device has a password (false: pre-registered or reset, enrols at its next login).
    pub enrolled: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    pub last_address: Option<String>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub viruses_found: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync_at: Option<OffsetDateTime>,
    pub last_error: Option<SyncError>,
}

/// A device with everything it reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceDetail {
    pub device: DeviceRecord,
    /// The columns of `device_app_info` (product, licence keys, device fields).
    pub app_info: Option<serde_json::Map<String, serde_json::Value>>,
    /// The columns of `device_app_state`.
    pub app_state: Option<serde_json::Map<String, serde_json::Value>>,
    pub settings: SettingsRecord,
}

/// A policy row with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyEntry {
    pub id: i64,
    #[serde(flatten)]
    pub row: PolicyRow,
}

/// Which events a query returns. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventQuery {
    /// DeviceIds.
    pub device_ids: Vec<String>,
    /// Events of the devices directly in these groups.
    pub group_ids: Vec<i64>,
    pub severities: Vec<i32>,
    pub event_types: Vec<String>,
    /// Received at or after / before.
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Part of the description, event type, virus name or object name, any case.
    pub text: Option<String>,
    /// Only events with a larger id, oldest first (a cursor for tailing); without it, newest first.
    pub after_id: Option<i64>,
    pub page: PageRequest,
}

/// A stored device event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub device_id: String,
    pub event_id: String,
    pub severity: Option<i32>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub event_type: Option<String>,
    pub event_type_display_name: Option<String>,
    pub descr: Option<String>,
    pub locid: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub rise_time: Option<OffsetDateTime>,
    pub rise_time_ms: Option<i32>,
    pub par: [Option<String>; 9],
    pub virus_name: Option<String>,
    pub object_name: Option<String>,
    pub truncated: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub source_address: String,
}

/// An event received on the intake webhook (seed 002's Table 1), as sent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct IntakeEvent {
    /// The sender's `Id`, a GUID in lower case.
    pub uid: String,
    /// `Event`: its code when a number was sent, its name when a name was.
    pub event_code: Option<i64>,
    pub event_name: Option<String>,
    pub entity_id: Option<String>,
    pub user_id: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub orch_timestamp_utc: Option<OffsetDateTime>,
    pub operation_key: Option<String>,
    pub signature: Option<String>,
    pub worker_admin_name: Option<String>,
    pub text: Option<String>,
    /// `EventType` as sent: 1 Info, 2 Error, 3 SecurityIncident, 4 Correction (others kept).
    pub event_type: Option<i64>,
    pub ip: Option<String>,
    pub tenant_id: Option<String>,
    pub entity_data: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sended_at: Option<OffsetDateTime>,
}

/// The two kinds of stored events under retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTable {
    /// Device events (`events`).
    Device,
    /// Events received on the intake webhook (`intake_events`).
    Intake,
}

/// What a pass of event retention did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Retained {
    /// Events deleted.
    pub deleted: u64,
    /// Events due for deletion that an export sink has not passed yet, kept.
    pub held_back: u64,
}

/// A stored intake event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntakeRecord {
    pub id: i64,
    pub event: IntakeEvent,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub source_address: String,
    /// The account whose token came with it.
    pub account: Option<String>,
}

/// One entry of the audit trail: who changed what, from where, when, and the object before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: Actor,
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Which audit entries a query returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditQuery {
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub account: Option<String>,
    pub page: PageRequest,
}

/// An admin account (people) or integration account (machines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What kind of token a token row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Made on purpose, long-lived, counted against the account's cap.
    Api,
    /// Issued by an interactive login, short-lived.
    Session,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => "api",
            TokenKind::Session => "session",
        }
    }

    pub fn parse(text: &str) -> Option<TokenKind> {
        match text {
            "api" => Some(TokenKind::Api),
            "session" => Some(TokenKind::Session),
            _ => None,
        }
    }
}

/// A token's row: the JWT itself is never stored, only what identifies and limits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: i64,
    pub subject: String,
    pub account_id: i64,
    pub name: String,
    pub kind: TokenKind,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A token about to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub subject: String,
    pub account_id: i64,
    pub name: String,
    pub kind: TokenKind,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Why a token could not be created: the account holds `max` active and revoked tokens, and the
/// first of them expires at `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCapReached {
    pub max: u64,
    pub until: OffsetDateTime,
}

/// An entry of the event bus's outbox, in commit order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusRecord {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub topic: String,
    pub object_id: Option<String>,
    pub payload: Option<serde_json::Value>,
    /// Device events this entry stands for: rows of `events` from, to (inclusive).
    pub events: Option<(i64, i64)>,
}

/// How a service console receives its commands (seed 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleChannel {
    /// Event polling over the REST API.
    Poll,
    /// Pushed over the live WebSocket API.
    Live,
}

impl ConsoleChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleChannel::Poll => "poll",
            ConsoleChannel::Live => "live",
        }
    }

    pub fn parse(text: &str) -> Option<ConsoleChannel> {
        match text {
            "poll" => Some(ConsoleChannel::Poll),
            "live" => Some(ConsoleChannel::Live),
            _ => None,
        }
    }
}

/// A service console's registration for one product name and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsoleRecord {
    /// The subscription id.
    pub id: String,
    pub account: String,
    pub channel: ConsoleChannel,
    /// For a live console: the node holding its connection, and the live session.
    pub node: Option<String>,
    pub session: Option<String>,
    pub prod_name: String,
    pub prod_version: String,
    pub created_at: OffsetDateTime,
    /// Live until then, unless renewed.
    pub expires_at: OffsetDateTime,
    /// Commands given to it so far.
    pub assigned: i64,
}

/// Where a product backend command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandState {
    /// Stored and routed to a console, which has not taken it yet.
    Pending,
    /// The console has it (the event was pushed or retrieved, or it read the payload).
    Delivered,
    /// The console set a result.
    Done,
    /// The console set an error, or the server did (no console, the console gone, the deadline).
    Failed,
}

impl CommandState {
    pub const ALL: [CommandState; 4] = [
        CommandState::Pending,
        CommandState::Delivered,
        CommandState::Done,
        CommandState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Pending => "pending",
            CommandState::Delivered => "delivered",
            CommandState::Done => "done",
            CommandState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<CommandState> {
        CommandState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the command has ended (no console may answer it any more).
    pub fn is_final(self) -> bool {
        matches!(self, CommandState::Done | CommandState::Failed)
    }
}

/// A product backend command as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRecord {
    /// `CMD_ID`.
    pub id: String,
    /// `CMD_NAME`, `CMD_PROD_NAME`, `CMD_PROD_VERSION`.
    pub name: String,
    pub prod_name: String,
    pub prod_version: String,
    /// `CMD_PARAMS`, in the API's typed encoding.
    pub params: serde_json::Value,
    pub state: CommandState,
    /// The account that sent it.
    pub initiator: String,
    /// The console it was given to, and that console's account.
    pub console: Option<String>,
    pub console_account: Option<String>,
    /// The result container (done) or the error container (failed).
    pub result: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
    pub created_at: OffsetDateTime,
    pub deadline: OffsetDateTime,
    pub delivered_at: Option<OffsetDateTime>,
    pub ended_at: Option<OffsetDateTime>,
}

/// A command to store: routed, in the same transaction, to the live console for its product and
/// version that has been given the fewest, or stored as failed with `no_console` when there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    pub id: String,
    pub name: String,
    pub prod_name: String,
    pub prod_version: String,
    pub params: serde_json::Value,
    pub now: OffsetDateTime,
    pub deadline: OffsetDateTime,
    /// The error container the command ends with when no console is live.
    pub no_console: serde_json::Value,
}

/// How a command ends.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandEnd {
    Done(serde_json::Value),
    Failed(serde_json::Value),
}

/// Which commands a list shows, newest first. Empty or `None` means any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandFilter {
    pub states: Vec<CommandState>,
    pub name: Option<String>,
    pub prod_name: Option<String>,
    pub prod_version: Option<String>,
    pub initiator: Option<String>,
    pub page: PageRequest,
}

/// A command not yet ended, with whether the console it was routed to is still live.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenCommand {
    pub command: CommandRecord,
    pub console_live: bool,
}
