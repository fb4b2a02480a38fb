//! Sessions, enrolment and the sync state machine, over real TLS against a real server and database.

mod common;

use std::time::Duration;

use common::*;
use mobile_admin::device::EnrolmentMode;
use mobile_admin::domain::policy::PolicyInput;
use mobile_admin::soap::{CmdData, Command, ParamError, Params, Value};
use mobile_admin::store::{ROOT_GROUP, UNASSIGNED_GROUP};

fn code(e: Option<ParamError>) -> i32 {
    e.map(|e| e.code).unwrap_or(0)
}

#[tokio::test]
async fn first_contact_runs_the_full_sync_then_nothing() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-0001", "s3cret-pass").await;
    dev.begin().await.unwrap();
    let h = hashes(1, 2, 3, 4, 5);
    let commands = dev.sync(&h, "Sales").await;
    assert_eq!(codes(&commands), vec![5, 6, 1, 3, 4]);
    // Requests 5, 6 and 1 carry no data; 3 carries the policy, 4 the subscriptions.
    assert!(commands[..3].iter().all(|c| c.data.is_none()));
    assert!(matches!(commands[3].data, Some(CmdData::Par(_))));
    assert!(matches!(commands[4].data, Some(CmdData::Subscriptions(_))));
    assert!(dev.end().await.is_none());

    // Next session, same hashes: nothing to do.
    dev.begin().await.unwrap();
    let (command, error) = dev.heartbeat(Some(h.clone())).await;
    assert_eq!((command.code, code(error)), (0, 0));
    // A heartbeat without oMaySynchronize only records that the device is alive.
    let (command, _) = dev.heartbeat(None).await;
    assert_eq!(command.code, 0);

    // Everything the device reported is persisted where admins can query it.
    let db = server.sql().await;
    let (group, name, last_address): (String, Option<String>, Option<String>) = db
        .fetch_one(
            "SELECT g.name, d.display_name, d.last_address FROM devices d JOIN groups g ON g.id = d.group_id
             WHERE d.device_id = 'IMEI-0001'",
        )
        .await;
    assert_eq!(group, "Sales", "joined its presumed group");
    assert_eq!(name.as_deref(), Some("Phone of Ivan"));
    assert_eq!(last_address.as_deref(), Some("127.0.0.1"));
    let (product, os_manufacturer, memory): (String, String, i64) = db
        .fetch_one("SELECT product_name, os_manufacturer, memory FROM device_app_info")
        .await;
    assert_eq!(
        (product.as_str(), os_manufacturer.as_str(), memory),
        ("KAVMOBILE", "HTC", 64 << 20)
    );
    let (rtp, records): (i64, i64) = db
        .fetch_one("SELECT state_rtp, bases_records FROM device_app_state")
        .await;
    assert_eq!((rtp, records), (4, 120_000));
    let settings: String = db.scalar("SELECT current FROM device_settings").await;
    let settings: Params = serde_json::from_str(&settings).unwrap();
    assert_eq!(settings, settings_tree(3));
    // The credential is a salted keyed hash, never the password.
    let credential: Vec<u8> = db.scalar("SELECT credential FROM devices").await;
    assert_eq!(credential.len(), mobile_admin::auth::CREDENTIAL_LEN);
    assert!(!credential.windows(11).any(|w| w == b"s3cret-pass"));
    server.stop().await;
}

#[tokio::test]
async fn each_changed_hash_triggers_exactly_its_command() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-0002", "pw").await;
    dev.begin().await.unwrap();
    let base = hashes(1, 2, 3, 4, 5);
    dev.sync(&base, "G").await;
    let cases = [
        (hashes(9, 2, 3, 4, 5), 5),
        (hashes(1, 9, 3, 4, 5), 6),
        (hashes(1, 2, 9, 4, 5), 1),
        (hashes(1, 2, 3, 9, 5), 3),
        (hashes(1, 2, 3, 4, 9), 4),
    ];
    for (changed, expected) in cases {
        let commands = dev.sync(&changed, "G").await;
        assert_eq!(
            codes(&commands),
            vec![expected],
            "changed hash for {expected}"
        );
        // Back to the base state for the next case.
        let back = dev.sync(&base, "G").await;
        assert_eq!(codes(&back), vec![expected]);
    }
    server.stop().await;
}

/// Reads the locked boolean `name` from a policy push.
fn policy_value(command: &Command, path: &[&str]) -> Option<Value> {
    let Some(CmdData::Par(params)) = &command.data else {
        panic!("not a policy push: {command:?}");
    };
    let mut node = params;
    for name in &path[..path.len() - 1] {
        match node.0.get(*name)? {
            Value::Params(inner) => node = inner,
            _ => return None,
        }
    }
    node.0.get(*path.last().unwrap()).cloned()
}

#[tokio::test]
async fn policy_rows_edited_in_sql_are_pushed_and_parent_locks_win() {
    let server = TestServer::start().await;
    let domain = &server.app.domain;
    let child = domain
        .create_group(&admin(), ROOT_GROUP, "Field")
        .await
        .unwrap()
        .value
        .id;
    for (path, value, locked) in [
        ("Scan/Level", Value::Int(1), true),
        ("Scan/Archives", Value::Bool(true), false),
    ] {
        let row = PolicyInput {
            path: path.into(),
            value,
            locked,
        };
        domain.set_policy(&admin(), child, &row).await.unwrap();
    }
    let mut dev = server.device("IMEI-0003", "pw").await;
    dev.begin().await.unwrap();
    let h = hashes(1, 2, 3, 4, 5);
    let first = dev.sync(&h, "Field").await;
    let push = first.iter().find(|c| c.code == 3).unwrap();
    assert_eq!(policy_value(push, &["Scan", "Level"]), Some(Value::Int(1)));
    assert_eq!(
        policy_value(push, &["Scan", "Archives"]),
        None,
        "unlocked rows are not policy"
    );

    // An admin edits the row by hand while the server runs.
    let db = server.sql().await;
    db.execute("UPDATE policy SET value = '2' WHERE path = 'Scan/Level'")
        .await;
    let commands = dev.sync(&h, "Field").await;
    assert_eq!(codes(&commands), vec![3]);
    assert_eq!(
        policy_value(&commands[0], &["Scan", "Level"]),
        Some(Value::Int(2))
    );

    // A lock on the parent (root) group overrides the child's value; inserted by hand too.
    db.execute(
        "INSERT INTO policy (group_id, path, value_type, value, locked) VALUES (1, 'Scan/Level', 'int', '7', 1)",
    )
    .await;
    let commands = dev.sync(&h, "Field").await;
    assert_eq!(codes(&commands), vec![3]);
    assert_eq!(
        policy_value(&commands[0], &["Scan", "Level"]),
        Some(Value::Int(7))
    );

    // Unchanged since: nothing more to push.
    assert!(dev.sync(&h, "Field").await.is_empty());

    // Subscriptions are the union along the ancestors, also picked up from SQL.
    db.execute(&format!(
        "INSERT INTO subscriptions VALUES (1, 4, 'GNRL_EV_VIRUS_FOUND'), ({child}, 3, 'APP_ERR')"
    ))
    .await;
    let commands = dev.sync(&h, "Field").await;
    assert_eq!(codes(&commands), vec![4]);
    let Some(CmdData::Subscriptions(s)) = &commands[0].data else {
        panic!("{commands:?}")
    };
    assert_eq!(s.types_critical, vec!["GNRL_EV_VIRUS_FOUND"]);
    assert_eq!(s.types_error, vec!["APP_ERR"]);
    server.stop().await;
}

#[tokio::test]
async fn queued_settings_are_pushed_after_a_get_when_the_device_changed_too() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-0004", "pw").await;
    dev.begin().await.unwrap();
    let h = hashes(1, 2, 3, 4, 5);
    dev.sync(&h, "G").await;

    let mut changes = Params::default();
    let mut scan = Params::default();
    scan.0.insert("Level".into(), Value::Int(9));
    changes.0.insert("Scan".into(), Value::Params(scan));
    server
        .app
        .domain
        .queue_settings(&admin(), "IMEI-0004", &changes)
        .await
        .unwrap();

    // Settings hash unchanged: the push alone, with the change applied over the known settings.
    let commands = dev.sync(&h, "G").await;
    assert_eq!(codes(&commands), vec![2]);
    let Some(CmdData::Par(pushed)) = &commands[0].data else {
        panic!()
    };
    let mut expected = settings_tree(3);
    let Some(Value::Params(scan)) = expected.0.get_mut("Scan") else {
        panic!()
    };
    scan.0.insert("Level".into(), Value::Int(9));
    assert_eq!(pushed, &expected);
    assert!(dev.sync(&h, "G").await.is_empty(), "acknowledged once");

    // The device's settings changed and an admin queued a change: GET first, then the push.
    server
        .app
        .domain
        .queue_settings(&admin(), "IMEI-0004", &changes)
        .await
        .unwrap();
    let changed = hashes(1, 2, 8, 4, 5);
    let commands = dev.sync(&changed, "G").await;
    assert_eq!(codes(&commands), vec![1, 2]);
    let audit: i64 = server
        .sql()
        .await
        .scalar("SELECT count(*) FROM audit WHERE action = 'device.settings'")
        .await;
    assert_eq!(audit, 2);
    server.stop().await;
}

#[tokio::test]
async fn authentication_errors_have_their_codes() {
    let server = TestServer::start_with(|c| {
        c.protocol.login_failures_per_device = 3;
        c.protocol.session_idle_secs = 1;
    })
    .await;
    let mut dev = server.device("IMEI-0005", "right").await;
    dev.begin().await.unwrap();

    let mut imposter = server.device("IMEI-0005", "wrong").await;
    assert_eq!(imposter.begin().await.unwrap_err().code, 1184);

    // Unknown session.
    imposter.session = "no-such-session".into();
    let (command, error) = imposter.heartbeat(None).await;
    assert_eq!((command.code, code(error)), (0, 1186));
    assert_eq!(imposter.end().await.map(|e| e.code), Some(1186));

    // Expired (idle) session.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, error) = dev.heartbeat(None).await;
    assert_eq!(code(error), 1186);

    // Throttling slows the guesser but never locks out the right password (tests/abuse.rs has more).
    for _ in 0..3 {
        assert_eq!(imposter.begin().await.unwrap_err().code, 1184);
    }
    dev.begin().await.unwrap();

    // Malformed credentials and old protocol versions.
    let mut bad = server.device("", "x").await;
    assert_eq!(bad.begin().await.unwrap_err().code, 1187);
    let resp = bad
        .call(mobile_admin::soap::Request::SessionBegin {
            device_id: "IMEI-0006".into(),
            password: "x".into(),
            protocol_version: 0x0000_ffff,
        })
        .await;
    let mobile_admin::soap::Response::SessionBegin { error, .. } = resp else {
        panic!()
    };
    assert_eq!(code(error), 1187);
    server.stop().await;
}

#[tokio::test]
async fn closed_enrolment_refuses_unknown_devices_and_accepts_registered_ones() {
    let server = TestServer::start_with(|c| c.protocol.enrolment = EnrolmentMode::Closed).await;
    let mut stranger = server.device("IMEI-0007", "pw").await;
    assert_eq!(stranger.begin().await.unwrap_err().code, 1184);

    register(&server.app.store, "IMEI-0008").await;
    let mut known = server.device("IMEI-0008", "first-password").await;
    known.begin().await.unwrap();
    // The first password is now the device's password.
    let mut other = server.device("IMEI-0008", "another").await;
    assert_eq!(other.begin().await.unwrap_err().code, 1184);

    // An admin reset lets the device enrol again (a reinstalled app with a new password).
    server
        .app
        .domain
        .reset_device(&admin(), "IMEI-0008")
        .await
        .unwrap();
    other.begin().await.unwrap();
    // Blocked devices are refused even with the right password.
    server
        .app
        .domain
        .set_device_blocked(&admin(), "IMEI-0008", true)
        .await
        .unwrap();
    assert_eq!(other.begin().await.unwrap_err().code, 1184);
    server.stop().await;
}

#[tokio::test]
async fn wrong_results_get_1568_and_1570_and_errors_are_recorded_and_skipped() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-0009", "pw").await;
    dev.begin().await.unwrap();
    let h = hashes(1, 2, 3, 4, 5);
    let (command, _) = dev.heartbeat(Some(h.clone())).await;
    assert_eq!(command.code, 5);
    // Answering a command that was not asked.
    let (next, error) = dev.put_result(answer(&Command::bare(1), &h, "G")).await;
    assert_eq!((next.code, code(error)), (0, 1568));
    // The plan was dropped: another result is unexpected too.
    let (_, error) = dev.put_result(answer(&Command::bare(5), &h, "G")).await;
    assert_eq!(code(error), 1568);

    // Right code, wrong data type.
    let (command, _) = dev.heartbeat(Some(h.clone())).await;
    assert_eq!(command.code, 5);
    let (_, error) = dev
        .put_result(Command {
            code: 5,
            data: Some(CmdData::Hash(vec![1; 16])),
        })
        .await;
    assert_eq!(code(error), 1570);

    // CmdError answers are recorded on the device and skipped for the rest of the session.
    let (command, _) = dev.heartbeat(Some(h.clone())).await;
    assert_eq!(command.code, 5);
    let failure = ParamError::new(1186, "KLSTD", "settings storage not found");
    let mut next = dev
        .put_result(Command {
            code: 5,
            data: Some(CmdData::Error(failure)),
        })
        .await
        .0;
    let mut seen = vec![];
    while next.code != 0 {
        seen.push(next.code);
        next = dev.put_result(answer(&next, &h, "G")).await.0;
    }
    assert_eq!(seen, vec![6, 1, 3, 4], "5 skipped after its error");
    let (command, error, message): (i64, i64, String) = server
        .sql()
        .await
        .fetch_one(
            "SELECT last_error_command, last_error_code, last_error_message FROM device_sync",
        )
        .await;
    assert_eq!(
        (command, error, message.as_str()),
        (5, 1186, "settings storage not found")
    );
    // Retried in the next session.
    let commands = dev.sync(&h, "G").await;
    assert_eq!(codes(&commands), vec![5]);
    server.stop().await;
}

#[tokio::test]
async fn a_device_stays_in_sync_across_a_restart() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-0010", "pw").await;
    dev.begin().await.unwrap();
    let h = hashes(1, 2, 3, 4, 5);
    assert_eq!(dev.sync(&h, "G").await.len(), 5);
    let (dir, config) = server.stop().await;

    let server = TestServer::start_in(dir, config).await;
    // The heartbeats' "last seen" times were written by the shutdown at the latest.
    let later: bool = server
        .sql()
        .await
        .scalar("SELECT last_seen > first_seen FROM devices WHERE device_id = 'IMEI-0010'")
        .await;
    assert!(later);
    let mut dev = server.device("IMEI-0010", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev.sync(&h, "G").await.is_empty(), "nothing to redo");
    let groups = server.app.store.groups().await.unwrap();
    assert!(groups
        .iter()
        .any(|g| g.name == "G" && g.parent_id == Some(ROOT_GROUP)));
    assert!(groups.iter().any(|g| g.id == UNASSIGNED_GROUP));
    server.stop().await;
}

/// A device that applies pushed settings answers with the hash of its new settings. The rest of the
/// session is planned on that hash: no SETTINGS_GET of what was just pushed (2, 0 and not 2, 1, 0),
/// and the next session with the new hash has nothing to do.
#[tokio::test]
async fn a_settings_push_is_not_followed_by_a_get_of_what_was_pushed() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-0010", "pw").await;
    dev.begin().await.unwrap();
    let h = hashes(1, 2, 3, 4, 5);
    dev.sync(&h, "G").await;
    let changes = Params::default().with(
        "Scan",
        Value::Params(Params::default().with("Level", Value::Int(9))),
    );
    server
        .app
        .domain
        .queue_settings(&admin(), "IMEI-0010", &changes)
        .await
        .unwrap();

    let (command, error) = dev.heartbeat(Some(h.clone())).await;
    assert_eq!((command.code, code(error)), (2, 0));
    let applied = vec![0x77; 16];
    let (next, error) = dev
        .put_result(Command {
            code: 2,
            data: Some(CmdData::Hash(applied.clone())),
        })
        .await;
    assert_eq!((next.code, code(error)), (0, 0), "no GET after the push");

    let mut after = h.clone();
    after.hash_stgs = applied;
    let (command, error) = dev.heartbeat(Some(after)).await;
    assert_eq!((command.code, code(error)), (0, 0));
    server.stop().await;
}
