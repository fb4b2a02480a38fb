//! The process skeleton over real sockets: TLS listener, limits, restart behaviour.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::*;
use mobile_admin::server::{self, DeviceHandler, Reply};

/// Replies with the request body, so tests can see exactly what reached the protocol side.
struct Echo;

#[async_trait::async_trait]
impl DeviceHandler for Echo {
    async fn post(&self, body: Bytes, _peer: SocketAddr) -> Reply {
        Reply::xml(StatusCode::OK, body)
    }
    fn get(&self, _path: &str, _host: Option<&str>) -> Option<Reply> {
        None
    }
}

#[tokio::test]
async fn tls_client_posts_and_gets_a_reply_on_a_kept_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let running = server::start(config.device_listener(), Arc::new(Echo))
        .await
        .unwrap();
    let connector = tls_client(&generated_cert(dir.path()));
    let mut conn = Connection::open(&connector, running.addr).await;
    for i in 0..3 {
        let body = format!("<hello n='{i}'/>");
        let (status, reply) = conn.post(body.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply, body.as_bytes());
    }
    let (status, _) = conn.request("GET", "/nothing-here", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    running.stop().await;
}

#[tokio::test]
async fn restart_reuses_certificate_and_database() {
    let dir = TestDir::new().await;
    let config = dir.config();
    let url = config.database_url();

    let store = mobile_admin::store::open(&url).await.unwrap();
    let first = server::start(config.device_listener(), Arc::new(Echo))
        .await
        .unwrap();
    let fingerprint = first.fingerprint.clone().unwrap();
    first.stop().await;
    let groups = store.groups().await.unwrap();
    store.close().await;

    let store = mobile_admin::store::open(&url).await.unwrap();
    let second = server::start(config.device_listener(), Arc::new(Echo))
        .await
        .unwrap();
    assert_eq!(second.fingerprint.as_deref(), Some(fingerprint.as_str()));
    assert_eq!(store.groups().await.unwrap(), groups);
    // A client that pinned the first certificate still connects.
    let connector = tls_client(&generated_cert(dir.path()));
    let mut conn = Connection::open(&connector, second.addr).await;
    assert_eq!(conn.post("x").await.0, StatusCode::OK);
    second.stop().await;
    store.close().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.max_body_bytes = 1024;
    let running = server::start(config.device_listener(), Arc::new(Echo))
        .await
        .unwrap();
    let connector = tls_client(&generated_cert(dir.path()));

    // Declared length over the limit: refused before the body is read.
    let mut conn = Connection::open(&connector, running.addr).await;
    let (status, _) = conn.post(vec![b'a'; 4096]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked body without a length that grows past the limit.
    let mut tls = connect_tls(&connector, running.addr).await;
    let chunk = "a".repeat(600);
    let req = format!(
        "POST / HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 64];
    let n = tls.read(&mut head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );

    // Exactly at the limit is fine, and the server still answers.
    let mut conn = Connection::open(&connector, running.addr).await;
    let (status, body) = conn.post(vec![b'b'; 1024]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 1024);
    running.stop().await;
}

#[tokio::test]
async fn silent_clients_are_disconnected_after_the_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.handshake_timeout_secs = 1;
    config.limits.read_timeout_secs = 1;
    let running = server::start(config.device_listener(), Arc::new(Echo))
        .await
        .unwrap();
    let connector = tls_client(&generated_cert(dir.path()));

    // Connects and never starts the TLS handshake.
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("server must close a silent connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without data");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Completes TLS, then never sends a request head.
    let mut tls = connect_tls(&connector, running.addr).await;
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .expect("server must close an idle TLS connection")
        .unwrap_or(0);
    // hyper may answer 408 before closing; either way the connection ends.
    if n > 0 {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    }

    // Sends a head promising a body that never comes.
    let mut tls = connect_tls(&connector, running.addr).await;
    tls.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply))
        .await
        .expect("server must give up on a stalled body")
        .ok();
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // The server survived all of that.
    let mut conn = Connection::open(&connector, running.addr).await;
    assert_eq!(conn.post("still here").await.0, StatusCode::OK);
    running.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let running = server::start(config.device_listener(), Arc::new(Echo))
        .await
        .unwrap();
    let connector = tls_client(&generated_cert(dir.path()));
    let mut tls = connect_tls(&connector, running.addr).await;
    let big = "x".repeat(64 * 1024);
    let req = format!("POST / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\ncontent-length: 0\r\n\r\n");
    let _ = tls.write_all(req.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text}"
    );
    let mut conn = Connection::open(&connector, running.addr).await;
    assert_eq!(conn.post("ok").await.0, StatusCode::OK);
    running.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    struct Slow;
    #[async_trait::async_trait]
    impl DeviceHandler for Slow {
        async fn post(&self, body: Bytes, _peer: SocketAddr) -> Reply {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Reply::xml(StatusCode::OK, body)
        }
        fn get(&self, _path: &str, _host: Option<&str>) -> Option<Reply> {
            None
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let running = server::start(config.device_listener(), Arc::new(Slow))
        .await
        .unwrap();
    let addr = running.addr;
    let connector = tls_client(&generated_cert(dir.path()));
    let mut conn = Connection::open(&connector, addr).await;
    let in_flight = tokio::spawn(async move { conn.post("finish me").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.stop().await;
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "finish me".as_bytes());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[test]
fn the_example_configuration_names_every_setting_and_loads_to_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mobile-admin.example.toml");
    #[derive(serde::Serialize)]
    struct NoFlags {}
    let loaded = mobile_admin::config::Config::load(Some(&path), NoFlags {}).unwrap();
    assert_eq!(loaded, mobile_admin::config::Config::default());
    // Settings without a default value are shown commented out; every other one appears.
    let text = std::fs::read_to_string(&path).unwrap();
    let example: toml::Table = text.parse().unwrap();
    let defaults = toml::Table::try_from(mobile_admin::config::Config::default()).unwrap();
    fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in t {
            match v {
                toml::Value::Table(inner) => keys(inner, &format!("{prefix}{k}."), out),
                _ => out.push(format!("{prefix}{k}")),
            }
        }
    }
    let (mut a, mut b) = (vec![], vec![]);
    keys(&example, "", &mut a);
    keys(&defaults, "", &mut b);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for optional in [
        "tls_cert",
        "tls_key",
        "updates_dir",
        "secret_file",
        "initial_password_file",
        "token_key_file",
    ] {
        assert!(
            text.contains(&format!("# {optional} = ")),
            "{optional} documented"
        );
    }
}

/// The SQLite database holds every device's credential hash: it and its write-ahead log are
/// readable by the server's user alone, like the key and the secret.
#[tokio::test]
async fn the_sqlite_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::sqlite();
    let config = dir.config();
    let server = TestServer::start_in(dir, config).await;
    let data = server.config.data_dir.clone();
    let db = data.join("mobile-admin.db");
    let mut dev = server.device("IMEI-P1", "pw").await;
    dev.begin().await.unwrap();
    for file in [
        db.clone(),
        data.join("mobile-admin.db-wal"),
        data.join("mobile-admin.db-shm"),
        data.join("secret.key"),
    ] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    server.stop().await;
}

/// One address opening idle connections can hold only its share of the connection cap, and each
/// idle connection only until the first-request deadline: a client elsewhere gets through at once.
#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let server = TestServer::start_with(|c| {
        c.limits.max_connections = 8;
        c.limits.max_connections_per_address = 3;
        c.limits.first_request_timeout_secs = 2;
    })
    .await;
    let flooder: std::net::IpAddr = "127.0.0.9".parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(flooder, 0)).unwrap();
        idle.push(socket.connect(server.addr()).await.unwrap());
    }
    // Beyond its three, the flooder's connections are closed as soon as they are accepted.
    let mut closed = 0;
    for conn in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(500), conn.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 17);

    let started = Instant::now();
    let mut dev = server.device_from("IMEI-FL", "pw", "127.0.0.10").await;
    dev.begin().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The three the flooder keeps are cut off at the first-request deadline.
    let started = Instant::now();
    for conn in &mut idle {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    server.stop().await;
}
