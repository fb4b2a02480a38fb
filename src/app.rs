//! Composition: the one place that opens the store, builds the domain and the device service,
//! binds the listeners and starts every background task, and the one ordered shutdown that stops
//! them: listeners first (in-flight requests finish), then background tasks, then the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::device::{DeviceService, Documents};
use crate::domain::tokens::TokenKeys;
use crate::domain::Domain;
use crate::server::{self, DeviceHandler, Reply};
use crate::store::{self, Store};
use crate::{auth, sessions, updates, DOCUMENTS};

/// How often expired sessions and stale login failures are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A running server. Dropping it does not stop it: call [`App::stop`].
pub struct App {
    pub store: Arc<dyn Store>,
    pub domain: Arc<Domain>,
    pub device: Arc<DeviceService>,
    device_port: server::Running,
    admin_port: server::Running,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl App {
    /// Where devices connect.
    pub fn device_addr(&self) -> SocketAddr {
        self.device_port.addr
    }

    /// Where administrators connect (the REST API, over HTTPS).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_port.addr
    }

    /// SHA-256 fingerprint of the device certificate (`None` on plain HTTP).
    pub fn fingerprint(&self) -> Option<&str> {
        self.device_port.fingerprint.as_deref()
    }

    /// Stops accepting and finishes in-flight requests, then stops the background tasks, then
    /// closes the store.
    pub async fn stop(self) {
        tokio::join!(self.device_port.stop(), self.admin_port.stop());
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                tracing::warn!(task = name, "a background task did not stop in time");
            }
        }
        self.store.close().await;
    }

    /// Resolves if the device listener stops on its own (it does not, short of a bug).
    pub async fn stopped(&mut self) {
        self.device_port.stopped().await
    }
}

/// The device port's HTTP side: POST bodies to the device service, GET for its documents.
struct DevicePort(Arc<DeviceService>);

#[async_trait::async_trait]
impl DeviceHandler for DevicePort {
    async fn post(&self, body: Bytes, peer: SocketAddr) -> Reply {
        let (status, body) = self.0.handle(&body, peer).await;
        Reply::xml(status, body)
    }

    fn get(&self, path: &str, host: Option<&str>) -> Option<Reply> {
        self.0
            .document(path, host)
            .map(|(content_type, body)| Reply {
                status: hyper::StatusCode::OK,
                content_type,
                body: body.into(),
            })
    }
}

/// Opens the store, loads or creates the secrets and certificate, creates the first administrator
/// of a new server, and starts serving devices and the background tasks.
pub async fn start(config: &Config) -> anyhow::Result<App> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store = store::open_with(&config.database_url(), config.store_options())
        .await
        .context("opening the database")?;
    match compose(config, store.clone()).await {
        Ok(app) => Ok(app),
        Err(e) => {
            store.close().await;
            Err(e)
        }
    }
}

async fn compose(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<App> {
    config.intake.check().map_err(anyhow::Error::msg)?;
    let secret = auth::Secret::load_or_create(&config.secret_file()).with_context(|| {
        format!(
            "loading the server secret {}",
            config.secret_file().display()
        )
    })?;
    let token_keys = TokenKeys::load_or_create(&config.token_key_file()).with_context(|| {
        format!(
            "loading the token key {}",
            config.token_key_file().display()
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
    let domain = Arc::new(
        Domain::new(
            store.clone(),
            sessions.clone(),
            config.protocol.throttle(),
            token_keys,
            config.admin.clone(),
            config.updates_dir(),
            secret.clone(),
        )
        .with_backend(config.backend.clone()),
    );
    domain
        .create_initial_admin(&config.initial_password_file())
        .await
        .context("creating the initial administrator")?;
    let device = Arc::new(
        DeviceService::new(
            store.clone(),
            sessions.clone(),
            domain.clone(),
            secret,
            config.protocol.clone(),
            updates,
        )
        .with_documents(Documents {
            files: DOCUMENTS.to_vec(),
            public_address: config.device_public_address.clone(),
        }),
    );

    domain
        .bus
        .start()
        .await
        .context("reading the head of the bus")?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push((
        "bus",
        tokio::spawn({
            let domain = domain.clone();
            let stopped = stopped.clone();
            async move { domain.bus.run(stopped).await }
        }),
    ));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "mobile-admin".into());
    let sinks = Arc::new(crate::export::sink::Sinks::default());
    for sink in &config.export.sinks {
        tasks.push((
            "export sink",
            tokio::spawn(crate::export::sink::run(
                domain.clone(),
                sinks.clone(),
                sink.clone(),
                host.clone(),
                stopped.clone(),
            )),
        ));
    }
    let retention = Retention {
        policy: config.retention,
        consumers: config
            .export
            .sinks
            .iter()
            .map(|s| crate::export::sink::cursor_name(s.name()))
            .collect(),
    };
    tasks.push((
        "sweeper",
        tokio::spawn(sweep(
            sessions,
            domain.clone(),
            config.protocol.throttle().window,
            retention,
            stopped.clone(),
        )),
    ));
    tasks.push((
        "backend commands",
        tokio::spawn(domain.clone().run_backend(stopped.clone())),
    ));
    let live = config.live.enabled.then(|| {
        Arc::new(crate::api::ws::hub::Hub::new(
            domain.clone(),
            config.live.clone(),
        ))
    });
    if let Some(hub) = &live {
        tasks.push(("live API", tokio::spawn(hub.clone().run(stopped.clone()))));
    }
    let api = crate::api::ApiService::new(crate::api::ApiState {
        domain: domain.clone(),
        limits: Arc::new(crate::api::RateLimits::new(
            config.admin.requests_per_second_per_token,
            config.admin.requests_per_second,
        )),
        max_upload_bytes: config.admin.max_upload_bytes,
        intake: Arc::new(config.intake.clone()),
        sinks: sinks.clone(),
        live,
    });
    let ports = async {
        let device_port = server::start(
            config.device_listener(),
            Arc::new(DevicePort(device.clone())),
        )
        .await?;
        match server::start_service("admin", config.admin_listener(), Arc::new(api)).await {
            Ok(admin_port) => Ok((device_port, admin_port)),
            Err(e) => {
                device_port.stop().await;
                Err(e)
            }
        }
    };
    let (device_port, admin_port) = match ports.await {
        Ok(ports) => ports,
        Err(e) => {
            let _ = stop.send(true);
            for (_, task) in tasks {
                let _ = task.await;
            }
            return Err(e);
        }
    };
    Ok(App {
        store,
        domain,
        device,
        device_port,
        admin_port,
        stop,
        tasks,
    })
}

/// What event retention keeps, and the export sinks it waits for.
struct Retention {
    policy: crate::domain::queries::RetentionConfig,
    consumers: Vec<String>,
}

/// Drops expired sessions, login failures older than the throttle's window and device events past
/// the retention policy, every minute.
async fn sweep(
    sessions: Arc<dyn sessions::Sessions>,
    domain: Arc<Domain>,
    window: Duration,
    retention: Retention,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let now = time::OffsetDateTime::now_utc();
        match sessions.sweep(now).await {
            Ok(n) if n > 0 => tracing::debug!(expired = n, "expired sessions dropped"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expired sessions not dropped"),
        }
        if let Err(e) = domain.throttle.forget(now - window).await {
            tracing::warn!(error = %e, "old login failures not dropped");
        }
        match domain
            .enforce_retention(&retention.policy, &retention.consumers)
            .await
        {
            Ok(done) if done.held_back > 0 => tracing::warn!(
                deleted = done.deleted,
                held_back = done.held_back,
                sinks = ?retention.consumers,
                "events past retention are kept: an export sink has not exported them yet"
            ),
            Ok(done) if done.deleted > 0 => {
                tracing::info!(deleted = done.deleted, "old events deleted")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "old events not deleted"),
        }
    }
}

/// The domain over the database, without listeners or background tasks: for the command line's
/// tools that act on the server's database directly (`mobile-admin admin ...`).
pub struct Tools {
    pub store: Arc<dyn Store>,
    pub domain: Arc<Domain>,
}

impl Tools {
    pub async fn open(config: &Config) -> anyhow::Result<Tools> {
        let store = store::open_with(&config.database_url(), config.store_options())
            .await
            .context("opening the database")?;
        let token_keys = TokenKeys::load_or_create(&config.token_key_file())
            .with_context(|| format!("loading {}", config.token_key_file().display()))?;
        let secret = auth::Secret::load_or_create(&config.secret_file())
            .with_context(|| format!("loading {}", config.secret_file().display()))?;
        let sessions: Arc<dyn sessions::Sessions> = Arc::new(sessions::MemorySessions::new(
            config.protocol.expiry(),
            config.protocol.session_limits(),
        ));
        let domain = Arc::new(Domain::new(
            store.clone(),
            sessions,
            config.protocol.throttle(),
            token_keys,
            config.admin.clone(),
            config.updates_dir(),
            secret,
        ));
        Ok(Tools { store, domain })
    }

    pub async fn close(self) {
        self.store.close().await;
    }
}

/// `mobile-admin serve`: runs the server until SIGINT or SIGTERM, then shuts down in order.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    tracing::info!(?config, "starting");
    let app = start(&config).await?;
    server::shutdown_signal().await;
    app.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// `mobile-admin migrate`: brings the database schema up to date.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = store::open_with(&config.database_url(), config.store_options())
        .await
        .context("opening the database")?;
    store.close().await;
    tracing::info!("database schema is up to date");
    Ok(())
}
