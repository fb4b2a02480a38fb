//! The admin command line driven as a process against the real server binary: login kept in the
//! user's configuration directory (mode 0600), every command group, tables and `--json`, and the
//! server's message with a non-zero status on failure. The request log names the token's subject.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

struct Ctl<'a> {
    home: &'a Path,
    server: String,
    cacert: std::path::PathBuf,
}

impl Ctl<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mobile-admin"));
        command
            .arg("ctl")
            .args(args)
            .env("XDG_CONFIG_HOME", self.home)
            .env("HOME", self.home)
            .env_remove("MOBILE_ADMIN_SERVER")
            .env_remove("MOBILE_ADMIN_TOKEN")
            .current_dir(self.home);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("ctl runs")
    }

    /// Runs a command that must succeed and returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut with = vec!["--json"];
        with.extend_from_slice(args);
        serde_json::from_str(&self.ok(&with)).expect("JSON output")
    }

    /// Runs a command that must fail and returns its standard error.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "ctl {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    fn login(&self, password: &str) -> Output {
        let mut child = self
            .command(&[
                "login",
                "--server",
                &self.server,
                "--cacert",
                self.cacert.to_str().unwrap(),
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    }
}

#[tokio::test]
async fn the_command_line_manages_the_server_through_the_api() {
    let dir = TestDir::new().await;
    let process = ServerProcess::spawn(dir.path(), &["--database-url", dir.db.url()]);
    let home = tempfile::tempdir().unwrap();
    let ctl = Ctl {
        home: home.path(),
        server: format!("https://127.0.0.1:{}", process.admin_addr.port()),
        cacert: generated_cert(dir.path()),
    };
    let password = std::fs::read_to_string(dir.path().join("initial-admin-password")).unwrap();

    // Not logged in yet; a wrong password is refused with the server's message.
    assert!(ctl.fails(&["devices", "list"]).contains("not logged in"));
    let wrong = ctl.login("not the password");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"));
    let right = ctl.login(password.trim());
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    let saved = home.path().join("mobile-admin/ctl.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Groups and devices.
    let group = ctl.json(&["groups", "create", "1", "Sales"]);
    let sales = group["id"].as_i64().unwrap().to_string();
    ctl.ok(&["groups", "rename", &sales, "Sales EMEA"]);
    let groups = ctl.ok(&["groups", "list"]);
    assert!(groups.contains("Sales EMEA"), "{groups}");
    ctl.ok(&[
        "devices",
        "preregister",
        "IMEI-CLI-1",
        "--group",
        &sales,
        "--name",
        "Phone",
    ]);
    ctl.ok(&["devices", "preregister", "IMEI-CLI-2"]);
    let table = ctl.ok(&["devices", "list", "--group", &sales]);
    assert!(table.starts_with("DEVICE_ID"), "{table}");
    assert!(
        table.contains("IMEI-CLI-1") && !table.contains("IMEI-CLI-2"),
        "{table}"
    );
    let listed = ctl.json(&["devices", "list", "--status", "never_seen"]);
    assert_eq!(listed["total_count"], 2);
    ctl.ok(&["devices", "move", "IMEI-CLI-2", &sales]);
    ctl.ok(&["devices", "rename", "IMEI-CLI-2", "Second"]);
    let blocked = ctl.json(&["devices", "block", "IMEI-CLI-2"]);
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(
        ctl.json(&["devices", "unblock", "IMEI-CLI-2"])["status"],
        "active"
    );
    ctl.ok(&["devices", "reset", "IMEI-CLI-2"]);
    let shown = ctl.ok(&["devices", "show", "IMEI-CLI-2"]);
    assert!(shown.contains("Second"), "{shown}");
    ctl.ok(&["devices", "delete", "IMEI-CLI-2"]);
    let gone = ctl.fails(&["devices", "show", "IMEI-CLI-2"]);
    assert!(
        gone.contains("404") && gone.contains("IMEI-CLI-2"),
        "{gone}"
    );

    // Policy: set, lock, unlock, unset, effective.
    ctl.ok(&["policy", "set", &sales, "Scan/Level", "3", "--type", "int"]);
    ctl.ok(&["policy", "set", "1", "Scan/Level", "4", "--type", "int"]);
    let effective = ctl.json(&["policy", "effective", &sales]);
    assert_eq!(effective["list"][0]["group_id"], 1, "the root's lock wins");
    ctl.ok(&["policy", "unlock", "1", "Scan/Level"]);
    let effective = ctl.json(&["policy", "effective", "--device", "IMEI-CLI-1"]);
    assert_eq!(effective["list"][0]["value"]["value"], 3);
    ctl.ok(&["policy", "lock", "1", "Scan/Level"]);
    ctl.ok(&["policy", "unset", "1", "Scan/Level"]);
    let rows = ctl.ok(&["policy", "list", &sales]);
    assert!(
        rows.contains("Scan/Level") && rows.contains("3 (int)"),
        "{rows}"
    );
    assert!(ctl
        .fails(&["policy", "set", &sales, "X", "maybe", "--type", "bool"])
        .contains("0 or 1"));

    // Subscriptions.
    ctl.ok(&["subscriptions", "add", &sales, "4", "GNRL_EV_VIRUS_FOUND"]);
    assert!(ctl
        .ok(&["subscriptions", "list", &sales])
        .contains("GNRL_EV_VIRUS_FOUND"));
    ctl.ok(&[
        "subscriptions",
        "remove",
        &sales,
        "4",
        "GNRL_EV_VIRUS_FOUND",
    ]);

    // Tokens: one made here works as --token.
    let made = ctl.json(&["tokens", "create", "ci", "--days", "7"]);
    let token = made["token"].as_str().unwrap().to_string();
    let id = made["id"].as_i64().unwrap().to_string();
    let by_token = ctl.json(&["--token", &token, "groups", "list"]);
    assert_eq!(by_token["total_count"], 3);
    assert!(ctl.ok(&["tokens", "list"]).contains("ci"));
    ctl.ok(&["tokens", "revoke", &id]);
    assert!(ctl
        .fails(&["--token", &token, "groups", "list"])
        .contains("401"));
    assert!(ctl.fails(&["tokens", "delete", &id]).contains("400"));

    // Update files.
    let file = home.path().join("av.bin");
    std::fs::write(&file, vec![5u8; 200_000]).unwrap();
    let uploaded = ctl.json(&[
        "updates",
        "upload",
        file.to_str().unwrap(),
        "--name",
        "bases/av.bin",
    ]);
    assert_eq!(uploaded["size"], 200_000);
    assert!(ctl.ok(&["updates", "list"]).contains("bases/av.bin"));
    ctl.ok(&["updates", "delete", "bases/av.bin"]);

    // Events and the audit trail.
    let connector = tls_client(&generated_cert(dir.path()));
    let mut dev = TestDevice {
        conn: Connection::open(&connector, process.addr).await,
        id: "IMEI-CLI-1".into(),
        password: "pw".into(),
        session: String::new(),
    };
    dev.begin().await.unwrap();
    assert!(dev
        .put_events(vec![event(1, "GNRL_EV_VIRUS_FOUND")])
        .await
        .is_none());
    let events = ctl.ok(&["events", "list", "--device", "IMEI-CLI-1"]);
    assert!(events.contains("GNRL_EV_VIRUS_FOUND"), "{events}");
    let audit = ctl.json(&["audit", "--kind", "device"]);
    assert!(audit["total_count"].as_u64().unwrap() >= 5);

    // --follow prints what arrives after it started.
    let mut follow = ctl
        .command(&["--json", "events", "list", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(dev
        .put_events(vec![event(2, "APP_STARTED")])
        .await
        .is_none());
    let stdout = follow.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line
    });
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), line)
        .await
        .expect("a followed event within 10 s")
        .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    let followed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(followed["event_id"], "evt-2");

    // The request log names the session token's subject.
    let subject = serde_json::from_slice::<Value>(&std::fs::read(&saved).unwrap()).unwrap();
    let token = subject["token"].as_str().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    let sub = claims["sub"].as_str().unwrap().to_string();
    let logged = process.log.lock().unwrap().clone();
    assert!(
        logged.iter().any(|l| l.contains("admin request")
            && l.contains(&sub)
            && l.contains("/api/v1/groups")),
        "no request line names {sub}"
    );

    ctl.ok(&["logout"]);
    assert!(!saved.exists());
    assert!(ctl.fails(&["groups", "list"]).contains("not logged in"));
    process.kill();
}

/// `ctl backend`: sending product backend commands, waiting for them, listing them and the consoles.
#[tokio::test]
async fn the_command_line_sends_backend_commands() {
    let dir = TestDir::new().await;
    let process = ServerProcess::spawn(dir.path(), &["--database-url", dir.db.url()]);
    let home = tempfile::tempdir().unwrap();
    let ctl = Ctl {
        home: home.path(),
        server: format!("https://127.0.0.1:{}", process.admin_addr.port()),
        cacert: generated_cert(dir.path()),
    };
    let password = std::fs::read_to_string(dir.path().join("initial-admin-password")).unwrap();
    assert!(ctl.login(password.trim()).status.success());
    let send = [
        "backend",
        "send",
        "echo",
        "--product",
        "P",
        "--version",
        "1.0",
    ];

    // No console: failed at once.
    let sent = ctl.json(&send);
    assert_eq!(sent["state"], "failed", "{sent}");
    assert!(ctl
        .fails(&[
            "backend",
            "send",
            "echo",
            "--product",
            "P",
            "--version",
            "1.0",
            "--params",
            "[1"
        ])
        .contains("--params"));

    // A polling console answers; `show --wait` prints the result.
    let api = common::api::Api::new(dir.path(), process.admin_addr);
    let admin = api.login("admin", password.trim()).await;
    admin
        .post(
            "/admins",
            serde_json::json!({"name": "console", "role": "integration",
                "password": "a long enough password"}),
        )
        .await
        .ok();
    let console = api.login("console", "a long enough password").await;
    let sub = console
        .post(
            "/backend-subscriptions",
            serde_json::json!({"event": "KLSRV_EV_PROD_BACKEND_CMD",
                "filter": {"CMD_PROD_NAME": "P", "CMD_PROD_VERSION": "1.0"}}),
        )
        .await
        .ok();
    let consoles = ctl.ok(&["backend", "consoles", "--product", "P", "--version", "1.0"]);
    assert!(
        consoles.contains("console") && consoles.contains("poll"),
        "{consoles}"
    );
    let mut with_params = send.to_vec();
    with_params.extend(["--params", r#"{"n": {"type": "int", "value": 5}}"#]);
    let sent = ctl.json(&with_params);
    let id = sent["CMD_ID"].as_str().unwrap().to_string();
    assert_eq!(sent["state"], "pending");
    console
        .send(console.request(
            reqwest::Method::POST,
            &format!(
                "/backend-subscriptions/{}/retrieve",
                sub["id"].as_str().unwrap()
            ),
        ))
        .await
        .ok();
    let payload = console
        .get(&format!("/backend-commands/{id}/payload"))
        .await
        .ok();
    console
        .put(
            &format!("/backend-commands/{id}/result"),
            payload["CMD_PARAMS"].clone(),
        )
        .await
        .ok();
    let shown = ctl.json(&["backend", "show", &id, "--wait", "10"]);
    assert_eq!(shown["state"], "done");
    assert_eq!(shown["result"]["n"]["value"], 5);
    let table = ctl.ok(&["backend", "list", "--state", "done"]);
    assert!(
        table.starts_with("CMD_ID") && table.contains(&id),
        "{table}"
    );
    assert!(ctl
        .fails(&["backend", "show", "no-such-command"])
        .contains("404"));
    process.kill();
}
