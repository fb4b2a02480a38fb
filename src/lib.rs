//! mobile-admin: an administration server for mobile security apps speaking aklwngt (SOAP over TLS).
//!
//! Module map:
//! - [`config`]: layered configuration (defaults, TOML, environment, flags).
//! - [`tls`]: certificates for the device port (configured or self-signed on first start).
//! - [`server`]: sockets only — the device listener (TLS, HTTP/1.1, limits) and process wiring.
//! - [`store`]: persistence behind the [`store::Store`] trait; the only module that writes SQL.
//! - [`sync`]: the pure sync planner (SPEC section 6).
//! - [`auth`]: device credential hashing and login throttling.
//! - [`updates`]: the update-file directory served by klft (path safety, chunked reads).
//! - [`soap`]: the pure aklwngt SOAP codec (bytes to typed requests and responses, and back).
//! - [`sim`]: `mobile-admin simulate`, a fleet of virtual devices used as a load generator.

pub mod auth;
pub mod config;
pub mod server;
pub mod sim;
pub mod soap;
pub mod store;
pub mod sync;
pub mod tls;
pub mod updates;

use anyhow::Context;

/// `mobile-admin migrate`: brings the database schema up to date.
pub async fn migrate(config: config::Config) -> anyhow::Result<()> {
    let url = config.database_url();
    let store = store::open(&url).await.context("opening the database")?;
    store.close().await;
    tracing::info!("database schema is up to date");
    Ok(())
}

/// `mobile-admin serve`: runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(config: config::Config) -> anyhow::Result<()> {
    tracing::info!(?config, "starting");
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store = store::open(&config.database_url())
        .await
        .context("opening the database")?;
    let handler = std::sync::Arc::new(server::Unavailable);
    let running = server::start(&config, handler).await?;
    server::shutdown_signal().await;
    running.stop().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
