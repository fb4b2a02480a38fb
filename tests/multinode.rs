//! Two `mobile-admin serve` processes on one PostgreSQL database behave as one server: a device's
//! calls may reach either node, admin edits are seen by both, and no event is stored twice.

mod common;

use std::path::Path;

use common::*;
use mobile_admin::soap::{CmdData, Command, Value};

/// A node of the cluster: the real binary with its own data directory (certificate) and a
/// configuration file shared with the other nodes (database, server secret).
struct Node {
    process: ServerProcess,
    connector: tokio_rustls::TlsConnector,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(config: &Path, database_url: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let process = ServerProcess::spawn(
            dir.path(),
            &[
                "--config",
                config.to_str().unwrap(),
                "--database-url",
                database_url,
            ],
        );
        let connector = tls_client(&generated_cert(dir.path()));
        Node {
            process,
            connector,
            _dir: dir,
        }
    }

    async fn device(&self, id: &str, password: &str) -> TestDevice {
        TestDevice {
            conn: Connection::open(&self.connector, self.process.addr).await,
            id: id.to_string(),
            password: password.to_string(),
            session: String::new(),
        }
    }
}

fn scan_level(command: &Command) -> Option<Value> {
    let Some(CmdData::Par(params)) = &command.data else {
        panic!("not a policy push: {command:?}");
    };
    match params.get("Scan")? {
        Value::Params(scan) => scan.get("Level").cloned(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_serve_one_session() {
    if !postgres_or_skip("two_nodes_on_one_database_serve_one_session") {
        return;
    }
    let db = TestDb::postgres().await;
    let shared = tempfile::tempdir().unwrap();
    // Device passwords are hashed under the server secret: every node must have the same one.
    let secret = shared.path().join("secret.key");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let config = shared.path().join("cluster.toml");
    std::fs::write(
        &config,
        format!("secret_file = {:?}\n", secret.to_str().unwrap()),
    )
    .unwrap();
    let a = Node::start(&config, db.url());
    let b = Node::start(&config, db.url());
    let sql = db.sql().await;

    // One device, one session, its calls alternating between the nodes.
    let mut on_a = a.device("IMEI-N1", "pw-n1").await;
    let mut on_b = b.device("IMEI-N1", "pw-n1").await;
    on_a.begin().await.unwrap();
    on_b.session = on_a.session.clone();
    assert_eq!(
        sql.scalar::<i64>("SELECT count(*) FROM sessions").await,
        1,
        "the session lives in the database"
    );

    let h = hashes(1, 2, 3, 4, 5);
    let (command, error) = on_b.heartbeat(Some(h.clone())).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(command.code, 5);
    let (command, error) = on_a.put_result(answer(&command, &h, "Field")).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(command.code, 6);
    let (command, error) = on_b.put_result(answer(&command, &h, "Field")).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(command.code, 1);

    // An admin locks a field in SQL while the device is mid-sync; the next push carries it.
    sql.execute(
        "INSERT INTO policy (group_id, path, value_type, value, locked) VALUES (1, 'Scan/Level', 'int', '5', 1)",
    )
    .await;
    let (command, error) = on_a.put_result(answer(&command, &h, "Field")).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(command.code, 3);
    assert_eq!(scan_level(&command), Some(Value::Int(5)));
    let (command, error) = on_b.put_result(answer(&command, &h, "Field")).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(command.code, 4);
    let (command, error) = on_a.put_result(answer(&command, &h, "Field")).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(command.code, 0);

    // Events on both nodes, one of them sent to each: stored once.
    assert!(on_a
        .put_events((1..=5).map(|n| event(n, "GNRL_EV_VIRUS_FOUND")).collect())
        .await
        .is_none());
    assert!(on_b
        .put_events((5..=8).map(|n| event(n, "APP_EVENT")).collect())
        .await
        .is_none());
    // The same batch to both nodes at the same moment (a device retrying through the balancer).
    let batch: Vec<_> = (9..=18).map(|n| event(n, "APP_EVENT")).collect();
    let (ra, rb) = tokio::join!(on_a.put_events(batch.clone()), on_b.put_events(batch));
    assert!(ra.is_none() && rb.is_none(), "{ra:?} {rb:?}");

    // Another edit by hand: either node sees it at the next heartbeat.
    sql.execute("UPDATE policy SET value = '6' WHERE group_id = 1 AND path = 'Scan/Level'")
        .await;
    let (command, _) = on_b.heartbeat(Some(h.clone())).await;
    assert_eq!(command.code, 3);
    assert_eq!(scan_level(&command), Some(Value::Int(6)));
    let (command, _) = on_a.put_result(answer(&command, &h, "Field")).await;
    assert_eq!(command.code, 0);
    let (command, _) = on_a.heartbeat(Some(h.clone())).await;
    assert_eq!(
        command.code, 0,
        "nothing left to do, as seen from the other node"
    );

    // Ending the session on one node ends it everywhere.
    assert!(on_b.end().await.is_none());
    let (_, error) = on_a.heartbeat(None).await;
    assert_eq!(error.map(|e| e.code), Some(1186));
    // A new session may begin on either node with the password enrolled through the other.
    on_b.begin().await.unwrap();
    on_a.session = on_b.session.clone();
    assert_eq!(on_a.heartbeat(None).await.1, None);

    // What the database holds afterwards.
    assert_eq!(sql.scalar::<i64>("SELECT count(*) FROM devices").await, 1);
    assert_eq!(sql.scalar::<i64>("SELECT count(*) FROM sessions").await, 1);
    assert_eq!(
        sql.scalar::<i64>("SELECT count(*) FROM events").await,
        18,
        "every event once"
    );
    assert_eq!(
        sql.scalar::<i64>("SELECT count(DISTINCT event_id) FROM events")
            .await,
        18
    );
    assert_eq!(
        sql.scalar::<i64>("SELECT viruses_found FROM device_infections")
            .await,
        5
    );
    let (group, policy_pushed): (String, i64) = sql
        .fetch_one(
            "SELECT g.name, count(s.policy_digest) FROM devices d
             JOIN groups g ON g.id = d.group_id JOIN device_sync s ON s.device = d.id
             GROUP BY g.name",
        )
        .await;
    assert_eq!((group.as_str(), policy_pushed), ("Field", 1));
    sql.close().await;
    a.process.kill();
    b.process.kill();
}

/// A TCP relay in front of PostgreSQL that can be cut and restored, to play an outage.
struct Relay {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(addr: std::net::SocketAddr, target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        links.spawn(async move {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                }
            }
            // Dropping the links cuts every connection that went through the relay.
            links.abort_all();
        });
        Relay {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn cut(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

/// While PostgreSQL is out of reach, device calls are answered 1195 "try later" within the
/// configured wait, not after the pool's long default; when it is back, service resumes by itself.
#[tokio::test]
async fn calls_during_a_database_outage_fail_fast_and_service_resumes() {
    if !postgres_or_skip("calls_during_a_database_outage_fail_fast_and_service_resumes") {
        return;
    }
    let db = TestDb::postgres().await;
    let mut relay = Relay::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:5432".parse().unwrap(),
    )
    .await;
    let url = db.url().replace("127.0.0.1:5432", &relay.addr.to_string());
    let tmp = tempfile::tempdir().unwrap();
    let config = mobile_admin::config::Config {
        database_url: url,
        database_timeout_ms: 1500,
        ..test_config(tmp.path())
    };
    let app = mobile_admin::start(&config).await.unwrap();
    let connector = tls_client(&generated_cert(tmp.path()));
    let mut dev = TestDevice {
        conn: Connection::open(&connector, app.device_addr()).await,
        id: "IMEI-OUT".into(),
        password: "pw".into(),
        session: String::new(),
    };
    dev.begin().await.unwrap();
    let password = std::fs::read_to_string(tmp.path().join("initial-admin-password")).unwrap();
    let admin = common::api::Api::new(tmp.path(), app.admin_addr())
        .login("admin", password.trim())
        .await;

    relay.cut().await;
    // The admin API answers 503 with Retry-After, as fast.
    let started = std::time::Instant::now();
    let answer = admin.get("/devices").await;
    assert!(answer.headers.contains_key("retry-after"), "{answer:?}");
    answer.refused(503);
    assert!(started.elapsed() < std::time::Duration::from_secs(6));
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let mut other = TestDevice {
            conn: Connection::open(&connector, app.device_addr()).await,
            id: "IMEI-OUT2".into(),
            password: "pw".into(),
            session: String::new(),
        };
        let refused = other.begin().await.unwrap_err();
        assert_eq!(refused.code, 1195, "{refused:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(6),
            "answered after {:?}",
            started.elapsed()
        );
        let started = std::time::Instant::now();
        assert_eq!(
            dev.put_events(vec![event(1, "APP_EVENT")])
                .await
                .map(|e| e.code),
            Some(1195)
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(6));
    }

    let _relay = Relay::start(relay.addr, "127.0.0.1:5432".parse().unwrap()).await;
    let mut api_back = false;
    for _ in 0..50 {
        if admin.get("/devices").await.status == 200 {
            api_back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        api_back,
        "the admin API serves again once the database is back"
    );
    let mut back = None;
    for _ in 0..50 {
        if dev.put_events(vec![event(1, "APP_EVENT")]).await.is_none() {
            back = Some(());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(back.is_some(), "service resumed");
    app.stop().await;
}
