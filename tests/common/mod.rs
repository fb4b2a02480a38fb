//! Shared helpers for integration tests: temporary servers and a real rustls + hyper client.
#![allow(dead_code)]

pub mod api;
pub mod db;
pub mod ws;
pub mod xmllint;
pub use db::*;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
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
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

/// A TLS client that trusts exactly the certificate in `cert_pem` (the server's generated one).
pub fn tls_client(cert_pem: &Path) -> TlsConnector {
    let pem = std::fs::read(cert_pem).expect("server certificate");
    let mut roots = RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
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

pub async fn connect_tls_from(
    connector: &TlsConnector,
    addr: SocketAddr,
    from: std::net::IpAddr,
) -> TlsStream<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind a loopback address");
    let tcp = socket.connect(addr).await.expect("tcp connect");
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
        Connection::over(connect_tls(connector, addr).await).await
    }

    /// A connection from the local address `from` (any 127.x.y.z works on loopback), so that a
    /// test can play clients at several addresses.
    pub async fn open_from(
        connector: &TlsConnector,
        addr: SocketAddr,
        from: std::net::IpAddr,
    ) -> Connection {
        Connection::over(connect_tls_from(connector, addr, from).await).await
    }

    async fn over(stream: TlsStream<TcpStream>) -> Connection {
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
        self.request_to("localhost", method, path, body).await
    }

    /// A request with `host` as its Host header.
    pub async fn request_to(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, Bytes) {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .body(Full::new(body.into()))
            .unwrap();
        // On a multi-threaded runtime the connection task may not have taken in the end of the
        // previous response yet: wait for it rather than race it.
        self.sender.ready().await.expect("connection ready");
        let resp = self.sender.send_request(req).await.expect("response");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, body)
    }

    pub async fn post(&mut self, body: impl Into<Bytes>) -> (StatusCode, Bytes) {
        self.request("POST", "/", body).await
    }
}

use mobile_admin::soap::{
    self, AppInfo, AppState, CmdData, Command, DevInfo, LicenseInfo, MessageContext, ParamError,
    Params, ProdInfo, Request, Response, SyncInfo, Value,
};

/// A test's data directory and the database that goes with it; both outlive a server restart.
pub struct TestDir {
    pub tmp: tempfile::TempDir,
    pub db: TestDb,
}

impl TestDir {
    /// A new directory and a new database on the backend under test.
    pub async fn new() -> TestDir {
        let tmp = tempfile::tempdir().unwrap();
        let db = TestDb::create(tmp.path()).await;
        TestDir { tmp, db }
    }

    /// A new directory with a SQLite database, whatever the backend under test.
    pub fn sqlite() -> TestDir {
        let tmp = tempfile::tempdir().unwrap();
        let db = TestDb::sqlite(tmp.path());
        TestDir { tmp, db }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The server configuration for this directory and database.
    pub fn config(&self) -> Config {
        Config {
            database_url: self.db.url().to_string(),
            ..test_config(self.path())
        }
    }
}

/// A second node of `first`'s cluster, in a data directory of its own: the same database, and the
/// server secret and token key every node of a cluster shares; with a TLS client trusting it.
pub async fn second_node(
    first: &TestServer,
) -> (mobile_admin::App, TlsConnector, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        database_url: first.config.database_url.clone(),
        secret_file: Some(first.config.secret_file()),
        ..test_config(dir.path())
    };
    config.admin.token_key_file = Some(first.config.token_key_file());
    let node = mobile_admin::start(&config).await.unwrap();
    let connector = tls_client(&generated_cert(dir.path()));
    (node, connector, dir)
}

/// A server started by `mobile_admin::start` in a temporary data directory, on the backend under test.
pub struct TestServer {
    pub app: mobile_admin::App,
    pub config: Config,
    pub dir: TestDir,
    pub connector: TlsConnector,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = TestDir::new().await;
        let mut config = dir.config();
        adjust(&mut config);
        TestServer::start_in(dir, config).await
    }

    /// Starts (or restarts) a server on an existing data directory and database.
    pub async fn start_in(dir: TestDir, config: Config) -> TestServer {
        let app = mobile_admin::start(&config).await.expect("server starts");
        let connector = tls_client(&generated_cert(dir.path()));
        TestServer {
            app,
            config,
            dir,
            connector,
        }
    }

    /// Stops the server and hands back its data directory and configuration for a restart.
    pub async fn stop(self) -> (TestDir, Config) {
        self.app.stop().await;
        (self.dir, self.config)
    }

    pub fn addr(&self) -> SocketAddr {
        self.app.device_addr()
    }

    pub async fn device(&self, id: &str, password: &str) -> TestDevice {
        TestDevice {
            conn: Connection::open(&self.connector, self.addr()).await,
            id: id.to_string(),
            password: password.to_string(),
            session: String::new(),
        }
    }

    /// A device whose connection comes from the loopback address `from`.
    pub async fn device_from(&self, id: &str, password: &str, from: &str) -> TestDevice {
        TestDevice {
            conn: Connection::open_from(&self.connector, self.addr(), from.parse().unwrap()).await,
            id: id.to_string(),
            password: password.to_string(),
            session: String::new(),
        }
    }

    /// A client of the admin REST API, not logged in.
    pub fn api_anonymous(&self) -> api::Api {
        api::Api::new(self.dir.path(), self.app.admin_addr())
    }

    /// A client of the admin REST API logged in as the initial administrator.
    pub async fn api(&self) -> api::Api {
        let password =
            std::fs::read_to_string(self.dir.path().join("initial-admin-password")).unwrap();
        self.api_anonymous().login("admin", password.trim()).await
    }

    /// A direct connection to the database the server uses (for checks and hand edits).
    pub async fn sql(&self) -> Db {
        Db::connect(&self.config.database_url()).await
    }
}

/// A device speaking aklwngt over one kept-alive TLS connection.
pub struct TestDevice {
    pub conn: Connection,
    pub id: String,
    pub password: String,
    pub session: String,
}

/// The five hashes of a Heartbeat, each a 16-byte value filled with one byte.
pub fn hashes(info: u8, state: u8, stgs: u8, pol: u8, sbsc: u8) -> SyncInfo {
    SyncInfo {
        hash_info: vec![info; 16],
        hash_state: vec![state; 16],
        hash_stgs: vec![stgs; 16],
        hash_pol: vec![pol; 16],
        hash_sbsc: vec![sbsc; 16],
    }
}

pub fn app_info(hash: u8, group: &str) -> AppInfo {
    let t = time::macros::datetime!(2007-03-07 14:39:10 UTC);
    AppInfo {
        hash: vec![hash; 16],
        prod_info: ProdInfo {
            product_name: "KAVMOBILE".into(),
            product_version: "6.0".into(),
            install_time: t,
            display_name: "Mobile Security".into(),
            prod_version: "6.0.1403.0".into(),
        },
        license_info: LicenseInfo {
            key_current: None,
            key_next: None,
        },
        dev_info: DevInfo {
            presumed_name: "Phone of Ivan".into(),
            presumed_group: group.into(),
            os_type: 1,
            os_ver_major: 5,
            os_ver_minor: 1,
            os_manufacturer: Some("HTC".into()),
            os_name: None,
            os_ver: None,
            memory: Some(64 << 20),
            processor_family: None,
            system_name: None,
            system_type: None,
        },
    }
}

pub fn app_state(hash: u8) -> AppState {
    AppState {
        hash: vec![hash; 16],
        state_app: 1,
        state_rtp: 4,
        last_full_scan: None,
        last_update_time: None,
        bases_date: None,
        bases_install_date: None,
        bases_records: 120_000,
    }
}

pub fn settings_tree(level: i32) -> Params {
    let mut inner = Params::default();
    inner.0.insert("Level".into(), Value::Int(level));
    inner.0.insert("Archives".into(), Value::Bool(false));
    let mut p = Params::default();
    p.0.insert("Scan".into(), Value::Params(inner));
    p.0.insert("PublishEvents".into(), Value::Bool(true));
    p
}

impl TestDevice {
    pub async fn call(&mut self, req: Request) -> Response {
        let body = soap::encode_request(&MessageContext::default(), &req);
        let (status, reply) = self.conn.post(body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply)
        );
        let (_, resp) =
            soap::decode_response(&reply, &soap::Limits::default()).unwrap_or_else(|e| {
                panic!("undecodable reply {e}: {}", String::from_utf8_lossy(&reply))
            });
        resp
    }

    /// Begins a session; returns the error if the server refused.
    pub async fn begin(&mut self) -> Result<(), ParamError> {
        let resp = self
            .call(Request::SessionBegin {
                device_id: self.id.clone(),
                password: self.password.clone(),
                protocol_version: soap::PROTOCOL_VERSION,
            })
            .await;
        match resp {
            Response::SessionBegin {
                session_id,
                error: None,
                protocol_version,
            } => {
                assert_eq!(protocol_version, soap::PROTOCOL_VERSION);
                self.session = session_id;
                Ok(())
            }
            Response::SessionBegin { error: Some(e), .. } => Err(e),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub async fn heartbeat(&mut self, sync: Option<SyncInfo>) -> (Command, Option<ParamError>) {
        match self
            .call(Request::Heartbeat {
                session_id: self.session.clone(),
                sync,
            })
            .await
        {
            Response::Heartbeat { command, error } => (command, error),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub async fn put_result(&mut self, result: Command) -> (Command, Option<ParamError>) {
        match self
            .call(Request::PutResult {
                session_id: self.session.clone(),
                result,
            })
            .await
        {
            Response::PutResult {
                next_command,
                error,
            } => (next_command, error),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub async fn end(&mut self) -> Option<ParamError> {
        match self
            .call(Request::SessionEnd {
                session_id: self.session.clone(),
            })
            .await
        {
            Response::SessionEnd { error } => error,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// A whole sync as a well-behaved device runs it: heartbeat with `sync`, then answer every
    /// command until SRV_NO_COMMANDS. Returns the command codes in order and the commands' data.
    pub async fn sync(&mut self, sync: &SyncInfo, group: &str) -> Vec<Command> {
        let (mut command, error) = self.heartbeat(Some(sync.clone())).await;
        assert!(error.is_none(), "{error:?}");
        let mut seen = Vec::new();
        while command.code != 0 {
            assert!(seen.len() < 20, "sync does not end: {seen:?}");
            let answer = answer(&command, sync, group);
            seen.push(command);
            let (next, error) = self.put_result(answer).await;
            assert!(error.is_none(), "{error:?}");
            command = next;
        }
        seen
    }
}

/// What an honest device answers to a command, reporting the hashes of `sync`.
pub fn answer(command: &Command, sync: &SyncInfo, group: &str) -> Command {
    let data = match command.code {
        1 => CmdData::ParAndHash {
            hash: sync.hash_stgs.clone(),
            parameters: settings_tree(3),
        },
        2 => CmdData::Hash(sync.hash_stgs.clone()),
        3 => CmdData::Hash(sync.hash_pol.clone()),
        4 => CmdData::Hash(sync.hash_sbsc.clone()),
        5 => {
            let mut info = app_info(0, group);
            info.hash = sync.hash_info.clone();
            CmdData::AppInfo(Box::new(info))
        }
        6 => {
            let mut state = app_state(0);
            state.hash = sync.hash_state.clone();
            CmdData::AppState(state)
        }
        other => panic!("unknown command {other}"),
    };
    Command {
        code: command.code,
        data: Some(data),
    }
}

pub fn codes(commands: &[Command]) -> Vec<i32> {
    commands.iter().map(|c| c.code).collect()
}

use mobile_admin::soap::{EventBody, EventInfo};

/// An event as devices send them; `n` makes the id and description unique.
pub fn event(n: usize, event_type: &str) -> EventInfo {
    let mut body = EventBody {
        severity: Some(if event_type == "GNRL_EV_VIRUS_FOUND" {
            4
        } else {
            1
        }),
        product_name: Some("KAVMOBILE".into()),
        product_version: Some("6.0".into()),
        event_type: Some(event_type.into()),
        event_type_display_name: Some("Virus found".into()),
        descr: Some(format!("event number {n}")),
        locid: Some(7),
        rise_time: Some(time::macros::datetime!(2026-11-23 10:00:00 UTC)),
        rise_time_ms: Some(250),
        ..EventBody::default()
    };
    body.par[1] = Some(format!("\\Storage Card\\file{n}.exe"));
    body.par[4] = Some("EICAR-Test-File".into());
    body.par[5] = Some(n.to_string());
    EventInfo {
        event_id: format!("evt-{n}"),
        body,
    }
}

impl TestDevice {
    pub async fn put_events(&mut self, events: Vec<EventInfo>) -> Option<ParamError> {
        match self
            .call(Request::PutEvents {
                session_id: self.session.clone(),
                events,
            })
            .await
        {
            Response::PutEvents { error } => error,
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

/// A `mobile-admin serve` child process (for crash and multi-process tests).
pub struct ServerProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Where the admin REST API listens.
    pub admin_addr: SocketAddr,
    /// Every line the server has logged so far.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the real binary on an ephemeral port and waits until it says where it listens.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> ServerProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mobile-admin"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--device-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // The test harness's own variables share the configuration's prefix.
            .env_remove("MOBILE_ADMIN_TEST_BACKEND")
            .env_remove("MOBILE_ADMIN_TEST_PG_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("server binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let (mut addr, mut admin_addr) = (None, None);
        while addr.is_none() || admin_addr.is_none() {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if !line.contains("listening") {
                continue;
            }
            let Some(rest) = line.split(" addr=").nth(1) else {
                continue;
            };
            let at: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
            if line.contains("port=\"device\"") {
                addr = Some(at);
            } else if line.contains("port=\"admin\"") {
                admin_addr = Some(at);
            }
        }
        let (addr, admin_addr) = (addr.unwrap(), admin_addr.unwrap());
        // Keep draining the log so the child never blocks on a full pipe.
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        ServerProcess {
            child,
            addr,
            admin_addr,
            log,
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestDevice {
    /// Like `put_events`, but `None` when the connection failed (the server is gone).
    pub async fn try_put_events(&mut self, events: Vec<EventInfo>) -> Option<Option<ParamError>> {
        let body = soap::encode_request(
            &MessageContext::default(),
            &Request::PutEvents {
                session_id: self.session.clone(),
                events,
            },
        );
        let (status, reply) = self.conn.try_post(body).await?;
        assert_eq!(status, StatusCode::OK);
        match soap::decode_response(&reply, &soap::Limits::default()).ok()? {
            (_, Response::PutEvents { error }) => Some(error),
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

impl Connection {
    /// A POST that reports a broken connection as `None` instead of panicking.
    pub async fn try_post(&mut self, body: impl Into<Bytes>) -> Option<(StatusCode, Bytes)> {
        let req = hyper::Request::builder()
            .method("POST")
            .uri("/")
            .header("host", "localhost")
            .body(Full::new(body.into()))
            .unwrap();
        self.sender.ready().await.ok()?;
        let resp = self.sender.send_request(req).await.ok()?;
        let status = resp.status();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    }
}

use mobile_admin::soap::{FileChunk, FileInfo};

impl TestDevice {
    pub async fn file_info(&mut self, name: &str) -> Result<FileInfo, ParamError> {
        match self
            .call(Request::GetFileInfo {
                session_id: self.session.clone(),
                file_name: name.to_string(),
            })
            .await
        {
            Response::GetFileInfo {
                info: Some(info),
                error: None,
            } => Ok(info),
            Response::GetFileInfo { error: Some(e), .. } => Err(e),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub async fn chunk(
        &mut self,
        name: &str,
        start: u64,
        size: u64,
    ) -> Result<FileChunk, ParamError> {
        match self
            .call(Request::GetNextFileChunk {
                session_id: self.session.clone(),
                file_name: name.to_string(),
                start_pos: start,
                needed_size: size,
            })
            .await
        {
            Response::GetNextFileChunk {
                chunk: Some(chunk),
                error: None,
            } => Ok(chunk),
            Response::GetNextFileChunk { error: Some(e), .. } => Err(e),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// Downloads a whole file the way devices do, checking every chunk's CRC.
    pub async fn download(&mut self, name: &str, chunk_size: u64) -> Result<Vec<u8>, ParamError> {
        let info = self.file_info(name).await?;
        let mut out = Vec::with_capacity(info.full_file_size as usize);
        loop {
            let chunk = self.chunk(name, out.len() as u64, chunk_size).await?;
            assert_eq!(chunk.start_pos_in_file, out.len() as u64);
            assert_eq!(chunk.full_file_size, info.full_file_size);
            assert_eq!(
                chunk.crc,
                crc32fast::hash(&chunk.buff),
                "CRC of chunk at {}",
                out.len()
            );
            if chunk.buff.is_empty() {
                assert_eq!(chunk.crc, 0);
                return Ok(out);
            }
            out.extend_from_slice(&chunk.buff);
        }
    }
}

impl TestDevice {
    /// Sends `req` and returns the raw reply, for tests that look at the XML itself.
    pub async fn call_raw(&mut self, req: &Request) -> (StatusCode, Bytes) {
        self.conn
            .post(soap::encode_request(&MessageContext::default(), req))
            .await
    }
}

/// The caller tests act as on the domain: the server itself, with every right.
pub fn admin() -> mobile_admin::domain::Caller {
    mobile_admin::domain::Caller::system("test")
}

/// Pre-registers a device straight in the store; returns its row id.
pub async fn register(
    store: &std::sync::Arc<dyn mobile_admin::store::Store>,
    device_id: &str,
) -> i64 {
    store
        .register_device(
            device_id,
            mobile_admin::store::UNASSIGNED_GROUP,
            None,
            None,
            &mobile_admin::store::Actor::system("test"),
        )
        .await
        .unwrap()
        .0
        .id
}

/// Each of `lines` as pycef (a standard CEF parser, installed by `scripts/test`) reads it, values
/// unescaped (`tests/fixtures/cef_parse.py`); `null` for a line it cannot read.
pub fn cef_parse(lines: &[String]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.txt");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cef_parse.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pycef is installed (scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
