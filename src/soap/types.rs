//! The protocol's data types (SPEC section 3) as plain Rust values.
//!
//! Field names follow the protocol's, in snake case; the wire spelling lives with the XML code
//! in `fields.rs`. Optional wire fields are `Option`s.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::params::Params;
use super::serde_fmt::{b64, b64_opt};

/// `param-error`: what went wrong, in the original error container's shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ParamError {
    pub code: i32,
    pub module: String,
    pub file: String,
    pub line: i32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locdata: Option<LocData>,
}

impl ParamError {
    /// An error without source location or localisation data.
    pub fn new(code: i32, module: impl Into<String>, message: impl Into<String>) -> Self {
        ParamError {
            code,
            module: module.into(),
            file: String::new(),
            line: 0,
            message: message.into(),
            locdata: None,
        }
    }
}

/// Localisation data of an error: a format string id within a module, and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LocData {
    pub format_id: i32,
    pub format: String,
    pub locmodule: String,
    #[serde(default)]
    pub args: Vec<String>,
}

/// A server command, or a device's result for one (same `code`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Command {
    pub code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<CmdData>,
}

impl Command {
    /// A command without data (`SRV_NO_COMMANDS` and the `*_GET` requests).
    pub fn bare(code: i32) -> Self {
        Command { code, data: None }
    }
}

/// The polymorphic `data` of a command, by its `xsi:type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmdData {
    /// `aklwngt:CmdError`
    Error(ParamError),
    /// `aklwngt:CmdHash`
    Hash(#[serde(with = "b64")] Vec<u8>),
    /// `aklwngt:CmdPar`
    Par(Params),
    /// `aklwngt:CmdParAndHash`
    ParAndHash {
        #[serde(with = "b64")]
        hash: Vec<u8>,
        parameters: Params,
    },
    /// `aklwngt:CmdSubscriptions`
    Subscriptions(Subscriptions),
    /// `aklwngt:CmdAppInfo` (boxed: it is several times larger than the other variants)
    AppInfo(Box<AppInfo>),
    /// `aklwngt:CmdAppState`
    AppState(AppState),
    /// `aklwngt:string-array`
    StringArray(Vec<String>),
}

/// Event types a device should send, per severity.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subscriptions {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub hash: Option<Vec<u8>>,
    #[serde(default)]
    pub types_info: Vec<String>,
    #[serde(default)]
    pub types_warning: Vec<String>,
    #[serde(default)]
    pub types_error: Vec<String>,
    #[serde(default)]
    pub types_critical: Vec<String>,
}

/// `CmdAppInfo`: what is installed, under which licences, on which device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppInfo {
    #[serde(with = "b64")]
    pub hash: Vec<u8>,
    pub prod_info: ProdInfo,
    pub license_info: LicenseInfo,
    pub dev_info: DevInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProdInfo {
    /// `product-name`: internal application name.
    pub product_name: String,
    /// `product-version`: internal application version ("X.Y").
    pub product_version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub install_time: OffsetDateTime,
    /// `dn`: display name shown to administrators.
    pub display_name: String,
    /// `prodVersion`: full version "a.b.c.d".
    pub prod_version: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LicenseInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_current: Option<LicKeyInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_next: Option<LicKeyInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicKeyInfo {
    pub key_type: i32,
    pub key_prod_suite_id: i32,
    pub key_app_id: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub key_install_date: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub key_expiration_date: OffsetDateTime,
    /// Licence period in days.
    pub key_lic_period: i32,
    /// Number of devices; older clients do not send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_lic_count: Option<i32>,
    pub key_serial: String,
    pub key_maj_ver: String,
    pub key_prod_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DevInfo {
    pub presumed_name: String,
    pub presumed_group: String,
    /// 1 Windows Mobile, 2 Symbian; 0 seen in the field.
    pub os_type: i32,
    pub os_ver_major: i32,
    pub os_ver_minor: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_ver: Option<String>,
    /// Bytes of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_type: Option<String>,
}

/// `CmdAppState`: whether the application and its real-time protection run, and base ages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppState {
    #[serde(with = "b64")]
    pub hash: Vec<u8>,
    pub state_app: i32,
    pub state_rtp: i32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub last_full_scan: Option<OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub last_update_time: Option<OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub bases_date: Option<OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub bases_install_date: Option<OffsetDateTime>,
    pub bases_records: i32,
}

/// `sync-info`: the device's current hash of each synchronised item.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncInfo {
    #[serde(with = "b64")]
    pub hash_stgs: Vec<u8>,
    #[serde(with = "b64")]
    pub hash_pol: Vec<u8>,
    #[serde(with = "b64")]
    pub hash_sbsc: Vec<u8>,
    #[serde(with = "b64")]
    pub hash_info: Vec<u8>,
    #[serde(with = "b64")]
    pub hash_state: Vec<u8>,
}

/// `event-info`: one event with the id used to drop resent duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventInfo {
    pub event_id: String,
    pub body: EventBody,
}

/// `event-body`. Decoded leniently: a field whose value cannot be read is `None` and its wire
/// name is listed in `odd_fields`, so one odd event never blocks a device's queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type_display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locid: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub rise_time: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise_time_ms: Option<i32>,
    /// `par1` ... `par9`.
    #[serde(default, skip_serializing_if = "no_pars")]
    pub par: [Option<String>; 9],
    /// Wire names of fields that were present but unreadable (bad number or date, markup inside
    /// text, cut to the size limit, repeated, or a missing `eventId`/`body`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub odd_fields: Vec<String>,
}

fn no_pars(par: &[Option<String>; 9]) -> bool {
    par.iter().all(Option::is_none)
}

/// `klft-file-info-t`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub file_name: String,
    pub is_dir: bool,
    pub read_permission: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub create_time: OffsetDateTime,
    pub full_file_size: u64,
}

impl FileInfo {
    /// The `info` of an error reply: every field zero. Clients generated from the original schema
    /// in strict mode require `info` even when `oError` says there is none.
    pub fn zero() -> FileInfo {
        FileInfo {
            file_name: String::new(),
            is_dir: false,
            read_permission: false,
            create_time: OffsetDateTime::UNIX_EPOCH,
            full_file_size: 0,
        }
    }
}

/// `klft-file-chunk-t`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChunk {
    pub file_name: String,
    /// CRC-32 (IEEE) of `buff`, 0 for an empty chunk; an `unsignedLong` on the wire.
    pub crc: u32,
    pub start_pos_in_file: u64,
    pub full_file_size: u64,
    #[serde(with = "b64")]
    pub buff: Vec<u8>,
}
