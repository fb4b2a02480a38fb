//! Moving a deployment between databases with `mobile-admin export` and `import`: every table comes
//! across, devices carry on without re-enrolling, and an import is all or nothing.

mod common;

use std::process::{Command as Process, Stdio};

use common::*;
use mobile_admin::domain::policy::PolicyInput;
use mobile_admin::soap::{Params, Value};
use mobile_admin::store::dump::Record;
use mobile_admin::store::{SubscriptionRow, ROOT_GROUP};

/// Runs `mobile-admin ARGS` with `stdin` and `stdout` files; panics unless it succeeds.
fn cli(args: &[&str], stdin: Stdio, stdout: Stdio) {
    let output = Process::new(env!("CARGO_BIN_EXE_mobile-admin"))
        .args(args)
        .env_remove("MOBILE_ADMIN_TEST_BACKEND")
        .env_remove("MOBILE_ADMIN_TEST_PG_URL")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "mobile-admin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn export(url: &str) -> Vec<u8> {
    let mut out = Vec::new();
    mobile_admin::transfer::export(url, &mut out).await.unwrap();
    out
}

/// Row counts of every dumped table.
async fn counts(db: &Db) -> Vec<(String, i64)> {
    let mut counts = Vec::new();
    for table in mobile_admin::store::dump::TABLES {
        let n = db.scalar(&format!("SELECT count(*) FROM {table}")).await;
        counts.push((table.to_string(), n));
    }
    counts
}

/// A dump's records with timestamps rounded to microseconds (what PostgreSQL keeps) and JSON text
/// parsed, so that dumps of the two backends compare equal when they hold the same data.
fn normalized(dump: &[u8]) -> Vec<String> {
    let cell = |c: Cell| -> String {
        if let Cell::Text(text) = &c {
            let rfc3339 = &time::format_description::well_known::Rfc3339;
            if let Ok(t) = time::OffsetDateTime::parse(text, rfc3339) {
                // PostgreSQL rounds to the nearest microsecond.
                let micros = (t.unix_timestamp_nanos() + 500).div_euclid(1000) * 1000;
                return time::OffsetDateTime::from_unix_timestamp_nanos(micros)
                    .unwrap()
                    .format(rfc3339)
                    .unwrap();
            }
            if text.starts_with('{') || text.starts_with('[') {
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
                    return json.to_string();
                }
            }
        }
        format!("{c:?}")
    };
    std::str::from_utf8(dump)
        .unwrap()
        .lines()
        .map(|line| match Record::parse(line).unwrap() {
            Record::Row(cells) => cells.into_iter().map(cell).collect::<Vec<_>>().join("|"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_moves_to_postgres_and_devices_carry_on() {
    if !postgres_or_skip("a_sqlite_deployment_moves_to_postgres_and_devices_carry_on") {
        return;
    }
    // A SQLite deployment with devices, groups, policy, subscriptions, settings and events.
    let dir = TestDir::sqlite();
    let config = dir.config();
    let sqlite_url = dir.db.url().to_string();
    let server = TestServer::start_in(dir, config).await;
    let store = server.app.store.clone();
    let h = hashes(1, 2, 3, 4, 5);
    let mut m1 = server.device("IMEI-M1", "pw-m1").await;
    m1.begin().await.unwrap();
    assert_eq!(m1.sync(&h, "Field").await.len(), 5);
    assert!(m1
        .put_events((1..=5).map(|n| event(n, "GNRL_EV_VIRUS_FOUND")).collect())
        .await
        .is_none());
    let h2 = hashes(6, 7, 8, 9, 10);
    let mut m2 = server.device("IMEI-M2", "pw-m2").await;
    m2.begin().await.unwrap();
    assert_eq!(m2.sync(&h2, "Sales").await.len(), 5);
    assert!(m2
        .put_events((1..=3).map(|n| event(n, "APP_EVENT")).collect())
        .await
        .is_none());
    let mut m3 = server.device("IMEI-M3", "pw-m3").await;
    m3.begin().await.unwrap();
    let domain = &server.app.domain;
    domain
        .set_device_blocked(&admin(), "IMEI-M3", true)
        .await
        .unwrap();
    let changes = Params::new().with("PublishEvents", Value::Bool(false));
    domain
        .queue_settings(&admin(), "IMEI-M2", &changes)
        .await
        .unwrap();
    // A group moved under one created after it: the import must insert parents first.
    let a = store.ensure_group(ROOT_GROUP, "A").await.unwrap();
    let b = store.ensure_group(ROOT_GROUP, "B").await.unwrap();
    let level = PolicyInput {
        path: "Scan/Level".into(),
        value: Value::Int(4),
        locked: true,
    };
    domain.set_policy(&admin(), a, &level).await.unwrap();
    let virus = SubscriptionRow {
        group_id: ROOT_GROUP,
        severity: 4,
        event_type: "GNRL_EV_VIRUS_FOUND".into(),
    };
    domain
        .set_subscription(&admin(), &virus, true)
        .await
        .unwrap();
    let lite = server.sql().await;
    lite.execute(&format!("UPDATE groups SET parent_id = {b} WHERE id = {a}"))
        .await;
    // The subscription changed after M1's sync: it is due at M1's next one, on the new database too.
    let before = counts(&lite).await;
    lite.close().await;
    let (dir, mut config) = server.stop().await;

    // Moved with the binary, as the README says.
    let dump_path = dir.path().join("dump.jsonl");
    cli(
        &["export", "--database-url", &sqlite_url],
        Stdio::null(),
        std::fs::File::create(&dump_path).unwrap().into(),
    );
    let pg = TestDb::postgres().await;
    cli(
        &["import", "--database-url", pg.url()],
        std::fs::File::open(&dump_path).unwrap().into(),
        Stdio::null(),
    );
    let original = std::fs::read(&dump_path).unwrap();
    let moved = export(pg.url()).await;
    assert_eq!(
        normalized(&original),
        normalized(&moved),
        "every row came across"
    );
    let pg_sql = pg.sql().await;
    assert_eq!(counts(&pg_sql).await, before);

    // And back, and forth again: nothing is lost or changed either way.
    let back_dir = tempfile::tempdir().unwrap();
    let back = TestDb::sqlite(back_dir.path());
    mobile_admin::transfer::import(back.url(), &mut moved.as_slice())
        .await
        .unwrap();
    let again = TestDb::postgres().await;
    mobile_admin::transfer::import(again.url(), &mut export(back.url()).await.as_slice())
        .await
        .unwrap();
    assert_eq!(export(again.url()).await, moved);

    // The server on PostgreSQL, same data directory (same server secret).
    config.database_url = pg.url().to_string();
    let server = TestServer::start_in(dir, config).await;
    let mut m1 = server.device("IMEI-M1", "pw-m1").await;
    m1.begin().await.unwrap();
    assert_eq!(
        codes(&m1.sync(&h, "Field").await),
        vec![4],
        "only the subscription added after the last sync"
    );
    assert!(m1.sync(&h, "Field").await.is_empty());
    let mut impostor = server.device("IMEI-M1", "not-the-password").await;
    assert_eq!(impostor.begin().await.unwrap_err().code, 1184);
    let mut m3 = server.device("IMEI-M3", "pw-m3").await;
    assert_eq!(m3.begin().await.unwrap_err().code, 1184, "still blocked");
    let mut m2 = server.device("IMEI-M2", "pw-m2").await;
    m2.begin().await.unwrap();
    assert_eq!(
        codes(&m2.sync(&h2, "Sales").await),
        vec![2, 4],
        "the queued settings are still pending"
    );
    // New rows get new ids: the sequences continue after the imported ones.
    let mut m4 = server.device("IMEI-M4", "pw-m4").await;
    m4.begin().await.unwrap();
    assert_eq!(m4.sync(&h, "B").await.len(), 5);
    assert!(m1
        .put_events((6..=7).map(|n| event(n, "GNRL_EV_VIRUS_FOUND")).collect())
        .await
        .is_none());
    pg_sql
        .execute(
            "INSERT INTO policy (group_id, path, value_type, value, locked) VALUES (1, 'RTP/Enabled', 'bool', 'true', 1)",
        )
        .await;
    assert_eq!(codes(&m1.sync(&h, "Field").await), vec![3]);
    assert_eq!(
        pg_sql
            .scalar::<i64>(
                "SELECT i.viruses_found FROM device_infections i JOIN devices d ON d.id = i.device
                 WHERE d.device_id = 'IMEI-M1'"
            )
            .await,
        7
    );
    assert_eq!(
        pg_sql
            .scalar::<i64>(&format!("SELECT parent_id FROM groups WHERE id = {a}"))
            .await,
        b
    );
    assert_eq!(
        pg_sql.scalar::<i64>("SELECT count(*) FROM events").await,
        10
    );
    pg_sql.close().await;
    server.stop().await;
}

#[tokio::test]
async fn an_import_is_all_or_nothing_and_only_into_a_new_database() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-T1", "pw").await;
    dev.begin().await.unwrap();
    dev.sync(&hashes(1, 2, 3, 4, 5), "G").await;
    assert!(dev
        .put_events((1..=3).map(|n| event(n, "APP_EVENT")).collect())
        .await
        .is_none());
    let source = server.sql().await;
    let expected = counts(&source).await;
    source.close().await;
    let dump = export(&server.config.database_url()).await;
    server.stop().await;

    let tmp = tempfile::tempdir().unwrap();
    let target = TestDb::create(tmp.path()).await;
    // A dump cut short (the copy was interrupted): refused, and nothing of it stays.
    let text = String::from_utf8(dump.clone()).unwrap();
    let cut: Vec<&str> = text.lines().collect();
    let cut = cut[..cut.len() - 1].join("\n");
    let error = mobile_admin::transfer::import(target.url(), &mut cut.as_bytes())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("incomplete"), "{error:#}");
    let db = target.sql().await;
    assert_eq!(db.scalar::<i64>("SELECT count(*) FROM devices").await, 0);
    assert_eq!(
        db.scalar::<i64>("SELECT count(*) FROM groups").await,
        2,
        "the seed groups are back after the rollback"
    );

    let rows = mobile_admin::transfer::import(target.url(), &mut dump.as_slice())
        .await
        .unwrap();
    assert_eq!(
        rows as i64,
        expected.iter().map(|(_, n)| n).sum::<i64>(),
        "{expected:?}"
    );
    assert_eq!(counts(&db).await, expected);
    // A second import would mix two deployments.
    let error = mobile_admin::transfer::import(target.url(), &mut dump.as_slice())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("not empty"), "{error:#}");
    assert_eq!(counts(&db).await, expected);
    db.close().await;
}
