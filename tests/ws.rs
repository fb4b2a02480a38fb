//! The live External API (seed 003) over real WSS: rules X1–X22, the product's events, relayed
//! commands, GELF logs, bounds, slow consumers and resuming with `after`. Runs on both backends.

mod common;

use std::time::Duration;

use common::ws::{code, Ws};
use common::*;
use serde_json::{json, Value};

fn admin_password(server: &TestServer) -> String {
    std::fs::read_to_string(server.dir.path().join("initial-admin-password"))
        .unwrap()
        .trim()
        .to_string()
}

async fn admin(server: &TestServer) -> (Ws, String) {
    let mut ws = Ws::connect(server).await;
    let id = ws.login("admin", &admin_password(server)).await;
    (ws, id)
}

/// Creates an account with `role` through the REST API.
async fn account(server: &TestServer, name: &str, role: &str) {
    server
        .api()
        .await
        .post(
            "/admins",
            json!({"name": name, "role": role, "password": "a long enough password"}),
        )
        .await
        .ok();
}

async fn as_user(server: &TestServer, name: &str) -> (Ws, String) {
    let mut ws = Ws::connect(server).await;
    let id = ws.login(name, "a long enough password").await;
    (ws, id)
}

/// X1–X5, X7: the envelope, the login and its metadata, tokens and cookies.
#[tokio::test]
async fn login_comes_first_and_echoes_tids() {
    let server = TestServer::start().await;
    let mut ws = Ws::connect(&server).await;
    // X2: nothing but a login before a login.
    let refused = ws.call("user", "list", json!({})).await;
    assert_eq!(refused["tid"], 1, "X1: the tid is echoed");
    assert_eq!(code(&refused), "not_logged_in");
    // X3: user is mandatory; a wrong or missing password is refused.
    assert_eq!(
        code(&ws.call("user", "login", json!({"password": "x"})).await),
        "missing_field"
    );
    assert_eq!(
        code(
            &ws.call(
                "user",
                "login",
                json!({"user": "admin", "password": "wrong"})
            )
            .await
        ),
        "not_logged_in"
    );
    assert_eq!(
        code(&ws.call("user", "login", json!({"user": "admin"})).await),
        "missing_field"
    );
    // Malformed messages get an error, and the connection goes on.
    ws.send_text("{not json".into()).await;
    let bad = ws.pushed().await;
    assert_eq!((code(&bad), &bad["tid"]), ("invalid_field", &Value::Null));
    // X3, X5: a login with extra fields.
    let ok = ws
        .call(
            "user",
            "login",
            json!({"user": "admin", "password": admin_password(&server), "meta1": "value1"}),
        )
        .await;
    assert_eq!(ok["result"], "ok");
    let first = ok["data"]["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        code(&ws.call("user", "login", json!({"user": "admin"})).await),
        "invalid_field"
    );
    // X4: another connection gets another id.
    let (_other, second) = admin(&server).await;
    assert_ne!(first, second);
    // X7: user/get needs a user; it lists each live session with its metadata.
    assert_eq!(
        code(&ws.call("user", "get", json!({})).await),
        "missing_field"
    );
    let got = ws.call("user", "get", json!({"user": "admin"})).await;
    let sessions = got["data"].as_object().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[&first]["type"], "api_server");
    assert!(sessions[&first]["remote"]
        .as_str()
        .unwrap()
        .starts_with("wss:127.0.0.1:"));
    assert_eq!(sessions[&first]["meta"], json!({"meta1": "value1"}));
    // Unknown commands and classes.
    assert_eq!(code(&ws.call("user", "fly", json!({})).await), "not_found");
    // A REST API token logs in too, as a field or as the cookie of the upgrade.
    let api = server.api().await;
    let token = api.token.clone().unwrap();
    let mut by_token = Ws::connect(&server).await;
    let reply = by_token
        .call("user", "login", json!({"user": "admin", "token": token}))
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let cookie = format!("api_access_token={token}");
    let mut by_cookie = Ws::connect_with(&server, &[("cookie", &cookie)]).await;
    let reply = by_cookie
        .call("user", "login", json!({"user": "admin"}))
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let mut wrong = Ws::connect_with(&server, &[("cookie", &cookie)]).await;
    assert_eq!(
        code(&wrong.call("user", "login", json!({"user": "olga"})).await),
        "not_logged_in"
    );
    server.stop().await;
}

/// X6, X8, X9, X10, X20, X21, and who may act on whose sessions.
#[tokio::test]
async fn users_sessions_and_their_events() {
    let server = TestServer::start().await;
    account(&server, "olga", "operator").await;
    let (mut a1, a1_id) = admin(&server).await;
    let (mut a2, _) = admin(&server).await;
    let (mut b1, b1_id) = as_user(&server, "olga").await;
    // X6
    let list = a1.call("user", "list", json!({})).await["data"].clone();
    assert_eq!(list["admin"].as_array().unwrap().len(), 2);
    assert_eq!(list["olga"], json!([b1_id]));
    // A non-administrator sees only itself.
    let mine = b1.call("user", "list", json!({})).await["data"].clone();
    assert_eq!(mine, json!({"olga": [b1_id]}));
    assert_eq!(
        code(&b1.call("user", "get", json!({"user": "admin"})).await),
        "not_permitted"
    );
    assert_eq!(
        code(
            &b1.call("session", "stop", json!({"session_id": a1_id}))
                .await
        ),
        "not_permitted"
    );
    // X20: a fresh session lists exactly its two automatic subscriptions.
    let subs = b1.call("event", "get_subscriptions", json!({})).await["data"].clone();
    assert_eq!(
        subs,
        json!([
            {"class": "core", "subclass": "session_event", "type": "*", "obj_id": b1_id},
            {"class": "core", "subclass": "user_event", "type": "*", "obj_id": "olga"},
        ])
    );
    // X8: every session of the user, and only those.
    let sent = a1
        .call(
            "user",
            "send_event",
            json!({"user": "admin", "type": "my_type", "body": {"k": 1}}),
        )
        .await;
    assert_eq!(sent["result"], "ok");
    for ws in [&mut a1, &mut a2] {
        assert_eq!(
            ws.event().await,
            json!({"class": "core", "subclass": "user_event", "type": "my_type", "obj_id": "admin",
                "body": {"k": 1}})
        );
    }
    b1.nothing_for(300).await;
    // The type "*" is left out.
    a1.call("user", "send_event", json!({"user": "olga"})).await;
    assert_eq!(
        b1.event().await,
        json!({"class": "core", "subclass": "user_event", "obj_id": "olga"})
    );
    // X10: only the target session.
    a2.call(
        "session",
        "send_event",
        json!({"session_id": a1_id, "type": "t"}),
    )
    .await;
    assert_eq!(
        a1.event().await,
        json!({"class": "core", "subclass": "session_event", "type": "t", "obj_id": a1_id})
    );
    a2.nothing_for(300).await;
    // X9: stopped sessions close, leave the list and receive nothing more.
    let stopped = a1
        .call("session", "stop", json!({"session_id": b1_id}))
        .await;
    assert_eq!(stopped["result"], "ok");
    let (_, reason) = b1.closed().await;
    assert!(reason.contains("stopped by admin"), "{reason}");
    // X6, X21: a closed connection leaves the list.
    drop(a2);
    for _ in 0..50 {
        let list = a1.call("user", "list", json!({})).await["data"].clone();
        if list == json!({"admin": [a1_id]}) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        a1.call("user", "list", json!({})).await["data"],
        json!({"admin": [a1_id]})
    );
    assert_eq!(
        code(
            &a1.call("session", "send_event", json!({"session_id": b1_id}))
                .await
        ),
        "not_found"
    );
    server.stop().await;
}

/// X14–X19, X22 and `send_event`/`send`: each field on its own, bodies merged, exact unsubscribe.
#[tokio::test]
async fn subscriptions_match_field_by_field() {
    let server = TestServer::start().await;
    let (mut s1, _) = admin(&server).await;
    let (mut s2, _) = admin(&server).await;
    let (mut s3, _) = admin(&server).await;
    let (mut sender, _) = admin(&server).await;
    // X14
    assert_eq!(
        code(
            &s1.call("event", "subscribe", json!({"subclass": "x"}))
                .await
        ),
        "missing_field"
    );
    assert_eq!(
        code(
            &s1.call(
                "event",
                "subscribe",
                json!({"class": "a", "service": "other"})
            )
            .await
        ),
        "invalid_field"
    );
    let ok = |r: Value| assert_eq!(r["result"], "ok", "{r}");
    ok(s1
        .call(
            "event",
            "subscribe",
            json!({"class": "media", "subclass": "session", "body": {"my_key": "my value"}}),
        )
        .await);
    ok(s2
        .call(
            "event",
            "subscribe",
            json!({"class": "media", "type": "started"}),
        )
        .await);
    ok(s3.call("event", "subscribe", json!({"class": "*"})).await);
    // Everything given: each subscription matches; the bodies merge (X18).
    ok(sender
        .call(
            "event",
            "send_event",
            json!({"class": "media", "subclass": "session",
            "type": "started", "obj_id": "o1", "body": {"b": 2}}),
        )
        .await);
    let full = |body: Value| {
        json!({"class": "media", "subclass": "session", "type": "started", "obj_id": "o1",
            "body": body})
    };
    let strip = |mut v: Value| {
        assert!(v["seq"].as_i64().unwrap() > 0, "{v}");
        assert!(v["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{v}");
        v.as_object_mut().unwrap().remove("seq");
        v.as_object_mut().unwrap().remove("at");
        v
    };
    assert_eq!(
        strip(s1.event().await),
        full(json!({"my_key": "my value", "b": 2}))
    );
    assert_eq!(strip(s2.event().await), full(json!({"b": 2})));
    assert_eq!(strip(s3.event().await), full(json!({"b": 2})));
    // X16, X17: no type (and "*" is no type): s2's specific type does not match; the field is
    // left out of what is delivered. `send` is `send_event`.
    ok(sender
        .call(
            "event",
            "send",
            json!({"class": "media", "subclass": "session", "type": "*",
            "body": {"my_key": "the event's"}}),
        )
        .await);
    let expect =
        json!({"class": "media", "subclass": "session", "body": {"my_key": "the event's"}});
    assert_eq!(
        strip(s1.event().await),
        expect,
        "X18: the event's value wins"
    );
    assert_eq!(strip(s3.event().await), expect);
    s2.nothing_for(300).await;
    // X15: a wildcard subclass matches an event without one.
    ok(sender
        .call(
            "event",
            "send_event",
            json!({"class": "media", "type": "started"}),
        )
        .await);
    assert_eq!(
        strip(s2.event().await),
        json!({"class": "media", "type": "started"})
    );
    assert_eq!(
        strip(s3.event().await),
        json!({"class": "media", "type": "started"})
    );
    s1.nothing_for(300).await;
    // X19: unsubscribe needs exactly the same fields (the body aside).
    assert_eq!(
        code(
            &s1.call("event", "unsubscribe", json!({"class": "media"}))
                .await
        ),
        "not_found"
    );
    ok(sender
        .call(
            "event",
            "send_event",
            json!({"class": "media", "subclass": "session"}),
        )
        .await);
    assert_eq!(
        strip(s1.event().await),
        json!({"class": "media", "subclass": "session", "body": {"my_key": "my value"}})
    );
    ok(s1
        .call(
            "event",
            "unsubscribe",
            json!({"class": "media", "subclass": "session", "type": "*", "body": {"other": 1}}),
        )
        .await);
    // X20: gone from the list.
    assert_eq!(
        s1.call("event", "get_subscriptions", json!({})).await["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    ok(sender
        .call(
            "event",
            "send_event",
            json!({"class": "media", "subclass": "session"}),
        )
        .await);
    s1.nothing_for(300).await;
    // The server's own classes are not for clients to send.
    for class in ["mdm", "intake", "core"] {
        assert_eq!(
            code(
                &sender
                    .call("event", "send_event", json!({"class": class}))
                    .await
            ),
            "not_permitted"
        );
    }
    assert_eq!(
        code(&sender.call("event", "send_event", json!({})).await),
        "missing_field"
    );
    // X22: subscriptions the account's role may not read are refused.
    account(&server, "ingrid", "integration").await;
    account(&server, "olga", "operator").await;
    let (mut ingrid, _) = as_user(&server, "ingrid").await;
    for class in [
        json!({"class": "mdm"}),
        json!({"class": "intake"}),
        json!({"class": "mdm", "subclass": "device"}),
    ] {
        assert_eq!(
            code(&ingrid.call("event", "subscribe", class).await),
            "not_permitted"
        );
    }
    let (mut olga, _) = as_user(&server, "olga").await;
    assert_eq!(
        code(
            &olga
                .call(
                    "event",
                    "subscribe",
                    json!({"class": "mdm", "subclass": "audit"})
                )
                .await
        ),
        "not_permitted"
    );
    ok(olga
        .call(
            "event",
            "subscribe",
            json!({"class": "mdm", "subclass": "device"}),
        )
        .await);
    server.stop().await;
}

/// The product's events: device lifecycle and events, policy, groups and settings (hand edits in
/// SQL included), intake events; each only for accounts that may read its area.
#[tokio::test]
async fn product_events_reach_subscribers() {
    let server = TestServer::start_with(|c| c.intake.require_auth = false).await;
    account(&server, "olga", "operator").await;
    let (mut ws, _) = admin(&server).await;
    for sub in [
        json!({"class": "mdm", "subclass": "device", "obj_id": "IMEI-LIVE"}),
        json!({"class": "mdm", "subclass": "event", "obj_id": "IMEI-LIVE"}),
        json!({"class": "mdm", "subclass": "policy"}),
        json!({"class": "mdm", "subclass": "group"}),
        json!({"class": "mdm", "subclass": "settings"}),
        json!({"class": "intake"}),
    ] {
        assert_eq!(ws.call("event", "subscribe", sub).await["result"], "ok");
    }
    let (mut olga, _) = as_user(&server, "olga").await;
    assert_eq!(
        olga.call("event", "subscribe", json!({"class": "*"})).await["result"],
        "ok"
    );

    let mut dev = server.device("IMEI-LIVE", "pw").await;
    dev.begin().await.unwrap();
    let enrolled = ws.event().await;
    assert_eq!(
        (
            &enrolled["class"],
            &enrolled["subclass"],
            &enrolled["type"],
            &enrolled["obj_id"]
        ),
        (
            &json!("mdm"),
            &json!("device"),
            &json!("enrolled"),
            &json!("IMEI-LIVE")
        )
    );
    assert!(dev
        .put_events(vec![event(1, "GNRL_EV_VIRUS_FOUND")])
        .await
        .is_none());
    let got = ws.event().await;
    assert_eq!(
        (&got["subclass"], &got["type"], &got["obj_id"]),
        (
            &json!("event"),
            &json!("GNRL_EV_VIRUS_FOUND"),
            &json!("IMEI-LIVE")
        )
    );
    assert_eq!(got["body"]["device_id"], "IMEI-LIVE");
    assert!(got["seq"].as_i64().unwrap() > enrolled["seq"].as_i64().unwrap());

    // Hand edits in SQL are events too.
    let db = server.sql().await;
    db.execute("INSERT INTO groups (parent_id, name) VALUES (1, 'Sales')")
        .await;
    let group = ws.event().await;
    assert_eq!(
        (&group["subclass"], &group["type"]),
        (&json!("group"), &json!("changed"))
    );
    let group_id = group["obj_id"].as_str().unwrap().to_string();
    db.execute(&format!(
        "INSERT INTO policy (group_id, path, value_type, value) VALUES ({group_id}, 'Av/Level', 'int', '3')"
    ))
    .await;
    let policy = ws.event().await;
    assert_eq!(
        (&policy["subclass"], &policy["type"], &policy["obj_id"]),
        (&json!("policy"), &json!("changed"), &json!(group_id))
    );
    // Settings an admin wants pushed, through the REST API.
    let api = server.api().await;
    api.put(
        "/devices/IMEI-LIVE/settings",
        json!({"changes": {"Av": {"type": "params", "value": {"Level": {"type": "int", "value": 2}}}}}),
    )
    .await
    .ok();
    let settings = ws.event().await;
    assert_eq!(
        (&settings["subclass"], &settings["obj_id"]),
        (&json!("settings"), &json!("IMEI-LIVE"))
    );
    // Intake events.
    let mut intake = server.api_anonymous();
    intake.base = intake.base.trim_end_matches("/api/v1").to_string();
    intake
        .post(
            "/api/OrchEvents",
            json!({"Id": "955f8b51-00a4-4807-b723-a3e5c547da01",
            "Event": 2001, "EventType": 3, "EntityId": "robot-7", "Text": "hello"}),
        )
        .await
        .ok();
    let got = ws.event().await;
    assert_eq!(
        (
            &got["class"],
            &got["subclass"],
            &got["type"],
            &got["obj_id"]
        ),
        (
            &json!("intake"),
            &json!("SecurityIncident"),
            &json!("2001"),
            &json!("robot-7")
        )
    );
    assert_eq!(got["body"]["text"], "hello");
    // The operator's wildcard got the device's events but no audit entries (no Read on admins).
    let mut subclasses = Vec::new();
    while let Some(v) = olga.next_within(Duration::from_millis(500)).await {
        subclasses.push(v["data"]["subclass"].as_str().unwrap_or("").to_string());
    }
    assert!(subclasses.contains(&"device".to_string()), "{subclasses:?}");
    assert!(subclasses.contains(&"event".to_string()), "{subclasses:?}");
    assert!(!subclasses.contains(&"audit".to_string()), "{subclasses:?}");
    server.stop().await;
}

/// X11: a command relayed to another session, its answer back under the caller's tid; acks extend
/// the deadline; silence past it is a timeout.
#[tokio::test]
async fn session_commands_are_relayed_and_answered() {
    let server = TestServer::start_with(|c| {
        c.live.cmd_timeout_secs = 1;
        c.live.ack_extend_secs = 2;
    })
    .await;
    let (mut caller, _) = admin(&server).await;
    let (mut target, target_id) = admin(&server).await;
    caller
        .send_text(
            json!({"class": "core", "subclass": "session", "cmd": "cmd", "tid": 77,
            "data": {"session_id": target_id, "class": "my_class", "cmd": "my_cmd",
                "data": {"key": "val"}}})
            .to_string(),
        )
        .await;
    let relayed = target.pushed().await;
    let tid = relayed["tid"].as_i64().unwrap();
    assert_eq!(
        relayed,
        json!({"class": "my_class", "cmd": "my_cmd", "data": {"key": "val"}, "tid": tid})
    );
    target
        .send_text(json!({"result": "ok", "data": {"received": true}, "tid": tid}).to_string())
        .await;
    assert_eq!(
        caller.reply(77).await,
        json!({"result": "ok", "data": {"received": true}, "tid": 77})
    );
    // An error answer passes through unchanged; an ack reaches the caller and extends the wait.
    caller
        .send_text(
            json!({"class": "core", "subclass": "session", "cmd": "cmd", "tid": 78,
            "data": {"session_id": target_id, "class": "c", "subclass": "s", "cmd": "slow"}})
            .to_string(),
        )
        .await;
    let relayed = target.pushed().await;
    assert_eq!(relayed["subclass"], "s");
    let tid = relayed["tid"].as_i64().unwrap();
    target.send_text(json!({"ack": tid}).to_string()).await;
    assert_eq!(caller.pushed().await, json!({"ack": 78}));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let error = json!({"result": "error", "data": {"error": "busy", "code": "x"}, "tid": tid});
    target.send_text(error.to_string()).await;
    assert_eq!(
        caller.reply(78).await,
        json!({"result": "error", "data": {"error": "busy", "code": "x"}, "tid": 78})
    );
    // Silence: a timeout.
    caller
        .send_text(
            json!({"class": "core", "subclass": "session", "cmd": "cmd", "tid": 79,
            "data": {"session_id": target_id, "class": "c", "cmd": "silent"}})
            .to_string(),
        )
        .await;
    target.pushed().await;
    assert_eq!(code(&caller.reply(79).await), "timeout");
    // The target goes away before answering.
    caller
        .send_text(
            json!({"class": "core", "subclass": "session", "cmd": "cmd", "tid": 80,
            "data": {"session_id": target_id, "class": "c", "cmd": "never"}})
            .to_string(),
        )
        .await;
    target.pushed().await;
    drop(target);
    assert_eq!(code(&caller.reply(80).await), "not_found");
    assert_eq!(
        code(
            &caller
                .call(
                    "session",
                    "cmd",
                    json!({"session_id": "nobody", "class": "c", "cmd": "x"})
                )
                .await
        ),
        "not_found"
    );
    assert_eq!(
        code(
            &caller
                .call(
                    "session",
                    "cmd",
                    json!({"session_id": "nobody", "cmd": "x"})
                )
                .await
        ),
        "missing_field"
    );
    server.stop().await;
}

/// X12, X13: `session/log` to a GELF server over UDP and TCP, with the sender's user and session.
#[tokio::test]
async fn logs_reach_the_gelf_server() {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = udp.local_addr().unwrap().to_string();
    let server = TestServer::start_with(|c| c.live.gelf.address = Some(address)).await;
    let (mut ws, id) = admin(&server).await;
    let reply = ws
        .call(
            "session",
            "log",
            json!({"source": "my host", "message": "my message",
            "meta": {"key1": "val1", "key2": 2}}),
        )
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let mut buf = vec![0; 65536];
    let n = tokio::time::timeout(Duration::from_secs(5), udp.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let mut got: Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert!(got["timestamp"].as_f64().unwrap() > 1.7e9);
    got.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(
        got,
        json!({"version": "1.1", "host": "my host", "short_message": "my message", "level": 1,
            "_key1": "val1", "_key2": 2, "_user": "admin", "_session_id": id})
    );
    for (bad, why) in [
        (json!({"message": "m"}), "missing_field"),
        (json!({"source": "s"}), "missing_field"),
        (
            json!({"source": "s", "message": "m", "meta": {"k": 1.5}}),
            "invalid_field",
        ),
        (
            json!({"source": "s", "message": "m", "meta": {"id": 1}}),
            "invalid_field",
        ),
        (
            json!({"source": "s", "message": "m", "meta": {"user": "mallory"}}),
            "invalid_field",
        ),
    ] {
        assert_eq!(code(&ws.call("session", "log", bad).await), why);
    }
    let nothing = tokio::time::timeout(Duration::from_millis(300), udp.recv(&mut buf)).await;
    assert!(nothing.is_err(), "refused logs are not sent");
    server.stop().await;

    // TCP: NUL-terminated frames.
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap().to_string();
    let server = TestServer::start_with(|c| {
        c.live.gelf.address = Some(address);
        c.live.gelf.transport = mobile_admin::export::gelf::Transport::Tcp;
    })
    .await;
    let (mut ws, _) = admin(&server).await;
    for n in 0..2 {
        let reply = ws
            .call(
                "session",
                "log",
                json!({"source": "h", "message": format!("m{n}"), "level": 6,
                "full_message": "details"}),
            )
            .await;
        assert_eq!(reply["result"], "ok", "{reply}");
    }
    let (mut conn, _) = tcp.accept().await.unwrap();
    let mut got = Vec::new();
    use tokio::io::AsyncReadExt;
    while got.iter().filter(|b| **b == 0).count() < 2 {
        let mut chunk = [0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        got.extend_from_slice(&chunk[..n]);
    }
    let frames: Vec<Value> = got
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| serde_json::from_slice(f).unwrap())
        .collect();
    assert_eq!(frames[1]["short_message"], "m1");
    assert_eq!(
        (&frames[0]["level"], &frames[0]["full_message"]),
        (&json!(6), &json!("details"))
    );
    server.stop().await;
}

/// Bounds: the login deadline, the message size, subscriptions and sessions per user, and which
/// session ids a login may ask for.
#[tokio::test]
async fn bounds_are_kept() {
    let server = TestServer::start_with(|c| {
        c.live.login_timeout_secs = 1;
        c.live.max_message_bytes = 64 * 1024;
        c.live.max_subscriptions = 3;
        c.live.max_sessions_per_user = 3;
    })
    .await;
    let mut idle = Ws::connect(&server).await;
    let (code_, reason) = idle.closed().await;
    assert_eq!(code_, 1008);
    assert!(reason.contains("login"), "{reason}");

    let (mut ws, first) = admin(&server).await;
    for n in 0..3 {
        let r = ws
            .call("event", "subscribe", json!({"class": format!("c{n}")}))
            .await;
        assert_eq!(r["result"], "ok");
    }
    assert_eq!(
        code(&ws.call("event", "subscribe", json!({"class": "c9"})).await),
        "too_many"
    );
    // The same subscription again is not a new one.
    assert_eq!(
        ws.call("event", "subscribe", json!({"class": "c0"})).await["result"],
        "ok"
    );
    let (_second, _) = admin(&server).await;
    let (_third, _) = admin(&server).await;
    let mut fourth = Ws::connect(&server).await;
    let refused = fourth
        .call(
            "user",
            "login",
            json!({"user": "admin", "password": admin_password(&server)}),
        )
        .await;
    assert_eq!(code(&refused), "too_many");
    // A live session's id cannot be taken; a closed one can be recovered by its user only.
    account(&server, "olga", "operator").await;
    let mut olga = Ws::connect(&server).await;
    let taken = olga
        .call(
            "user",
            "login",
            json!({"user": "olga", "password": "a long enough password",
            "session_id": first}),
        )
        .await;
    assert_eq!(code(&taken), "invalid_field");
    ws.socket.close(None).await.unwrap();
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stolen = olga
        .call(
            "user",
            "login",
            json!({"user": "olga", "password": "a long enough password",
            "session_id": first}),
        )
        .await;
    assert_eq!(code(&stolen), "invalid_field");
    let mut again = Ws::connect(&server).await;
    let recovered = again
        .call(
            "user",
            "login",
            json!({"user": "admin", "password": admin_password(&server),
            "session_id": first}),
        )
        .await;
    assert_eq!(recovered["data"]["session_id"], json!(first), "{recovered}");
    // Too big a message closes the connection with 1009.
    again.send_text("x".repeat(100 * 1024)).await;
    assert_eq!(again.closed().await.0, 1009);
    server.stop().await;
}

/// A subscriber that does not read is cut off once its queue is full, without holding up the
/// others; it comes back and resumes with `after`, missing nothing and getting nothing twice.
#[tokio::test]
async fn a_slow_consumer_is_cut_off_and_resumes() {
    let server = TestServer::start_with(|c| c.live.queue_messages = 8).await;
    let (mut slow, _) = admin(&server).await;
    let (mut fast, _) = admin(&server).await;
    let (mut sender, _) = admin(&server).await;
    for ws in [&mut slow, &mut fast] {
        let r = ws
            .call("event", "subscribe", json!({"class": "bulk"}))
            .await;
        assert_eq!(r["result"], "ok");
    }
    let big = "x".repeat(256 * 1024);
    let total = 120;
    // The fast one reads as events come.
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for n in 0..total {
            let e = fast.event().await;
            assert_eq!(e["type"], format!("{n}"));
            seqs.push(e["seq"].as_i64().unwrap());
        }
        seqs
    });
    for n in 0..total {
        let r = sender
            .call(
                "event",
                "send_event",
                json!({"class": "bulk", "type": format!("{n}"),
                "body": {"pad": big}}),
            )
            .await;
        assert_eq!(r["result"], "ok");
    }
    let seqs = reader.await.unwrap();
    // Devices are not held up by the subscriber that does not read.
    let mut dev = server.device("IMEI-BESIDE", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events(vec![event(1, "APP_STARTED")])
        .await
        .is_none());
    // The slow one reads only now: some events, then the close with its reason.
    let mut seen = Vec::new();
    while let Some(v) = slow.next_within(Duration::from_secs(5)).await {
        seen.push(v["data"]["seq"].as_i64().unwrap());
    }
    let (code_, reason) = slow.closed.clone().expect("closed by the server");
    assert_eq!(code_, 1008);
    assert!(reason.contains("after"), "{reason}");
    assert!(seen.len() < total, "the slow consumer was cut off");
    assert_eq!(seen, seqs[..seen.len()].to_vec());
    // It resumes after the last event it saw.
    let (mut back, _) = admin(&server).await;
    let last = seen.last().copied().unwrap_or(0);
    let r = back
        .call(
            "event",
            "subscribe",
            json!({"class": "bulk", "after": last}),
        )
        .await;
    assert_eq!(r["result"], "ok");
    sender
        .call(
            "event",
            "send_event",
            json!({"class": "bulk", "type": "live"}),
        )
        .await;
    let mut resumed = Vec::new();
    loop {
        let e = back.event().await;
        if e["type"] == "live" {
            break;
        }
        resumed.push(e["seq"].as_i64().unwrap());
    }
    assert_eq!(resumed, seqs[seen.len()..].to_vec(), "no gap, no repeat");
    server.stop().await;
}

/// Resuming with `after` across a server restart: what was committed while the subscriber was
/// away comes first, in order, then live events.
#[tokio::test]
async fn resume_after_a_restart_loses_nothing() {
    let server = TestServer::start().await;
    let (mut ws, _) = admin(&server).await;
    ws.call("event", "subscribe", json!({"class": "app"})).await;
    let (mut sender, _) = admin(&server).await;
    for n in 0..3 {
        sender
            .call(
                "event",
                "send_event",
                json!({"class": "app", "type": format!("{n}")}),
            )
            .await;
    }
    let mut last = 0;
    for n in 0..3 {
        let e = ws.event().await;
        assert_eq!(e["type"], format!("{n}"));
        last = e["seq"].as_i64().unwrap();
    }
    drop(ws);
    drop(sender);
    let (dir, config) = server.stop().await;
    let server = TestServer::start_in(dir, config).await;
    let (mut sender, _) = admin(&server).await;
    for n in 3..6 {
        sender
            .call(
                "event",
                "send_event",
                json!({"class": "app", "type": format!("{n}")}),
            )
            .await;
    }
    let (mut ws, _) = admin(&server).await;
    let r = ws
        .call("event", "subscribe", json!({"class": "app", "after": last}))
        .await;
    assert_eq!(r["result"], "ok");
    sender
        .call("event", "send_event", json!({"class": "app", "type": "6"}))
        .await;
    for n in 3..7 {
        assert_eq!(ws.event().await["type"], format!("{n}"));
    }
    ws.nothing_for(300).await;
    server.stop().await;
}

/// Two nodes on one PostgreSQL database: a device event handled by node A reaches a subscriber on
/// node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_nodes() {
    if !postgres_or_skip("events_cross_nodes") {
        return;
    }
    let a = TestServer::start().await;
    let (b, connector, _b_dir) = second_node(&a).await;
    let mut ws = Ws::connect_to(&connector, b.admin_addr(), &[]).await;
    ws.login("admin", &admin_password(&a)).await;
    ws.call(
        "event",
        "subscribe",
        json!({"class": "mdm", "subclass": "event"}),
    )
    .await;
    let mut dev = a.device("IMEI-NODE-A", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events(vec![event(1, "APP_STARTED")])
        .await
        .is_none());
    let got = ws.event().await;
    assert_eq!(
        (&got["type"], &got["obj_id"]),
        (&json!("APP_STARTED"), &json!("IMEI-NODE-A"))
    );
    b.stop().await;
    a.stop().await;
}
