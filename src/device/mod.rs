//! The device protocol service: decoded aklwngt requests in, responses out, with the store behind it.
//!
//! Knows nothing of sockets or of the listener: [`DeviceService::handle`] takes request bytes and
//! the peer address and returns a status and response bytes; [`DeviceService::document`] serves the
//! WSDL. One file per operation; errors become `param-error`s only through
//! [`crate::error::DeviceError`].

mod klft;
mod policy_cache;
mod put_events;
mod put_result;
mod session;
mod sync;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{debug, info_span, warn, Instrument};

use crate::auth::{AddressLimiter, Secret};
use crate::domain::throttle::ThrottlePolicy;
use crate::domain::Domain;
use crate::error::DeviceError;
use crate::sessions::{Session, Sessions};
use crate::soap::{self, Decoded, MessageContext, Request, Response};
use crate::store::Store;
use crate::updates::UpdatesDir;

pub use policy_cache::GroupState;

/// Who may enrol on first contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrolmentMode {
    /// Any device id enrols with the password it presents first.
    #[default]
    Open,
    /// Only device ids an admin pre-registered may connect.
    Closed,
}

/// Protocol settings of the service (the `[protocol]` section of the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolConfig {
    pub enrolment: EnrolmentMode,
    pub session_idle_secs: u64,
    pub session_lifetime_secs: u64,
    /// Live sessions per device; a new session replaces the device's oldest beyond this.
    pub max_sessions_per_device: usize,
    /// Live sessions in all (about 1 KiB of memory each when kept in memory); beyond this a new
    /// session is refused with 1195 unless it replaces one of its device's own.
    pub max_sessions: usize,
    /// Most commands the server sends in one session before it answers SRV_NO_COMMANDS.
    pub max_commands_per_session: u32,
    /// Most events one PutEvents call may carry; larger calls are refused whole.
    pub max_events_per_call: usize,
    /// Largest chunk klft-GetNextFileChunk returns (at most 1 MiB).
    pub max_chunk_bytes: u32,
    /// Failed logins per device id (and per device id from one address) before attempts wait.
    pub login_failures_per_device: u32,
    /// Failed logins per source address before attempts from it wait.
    pub login_failures_per_address: u32,
    pub login_failure_window_secs: u64,
    /// Longest wait a device id or an address as a whole is given after failed logins: what the
    /// rightful device, or other devices behind the same address, wait at most.
    pub login_max_shared_delay_ms: u64,
    /// Longest wait one device id from one address is given after its failed logins.
    pub login_max_pair_delay_ms: u64,
    /// New devices one source address may enrol per minute (0: no limit).
    pub enrolments_per_address_per_minute: u32,
    /// Keep sessions in the database so that several server nodes on one database serve a device's
    /// calls interchangeably. Unset: on for PostgreSQL, off (sessions in memory) for SQLite.
    pub shared_sessions: Option<bool>,
    /// `xsi:type` of string values in settings and policy pushes: `wstring` (what deployed devices
    /// require) or `string` (for clients built with strict toolkits such as zeep or .NET).
    pub string_value_type: soap::StringType,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            enrolment: EnrolmentMode::Open,
            session_idle_secs: 600,
            session_lifetime_secs: 3600,
            max_sessions_per_device: 4,
            max_sessions: 200_000,
            max_commands_per_session: 16,
            max_events_per_call: 100,
            max_chunk_bytes: 32768,
            login_failures_per_device: 5,
            login_failures_per_address: 50,
            login_failure_window_secs: 300,
            login_max_shared_delay_ms: 2000,
            login_max_pair_delay_ms: 10_000,
            enrolments_per_address_per_minute: 120,
            shared_sessions: None,
            string_value_type: soap::StringType::WString,
        }
    }
}

impl ProtocolConfig {
    pub fn expiry(&self) -> crate::sessions::Expiry {
        crate::sessions::Expiry {
            idle: std::time::Duration::from_secs(self.session_idle_secs),
            absolute: std::time::Duration::from_secs(self.session_lifetime_secs),
        }
    }

    pub fn session_limits(&self) -> crate::sessions::SessionLimits {
        crate::sessions::SessionLimits {
            per_device: self.max_sessions_per_device,
            total: self.max_sessions,
        }
    }

    pub fn throttle(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            window: std::time::Duration::from_secs(self.login_failure_window_secs),
            free_per_name: self.login_failures_per_device,
            free_per_address: self.login_failures_per_address,
            max_shared_delay: std::time::Duration::from_millis(self.login_max_shared_delay_ms),
            max_pair_delay: std::time::Duration::from_millis(self.login_max_pair_delay_ms),
        }
    }
}

pub struct DeviceService {
    store: Arc<dyn Store>,
    sessions: Arc<dyn Sessions>,
    domain: Arc<Domain>,
    secret: Secret,
    enrolments: AddressLimiter,
    config: ProtocolConfig,
    limits: soap::Limits,
    updates: UpdatesDir,
    groups: policy_cache::PolicyCache,
    documents: Documents,
}

/// Static documents served on GET (the WSDL and its schemas).
#[derive(Default, Clone)]
pub struct Documents {
    pub files: Vec<(&'static str, &'static str, &'static str)>,
    /// `HOST[:PORT]` devices reach the server at, for the WSDL's service address when the
    /// request's `Host` header is not a plain host name or address.
    pub public_address: Option<String>,
}

/// The address the WSDL in `wsdl/` names, replaced by the one clients reach.
const WSDL_ADDRESS: &str = "https://localhost:13292/";

/// Whether `host` is a host name, an IPv4 address or a bracketed IPv6 address, with an optional
/// port: nothing that could break out of the attribute it is written into.
pub fn valid_host(host: &str) -> bool {
    let port_ok = |port: Option<&str>| port.is_none_or(|p| p.parse::<u16>().is_ok());
    if let Some(bracketed) = host.strip_prefix('[') {
        let Some((v6, rest)) = bracketed.split_once(']') else {
            return false;
        };
        let port = match rest {
            "" => None,
            _ => match rest.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        return v6.parse::<std::net::Ipv6Addr>().is_ok() && port_ok(port);
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    port_ok(port)
        && !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl DeviceService {
    pub fn new(
        store: Arc<dyn Store>,
        sessions: Arc<dyn Sessions>,
        domain: Arc<Domain>,
        secret: Secret,
        config: ProtocolConfig,
        updates: UpdatesDir,
    ) -> DeviceService {
        let limits = soap::Limits {
            // Decode a little past the configured limit so that an oversized call is answered with a
            // clear "too many events" rather than a generic format error.
            max_events: config.max_events_per_call.saturating_add(1),
            ..soap::Limits::default()
        };
        DeviceService {
            domain,
            enrolments: AddressLimiter::per_minute(config.enrolments_per_address_per_minute),
            store,
            sessions,
            secret,
            config,
            limits,
            updates,
            groups: policy_cache::PolicyCache::default(),
            documents: Documents::default(),
        }
    }

    pub fn with_documents(mut self, documents: Documents) -> DeviceService {
        self.documents = documents;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn sessions(&self) -> &Arc<dyn Sessions> {
        &self.sessions
    }

    /// One request: bytes in, status and bytes out.
    pub async fn handle(&self, body: &[u8], peer: SocketAddr) -> (StatusCode, Vec<u8>) {
        let decoded = match soap::decode_request(body, &self.limits) {
            Ok(decoded) => decoded,
            Err(fault) => {
                warn!(%peer, reason = %fault.reason.escape_debug(), "SOAP fault");
                let ctx = MessageContext::default();
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    soap::encode_fault(&ctx, &fault),
                );
            }
        };
        let op = decoded.operation();
        let (mut ctx, response) = match decoded {
            Decoded::Ok { ctx, request } => {
                let span = info_span!("op", op = op.wire_name());
                let response = self.dispatch(request, peer).instrument(span).await;
                (ctx, response)
            }
            Decoded::Invalid { ctx, op, error } => {
                let e = DeviceError::from_codec(op, &error);
                warn!(%peer, op = op.wire_name(), error = %error.to_string().escape_debug(), "invalid request");
                (ctx, Response::error_reply(op, e.to_param_error()))
            }
        };
        ctx.string_type = self.config.string_value_type;
        (StatusCode::OK, soap::encode_response(&ctx, &response))
    }

    async fn dispatch(&self, request: Request, peer: SocketAddr) -> Response {
        let op = request.operation();
        let now = OffsetDateTime::now_utc();
        let result = match request {
            Request::SessionBegin {
                device_id,
                password,
                protocol_version,
            } => {
                self.session_begin(&device_id, &password, protocol_version, peer, now)
                    .await
            }
            Request::Heartbeat { session_id, sync } => {
                self.heartbeat(&session_id, sync, peer, now).await
            }
            Request::PutResult { session_id, result } => {
                self.put_result(&session_id, result, now).await
            }
            Request::PutEvents { session_id, events } => {
                self.put_events(&session_id, events, peer, now).await
            }
            Request::GetFileInfo {
                session_id,
                file_name,
            } => self.get_file_info(&session_id, &file_name, now).await,
            Request::GetNextFileChunk {
                session_id,
                file_name,
                start_pos,
                needed_size,
            } => {
                self.get_next_chunk(&session_id, &file_name, start_pos, needed_size, now)
                    .await
            }
            Request::SessionEnd { session_id } => self.session_end(&session_id).await,
        };
        result.unwrap_or_else(|e| {
            match &e {
                DeviceError::Unavailable { internal, .. } => {
                    tracing::error!(error = %internal, "request failed")
                }
                // Logged once where the limit was hit.
                DeviceError::TryLater(_) => {}
                other => debug!(error = %other.to_string().escape_debug(), code = other.code(), "request refused"),
            }
            Response::error_reply(op, e.to_param_error())
        })
    }

    /// The live session `id`, or the protocol's "unknown session" error.
    async fn session(&self, id: &str, now: OffsetDateTime) -> Result<Session, DeviceError> {
        self.sessions
            .get(id, now)
            .await?
            .ok_or_else(DeviceError::unknown_session)
    }
}

impl DeviceService {
    /// A document served on GET (the WSDL and its schemas): its content type and text, or `None`
    /// for an unknown path. `host` is the request's Host header.
    pub fn document(&self, path: &str, host: Option<&str>) -> Option<(&'static str, String)> {
        let name = path.trim_end_matches('/').rsplit('/').next()?;
        let (_, content_type, text) =
            self.documents.files.iter().find(|(file, _, _)| {
                *file == name || (name == "wsdl" && file.ends_with(".wsdl"))
            })?;
        let is_wsdl = name == "wsdl" || name.ends_with(".wsdl");
        // Point the service address at the host the client used to fetch the WSDL, if it is one;
        // otherwise at the configured public address.
        let address = host
            .filter(|h| valid_host(h))
            .or(self.documents.public_address.as_deref());
        let text = match address {
            Some(address) if is_wsdl => text.replace(
                WSDL_ADDRESS,
                &crate::soap::escape_attribute(&format!("https://{address}/")),
            ),
            _ => text.to_string(),
        };
        Some((content_type, text))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn hosts_are_names_or_addresses_with_an_optional_port() {
        for good in [
            "localhost",
            "mdm.example.com",
            "mdm.example.com:8443",
            "192.0.2.7",
            "192.0.2.7:13292",
            "[::1]",
            "[2001:db8::1]:13292",
            "a-b.c1",
        ] {
            assert!(valid_host(good), "{good}");
        }
        for bad in [
            "",
            "evil\"><x/>",
            "host:port",
            "host:99999",
            "-lead.example",
            "a..b",
            "[::1",
            "::1",
            "exa mple.com",
            "host/path",
            "user@host",
        ] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
