//! Interoperability: a standard SOAP toolkit (Python zeep) driven only by the served WSDL, and every
//! response the server produces validated against `wsdl/` with xmllint.

mod common;

use common::xmllint::{require_xmllint, validate_envelope};
use common::*;
use mobile_admin::soap::{CmdData, Command, Request, Value};
use mobile_admin::store::ROOT_GROUP;

/// A policy with a string, an int and a nested container, so pushes carry every kind of value.
async fn set_policy(server: &TestServer) {
    let store = &server.app.store;
    store
        .set_policy(
            ROOT_GROUP,
            "Report/Server",
            &Value::String("sec.example".into()),
            true,
            "t",
        )
        .await
        .unwrap();
    store
        .set_policy(ROOT_GROUP, "Scan/Level", &Value::Int(3), true, "t")
        .await
        .unwrap();
    store
        .set_policy(
            ROOT_GROUP,
            "Lists/Trusted",
            &Value::Array(vec![Value::String("a".into()), Value::Long(1 << 40)]),
            true,
            "t",
        )
        .await
        .unwrap();
    store
        .set_subscription(ROOT_GROUP, 4, "GNRL_EV_VIRUS_FOUND", true, "t")
        .await
        .unwrap();
}

fn zeep_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import zeep"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeep_completes_a_session_from_the_served_wsdl() {
    assert!(
        zeep_available(),
        "Python zeep is required for this test: python3 -m pip install zeep (scripts/test does it)"
    );
    let server = TestServer::start().await;
    set_policy(&server).await;
    let url = format!("https://localhost:{}/wsdl", server.addr().port());
    let cert = generated_cert(server.dir.path());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/zeep_client.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["--url", &url, "--cafile"])
        .arg(&cert)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "zeep client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("commands=5,6,1,3,4"), "{stdout}");

    // What zeep sent was understood and stored.
    assert_eq!(server.app.store.device_count().await.unwrap(), 1);
    assert_eq!(server.app.store.event_count().await.unwrap(), 2);
    let (hash_set,): (i64,) = server
        .sql()
        .await
        .fetch_one(
            "SELECT count(*) FROM device_sync WHERE info_hash IS NOT NULL AND policy_digest IS NOT NULL",
        )
        .await;
    assert_eq!(hash_set, 1);
    server.stop().await;
}

#[tokio::test]
async fn the_served_wsdl_and_schemas_are_the_files_in_wsdl() {
    let server = TestServer::start().await;
    let mut conn = Connection::open(&server.connector, server.addr()).await;
    let (status, wsdl) = conn.request("GET", "/wsdl", "").await;
    assert_eq!(status, 200);
    let wsdl = String::from_utf8(wsdl.to_vec()).unwrap();
    let expected = std::fs::read_to_string("wsdl/aklwngt.wsdl")
        .unwrap()
        .replace("https://localhost:13292/", "https://localhost/");
    assert_eq!(wsdl, expected, "served with the address the client used");
    for path in [
        "/wsdl/aklwngt.xsd",
        "/aklwngt.xsd",
        "/wsdl/param.xsd",
        "/param.xsd",
    ] {
        let (status, body) = conn.request("GET", path, "").await;
        assert_eq!(status, 200, "{path}");
        let file = path.rsplit('/').next().unwrap();
        assert_eq!(
            body,
            std::fs::read(format!("wsdl/{file}")).unwrap(),
            "{path}"
        );
    }
    assert_eq!(conn.request("GET", "/wsdl/../secret.key", "").await.0, 404);
    server.stop().await;
}

#[tokio::test]
async fn every_response_the_server_produces_validates_against_the_wsdl() {
    require_xmllint().unwrap();
    let server = TestServer::start().await;
    set_policy(&server).await;
    std::fs::write(server.config.updates_dir().join("u.bin"), vec![7u8; 5000]).unwrap();
    let mut dev = server.device("IMEI-X1", "pw").await;
    let mut replies: Vec<(String, Vec<u8>)> = Vec::new();
    let mut send = |name: &str, reply: (hyper::StatusCode, bytes::Bytes)| {
        replies.push((name.to_string(), reply.1.to_vec()));
    };

    let begin = Request::SessionBegin {
        device_id: "IMEI-X1".into(),
        password: "pw".into(),
        protocol_version: mobile_admin::soap::PROTOCOL_VERSION,
    };
    send("SessionBegin", dev.call_raw(&begin).await);
    dev.begin().await.unwrap();
    let h = hashes(1, 2, 3, 4, 5);
    let sid = dev.session.clone();
    let hb = Request::Heartbeat {
        session_id: sid.clone(),
        sync: Some(h.clone()),
    };
    let (_, first) = dev.call_raw(&hb).await;
    send("Heartbeat", (hyper::StatusCode::OK, first.clone()));
    let (_, resp) = mobile_admin::soap::decode_response(&first, &Default::default()).unwrap();
    let mobile_admin::soap::Response::Heartbeat { mut command, .. } = resp else {
        panic!()
    };
    // Answer every command; keep each reply (they carry policy, subscriptions, ...).
    while command.code != 0 {
        let put = Request::PutResult {
            session_id: sid.clone(),
            result: answer(&command, &h, "Interop"),
        };
        let (_, raw) = dev.call_raw(&put).await;
        send(
            &format!("PutResult after {}", command.code),
            (hyper::StatusCode::OK, raw.clone()),
        );
        let (_, resp) = mobile_admin::soap::decode_response(&raw, &Default::default()).unwrap();
        let mobile_admin::soap::Response::PutResult { next_command, .. } = resp else {
            panic!()
        };
        command = next_command;
    }
    // A queued settings change gives a SETTINGS_PUT carrying a whole tree.
    let mut change = mobile_admin::soap::Params::default();
    change
        .0
        .insert("Name".into(), Value::String("Ivan's phone".into()));
    server
        .app
        .store
        .queue_settings("IMEI-X1", &change, "t")
        .await
        .unwrap();
    let (_, raw) = dev.call_raw(&hb).await;
    send(
        "Heartbeat with settings push",
        (hyper::StatusCode::OK, raw.clone()),
    );
    let bad_type = Request::PutResult {
        session_id: sid.clone(),
        result: Command {
            code: 2,
            data: Some(CmdData::Error(mobile_admin::soap::ParamError::new(
                1, "M", "no",
            ))),
        },
    };
    send("PutResult with CmdError", dev.call_raw(&bad_type).await);
    send(
        "PutResult unexpected",
        dev.call_raw(&Request::PutResult {
            session_id: sid.clone(),
            result: Command::bare(3),
        })
        .await,
    );
    send(
        "PutEvents",
        dev.call_raw(&Request::PutEvents {
            session_id: sid.clone(),
            events: vec![event(1, "GNRL_EV_VIRUS_FOUND"), event(2, "APP_EVENT")],
        })
        .await,
    );
    send(
        "GetFileInfo",
        dev.call_raw(&Request::GetFileInfo {
            session_id: sid.clone(),
            file_name: "u.bin".into(),
        })
        .await,
    );
    send(
        "GetNextFileChunk",
        dev.call_raw(&Request::GetNextFileChunk {
            session_id: sid.clone(),
            file_name: "u.bin".into(),
            start_pos: 100,
            needed_size: 1000,
        })
        .await,
    );
    send(
        "GetNextFileChunk missing",
        dev.call_raw(&Request::GetNextFileChunk {
            session_id: sid.clone(),
            file_name: "nope".into(),
            start_pos: 0,
            needed_size: 10,
        })
        .await,
    );
    send(
        "SessionEnd",
        dev.call_raw(&Request::SessionEnd {
            session_id: sid.clone(),
        })
        .await,
    );
    send(
        "Heartbeat unknown session",
        dev.call_raw(&Request::Heartbeat {
            session_id: sid.clone(),
            sync: None,
        })
        .await,
    );
    send(
        "SessionBegin wrong password",
        dev.call_raw(&Request::SessionBegin {
            device_id: "IMEI-X1".into(),
            password: "bad".into(),
            protocol_version: mobile_admin::soap::PROTOCOL_VERSION,
        })
        .await,
    );
    send("Fault", dev.conn.post("<not-soap/>").await);
    // An old-style client gets its own namespaces back, header echoed.
    let legacy = include_str!("fixtures/wsdl/heartbeat.request.sync.old.xml")
        .replace("Qm9vdHN0cmFwU2Vzc2lvbg", "no-such-session");
    send("Heartbeat old style", dev.conn.post(legacy).await);

    let mut failures = Vec::new();
    for (name, xml) in &replies {
        let xml = String::from_utf8(xml.clone()).unwrap();
        if let Err(e) = validate_envelope(&xml) {
            failures.push(format!("{name}: {e}\n{xml}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(replies.len() >= 17, "{}", replies.len());
    server.stop().await;
}
