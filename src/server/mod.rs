//! The listeners' socket side: binds, loads or generates the certificate, and runs a listener until
//! told to stop. Knows nothing of the protocols: a [`Serve`] (the device port's [`DeviceHandler`], or
//! the admin API) gets the requests.

pub mod listener;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::info;

pub use listener::{DeviceHandler, DeviceService, Limits, Reply, Serve};

use crate::tls;

/// Where and how a listener serves.
#[derive(Debug, Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    /// `None`: plain HTTP, for deployments behind a TLS-terminating proxy.
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
}

/// The certificate: the configured files, or one generated once in `data_dir`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub data_dir: std::path::PathBuf,
}

/// A server that is accepting connections. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    /// SHA-256 fingerprint of the certificate, `None` on plain HTTP.
    pub fingerprint: Option<String>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, waits for in-flight requests (up to the configured grace) and returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }

    /// Resolves when the listener has stopped.
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Binds the device port and starts serving `handler`. Returns once the socket is bound, so callers
/// (and tests, with port 0) can connect immediately.
pub async fn start(listen: Listen, handler: Arc<dyn DeviceHandler>) -> anyhow::Result<Running> {
    let service = DeviceService::new(handler, listen.limits.clone());
    start_service("device", listen, Arc::new(service)).await
}

/// Binds `listen.addr` and starts serving `service` there; `name` says which port it is in logs.
pub async fn start_service<S: Serve>(
    name: &'static str,
    listen: Listen,
    service: Arc<S>,
) -> anyhow::Result<Running> {
    let (acceptor, fingerprint) = match &listen.tls {
        None => {
            tracing::warn!(
                port = name,
                "plain HTTP: put a TLS-terminating proxy in front of this port"
            );
            (None, None)
        }
        Some(files) => {
            let identity =
                tls::load_or_generate(files.cert.as_deref(), files.key.as_deref(), &files.data_dir)
                    .context("loading the TLS certificate")?;
            let fingerprint = identity.fingerprint();
            info!(
                port = name,
                certificate = %identity.cert_path.display(),
                sha256 = %fingerprint,
                generated = identity.generated,
                "TLS certificate"
            );
            let server_config = tls::server_config(&identity)?;
            (Some(TlsAcceptor::from(server_config)), Some(fingerprint))
        }
    };
    let listener = TcpListener::bind(listen.addr)
        .await
        .with_context(|| format!("binding the {name} port {}", listen.addr))?;
    let addr = listener.local_addr()?;
    info!(port = name, %addr, tls = acceptor.is_some(), "listening");
    let (shutdown, stop) = oneshot::channel::<()>();
    let limits = listen.limits;
    let task = tokio::spawn(listener::run(listener, acceptor, service, limits, async {
        let _ = stop.await;
    }));
    Ok(Running {
        addr,
        fingerprint,
        shutdown,
        task,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("SIGINT received, shutting down"),
        _ = term => info!("SIGTERM received, shutting down"),
    }
}
