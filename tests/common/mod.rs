//! Shared helpers for integration tests: temporary servers and a real rustls + hyper client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use mobile_admin::config::Config;

/// A configuration for a server on an ephemeral loopback port with everything in `data_dir`.
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_owned(),
        device_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

/// A TLS client that trusts exactly the certificate in `cert_pem` (the server's generated one).
pub fn tls_client(cert_pem: &Path) -> TlsConnector {
    let pem = std::fs::read(cert_pem).expect("server certificate");
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

pub fn generated_cert(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(mobile_admin::tls::GENERATED_CERT)
}

pub async fn connect_tls(connector: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("tls handshake")
}

/// One HTTP/1.1 connection over TLS that can carry several requests (keep-alive), as devices do.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(connector: &TlsConnector, addr: SocketAddr) -> Connection {
        let stream = connect_tls(connector, addr).await;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Connection { sender }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, Bytes) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .body(Full::new(body.into()))
            .unwrap();
        let resp = self.sender.send_request(req).await.expect("response");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, body)
    }

    pub async fn post(&mut self, body: impl Into<Bytes>) -> (StatusCode, Bytes) {
        self.request("POST", "/", body).await
    }
}
