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
