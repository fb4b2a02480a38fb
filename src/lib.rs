//! mobile-admin: an administration server for mobile security apps speaking aklwngt (SOAP over TLS).
//!
//! Module map:
//! - [`config`]: layered configuration (defaults, TOML, environment, flags).
//! - [`soap`]: the pure aklwngt codec — bytes to typed requests, typed responses to bytes.
//! - [`service`]: the device protocol service — decoded requests in, responses out, store behind it.
//! - [`sync`]: the pure sync planner and effective policy/subscription computations (SPEC section 6).
//! - [`sessions`]: device sessions and their expiry, behind a trait.
//! - [`auth`]: device credential hashing and login throttling.
//! - [`events`]: the stored form of device events (limits, flags, named parameters).
//! - [`text`]: control characters in device text, escaped for storage and logs.
//! - [`updates`]: the update-file directory served by klft (path safety, chunked reads).
//! - [`error`]: device-side errors and the one mapping to `param-error` codes.
//! - [`domain`]: admin operations shared by every admin surface.
//! - [`store`]: persistence behind the [`store::Store`] trait; the only module that writes SQL.
//! - [`server`]: sockets only — the device listener (TLS, HTTP/1.1, limits) and process wiring.
//! - [`tls`]: certificates for the device port (configured or self-signed on first start).
//! - [`sim`]: the device simulator and load generator (`mobile-admin simulate`), with a baseline responder.

pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod server;
pub mod service;
pub mod sessions;
pub mod sim;
pub mod soap;
pub mod store;
pub mod sync;
pub mod text;
pub mod tls;
pub mod transfer;
pub mod updates;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

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

/// A running server: its listener, and the store and service behind it (tests look at both).
pub struct App {
    pub running: server::Running,
    pub store: Arc<dyn store::Store>,
    pub service: Arc<service::DeviceService>,
    pub domain: Arc<domain::Domain>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl App {
    /// Stops accepting, finishes in-flight requests, then closes the store.
    pub async fn stop(self) {
        self.running.stop().await;
        self.sweeper.abort();
        self.store.close().await;
    }
}

/// Opens the store, loads or creates the secrets and certificate, and starts serving devices.
pub async fn start(config: &config::Config) -> anyhow::Result<App> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store = store::open_with(&config.database_url(), config.store_options())
        .await
        .context("opening the database")?;
    let secret = auth::Secret::load_or_create(&config.secret_file()).with_context(|| {
        format!(
            "loading the server secret {}",
            config.secret_file().display()
        )
    })?;
    let updates = updates::UpdatesDir::open(config.updates_dir(), config.protocol.max_chunk_bytes)
        .with_context(|| {
            format!(
                "opening the updates directory {}",
                config.updates_dir().display()
            )
        })?;
    let sessions = sessions::for_store(
        store.clone(),
        config.protocol.shared_sessions,
        config.protocol.expiry(),
        config.protocol.session_limits(),
    );
    let domain = Arc::new(domain::Domain::new(store.clone(), sessions.clone()));
    let service = Arc::new(
        service::DeviceService::new(
            store.clone(),
            sessions.clone(),
            secret,
            config.protocol.clone(),
            updates,
        )
        .with_documents(service::Documents {
            files: DOCUMENTS.to_vec(),
            public_address: config.device_public_address.clone(),
        }),
    );
    let sweeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            if let Ok(n) = sessions.sweep(time::OffsetDateTime::now_utc()).await {
                if n > 0 {
                    tracing::debug!(expired = n, "expired sessions dropped");
                }
            }
        }
    });
    let running = server::start(config, service.clone()).await?;
    Ok(App {
        running,
        store,
        service,
        domain,
        sweeper,
    })
}

/// `mobile-admin serve`: runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(config: config::Config) -> anyhow::Result<()> {
    tracing::info!(?config, "starting");
    let app = start(&config).await?;
    server::shutdown_signal().await;
    app.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// `mobile-admin migrate`: brings the database schema up to date.
pub async fn migrate(config: config::Config) -> anyhow::Result<()> {
    let url = config.database_url();
    let store = store::open(&url).await.context("opening the database")?;
    store.close().await;
    tracing::info!("database schema is up to date");
    Ok(())
}
