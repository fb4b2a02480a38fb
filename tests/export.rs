//! The CEF files sink against the real server, on the backend under test: device and intake events
//! reach the exchange folder in commit order, each once, as lines a standard CEF parser reads;
//! files rotate at `max_lines` and the oldest go beyond `max_files`; a restart goes on from the
//! sink's cursor, and lines written before a crash that the cursor does not yet cover are not
//! written twice.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use mobile_admin::export::sink::SinkConfig;
use serde_json::{json, Value};

fn sink(dir: &Path, max_lines: usize, max_files: usize) -> SinkConfig {
    SinkConfig::CefFiles {
        name: "siem".into(),
        dir: dir.to_path_buf(),
        prefix: "ArcSight".into(),
        max_lines,
        max_files,
    }
}

/// The folder's lines, oldest file first.
fn lines(dir: &Path) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn wait_for_lines(dir: &Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let got = lines(dir);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} lines expected, found {:?}", lines(dir));
}

#[tokio::test]
async fn device_and_intake_events_reach_the_cef_folder_once_and_in_order() {
    let cef_dir = tempfile::tempdir().unwrap();
    let folder = cef_dir.path().join("exchange");
    let server = TestServer::start_with(|c| {
        c.export.sinks = vec![sink(&folder, 4, 100)];
        c.intake.require_auth = false;
    })
    .await;
    let mut dev = server.device("IMEI-CEF", "pw").await;
    dev.begin().await.unwrap();
    for call in 0..2 {
        let batch = (0..5)
            .map(|n| event(call * 5 + n, "GNRL_EV_VIRUS_FOUND"))
            .collect();
        assert!(dev.put_events(batch).await.is_none());
    }
    let mut intake = server.api_anonymous();
    intake.base = intake.base.trim_end_matches("/api/v1").to_string();
    for uid in [
        "955f8b51-00a4-4807-b723-a3e5c547da01",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    ] {
        intake
            .post(
                "/api/OrchEvents",
                json!({"Id": uid, "Event": 2001, "EventType": 3, "Text": "a=b|c"}),
            )
            .await
            .ok();
    }
    let got = wait_for_lines(&folder, 12).await;
    assert_eq!(got.len(), 12, "{got:#?}");
    // Rotation: files of 4 lines, named by the hour and a number.
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    for (i, name) in names.iter().enumerate() {
        assert!(
            name.starts_with("ArcSight-") && name.ends_with(&format!("-{i:04}.txt")),
            "{name}"
        );
        assert_eq!(
            std::fs::read_to_string(folder.join(name))
                .unwrap()
                .lines()
                .count(),
            4
        );
    }
    // Every line parses, in commit order, each event once with its fields.
    let cef = cef_parse(&got);
    let device_ids: Vec<&str> = cef[..10]
        .iter()
        .map(|p| p["externalId"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..10).map(|n| format!("evt-{n}")).collect();
    assert_eq!(device_ids, expected);
    for p in &cef[..10] {
        assert_eq!(p["deviceExternalId"], "IMEI-CEF");
        assert_eq!(p["DeviceSeverity"], "10");
        assert_eq!(p["virusName"], "EICAR-Test-File");
    }
    assert_eq!(cef[10]["id"], "955f8b51-00a4-4807-b723-a3e5c547da01");
    assert_eq!(cef[11]["msg"], "a=b|c");
    assert_eq!(cef[11]["DeviceSeverity"], "10");

    // The status in the API: caught up, a success, no error.
    let api = server.api().await;
    let mut status = Value::Null;
    for _ in 0..50 {
        status = api.get("/export/sinks").await.ok();
        if status["list"][0]["lag_entries"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sink = &status["list"][0];
    assert_eq!(sink["name"], "siem", "{status}");
    assert_eq!(sink["kind"], "cef_files");
    assert_eq!(sink["cursor"], sink["head"], "{status}");
    assert!(
        sink["last_success"].is_string() && sink["last_error"].is_null(),
        "{status}"
    );
    api.post(
        "/admins",
        json!({"name": "bot", "role": "integration", "password": "integration password"}),
    )
    .await
    .ok();
    server
        .api_anonymous()
        .login("bot", "integration password")
        .await
        .get("/export/sinks")
        .await
        .refused(403);

    // A restart goes on from the cursor: the next event once, nothing repeated.
    let (dir, config) = server.stop().await;
    let server = TestServer::start_in(dir, config).await;
    let mut dev = server.device("IMEI-CEF", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events(vec![event(10, "APP_STARTED")])
        .await
        .is_none());
    let got = wait_for_lines(&folder, 13).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lines(&folder).len(), 13);
    assert!(got[12].contains("externalId=evt-10"));

    // A crash after the lines were synced but before the cursor moved: the lines are not
    // written again.
    let (dir, config) = server.stop().await;
    server_sql_reset_cursor(&config).await;
    let server = TestServer::start_in(dir, config).await;
    let mut dev = server.device("IMEI-CEF", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events(vec![event(11, "APP_STARTED")])
        .await
        .is_none());
    wait_for_lines(&folder, 14).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = lines(&folder);
    assert_eq!(all.len(), 14, "{all:#?}");
    assert!(all[13].contains("externalId=evt-11"));
    server.stop().await;
}

/// Puts the sink's cursor back to the start, as if the server died after writing its lines.
async fn server_sql_reset_cursor(config: &mobile_admin::config::Config) {
    let db = Db::connect(&config.database_url()).await;
    db.execute("UPDATE bus_cursors SET seq = 0 WHERE consumer = 'export:siem'")
        .await;
}

#[tokio::test]
async fn the_oldest_files_go_beyond_max_files() {
    let cef_dir = tempfile::tempdir().unwrap();
    let folder = cef_dir.path().join("exchange");
    let server = TestServer::start_with(|c| c.export.sinks = vec![sink(&folder, 2, 2)]).await;
    let mut dev = server.device("IMEI-KEEP", "pw").await;
    dev.begin().await.unwrap();
    for n in 0..7 {
        assert!(dev
            .put_events(vec![event(n, "APP_STARTED")])
            .await
            .is_none());
    }
    // 7 lines in files of 2: four files made, the two newest kept (lines 4, 5 and 6).
    for _ in 0..100 {
        if lines(&folder)
            .last()
            .is_some_and(|l| l.contains("externalId=evt-6 "))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let files = std::fs::read_dir(&folder).unwrap().count();
    assert_eq!(files, 2);
    let kept = lines(&folder);
    assert_eq!(kept.len(), 3, "{kept:#?}");
    assert!(kept[0].contains("externalId=evt-4 "));
    server.stop().await;
}

/// `kill -9` of the real server while it exports: after a restart every event the devices had
/// acknowledged is in the folder, and no event twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_mid_export_loses_and_doubles_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = TestDir::new().await;
    let folder = dir.path().join("exchange");
    let config_file = dir.path().join("export.toml");
    std::fs::write(
        &config_file,
        format!(
            "[[export.sinks]]\nkind = \"cef_files\"\nname = \"siem\"\ndir = {:?}\nmax_lines = 500\nmax_files = 1000\n",
            folder.to_str().unwrap()
        ),
    )
    .unwrap();
    let args = [
        "--database-url",
        dir.db.url(),
        "--config",
        config_file.to_str().unwrap(),
    ];
    let process = ServerProcess::spawn(dir.path(), &args);
    let connector = tls_client(&generated_cert(dir.path()));
    let addr = process.addr;
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for d in 0..4 {
        let (connector, acked, count, stop) = (
            connector.clone(),
            acked.clone(),
            count.clone(),
            stop.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut dev = TestDevice {
                conn: Connection::open(&connector, addr).await,
                id: format!("IMEI-X{d}"),
                password: "pw".into(),
                session: String::new(),
            };
            dev.begin().await.unwrap();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<_> = (0..10).map(|i| event(n + i, "APP_EVENT")).collect();
                let ids: Vec<String> = batch
                    .iter()
                    .map(|e| format!("IMEI-X{d}/{}", e.event_id))
                    .collect();
                n += 10;
                match dev.try_put_events(batch).await {
                    Some(None) => {
                        acked.lock().unwrap().extend(ids);
                        count.fetch_add(10, Ordering::SeqCst);
                    }
                    Some(Some(e)) => panic!("refused: {e:?}"),
                    None => break,
                }
            }
        }));
    }
    // Kill it once the export is under way.
    while count.load(Ordering::SeqCst) < 1500 || lines(&folder).len() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill();
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let process = ServerProcess::spawn(dir.path(), &args);
    for _ in 0..200 {
        if lines(&folder).len() >= acked.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exported = lines(&folder);
    let key = |line: &String| {
        let field = |k: &str| {
            line.split(' ')
                .find_map(|p| p.strip_prefix(k))
                .unwrap_or_default()
                .to_string()
        };
        format!("{}/{}", field("deviceExternalId="), field("externalId="))
    };
    let keys: Vec<String> = exported.iter().map(key).collect();
    let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "an event exported twice");
    for id in &acked {
        assert!(
            unique.contains(id),
            "acknowledged {id} is not in the folder"
        );
    }
    process.kill();
}

/// A syslog receiver over TCP (RFC 6587 octet counting) that keeps every message it got.
struct Receiver {
    addr: std::net::SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// Reads octet-counted frames from `stream` into `kept` until it ends.
async fn read_frames<S: tokio::io::AsyncRead + Unpin>(
    stream: S,
    kept: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::io::BufReader::new(stream);
    loop {
        let mut len = Vec::new();
        loop {
            let Ok(b) = stream.read_u8().await else {
                return;
            };
            if b == b' ' {
                break;
            }
            len.push(b);
        }
        let n: usize = String::from_utf8(len).unwrap().parse().unwrap();
        let mut message = vec![0; n];
        if stream.read_exact(&mut message).await.is_err() {
            return;
        }
        kept.lock()
            .unwrap()
            .push(String::from_utf8(message).unwrap());
    }
}

impl Receiver {
    async fn start(addr: &str, got: std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> Receiver {
        Receiver::start_tls(addr, got, None).await
    }

    async fn start_tls(
        addr: &str,
        got: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let kept = got.clone();
                let tls = tls.clone();
                let connection = tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                read_frames(stream, kept).await
                            }
                        }
                        None => read_frames(stream, kept).await,
                    }
                });
                connections.lock().unwrap().push(connection);
            }
        });
        tasks.lock().unwrap().push(accept);
        Receiver { addr, tasks }
    }

    /// Closes the listener and every connection, as a receiver that stops.
    async fn stop(self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

#[tokio::test]
async fn syslog_receivers_get_every_event_in_order_across_an_outage() {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let receiver = Receiver::start("127.0.0.1:0", got.clone()).await;
    let addr = receiver.addr;
    let server = TestServer::start_with(|c| {
        c.export.sinks = vec![serde_json::from_value(json!({
            "kind": "syslog", "name": "siem-tcp", "address": addr.to_string(), "transport": "tcp"
        }))
        .unwrap()];
    })
    .await;
    let mut dev = server.device("IMEI-SYS", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events((0..5).map(|n| event(n, "GNRL_EV_VIRUS_FOUND")).collect())
        .await
        .is_none());
    let wait_for = |n: usize| {
        let got = got.clone();
        async move {
            for _ in 0..300 {
                if got.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{n} messages expected, got {:?}", got.lock().unwrap());
        }
    };
    wait_for(5).await;
    // RFC 5424, facility local0, severity critical for a severity-4 event, CEF in the message.
    let first = got.lock().unwrap()[0].clone();
    assert!(first.starts_with("<130>1 20"), "{first}");
    assert!(
        first.contains(" mobile-admin - - - CEF:0|mobile-admin|"),
        "{first}"
    );
    assert!(first.contains("externalId=evt-0 "), "{first}");

    // The receiver goes away; events keep coming; it comes back on the same address.
    receiver.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 5..10 {
        assert!(dev
            .put_events(vec![event(n, "APP_STARTED")])
            .await
            .is_none());
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let receiver = Receiver::start(&addr.to_string(), got.clone()).await;
    wait_for(10).await;
    // Every event at least once, in order (a resend repeats only what may not have arrived).
    let ids: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|m| {
            m.split(' ')
                .find_map(|p| p.strip_prefix("externalId="))
                .unwrap()
                .to_string()
        })
        .collect();
    let mut firsts: Vec<String> = Vec::new();
    for id in &ids {
        if !firsts.contains(id) {
            firsts.push(id.clone());
        }
    }
    let expected: Vec<String> = (0..10).map(|n| format!("evt-{n}")).collect();
    assert_eq!(firsts, expected, "{ids:?}");
    receiver.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn syslog_over_tls_is_framed_and_verified() {
    let tls_dir = tempfile::tempdir().unwrap();
    let identity = mobile_admin::tls::load_or_generate(None, None, tls_dir.path()).unwrap();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(mobile_admin::tls::server_config(&identity).unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let receiver = Receiver::start_tls("127.0.0.1:0", got.clone(), Some(acceptor)).await;
    let ca = identity.cert_path.clone();
    let server = TestServer::start_with(|c| {
        c.export.sinks = vec![serde_json::from_value(json!({
            "kind": "syslog", "name": "siem-tls", "address": receiver.addr.to_string(),
            "transport": "tls", "format": "rfc3164", "cafile": ca
        }))
        .unwrap()];
    })
    .await;
    let mut dev = server.device("IMEI-TLS", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events((0..3).map(|n| event(n, "APP_STARTED")).collect())
        .await
        .is_none());
    for _ in 0..100 {
        if got.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    // RFC 3164: <PRI>Mmm dd HH:mm:ss host app: message; severity 1 (info) is syslog 6.
    assert!(got[0].starts_with("<134>"), "{}", got[0]);
    assert!(got[0].contains(" mobile-admin: CEF:0|"), "{}", got[0]);
    receiver.stop().await;
    server.stop().await;
}

/// Our webhook sink delivering to our own intake on a second server: every device event arrives
/// once, also when the sender sends it all again (a crash before its cursor moved).
#[tokio::test]
async fn our_webhook_sink_delivers_to_our_own_intake_once() {
    let receiver = TestServer::start().await;
    receiver
        .api()
        .await
        .post(
            "/admins",
            json!({"name": "sender", "role": "integration", "password": "integration password"}),
        )
        .await
        .ok();
    let base = format!("https://127.0.0.1:{}", receiver.app.admin_addr().port());
    let sink: SinkConfig = serde_json::from_value(json!({
        "kind": "webhook", "name": "peer",
        "login_url": format!("{base}/api/Account"), "url": format!("{base}/api/OrchEvents"),
        "user_name": "sender", "password": "integration password",
        "cafile": generated_cert(receiver.dir.path()),
    }))
    .unwrap();
    let sender = TestServer::start_with(|c| c.export.sinks = vec![sink]).await;
    let mut dev = sender.device("IMEI-HOOK", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events((0..5).map(|n| event(n, "GNRL_EV_VIRUS_FOUND")).collect())
        .await
        .is_none());
    let admin = receiver.api().await;
    let received = || async {
        admin.get("/intake-events").await.ok()["list"]
            .as_array()
            .unwrap()
            .clone()
    };
    let mut got = Vec::new();
    for _ in 0..100 {
        got = received().await;
        if got.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), 5, "{got:?}");
    let first = got.iter().find(|e| e["Text"] == "event number 0").unwrap();
    assert_eq!(first["EntityId"], "IMEI-HOOK");
    assert_eq!(first["Event"], Value::Null, "a name, not a code");
    assert_eq!(first["EventName"], "GNRL_EV_VIRUS_FOUND");
    assert_eq!(first["EventType"], 3);
    assert_eq!(first["account"], "sender");

    // The sender sends everything again (its cursor back at 0): nothing is stored twice.
    let (dir, config) = sender.stop().await;
    let db = Db::connect(&config.database_url()).await;
    db.execute("UPDATE bus_cursors SET seq = 0 WHERE consumer = 'export:peer'")
        .await;
    let sender = TestServer::start_in(dir, config).await;
    let mut dev = sender.device("IMEI-HOOK", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events(vec![event(5, "APP_STARTED")])
        .await
        .is_none());
    for _ in 0..100 {
        got = received().await;
        if got.len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received().await.len(), 6);
    sender.stop().await;
    receiver.stop().await;
}

/// Retention deletes the oldest events past the policy, but never one an export sink has not
/// exported yet: a stuck sink holds them back, and is counted.
#[tokio::test]
async fn retention_waits_for_every_export_sink() {
    use mobile_admin::domain::queries::RetentionConfig;
    let cef_dir = tempfile::tempdir().unwrap();
    let folder = cef_dir.path().join("exchange");
    let stuck: SinkConfig = serde_json::from_value(json!({
        "kind": "syslog", "name": "stuck", "address": "127.0.0.1:1", "transport": "tcp"
    }))
    .unwrap();
    let server = TestServer::start_with(|c| {
        c.export.sinks = vec![sink(&folder, 100, 10), stuck];
        c.intake.require_auth = false;
    })
    .await;
    let mut dev = server.device("IMEI-RET", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events((0..10).map(|n| event(n, "APP_STARTED")).collect())
        .await
        .is_none());
    // Intake events are under the same policy, counted on their own.
    let mut intake = server.api_anonymous();
    intake.base = intake.base.trim_end_matches("/api/v1").to_string();
    for n in 0..5 {
        let uid = format!("00000000-0000-4000-8000-{n:012}");
        intake
            .post("/api/OrchEvents", json!({"Id": uid, "Event": 2001}))
            .await
            .ok();
    }
    wait_for_lines(&folder, 15).await;
    // The sink saves its cursor once caught up.
    let api = server.api().await;
    for _ in 0..100 {
        let status = api.get("/export/sinks").await.ok();
        let siem = status["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "siem")
            .cloned();
        if siem.is_some_and(|s| s["lag_entries"] == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let domain = server.app.domain.clone();
    let db = server.sql().await;
    let intake_rows = || async { db.scalar::<i64>("SELECT count(*) FROM intake_events").await };
    let both = vec!["export:siem".to_string(), "export:stuck".to_string()];
    let keep_three = RetentionConfig {
        max_rows: 3,
        ..Default::default()
    };
    let held = domain.enforce_retention(&keep_three, &both).await.unwrap();
    assert_eq!((held.deleted, held.held_back), (0, 7 + 2));
    assert_eq!(server.app.store.event_count().await.unwrap(), 10);
    assert_eq!(intake_rows().await, 5);
    // Once only sinks that exported them count, the oldest go.
    let exported = vec!["export:siem".to_string()];
    let done = domain
        .enforce_retention(&keep_three, &exported)
        .await
        .unwrap();
    assert_eq!((done.deleted, done.held_back), (7 + 2, 0));
    assert_eq!(server.app.store.event_count().await.unwrap(), 3);
    assert_eq!(intake_rows().await, 3);
    // The newest three intake events are the ones kept.
    let kept = server.api().await.get("/intake-events").await.ok()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Id"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(
        kept.iter()
            .all(|id| id.ends_with('2') || id.ends_with('3') || id.ends_with('4')),
        "{kept:?}"
    );
    // By age.
    domain.clock().advance(Duration::from_secs(2 * 86_400));
    let a_day = RetentionConfig {
        max_age_days: 1,
        ..Default::default()
    };
    let done = domain.enforce_retention(&a_day, &exported).await.unwrap();
    assert_eq!(done.deleted, 3 + 3);
    assert_eq!(server.app.store.event_count().await.unwrap(), 0);
    assert_eq!(intake_rows().await, 0);
    server.stop().await;
}

/// Two nodes on one PostgreSQL database with the same sink: one node drives it at a time (a lease
/// in the database), so each event is exported once; when that node stops, the other takes over
/// from the shared cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_export_each_event_once() {
    if !postgres_or_skip("two_nodes_export_each_event_once") {
        return;
    }
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let receiver = Receiver::start("127.0.0.1:0", got.clone()).await;
    let shared: SinkConfig = serde_json::from_value(json!({
        "kind": "syslog", "name": "shared", "address": receiver.addr.to_string(), "transport": "tcp"
    }))
    .unwrap();
    let first = TestServer::start_with(|c| c.export.sinks = vec![shared.clone()]).await;
    let second_dir = tempfile::tempdir().unwrap();
    // A cluster's nodes share the server secret and the token key.
    let mut second_config = mobile_admin::config::Config {
        database_url: first.config.database_url.clone(),
        secret_file: Some(first.config.secret_file()),
        export: mobile_admin::export::sink::ExportConfig {
            sinks: vec![shared],
        },
        ..test_config(second_dir.path())
    };
    second_config.admin.token_key_file = Some(first.config.token_key_file());
    let second = mobile_admin::start(&second_config).await.unwrap();
    let second_device = |id: &'static str| {
        let connector = tls_client(&generated_cert(second_dir.path()));
        let addr = second.device_addr();
        async move {
            TestDevice {
                conn: Connection::open(&connector, addr).await,
                id: id.into(),
                password: "pw".into(),
                session: String::new(),
            }
        }
    };
    let mut a = first.device("IMEI-N1", "pw").await;
    a.begin().await.unwrap();
    let mut b = second_device("IMEI-N2").await;
    b.begin().await.unwrap();
    assert!(a
        .put_events((0..10).map(|n| event(n, "APP_STARTED")).collect())
        .await
        .is_none());
    assert!(b
        .put_events((0..10).map(|n| event(n, "APP_STARTED")).collect())
        .await
        .is_none());
    let keys = |got: &[String]| -> Vec<String> {
        got.iter()
            .map(|m| {
                let field = |k: &str| {
                    m.split(' ')
                        .find_map(|p| p.strip_prefix(k))
                        .unwrap_or_default()
                        .to_string()
                };
                format!("{}/{}", field("deviceExternalId="), field("externalId="))
            })
            .collect()
    };
    let wait_for = |n: usize| {
        let got = got.clone();
        async move {
            for _ in 0..300 {
                if got.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{n} messages expected, got {}", got.lock().unwrap().len());
        }
    };
    wait_for(20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = keys(&got.lock().unwrap());
    let unique: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (20, 20), "{all:?}");

    // The first node stops (its directory, and so the database, kept): the second goes on, at once
    // or once the lease lapses.
    let (_database, _) = first.stop().await;
    let mut b2 = second_device("IMEI-N3").await;
    b2.begin().await.unwrap();
    assert!(b2
        .put_events((0..5).map(|n| event(n, "APP_STARTED")).collect())
        .await
        .is_none());
    wait_for(25).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = keys(&got.lock().unwrap());
    let unique: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (25, 25), "{all:?}");
    receiver.stop().await;
    second.stop().await;
}

/// A seed 002 receiver for the webhook sink: a login that issues a token of this generation, and
/// an event endpoint that takes only that token and keeps each Table 1 object it is sent.
struct Hook {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Hook {
    async fn start(
        addr: &str,
        generation: u32,
        got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    ) -> Hook {
        use axum::http::{HeaderMap, StatusCode};
        let token = format!("token-{generation}");
        let login_token = token.clone();
        let router = axum::Router::new()
            .route(
                "/login",
                axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                    let token = login_token.clone();
                    async move {
                        if body == json!({"UserName": "sender", "Password": "pw"}) {
                            Ok(axum::Json(json!({"Token": token})))
                        } else {
                            Err(StatusCode::UNAUTHORIZED)
                        }
                    }
                }),
            )
            .route(
                "/events",
                axum::routing::post(
                    move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                        let (token, got) = (token.clone(), got.clone());
                        async move {
                            let bearer = headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.strip_prefix("Bearer "));
                            if bearer != Some(token.as_str()) {
                                return StatusCode::UNAUTHORIZED;
                            }
                            got.lock().unwrap().push(body);
                            StatusCode::OK
                        }
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Hook { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The webhook sink against a seed 002 receiver: each device event as Table 1, with a stable Id; the
/// receiver goes away and comes back with new tokens (the sink logs in again on 401): every event
/// arrives, at least once, in order.
#[tokio::test]
async fn webhook_receivers_get_every_event_in_order_across_an_outage() {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let hook = Hook::start("127.0.0.1:0", 1, got.clone()).await;
    let base = format!("http://{}", hook.addr);
    let server = TestServer::start_with(|c| {
        c.export.sinks = vec![serde_json::from_value(json!({
            "kind": "webhook", "name": "hook", "login_url": format!("{base}/login"),
            "url": format!("{base}/events"), "user_name": "sender", "password": "pw"
        }))
        .unwrap()];
    })
    .await;
    let mut dev = server.device("IMEI-WH", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events((0..5).map(|n| event(n, "GNRL_EV_VIRUS_FOUND")).collect())
        .await
        .is_none());
    let wait_for = |n: usize| {
        let got = got.clone();
        async move {
            for _ in 0..300 {
                if got.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{n} events expected, got {:?}", got.lock().unwrap());
        }
    };
    wait_for(5).await;
    let first = got.lock().unwrap()[0].clone();
    assert_eq!(first["EntityId"], "IMEI-WH");
    assert_eq!(first["Event"], "GNRL_EV_VIRUS_FOUND");
    assert!(
        uuid::Uuid::parse_str(first["Id"].as_str().unwrap()).is_ok(),
        "{first}"
    );
    assert!(first["OrchTimestampUtc"].is_string() && first["SendedAt"].is_string());
    let data: Value = serde_json::from_str(first["EntityData"].as_str().unwrap()).unwrap();
    assert_eq!(data["event_id"], "evt-0");

    // The receiver goes away; events keep coming; it comes back on the same address, with
    // tokens of a new generation.
    let addr = hook.addr;
    hook.stop().await;
    for n in 5..10 {
        assert!(dev
            .put_events(vec![event(n, "APP_STARTED")])
            .await
            .is_none());
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let hook = Hook::start(&addr.to_string(), 2, got.clone()).await;
    wait_for(10).await;
    let ids: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            let data: Value = serde_json::from_str(e["EntityData"].as_str().unwrap()).unwrap();
            data["event_id"].as_str().unwrap().to_string()
        })
        .collect();
    let mut firsts: Vec<String> = Vec::new();
    for id in &ids {
        if !firsts.contains(id) {
            firsts.push(id.clone());
        }
    }
    let expected: Vec<String> = (0..10).map(|n| format!("evt-{n}")).collect();
    assert_eq!(firsts, expected, "{ids:?}");
    hook.stop().await;
    server.stop().await;
}
