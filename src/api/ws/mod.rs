//! The live External API of seed 003 over WebSocket, at `GET /api/v1/ws` on the admin port (so
//! WSS): JSON requests and replies, events pushed as they are committed, subscriptions with
//! wildcards, commands relayed between sessions, logs to GELF. [`protocol`] is the wire format and
//! the error codes, [`hub`] the sessions of this node and the dispatcher that follows the bus,
//! `conn` one connection. The rules (matching, which bus entries are which events, rights) are the
//! domain's (`domain::live`).

mod backend;
mod conn;
pub mod hub;
pub mod protocol;

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::ApiState;
use crate::export::gelf::GelfConfig;
use crate::server::listener::ConnectionHold;

/// The `[live]` section: bounds on what a live API client may make the server hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// Serve `GET /api/v1/ws`.
    pub enabled: bool,
    /// Largest message a client may send.
    pub max_message_bytes: usize,
    /// Subscriptions per session (besides the two automatic ones).
    pub max_subscriptions: usize,
    pub max_sessions_per_user: usize,
    /// Live sessions on this node.
    pub max_sessions: usize,
    /// Messages waiting to be sent to one connection; a client that lets more pile up is
    /// disconnected (and may resume with `after`).
    pub queue_messages: usize,
    /// The login must come within this many seconds of the upgrade.
    pub login_timeout_secs: u64,
    /// The server pings this often.
    pub ping_secs: u64,
    /// A connection that sends nothing (not even a pong) this long is closed.
    pub idle_timeout_secs: u64,
    /// A relayed command must be answered within this ...
    pub cmd_timeout_secs: u64,
    /// ... and each ack from the target gives it this much longer.
    pub ack_extend_secs: u64,
    /// A closed session's id may be recovered by its user for this long.
    pub recover_minutes: u64,
    pub gelf: GelfConfig,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            enabled: true,
            max_message_bytes: 1024 * 1024,
            max_subscriptions: 100,
            max_sessions_per_user: 32,
            max_sessions: 10_000,
            queue_messages: 4096,
            login_timeout_secs: 10,
            ping_secs: 30,
            idle_timeout_secs: 90,
            cmd_timeout_secs: 5,
            ack_extend_secs: 180,
            recover_minutes: 10,
            gelf: GelfConfig::default(),
        }
    }
}

/// `GET /api/v1/ws`: upgrades to a live API connection.
pub async fn upgrade(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    hold: Option<axum::Extension<ConnectionHold>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(hub) = state.live.clone() else {
        return ApiError::not_found("the live API is turned off").into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::new(rejection.status(), rejection.body_text()).into_response()
        }
    };
    let cookie = super::extract::token_in(&headers);
    let hold = hold.map(|h| h.0);
    let max = hub.config.max_message_bytes;
    // Small buffers: a thousand idle subscribers should not hold 256 KiB each.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| conn::run(hub, socket, peer, cookie, hold))
}
