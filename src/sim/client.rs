//! The devices' side of the transport: one shared rustls configuration, TLS connections, HTTP/1.1
//! POSTs of encoded requests, and the classification of everything that can go wrong on the way.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use std::collections::{HashMap, VecDeque};

use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::NamedGroup;
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::stats::{Metric, SessionLog};
use super::SimError;
use crate::soap::{self, ClientError, MessageContext, Request, Response};

/// How devices decide to trust the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Trust exactly the certificates in this PEM file (e.g. the server's generated certificate).
    CaFile(std::path::PathBuf),
    /// Accept any certificate (signatures are still checked): for self-signed test servers.
    Insecure,
}

/// The one client configuration all devices of a run share.
pub fn client_config(trust: &Trust, resumption: bool) -> Result<Arc<ClientConfig>, SimError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?;
    let mut config = match trust {
        Trust::CaFile(path) => builder
            .with_root_certificates(roots(path)?)
            .with_no_client_auth(),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resumption {
        Resumption::store(Arc::new(FleetTickets::new(65_536)))
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// Session tickets for a whole fleet in one process.
///
/// Each real device resumes with a ticket of its own from its previous session. rustls's default
/// cache keeps 8 TLS 1.3 tickets per server name, so a fleet simulated in one process with many
/// sessions in flight would fall back to full handshakes far more often than real devices do. A
/// pool deep enough for every session in flight gives the server the handshake mix of a real fleet.
#[derive(Debug)]
struct FleetTickets {
    capacity: usize,
    kx_hints: std::sync::Mutex<HashMap<ServerName<'static>, NamedGroup>>,
    tls12: std::sync::Mutex<HashMap<ServerName<'static>, Tls12ClientSessionValue>>,
    tls13: std::sync::Mutex<HashMap<ServerName<'static>, VecDeque<Tls13ClientSessionValue>>>,
}

impl FleetTickets {
    fn new(capacity: usize) -> FleetTickets {
        FleetTickets {
            capacity,
            kx_hints: Default::default(),
            tls12: Default::default(),
            tls13: Default::default(),
        }
    }
}

impl ClientSessionStore for FleetTickets {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.kx_hints.lock().unwrap().insert(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.kx_hints.lock().unwrap().get(server_name).copied()
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.tls12.lock().unwrap().insert(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.tls12.lock().unwrap().get(server_name).cloned()
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.tls12.lock().unwrap().remove(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut tickets = self.tls13.lock().unwrap();
        let queue = tickets.entry(server_name).or_default();
        if queue.len() >= self.capacity {
            queue.pop_front();
        }
        queue.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        // The freshest ticket, as a device would use the one from its last session.
        self.tls13.lock().unwrap().get_mut(server_name)?.pop_back()
    }
}

fn roots(path: &Path) -> Result<RootCertStore, SimError> {
    let pem = std::fs::read(path)
        .map_err(|e| SimError::Tls(format!("cannot read {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| SimError::Tls(format!("{}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| SimError::Tls(format!("{}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(SimError::Tls(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// Accepts whatever certificate the server shows, but still verifies the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where devices connect, resolved once per run.
pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
    name: ServerName<'static>,
    host: HeaderValue,
    connector: TlsConnector,
}

impl Target {
    /// `tls_name` is the name the certificate must carry (and the SNI); `host` goes in `Host:`.
    pub fn new(
        label: impl Into<String>,
        addr: SocketAddr,
        tls_name: &str,
        config: Arc<ClientConfig>,
    ) -> Result<Target, SimError> {
        let name = ServerName::try_from(tls_name.to_string())
            .map_err(|e| SimError::Options(format!("bad TLS server name {tls_name:?}: {e}")))?;
        let host = HeaderValue::from_str(&addr.to_string())
            .map_err(|e| SimError::Options(e.to_string()))?;
        Ok(Target {
            label: label.into(),
            addr,
            name,
            host,
            connector: TlsConnector::from(config),
        })
    }
}

/// Why a call produced no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    Connect(String),
    Tls(String),
    Timeout,
    /// The connection broke while sending or receiving.
    Transport(String),
    /// A status other than 200 that was not a SOAP Fault.
    Status(u16),
    /// A SOAP Fault (HTTP 500).
    Fault(String),
    /// A response that does not decode, or answers another operation.
    BadResponse(String),
}

impl CallError {
    /// The short kind used as the report's error key; details go to the debug log.
    pub fn kind(&self) -> String {
        match self {
            CallError::Connect(_) => "connect error".into(),
            CallError::Tls(_) => "TLS error".into(),
            CallError::Timeout => "timeout".into(),
            CallError::Transport(_) => "connection broken".into(),
            CallError::Status(code) => format!("HTTP {code}"),
            CallError::Fault(_) => "SOAP fault".into(),
            CallError::BadResponse(_) => "bad response".into(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "connect error: {e}"),
            CallError::Tls(e) => write!(f, "TLS error: {e}"),
            CallError::Timeout => f.write_str("timeout"),
            CallError::Transport(e) => write!(f, "connection broken: {e}"),
            CallError::Status(code) => write!(f, "HTTP status {code}"),
            CallError::Fault(reason) => write!(f, "SOAP fault: {reason}"),
            CallError::BadResponse(reason) => write!(f, "bad response: {reason}"),
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

/// Makes one device's calls: on one kept-alive connection per session, or one connection per call.
pub struct Caller<'a> {
    target: &'a Target,
    keep_alive: bool,
    timeout: Duration,
    limits: soap::Limits,
    sender: Option<Sender>,
}

impl<'a> Caller<'a> {
    pub fn new(target: &'a Target, keep_alive: bool, timeout: Duration) -> Caller<'a> {
        Caller {
            target,
            keep_alive,
            timeout,
            limits: soap::Limits::default(),
            sender: None,
        }
    }

    async fn connect(&self, log: &mut SessionLog) -> Result<Sender, CallError> {
        let started = Instant::now();
        let tcp = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| CallError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .target
            .connector
            .connect(self.target.name.clone(), tcp)
            .await
            .map_err(|e| CallError::Tls(e.to_string()))?;
        if tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
            log.tls_resumed += 1;
        }
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        log.connections += 1;
        log.record(Metric::Connect, started.elapsed());
        Ok(sender)
    }

    async fn exchange(
        &mut self,
        metric: Metric,
        body: Bytes,
        log: &mut SessionLog,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect(log).await?,
        };
        if sender.ready().await.is_err() {
            // The server closed an idle kept-alive connection: what a device does is reconnect.
            sender = self.connect(log).await?;
            sender
                .ready()
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?;
        }
        let request = hyper::Request::builder()
            .method(Method::POST)
            .uri("/")
            .header(HOST, self.target.host.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("text/xml; charset=utf-8"),
            )
            .header("soapaction", HeaderValue::from_static("\"\""))
            .body(Full::new(body))
            .expect("static request parts are valid");
        let started = Instant::now();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?
            .to_bytes();
        log.record(metric, started.elapsed());
        if self.keep_alive {
            self.sender = Some(sender);
        }
        Ok((status, body))
    }

    /// Sends `req` and returns the response of the same operation (which may carry an `oError`).
    pub async fn call(
        &mut self,
        req: &Request,
        log: &mut SessionLog,
    ) -> Result<Response, CallError> {
        let op = req.operation();
        let body = Bytes::from(soap::encode_request(&MessageContext::default(), req));
        log.calls += 1;
        let exchanged =
            tokio::time::timeout(self.timeout, self.exchange(Metric::Call(op), body, log)).await;
        let (status, body) = match exchanged {
            Ok(result) => result?,
            Err(_) => {
                // The connection may be mid-response: never reuse it.
                self.sender = None;
                return Err(CallError::Timeout);
            }
        };
        match (status, soap::decode_response(&body, &self.limits)) {
            (_, Err(ClientError::Fault { fault })) => Err(CallError::Fault(fault.reason)),
            (StatusCode::OK, Ok((_, resp))) if resp.operation() == op => Ok(resp),
            (StatusCode::OK, Ok((_, resp))) => Err(CallError::BadResponse(format!(
                "{} answered with {}",
                op.wire_name(),
                resp.operation().response_name()
            ))),
            (StatusCode::OK, Err(e)) => Err(CallError::BadResponse(e.to_string())),
            (status, _) => Err(CallError::Status(status.as_u16())),
        }
    }
}
