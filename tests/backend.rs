//! Product backend commands (seed 000) over real TLS: rules B1–B14, over both console channels
//! (event polling over REST, pushed over the WebSocket API), routing, the server's own
//! `ERR_NO_BACKEND`, a restart with commands in flight, and the example console. Runs on both
//! backends.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::api::Api;
use common::ws::{code, Ws};
use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const EVENT: &str = "KLSRV_EV_PROD_BACKEND_CMD";
const P: &str = "MobileSecurity";
const V: &str = "11.0";
const PASSWORD: &str = "a long enough password";

/// Creates an account with `role` through the REST API.
async fn account(server: &TestServer, name: &str, role: &str) {
    server
        .api()
        .await
        .post(
            "/admins",
            json!({"name": name, "role": role, "password": PASSWORD}),
        )
        .await
        .ok();
}

async fn rest_as(server: &TestServer, name: &str) -> Api {
    server.api_anonymous().login(name, PASSWORD).await
}

async fn ws_as(server: &TestServer, name: &str) -> Ws {
    let mut ws = Ws::connect(server).await;
    ws.login(name, PASSWORD).await;
    ws
}

fn subscription(name: &str, version: &str) -> Value {
    json!({"event": EVENT, "filter": {"CMD_PROD_NAME": name, "CMD_PROD_VERSION": version}})
}

/// A polling console of `account` for `name`/`version`: its client and subscription id.
async fn rest_console(
    server: &TestServer,
    account: &str,
    name: &str,
    version: &str,
) -> (Api, String) {
    let api = rest_as(server, account).await;
    let sub = api
        .post("/backend-subscriptions", subscription(name, version))
        .await
        .ok();
    let id = sub["id"].as_str().unwrap().to_string();
    (api, id)
}

/// A live console of `account` for `name`/`version`: its connection and subscription id.
async fn ws_console(server: &TestServer, account: &str, name: &str, version: &str) -> (Ws, String) {
    let mut ws = ws_as(server, account).await;
    let reply = ws
        .call_in(
            "backend",
            "command",
            "subscribe",
            subscription(name, version),
        )
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let id = reply["data"]["id"].as_str().unwrap().to_string();
    (ws, id)
}

async fn retrieve(console: &Api, sub: &str) -> Value {
    console
        .send(console.request(
            Method::POST,
            &format!("/backend-subscriptions/{sub}/retrieve"),
        ))
        .await
        .ok()
}

/// Sends a command as `initiator`; its CMD_ID and the answer.
async fn send(
    initiator: &Api,
    name: &str,
    version: &str,
    cmd: &str,
    params: Value,
) -> (String, Value) {
    let sent = initiator
        .post(
            "/backend-commands",
            json!({"CMD_NAME": cmd, "CMD_PROD_NAME": name, "CMD_PROD_VERSION": version,
                "CMD_PARAMS": params}),
        )
        .await
        .ok();
    (sent["CMD_ID"].as_str().unwrap().to_string(), sent)
}

/// The command once it has ended.
async fn outcome(initiator: &Api, id: &str) -> Value {
    let command = initiator
        .get(&format!("/backend-commands/{id}?wait=20"))
        .await
        .ok();
    assert!(
        command["state"] == "done" || command["state"] == "failed",
        "{command}"
    );
    command
}

/// The pushed `KLSRV_EV_PROD_BACKEND_CMD` event's body.
async fn pushed_command(ws: &mut Ws) -> Value {
    let event = ws.event().await;
    assert_eq!(
        (&event["class"], &event["subclass"], &event["type"]),
        (&json!("backend"), &json!("command"), &json!(EVENT)),
        "{event}"
    );
    assert_eq!(event["obj_id"], event["body"]["CMD_ID"]);
    event["body"].clone()
}

/// A typed tree with a value of every type.
fn every_type() -> Value {
    json!({
        "b": {"type": "bool", "value": 1},
        "i": {"type": "int", "value": -5},
        "l": {"type": "long", "value": 1_099_511_627_776i64},
        "f": {"type": "float", "value": 1.5},
        "d": {"type": "double", "value": 2.25},
        "s": {"type": "string", "value": "x ü \"quoted\""},
        "dt": {"type": "date", "value": "2026-12-05"},
        "ts": {"type": "datetime", "value": "2026-12-05T10:00:00Z"},
        "bin": {"type": "binary", "value": "AAH/"},
        "a": {"type": "array", "value": [{"type": "int", "value": 1}, {"type": "string", "value": "two"}]},
        "p": {"type": "params", "value": {"inner": {"type": "long", "value": 7}}}
    })
}

/// B1–B5 over REST: the right, the event and a filter with both values.
#[tokio::test]
async fn polling_consoles_need_the_right_and_a_full_filter() {
    let server = TestServer::start().await;
    account(&server, "console", "integration").await;
    account(&server, "operator", "operator").await;
    let operator = rest_as(&server, "operator").await;
    // B5: no Execute on FUNC_AREA_PRODUCT_INTEGRATION.
    let refused = operator
        .post("/backend-subscriptions", subscription(P, V))
        .await
        .refused(403);
    assert!(
        refused.contains("FUNC_AREA_PRODUCT_INTEGRATION"),
        "{refused}"
    );
    let console = rest_as(&server, "console").await;
    // B1: no filter; B2, B3: a value missing, empty, blank or "*".
    let mut bad = vec![
        json!({"event": EVENT}),
        json!({"event": EVENT, "filter": {}}),
        json!({"filter": {"CMD_PROD_NAME": P, "CMD_PROD_VERSION": V}}),
        json!({"event": "KLSRV_EV_OTHER", "filter": {"CMD_PROD_NAME": P, "CMD_PROD_VERSION": V}}),
        json!({"event": EVENT, "filter": {"CMD_PROD_VERSION": V}}),
        json!({"event": EVENT, "filter": {"CMD_PROD_NAME": P}}),
        json!({"event": EVENT, "filter": {"CMD_PROD_NAME": P, "CMD_PROD_VERSION": V, "x": 1}}),
        json!({"event": EVENT, "filter": {"CMD_PROD_NAME": 5, "CMD_PROD_VERSION": V}}),
    ];
    for value in ["", " ", "*", &"x".repeat(32)] {
        bad.push(subscription(value, V));
        bad.push(subscription(P, value));
    }
    for body in bad {
        let answer = console.post("/backend-subscriptions", body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
    }
    assert_eq!(
        console.get("/backend-consoles").await.ok()["total_count"],
        0,
        "a refused subscription registers nothing"
    );
    // B4.
    let sub = console
        .post("/backend-subscriptions", subscription(P, V))
        .await
        .ok();
    let id = sub["id"].as_str().unwrap();
    assert_eq!(sub["period"], 1000);
    assert_eq!(sub["console"]["channel"], "poll");
    let consoles = operator.get("/backend-consoles").await.ok();
    assert_eq!(consoles["total_count"], 1);
    assert_eq!(consoles["list"][0]["CMD_PROD_NAME"], P);
    let available = |name: &str, version: &str| {
        format!("/backend-consoles/available?CMD_PROD_NAME={name}&CMD_PROD_VERSION={version}")
    };
    assert_eq!(operator.get(&available(P, V)).await.ok()["available"], 1);
    assert_eq!(
        operator.get(&available(P, "12.0")).await.ok()["available"],
        0
    );
    assert_eq!(
        operator.get("/backend-consoles/available").await.ok()["available"],
        1
    );
    // B5: the operator may not retrieve, read payloads or answer.
    operator
        .send(operator.request(
            Method::POST,
            &format!("/backend-subscriptions/{id}/retrieve"),
        ))
        .await
        .refused(403);
    let (cmd, _) = send(&operator, P, V, "ping", json!({})).await;
    operator
        .get(&format!("/backend-commands/{cmd}/payload"))
        .await
        .refused(403);
    operator
        .put(&format!("/backend-commands/{cmd}/result"), json!({}))
        .await
        .refused(403);
    operator
        .put(
            &format!("/backend-commands/{cmd}/error"),
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d"}),
        )
        .await
        .refused(403);
    // Unsubscribing: its own only; then it is gone.
    operator
        .delete(&format!("/backend-subscriptions/{id}"))
        .await
        .refused(403);
    console
        .delete(&format!("/backend-subscriptions/{id}"))
        .await
        .ok();
    console
        .delete(&format!("/backend-subscriptions/{id}"))
        .await
        .refused(404);
    assert_eq!(operator.get(&available(P, V)).await.ok()["available"], 0);
}

/// B1–B5 over the WebSocket API.
#[tokio::test]
async fn live_consoles_need_the_right_and_a_full_filter() {
    let server = TestServer::start().await;
    account(&server, "console", "integration").await;
    account(&server, "auditor", "auditor").await;
    let mut auditor = ws_as(&server, "auditor").await;
    assert_eq!(
        code(
            &auditor
                .call_in("backend", "command", "subscribe", subscription(P, V))
                .await
        ),
        "not_permitted"
    );
    let mut console = ws_as(&server, "console").await;
    for (body, expected) in [
        (json!({"event": EVENT}), "missing_field"),
        (
            json!({"filter": {"CMD_PROD_NAME": P, "CMD_PROD_VERSION": V}}),
            "missing_field",
        ),
        (json!({"event": EVENT, "filter": "P"}), "invalid_field"),
        (subscription("", V), "missing_field"),
        (subscription(" ", V), "missing_field"),
        (subscription("*", V), "invalid_field"),
        (subscription(P, ""), "missing_field"),
        (subscription(P, "*"), "invalid_field"),
        (
            json!({"event": EVENT, "filter": {"CMD_PROD_NAME": P}}),
            "missing_field",
        ),
    ] {
        let reply = console
            .call_in("backend", "command", "subscribe", body.clone())
            .await;
        assert_eq!(code(&reply), expected, "{body}");
    }
    let reply = console
        .call_in("backend", "command", "subscribe", subscription(P, V))
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let id = reply["data"]["id"].as_str().unwrap().to_string();
    let available = console
        .call_in(
            "backend",
            "console",
            "available",
            json!({"CMD_PROD_NAME": P, "CMD_PROD_VERSION": V}),
        )
        .await;
    assert_eq!(available["data"]["available"], 1, "{available}");
    // B5 on the console's calls: the auditor is refused even for a command it names.
    let admin = server.api().await;
    let (cmd, _) = send(&admin, P, V, "ping", json!({})).await;
    pushed_command(&mut console).await;
    for (cmd_name, data) in [
        ("get_payload", json!({"CMD_ID": cmd})),
        ("set_result", json!({"CMD_ID": cmd, "result": {}})),
        (
            "set_error",
            json!({"CMD_ID": cmd, "error": {"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d"}}),
        ),
    ] {
        let reply = auditor.call_in("backend", "command", cmd_name, data).await;
        assert_eq!(code(&reply), "not_permitted", "{cmd_name}");
    }
    assert_eq!(
        code(
            &auditor
                .call_in("backend", "command", "unsubscribe", json!({"id": id}))
                .await
        ),
        "not_found"
    );
    let reply = console
        .call_in("backend", "command", "unsubscribe", json!({"id": id}))
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    // The command it had taken fails: it may have run.
    let ended = outcome(&admin, &cmd).await;
    assert_eq!(ended["error"]["CMD_ERR_STR_ID"], "ERR_NO_BACKEND");
    assert!(
        ended["error"]["CMD_ERR_DESCR"]
            .as_str()
            .unwrap()
            .contains("unsubscribed"),
        "{ended}"
    );
}

/// B6, B8, B9 by event polling, and 1.4.9: once, by its console, unknown ids not found; audited.
#[tokio::test]
async fn a_polling_console_reads_the_payload_and_its_result_reaches_the_initiator() {
    let server = TestServer::start().await;
    account(&server, "console", "integration").await;
    account(&server, "other", "integration").await;
    account(&server, "operator", "operator").await;
    let initiator = rest_as(&server, "operator").await;
    let (console, sub) = rest_console(&server, "console", P, V).await;
    let (id, sent) = send(&initiator, P, V, "echo", every_type()).await;
    assert_eq!(sent["state"], "pending");
    assert!(sent.get("error_list").is_none(), "{sent}");
    // B6: the event carries the id and the routing keys.
    let got = retrieve(&console, &sub).await;
    assert_eq!(
        got["events"],
        json!([{"event": EVENT, "body": {"CMD_ID": id, "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V}}])
    );
    assert_eq!(retrieve(&console, &sub).await["events"], json!([]));
    let seen = initiator.get(&format!("/backend-commands/{id}")).await.ok();
    assert_eq!(seen["state"], "delivered");
    assert_eq!(seen["console"], sub.as_str());
    assert!(seen.get("CMD_PARAMS").is_none(), "params are the console's");
    // B8: the payload as submitted, every type intact.
    let payload = console
        .get(&format!("/backend-commands/{id}/payload"))
        .await
        .ok();
    assert_eq!(
        payload,
        json!({"CMD_NAME": "echo", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V,
            "CMD_PARAMS": every_type()})
    );
    // Only the console it was given to reads or answers it.
    let (other, _) = rest_console(&server, "other", P, V).await;
    other
        .get(&format!("/backend-commands/{id}/payload"))
        .await
        .refused(403);
    other
        .put(&format!("/backend-commands/{id}/result"), json!({}))
        .await
        .refused(403);
    // B14: a result is a container of typed values.
    for bad in [
        json!([1]),
        json!({"x": 5}),
        json!({"x": {"type": "int", "value": "5"}}),
        json!({"x": {"type": "date", "value": "5 Dec"}}),
    ] {
        console
            .put(&format!("/backend-commands/{id}/result"), bad)
            .await
            .refused(400);
    }
    // B9.
    console
        .put(&format!("/backend-commands/{id}/result"), every_type())
        .await
        .ok();
    let done = outcome(&initiator, &id).await;
    assert_eq!(done["state"], "done");
    assert_eq!(done["result"], every_type());
    assert!(done.get("error").is_none());
    // 1.4.9: a second answer is refused; unknown ids are not found.
    let again = console
        .put(&format!("/backend-commands/{id}/result"), json!({}))
        .await
        .refused(400);
    assert!(again.contains("already ended"), "{again}");
    console
        .put(
            &format!("/backend-commands/{id}/error"),
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d"}),
        )
        .await
        .refused(400);
    console
        .get("/backend-commands/no-such-command/payload")
        .await
        .refused(404);
    initiator
        .get("/backend-commands/no-such-command")
        .await
        .refused(404);
    initiator
        .get(&format!("/backend-commands/{id}?wait=61"))
        .await
        .refused(400);
    // The list, filtered.
    let list = initiator
        .get(&format!("/backend-commands?state=done&CMD_PROD_NAME={P}"))
        .await
        .ok();
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["list"][0]["CMD_ID"], id.as_str());
    initiator
        .get("/backend-commands?state=lost")
        .await
        .refused(400);
    // Audited: who sent it and who answered, never the params.
    let admin = server.api().await;
    let audit = admin.get(&format!("/audit?object_id={id}")).await.ok();
    let actions: Vec<(&str, &str)> = audit["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions.iter().map(|a| a.0).collect::<Vec<_>>(),
        ["backend_command.result", "backend_command.send"],
        "{audit}"
    );
    assert!(!audit.to_string().contains("1099511627776"), "{audit}");
}

/// B6, B8, B10, B11, B14 over the WebSocket API: pushed events, the error container round trip
/// field for field, initiating over the live API too.
#[tokio::test]
async fn a_live_console_gets_events_pushed_and_its_error_container_reaches_the_initiator() {
    let server = TestServer::start().await;
    account(&server, "console", "integration").await;
    let (mut console, _) = ws_console(&server, "console", P, V).await;
    let initiator = server.api().await;
    let (id, _) = send(
        &initiator,
        P,
        V,
        "locate",
        json!({"n": {"type": "int", "value": 3}}),
    )
    .await;
    // B6.
    assert_eq!(
        pushed_command(&mut console).await,
        json!({"CMD_ID": id, "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V})
    );
    // B8.
    let payload = console
        .call_in("backend", "command", "get_payload", json!({"CMD_ID": id}))
        .await;
    assert_eq!(
        payload["data"],
        json!({"CMD_NAME": "locate", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V,
            "CMD_PARAMS": {"n": {"type": "int", "value": 3}}})
    );
    // B14: the types of an error container are checked.
    for (error, expected) in [
        (json!({"CMD_ERR_DESCR": "d"}), "missing_field"),
        (json!({"CMD_ERR_ORIGINATOR_ID": "o"}), "missing_field"),
        (
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d", "CMD_ERR_ID": "7"}),
            "invalid_field",
        ),
        (
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d", "CMD_ERR_LNUMBER": 1.5}),
            "invalid_field",
        ),
        (
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d", "CMD_ERR_FNAME": 3}),
            "invalid_field",
        ),
        (
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d", "CMD_ERR_MORE": "x"}),
            "invalid_field",
        ),
        (json!("ERR_NOT_SUPPORTED"), "invalid_field"),
    ] {
        let reply = console
            .call_in(
                "backend",
                "command",
                "set_error",
                json!({"CMD_ID": id, "error": error}),
            )
            .await;
        assert_eq!(code(&reply), expected, "{error}");
    }
    // B10: every field reaches the initiator unchanged, an id the server does not know included.
    let error = json!({
        "CMD_ERR_STR_ID": "ERR_DEVICE_OFFLINE",
        "CMD_ERR_ORIGINATOR_ID": "vendor-cloud/eu-1",
        "CMD_ERR_ID": -2147483648i64,
        "CMD_ERR_DESCR": "the device has not been online for 30 days",
        "CMD_ERR_LOC_DESCR": "Устройство не в сети 30 дней",
        "CMD_ERR_FNAME": "locate.rs",
        "CMD_ERR_LNUMBER": 2147483647
    });
    let reply = console
        .call_in(
            "backend",
            "command",
            "set_error",
            json!({"CMD_ID": id, "error": error}),
        )
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let failed = outcome(&initiator, &id).await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"], error);
    let again = console
        .call_in(
            "backend",
            "command",
            "set_result",
            json!({"CMD_ID": id, "result": {}}),
        )
        .await;
    assert_eq!(code(&again), "invalid_field");
    // B11: without CMD_ERR_STR_ID; initiating and waiting over the live API.
    let mut admin = Ws::connect(&server).await;
    let password =
        std::fs::read_to_string(server.dir.path().join("initial-admin-password")).unwrap();
    admin.login("admin", password.trim()).await;
    let sent = admin
        .call_in(
            "backend",
            "command",
            "send",
            json!({"CMD_NAME": "wipe", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V}),
        )
        .await;
    assert_eq!(sent["data"]["state"], "pending", "{sent}");
    let id2 = sent["data"]["CMD_ID"].as_str().unwrap().to_string();
    let waiting = admin
        .send_request(
            "backend",
            "command",
            "get",
            json!({"CMD_ID": id2, "wait": 20}),
        )
        .await;
    assert_eq!(pushed_command(&mut console).await["CMD_ID"], id2.as_str());
    let minimal = json!({"CMD_ERR_ORIGINATOR_ID": "console", "CMD_ERR_DESCR": "no"});
    let reply = console
        .call_in(
            "backend",
            "command",
            "set_error",
            json!({"CMD_ID": id2, "error": minimal}),
        )
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let ended = admin.reply(waiting).await;
    assert_eq!(ended["data"]["state"], "failed", "{ended}");
    assert_eq!(ended["data"]["error"], minimal);
    // Unknown ids, unknown commands.
    let unknown = console
        .call_in(
            "backend",
            "command",
            "get_payload",
            json!({"CMD_ID": "nope"}),
        )
        .await;
    assert_eq!(code(&unknown), "not_found");
    let unknown = console
        .call_in("backend", "command", "dance", json!({}))
        .await;
    assert_eq!(code(&unknown), "not_found");
}

/// B7 and 1.4.2: exact product and version; several consoles share the commands, each handled once.
#[tokio::test]
async fn commands_go_to_exactly_one_console_of_their_product_and_version() {
    let server = TestServer::start().await;
    for name in ["a", "b", "c", "d"] {
        account(&server, name, "integration").await;
    }
    let initiator = server.api().await;
    let (mut a, _) = ws_console(&server, "a", P, V).await;
    let (b, b_sub) = rest_console(&server, "b", P, V).await;
    let (mut other_version, _) = ws_console(&server, "c", P, "12.0").await;
    let (mut other_product, _) = ws_console(&server, "d", "OtherProduct", V).await;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(
            send(
                &initiator,
                P,
                V,
                "echo",
                json!({"n": {"type": "int", "value": n}}),
            )
            .await
            .0,
        );
    }
    // The live console answers what it is pushed; the polling one what it retrieves.
    let mut by_a = Vec::new();
    let mut by_b = Vec::new();
    while by_a.len() + by_b.len() < ids.len() {
        let message = match a.inbox.pop_front() {
            Some(message) => Some(message),
            None => a.next_within(Duration::from_millis(200)).await,
        };
        if let Some(message) = message {
            let id = message["data"]["body"]["CMD_ID"]
                .as_str()
                .unwrap()
                .to_string();
            let reply = a
                .call_in(
                    "backend",
                    "command",
                    "set_result",
                    json!({"CMD_ID": id, "result": {}}),
                )
                .await;
            assert_eq!(reply["result"], "ok", "{reply}");
            by_a.push(id);
        }
        for event in retrieve(&b, &b_sub).await["events"].as_array().unwrap() {
            let id = event["body"]["CMD_ID"].as_str().unwrap().to_string();
            b.put(&format!("/backend-commands/{id}/result"), json!({}))
                .await
                .ok();
            by_b.push(id);
        }
    }
    assert_eq!(by_a.len(), 5, "spread evenly: {by_a:?} {by_b:?}");
    assert_eq!(by_b.len(), 5);
    let mut all: Vec<&String> = by_a.iter().chain(&by_b).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 10, "each command handled once");
    for id in &ids {
        assert_eq!(outcome(&initiator, id).await["state"], "done");
    }
    // B7: the consoles of another version or product got nothing; a command for them reaches them.
    other_version.nothing_for(300).await;
    other_product.nothing_for(300).await;
    let (id, _) = send(&initiator, P, "12.0", "ping", json!({})).await;
    assert_eq!(
        pushed_command(&mut other_version).await["CMD_ID"],
        id.as_str()
    );
    other_product.nothing_for(300).await;
}

/// B12 and 1.4.3: ERR_NO_BACKEND with no console, when the console disconnects, when it stops
/// polling, and at the deadline; a command the console had not taken goes to another one.
#[tokio::test]
async fn the_server_fails_commands_no_console_can_answer() {
    let server = TestServer::start_with(|c| {
        c.backend.command_deadline_secs = 4;
        c.backend.console_timeout_secs = 2;
    })
    .await;
    account(&server, "console", "integration").await;
    account(&server, "spare", "integration").await;
    let initiator = server.api().await;
    let descr = |command: &Value| {
        command["error"]["CMD_ERR_DESCR"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // No console at all: failed at once, with a soft error.
    let (id, sent) = send(&initiator, P, V, "ping", json!({})).await;
    assert_eq!(sent["state"], "failed");
    assert_eq!(
        sent["error_list"],
        json!([{"type": "BACKEND", "code": "ERR_NO_BACKEND"}])
    );
    let failed = initiator.get(&format!("/backend-commands/{id}")).await.ok();
    assert_eq!(failed["error"]["CMD_ERR_STR_ID"], "ERR_NO_BACKEND");
    assert_eq!(failed["error"]["CMD_ERR_ORIGINATOR_ID"], "mobile-admin");
    assert!(descr(&failed).contains("no service console"), "{failed}");
    // The console disconnects after taking the command.
    let (mut console, _) = ws_console(&server, "console", P, V).await;
    let (id, _) = send(&initiator, P, V, "ping", json!({})).await;
    pushed_command(&mut console).await;
    drop(console);
    let failed = outcome(&initiator, &id).await;
    assert_eq!(failed["error"]["CMD_ERR_STR_ID"], "ERR_NO_BACKEND");
    assert!(
        descr(&failed).contains("disconnected before answering"),
        "{failed}"
    );
    // The console takes it and never answers: the deadline.
    let (mut console, _) = ws_console(&server, "console", P, V).await;
    let (id, _) = send(&initiator, P, V, "ping", json!({})).await;
    pushed_command(&mut console).await;
    let failed = outcome(&initiator, &id).await;
    assert!(descr(&failed).contains("within 4 seconds"), "{failed}");
    assert_eq!(failed["error"]["CMD_ERR_STR_ID"], "ERR_NO_BACKEND");
    drop(console);
    // A polling console takes a command and stops polling: the command fails, saying so.
    let (polling, sub) = rest_console(&server, "console", P, V).await;
    let (id, _) = send(&initiator, P, V, "ping", json!({})).await;
    assert_eq!(
        retrieve(&polling, &sub).await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let failed = outcome(&initiator, &id).await;
    assert!(
        descr(&failed).contains("stopped polling before answering"),
        "{failed}"
    );
    // A polling console stops polling before retrieving: its command goes to the spare console.
    let (_, sub) = rest_console(&server, "console", P, V).await;
    let (id, _) = send(&initiator, P, V, "ping", json!({})).await;
    let (spare, spare_sub) = rest_console(&server, "spare", P, V).await;
    let mut moved = Vec::new();
    for _ in 0..50 {
        moved = retrieve(&spare, &spare_sub).await["events"]
            .as_array()
            .unwrap()
            .clone();
        if !moved.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(moved.len(), 1, "routed again once the first console lapsed");
    assert_eq!(moved[0]["body"]["CMD_ID"], id.as_str());
    spare
        .put(&format!("/backend-commands/{id}/result"), json!({}))
        .await
        .ok();
    assert_eq!(outcome(&initiator, &id).await["state"], "done");
    // The lapsed subscription is gone.
    let lapsed = rest_as(&server, "console").await;
    lapsed
        .send(lapsed.request(
            Method::POST,
            &format!("/backend-subscriptions/{sub}/retrieve"),
        ))
        .await
        .refused(404);
}

/// Commands in flight across a restart: a polling console answers after it, a pending command is
/// still there to retrieve, and a live console's command fails when its connection ends.
#[tokio::test]
async fn commands_in_flight_survive_a_restart() {
    let server = TestServer::start().await;
    account(&server, "console", "integration").await;
    account(&server, "live", "integration").await;
    let initiator = server.api().await;
    let (console, sub) = rest_console(&server, "console", P, V).await;
    let (taken, _) = send(&initiator, P, V, "ping", json!({})).await;
    assert_eq!(
        retrieve(&console, &sub).await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (waiting, _) = send(&initiator, P, V, "ping", json!({})).await;
    let (mut live, _) = ws_console(&server, "live", P, "12.0").await;
    let (live_taken, _) = send(&initiator, P, "12.0", "ping", json!({})).await;
    pushed_command(&mut live).await;

    let (dir, config) = server.stop().await;
    let server = TestServer::start_in(dir, config).await;
    let initiator = server.api().await;
    let console = rest_as(&server, "console").await;
    // The delivered command is still the polling console's to answer.
    console
        .put(&format!("/backend-commands/{taken}/result"), json!({}))
        .await
        .ok();
    assert_eq!(outcome(&initiator, &taken).await["state"], "done");
    // The pending one is retrieved now.
    let got = retrieve(&console, &sub).await;
    assert_eq!(
        got["events"][0]["body"]["CMD_ID"],
        waiting.as_str(),
        "{got}"
    );
    // The live console's connection ended with the server: its command failed.
    let failed = outcome(&initiator, &live_taken).await;
    assert_eq!(
        failed["error"]["CMD_ERR_STR_ID"], "ERR_NO_BACKEND",
        "{failed}"
    );
}

/// Who may initiate: Execute on FUNC_AREA_BACKEND_COMMANDS; Read to see commands; bad commands.
#[tokio::test]
async fn initiating_needs_its_own_right_and_a_well_formed_command() {
    let server = TestServer::start().await;
    account(&server, "auditor", "auditor").await;
    account(&server, "machine", "integration").await;
    let auditor = rest_as(&server, "auditor").await;
    let machine = rest_as(&server, "machine").await;
    let command = json!({"CMD_NAME": "ping", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V});
    let refused = auditor
        .post("/backend-commands", command.clone())
        .await
        .refused(403);
    assert!(refused.contains("FUNC_AREA_BACKEND_COMMANDS"), "{refused}");
    machine
        .post("/backend-commands", command.clone())
        .await
        .refused(403);
    machine.get("/backend-commands").await.refused(403);
    assert_eq!(
        auditor.get("/backend-commands").await.ok()["total_count"],
        0
    );
    let admin = server.api().await;
    for bad in [
        json!({"CMD_PROD_NAME": P, "CMD_PROD_VERSION": V}),
        json!({"CMD_NAME": " ", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V}),
        json!({"CMD_NAME": "ping", "CMD_PROD_VERSION": V}),
        json!({"CMD_NAME": "ping", "CMD_PROD_NAME": "*", "CMD_PROD_VERSION": V}),
        json!({"CMD_NAME": "ping", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": ""}),
        json!({"CMD_NAME": "ping", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V, "CMD_PARAMS": 5}),
        json!({"CMD_NAME": "ping", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V, "CMD_PARAMS": {"x": 1}}),
        json!({"CMD_NAME": "ping", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V,
            "CMD_PARAMS": {"x": {"type": "binary", "value": "not base64!"}}}),
        json!({"CMD_NAME": "ping", "CMD_PROD_NAME": P, "CMD_PROD_VERSION": V, "extra": 1}),
    ] {
        let answer = admin.post("/backend-commands", bad.clone()).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text);
    }
    assert_eq!(
        admin.get("/backend-commands").await.ok()["total_count"],
        0,
        "refused commands are not stored"
    );
}

/// The example console under `examples/`, over both channels (B13: the console's error ids reach
/// the initiator).
#[tokio::test]
async fn the_example_console_answers_its_command_set() {
    let server = TestServer::start().await;
    account(&server, "console", "integration").await;
    let password = server.dir.path().join("console.password");
    std::fs::write(&password, PASSWORD).unwrap();
    let initiator = server.api().await;
    for (channel, version) in [("live", "1.0"), ("poll", "2.0")] {
        let mut args = vec![
            "--server".to_string(),
            format!("localhost:{}", server.app.admin_addr().port()),
            "--ca".into(),
            generated_cert(server.dir.path()).display().to_string(),
            "--user".into(),
            "console".into(),
            "--password-file".into(),
            password.display().to_string(),
            "--product".into(),
            P.into(),
            "--version".into(),
            version.into(),
            "--known-token".into(),
            "good=2999-01-01T00:00:00Z".into(),
            "--known-token".into(),
            "old=2001-01-01T00:00:00Z".into(),
        ];
        if channel == "poll" {
            args.push("--poll".into());
        }
        let mut child = tokio::process::Command::new(example_console())
            .args(&args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the example console starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the example console subscribes")
            .unwrap()
            .unwrap();
        assert!(first.starts_with("subscribed "), "{channel}: {first}");
        let token = |t: &str| json!({"token": {"type": "string", "value": t}});
        let cases = [
            (
                "ping",
                json!({}),
                Ok(json!({"reply": {"type": "string", "value": "pong"}})),
            ),
            ("echo", every_type(), Ok(every_type())),
            (
                "sum",
                json!({"values": {"type": "array", "value": [{"type": "int", "value": 40}, {"type": "long", "value": 2}]}}),
                Ok(json!({"sum": {"type": "long", "value": 42}})),
            ),
            (
                "check-token",
                token("good"),
                Ok(json!({"valid_until": {"type": "datetime", "value": "2999-01-01T00:00:00Z"}})),
            ),
            ("check-token", token("old"), Err("ERR_EXPIRED_TOKEN")),
            ("check-token", token("stolen"), Err("ERR_UNKNOWN_TOKEN")),
            ("check-token", json!({}), Err("ERR_UNKNOWN_TOKEN")),
            ("wipe", json!({}), Err("ERR_NOT_SUPPORTED")),
        ];
        for (name, params, expected) in cases {
            let (id, _) = send(&initiator, P, version, name, params).await;
            let ended = outcome(&initiator, &id).await;
            match expected {
                Ok(result) => {
                    assert_eq!(ended["state"], "done", "{channel} {name}: {ended}");
                    assert_eq!(ended["result"], result, "{channel} {name}");
                }
                Err(error) => {
                    assert_eq!(ended["state"], "failed", "{channel} {name}: {ended}");
                    assert_eq!(ended["error"]["CMD_ERR_STR_ID"], error, "{channel} {name}");
                    assert_eq!(
                        ended["error"]["CMD_ERR_ORIGINATOR_ID"],
                        "example backend console"
                    );
                    assert!(ended["error"]["CMD_ERR_LNUMBER"].as_i64().unwrap() > 0);
                }
            }
        }
        child.kill().await.unwrap();
    }
}

/// The example console's binary, built beside the tests (`cargo test --all-targets` builds it).
fn example_console() -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let target = deps.parent().unwrap().parent().unwrap();
    let binary = target.join("examples").join("backend_console");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--example", "backend_console"])
            .status()
            .expect("cargo builds the example console");
        assert!(status.success());
    }
    binary
}

/// Two nodes on one PostgreSQL database: a command sent on one node reaches a live console on the
/// other and its result comes back; when that node stops, the command its console had taken fails.
#[tokio::test]
async fn commands_cross_nodes() {
    if !postgres_or_skip("commands_cross_nodes") {
        return;
    }
    let a = TestServer::start().await;
    account(&a, "console", "integration").await;
    let (b, connector, _b_dir) = second_node(&a).await;
    let mut console = Ws::connect_to(&connector, b.admin_addr(), &[]).await;
    console.login("console", PASSWORD).await;
    let reply = console
        .call_in("backend", "command", "subscribe", subscription(P, V))
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let initiator = a.api().await;
    let (id, _) = send(&initiator, P, V, "echo", every_type()).await;
    assert_eq!(pushed_command(&mut console).await["CMD_ID"], id.as_str());
    let payload = console
        .call_in("backend", "command", "get_payload", json!({"CMD_ID": id}))
        .await;
    let reply = console
        .call_in(
            "backend",
            "command",
            "set_result",
            json!({"CMD_ID": id, "result": payload["data"]["CMD_PARAMS"]}),
        )
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let done = outcome(&initiator, &id).await;
    assert_eq!(done["result"], every_type());
    // Node b stops with a command its console had taken: node a's initiator sees it fail.
    let (id, _) = send(&initiator, P, V, "ping", json!({})).await;
    pushed_command(&mut console).await;
    b.stop().await;
    let failed = outcome(&initiator, &id).await;
    assert_eq!(
        failed["error"]["CMD_ERR_STR_ID"], "ERR_NO_BACKEND",
        "{failed}"
    );
    a.stop().await;
}
