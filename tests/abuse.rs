//! The device port against hostile clients: password guessers, session and enrolment floods,
//! connection hogs. Each test plays the attacker and the rightful devices at different loopback
//! addresses (127.0.0.x) and checks that the attacker is slowed or refused while the others get in.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A guesser hammering one device id from its own address is slowed down; the rightful device, from
/// another address, still logs in with its password after at most the short shared wait.
#[tokio::test]
async fn a_targeted_device_id_still_lets_its_owner_in() {
    let server = TestServer::start_with(|c| {
        c.protocol.login_failures_per_device = 3;
        c.protocol.login_max_shared_delay_ms = 300;
        c.protocol.login_max_pair_delay_ms = 1500;
    })
    .await;
    let mut owner = server.device_from("IMEI-T1", "right", "127.0.0.2").await;
    owner.begin().await.unwrap();

    let mut guesser = server.device_from("IMEI-T1", "guess", "127.0.0.3").await;
    for _ in 0..8 {
        let refused = guesser.begin().await.unwrap_err();
        assert_eq!(refused.code, 1184, "{refused:?}");
        assert_eq!(refused.message, "unknown device or wrong password");
    }
    // The guesser's own attempts now wait the longest (its pair's wait is at its cap).
    let started = Instant::now();
    assert_eq!(guesser.begin().await.unwrap_err().code, 1184);
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // The owner waits at most the shared cap, and gets in.
    let started = Instant::now();
    owner.begin().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1500));
    // Its success cleared the device id's count: no wait at all now.
    owner.begin().await.unwrap();
    server.stop().await;
}

/// Parallel attempts of one guesser on one device id do not multiply its rate: while one throttled
/// attempt waits, the others are told to come back later.
#[tokio::test]
async fn a_guesser_gets_one_throttled_attempt_at_a_time() {
    let server = TestServer::start_with(|c| {
        c.protocol.login_failures_per_device = 1;
        c.protocol.login_max_pair_delay_ms = 1000;
    })
    .await;
    let mut first = server.device_from("IMEI-T2", "right", "127.0.0.2").await;
    first.begin().await.unwrap();
    let mut guessers = Vec::new();
    for _ in 0..4 {
        guessers.push(server.device_from("IMEI-T2", "guess", "127.0.0.5").await);
    }
    for g in guessers.iter_mut().take(3) {
        assert_eq!(g.begin().await.unwrap_err().code, 1184);
    }
    let results = futures_util::future::join_all(guessers.iter_mut().map(|g| g.begin())).await;
    let codes: Vec<i32> = results.into_iter().map(|r| r.unwrap_err().code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 1184).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 1195).count(), 3, "{codes:?}");
    server.stop().await;
}

/// Fifty failures from one address (a guesser behind a NAT) do not lock out the other devices
/// behind that address, nor new devices enrolling from it.
#[tokio::test]
async fn devices_behind_a_guessers_address_still_get_in() {
    let server = TestServer::start_with(|c| {
        c.protocol.login_failures_per_address = 5;
        c.protocol.login_max_shared_delay_ms = 300;
    })
    .await;
    let mut neighbour = server.device_from("IMEI-N1", "mine", "127.0.0.4").await;
    neighbour.begin().await.unwrap();
    for i in 0..12 {
        let mut victim = server
            .device_from(&format!("IMEI-V{i}"), "pw", "127.0.0.6")
            .await;
        victim.begin().await.unwrap();
        let mut guesser = server
            .device_from(&format!("IMEI-V{i}"), "guess", "127.0.0.4")
            .await;
        assert_eq!(guesser.begin().await.unwrap_err().code, 1184);
    }
    let started = Instant::now();
    neighbour.begin().await.unwrap();
    let mut newcomer = server.device_from("IMEI-N2", "new", "127.0.0.4").await;
    newcomer.begin().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    server.stop().await;
}

/// One device opening sessions in a loop holds at most its per-device limit (the newest ones), and
/// the server as a whole at most its total: a new device is then refused with 1195, while a device
/// that already holds a session may still replace it.
#[tokio::test]
async fn sessions_are_bounded_per_device_and_in_all() {
    let server = TestServer::start_with(|c| {
        c.protocol.max_sessions_per_device = 3;
        c.protocol.max_sessions = 20;
    })
    .await;
    let sessions = server.app.device.sessions().clone();
    let mut flood = server.device("IMEI-FLOOD", "pw").await;
    let mut opened = Vec::new();
    for _ in 0..200 {
        flood.begin().await.unwrap();
        opened.push(flood.session.clone());
    }
    assert_eq!(sessions.count().await.unwrap(), 3);
    for (i, id) in opened.iter().enumerate().rev().take(5) {
        flood.session = id.clone();
        let (_, error) = flood.heartbeat(None).await;
        let live = i >= 197;
        assert_eq!(error.is_none(), live, "session {i}: {error:?}");
    }

    for i in 0..17 {
        server
            .device(&format!("IMEI-B{i}"), "pw")
            .await
            .begin()
            .await
            .unwrap();
    }
    assert_eq!(sessions.count().await.unwrap(), 20);
    let refused = server
        .device("IMEI-LATE", "pw")
        .await
        .begin()
        .await
        .unwrap_err();
    assert_eq!(refused.code, 1195);
    assert!(
        refused.message.contains("too many sessions"),
        "{}",
        refused.message
    );
    let mut known = server.device("IMEI-B0", "pw").await;
    known.begin().await.unwrap();
    assert!(known.heartbeat(None).await.1.is_none());
    assert_eq!(sessions.count().await.unwrap(), 20);
    server.stop().await;
}

/// Blocking a device ends the sessions it already holds; only the rightful device (the right
/// password) is told that it is blocked. A reset ends them too.
#[tokio::test]
async fn blocking_or_resetting_a_device_ends_its_sessions() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-BL", "right").await;
    dev.begin().await.unwrap();
    assert!(dev.heartbeat(None).await.1.is_none());
    server
        .app
        .domain
        .set_device_blocked(&admin(), "IMEI-BL", true)
        .await
        .unwrap();
    let (_, error) = dev.heartbeat(None).await;
    assert_eq!(error.map(|e| e.code), Some(1186), "the session ended");

    let mut guesser = server.device("IMEI-BL", "wrong").await;
    let refused = guesser.begin().await.unwrap_err();
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (1184, "unknown device or wrong password")
    );
    let refused = dev.begin().await.unwrap_err();
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (1184, "the device is blocked")
    );

    server
        .app
        .domain
        .set_device_blocked(&admin(), "IMEI-BL", false)
        .await
        .unwrap();
    dev.begin().await.unwrap();
    server
        .app
        .domain
        .reset_device(&admin(), "IMEI-BL")
        .await
        .unwrap();
    let (_, error) = dev.heartbeat(None).await;
    assert_eq!(
        error.map(|e| e.code),
        Some(1186),
        "a reset ends sessions too"
    );
    server.stop().await;
}

/// With closed enrolment an unknown device id and a known one with a wrong password get the same
/// answer: the answers do not reveal which ids exist.
#[tokio::test]
async fn closed_enrolment_does_not_reveal_which_ids_exist() {
    let server = TestServer::start_with(|c| {
        c.protocol.enrolment = mobile_admin::device::EnrolmentMode::Closed;
    })
    .await;
    register(&server.app.store, "IMEI-REG").await;
    server.device("IMEI-REG", "pw").await.begin().await.unwrap();
    let unknown = server
        .device("IMEI-NOPE", "pw")
        .await
        .begin()
        .await
        .unwrap_err();
    let wrong = server
        .device("IMEI-REG", "bad")
        .await
        .begin()
        .await
        .unwrap_err();
    assert_eq!(unknown.code, 1184);
    assert_eq!(
        (unknown.code, &unknown.message),
        (wrong.code, &wrong.message)
    );
    server.stop().await;
}

/// Open enrolment is limited per source address: a flood of new ids from one address is refused
/// with 1195 after the limit, while other addresses and known devices carry on.
#[tokio::test]
async fn enrolment_is_limited_per_address() {
    let server = TestServer::start_with(|c| c.protocol.enrolments_per_address_per_minute = 3).await;
    for i in 0..3 {
        server
            .device_from(&format!("IMEI-E{i}"), "pw", "127.0.0.7")
            .await
            .begin()
            .await
            .unwrap();
    }
    let refused = server
        .device_from("IMEI-E3", "pw", "127.0.0.7")
        .await
        .begin()
        .await
        .unwrap_err();
    assert_eq!(refused.code, 1195);
    assert!(
        refused.message.contains("try again in"),
        "{}",
        refused.message
    );
    server
        .device_from("IMEI-E3", "pw", "127.0.0.8")
        .await
        .begin()
        .await
        .unwrap();
    server
        .device_from("IMEI-E0", "pw", "127.0.0.7")
        .await
        .begin()
        .await
        .unwrap();
    let enrolled: i64 = server
        .sql()
        .await
        .scalar("SELECT count(*) FROM devices")
        .await;
    assert_eq!(enrolled, 4);
    server.stop().await;
}
