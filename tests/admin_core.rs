//! The admin core on the backend under test: accounts, rights, tokens (seed 001's R20–R26), the
//! audit trail, policy provenance and the event bus, through the domain layer every admin surface
//! calls, against a real server and database.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mobile_admin::domain::bus::BusEvent;
use mobile_admin::domain::policy::PolicyInput;
use mobile_admin::domain::{Access, Caller, DomainError, FuncArea, Role};
use mobile_admin::soap::{CmdData, Command, ParamError, Params, Value};
use mobile_admin::store::{AuditQuery, DeviceFilter, EventQuery, PageRequest, ROOT_GROUP};

const PASSWORD: &str = "correct horse battery";

async fn account(server: &TestServer, name: &str, role: Role) -> Caller {
    let domain = &server.app.domain;
    domain
        .create_account(&admin(), name, role, PASSWORD)
        .await
        .unwrap();
    domain.authenticate(name, PASSWORD, None).await.unwrap()
}

async fn audit_count(server: &TestServer) -> i64 {
    server
        .sql()
        .await
        .scalar("SELECT count(*) FROM audit")
        .await
}

/// Waits for the first bus event on `rx` that `wanted` accepts.
async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<BusEvent>>,
    wanted: impl Fn(&BusEvent) -> bool,
) -> Arc<BusEvent> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(event) if wanted(&event) => return event,
                Ok(_) => {}
                Err(e) => panic!("bus: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such event on the bus within 10 s"))
}

#[tokio::test]
async fn accounts_keep_argon2id_hashes_and_refuse_wrong_passwords() {
    let server = TestServer::start_with(|c| c.protocol.login_failures_per_device = 2).await;
    let domain = &server.app.domain;
    let ops = account(&server, "ops", Role::Operator).await;
    assert_eq!((ops.name.as_str(), ops.role), ("ops", Role::Operator));
    let hash: String = server
        .sql()
        .await
        .scalar("SELECT password_hash FROM accounts WHERE name = 'ops'")
        .await;
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains(PASSWORD));

    for wrong in ["wrong password", "another one", "and a third"] {
        let refused = domain.authenticate("ops", wrong, None).await.unwrap_err();
        assert!(
            matches!(refused, DomainError::Unauthenticated(_)),
            "{refused:?}"
        );
    }
    let unknown = domain
        .authenticate("nobody", PASSWORD, None)
        .await
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "unknown account or wrong password",
        "an unknown name and a wrong password look alike"
    );
    // Failures are counted in the database; the right password still gets in (after a wait).
    let counts = domain
        .throttle
        .counts(
            mobile_admin::domain::throttle::LoginKind::Admin,
            "ops",
            None,
        )
        .await
        .unwrap();
    assert_eq!(counts.name, 3);
    let started = std::time::Instant::now();
    domain.authenticate("ops", PASSWORD, None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));

    domain
        .set_account_disabled(&admin(), "ops", true)
        .await
        .unwrap();
    assert!(domain.authenticate("ops", PASSWORD, None).await.is_err());
    domain
        .set_password(&admin(), "ops", "a new password")
        .await
        .unwrap();
    domain
        .set_account_disabled(&admin(), "ops", false)
        .await
        .unwrap();
    domain
        .authenticate("ops", "a new password", None)
        .await
        .unwrap();
    assert!(domain
        .create_account(&admin(), "ops", Role::Auditor, PASSWORD)
        .await
        .is_err());
    assert!(domain
        .create_account(&admin(), "short", Role::Auditor, "2short")
        .await
        .is_err());
    server.stop().await;
}

/// Every role against operations of every area: allowed exactly where the role grants the right.
#[tokio::test]
async fn each_role_is_allowed_and_refused_per_right() {
    let server = TestServer::start().await;
    let domain = server.app.domain.clone();
    register(&server.app.store, "IMEI-R1").await;
    for (i, role) in Role::ALL.into_iter().enumerate() {
        let caller = account(&server, &format!("user-{i}"), role).await;
        let allowed = |area, access| role.allows(area, access);
        let check = |what: &str, area, access, outcome: Result<(), DomainError>| match outcome {
            Ok(()) => assert!(allowed(area, access), "{role:?} may not {what}"),
            Err(DomainError::Forbidden(_)) => {
                assert!(!allowed(area, access), "{role:?} may {what}")
            }
            Err(e) => panic!("{role:?} {what}: {e}"),
        };
        check(
            "list devices",
            FuncArea::Devices,
            Access::Read,
            domain
                .devices(&caller, &DeviceFilter::default(), PageRequest::default())
                .await
                .map(drop),
        );
        check(
            "create groups",
            FuncArea::Devices,
            Access::Write,
            domain
                .create_group(&caller, ROOT_GROUP, &format!("by-{i}"))
                .await
                .map(drop),
        );
        check(
            "block devices",
            FuncArea::Devices,
            Access::Execute,
            domain
                .set_device_blocked(&caller, "IMEI-R1", false)
                .await
                .map(drop),
        );
        let row = PolicyInput {
            path: format!("Role/By{i}"),
            value: Value::Int(1),
            locked: true,
        };
        check(
            "set policy",
            FuncArea::Policy,
            Access::Write,
            domain.set_policy(&caller, ROOT_GROUP, &row).await.map(drop),
        );
        check(
            "read policy",
            FuncArea::Policy,
            Access::Read,
            domain.effective_policy(&caller, ROOT_GROUP).await.map(drop),
        );
        check(
            "read events",
            FuncArea::Events,
            Access::Read,
            domain
                .events(&caller, &EventQuery::default())
                .await
                .map(drop),
        );
        check(
            "list update files",
            FuncArea::Updates,
            Access::Read,
            domain.update_files(&caller).await.map(drop),
        );
        check(
            "read the audit trail",
            FuncArea::Admins,
            Access::Read,
            domain
                .audit(&caller, &AuditQuery::default())
                .await
                .map(drop),
        );
        check(
            "create accounts",
            FuncArea::Admins,
            Access::Write,
            domain
                .create_account(&caller, &format!("made-by-{i}"), Role::Auditor, PASSWORD)
                .await
                .map(drop),
        );
        // Anyone manages their own tokens.
        let own = domain.create_token(&caller, "own", None).await.unwrap();
        domain
            .revoke_token(&caller, own.value.record.id)
            .await
            .unwrap();
    }
    server.stop().await;
}

/// Seed 001's token rules R20–R26, at the domain level.
#[tokio::test]
async fn api_tokens_follow_seed_001() {
    let server = TestServer::start_with(|c| c.admin.max_tokens_per_account = 3).await;
    let domain = &server.app.domain;
    let ops = account(&server, "ops", Role::Operator).await;

    // R20: garbage, a foreign signature or another audience are refused.
    for garbage in ["", "eyJhbGciOi.garbage.x", "not-a-jwt"] {
        assert!(matches!(
            domain.verify_token(garbage, None).await,
            Err(DomainError::Unauthenticated(_))
        ));
    }
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": "tok_x", "aud": "mobile-admin-api", "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_secret(b"not the server's key"),
    )
    .unwrap();
    assert!(domain.verify_token(&forged, None).await.is_err());

    // R22: every token has a subject of its own, and a change made with it names it.
    let first = domain
        .create_token(&ops, "ci", Some(1))
        .await
        .unwrap()
        .value;
    let second = domain
        .create_token(&ops, "ci", Some(2))
        .await
        .unwrap()
        .value;
    assert_ne!(first.record.subject, second.record.subject);
    let with_token = domain.verify_token(&first.token, None).await.unwrap();
    assert_eq!(
        with_token.token.as_deref(),
        Some(first.record.subject.as_str())
    );
    let changed = domain
        .create_group(&with_token, ROOT_GROUP, "Made with a token")
        .await
        .unwrap();
    assert_eq!(
        changed.audit.actor.token.as_deref(),
        Some(first.record.subject.as_str())
    );
    assert_eq!(changed.audit.actor.account, "ops");

    // R23: a revoked token is refused from then on.
    domain.revoke_token(&ops, second.record.id).await.unwrap();
    assert!(matches!(
        domain.verify_token(&second.token, None).await,
        Err(DomainError::Unauthenticated(_))
    ));
    // R24: deleting before expiry is refused, revoked or not.
    for token in [&first, &second] {
        assert!(matches!(
            domain.delete_token(&ops, token.record.id).await,
            Err(DomainError::Conflict(_))
        ));
    }

    // R25: three tokens, active and revoked, are the cap: a fourth is refused until the first
    // of them expires.
    let third = domain
        .create_token(&ops, "ci", Some(3))
        .await
        .unwrap()
        .value;
    let refused = domain.create_token(&ops, "ci", Some(3)).await.unwrap_err();
    assert!(matches!(refused, DomainError::Conflict(_)), "{refused:?}");
    // Session tokens of interactive logins do not count.
    let (_, session) = domain.login("ops", PASSWORD, None).await.unwrap();
    domain.verify_token(&session.token, None).await.unwrap();

    // R21: after a day the first token has expired and answers 401; after sixteen minutes the
    // session token has too.
    domain.clock().advance(Duration::from_secs(86_400 + 60));
    assert!(matches!(
        domain.verify_token(&first.token, None).await,
        Err(DomainError::Unauthenticated(_))
    ));
    assert!(domain.verify_token(&session.token, None).await.is_err());
    domain.verify_token(&third.token, None).await.unwrap();

    // R25 again: the first one expired, so there is room; R26: creating deleted the expired ones.
    let fourth = domain.create_token(&ops, "ci", Some(3)).await.unwrap();
    let now = domain.clock().now();
    let held = domain.tokens(&ops, None).await.unwrap();
    assert!(held.iter().all(|t| t.expires_at > now), "{held:#?}");
    assert!(held.iter().all(|t| t.id != first.record.id));
    assert!(held.iter().any(|t| t.id == fourth.value.record.id));
    // R24: once expired, a token may be deleted (the second, revoked, expires after two days).
    domain.clock().advance(Duration::from_secs(86_400));
    domain.delete_token(&ops, second.record.id).await.unwrap();

    // A disabled account's tokens stop working; another account's tokens are not ours to touch.
    let other = account(&server, "other", Role::Operator).await;
    assert!(matches!(
        domain.revoke_token(&other, third.record.id).await,
        Err(DomainError::Forbidden(_))
    ));
    domain
        .set_account_disabled(&admin(), "ops", true)
        .await
        .unwrap();
    assert!(domain.verify_token(&third.token, None).await.is_err());
    server.stop().await;
}

/// Every change writes its audit entry (who, from where, the object before and after) in its
/// transaction; a change that fails writes none.
#[tokio::test]
async fn audit_entries_come_with_the_change_and_only_with_it() {
    let server = TestServer::start().await;
    let domain = &server.app.domain;
    let mut ops = account(&server, "ops", Role::Operator).await;
    ops.address = Some("192.0.2.10".into());
    let before = audit_count(&server).await;
    let group = domain
        .create_group(&ops, ROOT_GROUP, "Sales")
        .await
        .unwrap();
    let renamed = domain
        .rename_group(&ops, group.value.id, "Sales EMEA")
        .await
        .unwrap();
    assert_eq!(audit_count(&server).await, before + 2);
    let entry = &renamed.audit;
    assert_eq!(
        (entry.action.as_str(), entry.object_kind.as_str()),
        ("group.rename", "group")
    );
    assert_eq!(entry.object_id, group.value.id.to_string());
    assert_eq!(entry.actor.account, "ops");
    assert_eq!(entry.actor.address.as_deref(), Some("192.0.2.10"));
    assert_eq!(entry.before.as_ref().unwrap()["name"], "Sales");
    assert_eq!(entry.after.as_ref().unwrap()["name"], "Sales EMEA");
    let stored = domain
        .audit(&admin(), &AuditQuery::default())
        .await
        .unwrap();
    assert_eq!(stored.items[0], *entry, "read back as written");

    // Failures: nothing changed, nothing audited.
    let duplicate = domain.create_group(&ops, ROOT_GROUP, "Sales EMEA").await;
    assert!(matches!(duplicate, Err(DomainError::Conflict(_))));
    domain
        .create_group(&ops, group.value.id, "Team")
        .await
        .unwrap();
    let not_empty = domain.delete_group(&ops, group.value.id).await;
    assert!(matches!(not_empty, Err(DomainError::Conflict(_))));
    let bad_move = domain.move_device(&ops, "IMEI-NOPE", group.value.id).await;
    assert!(matches!(bad_move, Err(DomainError::NotFound(_))));
    assert_eq!(audit_count(&server).await, before + 3);
    let groups: i64 = server
        .sql()
        .await
        .scalar("SELECT count(*) FROM groups WHERE name = 'Sales EMEA'")
        .await;
    assert_eq!(groups, 1);
    server.stop().await;
}

/// The effective policy of a group says, for each path, the value devices get and the group it
/// comes from: inherited from an ancestor's lock, or set by the group itself.
#[tokio::test]
async fn effective_policy_names_where_each_value_comes_from() {
    let server = TestServer::start().await;
    let domain = &server.app.domain;
    let sales = domain
        .create_group(&admin(), ROOT_GROUP, "Sales")
        .await
        .unwrap()
        .value
        .id;
    let team = domain
        .create_group(&admin(), sales, "Team")
        .await
        .unwrap()
        .value
        .id;
    let set = |group, path: &str, value, locked| {
        let row = PolicyInput {
            path: path.into(),
            value,
            locked,
        };
        async move { domain.set_policy(&admin(), group, &row).await.unwrap() }
    };
    set(ROOT_GROUP, "RTP/Enabled", Value::Bool(true), true).await;
    set(ROOT_GROUP, "Scan/Level", Value::Int(1), false).await;
    let overriding = set(sales, "Scan/Level", Value::Int(3), true).await;
    assert!(overriding
        .notices
        .contains(&mobile_admin::domain::Notice::PENDING_NEXT_HEARTBEAT));
    let shadowed = set(team, "RTP/Enabled", Value::Bool(false), true).await;
    assert!(shadowed
        .notices
        .contains(&mobile_admin::domain::Notice::SHADOWED_BY_ANCESTOR_LOCK));

    let effective = domain.effective_policy(&admin(), team).await.unwrap();
    let by = |path: &str| effective.iter().find(|p| p.path == path).unwrap();
    let rtp = by("RTP/Enabled");
    assert_eq!(
        (rtp.group_id, rtp.value.as_str(), rtp.locked),
        (ROOT_GROUP, "true", true)
    );
    assert_eq!(rtp.shadowed, vec![team]);
    let level = by("Scan/Level");
    assert_eq!((level.group_id, level.value.as_str()), (sales, "3"));
    assert!(level.applied);
    server.stop().await;
}

/// The bus hands an in-process subscriber a device event sent over the device port and an admin
/// change's audit entry, and policy edits made by hand in SQL.
#[tokio::test]
async fn the_bus_delivers_device_events_audit_entries_and_hand_edits() {
    let server = TestServer::start().await;
    let mut rx = server.app.domain.bus.subscribe();
    let mut dev = server.device("IMEI-BUS", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events(vec![event(1, "GNRL_EV_VIRUS_FOUND")])
        .await
        .is_none());
    let got = wait_for(&mut rx, |e| e.topic == "device.event").await;
    let stored = got.event.as_ref().unwrap();
    assert_eq!(
        (stored.device_id.as_str(), stored.event_id.as_str()),
        ("IMEI-BUS", "evt-1")
    );

    let changed = server
        .app
        .domain
        .create_group(&admin(), ROOT_GROUP, "Bus")
        .await
        .unwrap();
    let audit = wait_for(&mut rx, |e| e.topic == "audit").await;
    assert_eq!(audit.payload.as_ref().unwrap()["id"], changed.audit.id);
    assert!(audit.seq > got.seq, "commit order");

    let sql = server.sql().await;
    sql.execute("INSERT INTO policy (group_id, path, value_type, value, locked) VALUES (1, 'Hand/Edit', 'int', '5', 1)")
        .await;
    let edit = wait_for(&mut rx, |e| e.topic == "policy.changed").await;
    assert_eq!(edit.object_id.as_deref(), Some("1"));
    server.stop().await;
}

/// Device lifecycle reaches the bus: enrolment, a sync finished, a sync error, block, unblock,
/// reset, move and delete, each naming its device.
#[tokio::test]
async fn the_bus_carries_each_step_of_a_devices_life() {
    let server = TestServer::start().await;
    let mut rx = server.app.domain.bus.subscribe();
    let domain = server.app.domain.clone();
    let mut dev = server.device("IMEI-LIFE", "pw").await;
    dev.begin().await.unwrap();
    let enrolled = wait_for(&mut rx, |e| e.topic == "device.enrolled").await;
    assert_eq!(enrolled.object_id.as_deref(), Some("IMEI-LIFE"));

    let h = hashes(1, 2, 3, 4, 5);
    assert_eq!(dev.sync(&h, "G").await.len(), 5);
    let done = wait_for(&mut rx, |e| e.topic == "device.sync_done").await;
    assert_eq!(done.object_id.as_deref(), Some("IMEI-LIFE"));

    let changed = hashes(2, 2, 3, 4, 5);
    let (command, _) = dev.heartbeat(Some(changed)).await;
    assert_eq!(command.code, 5);
    let failure = ParamError::new(1186, "KLSTD", "settings storage not found");
    dev.put_result(Command {
        code: 5,
        data: Some(CmdData::Error(failure)),
    })
    .await;
    let error = wait_for(&mut rx, |e| e.topic == "device.sync_error").await;
    assert_eq!(error.object_id.as_deref(), Some("IMEI-LIFE"));

    let group = domain
        .create_group(&admin(), ROOT_GROUP, "Life")
        .await
        .unwrap()
        .value;
    for (step, topic) in [
        ("block", "device.blocked"),
        ("unblock", "device.unblocked"),
        ("reset", "device.reset"),
        ("move", "device.moved"),
        ("delete", "device.deleted"),
    ] {
        match step {
            "block" | "unblock" => {
                domain
                    .set_device_blocked(&admin(), "IMEI-LIFE", step == "block")
                    .await
                    .unwrap();
            }
            "reset" => {
                domain.reset_device(&admin(), "IMEI-LIFE").await.unwrap();
            }
            "move" => {
                domain
                    .move_device(&admin(), "IMEI-LIFE", group.id)
                    .await
                    .unwrap();
            }
            _ => {
                domain.delete_device(&admin(), "IMEI-LIFE").await.unwrap();
            }
        }
        let got = wait_for(&mut rx, |e| e.topic == topic).await;
        assert_eq!(got.object_id.as_deref(), Some("IMEI-LIFE"), "{step}");
    }
    server.stop().await;
}

/// A durable consumer goes on after a restart from the entry after the last one it acknowledged:
/// nothing skipped, nothing repeated, entries committed while it was away included.
#[tokio::test]
async fn a_durable_consumer_resumes_from_its_cursor_after_a_restart() {
    let server = TestServer::start().await;
    let domain = server.app.domain.clone();
    for name in ["A", "B", "C"] {
        domain
            .create_group(&admin(), ROOT_GROUP, name)
            .await
            .unwrap();
    }
    let mut consumer = domain.bus.consumer("test-sink", 0).await.unwrap();
    let first = consumer.next(2, Duration::from_secs(1)).await.unwrap();
    assert_eq!(first.events.len(), 2);
    consumer.ack(first.through.unwrap()).await.unwrap();
    let seen_before: Vec<i64> = first.events.iter().map(|e| e.seq).collect();
    drop(consumer);
    let (dir, config) = server.stop().await;

    let server = TestServer::start_in(dir, config).await;
    let domain = server.app.domain.clone();
    domain
        .create_group(&admin(), ROOT_GROUP, "D")
        .await
        .unwrap();
    let mut consumer = domain.bus.consumer("test-sink", 0).await.unwrap();
    assert_eq!(consumer.position(), *seen_before.last().unwrap());
    let mut rest = Vec::new();
    loop {
        let batch = consumer
            .next(100, Duration::from_millis(500))
            .await
            .unwrap();
        let Some(through) = batch.through else {
            break;
        };
        rest.extend(batch.events);
        consumer.ack(through).await.unwrap();
    }
    let all: Vec<i64> = seen_before
        .iter()
        .copied()
        .chain(rest.iter().map(|e| e.seq))
        .collect();
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(all, sorted, "in order, no entry twice");
    // The groups' entries, across both runs: each once, in order.
    let names: Vec<String> = first
        .events
        .iter()
        .chain(&rest)
        .filter(|e| e.topic == "audit")
        .filter_map(|e| {
            e.payload.as_ref()?["after"]["name"]
                .as_str()
                .map(str::to_string)
        })
        .filter(|name| name.len() == 1)
        .collect();
    assert_eq!(names, ["A", "B", "C", "D"]);
    server.stop().await;
}

/// Two nodes on one PostgreSQL database: the bus of each carries what the other committed, and
/// failed logins made at one node count at the other.
#[tokio::test]
async fn two_nodes_share_the_bus_and_the_login_budget() {
    if !postgres_or_skip("two_nodes_share_the_bus_and_the_login_budget") {
        return;
    }
    let a = TestServer::start_with(|c| c.protocol.login_failures_per_device = 1).await;
    let b_dir = tempfile::tempdir().unwrap();
    let b_config = mobile_admin::config::Config {
        database_url: a.config.database_url(),
        protocol: a.config.protocol.clone(),
        ..test_config(b_dir.path())
    };
    let b = mobile_admin::start(&b_config).await.unwrap();
    let mut rx = b.domain.bus.subscribe();

    let mut dev = a.device("IMEI-2N", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev.put_events(vec![event(7, "APP_EVENT")]).await.is_none());
    let got = wait_for(&mut rx, |e| e.topic == "device.event").await;
    assert_eq!(got.event.as_ref().unwrap().event_id, "evt-7");
    let changed = a
        .app
        .domain
        .create_group(&admin(), ROOT_GROUP, "From A")
        .await
        .unwrap();
    let audit = wait_for(&mut rx, |e| e.topic == "audit").await;
    assert_eq!(audit.payload.as_ref().unwrap()["id"], changed.audit.id);

    // Wrong device passwords at node A, an admin's at node A: node B counts them.
    let mut guesser = a.device("IMEI-2N", "wrong").await;
    for _ in 0..2 {
        assert_eq!(guesser.begin().await.unwrap_err().code, 1184);
    }
    let ip = Some("127.0.0.1".parse().unwrap());
    use mobile_admin::domain::throttle::LoginKind;
    let counts = b
        .domain
        .throttle
        .counts(LoginKind::Device, "IMEI-2N", ip)
        .await
        .unwrap();
    assert_eq!((counts.name, counts.pair), (2, 2));
    a.app
        .domain
        .create_account(&admin(), "ops", Role::Operator, PASSWORD)
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(a.app.domain.authenticate("ops", "nope", ip).await.is_err());
    }
    let counts = b
        .domain
        .throttle
        .counts(LoginKind::Admin, "ops", ip)
        .await
        .unwrap();
    assert_eq!(counts.name, 3);
    // The right password at node B waits for the failures made at node A.
    let started = std::time::Instant::now();
    b.domain.authenticate("ops", PASSWORD, ip).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    b.stop().await;
    a.stop().await;
}

/// A new server creates `admin` with a random password written to a file of mode 0600, and logs
/// the file's path, never the password; the command line manages accounts in the database.
#[tokio::test]
async fn the_first_start_creates_an_administrator_and_the_command_line_manages_accounts() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let file = server.config.initial_password_file();
    let password = std::fs::read_to_string(&file).unwrap();
    let password = password.trim();
    assert!(password.len() >= 20);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let caller = server
        .app
        .domain
        .authenticate("admin", password, None)
        .await
        .unwrap();
    assert_eq!(caller.role, Role::Administrator);
    let config = server.config.clone();
    let (dir, _) = server.stop().await;

    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mobile-admin"))
            .args(args)
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(["--database-url", &config.database_url()])
            .env_remove("MOBILE_ADMIN_TEST_BACKEND")
            .env_remove("MOBILE_ADMIN_TEST_PG_URL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(
        &[
            "admin",
            "add",
            "auditor1",
            "--role",
            "auditor",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run(&["admin", "list"], "");
    assert!(ok);
    assert!(out.contains("auditor1\tauditor\tenabled"), "{out}");
    assert!(out.contains("admin\tadministrator\tenabled"), "{out}");
    let (ok, _, _) = run(&["admin", "disable", "auditor1"], "");
    assert!(ok);
    let (ok, out, _) = run(&["admin", "list"], "");
    assert!(ok && out.contains("auditor1\tauditor\tdisabled"), "{out}");
    let (ok, _, err) = run(
        &["admin", "add", "x", "--role", "root", "--password-stdin"],
        "pw\n",
    );
    assert!(!ok && err.contains("unknown role"), "{err}");

    // A restart does not make another administrator.
    let server = TestServer::start_in(dir, config).await;
    let accounts = server.app.domain.accounts(&admin()).await.unwrap();
    assert_eq!(
        accounts
            .iter()
            .filter(|a| a.role == "administrator")
            .count(),
        1
    );
    assert!(server
        .app
        .domain
        .queue_settings(
            &admin(),
            "IMEI-NONE",
            &Params::new().with("X", Value::Int(1))
        )
        .await
        .is_err());
    server.stop().await;
}

/// Devices through the domain: pre-registered, listed with filters and pages, moved, read with
/// what they reported, deleted with their events.
#[tokio::test]
async fn devices_are_listed_filtered_paged_moved_and_deleted() {
    let server = TestServer::start().await;
    let domain = &server.app.domain;
    let sales = domain
        .create_group(&admin(), ROOT_GROUP, "Sales")
        .await
        .unwrap()
        .value
        .id;
    for i in 0..25 {
        domain
            .register_device(
                &admin(),
                &mobile_admin::domain::devices::NewDevice {
                    device_id: &format!("IMEI-L{i:02}"),
                    group: Some(sales),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let mut dev = server.device("IMEI-INFECTED", "pw").await;
    dev.begin().await.unwrap();
    dev.put_events(vec![event(1, "GNRL_EV_VIRUS_FOUND")]).await;
    domain
        .set_device_blocked(&admin(), "IMEI-L03", true)
        .await
        .unwrap();

    let in_sales = DeviceFilter {
        group_ids: vec![sales],
        ..DeviceFilter::default()
    };
    let page = |offset, limit| PageRequest { offset, limit };
    let first = domain
        .devices(&admin(), &in_sales, page(0, 10))
        .await
        .unwrap();
    assert_eq!((first.items.len(), first.total), (10, 25));
    let mut seen = Vec::new();
    for offset in (0..25).step_by(10) {
        let p = domain
            .devices(&admin(), &in_sales, page(offset, 10))
            .await
            .unwrap();
        seen.extend(p.items.into_iter().map(|d| d.device_id));
    }
    seen.dedup();
    assert_eq!(seen.len(), 25, "paging walks every device once");
    let blocked = DeviceFilter {
        states: vec![mobile_admin::store::DeviceState::Blocked],
        ..DeviceFilter::default()
    };
    let found = domain
        .devices(&admin(), &blocked, page(0, 100))
        .await
        .unwrap();
    assert_eq!(found.items[0].device_id, "IMEI-L03");
    assert_eq!(found.total, 1);
    let search = DeviceFilter {
        search: Some("l1".into()),
        ..DeviceFilter::default()
    };
    assert_eq!(
        domain
            .devices(&admin(), &search, page(0, 100))
            .await
            .unwrap()
            .total,
        10,
        "IMEI-L10 .. IMEI-L19, any case"
    );
    let infected = DeviceFilter {
        infected: Some(true),
        ..DeviceFilter::default()
    };
    let found = domain
        .devices(&admin(), &infected, page(0, 100))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].viruses_found, 1);
    assert!(domain
        .devices(&admin(), &DeviceFilter::default(), page(0, 1001))
        .await
        .is_err());

    let moved = domain
        .move_device(&admin(), "IMEI-INFECTED", sales)
        .await
        .unwrap();
    assert_eq!(moved.value.group_id, sales);
    let detail = domain.device(&admin(), "IMEI-INFECTED").await.unwrap();
    assert!(detail.device.enrolled && detail.device.last_seen.is_some());
    domain
        .delete_device(&admin(), "IMEI-INFECTED")
        .await
        .unwrap();
    assert!(matches!(
        domain.device(&admin(), "IMEI-INFECTED").await,
        Err(DomainError::NotFound(_))
    ));
    let events: i64 = server
        .sql()
        .await
        .scalar("SELECT count(*) FROM events")
        .await;
    assert_eq!(events, 0);
    let (_, error) = dev.heartbeat(None).await;
    assert_eq!(error.map(|e| e.code), Some(1186), "its session ended");
    assert!(matches!(
        domain.delete_group(&admin(), sales).await,
        Err(DomainError::Conflict(_))
    ));
    server.stop().await;
}
