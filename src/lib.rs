//! mobile-admin: an administration server for mobile security apps speaking aklwngt (SOAP over TLS).
//!
//! Module map, from the bottom up (a module uses only those above it in this list):
//! - [`soap`]: the pure aklwngt codec — bytes to typed requests, typed responses to bytes.
//! - [`sync`]: the pure sync planner, effective policy and subscriptions, what results write.
//! - [`events`], [`text`]: the stored form of device events; control characters in device text.
//! - [`store`]: persistence behind role traits, SQLite and PostgreSQL; the only module that writes SQL.
//! - [`sessions`]: device sessions and their expiry, in memory or in the store.
//! - [`auth`], [`updates`]: device credentials and per-address limits; the update-file directory.
//! - [`domain`]: admin operations, rights, accounts, tokens, audit and the event bus.
//! - [`export`]: device and intake events out to SIEMs (CEF files), from the bus.
//! - [`device`]: the device protocol service — decoded requests in, responses out.
//! - [`error`]: device-side errors and the one mapping to `param-error` codes.
//! - [`api`]: the admin REST API (seed 001's conventions) over the domain, with its OpenAPI document.
//! - [`server`], [`tls`]: sockets only — the TLS/HTTP listener and its limits; certificates.
//! - [`app`]: composition — store, domain, services, listeners, background tasks, ordered shutdown.
//! - [`ctl`]: the admin command line, a client of [`api`] over HTTPS.
//! - [`config`], [`transfer`]: configuration layers; moving a deployment between databases.
//! - `sim` (feature `simulator`): the device simulator and load generator, with a baseline responder.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod ctl;
pub mod device;
pub mod domain;
pub mod error;
pub mod events;
pub mod export;
pub mod server;
pub mod sessions;
#[cfg(feature = "simulator")]
pub mod sim;
pub mod soap;
pub mod store;
pub mod sync;
pub mod text;
pub mod tls;
pub mod transfer;
pub mod updates;

pub use app::{migrate, serve, start, App};

/// The WSDL and schemas devices' toolkits are built from, served at `GET /wsdl` and beside it.
pub const DOCUMENTS: &[(&str, &str, &str)] = &[
    (
        "aklwngt.wsdl",
        "text/xml; charset=utf-8",
        include_str!("../wsdl/aklwngt.wsdl"),
    ),
    (
        "aklwngt.xsd",
        "text/xml; charset=utf-8",
        include_str!("../wsdl/aklwngt.xsd"),
    ),
    (
        "param.xsd",
        "text/xml; charset=utf-8",
        include_str!("../wsdl/param.xsd"),
    ),
];
