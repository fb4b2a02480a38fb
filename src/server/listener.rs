//! A listener: accepts TCP, terminates TLS, speaks HTTP/1.1 and hands requests to a [`Serve`].
//!
//! Everything here only moves bytes; what the bytes mean is the service's business. Connection
//! limits of [`Limits`] are enforced here for every port; [`DeviceService`] adds the device port's
//! body rules before any protocol code sees the request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, info_span, warn, Instrument};

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A connection's place in the listener's counts (in all and per address), and the listener's
/// closing signal. Every request carries one in its extensions: a request that upgrades the
/// connection (a WebSocket) keeps it for as long as the upgraded connection lives, so that
/// upgraded connections count against the same limits and close when the listener stops.
#[derive(Clone)]
pub struct ConnectionHold {
    _held: Arc<(OwnedSemaphorePermit, Slot)>,
    closing: watch::Receiver<bool>,
}

impl ConnectionHold {
    /// Resolves once the listener is stopping.
    pub async fn closing(&self) {
        let mut closing = self.closing.clone();
        let _ = closing.wait_for(|c| *c).await;
    }
}

/// Bounds on what one client can make a listener hold (the `[limits]` section of the
/// configuration).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body; larger ones are answered 413 without being read.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// A client must send a complete request head, and then its body, within this many seconds.
    pub read_timeout_secs: u64,
    /// The TLS handshake must finish within this many seconds.
    pub handshake_timeout_secs: u64,
    /// Connections beyond this wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connections one source address may hold at once; more are closed as soon as accepted.
    pub max_connections_per_address: usize,
    /// A new connection must complete its TLS handshake and send its first request's head within
    /// this many seconds (later requests of the connection have `read_timeout_secs`).
    pub first_request_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            max_header_bytes: 16 * 1024,
            read_timeout_secs: 30,
            handshake_timeout_secs: 10,
            max_connections: 10_000,
            max_connections_per_address: 128,
            first_request_timeout_secs: 10,
            shutdown_grace_secs: 10,
        }
    }
}

impl Limits {
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout_secs)
    }
    pub fn first_request_timeout(&self) -> Duration {
        Duration::from_secs(self.first_request_timeout_secs)
    }
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// What a handler returns for one request: the status and the body, always sent as `text/xml`
/// unless `content_type` says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    pub fn xml(status: StatusCode, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type: "text/xml; charset=utf-8",
            body: body.into(),
        }
    }
    pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// The protocol side of the device port. `post` gets every POST body (the path and SOAPAction are not
/// significant in aklwngt); `get` serves documents such as the WSDL and returns `None` for unknown paths.
#[async_trait::async_trait]
pub trait DeviceHandler: Send + Sync + 'static {
    async fn post(&self, body: Bytes, peer: SocketAddr) -> Reply;
    fn get(&self, path: &str, host: Option<&str>) -> Option<Reply>;
}

/// What answers a listener's requests: the device protocol, or the admin API.
pub trait Serve: Send + Sync + 'static {
    type Body: hyper::body::Body<Data = Bytes, Error = Self::Error> + Send + 'static;
    type Error: Into<Box<dyn std::error::Error + Send + Sync>>;
    fn serve(&self, req: Request<Incoming>, peer: SocketAddr) -> Answer<Self::Body>;
}

/// A service's answer to one request, to be awaited.
pub type Answer<B> = std::pin::Pin<Box<dyn Future<Output = Response<B>> + Send + 'static>>;

/// The device port: POST bodies to a [`DeviceHandler`] within the body limits, GET documents.
pub struct DeviceService {
    handler: Arc<dyn DeviceHandler>,
    limits: Arc<Limits>,
}

impl DeviceService {
    pub fn new(handler: Arc<dyn DeviceHandler>, limits: Limits) -> DeviceService {
        DeviceService {
            handler,
            limits: Arc::new(limits),
        }
    }
}

impl Serve for DeviceService {
    type Body = Full<Bytes>;
    type Error = Infallible;
    fn serve(&self, req: Request<Incoming>, peer: SocketAddr) -> Answer<Full<Bytes>> {
        let handler = self.handler.clone();
        let limits = self.limits.clone();
        Box::pin(async move { respond(req, peer, &*handler, &limits).await })
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish (up to the grace period) and returns.
pub async fn run<S: Serve>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<S>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Arc::new(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::new(limits.max_connections_per_address));
    let (closing, closing_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // Waiting for a permit before accepting leaves excess connections in the kernel's backlog
        // instead of holding a socket and a task for each.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off a little rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // One address may hold only its share of the connections, so that it cannot make every
        // other client wait.
        let Some(slot) = per_address.take(peer.ip()) else {
            debug!(%peer, "connection refused: too many from this address");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let handler = service.clone();
        let limits = limits.clone();
        let hold = ConnectionHold {
            _held: Arc::new((permit, slot)),
            closing: closing_rx.clone(),
        };
        let span = info_span!("conn", %peer);
        tokio::spawn(
            async move {
                // The handshake and the first request's head must arrive by this deadline.
                let first = tokio::time::Instant::now() + limits.first_request_timeout();
                let handshake =
                    (tokio::time::Instant::now() + limits.handshake_timeout()).min(first);
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout_at(handshake, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                serve_connection(stream, peer, handler, limits, hold, first).await
                            }
                            Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                            Err(_) => debug!("TLS handshake timed out"),
                        }
                    }
                    None => serve_connection(tcp, peer, handler, limits, hold, first).await,
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    info!("listener stopped accepting; finishing in-flight requests");
    // Every connection (upgraded ones included) holds a permit until it ends: holding them all
    // again means every connection is gone.
    closing.send_replace(true);
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace(), permits.acquire_many(all))
        .await
        .is_err()
    {
        warn!("connections still open after the grace period; closing them");
    }
}

async fn serve_connection<IO, S>(
    stream: IO,
    peer: SocketAddr,
    handler: Arc<S>,
    limits: Arc<Limits>,
    hold: ConnectionHold,
    first_request_by: tokio::time::Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Serve,
{
    let requested = Arc::new(tokio::sync::Notify::new());
    let on_request = requested.clone();
    let for_requests = hold.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        on_request.notify_one();
        req.extensions_mut().insert(for_requests.clone());
        let reply = handler.serve(req, peer);
        async move { Ok::<_, Infallible>(reply.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.read_timeout())
        // hyper refuses buffers under 8 KiB; a request head larger than the buffer gets 431.
        .max_buf_size(limits.max_header_bytes.max(8192));
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    // A client that connected but sends no request is cut off at the first-request deadline,
    // sooner than the idle limit between the requests of a client that has shown itself.
    let started = tokio::select! {
        outcome = &mut conn => Some(outcome),
        _ = requested.notified() => None,
        _ = tokio::time::sleep_until(first_request_by) => {
            debug!("no request before the first-request deadline; closing");
            return;
        }
        _ = hold.closing() => {
            conn.as_mut().graceful_shutdown();
            Some(conn.as_mut().await)
        }
    };
    let outcome = match started {
        Some(outcome) => outcome,
        // When the listener stops, the request in flight finishes and the connection closes.
        None => tokio::select! {
            outcome = &mut conn => outcome,
            _ = hold.closing() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        },
    };
    if let Err(e) = outcome {
        debug!(error = %e, "connection ended with an error");
    }
}

/// Connections held per source address, within a limit.
struct PerAddress {
    limit: usize,
    held: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection's place in its address's count; given back when dropped.
struct Slot {
    table: Arc<PerAddress>,
    address: std::net::IpAddr,
}

impl PerAddress {
    fn new(limit: usize) -> PerAddress {
        PerAddress {
            limit: limit.max(1),
            held: Default::default(),
        }
    }

    fn take(self: &Arc<Self>, address: std::net::IpAddr) -> Option<Slot> {
        let mut held = self.held.lock().unwrap();
        let count = held.entry(address).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            table: self.clone(),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.table.held.lock().unwrap();
        if let Some(count) = held.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.address);
            }
        }
    }
}

async fn respond(
    req: Request<Incoming>,
    peer: SocketAddr,
    handler: &dyn DeviceHandler,
    limits: &Limits,
) -> Response<Full<Bytes>> {
    let span = info_span!("request", method = %req.method(), path = %req.uri().path());
    async move {
        match *req.method() {
            Method::POST => {}
            Method::GET | Method::HEAD => {
                let host = req
                    .headers()
                    .get(hyper::header::HOST)
                    .and_then(|h| h.to_str().ok());
                return match handler.get(req.uri().path(), host) {
                    Some(reply) => to_response(reply, false),
                    None => to_response(Reply::text(StatusCode::NOT_FOUND, "not found\n"), false),
                };
            }
            _ => {
                return to_response(
                    Reply::text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
                    true,
                )
            }
        }
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limits.max_body_bytes as u64) {
            warn!(
                declared,
                limit = limits.max_body_bytes,
                "request body too large"
            );
            return too_large();
        }
        let body = Limited::new(req.into_body(), limits.max_body_bytes).collect();
        let body = match tokio::time::timeout(limits.read_timeout(), body).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                warn!(limit = limits.max_body_bytes, "request body too large");
                return too_large();
            }
            Ok(Err(e)) => {
                debug!(error = %e, "request body unreadable");
                return to_response(
                    Reply::text(StatusCode::BAD_REQUEST, "unreadable body\n"),
                    true,
                );
            }
            Err(_) => {
                warn!("request body not received in time");
                return to_response(
                    Reply::text(StatusCode::REQUEST_TIMEOUT, "request timeout\n"),
                    true,
                );
            }
        };
        to_response(handler.post(body, peer).await, false)
    }
    .instrument(span)
    .await
}

fn too_large() -> Response<Full<Bytes>> {
    // The rest of the body is never read, so the connection cannot be reused.
    to_response(
        Reply::text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
        true,
    )
}

fn to_response(reply: Reply, close: bool) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
