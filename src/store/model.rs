//! Records the store reads and writes: plain data shared by every backend.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::soap::{AppInfo, AppState, ParamError, Params};
use crate::sync::Known;

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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SettingsRecord {
    pub current: Option<Params>,
    pub pending: Option<Params>,
    pub pending_rev: i64,
}

/// One policy row as an admin wrote it (see the README for the value formats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRow {
    pub group_id: i64,
    pub path: String,
    pub value_type: String,
    pub value: String,
    pub locked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRow {
    pub group_id: i64,
    pub severity: i32,
    pub event_type: String,
}

/// The change counters of the policy and subscription tables (bumped by triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Revisions {
    pub policy: i64,
    pub subscriptions: i64,
}

/// A device's answer to one sync command, as it is persisted.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncResult {
    AppInfo(Box<AppInfo>),
    AppState(AppState),
    /// SETTINGS_GET: the device's settings and their hash.
    SettingsReported {
        hash: Vec<u8>,
        tree: Params,
    },
    /// SETTINGS_PUT acknowledged: the tree that was pushed and the pending revision it carried.
    SettingsPushed {
        hash: Vec<u8>,
        tree: Params,
        rev: i64,
    },
    PolicyPushed {
        hash: Vec<u8>,
        digest: Vec<u8>,
    },
    SubscriptionsPushed {
        hash: Vec<u8>,
        digest: Vec<u8>,
    },
    /// The device answered `command` with CmdError.
    Failed {
        command: i32,
        error: ParamError,
    },
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
